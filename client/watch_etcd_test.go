package client

import (
	"context"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/framework0/ctxd"
	"github.com/framework0/ctxd/configs"
	"github.com/framework0/ctxd/internal/testkit"
	"github.com/framework0/ctxd/internal/testkit/etcdkit"
)

// On etcd a transaction's changes share one revision and come in one
// batch frame: Watch hands every one of them to its callback, not only
// the first (a change is dropped as already seen only when its revision
// is at or below the position before its frame).
func TestWatchTxnOnEtcd(t *testing.T) {
	srv := testkit.StartServer(t, testkit.WithConfig(func(c *configs.Config) {
		c.Store.Backend = configs.BackendEtcd
		c.Etcd.Endpoints = []string{etcdkit.Shared(t).Endpoint}
		c.Etcd.Prefix = etcdkit.Prefix(t.Name())
	}))
	c, err := New(srv.URL)
	require.NoError(t, err)
	ev := newEvents()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	connected := make(chan uint64, 1)
	go func() {
		done <- c.Watch(ctx, WatchOptions{OnConnect: func(rev uint64) { connected <- rev }}, ev.add)
	}()
	<-connected
	res, err := srv.Backend().Txn(context.Background(), []ctxd.Write{
		{Namespace: "default", Key: "a", Op: ctxd.OpPut, Value: []byte(`1`), Who: "t"},
		{Namespace: "default", Key: "b", Op: ctxd.OpPut, Value: []byte(`2`), Who: "t"},
		{Namespace: "default", Key: "c", Op: ctxd.OpPut, Value: []byte(`3`), Who: "t"},
	})
	require.NoError(t, err)
	marker, err := srv.Backend().Put(context.Background(), "default", "marker", []byte(`0`), nil, "t")
	require.NoError(t, err)
	got := ev.waitRev(t, marker.ModRev)
	var keys []string
	for _, e := range got {
		keys = append(keys, e.Key)
	}
	assert.Equal(t, []string{"a", "b", "c", "marker"}, keys)
	assert.Equal(t, []uint64{res.Revision, res.Revision, res.Revision, marker.ModRev}, eventRevs(got))
	cancel()
	require.NoError(t, <-done)
}
