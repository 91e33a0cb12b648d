package etcd_test

import (
	"context"
	"testing"
	"time"

	"github.com/anishathalye/porcupine"
	"github.com/stretchr/testify/require"

	"github.com/framework0/ctxd/internal/linearize"
	"github.com/framework0/ctxd/internal/testkit"
	"github.com/framework0/ctxd/internal/testkit/etcdkit"
	"github.com/framework0/ctxd/store/etcd"
)

// cachedServers starts n ctxd servers on one prefix of the shared etcd,
// reading through their caches, and returns them with their stores.
func cachedServers(t *testing.T, n int) ([]string, []*etcd.Store) {
	t.Helper()
	prefix := etcdkit.Prefix(etcdkit.Name(t))
	var urls []string
	var stores []*etcd.Store
	for range n {
		srv := testkit.StartServer(t, testkit.WithEtcd(etcdkit.Shared(t).Endpoint, prefix))
		st, ok := srv.Backend().(*etcd.Store)
		require.True(t, ok, "the server's backend is %T", srv.Backend())
		testkit.Eventually(t, func() bool { return st.ReadCache().Ready }, "the read cache filled")
		urls, stores = append(urls, srv.URL), append(stores, st)
	}
	return urls, stores
}

// runWorkload runs 8 clients spread over the servers for ops operations
// and returns their history.
func runWorkload(t *testing.T, urls []string, ops int) linearize.History {
	t.Helper()
	rec := linearize.NewRecorder()
	w := linearize.Workload{URLs: urls, Clients: 8, Keys: linearize.DefaultKeys(4), Ops: ops}
	stats, err := w.Run(context.Background(), rec)
	require.NoError(t, err)
	t.Logf("workload: %v", stats)
	require.Positive(t, stats.Gets)
	return rec.History()
}

// Clients on two ctxd instances of one etcd prefix, each instance
// serving reads from its watch-fed cache, writes through both: porcupine
// accepts the history, also when both instances' watches are held back
// 5 ms per watch response: the revision wait keeps each read until the
// cache has every write acknowledged before it, wherever it was made.
func TestReadCacheLinearizable(t *testing.T) {
	for _, lag := range []time.Duration{0, 5 * time.Millisecond} {
		t.Run(lag.String(), func(t *testing.T) {
			urls, stores := cachedServers(t, 2)
			for _, st := range stores {
				etcd.LagReadCache(st, lag)
			}
			h := runWorkload(t, urls, 400)
			for i, st := range stores {
				cs := st.ReadCache()
				t.Logf("instance %d cache: %+v", i, cs)
				require.Positive(t, cs.Hits, "instance %d served no read from its cache", i)
				// A read the cache could not catch up for in time goes to
				// etcd (a miss): the watch held back by the lag falls behind
				// a busy machine's writes now and then.
				require.Greater(t, cs.Hits, cs.Misses, "instance %d sent most reads to etcd: the test checked etcd, not the cache", i)
			}
			t.Logf("linearizability: %v", linearize.Check(t, h, linearize.DefaultTimeout))
		})
	}
}

// The negative control: the same instances with the revision wait
// switched off and their watches 20 ms behind serve reads that miss
// writes acknowledged by the other instance, and porcupine says so.
func TestReadCacheWithoutRevisionWaitIsCaught(t *testing.T) {
	urls, stores := cachedServers(t, 2)
	for _, st := range stores {
		etcd.LagReadCache(st, 20*time.Millisecond)
		etcd.SkipReadCacheWait(st, true)
	}
	r := linearize.Verify(runWorkload(t, urls, 400), linearize.DefaultTimeout)
	t.Logf("linearizability: %v", r)
	require.Equal(t, porcupine.Illegal, r.Verdict, "stale reads from the cache went unnoticed")
}
