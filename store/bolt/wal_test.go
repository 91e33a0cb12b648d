package bolt_test

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"math/rand/v2"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/framework0/ctxd"
	"github.com/framework0/ctxd/internal/testkit"
	"github.com/framework0/ctxd/migrations"
	"github.com/framework0/ctxd/store"
	"github.com/framework0/ctxd/store/bolt"
	"github.com/framework0/ctxd/store/wal"
)

// lazy is a committer that applies changes to bbolt only when a
// checkpoint asks: what is written stays in the overlay (and the log).
var lazy = bolt.Options{CommitInterval: time.Hour, CommitChanges: 1 << 20}

// answers is everything the direct reads say about a store, to compare
// one state read in two ways.
type answers struct {
	Revision   uint64
	Keys       map[string]string // ns/key: value@modrev
	Pages      [][]string        // list pages of 3, per namespace
	Prefixed   []string
	History    [][]uint64 // history pages of 2
	At         map[uint64]string
	Namespaces []ctxd.Namespace
	StatusKeys uint64
	Log        []uint64
	LogPages   [][]uint64
}

func readAnswers(t *testing.T, s *bolt.Store) answers {
	t.Helper()
	a := answers{Revision: s.Revision(), Keys: map[string]string{}, At: map[uint64]string{}}
	nss, err := s.Namespaces()
	require.NoError(t, err)
	a.Namespaces = nss
	for _, ns := range nss {
		after := ""
		for {
			p, err := s.List(ns.Name, ctxd.ListOptions{After: after, Limit: 3})
			require.NoError(t, err)
			var keys []string
			for _, r := range p.Records {
				keys = append(keys, r.Key)
				a.Keys[ns.Name+"/"+r.Key] = fmt.Sprintf("%s@%d", r.Value, r.ModRev)
				got, err := s.Get(ns.Name, r.Key)
				require.NoError(t, err)
				assert.Equal(t, r, got, "get %s/%s gives what the list gave", ns.Name, r.Key)
			}
			a.Pages = append(a.Pages, keys)
			if p.Next == "" {
				break
			}
			after = p.Next
		}
	}
	p, err := s.List("n", ctxd.ListOptions{Prefix: "a1"})
	require.NoError(t, err)
	for _, r := range p.Records {
		a.Prefixed = append(a.Prefixed, r.Key)
	}
	var before uint64
	for {
		h, err := s.History("n", "h", ctxd.HistoryOptions{Limit: 2, Before: before})
		require.NoError(t, err)
		var revs []uint64
		for _, c := range h.Changes {
			revs = append(revs, c.Revision)
		}
		a.History = append(a.History, revs)
		if h.Next == 0 {
			break
		}
		before = h.Next
	}
	for rev := uint64(1); rev <= a.Revision; rev++ {
		require.NoError(t, s.CheckRevision(rev))
		for _, key := range []string{"h", "a5", "a3"} {
			r, err := s.GetAt("n", key, rev)
			if errors.Is(err, ctxd.ErrNotFound) {
				continue
			}
			require.NoError(t, err)
			a.At[rev] += fmt.Sprintf("%s=%s@%d ", key, r.Value, r.ModRev)
		}
	}
	assert.ErrorIs(t, s.CheckRevision(a.Revision+1), ctxd.ErrFutureRevision)
	st, err := s.Status()
	require.NoError(t, err)
	assert.Equal(t, a.Revision, st.Revision)
	a.StatusKeys = st.Keys
	changes, err := s.ReadLog(0, 10000)
	require.NoError(t, err)
	for _, c := range changes {
		a.Log = append(a.Log, c.Revision)
	}
	for after := uint64(0); ; {
		changes, err := s.ReadLog(after, 4)
		require.NoError(t, err)
		if len(changes) == 0 {
			break
		}
		var revs []uint64
		for _, c := range changes {
			revs = append(revs, c.Revision)
		}
		a.LogPages = append(a.LogPages, revs)
		after = revs[len(revs)-1]
	}
	return a
}

// writeTwoPhases writes a first set of changes, makes bbolt hold them (a
// view checkpoints), then a second set that stays in the overlay.
func writeTwoPhases(t *testing.T, s *bolt.Store) {
	t.Helper()
	put := func(ns, key, value string) {
		_, err := s.Put(ctx, ns, key, json.RawMessage(value), nil, "t")
		require.NoError(t, err)
	}
	del := func(ns, key string) {
		_, err := s.Delete(ctx, ns, key, nil, "t")
		require.NoError(t, err)
	}
	for i := range 10 {
		put("n", fmt.Sprintf("a%d", i), fmt.Sprint(i))
	}
	put("n", "h", `"h1"`)
	put("n", "h", `"h2"`)
	put("n", "h", `"h3"`)
	put("gone", "g", `1`)
	require.NoError(t, s.View(func(store.View) error { return nil }))
	require.Zero(t, s.Stats().Pending, "a view checkpoints")

	put("n", "a3", `"three"`)
	del("n", "a5")
	put("n", "a10", `10`)
	put("n", "a05", `5`)
	put("n", "h", `"h4"`)
	del("n", "h")
	put("n", "h", `"h5"`)
	put("fresh", "f1", `1`)
	put("fresh", "f2", `2`)
	del("fresh", "f1")
	del("gone", "g")
	_, err := s.Txn(ctx, []ctxd.Write{
		{Namespace: "n", Key: "a0", Op: ctxd.OpDelete, Who: "t"},
		{Namespace: "n", Key: "z", Op: ctxd.OpPut, Value: json.RawMessage(`"z"`), Who: "t"},
	})
	require.NoError(t, err)
	require.NotZero(t, s.Stats().Pending, "the second phase is in the overlay")
}

// Every direct read combines bbolt with the overlay: the same answers as
// once bbolt holds everything, and as after a restart.
func TestReadsCombineBoltAndOverlay(t *testing.T) {
	s := openStore(t, lazy)
	writeTwoPhases(t, s.Store)
	overlay := readAnswers(t, s.Store)

	assert.Equal(t, uint64(27), overlay.Revision)
	assert.Equal(t, `"three"@15`, overlay.Keys["n/a3"])
	assert.NotContains(t, overlay.Keys, "n/a5")
	assert.NotContains(t, overlay.Keys, "n/a0")
	assert.Equal(t, []string{"a1", "a10"}, overlay.Prefixed)
	assert.Equal(t, [][]uint64{{21, 20}, {19, 13}, {12, 11}}, overlay.History)
	assert.Equal(t, []ctxd.Namespace{{Name: "default"}, {Name: "fresh", Keys: 1}, {Name: "gone"}, {Name: "n", Keys: 12}}, overlay.Namespaces)
	assert.Equal(t, uint64(13), overlay.StatusKeys)
	assert.Len(t, overlay.Log, 27)

	require.NoError(t, s.View(func(store.View) error { return nil }))
	require.Zero(t, s.Stats().Pending)
	assert.Equal(t, overlay, readAnswers(t, s.Store), "once bbolt holds everything")
	s.reopen()
	assert.Equal(t, overlay, readAnswers(t, s.Store), "after a restart")
}

// The committer sleeps with nothing to apply and a publish wakes it only
// then (or once CommitChanges wait): each lone write, with none after it,
// still reaches bbolt, however the write and the committer's going idle
// interleave.
func TestCommitterAppliesALoneWrite(t *testing.T) {
	s := openStore(t, bolt.Options{CommitInterval: time.Millisecond})
	for i := range 100 {
		_, err := s.Put(ctx, "default", fmt.Sprintf("k%d", i), json.RawMessage(`1`), nil, "t")
		require.NoError(t, err)
		testkit.Eventually(t, func() bool { return s.Stats().Pending == 0 }, "write %d applied", i)
		if i%10 == 0 {
			time.Sleep(3 * time.Millisecond) // the committer idle well before the next write
		}
	}
}

// List pages and counts by prefix merge bbolt's keys with the overlay's,
// which it takes in key order from where the page starts, at most the
// page's worth: random puts and deletes over keys that share prefixes,
// while a committer applies a batch each 40 changes (so keys leave the
// overlay as others enter it), read page by page against a model.
func TestListMergesOverlayInKeyOrder(t *testing.T) {
	s := openStore(t, bolt.Options{CommitInterval: time.Hour, CommitChanges: 40})
	rng := rand.New(rand.NewPCG(1, 2))
	model := map[string]string{}
	key := func() string {
		const letters = "ab/"
		k := make([]byte, 1+rng.IntN(4))
		for i := range k {
			k[i] = letters[rng.IntN(len(letters))]
		}
		return string(k)
	}
	check := func(step int) {
		for _, prefix := range []string{"", "a", "ab", "b/", "/", "zz"} {
			var want []string
			for k := range model {
				if strings.HasPrefix(k, prefix) {
					want = append(want, k)
				}
			}
			slices.Sort(want)
			n, err := s.Count("n", prefix)
			require.NoError(t, err)
			require.Equal(t, uint64(len(want)), n, "step %d: count of %q", step, prefix)
			for _, limit := range []int{1, 2, 3, 7, 100} {
				var got []string
				after := ""
				for pages := 0; ; pages++ {
					require.Less(t, pages, 200, "pages never end")
					p, err := s.List("n", ctxd.ListOptions{Prefix: prefix, After: after, Limit: limit})
					require.NoError(t, err)
					require.LessOrEqual(t, len(p.Records), limit)
					for _, r := range p.Records {
						got = append(got, r.Key)
						require.Equal(t, model[r.Key], string(r.Value), "step %d: value of %q", step, r.Key)
					}
					if p.Next == "" {
						break
					}
					after = p.Next
				}
				require.Equal(t, want, got, "step %d: prefix %q, pages of %d", step, prefix, limit)
			}
		}
	}
	for step := range 600 {
		k := key()
		if _, live := model[k]; live && rng.IntN(3) == 0 {
			_, err := s.Delete(ctx, "n", k, nil, "t")
			require.NoError(t, err)
			delete(model, k)
		} else {
			v := fmt.Sprint(step)
			_, err := s.Put(ctx, "n", k, json.RawMessage(v), nil, "t")
			require.NoError(t, err)
			model[k] = v
		}
		if step%25 == 0 {
			check(step)
		}
	}
	require.NotZero(t, s.Stats().Pending, "the last changes are in the overlay")
	check(600)
}

// A crash leaves acknowledged changes only in the log: the next Open
// replays them into bbolt. The crash is a copy of the data folder while
// the store runs with changes in its overlay (the lazy committer is idle,
// so the copy of the database file is its last commit, whole).
func TestOpenReplaysTheLog(t *testing.T) {
	s := openStore(t, lazy)
	writeTwoPhases(t, s.Store)
	want := readAnswers(t, s.Store)
	crashed := filepath.Join(t.TempDir(), "data")
	copyDir(t, filepath.Dir(s.path), crashed)

	c := testkit.OpenBoltAt(t, filepath.Join(crashed, "ctxd.db"), bolt.Options{})
	rec := c.Recovery()
	assert.Equal(t, uint64(12), rec.Records, "one record per request of the second phase")
	assert.Equal(t, uint64(13), rec.Changes)
	assert.Equal(t, uint64(27), rec.Revision)
	assert.Equal(t, want, readAnswers(t, c.Store))
	c.Reopen()
	assert.Zero(t, c.Recovery().Records, "nothing is replayed twice")
	assert.Equal(t, want, readAnswers(t, c.Store))
}

// copyDir copies the files under src to dst.
func copyDir(t *testing.T, src, dst string) {
	t.Helper()
	require.NoError(t, filepath.WalkDir(src, func(path string, d os.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, err := filepath.Rel(src, path)
		if err != nil {
			return err
		}
		if d.IsDir() {
			return os.MkdirAll(filepath.Join(dst, rel), 0o750)
		}
		b, err := os.ReadFile(path)
		if err != nil {
			return err
		}
		return os.WriteFile(filepath.Join(dst, rel), b, 0o600)
	}))
}

// crashedFolder is a data folder whose log holds changes its database
// does not (see TestOpenReplaysTheLog), and its database file.
func crashedFolder(t *testing.T) string {
	t.Helper()
	s := openStore(t, lazy)
	writeTwoPhases(t, s.Store)
	crashed := filepath.Join(t.TempDir(), "data")
	copyDir(t, filepath.Dir(s.path), crashed)
	return filepath.Join(crashed, "ctxd.db")
}

// A log that is damaged, that lacks records the database needs, or that is
// not the database's, stops Open with a message naming it: acknowledged
// writes are never dropped silently.
func TestOpenRefusesABadLog(t *testing.T) {
	t.Run("damaged", func(t *testing.T) {
		path := crashedFolder(t)
		seg := segments(t, path)[0]
		f, err := os.OpenFile(seg, os.O_WRONLY, 0)
		require.NoError(t, err)
		// The first record's checksum: later appends follow it, so this is
		// damage, not a torn write.
		_, err = f.WriteAt([]byte("xxxx"), 0)
		require.NoError(t, err)
		require.NoError(t, f.Close())
		_, err = bolt.Open(path, bolt.Options{})
		require.ErrorIs(t, err, wal.ErrCorrupt)
		assert.Contains(t, err.Error(), seg, "the message names the file")
	})
	t.Run("released", func(t *testing.T) {
		s := openStore(t, bolt.Options{WALSegmentSize: wal.MinSegmentSize, CommitInterval: time.Hour, CommitChanges: 1 << 20})
		for i := range 100 {
			s.put("n", fmt.Sprintf("k%d", i), `"a value long enough to fill a small segment soon"`)
		}
		crashed := filepath.Join(t.TempDir(), "data")
		copyDir(t, filepath.Dir(s.path), crashed)
		path := filepath.Join(crashed, "ctxd.db")
		segs := segments(t, path)
		require.Greater(t, len(segs), 2)
		require.NoError(t, os.Remove(segs[0]))
		_, err := bolt.Open(path, bolt.Options{})
		require.ErrorIs(t, err, wal.ErrReleased)
		assert.Contains(t, err.Error(), filepath.Join(crashed, "wal"))
		assert.Contains(t, err.Error(), "acknowledged writes are missing")
	})
	t.Run("another database's", func(t *testing.T) {
		path := crashedFolder(t)
		other := openStore(t, bolt.Options{})
		other.put("n", "k", `1`)
		require.NoError(t, other.Close())
		other.Store = nil
		require.NoError(t, os.Rename(other.path, path))
		_, err := bolt.Open(path, bolt.Options{})
		require.Error(t, err)
		assert.Contains(t, err.Error(), "the log is not this database's")
		assert.Contains(t, err.Error(), "is of store")
	})
	t.Run("behind the database", func(t *testing.T) {
		path := crashedFolder(t)
		require.NoError(t, os.RemoveAll(bolt.WALDir(path)))
		l, err := wal.Open(bolt.WALDir(path), wal.Options{})
		require.NoError(t, err)
		_, err = l.Append([]byte("a record of nobody"))
		require.NoError(t, err)
		require.NoError(t, l.Close())
		// The database holds records up to 14 (the first phase and the
		// view's checkpoint): a log that ends at 1 is not its log.
		_, err = bolt.Open(path, bolt.Options{})
		require.Error(t, err)
		assert.Contains(t, err.Error(), "the log is not this database's")
	})
}

func segments(t *testing.T, dbPath string) []string {
	t.Helper()
	segs, err := filepath.Glob(filepath.Join(bolt.WALDir(dbPath), "*.wal"))
	require.NoError(t, err)
	return segs
}

// A data folder of schema 3 has no write-ahead log: Open upgrades the
// file and starts one.
func TestOpenStartsALogForAnOldFolder(t *testing.T) {
	s := openStore(t, bolt.Options{})
	s.put("n", "k", `1`)
	require.NoError(t, s.Close())
	s.Store = nil
	require.NoError(t, os.RemoveAll(bolt.WALDir(s.path)))
	setSchema(t, s.path, 3)
	s.open()
	got, err := s.Get("n", "k")
	require.NoError(t, err)
	assert.JSONEq(t, `1`, string(got.Value))
	assert.DirExists(t, bolt.WALDir(s.path))
	st, err := s.Status()
	require.NoError(t, err)
	assert.Equal(t, migrations.Current, st.SchemaVersion)
	r := s.put("n", "k", `2`)
	s.reopen()
	got, err = s.Get("n", "k")
	require.NoError(t, err)
	assert.Equal(t, r.ModRev, got.ModRev)
}

// Two stores never share a log: a second database file in the same
// folder is refused.
func TestOneLogPerFolder(t *testing.T) {
	s := openStore(t, bolt.Options{})
	_, err := bolt.Open(filepath.Join(filepath.Dir(s.path), "other.db"), bolt.Options{})
	require.ErrorIs(t, err, bolt.ErrLocked)
}

// When the committer falls behind, the writer waits for it rather than
// letting the overlay grow: with room for 8 changes and a committer that
// applies only when asked, every write still completes.
func TestOverlayIsBounded(t *testing.T) {
	s := openStore(t, bolt.Options{CommitInterval: time.Hour, CommitChanges: 1 << 20, MaxPending: 8, MaxBatch: 4})
	var wg sync.WaitGroup
	var most uint64
	var mu sync.Mutex
	for w := range 8 {
		wg.Go(func() {
			for i := range 50 {
				_, err := s.Put(ctx, "n", fmt.Sprintf("w%d-%d", w, i), json.RawMessage(`1`), nil, "t")
				if !assert.NoError(t, err) {
					return
				}
				mu.Lock()
				most = max(most, s.Stats().Pending)
				mu.Unlock()
			}
		})
	}
	wg.Wait()
	assert.LessOrEqual(t, most, uint64(8+4), "the room, plus one group of at most MaxBatch")
	assert.Greater(t, s.Stats().Applies, uint64(10), "the committer applied when the overlay was full")
	st, err := s.Status()
	require.NoError(t, err)
	assert.Equal(t, uint64(400), st.Keys)
}

// A request too large for the write-ahead log goes to bbolt directly,
// after a checkpoint, and reads and the feed see it like any other.
func TestLargeRequestGoesToBoltDirectly(t *testing.T) {
	s := openStore(t, bolt.Options{CommitInterval: time.Hour, CommitChanges: 1 << 20, DirectBytes: 4096, Limits: ctxd.Limits{MaxTxnOps: 100}})
	s.put("n", "before", `1`)
	require.NotZero(t, s.Stats().Pending)
	var writes []ctxd.Write
	for i := range 50 {
		writes = append(writes, ctxd.Write{Namespace: "n", Key: fmt.Sprintf("big%02d", i), Op: ctxd.OpPut, Value: json.RawMessage(`"` + string(make256()) + `"`), Who: "t"})
	}
	res, err := s.Txn(ctx, writes)
	require.NoError(t, err)
	assert.Equal(t, uint64(51), res.Revision)
	assert.Zero(t, s.Stats().Pending, "the checkpoint before it, and it in bbolt")
	s.put("n", "after", `1`)
	changes, err := s.ReadLog(0, 100)
	require.NoError(t, err)
	assert.Len(t, changes, 52)
	s.reopen()
	assert.Zero(t, s.Recovery().Changes, "Close applied the last write")
	r, err := s.Get("n", "big49")
	require.NoError(t, err)
	assert.Equal(t, uint64(51), r.ModRev)
}

// A snapshot written while changes wait in the overlay holds them: the
// store checkpoints first.
func TestSnapshotHoldsPendingChanges(t *testing.T) {
	s := openStore(t, lazy)
	writeTwoPhases(t, s.Store)
	info, err := s.WriteSnapshot(io.Discard)
	require.NoError(t, err)
	assert.Equal(t, uint64(27), info.Revision)
}

// A CommitChanges past MaxPending means "never by count": the committer
// still applies what checkpoints ask. (4 times a huge one overflowed: the
// committer then applied nothing, held a core, and a snapshot never came.)
func TestHugeCommitChangesStillCheckpoints(t *testing.T) {
	// Not testkit's store: its Close, at cleanup, would wait for ever on
	// the committer this test finds broken.
	st, err := bolt.Open(filepath.Join(t.TempDir(), "ctxd.db"), bolt.Options{CommitInterval: time.Hour, CommitChanges: math.MaxInt})
	require.NoError(t, err)
	done := make(chan error, 1)
	go func() {
		for i := range 20 {
			if _, err := st.Put(ctx, "n", fmt.Sprint("k", i), json.RawMessage(`1`), nil, "t"); err != nil {
				done <- err
				return
			}
		}
		_, err := st.WriteSnapshot(io.Discard)
		done <- err
	}()
	select {
	case err := <-done:
		require.NoError(t, err)
	case <-time.After(20 * time.Second):
		t.Fatal("the snapshot's checkpoint did not finish: the committer applies nothing")
	}
	assert.Zero(t, st.Stats().Pending)
	require.NoError(t, st.Close())
}
