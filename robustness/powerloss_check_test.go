package robustness_test

import (
	"bufio"
	"bytes"
	"context"
	"encoding/binary"
	"encoding/csv"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"runtime/debug"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/gorilla/websocket"
	bbolt "go.etcd.io/bbolt"

	"github.com/framework0/ctxd"
	"github.com/framework0/ctxd/auth"
	"github.com/framework0/ctxd/client"
	"github.com/framework0/ctxd/internal/fsutil"
	"github.com/framework0/ctxd/internal/testkit"
	"github.com/framework0/ctxd/migrations"
)

// Kinds of problem a restart can show. The first three are the summary
// line's; a broken promise of another kind (a gap, a feed that differs
// from history) fails the trial too.
const (
	probLost         = "lost"         // an acknowledged write (or file) missing or different
	probUnopenable   = "unopenable"   // the server refused or crashed at start, or bbolt's check failed
	probTorn         = "torn"         // a file left half-written
	probInconsistent = "inconsistent" // anything else: a gap, the feed, kv against the log
)

// readBack is what a restarted server answers: its status, the change log
// as the history API gives it key by key, and the live keys.
type readBack struct {
	status ctxd.ServerStatus
	log    map[uint64]ctxd.Change
	revs   []uint64 // the log's revisions, sorted
	latest map[nsKey]uint64
	live   map[nsKey]ctxd.Record
}

// readState reads back everything the server holds about the keys of
// universe and every live key.
func readState(ctx context.Context, c *client.Client, universe map[nsKey]bool) (*readBack, error) {
	rb := &readBack{log: map[uint64]ctxd.Change{}, latest: map[nsKey]uint64{}, live: map[nsKey]ctxd.Record{}}
	var err error
	if rb.status, err = c.Status(ctx); err != nil {
		return nil, err
	}
	nss, err := c.Namespaces(ctx)
	if err != nil {
		return nil, err
	}
	keys := map[nsKey]bool{}
	for k := range universe {
		keys[k] = true
	}
	for _, ns := range nss {
		recs, err := c.ListAll(ctx, ns.Name, "")
		if err != nil {
			return nil, err
		}
		for _, r := range recs {
			k := nsKey{r.Namespace, r.Key}
			rb.live[k] = r
			keys[k] = true
		}
	}
	// Each key's whole history, four keys at a time.
	var (
		mu   sync.Mutex
		errs []error
		wg   sync.WaitGroup
		todo = make(chan nsKey)
	)
	for range 4 {
		wg.Go(func() {
			for k := range todo {
				changes, err := keyHistory(ctx, c, k)
				mu.Lock()
				if err != nil {
					errs = append(errs, err)
				}
				for _, ch := range changes {
					if prev, dup := rb.log[ch.Revision]; dup {
						errs = append(errs, fmt.Errorf("revision %d is in the history of %s/%s and of %s/%s",
							ch.Revision, prev.Namespace, prev.Key, ch.Namespace, ch.Key))
					}
					rb.log[ch.Revision] = ch
					rb.latest[k] = max(rb.latest[k], ch.Revision)
				}
				mu.Unlock()
			}
		})
	}
	for k := range keys {
		todo <- k
	}
	close(todo)
	wg.Wait()
	if len(errs) > 0 {
		return nil, errors.Join(errs...)
	}
	for r := range rb.log {
		rb.revs = append(rb.revs, r)
	}
	slices.Sort(rb.revs)
	return rb, nil
}

func keyHistory(ctx context.Context, c *client.Client, k nsKey) ([]ctxd.Change, error) {
	var out []ctxd.Change
	opts := client.HistoryOptions{Limit: 1000}
	for {
		page, err := c.History(ctx, k.ns, k.key, opts)
		if client.IsNotFound(err) {
			return out, nil
		}
		if err != nil {
			return nil, err
		}
		for _, ch := range page.Changes {
			if ch.Namespace != k.ns || ch.Key != k.key {
				return nil, fmt.Errorf("history of %s/%s holds revision %d of %s/%s", k.ns, k.key, ch.Revision, ch.Namespace, ch.Key)
			}
		}
		out = append(out, page.Changes...)
		if page.Next == 0 {
			return out, nil
		}
		opts.Before = page.Next
	}
}

// after returns the log's changes with a revision above rev, in order.
func (rb *readBack) after(rev uint64) []ctxd.Change {
	var out []ctxd.Change
	for _, r := range rb.revs {
		if r > rev {
			out = append(out, rb.log[r])
		}
	}
	return out
}

// anyBetween reports whether the log holds a revision strictly between a
// and b.
func (rb *readBack) anyBetween(a, b uint64) bool {
	i, _ := slices.BinarySearch(rb.revs, a+1)
	return i < len(rb.revs) && rb.revs[i] < b
}

// normJSON is v compacted, nil for a missing value or JSON null.
func normJSON(v json.RawMessage) string {
	if len(v) == 0 {
		return ""
	}
	var b bytes.Buffer
	if err := json.Compact(&b, v); err != nil {
		return "invalid:" + string(v)
	}
	if b.String() == "null" {
		return ""
	}
	return b.String()
}

func sameChange(a, b ctxd.Change) bool {
	return a.Revision == b.Revision && a.Namespace == b.Namespace && a.Key == b.Key && a.Op == b.Op &&
		a.Version == b.Version && normJSON(a.Value) == normJSON(b.Value)
}

func describe(c ctxd.Change) string {
	v := normJSON(c.Value)
	if len(v) > 40 {
		v = v[:40] + "..."
	}
	return fmt.Sprintf("r%d %s %s/%s v%d %s", c.Revision, c.Op, c.Namespace, c.Key, c.Version, v)
}

// verifier checks a restarted server against what the trial knows.
type verifier struct {
	rb       *readBack
	res      *trialResult
	restores []*restoreOp     // the last phase's full restores (they may discard changes)
	gapRevs  []uint64         // snapshot revisions of every full restore of the trial
	unknown  map[nsKey]bool   // writes whose outcome is unknown
	newest   map[nsKey]uint64 // the newest known revision of each key
}

// checkKnown checks one change the trial knows was committed: it must be
// in history as it was, unless compaction or a full restore removed it
// legitimately.
func (v *verifier) checkKnown(k known) bool {
	if got, ok := v.rb.log[k.Revision]; ok {
		if !sameChange(got, k.Change) {
			v.res.problem(probLost, "%s change %s reads back as %s", k.from, describe(k.Change), describe(got))
			return false
		}
		return true
	}
	if k.Revision < v.rb.status.CompactedRevision && v.compactedAway(k) {
		return true
	}
	if v.discarded(k) {
		return true
	}
	v.res.problem(probLost, "%s change %s is missing (revision now %d, compacted %d)",
		k.from, describe(k.Change), v.rb.status.Revision, v.rb.status.CompactedRevision)
	return false
}

// compactedAway: compaction removes a change below its mark when a newer
// change of the key is at or below it, and a delete that is the key's
// newest there.
func (v *verifier) compactedAway(k known) bool {
	key := k.nsKey()
	return k.Op == ctxd.OpDelete || v.rb.latest[key] > k.Revision || v.newest[key] > k.Revision || v.unknown[key]
}

// discarded: a full restore from a snapshot at revision s drops the
// revisions after s up to its swap. It may have dropped k if it ended (or
// never answered) after k's request was sent and the log holds nothing
// between s and k (the log keeps s and below, then what came after the
// swap).
func (v *verifier) discarded(k known) bool {
	for _, r := range v.restores {
		if r.snapRev < k.Revision && (r.end.IsZero() || r.end.After(k.start)) && !v.rb.anyBetween(r.snapRev, k.Revision) {
			return true
		}
	}
	return false
}

// checkState: each key's newest change in history is what the key holds
// now (a put: that value and version; a delete: the key is absent).
func (v *verifier) checkState() {
	rb := v.rb
	for k, rev := range rb.latest {
		ch := rb.log[rev]
		rec, live := rb.live[k]
		switch {
		case ch.Op == ctxd.OpDelete && live:
			v.res.problem(probInconsistent, "%s/%s is live (r%d) but its last change is %s", k.ns, k.key, rec.ModRev, describe(ch))
		case ch.Op == ctxd.OpPut && !live:
			v.res.problem(probInconsistent, "%s/%s is absent but its last change is %s", k.ns, k.key, describe(ch))
		case ch.Op == ctxd.OpPut && (rec.ModRev != rev || rec.Version != ch.Version || normJSON(rec.Value) != normJSON(ch.Value)):
			v.res.problem(probInconsistent, "%s/%s holds r%d v%d but its last change is %s", k.ns, k.key, rec.ModRev, rec.Version, describe(ch))
		}
	}
	for k, rec := range rb.live {
		if _, ok := rb.latest[k]; !ok {
			v.res.problem(probInconsistent, "%s/%s is live (r%d) with no history", k.ns, k.key, rec.ModRev)
		}
	}
}

// checkGaps: from the compacted revision on, every revision up to the
// current one is in the log, except the revisions a full restore
// discarded (after its snapshot's revision).
func (v *verifier) checkGaps() {
	rb := v.rb
	c := rb.status.CompactedRevision
	allowed := func(a, b uint64) bool { // the revisions strictly between a and b are absent
		for _, s := range v.gapRevs {
			if a <= s && s < b {
				return true
			}
		}
		return false
	}
	first := max(c, 1) // the log is whole from here on
	prev := first - 1
	for _, r := range rb.revs {
		if r > rb.status.Revision {
			v.res.problem(probInconsistent, "revision %d is in the log but the current revision is %d", r, rb.status.Revision)
		}
		if r < first {
			continue
		}
		if r > prev+1 && !allowed(prev, r) {
			v.res.problem(probInconsistent, "revisions %d to %d are missing from the log", prev+1, r-1)
		}
		prev = r
	}
	if rb.status.Revision > prev && !allowed(prev, rb.status.Revision+1) {
		v.res.problem(probInconsistent, "revisions %d to %d (the current revision) are missing from the log", prev+1, rb.status.Revision)
	}
}

// checkFeed: /v1/watch?from_rev=from answers exactly the log's changes
// after from, in order.
func checkFeed(ctx context.Context, base string, from uint64, want []ctxd.Change) error {
	u := strings.Replace(base, "http://", "ws://", 1) + "/v1/watch?ns=*&from_rev=" + strconv.FormatUint(from, 10)
	d := &websocket.Dialer{HandshakeTimeout: 10 * time.Second}
	conn, resp, err := testkit.DialWatchErrWith(d, u, nil)
	if resp != nil && resp.Body != nil {
		resp.Body.Close()
	}
	if err != nil {
		return fmt.Errorf("watch from %d: %w", from, err)
	}
	defer conn.Close()
	stop := context.AfterFunc(ctx, func() { conn.Close() })
	defer stop()
	ws := &testkit.WS{Conn: conn}
	first, err := ws.NextErr()
	if err != nil {
		return fmt.Errorf("watch from %d: %w", from, err)
	}
	if first.Type != ctxd.TypeSubscribed {
		return fmt.Errorf("watch from %d: first message %s %s %s", from, first.Type, first.Code, first.Message)
	}
	for i, w := range want {
		f, err := ws.NextErr()
		if err != nil {
			return fmt.Errorf("watch from %d: after %d of %d changes: %w", from, i, len(want), err)
		}
		if f.Type != ctxd.TypeContextUpdated {
			return fmt.Errorf("watch from %d: after %d of %d changes: a %s message (%s %s)", from, i, len(want), f.Type, f.Code, f.Message)
		}
		op := ctxd.OpPut
		if f.Op == "delete" {
			op = ctxd.OpDelete
		}
		got := ctxd.Change{Revision: f.Rev, Namespace: f.NS, Key: f.Key, Op: op, Version: f.Version, Value: f.Value}
		if !sameChange(got, w) {
			return fmt.Errorf("watch from %d: change %d is %s, history has %s", from, i, describe(got), describe(w))
		}
	}
	return nil
}

// checkFiles checks what a restarted ctxd keeps beside the database:
// every snapshot listed verifies and every acknowledged one is listed,
// every dump file parses whole and every acknowledged one is there, the
// tokens file parses and holds every acknowledged token, and no temporary
// file is left.
func (tr *trial) checkFiles(ctx context.Context, c *client.Client, root string) {
	res := tr.res
	listed, err := c.Snapshots(ctx)
	if err != nil {
		res.problem(probInconsistent, "list snapshots: %v", err)
	}
	ids := map[string]bool{}
	for _, s := range listed {
		ids[s.ID] = true
		if _, err := c.RestoreSnapshot(ctx, s.ID, ctxd.RestoreOptions{DryRun: true}); err != nil {
			res.problem(probTorn, "snapshot %s (revision %d) does not verify: %v", s.ID, s.Revision, err)
		}
	}
	for id, want := range tr.snapshots {
		switch {
		case want == snapListed && !ids[id]:
			res.problem(probLost, "acknowledged snapshot %s is not listed", id)
		case want == snapGone && ids[id]:
			res.problem(probInconsistent, "snapshot %s is listed after its delete was acknowledged", id)
		}
	}
	tr.snapshots = map[string]snapWant{}
	for id := range ids {
		tr.snapshots[id] = snapListed
	}
	// On disk: every metadata file whole and listed, every snapshot file
	// with its metadata (the server removes the others when it starts).
	snapDir := filepath.Join(root, "data", "snapshots")
	entries, err := os.ReadDir(snapDir)
	if err != nil && !errors.Is(err, fs.ErrNotExist) {
		res.problem(probInconsistent, "read the snapshots folder: %v", err)
	}
	for _, e := range entries {
		name := e.Name()
		switch filepath.Ext(name) {
		case ".json":
			var meta ctxd.SnapshotMeta
			data, err := os.ReadFile(filepath.Join(snapDir, name))
			if err == nil {
				err = json.Unmarshal(data, &meta)
			}
			if err != nil || meta.ID+".json" != name {
				res.problem(probTorn, "snapshot metadata %s (%d bytes) is not whole: %v", name, len(data), err)
			} else if !ids[meta.ID] {
				res.problem(probTorn, "snapshot metadata %s is on disk but not listed", name)
			}
		case ".db":
			if _, err := os.Stat(filepath.Join(snapDir, strings.TrimSuffix(name, ".db")+".json")); err != nil {
				res.problem(probTorn, "snapshot file %s is left without its metadata after the start", name)
			}
		}
	}

	dumpDir := filepath.Join(root, "data", "dumps")
	entries, err = os.ReadDir(dumpDir)
	if err != nil && !errors.Is(err, fs.ErrNotExist) {
		res.problem(probInconsistent, "read the dump folder: %v", err)
	}
	present := map[string]int64{}
	for _, e := range entries {
		if !e.Type().IsRegular() || fsutil.IsTemp(e.Name()) || e.Name() == fsutil.WritersLock {
			continue // temp files: see leftovers below; the folder's lock file
		}
		info, err := e.Info()
		if err != nil {
			res.problem(probInconsistent, "dump %s: %v", e.Name(), err)
			continue
		}
		present[e.Name()] = info.Size()
		if err := parseDump(filepath.Join(dumpDir, e.Name())); err != nil {
			res.problem(probTorn, "dump %s (%d bytes) is not whole: %v", e.Name(), info.Size(), err)
		}
	}
	for name, size := range tr.dumps {
		got, ok := present[name]
		switch {
		case !ok:
			res.problem(probLost, "acknowledged dump %s is missing", name)
		case size >= 0 && got != size:
			res.problem(probLost, "acknowledged dump %s has %d bytes, the answer said %d", name, got, size)
		}
	}
	tr.dumps = map[string]int64{}
	for name := range present {
		tr.dumps[name] = -1 // its size may change: a named dump can be replaced
	}

	if data, err := os.ReadFile(filepath.Join(root, tokensFile)); err == nil {
		ts, err := auth.ParseTokens(data)
		if err != nil {
			res.problem(probTorn, "the tokens file (%d bytes) does not parse: %v", len(data), err)
		} else {
			for name, secret := range tr.tokens {
				if ts.Lookup(secret) == nil {
					res.problem(probLost, "acknowledged token %s is not in the tokens file", name)
				}
			}
		}
	} else if len(tr.tokens) > 0 {
		res.problem(probLost, "the tokens file is missing (%d tokens acknowledged): %v", len(tr.tokens), err)
	}

	_ = filepath.WalkDir(filepath.Join(root, "data"), func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			res.problem(probInconsistent, "walk the data folder: %v", err)
			return nil
		}
		name := d.Name()
		if path == filepath.Join(root, "data", "wal", "spare.tmp") {
			return nil // the log's next segment, prepared while the server runs (store/wal)
		}
		if fsutil.IsTemp(name) || strings.HasSuffix(name, ".tmp") || strings.HasSuffix(name, ".swap-backup") {
			res.problem(probTorn, "%s is left after the start", strings.TrimPrefix(path, root+"/"))
		}
		return nil
	})
}

var txtHeader = regexp.MustCompile(`^# ctxd dump of namespace \S+ at revision \d+$`)

// parseDump reads a dump file whole by its extension: JSON, CSV or TXT.
func parseDump(path string) error {
	data, err := os.ReadFile(path)
	if err != nil {
		return err
	}
	switch filepath.Ext(path) {
	case ".json":
		var d struct {
			Context      map[string]json.RawMessage `json:"context"`
			KeyCount     *int                       `json:"key_count"`
			History      []json.RawMessage          `json:"history"`
			HistoryCount *int                       `json:"history_count"`
		}
		if err := json.Unmarshal(data, &d); err != nil {
			return err
		}
		if d.KeyCount == nil || *d.KeyCount != len(d.Context) {
			return fmt.Errorf("key_count %v for %d keys", d.KeyCount, len(d.Context))
		}
		if d.HistoryCount != nil && *d.HistoryCount != len(d.History) {
			return fmt.Errorf("history_count %d for %d changes", *d.HistoryCount, len(d.History))
		}
	case ".csv":
		if !bytes.HasSuffix(data, []byte("\r\n")) {
			return errors.New("the last line does not end with CRLF")
		}
		rows, err := csv.NewReader(bytes.NewReader(data)).ReadAll()
		if err != nil {
			return err
		}
		if len(rows) == 0 || rows[0][0] != "Key" {
			return errors.New("no header")
		}
	case ".txt":
		sc := bufio.NewScanner(bytes.NewReader(data))
		sc.Buffer(make([]byte, 64<<10), 4<<20)
		var lines []string
		for sc.Scan() {
			lines = append(lines, sc.Text())
		}
		if err := sc.Err(); err != nil {
			return err
		}
		if !bytes.HasSuffix(data, []byte("\n")) || len(lines) < 3 || !txtHeader.MatchString(lines[0]) {
			return errors.New("no header or no final line break")
		}
		var n int
		if _, err := fmt.Sscanf(lines[len(lines)-1], "# %d keys", &n); err != nil || n != len(lines)-3 {
			return fmt.Errorf("last line %q for %d key lines", lines[len(lines)-1], len(lines)-3)
		}
	default:
		return fmt.Errorf("unexpected dump file %s", filepath.Base(path))
	}
	return nil
}

// boltCheckEnv names the database file a child of the test binary checks
// (TestMain).
const boltCheckEnv = "CTXD_ROBUSTNESS_BOLT_CHECK"

// checkBoltRaw runs bbolt's consistency check on a copy of the database
// file a power cut left, before any ctxd opens it, and returns the last
// write-ahead log record the file holds (meta/wal_seq). It runs in a child
// process: bbolt panics on some damaged files in a goroutine of its own
// (rebuilding the freelist), which no recover can catch.
func checkBoltRaw(path, scratch string) (uint64, error) {
	if _, err := os.Stat(path); err != nil {
		return 0, nil // no database yet: nothing to check (the restart shows what is lost)
	}
	cp := filepath.Join(scratch, "check.db")
	if err := copyFile(cp, path); err != nil {
		return 0, err
	}
	defer os.Remove(cp)
	cmd := exec.Command(os.Args[0], "-test.run=^$")
	// GORACE: a binary built with -race sleeps a second before it exits.
	cmd.Env = append(os.Environ(), boltCheckEnv+"="+cp, "GORACE=atexit_sleep_ms=0")
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		msg := strings.TrimSpace(stderr.String() + stdout.String())
		if len(msg) > 600 {
			msg = msg[:600] + "..."
		}
		return 0, fmt.Errorf("%v: %s", err, msg)
	}
	var seq uint64
	for _, line := range strings.Split(stdout.String(), "\n") {
		if v, ok := strings.CutPrefix(line, "wal_seq="); ok {
			n, err := strconv.ParseUint(v, 10, 64)
			if err != nil {
				return 0, fmt.Errorf("bbolt check: %q: %w", line, err)
			}
			seq = n
		}
	}
	return seq, nil
}

// boltCheckChild opens the database at path as ctxd does and runs bbolt's
// consistency check; it prints what is wrong and returns 1, or prints
// wal_seq=<meta/wal_seq> and returns 0.
func boltCheckChild(path string) int {
	debug.SetPanicOnFault(true)
	db, err := bbolt.Open(path, 0o600, &bbolt.Options{Timeout: time.Second, NoFreelistSync: true, FreelistType: bbolt.FreelistMapType})
	if err != nil {
		fmt.Fprintln(os.Stderr, "open:", err)
		return 1
	}
	defer db.Close()
	var problems []string
	var seq uint64
	err = db.View(func(tx *bbolt.Tx) error {
		for err := range tx.Check() {
			problems = append(problems, err.Error())
		}
		if meta := tx.Bucket(migrations.BucketMeta); meta != nil {
			if v := meta.Get(migrations.KeyWALSeq); len(v) == 8 {
				seq = binary.BigEndian.Uint64(v)
			}
		}
		return nil
	})
	if err == nil && len(problems) > 0 {
		err = errors.New(strings.Join(problems, "; "))
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "consistency check:", err)
		return 1
	}
	fmt.Printf("wal_seq=%d\n", seq)
	return 0
}

func copyFile(dst, src string) error {
	in, err := os.Open(src)
	if err != nil {
		return err
	}
	defer in.Close()
	out, err := os.Create(dst)
	if err != nil {
		return err
	}
	if _, err := io.Copy(out, in); err != nil {
		out.Close()
		return err
	}
	return out.Close()
}

// crashMarks are what a Go program that crashed writes to stderr.
var crashMarks = []string{"panic", "SIGBUS", "fatal error"}

func crashed(log string) string {
	for _, m := range crashMarks {
		if i := strings.Index(log, m); i >= 0 {
			end := min(len(log), i+200)
			return log[i:end]
		}
	}
	return ""
}
