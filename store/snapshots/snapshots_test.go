package snapshots_test

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/framework0/ctxd"
	"github.com/framework0/ctxd/internal/fsutil"
	"github.com/framework0/ctxd/internal/testkit"
	"github.com/framework0/ctxd/store"
	"github.com/framework0/ctxd/store/bolt"
	"github.com/framework0/ctxd/store/snapshots"
)

var ctx = context.Background()

func setup(t *testing.T) (*bolt.Store, *snapshots.Manager) {
	t.Helper()
	st := testkit.OpenBolt(t, bolt.Options{}).Store
	m, err := snapshots.Open(filepath.Join(filepath.Dir(st.Path()), "snapshots"), st)
	require.NoError(t, err)
	return st, m
}

// snapshotFiles are the names of the files in m's folder but its lock
// file.
func snapshotFiles(t *testing.T, m *snapshots.Manager) []string {
	t.Helper()
	var names []string
	for _, n := range testkit.DirNames(t, m.Dir()) {
		if n != fsutil.WritersLock {
			names = append(names, n)
		}
	}
	return names
}

func put(t *testing.T, st *bolt.Store, key, value string) {
	t.Helper()
	_, err := st.Put(ctx, "default", key, json.RawMessage(value), nil, "t")
	require.NoError(t, err)
}

func TestCreateListGetDelete(t *testing.T) {
	st, m := setup(t)
	put(t, st, "a", `1`)
	put(t, st, "b", `2`)
	meta, err := m.Create(ctx, "api")
	require.NoError(t, err)
	assert.True(t, snapshots.ValidID(meta.ID), meta.ID)
	assert.Equal(t, uint64(2), meta.Revision)
	assert.Len(t, meta.SHA256, 64)
	assert.Positive(t, meta.Size)
	assert.Equal(t, []ctxd.Namespace{{Name: "default", Keys: 2}}, meta.Namespaces)

	put(t, st, "c", `3`)
	second, err := m.Create(ctx, "api")
	require.NoError(t, err)
	list, err := m.List()
	require.NoError(t, err)
	require.Len(t, list, 2)
	assert.Equal(t, second.ID, list[0].ID, "newest first")
	n, err := m.Count()
	require.NoError(t, err)
	assert.Equal(t, 2, n)

	f, got, err := m.OpenFile(meta.ID)
	require.NoError(t, err)
	f.Close()
	assert.Equal(t, meta, got)

	require.NoError(t, m.Delete(meta.ID))
	_, err = m.Get(meta.ID)
	assert.ErrorIs(t, err, snapshots.ErrNotFound)
	assert.ErrorIs(t, m.Delete(meta.ID), snapshots.ErrNotFound)
	_, err = m.Get("../../etc/passwd")
	assert.ErrorIs(t, err, snapshots.ErrInvalidID)
	assert.Len(t, snapshotFiles(t, m), 2, "one .db and one .json left")
}

func TestRestoreChecksTheSHA256(t *testing.T) {
	st, m := setup(t)
	put(t, st, "a", `"snap"`)
	meta, err := m.Create(ctx, "api")
	require.NoError(t, err)
	put(t, st, "a", `"later"`)

	res, err := m.Restore(ctx, meta.ID, ctxd.RestoreOptions{DryRun: true})
	require.NoError(t, err)
	assert.Equal(t, 1, res.Namespaces[0].Changed)

	// Damage a byte the page structure does not care about: only the
	// checksum can tell.
	path := filepath.Join(m.Dir(), meta.ID+".db")
	b, err := os.ReadFile(path)
	require.NoError(t, err)
	i := bytes.LastIndex(b, []byte(`"snap"`))
	require.Positive(t, i)
	b[i+1] = 'S'
	require.NoError(t, os.WriteFile(path, b, 0o600))
	_, err = m.Restore(ctx, meta.ID, ctxd.RestoreOptions{})
	require.ErrorIs(t, err, snapshots.ErrChecksum)
	assert.ErrorIs(t, err, ctxd.ErrBadSnapshot)
	_, _, err = m.Open(meta.ID)
	assert.ErrorIs(t, err, snapshots.ErrChecksum)
	r, err := st.Get("default", "a")
	require.NoError(t, err)
	assert.Equal(t, `"later"`, string(r.Value), "live data untouched")
}

func TestUpload(t *testing.T) {
	st, m := setup(t)
	put(t, st, "a", `1`)
	var buf bytes.Buffer
	_, err := st.WriteSnapshot(&buf)
	require.NoError(t, err)
	good := buf.Bytes()

	meta, err := m.Upload(ctx, bytes.NewReader(good), "")
	require.NoError(t, err)
	assert.Equal(t, "upload", meta.Origin)
	assert.Equal(t, uint64(1), meta.Revision)
	snap, _, err := m.Open(meta.ID)
	require.NoError(t, err)
	require.NoError(t, snap.Close())

	_, err = m.Upload(ctx, bytes.NewReader(good), strings.Repeat("0", 64))
	assert.ErrorIs(t, err, snapshots.ErrChecksum)
	_, err = m.Upload(ctx, strings.NewReader("garbage"), "")
	assert.ErrorIs(t, err, ctxd.ErrBadSnapshot)
	_, err = m.Upload(ctx, bytes.NewReader(good[:len(good)/3]), "")
	assert.ErrorIs(t, err, ctxd.ErrBadSnapshot)

	list, err := m.List()
	require.NoError(t, err)
	assert.Len(t, list, 1, "refused uploads are not kept")
	assert.Len(t, snapshotFiles(t, m), 2, "and leave no file behind")
}

// TestUploadOfASnapshotOfEtcdListsEtcdsRevision: a snapshot file built
// from a store whose transactions share a revision (etcd) numbers their
// changes apart, so its own revision runs ahead; uploaded, it is listed
// at the revision of the store it was taken of.
func TestUploadOfASnapshotOfEtcdListsEtcdsRevision(t *testing.T) {
	_, m := setup(t)
	b, err := bolt.NewSnapshotBuilder(t.TempDir(), 0)
	require.NoError(t, err)
	defer b.Close()
	at := time.Now()
	for i, c := range []struct {
		rev uint64
		key string
	}{{5, "a"}, {5, "b"}, {5, "c"}, {6, "d"}} {
		require.NoError(t, b.Add(ctxd.Change{Revision: c.rev, Namespace: "default", Key: c.key, Op: ctxd.OpPut,
			Value: json.RawMessage(fmt.Sprint(i)), Version: 1, Who: "t", Time: at}, 0))
	}
	var buf bytes.Buffer
	info, err := b.WriteTo(&buf, 6, 0)
	require.NoError(t, err)
	assert.Equal(t, uint64(6), info.Revision, "the snapshot is at the source's revision")

	meta, err := m.Upload(ctx, bytes.NewReader(buf.Bytes()), "")
	require.NoError(t, err)
	assert.Equal(t, uint64(6), meta.Revision, "listed at the source's revision")
	snap, _, err := m.Open(meta.ID)
	require.NoError(t, err)
	defer snap.Close()
	rev, err := snap.Revision()
	require.NoError(t, err)
	assert.Equal(t, uint64(6), rev)
	var fileRev uint64
	require.NoError(t, snap.View(func(v store.View) error { fileRev = v.Revision(); return nil }))
	assert.Equal(t, uint64(8), fileRev, "the file's own revisions: 5, 6, 7 and 8")
}

// A builder of large values commits every few of them (its bytes bound,
// not only its count): the file holds every change once, in order, with
// its value; and a builder whose scratch file would eat into the reserve
// refuses it.
func TestSnapshotBuilderOfLargeValues(t *testing.T) {
	_, m := setup(t)
	b, err := bolt.NewSnapshotBuilder(t.TempDir(), 0)
	require.NoError(t, err)
	defer b.Close()
	big := json.RawMessage(`"` + strings.Repeat("v", 1<<20) + `"`)
	const n = 20 // 40 MiB as the file holds them: three commits
	for i := range n {
		require.NoError(t, b.Add(ctxd.Change{Revision: uint64(i + 1), Namespace: "default", Key: fmt.Sprint("k", i), Op: ctxd.OpPut,
			Value: big, Version: 1, Who: "t", Time: time.Now()}, 0))
	}
	var buf bytes.Buffer
	_, err = b.WriteTo(&buf, n, 0)
	require.NoError(t, err)
	meta, err := m.Upload(ctx, bytes.NewReader(buf.Bytes()), "")
	require.NoError(t, err)
	snap, _, err := m.Open(meta.ID)
	require.NoError(t, err)
	defer snap.Close()
	require.NoError(t, snap.Verify())
	var revs []uint64
	require.NoError(t, snap.View(func(v store.View) error {
		return v.ForEachChange("default", func(c ctxd.Change) error {
			assert.Equal(t, len(big), len(c.Value))
			revs = append(revs, c.Revision)
			return nil
		})
	}))
	require.Len(t, revs, n, "every change once")
	for i, r := range revs {
		assert.Equal(t, uint64(i+1), r, "in order")
	}

	refused, err := bolt.NewSnapshotBuilder(t.TempDir(), fsutil.Reserve(1<<62))
	require.NoError(t, err)
	defer refused.Close()
	for i := range n {
		if err = refused.Add(ctxd.Change{Revision: uint64(i + 1), Namespace: "default", Key: fmt.Sprint("k", i), Op: ctxd.OpPut,
			Value: big, Version: 1, Who: "t", Time: time.Now()}, 0); err != nil {
			break
		}
	}
	require.ErrorIs(t, err, fsutil.ErrReserve, "a scratch file that would eat into the reserve")
	assert.Contains(t, err.Error(), "scratch file")
}

func TestPruneKeepsNewest(t *testing.T) {
	st, m := setup(t)
	var ids []string
	for i := 0; i < 4; i++ {
		put(t, st, "k", fmt.Sprint(i))
		meta, err := m.Create(ctx, "schedule")
		require.NoError(t, err)
		ids = append(ids, meta.ID)
	}
	// Snapshots taken by hand or uploaded are not the schedule's to prune,
	// however old.
	manual, err := m.Create(ctx, "api")
	require.NoError(t, err)
	snapshots.SetNow(m, func() time.Time { return time.Now().Add(-24 * time.Hour) })
	old, err := m.Create(ctx, "upload")
	require.NoError(t, err)

	removed, err := m.Prune(2)
	require.NoError(t, err)
	assert.ElementsMatch(t, ids[:2], removed)
	list, err := m.List()
	require.NoError(t, err)
	var kept []string
	for _, s := range list {
		kept = append(kept, s.ID)
	}
	assert.ElementsMatch(t, []string{ids[2], ids[3], manual.ID, old.ID}, kept)
}

func TestSchedule(t *testing.T) {
	st, m := setup(t)
	put(t, st, "k", `0`)
	manual, err := m.Create(ctx, "api")
	require.NoError(t, err)
	sctx, cancel := context.WithCancel(ctx)
	done := make(chan struct{})
	var mu sync.Mutex
	var taken []ctxd.SnapshotMeta
	var pruned []string
	go func() {
		defer close(done)
		m.Schedule(sctx, 20*time.Millisecond, 2, func(err error) { t.Error(err) }, func(meta ctxd.SnapshotMeta, removed []string) {
			mu.Lock()
			defer mu.Unlock()
			taken = append(taken, meta)
			pruned = append(pruned, removed...)
		})
	}()
	scheduled := func() []ctxd.SnapshotMeta {
		list, err := m.List()
		require.NoError(t, err)
		return slices.DeleteFunc(list, func(s ctxd.SnapshotMeta) bool { return s.Origin != "schedule" })
	}
	i := 1
	testkit.Eventually(t, func() bool {
		put(t, st, "k", fmt.Sprint(i)) // each snapshot sees a new revision
		i++
		mu.Lock()
		defer mu.Unlock()
		return len(taken) >= 4
	}, "scheduled snapshots did not appear")
	// No more writes: once the schedule has reported the snapshot of the
	// last one (after pruning for it), it takes no other, and the folder
	// holds what it pruned to. (Counted earlier, a snapshot being taken
	// meanwhile, listed before its pruning, made 3.)
	rev := st.Revision()
	testkit.Eventually(t, func() bool {
		mu.Lock()
		defer mu.Unlock()
		return taken[len(taken)-1].Revision == rev
	}, "the last write's snapshot")
	list := scheduled()
	assert.Len(t, list, 2, "pruned to keep")
	mu.Lock()
	assert.Len(t, pruned, len(taken)-2, "onTaken hears of each pruned")
	mu.Unlock()

	// Idle: no snapshot of a revision the newest already holds.
	idle := list[0].ID
	assert.Equal(t, rev, list[0].Revision)
	time.Sleep(200 * time.Millisecond) // about 10 ticks
	assert.Equal(t, idle, scheduled()[0].ID, "an idle server takes no copies of one state")
	cancel()
	<-done

	// The snapshot taken through the API is the operator's: never pruned.
	_, err = m.Get(manual.ID)
	assert.NoError(t, err, "the schedule keeps snapshots taken by hand")
	for _, s := range scheduled() {
		assert.Equal(t, "schedule", s.Origin)
	}
}

// Processes sharing a snapshots folder (the instances of an etcd
// deployment, snapshots.dir) claim an id by linking their file under it:
// a snapshot file that another process has put in place, its metadata
// not written yet, keeps its name, and the new snapshot takes the next
// id. (Looking for a free name by its metadata gave both the same id, and
// the second file replaced the first.)
func TestSharedFolderNeverReusesAnIdInProgress(t *testing.T) {
	st, m := setup(t)
	at := time.Date(2026, 12, 3, 17, 0, 0, 0, time.UTC)
	snapshots.SetNow(m, func() time.Time { return at })
	put(t, st, "k", `1`)
	first, err := m.Create(ctx, "api")
	require.NoError(t, err)
	require.NoError(t, m.Delete(first.ID))
	// Another process's snapshot of the same revision, in the same
	// second, in place but not listed yet (that process holds the
	// folder's lock shared until it is: a second open in this process
	// stands for it).
	unlock, err := fsutil.LockShared(filepath.Join(m.Dir(), fsutil.WritersLock))
	require.NoError(t, err)
	defer unlock()
	inProgress := filepath.Join(m.Dir(), first.ID+".db")
	require.NoError(t, os.WriteFile(inProgress, []byte("another process's snapshot"), 0o600))

	second, err := m.Create(ctx, "api")
	require.NoError(t, err)
	assert.Equal(t, "20261203T170000Z-r1", first.ID)
	assert.Equal(t, "20261203T170000.1Z-r1", second.ID, "the id in progress is not taken")
	b, err := os.ReadFile(inProgress)
	require.NoError(t, err)
	assert.Equal(t, "another process's snapshot", string(b), "the file in progress is left alone")
	_, err = m.Restore(ctx, second.ID, ctxd.RestoreOptions{DryRun: true})
	require.NoError(t, err, "the new snapshot is whole under its own id")
}

// A process that opens a shared snapshots folder while another writes a
// snapshot there (holding the folder's lock shared) leaves that one's
// files alone; the leftovers of a crash are removed once no process
// writes: after the next snapshot taken there (an etcd snapshot's scratch
// file is as large as the data), or by RemoveLeftovers.
func TestLeftoversOfAWriterAtWorkStay(t *testing.T) {
	st, m := setup(t)
	// Another writer at work: the lock is per open file, so a second
	// open in this process stands for another process.
	unlock, err := fsutil.LockShared(filepath.Join(m.Dir(), fsutil.WritersLock))
	require.NoError(t, err)
	inProgress := filepath.Join(m.Dir(), fsutil.TempPrefix+"create-42")
	require.NoError(t, os.WriteFile(inProgress, []byte("being written"), 0o600))

	other, err := snapshots.Open(m.Dir(), st)
	require.NoError(t, err)
	assert.FileExists(t, inProgress, "a snapshot being written by another process")
	removed, err := other.RemoveLeftovers()
	require.NoError(t, err)
	assert.False(t, removed)

	unlock()
	_, err = other.Create(ctx, "api")
	require.NoError(t, err)
	assert.NoFileExists(t, inProgress, "the writer is gone: a leftover, removed after the next snapshot")
	require.NoError(t, os.WriteFile(inProgress, []byte("a crash's"), 0o600))
	removed, err = other.RemoveLeftovers()
	require.NoError(t, err)
	assert.True(t, removed)
	assert.NoFileExists(t, inProgress)
}

// Instances that share a folder and a schedule take one snapshot per
// interval between them: a tick is skipped while another process's
// scheduled snapshot is less than half the interval old, and taken once
// it is older. The instance's own snapshots never hold back its own
// schedule. Negative control: without the skip, the second instance
// snapshots at its first tick.
func TestScheduleSharedFolderTakesOnePerInterval(t *testing.T) {
	st, a := setup(t)
	put(t, st, "k", `1`)
	at := time.Date(2026, 12, 3, 17, 0, 0, 0, time.UTC)
	snapshots.SetNow(a, func() time.Time { return at })
	first, err := a.Create(ctx, "schedule")
	require.NoError(t, err)

	b, err := snapshots.Open(a.Dir(), st)
	require.NoError(t, err)
	var clock atomic.Int64
	clock.Store(at.Add(5 * time.Millisecond).UnixNano()) // a's snapshot is fresh
	snapshots.SetNow(b, func() time.Time { return time.Unix(0, clock.Load()).UTC() })
	sctx, cancel := context.WithCancel(ctx)
	done := make(chan struct{})
	go func() {
		defer close(done)
		b.Schedule(sctx, 20*time.Millisecond, 0, func(err error) { t.Error(err) }, nil)
	}()
	defer func() { cancel(); <-done }()

	put(t, st, "k", `2`)               // b would have a new revision to take
	time.Sleep(300 * time.Millisecond) // about 15 ticks
	list, err := b.List()
	require.NoError(t, err)
	require.Len(t, list, 1, "another instance's snapshot of this interval: b takes none")
	assert.Equal(t, first.ID, list[0].ID)

	clock.Store(at.Add(time.Hour).UnixNano()) // a stopped an hour ago
	i := 3
	testkit.Eventually(t, func() bool {
		put(t, st, "k", fmt.Sprint(i))
		i++
		list, err := b.List()
		require.NoError(t, err)
		return len(list) >= 3
	}, "b takes the schedule over, and its own snapshots do not hold it back")
}

// Instances that share a folder and a schedule, started together (their
// ticks come together: neither lists the other's snapshot, which is
// listed only once written), take one scheduled snapshot per interval
// between them, not one each: each tick is claimed first. Negative
// control: without the claim, they took about twice as many.
func TestScheduleInstancesTickingTogetherTakeOnePerInterval(t *testing.T) {
	st, a := setup(t)
	b, err := snapshots.Open(a.Dir(), st)
	require.NoError(t, err)
	const interval = 100 * time.Millisecond
	sctx, cancel := context.WithCancel(ctx)
	var taken atomic.Int64
	count := func(ctxd.SnapshotMeta, []string) { taken.Add(1) }
	var wg sync.WaitGroup
	wg.Go(func() { // a new revision for every tick
		for i := 0; sctx.Err() == nil; i++ {
			put(t, st, "k", fmt.Sprint(i))
			time.Sleep(5 * time.Millisecond)
		}
	})
	start := time.Now()
	for _, m := range []*snapshots.Manager{a, b} {
		wg.Go(func() { m.Schedule(sctx, interval, 0, func(err error) { t.Error(err) }, count) })
	}
	time.Sleep(12 * interval)
	cancel()
	wg.Wait()
	ticks := int64(time.Since(start)/interval) + 1 // the most one instance's ticker gave
	n := taken.Load()
	assert.Positive(t, n)
	assert.LessOrEqual(t, n, ticks+1, "%d scheduled snapshots in %d intervals", n, ticks)
	claims, err := filepath.Glob(filepath.Join(a.Dir(), ".schedule-*.claim"))
	require.NoError(t, err)
	assert.LessOrEqual(t, len(claims), 1, "older claims are removed (the last is too when the stop cut its snapshot short)")
}

// A tick's claim: refused while another process's newest claim is less
// than half an interval old (by the time it holds, or, while it is still
// empty, by its file's time), taken when that claim is older, this
// process's own, or dated ahead of a clock that stepped back; taking one
// removes the older claims.
func TestClaimTick(t *testing.T) {
	_, m := setup(t)
	claim := func(n int) string { return filepath.Join(m.Dir(), fmt.Sprintf(".schedule-%d.claim", n)) }
	require.NoError(t, os.WriteFile(claim(3), nil, 0o600)) // created, its time not yet written
	_, ok := snapshots.ClaimTick(m, time.Hour, 0)
	assert.False(t, ok, "an empty claim made now")
	old := time.Now().Add(-2 * time.Hour)
	require.NoError(t, os.Chtimes(claim(3), old, old))
	n, ok := snapshots.ClaimTick(m, time.Hour, 0)
	require.True(t, ok, "an empty claim of two hours ago: a writer that stopped")
	assert.Equal(t, int64(4), n)
	assert.NoFileExists(t, claim(3))
	_, ok = snapshots.ClaimTick(m, time.Hour, 0)
	assert.False(t, ok, "another process's claim of now")
	n, ok = snapshots.ClaimTick(m, time.Hour, 4)
	require.True(t, ok, "its own")
	assert.Equal(t, int64(5), n)
	snapshots.SetNow(m, func() time.Time { return time.Now().Add(-24 * time.Hour) })
	n, ok = snapshots.ClaimTick(m, time.Hour, 0)
	require.True(t, ok, "a claim dated ahead of a clock stepped back")
	assert.Equal(t, int64(6), n)
	left, err := filepath.Glob(filepath.Join(m.Dir(), ".schedule-*.claim"))
	require.NoError(t, err)
	assert.Equal(t, []string{claim(6)}, left)
}

// Scheduled snapshots taken while the clock was a day ahead, then a
// restart on a clock stepped back: the schedule goes on (they are not
// "taken less than half an interval ago", which held every tick back
// until the clock caught up with them), pruning keeps the snapshot just
// taken (they sort newer, and Prune removed each new one at once) and
// removes them first (they held keep's slots, and each new snapshot
// removed the one before).
func TestScheduleAfterTheClockSteppedBack(t *testing.T) {
	st, ahead := setup(t)
	put(t, st, "k", `1`)
	now := time.Now().UTC()
	for i := range 2 {
		snapshots.SetNow(ahead, func() time.Time { return now.Add(24*time.Hour + time.Duration(i)*time.Minute) })
		_, err := ahead.Create(ctx, "schedule")
		require.NoError(t, err)
	}

	m, err := snapshots.Open(ahead.Dir(), st) // the restart, on the right clock
	require.NoError(t, err)
	sctx, cancel := context.WithCancel(ctx)
	done := make(chan struct{})
	var mu sync.Mutex
	var taken []string // as the schedule reports them, after each one's pruning
	go func() {
		defer close(done)
		m.Schedule(sctx, 20*time.Millisecond, 4, func(err error) { t.Error(err) }, func(meta ctxd.SnapshotMeta, _ []string) {
			mu.Lock()
			defer mu.Unlock()
			taken = append(taken, meta.ID)
		})
	}()
	defer func() { cancel(); <-done }()
	i := 2
	testkit.Eventually(t, func() bool {
		put(t, st, "k", fmt.Sprint(i)) // a new revision for each
		i++
		mu.Lock()
		defer mu.Unlock()
		return len(taken) >= 3
	}, "the schedule takes snapshots again")
	cancel()
	<-done // its last snapshot reported: the folder is what it left
	// The snapshots dated ahead count as the oldest: pruned first, they
	// do not hold keep's slots while the recent ones go.
	list, err := m.List()
	require.NoError(t, err)
	require.Len(t, list, 4, "pruned to keep")
	var recent []string // newest first
	for _, s := range list {
		if s.Created.Before(now.Add(time.Hour)) {
			recent = append(recent, s.ID)
		}
	}
	last := slices.Clone(taken[len(taken)-3:])
	slices.Reverse(last)
	require.GreaterOrEqual(t, len(recent), 3, "kept: %v", list)
	assert.Equal(t, last, recent[:3], "the last three taken are kept")
}

// An idle server whose folder holds scheduled snapshots dated ahead of a
// clock stepped back takes one snapshot of its state, then none: the
// newest by date, dated ahead, is not the newest taken (it never held
// the current revision, and every tick took a snapshot).
func TestIdleScheduleAfterTheClockSteppedBack(t *testing.T) {
	st, ahead := setup(t)
	put(t, st, "k", `1`)
	now := time.Now().UTC()
	snapshots.SetNow(ahead, func() time.Time { return now.Add(24 * time.Hour) })
	_, err := ahead.Create(ctx, "schedule")
	require.NoError(t, err)
	put(t, st, "k", `2`)

	m, err := snapshots.Open(ahead.Dir(), st) // the restart, on the right clock
	require.NoError(t, err)
	sctx, cancel := context.WithCancel(ctx)
	done := make(chan struct{})
	var taken atomic.Int64
	go func() {
		defer close(done)
		m.Schedule(sctx, 20*time.Millisecond, 10, func(err error) { t.Error(err) }, func(ctxd.SnapshotMeta, []string) { taken.Add(1) })
	}()
	testkit.Eventually(t, func() bool { return taken.Load() >= 1 }, "a snapshot of the current state")
	time.Sleep(200 * time.Millisecond) // about 10 ticks
	cancel()
	<-done
	assert.Equal(t, int64(1), taken.Load(), "an idle server takes one snapshot of its state, then none")
}
