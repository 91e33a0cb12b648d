package bolt_test

import (
	"bytes"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/framework0/ctxd"
	"github.com/framework0/ctxd/store"
	"github.com/framework0/ctxd/store/bolt"
)

func writeSnapshot(t *testing.T, s *testStore) (string, ctxd.SnapshotInfo) {
	t.Helper()
	path := filepath.Join(t.TempDir(), "snap.db")
	f, err := os.Create(path)
	require.NoError(t, err)
	info, err := s.WriteSnapshot(f)
	require.NoError(t, err)
	require.NoError(t, f.Sync())
	require.NoError(t, f.Close())
	return path, info
}

// dumpView returns ns/key -> value|version of a view, for comparisons.
func dumpView(t *testing.T, v store.View) map[string]string {
	t.Helper()
	out := map[string]string{}
	for _, ns := range v.Namespaces() {
		require.NoError(t, v.ForEach(ns.Name, "", func(r ctxd.Record) error {
			out[ns.Name+"/"+r.Key] = fmt.Sprintf("%s|v%d", r.Value, r.Version)
			return nil
		}))
	}
	return out
}

func TestSnapshotWhileWritingIsConsistentAtItsRevision(t *testing.T) {
	s := openStore(t, bolt.Options{})
	var stop atomic.Bool
	var wg sync.WaitGroup
	for w := 0; w < 8; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; !stop.Load(); i++ {
				_, err := s.Put(ctx, "default", fmt.Sprintf("w%d/%d", w, i%50), json.RawMessage(fmt.Sprint(i)), nil, "w")
				if !assert.NoError(t, err) {
					return
				}
			}
		}()
	}
	for s.Revision() < 200 {
		s.put("default", "tick", `0`)
	}
	path, info := writeSnapshot(t, s)
	stop.Store(true)
	wg.Wait()

	snap, err := bolt.OpenSnapshot(path)
	require.NoError(t, err)
	defer snap.Close()
	require.NoError(t, snap.Verify())
	var got map[string]string
	require.NoError(t, snap.View(func(v store.View) error {
		assert.Equal(t, info.Revision, v.Revision())
		got = dumpView(t, v)
		return nil
	}))
	// The live store's point-in-time reads at the snapshot revision must
	// give exactly the snapshot's content.
	want := map[string]string{}
	require.NoError(t, s.View(func(v store.View) error {
		for _, ns := range v.Namespaces() {
			require.NoError(t, v.ForEach(ns.Name, "", func(r ctxd.Record) error {
				old, err := s.GetAt(ns.Name, r.Key, info.Revision)
				if err == nil {
					want[ns.Name+"/"+r.Key] = fmt.Sprintf("%s|v%d", old.Value, old.Version)
				}
				return nil
			}))
		}
		return nil
	}))
	assert.Equal(t, want, got)
	assert.Greater(t, s.Revision(), info.Revision, "writers kept writing")
}

func TestFullRestore(t *testing.T) {
	s := openStore(t, bolt.Options{})
	s.put("default", "a", `"old"`)
	s.put("team", "b", `1`)
	path, info := writeSnapshot(t, s)
	var before map[string]string
	require.NoError(t, s.View(func(v store.View) error { before = dumpView(t, v); return nil }))

	s.put("default", "a", `"new"`)
	s.put("default", "c", `3`)
	_, err := s.Delete(ctx, "team", "b", nil, "t")
	require.NoError(t, err)
	seen := s.Revision()
	gen := s.Generation()
	_, changed := s.Committed()

	dry, err := s.Restore(ctx, path, ctxd.RestoreOptions{DryRun: true})
	require.NoError(t, err)
	assert.Equal(t, []ctxd.NamespaceDiff{
		{Namespace: "default", Added: 0, Removed: 1, Changed: 1},
		{Namespace: "team", Added: 1},
	}, dry.Namespaces)
	assert.Equal(t, seen, s.Revision(), "a dry run changes nothing")
	a, _ := s.Get("default", "a")
	assert.Equal(t, `"new"`, string(a.Value))

	res, err := s.Restore(ctx, path, ctxd.RestoreOptions{})
	require.NoError(t, err)
	assert.Equal(t, info.Revision, res.SnapshotRevision)
	assert.Equal(t, seen, res.Revision, "the revision never goes back")
	assert.Equal(t, gen+1, s.Generation())
	select {
	case <-changed:
	default:
		t.Fatal("followers were not woken by the restore")
	}
	var after map[string]string
	require.NoError(t, s.View(func(v store.View) error { after = dumpView(t, v); return nil }))
	assert.Equal(t, before, after, "exactly the snapshot's state")
	h, err := s.History("default", "a", ctxd.HistoryOptions{})
	require.NoError(t, err)
	assert.Len(t, h.Changes, 1, "the snapshot's history")

	_, err = s.GetAt("default", "a", seen)
	assert.ErrorIs(t, err, ctxd.ErrCompacted, "revisions discarded by the restore are not answered")
	_, err = s.ReadLog(seen-1, 10)
	assert.ErrorIs(t, err, ctxd.ErrCompacted, "a follower cannot resume from a discarded revision")
	_, err = s.ReadLog(seen, 10)
	assert.NoError(t, err, "from the restore's revision on, the log is whole")
	old, err := s.GetAt("default", "a", info.Revision)
	require.NoError(t, err)
	assert.Equal(t, `"old"`, string(old.Value))

	r := s.put("default", "a", `"next"`)
	assert.Equal(t, seen+1, r.ModRev, "the next write is above everything seen before")
	assert.Equal(t, uint64(2), r.Version)

	s.reopen()
	assert.Equal(t, seen+1, s.Revision())
	got, err := s.Get("default", "a")
	require.NoError(t, err)
	assert.Equal(t, `"next"`, string(got.Value))
}

func TestPartialRestore(t *testing.T) {
	s := openStore(t, bolt.Options{})
	s.put("default", "app/x", `1`)
	s.put("default", "app/y", `1`)
	s.put("default", "other", `1`)
	s.put("team", "t", `1`)
	path, _ := writeSnapshot(t, s)
	s.put("default", "app/x", `2`)
	_, err := s.Delete(ctx, "default", "app/y", nil, "t")
	require.NoError(t, err)
	s.put("default", "app/z", `2`)
	s.put("default", "other", `2`)
	s.put("team", "t", `2`)
	gen := s.Generation()

	res, err := s.Restore(ctx, path, ctxd.RestoreOptions{Namespaces: []string{"default"}, Prefix: "app/", Who: "ops"})
	require.NoError(t, err)
	assert.True(t, res.Partial)
	assert.Equal(t, []ctxd.NamespaceDiff{{Namespace: "default", Added: 1, Removed: 1, Changed: 1}}, res.Namespaces)
	assert.Equal(t, gen, s.Generation(), "a partial restore is ordinary changes")

	for key, want := range map[string]string{"app/x": `1`, "app/y": `1`, "other": `2`} {
		r, err := s.Get("default", key)
		require.NoError(t, err, key)
		assert.Equal(t, want, string(r.Value), key)
	}
	_, err = s.Get("default", "app/z")
	assert.ErrorIs(t, err, ctxd.ErrNotFound)
	tm, _ := s.Get("team", "t")
	assert.Equal(t, `2`, string(tm.Value), "other namespaces untouched")

	h, err := s.History("default", "app/x", ctxd.HistoryOptions{})
	require.NoError(t, err)
	assert.Equal(t, "ops", h.Changes[0].Who, "the restore is in history")
	assert.Equal(t, uint64(3), h.Changes[0].Version)
	log, err := s.ReadLog(res.Revision-3, 10)
	require.NoError(t, err)
	assert.Len(t, log, 3, "one transaction of three changes")
}

func TestBadSnapshotsAreRefusedAndLiveDataUntouched(t *testing.T) {
	s := openStore(t, bolt.Options{})
	for i := 0; i < 200; i++ {
		s.put("default", fmt.Sprintf("k%03d", i), `"`+string(bytes.Repeat([]byte("v"), 100))+`"`)
	}
	good, _ := writeSnapshot(t, s)
	goodBytes, err := os.ReadFile(good)
	require.NoError(t, err)
	dir := t.TempDir()
	write := func(name string, b []byte) string {
		p := filepath.Join(dir, name)
		require.NoError(t, os.WriteFile(p, b, 0o600))
		return p
	}
	truncated := write("truncated.db", goodBytes[:len(goodBytes)/2])
	flipped := append([]byte(nil), goodBytes...)
	// Flip bits in the middle of the data pages, past the two meta pages.
	for i := 3 * 4096; i < len(flipped); i += 97 {
		flipped[i] ^= 0x5a
	}
	bitflip := write("bitflip.db", flipped)
	notBolt := write("text.db", []byte("this is not a database at all"))
	empty := write("empty.db", nil)

	newer := filepath.Join(dir, "newer.db")
	require.NoError(t, os.WriteFile(newer, goodBytes, 0o600))
	setSchema(t, newer, 99)

	liveBefore, err := os.ReadFile(s.Path())
	require.NoError(t, err)
	revBefore := s.Revision()
	for name, path := range map[string]string{"truncated": truncated, "bit-flipped": bitflip, "not bbolt": notBolt, "empty": empty, "newer schema": newer, "missing": filepath.Join(dir, "nope.db")} {
		t.Run(name, func(t *testing.T) {
			_, err := s.Restore(ctx, path, ctxd.RestoreOptions{})
			require.Error(t, err)
			_, err = s.Restore(ctx, path, ctxd.RestoreOptions{Namespaces: []string{"default"}})
			require.Error(t, err)
		})
	}
	assert.Equal(t, revBefore, s.Revision())
	liveAfter, err := os.ReadFile(s.Path())
	require.NoError(t, err)
	assert.True(t, bytes.Equal(liveBefore, liveAfter), "the live file is byte-for-byte unchanged")
}
