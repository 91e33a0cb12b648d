package bolt_test

import (
	"context"
	"testing"
	"time"

	"github.com/anishathalye/porcupine"
	"github.com/stretchr/testify/require"

	"github.com/framework0/ctxd/internal/linearize"
	"github.com/framework0/ctxd/internal/testkit"
	"github.com/framework0/ctxd/server"
	"github.com/framework0/ctxd/store/bolt"
)

// cacheWorkload runs 8 clients on 4 hot keys of a server whose committer
// applies every change at once (so that changes leave the overlay under
// the readers, and Gets go to the cache and bbolt), and returns the
// history with the cache's counters.
func cacheWorkload(t *testing.T, tune func(*bolt.Options)) (linearize.History, *bolt.Store) {
	t.Helper()
	srv := testkit.StartServer(t, testkit.WithServerOptions(server.StoreOptions(func(o *bolt.Options) {
		o.CommitInterval, o.CommitChanges = time.Microsecond, 1
		tune(o)
	})))
	st, ok := srv.Backend().(*bolt.Store)
	require.True(t, ok, "the server's backend is %T", srv.Backend())
	rec := linearize.NewRecorder()
	w := linearize.Workload{URLs: []string{srv.URL}, Clients: 8, Keys: linearize.DefaultKeys(4), Ops: 1500}
	stats, err := w.Run(context.Background(), rec)
	require.NoError(t, err)
	t.Logf("workload: %v", stats)
	return rec.History(), st
}

// Concurrent clients over HTTP, with Gets served from the cache between
// the committer's batches: porcupine accepts the history.
func TestGetCacheLinearizable(t *testing.T) {
	t.Parallel()
	h, st := cacheWorkload(t, func(*bolt.Options) {})
	status, err := st.Status()
	require.NoError(t, err)
	t.Logf("cache: %+v", *status.ReadCache)
	require.Positive(t, status.ReadCache.Hits, "no Get was served from the cache: the test checked bbolt, not the cache")
	linearize.Check(t, h, linearize.DefaultTimeout)
}

// The negative control: the same workload on a cache that forgets
// nothing serves states the committer has replaced, and porcupine says so.
func TestGetCacheWithoutInvalidationIsCaught(t *testing.T) {
	t.Parallel()
	h, _ := cacheWorkload(t, func(o *bolt.Options) { *o = bolt.WithoutCacheInvalidation(*o) })
	r := linearize.Verify(h, linearize.DefaultTimeout)
	t.Logf("linearizability: %v", r)
	require.Equal(t, porcupine.Illegal, r.Verdict, "stale reads from the cache went unnoticed")
}
