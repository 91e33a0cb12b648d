package etcd_test

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	clientv3 "go.etcd.io/etcd/client/v3"
	"go.uber.org/zap"

	"github.com/framework0/ctxd"
	"github.com/framework0/ctxd/internal/testkit"
	"github.com/framework0/ctxd/internal/testkit/etcdkit"
	"github.com/framework0/ctxd/store"
	"github.com/framework0/ctxd/store/bolt"
	"github.com/framework0/ctxd/store/etcd"
)

// fillHistory writes a history with every kind of change into st, and
// compacts it in the middle: a key updated across the mark, a
// transaction (several changes of one etcd revision), a delete and a
// create after it.
func fillHistory(t *testing.T, st store.Backend) {
	t.Helper()
	ctx := context.Background()
	put := func(ns, key, value, who string) ctxd.Record {
		r, err := st.Put(ctx, ns, key, json.RawMessage(value), nil, who)
		require.NoError(t, err)
		return r
	}
	put("default", "a", `1`, "ann")
	put("default", "a", `{"n":2}`, "bob")
	put("default", "b", `"first"`, "ann")
	mark := put("other", "x", `[1,2]`, "cy")
	_, err := st.CompactKeep(ctx, mark.ModRev, 1)
	require.NoError(t, err)
	_, err = st.Txn(ctx, []ctxd.Write{
		{Namespace: "default", Key: "c", Op: ctxd.OpPut, Value: json.RawMessage(`true`), Who: "txn"},
		{Namespace: "default", Key: "d", Op: ctxd.OpPut, Value: json.RawMessage(`null`), Who: "txn"},
		{Namespace: "other", Key: "x", Op: ctxd.OpPut, Value: json.RawMessage(`[3]`), Who: "txn"},
	})
	require.NoError(t, err)
	_, err = st.Delete(ctx, "default", "b", nil, "dan")
	require.NoError(t, err)
	put("default", "b", `"second"`, "eve")
	put("default", "a", `3`, "fay")
	_, err = st.Delete(ctx, "default", "d", nil, "gus")
	require.NoError(t, err)
}

// sameData asserts that got holds what want holds: every namespace's live
// keys with their values, versions, who and time, and each key's history
// (op, version, value, who, time; revisions are each backend's own).
func sameData(t *testing.T, want, got store.Backend) {
	t.Helper()
	wantNS, err := want.Namespaces()
	require.NoError(t, err)
	gotNS, err := got.Namespaces()
	require.NoError(t, err)
	require.Equal(t, wantNS, gotNS)
	for _, ns := range wantNS {
		wp, err := want.List(ns.Name, ctxd.ListOptions{Limit: 1000})
		require.NoError(t, err)
		gp, err := got.List(ns.Name, ctxd.ListOptions{Limit: 1000})
		require.NoError(t, err)
		require.Len(t, gp.Records, len(wp.Records), ns.Name)
		for i, w := range wp.Records {
			g := gp.Records[i]
			assert.Equal(t, w.Key, g.Key)
			assert.JSONEq(t, string(w.Value), string(g.Value), w.Key)
			assert.Equal(t, w.Version, g.Version, "version of %s", w.Key)
			assert.Equal(t, w.Who, g.Who, "who of %s", w.Key)
			assert.True(t, w.UpdatedAt.Equal(g.UpdatedAt), "time of %s: %v, %v", w.Key, w.UpdatedAt, g.UpdatedAt)
			assert.Equal(t, history(t, want, ns.Name, w.Key), history(t, got, ns.Name, w.Key), "history of %s", w.Key)
		}
	}
}

// historyStep is a change without its revisions, which differ between
// backends.
type historyStep struct {
	Op      ctxd.Op
	Version uint64
	Value   string
	Who     string
	Time    int64
}

func history(t *testing.T, st store.Backend, ns, key string) []historyStep {
	t.Helper()
	page, err := st.History(ns, key, ctxd.HistoryOptions{Limit: 100})
	require.NoError(t, err)
	var out []historyStep
	for _, c := range page.Changes {
		out = append(out, historyStep{Op: c.Op, Version: c.Version, Value: string(c.Value), Who: c.Who, Time: c.Time.UnixNano()})
	}
	return out
}

// TestSnapshotOfEtcdRestoresIntoBolt: a snapshot taken on etcd is the
// bolt backend's snapshot file: it opens and verifies as one, and both an
// online restore into a bolt store and an offline restore into a new data
// folder give back the same keys, values, versions, who, time and the
// history etcd still held.
func TestSnapshotOfEtcdRestoresIntoBolt(t *testing.T) {
	srv := etcdkit.Own(t)
	src, err := etcd.Open(etcd.Options{Endpoints: []string{srv.Endpoint}, Prefix: "/snap/"})
	require.NoError(t, err)
	t.Cleanup(func() { require.NoError(t, src.Close()) })
	fillHistory(t, src)

	path, info := testkit.WriteSnapshot(t, src)
	assert.Equal(t, src.Revision(), info.Revision, "the snapshot is at etcd's revision")
	assert.Equal(t, []ctxd.Namespace{{Name: "default", Keys: 3}, {Name: "other", Keys: 1}}, info.Namespaces)

	// etcd kept a's change in effect at the compaction and the one after.
	require.Len(t, history(t, src, "default", "a"), 2)

	snap, err := src.OpenSnapshot(path)
	require.NoError(t, err)
	require.NoError(t, snap.Verify())
	snapRev, err := snap.Revision()
	require.NoError(t, err)
	assert.Equal(t, info.Revision, snapRev, "the opened snapshot's revision is etcd's")
	var fileRev uint64
	require.NoError(t, snap.View(func(v store.View) error { fileRev = v.Revision(); return nil }))
	// The transaction's three changes took three revisions of the file's,
	// and the changes after it followed: the file's numbering is ahead.
	assert.Greater(t, fileRev, info.Revision, "the file numbered the transaction's changes apart")
	require.NoError(t, snap.Close())

	// ownRevision: a restored bolt store's snapshots are at its own
	// revisions, not the etcd revision its data came from.
	ownRevision := func(t *testing.T, dst store.Backend) {
		again, _ := testkit.WriteSnapshot(t, dst)
		snap, err := dst.OpenSnapshot(again)
		require.NoError(t, err)
		defer snap.Close()
		rev, err := snap.Revision()
		require.NoError(t, err)
		assert.Equal(t, dst.Revision(), rev, "a snapshot of the restored store")
	}

	t.Run("online", func(t *testing.T) {
		dst := testkit.OpenBolt(t, bolt.Options{})
		_, err := dst.Put(context.Background(), "default", "gone", json.RawMessage(`1`), nil, "t")
		require.NoError(t, err)
		res, err := dst.Restore(context.Background(), path, ctxd.RestoreOptions{})
		require.NoError(t, err)
		assert.Equal(t, info.Revision, res.SnapshotRevision)
		sameData(t, src, dst)
		_, err = dst.Get("default", "gone")
		assert.ErrorIs(t, err, ctxd.ErrNotFound)
		assert.Equal(t, fileRev, dst.Revision(), "the restored store goes on from the file's revisions")
		ownRevision(t, dst)
	})
	t.Run("offline into a new folder", func(t *testing.T) {
		db := filepath.Join(t.TempDir(), "new", "ctxd.db")
		res, err := bolt.RestoreFolder(context.Background(), db, path, bolt.FolderRestoreOptions{})
		require.NoError(t, err)
		assert.Equal(t, info.Revision, res.SnapshotRevision)
		assert.Equal(t, fileRev, res.Revision)
		dst := testkit.OpenBoltAt(t, db, bolt.Options{})
		sameData(t, src, dst)
		// Revisions continue after the file's.
		r, err := dst.Put(context.Background(), "default", "after", json.RawMessage(`1`), nil, "t")
		require.NoError(t, err)
		assert.Equal(t, fileRev+1, r.ModRev)
		ownRevision(t, dst)
	})
	t.Run("negative control: same value, other history", func(t *testing.T) {
		// A store whose a has the same last value and author differs in
		// what sameData compares: the check can fail.
		other := testkit.OpenBolt(t, bolt.Options{})
		_, err := other.Put(context.Background(), "default", "a", json.RawMessage(`3`), nil, "fay")
		require.NoError(t, err)
		assert.NotEqual(t, history(t, src, "default", "a"), history(t, other, "default", "a"))
	})
}

// A compaction (by another instance, or by etcd itself) that passes the
// revision a snapshot reads the state at, after the snapshot chose it,
// does not fail the snapshot: it starts again from the new mark. Before,
// it failed with compacted (scheduled snapshots failed so while another
// instance compacted often).
func TestASnapshotOutlivesACompactionDuringIt(t *testing.T) {
	srv := etcdkit.Own(t) // a compaction is the cluster's
	src, err := etcd.Open(etcd.Options{Endpoints: []string{srv.Endpoint}, Prefix: etcdkit.Prefix(etcdkit.Name(t))})
	require.NoError(t, err)
	t.Cleanup(func() { require.NoError(t, src.Close()) })
	for i := range 10 {
		_, err := src.Put(t.Context(), "default", fmt.Sprint("k", i%3), json.RawMessage(fmt.Sprint(i)), nil, "t")
		require.NoError(t, err)
	}
	cli, err := clientv3.New(clientv3.Config{Endpoints: []string{srv.Endpoint}, Logger: zap.NewNop()})
	require.NoError(t, err)
	defer cli.Close()
	compactions := 0
	etcd.BeforeSnapshotRead(src, func() {
		if compactions < 2 { // the first two tries
			compactions++
			_, err := src.Put(t.Context(), "default", "k0", json.RawMessage(`"moved"`), nil, "t")
			require.NoError(t, err)
			head, err := cli.Get(t.Context(), "any")
			require.NoError(t, err)
			_, err = cli.Compact(t.Context(), head.Header.Revision)
			require.NoError(t, err)
		}
	})
	path, info := testkit.WriteSnapshot(t, src)
	assert.Equal(t, 2, compactions)
	assert.Equal(t, src.Revision(), info.Revision, "the snapshot is of the state after the compactions")
	snap, err := src.OpenSnapshot(path)
	require.NoError(t, err)
	defer snap.Close()
	require.NoError(t, snap.Verify())
	values := map[string]string{}
	require.NoError(t, snap.View(func(v store.View) error {
		return v.ForEach("default", "", func(r ctxd.Record) error { values[r.Key] = string(r.Value); return nil })
	}))
	assert.Equal(t, map[string]string{"k0": `"moved"`, "k1": "7", "k2": "8"}, values)
}

// TestBadSnapshotIsRefusedByEtcd: a file that is not a snapshot, or a
// truncated one, does not open.
func TestBadSnapshotIsRefusedByEtcd(t *testing.T) {
	st := open(t, etcd.Options{Prefix: etcdkit.Prefix(etcdkit.Name(t))})
	dir := t.TempDir()
	path := filepath.Join(dir, "bad.snapshot")
	require.NoError(t, os.WriteFile(path, []byte("not a snapshot at all, but long enough to look like one"), 0o600))
	_, err := st.OpenSnapshot(path)
	assert.ErrorIs(t, err, ctxd.ErrBadSnapshot)
}

// A view (a dump, an export, a snapshot's) reads the generation current
// when it began to its end: a full restore through another instance that
// switches generations meanwhile does not make the rest of it read the
// new generation's keys at the view's revision, where they do not exist.
// Before, the second namespace read as empty, without an error.
func TestAViewReadsItsGenerationAcrossARestore(t *testing.T) {
	prefix := etcdkit.Prefix(etcdkit.Name(t))
	a := open(t, etcd.Options{Prefix: prefix})
	b := open(t, etcd.Options{Prefix: prefix})
	ctx := t.Context()
	for _, ns := range []string{"alpha", "beta"} {
		var ws []ctxd.Write
		for j := range 100 {
			ws = append(ws, ctxd.Write{Namespace: ns, Key: fmt.Sprintf("k%05d", j), Op: ctxd.OpPut, Value: json.RawMessage(`1`), Who: "t"})
		}
		_, err := a.Txn(ctx, ws)
		require.NoError(t, err)
	}
	path, _ := testkit.WriteSnapshot(t, a) // the same data: what a reader sees does not change
	seen := map[string]int{}
	require.NoError(t, b.View(func(v store.View) error {
		for _, ns := range v.Namespaces() {
			err := v.ForEach(ns.Name, "", func(r ctxd.Record) error {
				seen[ns.Name]++
				if ns.Name == "alpha" && seen[ns.Name] == 1 {
					_, err := a.Restore(ctx, path, ctxd.RestoreOptions{})
					require.NoError(t, err)
					testkit.Eventually(t, func() bool { return b.Generation() != 0 }, "b's watch saw the switch")
				}
				return nil
			})
			if err != nil {
				return err
			}
		}
		return nil
	}))
	assert.Equal(t, map[string]int{"alpha": 100, "beta": 100}, seen)
}

// A snapshot taken after a full restore holds the restored state and its
// history, which the restore staged under the new generation's keys before
// its switch: the snapshot's replay of the generation's history reads
// them as its own. (Only the instance's watch passes over them, as no
// change of the feed.) Restored into a new bolt store, it gives back what
// the restored prefix holds.
func TestASnapshotAfterAFullRestoreHoldsTheRestoredHistory(t *testing.T) {
	src := open(t, etcd.Options{Prefix: etcdkit.Prefix(etcdkit.Name(t))})
	fillHistory(t, src)
	path, _ := testkit.WriteSnapshot(t, src)
	putValue(t, src, "a", `"after the snapshot"`)
	_, err := src.Restore(context.Background(), path, ctxd.RestoreOptions{})
	require.NoError(t, err)

	again, info := testkit.WriteSnapshot(t, src)
	assert.Equal(t, []ctxd.Namespace{{Name: "default", Keys: 3}, {Name: "other", Keys: 1}}, info.Namespaces)
	back := testkit.OpenBolt(t, bolt.Options{})
	_, err = back.Restore(context.Background(), again, ctxd.RestoreOptions{})
	require.NoError(t, err)
	sameData(t, src, back)
	require.Len(t, history(t, back, "default", "a"), 2, "the restored history travelled")
}
