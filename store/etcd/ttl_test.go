package etcd_test

import (
	"context"
	"encoding/json"
	"errors"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	clientv3 "go.etcd.io/etcd/client/v3"
	"go.etcd.io/etcd/server/v3/embed"

	"github.com/framework0/ctxd"
	"github.com/framework0/ctxd/internal/testkit"
	"github.com/framework0/ctxd/internal/testkit/etcdkit"
	"github.com/framework0/ctxd/store/etcd"
)

// putTTL puts ns/key with a TTL through s.
func putTTL(t *testing.T, s *etcd.Store, key, value string, ttl time.Duration) ctxd.Record {
	t.Helper()
	res, err := s.Txn(t.Context(), []ctxd.Write{{Namespace: "default", Key: key, Op: ctxd.OpPut, Value: json.RawMessage(value), Who: "test", TTL: ttl}})
	require.NoError(t, err)
	return res.Records[0]
}

// changesUntil reads s's feed after `after` until it holds a delete of
// key, and returns every change of key it read by then.
func changesUntil(t *testing.T, s *etcd.Store, after uint64, key string) []ctxd.Change {
	t.Helper()
	deadline := time.After(20 * time.Second)
	for {
		_, changed := s.Committed()
		log, err := s.ReadLog(after, 1000)
		require.NoError(t, err)
		var mine []ctxd.Change
		for _, c := range log {
			if c.Key == key {
				mine = append(mine, c)
			}
		}
		if len(mine) > 0 && mine[len(mine)-1].Op == ctxd.OpDelete {
			return mine
		}
		select {
		case <-changed:
		case <-deadline:
			t.Fatalf("no delete of %s in the feed within 20 s", key)
		}
	}
}

// TestExpiryIsOneChangeOnEveryInstance: two instances on one prefix see
// etcd's lease-driven delete once each, as the same expiry change
// (revision, version, time), and tell it from a ctxd delete.
func TestExpiryIsOneChangeOnEveryInstance(t *testing.T) {
	prefix := etcdkit.Prefix(etcdkit.Name(t))
	a := open(t, etcd.Options{Prefix: prefix})
	b := open(t, etcd.Options{Prefix: prefix})
	k := putTTL(t, a, "lock", `"held"`, time.Second)
	_, err := a.Put(t.Context(), "default", "gone", json.RawMessage(`1`), nil, "test")
	require.NoError(t, err)
	_, err = a.Delete(t.Context(), "default", "gone", nil, "alice")
	require.NoError(t, err)

	seenA := changesUntil(t, a, k.ModRev-1, "lock")
	seenB := changesUntil(t, b, k.ModRev-1, "lock")
	require.Len(t, seenA, 2, "the put and one expiry: %+v", seenA)
	assert.Equal(t, seenA, seenB, "every instance reports the same changes")
	exp := seenA[1]
	assert.True(t, exp.Expired)
	assert.Equal(t, ctxd.WhoTTL, exp.Who)
	assert.Equal(t, k.Version, exp.Version)
	assert.Equal(t, k.ModRev, exp.PrevRev)
	assert.Equal(t, k.ExpiresAt, exp.Time, "an expiry's time is the deadline it met")

	// A ctxd delete is not an expiry (the negative control of the rule
	// that tells them apart).
	del := changesUntil(t, b, k.ModRev, "gone")
	require.Len(t, del, 2)
	assert.False(t, del[1].Expired)
	assert.Equal(t, "alice", del[1].Who)

	// History, read on the other instance, holds the expiry once.
	hist, err := b.History("default", "lock", ctxd.HistoryOptions{})
	require.NoError(t, err)
	require.Len(t, hist.Changes, 2)
	assert.Equal(t, exp, hist.Changes[0])
}

// A keepalive repeats the TTL the key was put with, so an instance whose
// limits.min_ttl or max_ttl would refuse that TTL still renews the key:
// behind a load balancer, one heartbeat in N would fail otherwise.
func TestKeepAliveThroughAnInstanceWithNarrowerTTLLimits(t *testing.T) {
	prefix := etcdkit.Prefix(etcdkit.Name(t))
	wide := open(t, etcd.Options{Prefix: prefix})
	narrow := open(t, etcd.Options{Prefix: prefix, Limits: ctxd.Limits{MinTTL: 10 * time.Second, MaxTTL: time.Hour}})
	putTTL(t, wide, "short", `1`, 3*time.Second)
	putTTL(t, wide, "long", `1`, 2*time.Hour)
	for key, ttl := range map[string]time.Duration{"short": 3 * time.Second, "long": 2 * time.Hour} {
		rec, err := narrow.KeepAlive(t.Context(), "default", key, ttl, nil)
		require.NoError(t, err, key)
		assert.WithinDuration(t, time.Now().Add(ttl), rec.ExpiresAt, 2*time.Second, key)
	}
	_, err := narrow.KeepAlive(t.Context(), "default", "short", 0, nil)
	require.ErrorIs(t, err, ctxd.ErrInvalid, "a TTL of 0")
	_, err = narrow.KeepAlive(t.Context(), "default", "short", 5*time.Second, nil)
	require.ErrorIs(t, err, ctxd.ErrInvalid, "a TTL other than the key's")
	_, err = narrow.Txn(t.Context(), []ctxd.Write{{Namespace: "default", Key: "new", Op: ctxd.OpPut, Value: json.RawMessage(`1`), TTL: 3 * time.Second}})
	require.ErrorIs(t, err, ctxd.ErrInvalid, "a put is checked against the instance's limits")
}

// TestHistoryOfExpiredLives: history walks back across several lives of
// a key that ended by expiry and by delete, with each expiry's deadline
// as a keepalive left it.
func TestHistoryOfExpiredLives(t *testing.T) {
	s := open(t, etcd.Options{Prefix: etcdkit.Prefix(etcdkit.Name(t))})
	first := putTTL(t, s, "k", `1`, time.Second)
	changesUntil(t, s, first.ModRev, "k")
	second := putTTL(t, s, "k", `2`, time.Second)
	kept, err := s.KeepAlive(t.Context(), "default", "k", time.Second, nil)
	require.NoError(t, err)
	require.False(t, kept.ExpiresAt.Before(second.ExpiresAt))
	changesUntil(t, s, second.ModRev, "k")
	third, err := s.Put(t.Context(), "default", "k", json.RawMessage(`3`), nil, "test")
	require.NoError(t, err)
	_, err = s.Delete(t.Context(), "default", "k", nil, "bob")
	require.NoError(t, err)

	hist, err := s.History("default", "k", ctxd.HistoryOptions{})
	require.NoError(t, err)
	type step struct {
		op      ctxd.Op
		expired bool
		version uint64
	}
	var got []step
	for _, c := range hist.Changes {
		got = append(got, step{c.Op, c.Expired, c.Version})
	}
	assert.Equal(t, []step{
		{ctxd.OpDelete, false, 1}, {ctxd.OpPut, false, 1},
		{ctxd.OpDelete, true, 1}, {ctxd.OpPut, false, 1},
		{ctxd.OpDelete, true, 1}, {ctxd.OpPut, false, 1},
	}, got)
	require.Len(t, hist.Changes, 6)
	assert.Equal(t, third.ModRev, hist.Changes[1].Revision)
	assert.Equal(t, kept.ExpiresAt, hist.Changes[2].Time, "the second expiry met the keepalive's deadline")
	assert.Equal(t, second.ExpiresAt, hist.Changes[3].ExpiresAt, "the put shows the deadline it set")
	assert.Equal(t, first.ExpiresAt, hist.Changes[4].Time)
	assert.Equal(t, second.ModRev, hist.Changes[2].PrevRev)

	// Paging from below the newest expiry finds the older one.
	older, err := s.History("default", "k", ctxd.HistoryOptions{Before: hist.Changes[3].Revision})
	require.NoError(t, err)
	require.Len(t, older.Changes, 2)
	assert.True(t, older.Changes[0].Expired)
}

// TestReplacedLeasesAreRevoked: a put without TTL, a put with another
// TTL and a delete leave no lease of theirs behind (the revoke runs in
// the background: waited for by polling etcd, generously bounded).
func TestReplacedLeasesAreRevoked(t *testing.T) {
	prefix := etcdkit.Prefix(etcdkit.Name(t))
	s := open(t, etcd.Options{Prefix: prefix})
	cli, err := clientv3.New(clientv3.Config{Endpoints: []string{etcdkit.Shared(t).Endpoint}})
	require.NoError(t, err)
	defer cli.Close()
	leaseOf := func(key string) clientv3.LeaseID {
		resp, err := cli.Get(t.Context(), prefix+"k/default/"+key)
		require.NoError(t, err)
		require.Len(t, resp.Kvs, 1)
		return clientv3.LeaseID(resp.Kvs[0].Lease)
	}
	alive := func(id clientv3.LeaseID) bool {
		resp, err := cli.TimeToLive(t.Context(), id)
		require.NoError(t, err)
		return resp.TTL > 0
	}
	putTTL(t, s, "permanent", `1`, time.Hour)
	putTTL(t, s, "again", `1`, time.Hour)
	putTTL(t, s, "deleted", `1`, time.Hour)
	old := []clientv3.LeaseID{leaseOf("permanent"), leaseOf("again"), leaseOf("deleted")}
	for _, id := range old {
		require.True(t, alive(id), "the negative control: a lease in use is alive")
	}
	_, err = s.Put(t.Context(), "default", "permanent", json.RawMessage(`2`), nil, "test")
	require.NoError(t, err)
	putTTL(t, s, "again", `2`, 2*time.Hour)
	_, err = s.Delete(t.Context(), "default", "deleted", nil, "test")
	require.NoError(t, err)
	require.NotEqual(t, old[1], leaseOf("again"))
	ctx, cancel := context.WithTimeout(t.Context(), 20*time.Second)
	defer cancel()
	for _, id := range old {
		for alive(id) {
			select {
			case <-ctx.Done():
				t.Fatalf("lease %x still alive 20 s after its key was replaced", id)
			case <-time.After(50 * time.Millisecond):
			}
		}
	}
	assert.True(t, alive(leaseOf("again")), "the new lease is kept")
	r, err := s.Get("default", "permanent")
	require.NoError(t, err)
	assert.True(t, r.ExpiresAt.IsZero())
}

// TestDeadlinesSurviveAnEtcdRestart: etcd keeps leases and deadline
// records across a restart of its own, with the ctxd instance down too: a
// key that was live through both expires after them, once, and a
// keepalive's deadline is still the one reads show. (The instance is
// closed first: an open watch stream holds an embedded etcd's shutdown
// for its request timeout, and the key would expire meanwhile.)
func TestDeadlinesSurviveAnEtcdRestart(t *testing.T) {
	srv, err := etcdkit.Start()
	require.NoError(t, err)
	t.Cleanup(srv.Close)
	opts := etcd.Options{Endpoints: []string{srv.Endpoint}, Prefix: etcdkit.Prefix(etcdkit.Name(t))}
	s, err := etcd.Open(opts)
	require.NoError(t, err)
	lock := putTTL(t, s, "lock", `"held"`, 3*time.Second)
	putTTL(t, s, "kept", `1`, time.Hour)
	kept, err := s.KeepAlive(t.Context(), "default", "kept", time.Hour, nil)
	require.NoError(t, err)
	require.NoError(t, s.Close())

	require.NoError(t, srv.Restart())
	s, err = etcd.Open(opts)
	require.NoError(t, err)
	t.Cleanup(func() { require.NoError(t, s.Close()) })
	_, err = s.Get("default", "lock")
	require.NoError(t, err, "the key is live after the restarts (its 3 s had not run out)")
	r, err := s.Get("default", "kept")
	require.NoError(t, err)
	assert.Equal(t, kept.ExpiresAt, r.ExpiresAt, "the keepalive's deadline is durable in etcd")

	seen := changesUntil(t, s, lock.ModRev-1, "lock")
	require.Len(t, seen, 2, "the put and one expiry: %+v", seen)
	assert.True(t, seen[1].Expired)
	assert.Equal(t, ctxd.WhoTTL, seen[1].Who)
	_, err = s.Get("default", "lock")
	assert.ErrorIs(t, err, ctxd.ErrNotFound)
}

// TestTTLBelowEtcdsMinimumIsRefused: with etcd's default election timeout
// (1 s) its minimum lease TTL is 2 s; ctxd refuses a shorter ttl, in a
// put and a keepalive, and writes nothing, rather than keep the key
// longer than asked. A ttl of 1.5 s is rounded up to 2 s and accepted.
func TestTTLBelowEtcdsMinimumIsRefused(t *testing.T) {
	srv, err := etcdkit.Start(func(c *embed.Config) { c.ElectionMs = 1000 })
	require.NoError(t, err)
	t.Cleanup(srv.Close)
	s, err := etcd.Open(etcd.Options{Endpoints: []string{srv.Endpoint}, Prefix: etcdkit.Prefix(etcdkit.Name(t))})
	require.NoError(t, err)
	t.Cleanup(func() { require.NoError(t, s.Close()) })
	require.Equal(t, 2*time.Second, s.MinTTL())

	before := s.Revision()
	_, err = s.Txn(t.Context(), []ctxd.Write{{Namespace: "default", Key: "k", Op: ctxd.OpPut, Value: json.RawMessage(`1`), TTL: time.Second}})
	require.ErrorIs(t, err, ctxd.ErrInvalid)
	assert.Contains(t, err.Error(), "etcd's minimum lease TTL of 2s")
	assert.Equal(t, before, s.Revision(), "nothing written")
	_, err = s.Get("default", "k")
	assert.ErrorIs(t, err, ctxd.ErrNotFound)

	r := putTTL(t, s, "k", `1`, 1500*time.Millisecond)
	assert.Equal(t, r.UpdatedAt.Add(2*time.Second), r.ExpiresAt, "rounded up to whole seconds")
	_, err = s.KeepAlive(t.Context(), "default", "k", time.Second, nil)
	assert.ErrorIs(t, err, ctxd.ErrInvalid)
	kept, err := s.KeepAlive(t.Context(), "default", "k", 2*time.Second, nil)
	require.NoError(t, err)
	assert.Equal(t, r.Version, kept.Version)
}

// TestHistoryFindsAnExpiryAcrossACompaction: etcd compacted past the put
// with a TTL (its armed tombstone's revision) but not past the expiry:
// history still shows the expiry, read from the compaction on. (A private
// etcd: compaction is cluster-wide.)
func TestHistoryFindsAnExpiryAcrossACompaction(t *testing.T) {
	srv, err := etcdkit.Start()
	require.NoError(t, err)
	t.Cleanup(srv.Close)
	s, err := etcd.Open(etcd.Options{Endpoints: []string{srv.Endpoint}, Prefix: etcdkit.Prefix(etcdkit.Name(t))})
	require.NoError(t, err)
	t.Cleanup(func() { require.NoError(t, s.Close()) })
	k := putTTL(t, s, "k", `1`, 2*time.Second)
	_, err = s.Put(t.Context(), "default", "x", json.RawMessage(`1`), nil, "test")
	require.NoError(t, err)
	x, err := s.Put(t.Context(), "default", "x", json.RawMessage(`2`), nil, "test")
	require.NoError(t, err)
	// Compacted below x's second put: the revision after the put of k
	// (the watch's first) is gone.
	require.Greater(t, x.ModRev, k.ModRev+1)
	_, err = s.CompactKeep(t.Context(), x.ModRev, 1)
	require.NoError(t, err)
	_, err = s.Get("default", "k")
	require.NoError(t, err, "the compaction came before the expiry (2 s)")

	exp := changesUntil(t, s, x.ModRev, "k")
	require.Len(t, exp, 1)
	hist, err := s.History("default", "k", ctxd.HistoryOptions{})
	require.NoError(t, err)
	require.NotEmpty(t, hist.Changes)
	assert.Equal(t, exp[0].Revision, hist.Changes[0].Revision)
	assert.True(t, hist.Changes[0].Expired, "the expiry above the compaction is in history")
	assert.Equal(t, k.ExpiresAt, hist.Changes[0].Time)
	assert.True(t, hist.Truncated, "the put the expiry ended was compacted")

	// Compacted past the expiry too: the key's history is gone, and every
	// page says so, whatever its bound.
	y, err := s.Put(t.Context(), "default", "y", json.RawMessage(`1`), nil, "test")
	require.NoError(t, err)
	_, err = s.CompactKeep(t.Context(), y.ModRev, 1)
	require.NoError(t, err)
	for _, before := range []uint64{0, y.ModRev, y.ModRev + 1} {
		hist, err := s.History("default", "k", ctxd.HistoryOptions{Before: before})
		require.NoError(t, err, "before=%d", before)
		assert.Empty(t, hist.Changes, "before=%d", before)
		assert.True(t, hist.Truncated, "before=%d: the expired life was compacted", before)
	}
}

// An import's remaining ttl below etcd's minimum lease ttl is raised to
// it, not refused (what was left of a dumped deadline is no client's
// choice): the key expires that much later, never earlier. A put with
// the same ttl is refused.
func TestImportRaisesATTLBelowEtcdsMinimum(t *testing.T) {
	s := open(t, etcd.Options{Prefix: etcdkit.Prefix(etcdkit.Name(t))})
	w := ctxd.Write{Namespace: "default", Key: "k", Op: ctxd.OpPut, Value: json.RawMessage(`1`), Who: "t", TTL: 10 * time.Millisecond}
	_, err := s.Txn(t.Context(), []ctxd.Write{w})
	require.ErrorIs(t, err, ctxd.ErrInvalid, "a put below etcd's minimum")
	res, err := s.Import(t.Context(), []ctxd.Write{w})
	require.NoError(t, err)
	r := res.Records[0]
	assert.GreaterOrEqual(t, r.ExpiresAt.Sub(r.UpdatedAt), s.MinTTL(), "raised to etcd's minimum lease ttl")
}

// TestSnapshotDeadlinesOfManyKeys: the snapshot's walk of deadlines reads
// keys back in batches (deadlineReads); across several batches it still
// gives every expiring key unchanged since the snapshot's revision once,
// with its current deadline (a keepalive's, which takes no revision), and
// leaves out a key written again after it and a deleted one.
func TestSnapshotDeadlinesOfManyKeys(t *testing.T) {
	s := open(t, etcd.Options{Prefix: etcdkit.Prefix(etcdkit.Name(t))})
	want := map[string]time.Time{}
	var rev uint64
	for i := range 150 {
		k := putTTL(t, s, "k"+strconv.Itoa(i), `1`, time.Hour)
		want[k.Key], rev = k.ExpiresAt, k.ModRev
	}
	kept, err := s.KeepAlive(t.Context(), "default", "k7", time.Hour, nil) // etcd renews for the ttl put
	require.NoError(t, err)
	require.True(t, kept.ExpiresAt.After(want["k7"]))
	want["k7"] = kept.ExpiresAt
	putTTL(t, s, "k8", `2`, time.Hour) // written after rev: its state is the log's
	delete(want, "k8")
	_, err = s.Delete(t.Context(), "default", "k9", nil, "test")
	require.NoError(t, err)
	delete(want, "k9")

	got := map[string]time.Time{}
	require.NoError(t, etcd.EachDeadline(s, rev, func(ns, key string, at time.Time) error {
		assert.Equal(t, "default", ns)
		_, dup := got[key]
		assert.False(t, dup, "%s given twice", key)
		got[key] = at
		return nil
	}))
	require.Len(t, got, len(want))
	for key, at := range want {
		assert.True(t, at.Equal(got[key]), "%s: deadline %v, want %v", key, got[key], at)
	}
}

// TestKeepAliveFromTheReadCache: a keepalive takes the key's lease and
// revision from the instance's read cache (a hit, no read of etcd) and
// applies only if the key is still as the cache has it. With the cache
// behind a patch made through another instance (held back; a
// patch keeps the key's lease, so the lease the cache has is still
// alive), the keepalive's transaction finds the key moved, writes
// nothing, and the keepalive starts again from etcd: it renews the key as
// it is now, and an If-Match on the cache's old version is a conflict
// with the current one.
func TestKeepAliveFromTheReadCache(t *testing.T) {
	prefix := etcdkit.Prefix(etcdkit.Name(t))
	s := open(t, etcd.Options{Prefix: prefix})
	other := open(t, etcd.Options{Prefix: prefix})
	first := putTTL(t, s, "hb", `1`, time.Hour)
	_, err := s.Get("default", "hb") // the cache has caught up with the put
	require.NoError(t, err)

	before := s.ReadCache()
	k, err := s.KeepAlive(t.Context(), "default", "hb", time.Hour, nil)
	require.NoError(t, err)
	assert.Equal(t, before.Hits+1, s.ReadCache().Hits, "the lease read from the cache")
	assert.Equal(t, before.Misses, s.ReadCache().Misses)
	assert.Equal(t, first.Version, k.Version)
	assert.Equal(t, first.ModRev, k.ModRev, "no new version")
	assert.True(t, k.ExpiresAt.After(first.ExpiresAt) || k.ExpiresAt.Equal(first.ExpiresAt))
	r, err := other.Get("default", "hb")
	require.NoError(t, err)
	assert.Equal(t, k.ExpiresAt, r.ExpiresAt, "the deadline record moved")

	// The cache falls behind: another instance patches hb (version 2,
	// the same lease).
	release := etcd.HoldReadCache(s)
	t.Cleanup(release)
	second, err := other.Patch(t.Context(), "default", "hb", ctxd.Patch{Type: ctxd.MergePatch, Doc: json.RawMessage(`2`)}, nil, "other")
	require.NoError(t, err)
	require.Equal(t, uint64(2), second.Version)

	before = s.ReadCache()
	_, err = s.KeepAlive(t.Context(), "default", "hb", time.Hour, u64(1))
	var conflict *ctxd.ConflictError
	require.ErrorAs(t, err, &conflict, "If-Match 1 (the cache's version) against version 2")
	assert.Equal(t, uint64(2), conflict.Current)

	k2, err := s.KeepAlive(t.Context(), "default", "hb", time.Hour, nil)
	require.NoError(t, err)
	assert.Equal(t, second.Version, k2.Version, "the key as it is now, not as the cache had it")
	assert.Equal(t, second.ModRev, k2.ModRev)
	assert.JSONEq(t, `2`, string(k2.Value))
	assert.False(t, k2.ExpiresAt.Before(second.ExpiresAt))
	assert.Equal(t, before.Hits, s.ReadCache().Hits, "neither answered from the cache")
	assert.Equal(t, before.Misses+2, s.ReadCache().Misses)
	r, err = other.Get("default", "hb")
	require.NoError(t, err)
	assert.Equal(t, k2.ExpiresAt, r.ExpiresAt, "the current key's deadline moved")
	assert.Equal(t, second.ModRev, r.ModRev, "a keepalive is no new version")
}

// TestKeepAliveFromTheReadCacheOfAnExpiredKey: with the read cache
// behind (held back) when the key's lease ends, the cache still has the
// key and its lease; the keepalive's renewal finds the lease ended and
// the read of etcd after it finds the key gone: not found, and the
// answer says it expired, as when the lease ends between a read of etcd
// and the renewal.
func TestKeepAliveFromTheReadCacheOfAnExpiredKey(t *testing.T) {
	prefix := etcdkit.Prefix(etcdkit.Name(t))
	s := open(t, etcd.Options{Prefix: prefix})
	other := open(t, etcd.Options{Prefix: prefix, DirectReads: true})
	putTTL(t, s, "hb", `1`, time.Second)
	_, err := s.Get("default", "hb") // the cache has caught up with the put
	require.NoError(t, err)
	release := etcd.HoldReadCache(s)
	t.Cleanup(release)
	testkit.Eventually(t, func() bool {
		_, err := other.Get("default", "hb")
		return errors.Is(err, ctxd.ErrNotFound)
	}, "the key expires in etcd")

	before := s.ReadCache()
	_, err = s.KeepAlive(t.Context(), "default", "hb", time.Second, nil)
	require.ErrorIs(t, err, ctxd.ErrNotFound)
	assert.ErrorContains(t, err, "(it expired)")
	assert.Equal(t, before.Misses+1, s.ReadCache().Misses, "the cache's lease had ended")
}

// TestPatchFromTheReadCache: a patch is applied to the value the read
// cache holds (a hit, no read of etcd) and committed only if the key is
// still at that value's revision. With the cache behind another
// instance's patches (held back), an If-Match on the cache's
// old version is a conflict with the current one; a patch that applies
// to the cached value is refused at commit and applied again to etcd's
// value, so no change is lost; a JSON patch whose test fails on the
// cached value but holds on etcd's applies.
func TestPatchFromTheReadCache(t *testing.T) {
	prefix := etcdkit.Prefix(etcdkit.Name(t))
	s := open(t, etcd.Options{Prefix: prefix})
	other := open(t, etcd.Options{Prefix: prefix})
	merge := func(doc string) ctxd.Patch { return ctxd.Patch{Type: ctxd.MergePatch, Doc: json.RawMessage(doc)} }
	_, err := s.Put(t.Context(), "default", "doc", json.RawMessage(`{"n":1}`), nil, "t")
	require.NoError(t, err)
	_, err = s.Get("default", "doc") // the cache has caught up with the put
	require.NoError(t, err)

	before := s.ReadCache()
	r, err := s.Patch(t.Context(), "default", "doc", merge(`{"a":1}`), nil, "t")
	require.NoError(t, err)
	assert.Equal(t, before.Hits+1, s.ReadCache().Hits, "the value read from the cache")
	assert.JSONEq(t, `{"n":1,"a":1}`, string(r.Value))

	// The cache falls behind another instance's patch (version 3).
	release := etcd.HoldReadCache(s)
	t.Cleanup(release)
	_, err = other.Patch(t.Context(), "default", "doc", merge(`{"b":2}`), nil, "other")
	require.NoError(t, err)

	before = s.ReadCache()
	_, err = s.Patch(t.Context(), "default", "doc", merge(`{"d":4}`), u64(2), "t")
	var conflict *ctxd.ConflictError
	require.ErrorAs(t, err, &conflict, "If-Match 2 (the cache's version) against version 3")
	assert.Equal(t, uint64(3), conflict.Current)
	assert.Equal(t, before.Hits+1, s.ReadCache().Hits, "the cache's copy matched, and was refused at commit")

	r, err = s.Patch(t.Context(), "default", "doc", merge(`{"c":3}`), nil, "t")
	require.NoError(t, err)
	assert.JSONEq(t, `{"n":1,"a":1,"b":2,"c":3}`, string(r.Value), "applied to etcd's value, not the cache's")
	assert.Equal(t, uint64(4), r.Version)

	// Behind again: the test holds on etcd's value only.
	_, err = other.Patch(t.Context(), "default", "doc", merge(`{"f":6}`), nil, "other")
	require.NoError(t, err)
	r, err = s.Patch(t.Context(), "default", "doc", ctxd.Patch{Type: ctxd.JSONPatch, Doc: json.RawMessage(`[{"op":"test","path":"/f","value":6},{"op":"add","path":"/e","value":5}]`)}, nil, "t")
	require.NoError(t, err, "the test holds on etcd's value")
	assert.Equal(t, before.Misses+1, s.ReadCache().Misses, "the test failed on the cache's copy")
	assert.JSONEq(t, `{"n":1,"a":1,"b":2,"c":3,"f":6,"e":5}`, string(r.Value))
	got, err := other.Get("default", "doc")
	require.NoError(t, err)
	assert.Equal(t, r.Value, got.Value)
}

// TestPatchOfAnExpiringKeyFromTheReadCache: a patch of an expiring key is
// applied to the cache's copy too (a hit), and keeps the deadline the
// cache has, on condition that the key's deadline record was not moved
// since. With the cache held behind another instance's keepalive (which
// moves the record, not the key), the commit finds the record moved and
// the patch is applied again from etcd: it keeps, answers and records
// in its change the keepalive's deadline, never the older one the cache
// had.
func TestPatchOfAnExpiringKeyFromTheReadCache(t *testing.T) {
	prefix := etcdkit.Prefix(etcdkit.Name(t))
	s := open(t, etcd.Options{Prefix: prefix})
	other := open(t, etcd.Options{Prefix: prefix})
	merge := func(doc string) ctxd.Patch { return ctxd.Patch{Type: ctxd.MergePatch, Doc: json.RawMessage(doc)} }
	first := putTTL(t, s, "session", `{"n":1}`, time.Hour)
	_, err := s.Get("default", "session") // the cache has caught up with the put
	require.NoError(t, err)

	before := s.ReadCache()
	r, err := s.Patch(t.Context(), "default", "session", merge(`{"a":1}`), nil, "t")
	require.NoError(t, err)
	assert.Equal(t, before.Hits+1, s.ReadCache().Hits, "the value and deadline read from the cache")
	assert.Equal(t, before.Misses, s.ReadCache().Misses)
	assert.Equal(t, first.ExpiresAt, r.ExpiresAt, "the patch keeps the deadline")

	release := etcd.HoldReadCache(s)
	t.Cleanup(release)
	k, err := other.KeepAlive(t.Context(), "default", "session", time.Hour, nil)
	require.NoError(t, err)
	require.True(t, k.ExpiresAt.After(first.ExpiresAt), "the keepalive moved the deadline")

	before = s.ReadCache()
	r, err = s.Patch(t.Context(), "default", "session", merge(`{"b":2}`), nil, "t")
	require.NoError(t, err)
	assert.Equal(t, before.Hits+1, s.ReadCache().Hits, "the cache's copy was used, and refused at commit")
	assert.Equal(t, uint64(3), r.Version)
	assert.JSONEq(t, `{"n":1,"a":1,"b":2}`, string(r.Value))
	assert.Equal(t, k.ExpiresAt, r.ExpiresAt, "the keepalive's deadline, not the cache's")
	got, err := other.Get("default", "session")
	require.NoError(t, err)
	assert.Equal(t, k.ExpiresAt, got.ExpiresAt)
	h, err := other.History("default", "session", ctxd.HistoryOptions{Limit: 1})
	require.NoError(t, err)
	require.Len(t, h.Changes, 1)
	assert.Equal(t, k.ExpiresAt, h.Changes[0].ExpiresAt, "the patch's change records the deadline it kept")
}

// A transaction etcd refuses (here too large for its --max-request-bytes)
// applied nothing: the leases granted for its puts with a TTL are revoked,
// not left to live out their TTL. Before, a client retrying it added a
// lease of up to limits.max_ttl each time.
func TestARefusedTransactionGivesItsLeasesBack(t *testing.T) {
	srv, err := etcdkit.Start(func(c *embed.Config) { c.MaxRequestBytes = embed.DefaultMaxRequestBytes })
	require.NoError(t, err)
	t.Cleanup(srv.Close)
	s, err := etcd.Open(etcd.Options{Endpoints: []string{srv.Endpoint}, Prefix: "/refused/"})
	require.NoError(t, err)
	t.Cleanup(func() { require.NoError(t, s.Close()) })
	cli, err := clientv3.New(clientv3.Config{Endpoints: []string{srv.Endpoint}})
	require.NoError(t, err)
	t.Cleanup(func() { _ = cli.Close() })
	leases := func() int {
		resp, err := cli.Leases(t.Context())
		require.NoError(t, err)
		return len(resp.Leases)
	}
	before := leases()
	big := json.RawMessage(`"` + strings.Repeat("x", 900<<10) + `"`)
	for i := range 5 {
		_, err := s.Txn(t.Context(), []ctxd.Write{
			{Namespace: "default", Key: "lock" + strconv.Itoa(i), Op: ctxd.OpPut, Value: big, Who: "t", TTL: 24 * time.Hour},
			{Namespace: "default", Key: "big" + strconv.Itoa(i), Op: ctxd.OpPut, Value: big, Who: "t"},
		})
		require.ErrorIs(t, err, ctxd.ErrTooLarge)
	}
	testkit.Eventually(t, func() bool { return leases() == before }, "the refused transactions' leases are revoked (in the background)")
}
