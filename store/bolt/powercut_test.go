package bolt_test

import (
	"bufio"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/framework0/ctxd"
	"github.com/framework0/ctxd/internal/powerfs"
	"github.com/framework0/ctxd/internal/testkit"
	"github.com/framework0/ctxd/store"
	"github.com/framework0/ctxd/store/bolt"
	"github.com/framework0/ctxd/store/wal"
)

// The store on a power-loss file system (internal/powerfs): a child
// process runs a write workload on the mount and prints each write it was
// acknowledged; the power goes off just before the file system's N-th
// change, for N from 1 (creating the folder) until the workload ends; the
// survivors are opened as the next start would, and every acknowledged
// write must be there, at its revision, in a file bbolt's check passes.

// Environment of the child process (TestMain).
const (
	powerChildEnv = "CTXD_BOLT_POWER_CHILD" // the database path
	// powerEarlyEnv makes the child print a write as acknowledged before
	// it is made: the negative control, whose acknowledged writes a cut
	// can take back.
	powerEarlyEnv = "CTXD_BOLT_POWER_EARLY"
)

// powerOptions: small log segments and an eager committer, so that a
// short workload rotates segments, prepares spares, commits batches to
// bbolt and releases segments many times.
func powerOptions() bolt.Options {
	return bolt.Options{
		WALSegmentSize: wal.MinSegmentSize,
		CommitInterval: time.Millisecond,
		CommitChanges:  8,
		Limits:         ctxd.Limits{MaxTxnOps: 16},
	}
}

// powerAck is one acknowledged write, as the child prints it:
// "ack <rev> <ns> <key> <value>" (value "-" for a delete).
type powerAck struct {
	rev     uint64
	ns, key string
	value   string // "" for a delete
}

func (a powerAck) String() string {
	v := a.value
	if v == "" {
		v = "-"
	}
	return fmt.Sprintf("ack %d %s %s %s", a.rev, a.ns, a.key, v)
}

// powerWorkers write concurrently, each powerOps operations.
const (
	powerWorkers = 3
	powerOps     = 30
)

// powerChild runs the workload on the database at path and returns the
// exit code: 0 when it completed, 1 at the first failure (the power is
// out), printing each acknowledged write on stdout.
func powerChild(path string, early bool) int {
	s, err := bolt.Open(path, powerOptions())
	if err != nil {
		fmt.Fprintln(os.Stderr, "open:", err)
		return 1
	}
	var mu sync.Mutex
	ack := func(a powerAck) {
		mu.Lock()
		defer mu.Unlock()
		fmt.Println(a)
	}
	fail := func(err error) {
		mu.Lock()
		fmt.Fprintln(os.Stderr, "failed:", err)
		// A failed log append or commit stops the store's writes. (The
		// failure seen may have been a read's, a snapshot's: then the
		// first write finds the store's.)
		_, _ = s.Put(ctx, "after", "k", json.RawMessage(`1`), nil, "p")
		_, err = s.Put(ctx, "after", "k", json.RawMessage(`1`), nil, "p")
		fmt.Fprintf(os.Stderr, "then: unavailable %v: %v\n", errors.Is(err, ctxd.ErrUnavailable), err)
		fmt.Fprintf(os.Stderr, "ready: %v\n", s.Ready())
		os.Exit(1) // no Close: the file system is gone
	}
	workers := powerWorkers
	if early {
		workers = 1 // so that the revision a write will get is known
	}
	var wg sync.WaitGroup
	for w := range workers {
		wg.Go(func() {
			ns := fmt.Sprintf("n%d", w)
			live := map[string]bool{}
			for i := range powerOps {
				var writes []ctxd.Write
				switch {
				case i%7 == 6: // a transaction of three puts
					for j := range 3 {
						writes = append(writes, ctxd.Write{Namespace: ns, Key: fmt.Sprintf("t%d", j), Op: ctxd.OpPut, Who: "p",
							Value: json.RawMessage(fmt.Sprintf(`{"w":%d,"i":%d,"pad":%q}`, w, i, strings.Repeat("x", 100+20*j)))})
					}
				case i%5 == 4 && live[fmt.Sprintf("k%d", i%3)]:
					writes = []ctxd.Write{{Namespace: ns, Key: fmt.Sprintf("k%d", i%3), Op: ctxd.OpDelete, Who: "p"}}
				default:
					writes = []ctxd.Write{{Namespace: ns, Key: fmt.Sprintf("k%d", i%3), Op: ctxd.OpPut, Who: "p",
						Value: json.RawMessage(fmt.Sprintf(`{"w":%d,"i":%d,"pad":%q}`, w, i, strings.Repeat("y", 50+13*i)))}}
				}
				if early {
					// The negative control: "acknowledged" before it is
					// made, at the revision it will most likely get.
					for j, wr := range writes {
						ack(powerAck{rev: s.Revision() + 1 + uint64(j), ns: ns, key: wr.Key, value: string(wr.Value)})
					}
				}
				res, err := s.Txn(ctx, writes)
				if err != nil {
					fail(err)
				}
				for j, wr := range writes {
					live[wr.Key] = wr.Op == ctxd.OpPut
					if !early {
						ack(powerAck{rev: res.Records[j].ModRev, ns: ns, key: wr.Key, value: string(wr.Value)})
					}
				}
				if w == 0 && i%10 == 9 {
					// A checkpoint: the committer catches up, the
					// segments it applied are released. (A view, not a
					// snapshot: bbolt's WriteTo opens the file again, and
					// on powerfs, whose files are not opened with
					// FOPEN_KEEP_CACHE, an open drops the page cache under
					// the committer's writes in flight, which then reads
					// stale pages through its map: bbolt panics on pages of
					// zeros, or commits a tree built on them. The same
					// workload with snapshots on ext4 checked clean 40
					// times out of 40 under -race; on powerfs with a view,
					// 100 out of 100.)
					if err := s.View(func(store.View) error { return nil }); err != nil {
						fail(err)
					}
				}
			}
		})
	}
	wg.Wait()
	if err := s.Close(); err != nil {
		fmt.Fprintln(os.Stderr, "close:", err)
		return 1
	}
	fmt.Println("done")
	return 0
}

// powerRun is what the child did before the power went out, and what
// the next Open found.
type powerRun struct {
	acked    []powerAck
	done     bool // the workload finished before the cut
	refused  bool // the child saw the store refuse a write after its failure
	recovery bolt.Recovery
}

// powerCut runs the child on a mount that cuts the power just before its
// cut-th change (torn writes, seeded with cut), then opens the survivors
// and returns the acknowledged writes that are not there (or an error
// opening them).
func powerCut(t *testing.T, cut int, early bool) (powerRun, []string, error) {
	t.Helper()
	fs := powerfs.MountT(t, powerfs.Options{Mode: powerfs.Torn, Seed: int64(cut), CutAfter: cut})
	path := filepath.Join(fs.Dir(), "data", "ctxd.db")
	cmd := exec.Command(os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(), powerChildEnv+"="+path)
	if early {
		cmd.Env = append(cmd.Env, powerEarlyEnv+"=1")
	}
	var stderr testkit.SyncBuffer
	cmd.Stderr = &stderr
	stdout, err := cmd.StdoutPipe()
	require.NoError(t, err)
	require.NoError(t, cmd.Start())
	var run powerRun
	sc := bufio.NewScanner(stdout)
	for sc.Scan() {
		var a powerAck
		var value string
		if _, err := fmt.Sscanf(sc.Text(), "ack %d %s %s %s", &a.rev, &a.ns, &a.key, &value); err == nil {
			if value != "-" {
				a.value = value
			}
			run.acked = append(run.acked, a)
		} else if sc.Text() == "done" {
			run.done = true
		}
	}
	_ = cmd.Wait()
	if !run.done {
		// The child stopped at its first failure, or died: of a SIGBUS
		// reading its map, or in bbolt on pages that failed writes left
		// half changed in the page cache (a failed write transaction is
		// rolled back by walking the pages it reaches). Any of it is
		// fine once the power is out, and a bug before: a read of the
		// mount reaches the file system, which fails only after the cut.
		_, err := os.ReadDir(fs.Dir())
		require.Error(t, err, "cut %d: the child stopped while the power was on:\n%s", cut, stderr.String())
	}
	// The child may die (see above) between these lines.
	if strings.Contains(stderr.String(), "then: ") {
		run.refused = true
		require.Contains(t, stderr.String(), "then: unavailable true", "cut %d: a failed store refuses writes", cut)
	}
	if strings.Contains(stderr.String(), "ready: ") {
		require.Regexp(t, "ready: .*takes no more writes", stderr.String(), "cut %d: and is not ready", cut)
	}
	_, err = fs.Cut()
	require.NoError(t, err)
	out := t.TempDir()
	require.NoError(t, fs.WriteSurvivors(out))
	require.NoError(t, fs.Unmount())

	dbPath := filepath.Join(out, "data", "ctxd.db")
	if _, err := os.Stat(dbPath); os.IsNotExist(err) {
		// The power went out before the database file was durable:
		// nothing can have been acknowledged.
		return run, lostOf(run.acked, nil), nil
	}
	// Every commit wrote bbolt's freelist, so the file the cut left has
	// one: the open reads it instead of walking the file (and bbolt's
	// Check below finds it agrees with the pages in use).
	// (An empty file is a new one whose first pages never reached the
	// disk: the open makes it anew.)
	if fi, err := os.Stat(dbPath); err == nil && fi.Size() > 0 {
		persisted, err := bolt.FreelistPersisted(dbPath)
		require.NoError(t, err, "cut %d", cut)
		require.True(t, persisted, "cut %d: the file has its freelist", cut)
	}
	s, err := bolt.Open(dbPath, bolt.Options{})
	if err != nil {
		return run, nil, err
	}
	run.recovery = s.Recovery()
	lost := lostOf(run.acked, s)
	// The change feed has every revision, in order, with no gap.
	var prev uint64
	for {
		changes, err := s.ReadLog(prev, 1000)
		require.NoError(t, err)
		if len(changes) == 0 {
			break
		}
		for _, c := range changes {
			require.Equal(t, prev+1, c.Revision, "cut %d: the log has no gap", cut)
			prev = c.Revision
		}
	}
	require.Equal(t, s.Revision(), prev, "cut %d", cut)
	require.NoError(t, s.Check(), "cut %d", cut)
	// The recovered store takes writes, and keeps them.
	r, err := s.Put(ctx, "after", "k", json.RawMessage(`1`), nil, "t")
	require.NoError(t, err, "cut %d", cut)
	require.NoError(t, s.Close())
	snap, err := bolt.OpenSnapshot(dbPath)
	require.NoError(t, err)
	require.NoError(t, snap.Verify(), "cut %d: records, history and key counts agree", cut)
	require.NoError(t, snap.Close())
	s, err = bolt.Open(dbPath, bolt.Options{})
	require.NoError(t, err)
	got, err := s.Get("after", "k")
	require.NoError(t, err)
	require.Equal(t, r.ModRev, got.ModRev)
	require.NoError(t, s.Close())
	return run, lost, nil
}

// lostOf returns the acknowledged writes that s does not have at their
// revision (all of them when s is nil).
func lostOf(acked []powerAck, s *bolt.Store) []string {
	var lost []string
	for _, a := range acked {
		if s == nil {
			lost = append(lost, a.String())
			continue
		}
		rec, err := s.GetAt(a.ns, a.key, a.rev)
		switch {
		case a.value == "" && errorIsNotFound(err):
		case a.value != "" && err == nil && rec.ModRev == a.rev && string(rec.Value) == a.value:
		default:
			lost = append(lost, fmt.Sprintf("%s (found %s at %d: %v)", a, rec.Value, rec.ModRev, err))
		}
	}
	return lost
}

func errorIsNotFound(err error) bool { return errors.Is(err, ctxd.ErrNotFound) }

// TestPowerCutKeepsAcknowledgedWrites cuts the power before every 10th
// change the store makes to its files (CTXD_POWERCUT_STEP=1: every one,
// as `make powerloss` runs it; every 29th with -short), one cut per
// mount: while it creates its folders, files and log segments, between
// each log append and its fdatasync, while a spare segment is prepared
// and renamed in, inside the committer's bbolt commits, while segments
// are released. Unsynced changes may survive in part, torn at 512-byte
// sectors, in any order. Every time, the survivors open (replaying the
// log), hold every acknowledged write at its revision, have a gap-free
// change log, pass bbolt's check and ctxd's own, and take new writes.
func TestPowerCutKeepsAcknowledgedWrites(t *testing.T) {
	if err := powerfs.Available(); err != nil {
		t.Skip(err)
	}
	step := 10
	if testing.Short() {
		step = 29
	}
	if env := os.Getenv("CTXD_POWERCUT_STEP"); env != "" {
		n, err := strconv.Atoi(env)
		require.NoError(t, err, "CTXD_POWERCUT_STEP")
		require.Positive(t, n, "CTXD_POWERCUT_STEP")
		step = n
	}
	var cuts, acked, replayed, torn, refused int
	for cut := 1; ; cut += step {
		run, lost, err := powerCut(t, cut, false)
		require.NoError(t, err, "cut %d: the survivors do not open", cut)
		require.Empty(t, lost, "cut %d: acknowledged writes lost", cut)
		cuts++
		acked += len(run.acked)
		if run.recovery.Records > 0 {
			replayed++
		}
		if run.recovery.Log.CutFile != "" {
			torn++
		}
		if run.refused {
			refused++
		}
		if run.done {
			break
		}
		require.Less(t, cut, 20000, "the workload never finished")
	}
	t.Logf("%d power cuts, %d acknowledged writes checked; the next start replayed log records in %d, "+
		"cut a torn record in %d; the failed store refused the next write in %d", cuts, acked, replayed, torn, refused)
	assert.Positive(t, refused, "some cuts show the failed store refusing writes")
}

// TestPowerCutCatchesEarlyAcknowledgements is the negative control: the
// same workload, printing each write as acknowledged before it is made,
// loses acknowledged writes at some cut.
func TestPowerCutCatchesEarlyAcknowledgements(t *testing.T) {
	if err := powerfs.Available(); err != nil {
		t.Skip(err)
	}
	for cut := 20; cut < 2000; cut += 11 {
		run, lost, err := powerCut(t, cut, true)
		require.NoError(t, err)
		if len(lost) > 0 {
			t.Logf("cut %d: caught (%d lost of %d acknowledged, e.g. %s)", cut, len(lost), len(run.acked), lost[0])
			return
		}
		if run.done {
			break
		}
	}
	assert.Fail(t, "no cut lost a write acknowledged before it was made")
}
