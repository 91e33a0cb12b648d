package bolt_test

import (
	"context"
	"fmt"
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
// history with the cache's counters. The 1,500 operations run in 3 rounds;
// before each, one more client puts each key and, once the committer has
// applied the puts, reads each key twice, all recorded too: the second
// read of a key is served by the cache whatever the load (nothing changed
// the key since the first read put it there), and the round that follows
// starts on a warm cache.
func cacheWorkload(t *testing.T, tune func(*bolt.Options)) (linearize.History, *bolt.Store) {
	t.Helper()
	srv := testkit.StartServer(t, testkit.WithServerOptions(server.StoreOptions(func(o *bolt.Options) {
		o.CommitInterval, o.CommitChanges = time.Microsecond, 1
		tune(o)
	})))
	st, ok := srv.Backend().(*bolt.Store)
	require.True(t, ok, "the server's backend is %T", srv.Backend())
	rec := linearize.NewRecorder()
	w := linearize.Workload{URLs: []string{srv.URL}, Clients: 8, Keys: linearize.DefaultKeys(4), Ops: 500}
	for round := range 3 {
		var puts, gets []linearize.Input
		for _, k := range w.Keys {
			puts = append(puts, linearize.Input{Kind: linearize.Put, Key: k, Value: fmt.Sprintf("quiet-%d-%s", round, k)})
			gets = append(gets, linearize.Input{Kind: linearize.Get, Key: k})
		}
		_, err := w.Sequence(context.Background(), rec, puts...)
		require.NoError(t, err)
		checkpoint(t, st)
		_, err = w.Sequence(context.Background(), rec, append(gets, gets...)...)
		require.NoError(t, err)
		stats, err := w.Run(context.Background(), rec)
		require.NoError(t, err)
		t.Logf("workload: %v", stats)
	}
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
	// At least one per key and round: the second of the quiet reads.
	require.GreaterOrEqual(t, status.ReadCache.Hits, uint64(3*4), "Gets were not served from the cache: the test checked bbolt, not the cache")
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
