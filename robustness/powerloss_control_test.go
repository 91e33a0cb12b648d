package robustness_test

import (
	"bufio"
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/framework0/ctxd"
	"github.com/framework0/ctxd/internal/fsutil"
	"github.com/framework0/ctxd/internal/powerfs"
)

// TestPowerLossCatchesEarlyAck is the negative control of the power-loss
// trials: a toy key-value server that answers a put before its data is
// synced, run through the same trial and checks as ctxd, must be caught
// losing acknowledged writes: on every seed when it never syncs; on at
// least one seed when it syncs 50 ms after answering (a cut may land just
// after a sync, when nothing acknowledged is unsynced, or torn mode may
// keep every unsynced write: no loss is then the right verdict). The same
// server syncing before it answers must lose nothing (the harness does not
// cry wolf). Seeds after the first keep a prefix of the unsynced folder
// changes, as half of ctxd's mounts do: the log of the server that never
// syncs may then survive by name, and its loss must still be caught.
func TestPowerLossCatchesEarlyAck(t *testing.T) {
	if err := powerfs.Available(); err != nil {
		t.Skip("power-loss trials need FUSE: " + err.Error())
	}
	for _, tc := range []struct {
		mode      toyMode
		seeds     int
		wantLoss  bool
		everySeed bool // a loss on every seed, not just on one
	}{
		{toyNeverSync, 2, true, true},
		{toySyncLater, 3, true, false},
		{toyHonest, 2, false, false},
	} {
		t.Run(tc.mode.String(), func(t *testing.T) {
			lost := 0
			for seed := int64(1); seed <= int64(tc.seeds); seed++ {
				// Seed 1: strict, names lost; 2: torn, names kept in
				// part (Options.KeepUnsyncedNames); 3: strict, kept.
				fsOpts := powerfs.Options{Mode: []powerfs.Mode{powerfs.Torn, powerfs.Strict}[seed%2], KeepUnsyncedNames: seed > 1}
				res := runTrial(t, toyProgram(tc.mode), seed, trialOptions{mode: &fsOpts.Mode, keepNames: &fsOpts.KeepUnsyncedNames})
				t.Logf("seed %d, %s: %d acknowledged writes checked, %d lost, %d other problems",
					seed, fsMode(fsOpts), res.acked, res.lost, len(res.problems)-res.lost)
				if res.acked == 0 {
					t.Fatalf("seed %d: no write was acknowledged: the trial tested nothing", seed)
				}
				lost += res.lost
				if tc.wantLoss && tc.everySeed && res.lost == 0 {
					t.Errorf("seed %d: the harness did not catch a server that answers before it syncs", seed)
				}
				if !tc.wantLoss {
					for _, p := range res.problems {
						t.Errorf("seed %d: %s", seed, p)
					}
				}
			}
			if tc.wantLoss && lost == 0 {
				t.Errorf("no seed of %d caught a server that answers before it syncs", tc.seeds)
			}
		})
	}
}

// toyMode is how the toy server treats durability.
type toyMode int

const (
	toyNeverSync toyMode = iota // answers and never syncs, neither its log nor its folders
	toySyncLater                // answers, then syncs its log every 50 ms (its folders at once)
	toyHonest                   // syncs its log before it answers (its folders at once)
)

func (m toyMode) String() string {
	return [...]string{"never-sync", "sync-after-answer", "sync-before-answer"}[m]
}

func toyProgram(mode toyMode) program {
	return program{name: "toy " + mode.String(), start: func(t *testing.T, dataDir string, _ []string) (server, error) {
		s, err := startToy(dataDir, mode)
		if err != nil {
			return nil, err
		}
		t.Cleanup(s.Kill)
		return s, nil
	}}
}

// toyServer keeps keys in memory and appends each change, as a JSON line,
// to DIR/toy.log, which it reads back when it starts. It answers the few
// routes of ctxd's API that a trial uses for puts and for reading back.
type toyServer struct {
	mode toyMode
	url  string
	hs   *http.Server
	done chan struct{} // closed by Kill
	wg   sync.WaitGroup

	mu   sync.Mutex
	f    *os.File
	rev  uint64
	cur  map[nsKey]ctxd.Record
	hist map[nsKey][]ctxd.Change // oldest first
}

func startToy(dir string, mode toyMode) (*toyServer, error) {
	s := &toyServer{mode: mode, done: make(chan struct{}), cur: map[nsKey]ctxd.Record{}, hist: map[nsKey][]ctxd.Change{}}
	_, statErr := os.Stat(dir)
	if err := os.MkdirAll(dir, 0o750); err != nil {
		return nil, err
	}
	if os.IsNotExist(statErr) && mode != toyNeverSync {
		if err := fsutil.SyncDir(filepath.Dir(dir)); err != nil {
			return nil, err
		}
	}
	path := filepath.Join(dir, "toy.log")
	_, statErr = os.Stat(path)
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		return nil, err
	}
	s.f = f
	if os.IsNotExist(statErr) && mode != toyNeverSync {
		if err := fsutil.SyncDir(dir); err != nil {
			f.Close()
			return nil, err
		}
	}
	if err := s.load(); err != nil {
		f.Close()
		return nil, fmt.Errorf("toy: %s: %w", path, err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		f.Close()
		return nil, err
	}
	s.url = "http://" + ln.Addr().String()
	mux := http.NewServeMux()
	mux.HandleFunc("PUT /v1/ns/{ns}/keys/{key}", s.put)
	mux.HandleFunc("GET /v1/ns/{ns}/keys/{key}/history", s.history)
	mux.HandleFunc("GET /v1/ns/{ns}/keys", s.list)
	mux.HandleFunc("GET /v1/ns", s.namespaces)
	mux.HandleFunc("GET /v1/status", s.status)
	s.hs = &http.Server{Handler: mux}
	s.wg.Go(func() { _ = s.hs.Serve(ln) })
	if mode == toySyncLater {
		s.wg.Go(func() {
			tick := time.NewTicker(50 * time.Millisecond)
			defer tick.Stop()
			for {
				select {
				case <-s.done:
					return
				case <-tick.C:
					s.mu.Lock()
					_ = s.f.Sync()
					s.mu.Unlock()
				}
			}
		})
	}
	return s, nil
}

// load reads the log's changes up to the first line that is not a whole
// change following the one before (a torn end), and cuts the file there.
func (s *toyServer) load() error {
	var valid int64
	r := bufio.NewReader(s.f)
	for {
		line, err := r.ReadBytes('\n')
		if err != nil {
			break // the end, or a last line without its line break
		}
		var ch ctxd.Change
		if json.Unmarshal(line, &ch) != nil || ch.Revision != s.rev+1 {
			break
		}
		s.apply(ch)
		valid += int64(len(line))
	}
	if err := s.f.Truncate(valid); err != nil {
		return err
	}
	if _, err := s.f.Seek(valid, io.SeekStart); err != nil {
		return err
	}
	if s.mode == toyNeverSync {
		return nil
	}
	return s.f.Sync()
}

func (s *toyServer) apply(ch ctxd.Change) {
	k := nsKey{ch.Namespace, ch.Key}
	s.rev = ch.Revision
	s.hist[k] = append(s.hist[k], ch)
	rec := s.cur[k]
	if rec.Version == 0 {
		rec.CreateRev = ch.Revision
	}
	rec.Namespace, rec.Key, rec.Value, rec.Version, rec.ModRev, rec.Who, rec.UpdatedAt = ch.Namespace, ch.Key, ch.Value, ch.Version, ch.Revision, ch.Who, ch.Time
	s.cur[k] = rec
}

func (s *toyServer) put(w http.ResponseWriter, r *http.Request) {
	body, err := io.ReadAll(r.Body)
	if err != nil || !json.Valid(body) {
		toyError(w, http.StatusBadRequest, "bad_request")
		return
	}
	var compact bytes.Buffer
	_ = json.Compact(&compact, body)
	k := nsKey{r.PathValue("ns"), r.PathValue("key")}
	s.mu.Lock()
	ch := ctxd.Change{Revision: s.rev + 1, Namespace: k.ns, Key: k.key, Op: ctxd.OpPut, Value: compact.Bytes(),
		Version: s.cur[k].Version + 1, Who: r.URL.Query().Get("who"), Time: time.Now().UTC()}
	line, _ := json.Marshal(ch)
	_, err = s.f.Write(append(line, '\n'))
	if err == nil && s.mode == toyHonest {
		err = s.f.Sync()
	}
	if err != nil {
		s.mu.Unlock()
		toyError(w, http.StatusInternalServerError, "internal")
		return
	}
	s.apply(ch)
	rec := s.cur[k]
	s.mu.Unlock()
	toyJSON(w, rec)
}

func (s *toyServer) history(w http.ResponseWriter, r *http.Request) {
	s.mu.Lock()
	h := slices.Clone(s.hist[nsKey{r.PathValue("ns"), r.PathValue("key")}])
	s.mu.Unlock()
	if len(h) == 0 {
		toyError(w, http.StatusNotFound, "not_found")
		return
	}
	slices.Reverse(h)
	toyJSON(w, ctxd.HistoryPage{Changes: h})
}

func (s *toyServer) list(w http.ResponseWriter, r *http.Request) {
	ns := r.PathValue("ns")
	s.mu.Lock()
	var recs []ctxd.Record
	for k, rec := range s.cur {
		if k.ns == ns {
			recs = append(recs, rec)
		}
	}
	s.mu.Unlock()
	slices.SortFunc(recs, func(a, b ctxd.Record) int { return strings.Compare(a.Key, b.Key) })
	toyJSON(w, ctxd.ListPage{Records: recs})
}

func (s *toyServer) namespaces(w http.ResponseWriter, _ *http.Request) {
	counts := map[string]uint64{}
	s.mu.Lock()
	for k := range s.cur {
		counts[k.ns]++
	}
	s.mu.Unlock()
	var out struct {
		Namespaces []ctxd.Namespace `json:"namespaces"`
	}
	for _, name := range sortedKeys(counts) {
		out.Namespaces = append(out.Namespaces, ctxd.Namespace{Name: name, Keys: counts[name]})
	}
	toyJSON(w, out)
}

func (s *toyServer) status(w http.ResponseWriter, _ *http.Request) {
	s.mu.Lock()
	defer s.mu.Unlock()
	toyJSON(w, ctxd.ServerStatus{Revision: s.rev})
}

func toyJSON(w http.ResponseWriter, v any) {
	w.Header().Set("Content-Type", "application/json")
	_ = json.NewEncoder(w).Encode(v)
}

func toyError(w http.ResponseWriter, status int, code string) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_, _ = fmt.Fprintf(w, `{"error":{"code":%q,"message":%q}}`, code, code)
}

func (s *toyServer) URL() string    { return s.url }
func (s *toyServer) Log() string    { return "" }
func (s *toyServer) Exited() string { return "" }
func (s *toyServer) Stop() error    { s.Kill(); return nil }

// Kill stops serving at once and closes the log (unsynced: what a
// SIGKILL leaves is whatever the power cut left).
func (s *toyServer) Kill() {
	select {
	case <-s.done:
		return
	default:
	}
	close(s.done)
	_ = s.hs.Close()
	s.wg.Wait()
	s.mu.Lock()
	_ = s.f.Close() // fails after a power cut: nothing to do about it
	s.mu.Unlock()
}

// TestQuitIfStuckLeavesTheStacks: a request to ctxd that timed out ends
// the server with every goroutine's stack in its log, so that a trial
// that failed because the server stopped answering says where it waited;
// any other error leaves the server running.
func TestQuitIfStuckLeavesTheStacks(t *testing.T) {
	srv, err := ctxdProgram.start(t, t.TempDir(), nil)
	if err != nil {
		t.Fatal(err)
	}
	// The "listening" line comes once the goroutine that serves is
	// started, not once it runs: an answer says it is in Serve, whose
	// frame the stacks must show.
	res, err := http.Get(srv.URL() + "/healthz")
	if err != nil {
		t.Fatal(err)
	}
	res.Body.Close()
	quitIfStuck(srv, fmt.Errorf("setup: %w", io.ErrUnexpectedEOF))
	if why := srv.Exited(); why != "" {
		t.Fatalf("an error other than a timeout ended the server: %s", why)
	}
	_, err = (&http.Client{Timeout: time.Nanosecond}).Get(srv.URL() + "/healthz")
	var ne net.Error
	if !errors.As(err, &ne) || !ne.Timeout() {
		t.Fatalf("want a timeout, got %v", err)
	}
	quitIfStuck(srv, fmt.Errorf("setup snapshot: %w", err))
	if srv.Exited() == "" {
		t.Fatal("the server still runs after a timed-out request")
	}
	for _, want := range []string{"SIGQUIT", "goroutine ", "net/http.(*Server).Serve"} {
		if !strings.Contains(srv.Log(), want) {
			t.Errorf("the server's log has no %q: %.2000s", want, srv.Log())
		}
	}
}
