package storetest

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"path/filepath"
	"regexp"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/framework0/ctxd"
	"github.com/framework0/ctxd/store"
)

// A snapshot written while writers keep writing is consistent at its
// revision: opened, verified and viewed, it holds exactly what the live
// backend held at that revision, and opening it does not change the file.
//
// The file is bolt's, one change per revision. Under RevisionPerTxn the
// changes that share a live revision get consecutive revisions of the
// file's own, so the file's numbering runs ahead of the live one: the
// snapshot's revision (its answer's, Snapshot.Revision) stays the live
// revision it was taken at, and the file holds every change up to it and
// none after, in the live order, with revisions that only grow and never
// fall below the live ones.
func checkSnapshot(t testing.TB, h Harness) {
	if !h.Snapshots {
		checkNoSnapshots(t, h)
		return
	}
	b := open(t, h, Config{})
	for i := range 20 {
		b.put("default", fmt.Sprintf("k%02d", i), fmt.Sprintf(`{"i":%d}`, i))
	}
	b.put("team", "t", `"x"`)
	b.del("default", "k07")

	var stop atomic.Bool
	var wg sync.WaitGroup
	for w := range 4 {
		wg.Go(func() {
			for i := 0; !stop.Load(); i++ {
				_, err := b.Put(t.Context(), "default", fmt.Sprintf("w%d/%d", w, i%10), []byte(fmt.Sprint(i)), nil, "w")
				if !assert.NoError(t, err) {
					return
				}
			}
		})
	}
	// Let the writers get going, so that the snapshot is taken among them.
	for rev, changed := b.Committed(); rev < 60; rev, changed = b.Committed() {
		waitClosed(t, changed, "writers are writing")
	}
	path, info := b.writeSnapshot()
	// The writers go on after the snapshot: the live data moves past it.
	for rev, changed := b.Committed(); rev <= info.Revision; rev, changed = b.Committed() {
		waitClosed(t, changed, "writers write on after the snapshot")
	}
	stop.Store(true)
	wg.Wait()
	original := fileBytes(t, path)
	assert.Equal(t, int64(len(original)), info.Size, "the size written")

	snap, err := b.OpenSnapshot(path)
	require.NoError(t, err)
	require.NoError(t, snap.Verify())
	assert.Equal(t, info.SchemaVersion, snap.SchemaVersion())
	snapRev, err := snap.Revision()
	require.NoError(t, err)
	assert.Equal(t, info.Revision, snapRev, "the snapshot's revision, opened")
	var got []ctxd.Record
	var snapChanges []ctxd.Change
	var fileRev uint64
	require.NoError(t, snap.View(func(v store.View) error {
		fileRev = v.Revision()
		assert.Equal(t, info.Namespaces, v.Namespaces(), "the namespaces the snapshot reported")
		for _, ns := range v.Namespaces() {
			require.NoError(t, v.ForEach(ns.Name, "", func(r ctxd.Record) error { got = append(got, r); return nil }))
		}
		require.NoError(t, v.ForEachChange("", func(c ctxd.Change) error { snapChanges = append(snapChanges, c); return nil }))
		if assert.NotEmpty(t, snapChanges) {
			newest := snapChanges[len(snapChanges)-1]
			c, err := v.Change(newest.Namespace, newest.Key, fileRev)
			if assert.NoError(t, err) {
				assert.Equal(t, newest, c, "the change at the file's revision")
			}
		}
		return nil
	}))
	require.NoError(t, snap.Close())
	assert.Equal(t, original, fileBytes(t, path), "opening a snapshot does not change it")

	log := b.log(0)
	var upTo []ctxd.Change
	for _, c := range log {
		if c.Revision <= info.Revision {
			upTo = append(upTo, c)
		}
	}
	if !b.perTxn() {
		assert.Equal(t, info.Revision, fileRev, "the file's revision is the snapshot's")
		assert.Equal(t, replay(log, info.Revision), recordLines(got), "the snapshot is the live data at its revision")
		assert.Equal(t, changeLines(upTo), changeLines(snapChanges), "the snapshot holds the history up to its revision")
	} else {
		assert.GreaterOrEqual(t, fileRev, info.Revision, "the file's own revision")
		assert.Equal(t, contentLines(upTo), contentLines(snapChanges), "the snapshot holds the history up to its revision, in order")
		for i, c := range snapChanges {
			if i < len(upTo) {
				assert.GreaterOrEqual(t, c.Revision, upTo[i].Revision, "a file revision is never below the live one: %s", changeLine(c))
			}
			if i > 0 {
				assert.Greater(t, c.Revision, snapChanges[i-1].Revision, "file revisions grow: %s", changeLine(c))
			}
		}
	}
	// The values at the snapshot's revision, read live: what the file holds.
	for _, r := range got {
		live, err := b.GetAt(r.Namespace, r.Key, info.Revision)
		if assert.NoError(t, err, r.Namespace+"/"+r.Key) {
			if b.perTxn() {
				assert.Equal(t, recordContent(live), recordContent(r), "live read at the snapshot's revision")
			} else {
				assert.Equal(t, recordLine(live), recordLine(r), "live read at the snapshot's revision")
			}
		}
	}
	assert.Len(t, got, len(replay(log, info.Revision)), "the keys live at the snapshot's revision")
}

// A file that is not a whole snapshot is ctxd.ErrBadSnapshot, to open and
// to restore from (fully, partly or as a dry run), and the live data is
// untouched.
func checkBadSnapshots(t testing.TB, h Harness) {
	if !h.Snapshots {
		checkNoSnapshots(t, h)
		return
	}
	b := open(t, h, Config{})
	for i := range 50 {
		b.put("default", fmt.Sprintf("k%03d", i), `"`+string(bytes.Repeat([]byte("v"), 100))+`"`)
	}
	b.put("team", "t", `1`)
	good, _ := b.writeSnapshot()
	goodBytes := fileBytes(t, good)
	stateBefore, revBefore := b.state()
	gen := b.Generation()

	bad := map[string]string{
		"garbage":         writeFile(t, "garbage", []byte("this is not a snapshot at all")),
		"empty":           writeFile(t, "empty", nil),
		"zeros":           writeFile(t, "zeros", make([]byte, len(goodBytes))),
		"truncated half":  writeFile(t, "half", goodBytes[:len(goodBytes)/2]),
		"truncated start": writeFile(t, "start", goodBytes[:100]),
		"one byte short":  writeFile(t, "short", goodBytes[:len(goodBytes)-1]),
	}
	for _, name := range sortedKeys(bad) {
		path := bad[name]
		snap, err := b.OpenSnapshot(path)
		assert.ErrorIs(t, err, ctxd.ErrBadSnapshot, "open %s", name)
		if err == nil {
			_ = snap.Close()
		}
		for _, opts := range []ctxd.RestoreOptions{{}, {DryRun: true}, {Namespaces: []string{"default"}}, {Prefix: "k"}} {
			_, err = b.Restore(t.Context(), path, opts)
			assert.ErrorIs(t, err, ctxd.ErrBadSnapshot, "restore %+v from %s", opts, name)
		}
	}
	missing := filepath.Join(t.TempDir(), "missing")
	_, err := b.OpenSnapshot(missing)
	assertErrorIsOne(t, err, "open a missing file", fs.ErrNotExist, ctxd.ErrBadSnapshot)
	_, err = b.Restore(t.Context(), missing, ctxd.RestoreOptions{})
	assertErrorIsOne(t, err, "restore from a missing file", fs.ErrNotExist, ctxd.ErrBadSnapshot)

	stateAfter, revAfter := b.state()
	assert.Equal(t, revBefore, revAfter, "no revision was taken")
	assert.Equal(t, stateBefore, stateAfter, "the live data is untouched")
	assert.Equal(t, gen, b.Generation(), "nothing was replaced")
	assert.NoError(t, b.Ready())
	r := b.put("default", "after", `1`)
	assert.Equal(t, revBefore+1, r.ModRev, "the backend writes on")
	_, err = b.Restore(t.Context(), good, ctxd.RestoreOptions{DryRun: true})
	assert.NoError(t, err, "the good snapshot still restores")
}

// A full restore replaces the data with the snapshot's atomically: the
// revision never goes back, Generation changes, followers are woken, and
// revisions the restore discarded are answered as compacted. A dry run
// changes nothing.
func checkFullRestore(t testing.TB, h Harness) {
	if !h.Snapshots {
		checkNoSnapshots(t, h)
		return
	}
	b := open(t, h, Config{})
	ctx := t.Context()
	b.put("default", "a", `"old"`)
	b.put("team", "b", `1`)
	path, info := b.writeSnapshot()
	snapState, snapRev := b.state()
	require.Equal(t, info.Revision, snapRev)

	b.put("default", "a", `"new"`)
	b.put("default", "c", `3`)
	b.del("team", "b")
	b.put("extra", "e", `1`)
	live, seen := b.state()
	gen := b.Generation()

	dry, err := b.Restore(ctx, path, ctxd.RestoreOptions{DryRun: true})
	require.NoError(t, err)
	assert.True(t, dry.DryRun)
	assert.False(t, dry.Partial)
	assert.Equal(t, info.Revision, dry.SnapshotRevision)
	assert.Equal(t, seen, dry.Revision)
	assert.Equal(t, []ctxd.NamespaceDiff{
		{Namespace: "default", Removed: 1, Changed: 1},
		{Namespace: "extra", Removed: 1},
		{Namespace: "team", Added: 1},
	}, dry.Namespaces, "what the restore would change, namespace by namespace")
	afterDry, rev := b.state()
	assert.Equal(t, seen, rev, "a dry run takes no revision")
	assert.Equal(t, live, afterDry, "a dry run changes nothing")
	assert.Equal(t, gen, b.Generation())

	st, err := b.Status()
	require.NoError(t, err)
	assert.Nil(t, st.LastRestore, "no whole restore yet")
	_, changed := b.Committed()
	res, err := b.Restore(ctx, path, ctxd.RestoreOptions{})
	require.NoError(t, err)
	assert.False(t, res.Partial)
	assert.Equal(t, info.Revision, res.SnapshotRevision)
	rewrites := h.Restores == RestoreRewrites
	// The restored state takes a revision of its own, above every one
	// before, on either backend: revision seen named the replaced state (a
	// read at it answered "new"), and a follower that had it must be told
	// that it is gone (compacted, below), not go on past the restore
	// unaware. (bolt gave the restored state revision seen itself.)
	assert.Greater(t, res.Revision, seen, "the restore's revision is above every one before")
	replaced, restoredAt := seen, res.Revision
	seen = res.Revision
	assert.Equal(t, seen, b.Revision())
	assert.NotEqual(t, gen, b.Generation(), "a full restore changes the generation")
	assert.True(t, isClosed(changed), "followers are woken by the restore")
	assert.NoError(t, b.Ready(), "ready again once the restore is done")

	restored, rev := b.state()
	assert.Equal(t, seen, rev)
	if rewrites {
		assert.Equal(t, withoutRevisions(snapState), withoutRevisions(restored), "exactly the snapshot's records, at new revisions")
	} else {
		assert.Equal(t, snapState, restored, "exactly the snapshot's records")
	}
	ns, err := b.Namespaces()
	require.NoError(t, err)
	assert.Equal(t, info.Namespaces, ns, "exactly the snapshot's namespaces")
	histRevs := b.historyRevs("default", "a")
	oldRev := info.Revision
	if rewrites {
		require.Len(t, histRevs, 1, "the snapshot's history, one change")
		assert.Less(t, histRevs[0], seen, "restored history is below the restore's revision")
		oldRev = histRevs[0]
		// The restored change's revision is new: it is not readable as
		// history of the time before the restore.
		_, err := b.GetAt("default", "a", info.Revision)
		if ce := assertCompacted(t, err, "the snapshot's own revision"); ce != nil {
			assert.Equal(t, info.Revision, ce.RestoredFrom)
		}
	} else {
		assert.Equal(t, []uint64{1}, histRevs, "the snapshot's history")
	}
	old, err := b.GetAt("default", "a", oldRev)
	if !rewrites {
		require.NoError(t, err, "history up to the snapshot's revision is readable")
		assert.Equal(t, `"old"`, string(old.Value))
	} else {
		assertCompacted(t, err, "restored history is below the restore's revision")
	}

	assertDiscarded := func(when string) {
		t.Helper()
		_, err := b.GetAt("default", "a", replaced)
		assertCompacted(t, err, "get at the replaced state's revision, %s", when)
		// The status says which revisions are gone, and they are.
		st, err := b.Status()
		if assert.NoError(t, err, when) && assert.NotNil(t, st.LastRestore, "the status names the restore, %s", when) {
			m := st.LastRestore
			assert.Equal(t, restoredAt, m.Revision, "the restored state's revision, %s", when)
			assert.Equal(t, info.Revision, m.SnapshotRevision, when)
			if rewrites {
				assert.Equal(t, uint64(1), m.DiscardedFrom, "every revision before the restore's, %s", when)
				// Nothing below the restore answers: history starts there,
				// as the reads' compacted errors say (etcd's status said 0).
				assert.GreaterOrEqual(t, st.CompactedRevision, m.Revision, "the status's compaction mark, %s", when)
			} else {
				assert.Equal(t, info.Revision+1, m.DiscardedFrom, "the revisions after the snapshot's, %s", when)
			}
			for r := max(m.DiscardedFrom, 1); r < m.Revision; r++ {
				assertCompacted(t, b.CheckRevision(r), "revision %d, in the status's discarded range, %s", r, when)
			}
			if m.DiscardedFrom > 1 {
				assert.NoError(t, b.CheckRevision(m.DiscardedFrom-1), "below the discarded range, %s", when)
			}
		}
		for r := info.Revision + 1; r < seen; r++ {
			if ce := assertCompacted(t, b.CheckRevision(r), "revision %d, discarded by the restore, %s", r, when); ce != nil {
				assert.Equal(t, info.Revision, ce.RestoredFrom, "the error names the snapshot's revision, %s", when)
				assert.Equal(t, restoredAt, ce.Compacted, "and the restore's, where history answers again, %s", when)
			}
			_, err := b.GetAt("default", "a", r)
			assertCompacted(t, err, "get at discarded revision %d, %s", r, when)
		}
		if rewrites {
			_, err := b.ReadLog(info.Revision, 10)
			assertCompacted(t, err, "a follower at the snapshot's revision holds none of the restored revisions, %s", when)
		} else {
			// The snapshot's revision is in the restored history: a
			// follower that stopped there holds the restored state.
			_, err := b.ReadLog(info.Revision, 10)
			assert.NoError(t, err, "a follower at the snapshot's revision holds the restored state, %s", when)
			_, err = b.ReadLog(info.Revision+1, 10)
			assertCompacted(t, err, "a follower cannot resume from the first discarded revision, %s", when)
		}
		_, err = b.ReadLog(seen-1, 10)
		assertCompacted(t, err, "a follower cannot resume from a discarded revision, %s", when)
		// The restore's own revision is the current one: reading at it
		// answers the current (restored) data, as a read at the head must.
		r, err := b.GetAt("default", "a", seen)
		if assert.NoError(t, err, "get at the restore's revision, %s", when) {
			assert.Equal(t, `"old"`, string(r.Value), "get at the restore's revision, %s", when)
		}
		assert.NoError(t, b.CheckRevision(seen), "the current revision is readable, %s", when)
	}
	assertDiscarded("after the restore")
	// A follower from 0 (every change history holds) is served, on etcd
	// from the restore's revision.
	start, _, err := store.ResumeFrom(b, 0, nil)
	if assert.NoError(t, err, "a follower from revision 0 after the restore") && rewrites {
		assert.Equal(t, restoredAt, start)
	}
	changes, err := b.ReadLog(seen, 10)
	require.NoError(t, err, "from the restore's revision on, the log is whole")
	assert.Empty(t, changes)

	r := b.put("default", "a", `"next"`)
	b.after(seen, r.ModRev, "the next write is above every revision seen before")
	assert.Equal(t, uint64(2), r.Version, "versions continue from the snapshot's")
	changes, err = b.ReadLog(seen, 10)
	require.NoError(t, err)
	assert.Equal(t, []uint64{r.ModRev}, revisions(changes))
	if !rewrites {
		// The feed agrees with the keys' histories: the snapshot's
		// changes, then the ones after the restore.
		changes, err = b.ReadLog(info.Revision, 10)
		require.NoError(t, err)
		assert.Equal(t, []uint64{r.ModRev}, revisions(changes), "from the snapshot's revision, the next change is the first after the restore")
		assert.Equal(t, []uint64{r.ModRev, 1}, b.historyRevs("default", "a"))
	}

	b.restart()
	assert.Equal(t, r.ModRev, b.Revision())
	assert.Equal(t, `"next"`, b.value("default", "a"))
	assertDiscarded("after a restart")
	if rewrites {
		// History starts at the restore: a compaction below it has nothing
		// left to remove, and says where history starts, as the status does
		// (etcd's answered the changes of its own history below the switch).
		st, err := b.Status()
		require.NoError(t, err)
		res, err := b.CompactKeep(context.Background(), restoredAt-1, 1)
		require.NoError(t, err, "a compaction below the restore")
		assert.Equal(t, ctxd.CompactResult{Revision: st.CompactedRevision}, res, "a compaction below the restore")
	}
}

// A partial restore (some namespaces, a prefix) is one ordinary
// transaction of new revisions that makes that part equal to the
// snapshot, leaving the rest and the generation alone.
func checkPartialRestore(t testing.TB, h Harness) {
	if !h.Snapshots {
		checkNoSnapshots(t, h)
		return
	}
	b := open(t, h, Config{})
	ctx := t.Context()
	b.put("default", "app/x", `1`)
	b.put("default", "app/y", `1`)
	b.put("default", "other", `1`)
	b.put("team", "t", `1`)
	b.put("team", "u", `1`)
	path, _ := b.writeSnapshot()
	b.put("default", "app/x", `2`)
	b.del("default", "app/y")
	b.put("default", "app/z", `2`)
	b.put("default", "other", `2`)
	b.put("team", "t", `2`)
	b.put("team", "v", `2`)
	gen := b.Generation()
	live, rev := b.state()

	opts := ctxd.RestoreOptions{Namespaces: []string{"default"}, Prefix: "app/", Who: "ops"}
	wantDiff := []ctxd.NamespaceDiff{{Namespace: "default", Added: 1, Removed: 1, Changed: 1}}
	dry := opts
	dry.DryRun = true
	res, err := b.Restore(ctx, path, dry)
	require.NoError(t, err)
	assert.True(t, res.DryRun)
	assert.True(t, res.Partial)
	assert.Equal(t, wantDiff, res.Namespaces)
	afterDry, afterRev := b.state()
	assert.Equal(t, rev, afterRev, "a dry run takes no revision")
	assert.Equal(t, live, afterDry, "a dry run changes nothing")

	res, err = b.Restore(ctx, path, opts)
	require.NoError(t, err)
	assert.True(t, res.Partial)
	assert.False(t, res.DryRun)
	assert.Equal(t, wantDiff, res.Namespaces)
	if b.perTxn() {
		assert.Greater(t, res.Revision, rev, "the restore's changes, one new revision")
	} else {
		assert.Equal(t, rev+3, res.Revision, "three changes, new revisions")
	}
	assert.Equal(t, gen, b.Generation(), "a partial restore is ordinary changes")
	for key, want := range map[string]string{"app/x": `1`, "app/y": `1`, "other": `2`} {
		assert.Equal(t, want, b.value("default", key), key)
	}
	_, err = b.Get("default", "app/z")
	assert.ErrorIs(t, err, ctxd.ErrNotFound, "a key the snapshot does not have is deleted")
	assert.Equal(t, `2`, b.value("team", "t"), "other namespaces are untouched")

	x := b.get("default", "app/x")
	assert.Equal(t, "ops", x.Who, "the restore's changes are recorded as its Who")
	assert.Equal(t, uint64(3), x.Version, "the key's life goes on")
	log, err := b.ReadLog(rev, 10)
	require.NoError(t, err)
	assert.Equal(t, b.txnRevs(res.Revision, 3), revisions(log), "one transaction")
	assert.NoError(t, b.CheckRevision(rev), "history before the restore is still readable")

	// A whole namespace, no prefix.
	res, err = b.Restore(ctx, path, ctxd.RestoreOptions{Namespaces: []string{"team"}})
	require.NoError(t, err)
	assert.Equal(t, []ctxd.NamespaceDiff{{Namespace: "team", Removed: 1, Changed: 1, Unchanged: 1}}, res.Namespaces)
	assert.Equal(t, `1`, b.value("team", "t"))
	_, err = b.Get("team", "v")
	assert.ErrorIs(t, err, ctxd.ErrNotFound)

	// Nothing to change: no revision.
	current := b.Revision()
	res, err = b.Restore(ctx, path, ctxd.RestoreOptions{Namespaces: []string{"team"}})
	require.NoError(t, err)
	assert.Equal(t, []ctxd.NamespaceDiff{{Namespace: "team", Unchanged: 2}}, res.Namespaces)
	assert.Equal(t, current, res.Revision)
	assert.Equal(t, current, b.Revision(), "a restore that changes nothing takes no revision")

	_, err = b.Restore(ctx, path, ctxd.RestoreOptions{Namespaces: []string{"bad ns!"}})
	assert.ErrorIs(t, err, ctxd.ErrInvalid, "a bad namespace name")
	_, err = b.Restore(ctx, path, ctxd.RestoreOptions{Prefix: "nothing-has-this/"})
	assert.NoError(t, err, "a prefix nothing has")
	assert.Equal(t, current, b.Revision())
}

// checkNoSnapshots is what a backend without snapshots (Harness.Snapshots
// false) promises instead: every snapshot operation answers
// ctxd.ErrNotSupported, and nothing changes.
func checkNoSnapshots(t testing.TB, h Harness) {
	b := open(t, h, Config{})
	b.put("default", "a", `1`)
	unchanged := b.checkpoint()
	gen := b.Generation()
	var buf bytes.Buffer
	_, err := b.WriteSnapshot(&buf)
	assert.ErrorIs(t, err, ctxd.ErrNotSupported, "write a snapshot")
	assert.Zero(t, buf.Len(), "nothing was written")
	path := writeFile(t, "snapshot", []byte("a snapshot of another backend"))
	_, err = b.OpenSnapshot(path)
	assert.ErrorIs(t, err, ctxd.ErrNotSupported, "open a snapshot")
	for _, opts := range []ctxd.RestoreOptions{{}, {DryRun: true}, {Namespaces: []string{"default"}}, {Prefix: "a"}} {
		_, err = b.Restore(t.Context(), path, opts)
		assert.ErrorIs(t, err, ctxd.ErrNotSupported, "restore %+v", opts)
	}
	unchanged("an unsupported snapshot operation")
	assert.Equal(t, gen, b.Generation())
}

// assertErrorIsOne asserts that err matches one of the targets.
func assertErrorIsOne(t testing.TB, err error, msg string, targets ...error) {
	t.Helper()
	for _, target := range targets {
		if errors.Is(err, target) {
			return
		}
	}
	t.Errorf("%s: got %v, want an error matching one of %v", msg, err, targets)
}

// withoutRevisions is a state (viewState) without the records' create
// and mod revisions: what a restore that rewrites the snapshot's changes
// at new revisions keeps.
func withoutRevisions(state map[string]string) map[string]string {
	out := make(map[string]string, len(state))
	for id, line := range state {
		out[id] = revisionsInLine.ReplaceAllString(line, "")
	}
	return out
}

var revisionsInLine = regexp.MustCompile(` created@[0-9]+ mod@[0-9]+`)

// A full restore of another store's snapshot (another server's, or this
// data's before it was moved): its revisions numbered states of that
// store, which this one cannot tell from its own, so no revision below the
// restored state's may answer (a read at one answered this store's state
// before the restore) or let a follower that had one go on past the
// restore unaware: all are discarded, as after an offline restore into a
// new folder. Checked with the snapshot's revision below the live one,
// above it, and on a store that had none.
func checkFullRestoreOfAnotherStore(t testing.TB, h Harness) {
	if !h.Snapshots {
		return // checkFullRestore checks that restores are refused
	}
	ctx := t.Context()
	other := open(t, h, Config{})
	other.put("default", "k", `"theirs"`)
	low, lowInfo := other.writeSnapshot()
	for i := range 12 {
		other.put("default", "k", fmt.Sprintf(`"theirs %d"`, i))
	}
	high, highInfo := other.writeSnapshot()

	for _, c := range []struct {
		name string
		path string
		info ctxd.SnapshotInfo
		own  int    // writes of the restored store before the restore
		want string // the restored value
	}{
		{"snapshot below the live revision", low, lowInfo, 6, `"theirs"`},
		{"snapshot above the live revision", high, highInfo, 2, `"theirs 11"`},
		{"store that had no revision", high, highInfo, 0, `"theirs 11"`},
	} {
		b := open(t, h, Config{})
		for i := range c.own {
			b.put("default", "k", fmt.Sprintf(`"mine %d"`, i))
		}
		seen := b.Revision()
		res, err := b.Restore(ctx, c.path, ctxd.RestoreOptions{})
		require.NoError(t, err, c.name)
		assert.Greater(t, res.Revision, seen, "%s: the restored state's revision is above every one the store had", c.name)
		assert.GreaterOrEqual(t, res.Revision, c.info.Revision, "%s: and not below the snapshot's", c.name)
		assertDiscarded := func(when string) {
			t.Helper()
			r, err := b.GetAt("default", "k", res.Revision)
			if assert.NoError(t, err, "%s: a read at the restore's revision, %s", c.name, when) {
				assert.Equal(t, c.want, string(r.Value), "%s: the snapshot's state, %s", c.name, when)
			}
			for rev := uint64(1); rev < res.Revision; rev++ {
				_, err := b.GetAt("default", "k", rev)
				assertCompacted(t, err, "%s: a read at revision %d, %s", c.name, rev, when)
				_, err = b.ReadLog(rev, 10)
				assertCompacted(t, err, "%s: a follower at revision %d, %s", c.name, rev, when)
			}
			st, err := b.Status()
			if assert.NoError(t, err) && assert.NotNil(t, st.LastRestore, "%s: the status names the restore, %s", c.name, when) {
				assert.Equal(t, ctxd.RestoreMark{Revision: res.Revision, SnapshotRevision: c.info.Revision, DiscardedFrom: 1}, *st.LastRestore,
					"%s: every revision below the restored state's is discarded, %s", c.name, when)
			}
		}
		assertDiscarded("after the restore")
		b.restart()
		assert.Equal(t, res.Revision, b.Revision(), "%s: the restored revision after a restart", c.name)
		assertDiscarded("after a restart")
	}
}

// A partial restore gives keys back their snapshot's deadline, or none:
// a key whose value is the snapshot's but whose expiry is not (a ttl put
// since, or one made permanent) is changed, in the dry run's counts too.
// Restored again, nothing changes.
func checkPartialRestoreOfDeadlines(t testing.TB, h Harness) {
	if !h.Snapshots || !h.Expiry {
		return
	}
	b := open(t, h, h.ttlConfig())
	ctx := t.Context()
	b.put("default", "permanent", `1`)
	snapDeadline := b.putTTL("default", "expiring", `1`, time.Hour).ExpiresAt
	path, _ := b.writeSnapshot()
	b.putTTL("default", "permanent", `1`, time.Hour)
	b.put("default", "expiring", `1`)

	opts := ctxd.RestoreOptions{Namespaces: []string{"default"}}
	dry := opts
	dry.DryRun = true
	want := []ctxd.NamespaceDiff{{Namespace: "default", Changed: 2}}
	res, err := b.Restore(ctx, path, dry)
	require.NoError(t, err)
	assert.Equal(t, want, res.Namespaces, "the dry run counts a changed deadline")
	res, err = b.Restore(ctx, path, opts)
	require.NoError(t, err)
	assert.Equal(t, want, res.Namespaces)
	assert.True(t, b.get("default", "permanent").ExpiresAt.IsZero(), "permanent again, as in the snapshot")
	got := b.get("default", "expiring").ExpiresAt
	assert.WithinDuration(t, snapDeadline, got, 2*time.Second, "the snapshot's deadline is back")

	res, err = b.Restore(ctx, path, opts)
	require.NoError(t, err)
	assert.Equal(t, []ctxd.NamespaceDiff{{Namespace: "default", Unchanged: 2}}, res.Namespaces, "restored again: nothing to change")

	// A key whose snapshot deadline has passed is not in the snapshot's
	// present: not put back (it came back, then expired a second time),
	// and a key of its name made since is removed, as for any key the
	// snapshot does not have.
	lock := b.putTTL("locks", "lock", `"w1"`, 2*h.ttlUnit())
	b.put("locks", "other", `1`)
	path, info := b.writeSnapshot()
	exp := b.waitExpiry(lock.ModRev, "locks", "lock")
	require.Less(t, info.Revision, exp.Revision, "the snapshot was written before the lock expired: it holds the lock")
	opts = ctxd.RestoreOptions{Namespaces: []string{"locks"}}
	dry = opts
	dry.DryRun = true
	res, err = b.Restore(ctx, path, dry)
	require.NoError(t, err)
	assert.Equal(t, []ctxd.NamespaceDiff{{Namespace: "locks", Unchanged: 1}}, res.Namespaces, "an expired key is not added")
	rev := b.Revision()
	res, err = b.Restore(ctx, path, opts)
	require.NoError(t, err)
	assert.Equal(t, []ctxd.NamespaceDiff{{Namespace: "locks", Unchanged: 1}}, res.Namespaces)
	assert.Equal(t, rev, b.Revision(), "nothing written")
	_, err = b.Get("locks", "lock")
	assert.ErrorIs(t, err, ctxd.ErrNotFound)
	b.put("locks", "lock", `"w2"`)
	res, err = b.Restore(ctx, path, opts)
	require.NoError(t, err)
	assert.Equal(t, []ctxd.NamespaceDiff{{Namespace: "locks", Removed: 1, Unchanged: 1}}, res.Namespaces)
	_, err = b.Get("locks", "lock")
	assert.ErrorIs(t, err, ctxd.ErrNotFound, "as in the snapshot's present")
}

// A whole restore answers the restored state's revision even while writes
// go on: one made right after the swap must not move the answer past it
// (a watcher resuming from the answer would skip that write).
func checkFullRestoreUnderWrites(t testing.TB, h Harness) {
	if !h.Snapshots {
		return
	}
	b := open(t, h, Config{})
	ctx := t.Context()
	b.put("default", "a", `"snap"`)
	path, _ := b.writeSnapshot()
	b.put("default", "a", `"later"`)

	stop := make(chan struct{})
	var wg sync.WaitGroup
	var writes atomic.Int64
	for w := range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; ; i++ {
				select {
				case <-stop:
					return
				default:
				}
				_, err := b.Txn(ctx, []ctxd.Write{{Namespace: "default", Key: fmt.Sprintf("w%d", w), Op: ctxd.OpPut, Value: json.RawMessage(fmt.Sprint(i)), Who: "test"}})
				if err == nil {
					writes.Add(1)
				}
			}
		}()
	}
	for writes.Load() < 20 {
		time.Sleep(time.Millisecond)
	}
	res, err := b.Restore(ctx, path, ctxd.RestoreOptions{})
	for n := writes.Load(); writes.Load() < n+20; {
		time.Sleep(time.Millisecond) // writes after the swap
	}
	close(stop)
	wg.Wait()
	require.NoError(t, err)
	st, err := b.Status()
	require.NoError(t, err)
	require.NotNil(t, st.LastRestore)
	assert.Equal(t, st.LastRestore.Revision, res.Revision, "the answer is the restored state's revision")
	r, err := b.GetAt("default", "a", res.Revision)
	if assert.NoError(t, err) {
		assert.Equal(t, `"snap"`, string(r.Value))
	}
	assert.Greater(t, b.Revision(), res.Revision, "writes went on after the restore")
}
