package robustness_test

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/anishathalye/porcupine"
	"github.com/stretchr/testify/require"

	"github.com/framework0/ctxd/internal/linearize"
	"github.com/framework0/ctxd/internal/powerfs"
	"github.com/framework0/ctxd/internal/testkit"
)

// TestLinearizableAcrossKills: 8 clients do gets, puts, CAS puts, deletes
// and two-key transactions on 4 hot keys of the real binary, which is
// killed with SIGKILL three times in the middle and restarted on the same
// data folder and address. Porcupine checks the whole history against
// ctxd's model: every acknowledged write stays, versions and revisions
// follow the rules, and a write cut off by a kill either took effect,
// whole, or did not.
func TestLinearizableAcrossKills(t *testing.T) {
	const (
		kills    = 3
		segment  = 1000 // operations between kills, and after the last
		clients  = 8
		hotKeys  = 4
		totalOps = (kills + 1) * segment
	)
	dir := t.TempDir()
	p := testkit.StartServe(t, ctxdBin, dir, testkit.ServeOptions{})
	addr := p.Addr

	rec := linearize.NewRecorder()
	w := linearize.Workload{URLs: []string{p.URL}, Clients: clients, Keys: linearize.DefaultKeys(hotKeys), Ops: totalOps}
	start := time.Now()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel() // a failed wait ends the workload too
	done := startWorkload(ctx, w, rec)
	for i := 1; i <= kills; i++ {
		testkit.Eventually(t, func() bool { return rec.Len() >= i*segment }, "%d operations", i*segment)
		p.Kill()
		p = testkit.StartServe(t, ctxdBin, dir, testkit.ServeOptions{Addr: addr})
	}
	res := <-done
	require.NoError(t, res.err)
	t.Logf("workload: %v in %v, %d kills", res.stats, time.Since(start).Round(time.Millisecond), kills)
	require.Positive(t, res.stats.Unknown, "no write was cut off by a kill: the test proved less than it claims")

	linearize.Check(t, rec.History(), linearize.DefaultTimeout)
}

// TestLinearizableAcrossPowerCuts is TestLinearizableAcrossKills with power
// cuts: the data folder is on powerfs (torn mode: of what was not synced, a
// random part survives, torn at sectors), and each cut freezes the process,
// cuts the power, kills it, and restarts ctxd on a new mount of what
// survived, on the same address. Porcupine checks the whole history: an
// acknowledged write outlives the cut, and a write in flight took effect
// whole or not at all.
func TestLinearizableAcrossPowerCuts(t *testing.T) {
	if err := powerfs.Available(); err != nil {
		t.Skip("power cuts need FUSE: " + err.Error())
	}
	const (
		cuts     = 2
		segment  = 600 // operations between cuts, and after the last
		totalOps = (cuts + 1) * segment
	)
	seed := time.Now().UnixNano() % 1_000_000
	t.Logf("seed %d", seed)
	fs := powerfs.MountT(t, powerfs.Options{Mode: powerfs.Torn, Seed: seed})
	p := testkit.StartServe(t, ctxdBin, filepath.Join(fs.Dir(), "data"), testkit.ServeOptions{})
	addr := p.Addr

	rec := linearize.NewRecorder()
	w := linearize.Workload{URLs: []string{p.URL}, Clients: 8, Keys: linearize.DefaultKeys(4), Ops: totalOps, Seed: uint64(seed)}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	done := startWorkload(ctx, w, rec)
	for i := 1; i <= cuts; i++ {
		testkit.Eventually(t, func() bool { return rec.Len() >= i*segment }, "%d operations", i*segment)
		// Stopped first, so that no answer leaves the process after the
		// cut: what it answered, it answered with the power on.
		p.Signal(syscall.SIGSTOP)
		report, err := fs.Cut()
		require.NoError(t, err)
		p.Kill()
		survivors := filepath.Join(t.TempDir(), "survivors")
		require.NoError(t, fs.WriteSurvivors(survivors))
		require.NoError(t, fs.Unmount())
		t.Logf("cut %d: %v", i, report)
		fs = powerfs.MountT(t, powerfs.Options{Mode: powerfs.Torn, Seed: seed + int64(i), From: survivors})
		p = testkit.StartServe(t, ctxdBin, filepath.Join(fs.Dir(), "data"), testkit.ServeOptions{Addr: addr})
	}
	res := <-done
	require.NoError(t, res.err)
	t.Logf("workload: %v, %d power cuts", res.stats, cuts)
	require.Positive(t, res.stats.Unknown, "no write was cut off by a power cut: the test proved less than it claims")
	linearize.Check(t, rec.History(), linearize.DefaultTimeout)
}

// workloadResult is what a workload run in the background returns.
type workloadResult struct {
	stats linearize.Stats
	err   error
}

// startWorkload runs w in the background, recording into rec, and
// returns the channel its result comes on.
func startWorkload(ctx context.Context, w linearize.Workload, rec *linearize.Recorder) <-chan workloadResult {
	done := make(chan workloadResult, 1)
	go func() {
		s, err := w.Run(ctx, rec)
		done <- workloadResult{s, err}
	}()
	return done
}

// TestLinearizeFindsFaultyServer is the negative control against a real
// server: the same workload through a proxy in front of the binary that
// serves stale reads, or acknowledges puts it never forwards, must give a
// history the checker refuses. A checker that cannot fail proves nothing.
func TestLinearizeFindsFaultyServer(t *testing.T) {
	for _, mode := range []faultMode{staleReads, droppedWrites} {
		t.Run(string(mode), func(t *testing.T) {
			p := testkit.StartServe(t, ctxdBin, t.TempDir(), testkit.ServeOptions{})
			proxy := newFaultyProxy(t, p.URL, mode)
			defer proxy.transport.CloseIdleConnections()
			front := httptest.NewServer(proxy)
			defer front.Close()

			rec := linearize.NewRecorder()
			w := linearize.Workload{URLs: []string{front.URL}, Clients: 4, Keys: linearize.DefaultKeys(2), Ops: 600, Seed: 7}
			stats, err := w.Run(context.Background(), rec)
			require.NoError(t, err)
			faults := proxy.count()
			t.Logf("workload: %v; %d faults served", stats, faults)
			require.Positive(t, faults, "the proxy served no fault: the control proves nothing")

			r := linearize.Verify(rec.History(), linearize.DefaultTimeout)
			t.Logf("linearizability: %v", r)
			require.Equal(t, porcupine.Illegal, r.Verdict, "the checker missed %d %s", faults, mode)
			path := filepath.Join(t.TempDir(), "history.html")
			require.NoError(t, r.Visualize(path))
			fi, err := os.Stat(path)
			require.NoError(t, err)
			require.Positive(t, fi.Size())
		})
	}
}

type faultMode string

const (
	// staleReads: the proxy keeps the answer of a GET; when a PUT or
	// DELETE of that key that came well after it is acknowledged, the
	// next GET well after that acknowledgement gets the kept answer: a
	// read older than a write that finished before it began.
	staleReads faultMode = "stale reads"
	// droppedWrites: every fifth PUT without If-Match is answered 200
	// with the record it would have made (the current version + 1) and
	// never forwarded: an acknowledged write lost.
	droppedWrites faultMode = "dropped writes"

	// maxFaults is how many faults the proxy serves: a few, so that the
	// control shows the checker finds a rare fault, not a flood of them.
	maxFaults = 1
	// margin separates the events a fault is built from, so that its
	// operations are ordered in real time at the clients as they are at
	// the proxy (the clients record their times just before sending and
	// just after the answer).
	margin = 50 * time.Millisecond
)

// faultyProxy is a test-only HTTP proxy in front of a ctxd server that
// breaks its promises on purpose (ctxd itself has no such option).
type faultyProxy struct {
	t         testing.TB
	upstream  string
	mode      faultMode
	transport *http.Transport // to the server
	rp        *httputil.ReverseProxy

	mu     sync.Mutex
	keys   map[string]*proxyKey // by the request's escaped path
	puts   int
	faults int
}

// proxyKey is what the stale-read proxy knows of one key.
type proxyKey struct {
	body     []byte    // a GET's answer (200) kept, nil: none
	cachedAt time.Time // when it was sent back
	ackedAt  time.Time // when a later write was acknowledged; zero: none yet
}

func newFaultyProxy(t testing.TB, upstream string, mode faultMode) *faultyProxy {
	u, err := url.Parse(upstream)
	require.NoError(t, err)
	f := &faultyProxy{t: t, upstream: upstream, mode: mode, keys: map[string]*proxyKey{},
		transport: http.DefaultTransport.(*http.Transport).Clone(), rp: httputil.NewSingleHostReverseProxy(u)}
	f.rp.Transport = f.transport
	return f
}

func (f *faultyProxy) count() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.faults
}

func (f *faultyProxy) key(path string) *proxyKey {
	k := f.keys[path]
	if k == nil {
		k = &proxyKey{}
		f.keys[path] = k
	}
	return k
}

func (f *faultyProxy) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	path, arrived := r.URL.EscapedPath(), time.Now()
	switch {
	case f.mode == staleReads && r.Method == http.MethodGet:
		f.mu.Lock()
		k := f.key(path)
		if !k.ackedAt.IsZero() && arrived.After(k.ackedAt.Add(margin)) && f.faults < maxFaults {
			f.faults++
			body := k.body
			*k = proxyKey{} // keep another answer later
			f.mu.Unlock()
			w.Header().Set("Content-Type", "application/json")
			_, _ = w.Write(body)
			return
		}
		f.mu.Unlock()
		rw := httptest.NewRecorder()
		f.rp.ServeHTTP(rw, r)
		copyResponse(w, rw)
		f.mu.Lock()
		if k.body == nil && rw.Code == http.StatusOK {
			k.body, k.cachedAt = rw.Body.Bytes(), time.Now()
		}
		f.mu.Unlock()
	case f.mode == staleReads && (r.Method == http.MethodPut || r.Method == http.MethodDelete):
		rw := httptest.NewRecorder()
		f.rp.ServeHTTP(rw, r)
		copyResponse(w, rw)
		f.mu.Lock()
		if k := f.key(path); rw.Code == http.StatusOK && k.body != nil && k.ackedAt.IsZero() && arrived.After(k.cachedAt.Add(margin)) {
			k.ackedAt = time.Now()
		}
		f.mu.Unlock()
	case f.mode == droppedWrites && r.Method == http.MethodPut && r.Header.Get("If-Match") == "":
		f.mu.Lock()
		f.puts++
		drop := f.puts%5 == 0 && f.faults < maxFaults
		f.mu.Unlock()
		if !drop || !f.fakePut(w, r) {
			f.rp.ServeHTTP(w, r)
		}
	default:
		f.rp.ServeHTTP(w, r)
	}
}

// fakePut answers r as if it had been applied, without forwarding it. It
// runs in the proxy's goroutines: errors are reported with Errorf.
func (f *faultyProxy) fakePut(w http.ResponseWriter, r *http.Request) bool {
	value, err := io.ReadAll(r.Body)
	if err != nil {
		f.t.Errorf("proxy: read a put: %v", err)
		return false
	}
	r.Body = io.NopCloser(bytes.NewReader(value))
	resp, err := (&http.Client{Transport: f.transport}).Get(f.upstream + r.URL.EscapedPath())
	if err != nil {
		return false
	}
	defer resp.Body.Close()
	cur := struct {
		Key     string          `json:"key"`
		Value   json.RawMessage `json:"value"`
		Version uint64          `json:"version"`
	}{Value: value}
	switch resp.StatusCode {
	case http.StatusOK:
		if err := json.NewDecoder(resp.Body).Decode(&cur); err != nil {
			f.t.Errorf("proxy: read the current record: %v", err)
			return false
		}
		cur.Value = value
	case http.StatusNotFound:
		// version 0: the fake put creates the key
	default:
		return false
	}
	key, err := url.PathUnescape(strings.TrimPrefix(r.URL.EscapedPath(), "/v1/ns/default/keys/"))
	if err != nil {
		f.t.Errorf("proxy: the key of %s: %v", r.URL, err)
		return false
	}
	cur.Key = key
	cur.Version++
	f.mu.Lock()
	f.faults++
	f.mu.Unlock()
	w.Header().Set("Content-Type", "application/json")
	_ = json.NewEncoder(w).Encode(cur)
	return true
}

// copyResponse sends what rw recorded, and flushes it: the client has
// its answer when copyResponse returns.
func copyResponse(w http.ResponseWriter, rw *httptest.ResponseRecorder) {
	for k, v := range rw.Header() {
		w.Header()[k] = v
	}
	w.WriteHeader(rw.Code)
	_, _ = w.Write(rw.Body.Bytes())
	if fl, ok := w.(http.Flusher); ok {
		fl.Flush()
	}
}
