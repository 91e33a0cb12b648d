package client

import (
	"context"
	"errors"
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
		c.Etcd.Prefix = etcdkit.Prefix(etcdkit.Name(t))
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

// Issue #16: a Watch that handed the first k changes of an etcd
// transaction to its callback and ended (here the callback's error; a
// killed process alike) resumes with FromRev = the last event's Rev and
// FromIndex = its Index+1, on another instance, and gets exactly the
// rest of the transaction: no gap, no duplicate. Each event of the
// transaction says its place (Index, Count). The negative control
// resumes with FromRev alone and loses the rest.
func TestWatchResumeInsideRevisionOnEtcd(t *testing.T) {
	endpoint, prefix := etcdkit.Shared(t).Endpoint, etcdkit.Prefix(etcdkit.Name(t))
	a := testkit.StartServer(t, testkit.WithEtcd(endpoint, prefix))
	b := testkit.StartServer(t, testkit.WithEtcd(endpoint, prefix))
	ca, err := New(a.URL)
	require.NoError(t, err)
	cb, err := New(b.URL)
	require.NoError(t, err)
	ctx := context.Background()
	keys := []string{"t0", "t1", "t2", "t3"}
	var writes []ctxd.Write
	for _, k := range keys {
		writes = append(writes, ctxd.Write{Namespace: "default", Key: k, Op: ctxd.OpPut, Value: []byte(`1`), Who: "t"})
	}
	res, err := a.Backend().Txn(ctx, writes)
	require.NoError(t, err)
	marker, err := b.Backend().Put(ctx, "default", "marker", []byte(`0`), nil, "t")
	require.NoError(t, err)

	stop := errors.New("enough")
	// watch runs a Watch on c until fn has had n events, and returns them.
	watch := func(c *Client, opts WatchOptions, n int) []WatchEvent {
		var got []WatchEvent
		err := c.Watch(ctx, opts, func(ev WatchEvent) error {
			got = append(got, ev)
			if len(got) == n || ev.Rev >= marker.ModRev {
				return stop
			}
			return nil
		})
		require.ErrorIs(t, err, stop)
		return got
	}
	before := res.Revision - 1
	for k := 1; k < len(keys); k++ {
		first := watch(ca, WatchOptions{FromRev: &before}, k)
		last := first[k-1]
		require.Equal(t, []any{res.Revision, keys[k-1], k - 1, len(keys)}, []any{last.Rev, last.Key, last.Index, last.Count})

		rest := watch(cb, WatchOptions{FromRev: &last.Rev, FromIndex: last.Index + 1}, 100)
		var got []string
		for _, ev := range rest {
			got = append(got, ev.Key)
		}
		assert.Equal(t, append(append([]string{}, keys[k:]...), "marker"), got, "k=%d: the rest of the transaction, once", k)

		old := watch(cb, WatchOptions{FromRev: &last.Rev}, 100)
		assert.Equal(t, []uint64{marker.ModRev}, eventRevs(old), "negative control: FromRev alone loses the rest of revision %d", res.Revision)
	}
}
