package etcd_test

import (
	"encoding/json"
	"strconv"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/framework0/ctxd/internal/testkit/etcdkit"
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
