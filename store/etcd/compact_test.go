package etcd_test

import (
	"encoding/json"
	"strconv"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/framework0/ctxd"
	"github.com/framework0/ctxd/internal/testkit/etcdkit"
	"github.com/framework0/ctxd/store"
	"github.com/framework0/ctxd/store/etcd"
)

// A compaction that etcd's own (its --auto-compaction, etcdctl compact)
// overtakes between ctxd's look at etcd's mark and its request succeeds:
// the history it asked to remove is gone. Without this, the request
// failed as outcome_unknown, and retention logged an error. The control:
// the same compaction alone removes what it counted.
func TestCompactionOvertakenByEtcdsOwn(t *testing.T) {
	srv, err := etcdkit.Start() // its own: a compaction is the cluster's
	require.NoError(t, err)
	t.Cleanup(srv.Close)
	s, err := etcd.Open(etcd.Options{Endpoints: []string{srv.Endpoint}, Prefix: etcdkit.Prefix(etcdkit.Name(t))})
	require.NoError(t, err)
	t.Cleanup(func() { _ = s.Close() })
	cli, err := clientv3.New(clientv3.Config{Endpoints: []string{srv.Endpoint}})
	require.NoError(t, err)
	t.Cleanup(func() { _ = cli.Close() })
	var revs []uint64
	for i := range 6 {
		rec, err := s.Put(t.Context(), "default", "a", json.RawMessage(strconv.Itoa(i)), nil, "t")
		require.NoError(t, err)
		revs = append(revs, rec.ModRev)
	}

	res, err := s.CompactKeep(t.Context(), revs[1], 1)
	require.NoError(t, err)
	assert.Equal(t, revs[1], res.Revision)
	assert.Equal(t, 1, res.Removed, "the control: its own compaction counts what it removed")

	etcd.BeforeCompact(s, func() {
		_, err := cli.Compact(t.Context(), int64(revs[4]))
		require.NoError(t, err)
	})
	res, err = s.CompactKeep(t.Context(), revs[3], 1)
	require.NoError(t, err, "overtaken by etcd's own compaction")
	assert.Equal(t, revs[4], res.Revision, "etcd's mark")
	assert.Zero(t, res.Removed, "etcd removed them")
}

// A prefix idle while etcd is compacted past its last change (others
// wrote) still has a view of now: read at the compaction mark, where its
// state is the same, with the change that made each key what it is as
// its history. Before, every view failed with compacted until the prefix
// was written again (no export, dump or snapshot of it); reading at the
// mark, the history's replay waited for a change that never came.
func TestAViewOfAPrefixIdleAcrossACompaction(t *testing.T) {
	srv := etcdkit.Own(t) // a compaction is the cluster's
	s, err := etcd.Open(etcd.Options{Endpoints: []string{srv.Endpoint}, Prefix: etcdkit.Prefix(etcdkit.Name(t))})
	require.NoError(t, err)
	t.Cleanup(func() { _ = s.Close() })
	put, err := s.Put(t.Context(), "default", "a", json.RawMessage(`1`), nil, "t")
	require.NoError(t, err)
	cli, err := clientv3.New(clientv3.Config{Endpoints: []string{srv.Endpoint}})
	require.NoError(t, err)
	t.Cleanup(func() { _ = cli.Close() })
	var head int64
	for range 3 {
		resp, err := cli.Put(t.Context(), "/elsewhere/x", "1")
		require.NoError(t, err)
		head = resp.Header.Revision
	}
	_, err = cli.Compact(t.Context(), head)
	require.NoError(t, err)

	done := make(chan struct{})
	var keys, changes []string
	var viewRev uint64
	go func() {
		defer close(done)
		err = s.View(func(v store.View) error {
			viewRev = v.Revision()
			if err := v.ForEach("default", "", func(r ctxd.Record) error { keys = append(keys, r.Key); return nil }); err != nil {
				return err
			}
			return v.ForEachChange("default", func(c ctxd.Change) error { changes = append(changes, c.Key); return nil })
		})
	}()
	select {
	case <-done:
	case <-time.After(10 * time.Second):
		t.Fatal("the view's history did not end")
	}
	require.NoError(t, err)
	assert.Equal(t, uint64(head), viewRev, "read at the compaction mark")
	assert.Greater(t, viewRev, put.ModRev)
	assert.Equal(t, []string{"a"}, keys)
	assert.Equal(t, []string{"a"}, changes, "the change that made a what it is")
}
