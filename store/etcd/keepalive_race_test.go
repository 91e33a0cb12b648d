package etcd_test

import (
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/framework0/ctxd"
	"github.com/framework0/ctxd/internal/testkit"
	"github.com/framework0/ctxd/internal/testkit/etcdkit"
	"github.com/framework0/ctxd/store"
	"github.com/framework0/ctxd/store/etcd"
	"github.com/framework0/ctxd/store/storetest"
)

// TestKeepAlivesRacingWritesOfTheirKeys: clients of two instances put
// (with a TTL), patch, delete and keep alive a few keys at once, so that
// keepalives race writes of their keys through the cache, etcd reads and
// groups (storetest.RaceWritesOfExpiringKeys: a keepalive without
// If-Match answers the key as it is then, or not found, never a conflict
// it did not ask about, which it answered when its key moved between its
// read and its rewrite). At the end both instances agree on every key.
func TestKeepAlivesRacingWritesOfTheirKeys(t *testing.T) {
	prefix := etcdkit.Prefix(etcdkit.Name(t))
	a, b := open(t, etcd.Options{Prefix: prefix}), open(t, etcd.Options{Prefix: prefix, DirectReads: true})
	const keys = 6
	storetest.RaceWritesOfExpiringKeys(t, []store.Backend{a, b}, keys, 32, 2*time.Second)
	for i := range keys {
		key := fmt.Sprint("k", i)
		ra, errA := a.Get("default", key)
		rb, errB := b.Get("default", key)
		require.Equal(t, errA == nil, errB == nil, "%s: %v / %v", key, errA, errB)
		assert.Equal(t, ra, rb, key)
	}
}

// TestKeepAliveAfterAFullRestoreThroughAnotherInstance: a keepalive sent
// to an instance right after another instance's full restore renews the
// restored key (which comes back with its deadline, on a lease of its
// own), whether or not the instance had seen the switch yet.
func TestKeepAliveAfterAFullRestoreThroughAnotherInstance(t *testing.T) {
	prefix := etcdkit.Prefix(etcdkit.Name(t))
	s, other := open(t, etcd.Options{Prefix: prefix}), open(t, etcd.Options{Prefix: prefix})
	first := putTTL(t, s, "hb", `1`, time.Hour)
	path, _ := testkit.WriteSnapshot(t, s)
	_, err := s.KeepAlive(t.Context(), "default", "hb", time.Hour, nil)
	require.NoError(t, err)
	_, err = other.Restore(t.Context(), path, ctxd.RestoreOptions{})
	require.NoError(t, err)
	k, err := s.KeepAlive(t.Context(), "default", "hb", time.Hour, nil)
	require.NoError(t, err)
	assert.JSONEq(t, `1`, string(k.Value))
	assert.True(t, k.ExpiresAt.After(first.ExpiresAt), "renewed")
	r, err := other.Get("default", "hb")
	require.NoError(t, err)
	assert.Equal(t, k.ExpiresAt, r.ExpiresAt, "the restored key's deadline moved")
	assert.Equal(t, other.Generation(), s.Generation())
}

// Two keepalives of one key through two instances, the first slow between
// taking the time and writing the key's deadline record: the record never
// goes back below the deadline the second one acknowledged (the first
// finds the record moved, and renews again). Before, the first wrote its
// earlier deadline over the second's.
func TestAKeepAliveNeverMovesTheDeadlineBack(t *testing.T) {
	prefix := etcdkit.Prefix(etcdkit.Name(t))
	var trap atomic.Bool
	entered, proceed := make(chan struct{}, 1), make(chan struct{})
	now := func() time.Time {
		n := time.Now()
		if trap.CompareAndSwap(true, false) {
			entered <- struct{}{}
			<-proceed // the slow keepalive's renewal reaches etcd late
		}
		return n
	}
	a := open(t, etcd.Options{Prefix: prefix, Now: now})
	b := open(t, etcd.Options{Prefix: prefix})
	putTTL(t, b, "hb", `1`, time.Hour)
	var (
		wg    sync.WaitGroup
		slow  ctxd.Record
		slowE error
	)
	trap.Store(true)
	wg.Go(func() { slow, slowE = a.KeepAlive(t.Context(), "default", "hb", time.Hour, nil) })
	<-entered
	time.Sleep(1500 * time.Millisecond)
	fast, err := b.KeepAlive(t.Context(), "default", "hb", time.Hour, nil)
	require.NoError(t, err)
	close(proceed)
	wg.Wait()
	require.NoError(t, slowE)
	r, err := b.Get("default", "hb")
	require.NoError(t, err)
	assert.False(t, r.ExpiresAt.Before(fast.ExpiresAt), "read %s, acknowledged %s", r.ExpiresAt, fast.ExpiresAt)
	assert.False(t, slow.ExpiresAt.Before(fast.ExpiresAt), "the slow keepalive answers the deadline it wrote")
}
