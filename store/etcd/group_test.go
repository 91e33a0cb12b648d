package etcd_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
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

// queuedWrite is a write sent while the store's groups are held.
type queuedWrite struct {
	rec ctxd.Record
	err error
}

// queue sends each write, in order, while the store's groups are held
// (each waits in the queue before the next is sent), then releases them
// and returns the answers.
func queue(t *testing.T, s *etcd.Store, writes ...func() (ctxd.Record, error)) []queuedWrite {
	t.Helper()
	queued, release := etcd.HoldGroups(s)
	out := make([]queuedWrite, len(writes))
	var wg sync.WaitGroup
	for i, write := range writes {
		wg.Go(func() { out[i].rec, out[i].err = write() })
		testkit.Eventually(t, func() bool { return queued() == i+1 }, "write %d queued", i)
	}
	release()
	wg.Wait()
	return out
}

func putOf(t *testing.T, s *etcd.Store, key, value string, expect *uint64) func() (ctxd.Record, error) {
	return func() (ctxd.Record, error) {
		return s.Put(t.Context(), "default", key, json.RawMessage(value), expect, "t")
	}
}

func deleteOf(t *testing.T, s *etcd.Store, key string) func() (ctxd.Record, error) {
	return func() (ctxd.Record, error) { return s.Delete(t.Context(), "default", key, nil, "t") }
}

// TestGroupedWritesShareATransaction: single writes queued together are
// one etcd transaction. A write whose check fails (a compare-and-swap on
// a wrong version, a delete of a missing key) gets its own answer and
// makes nothing else fail: the others are committed together, at one
// revision, each with its own version; a second write of a key already in
// the group waits for the next one.
func TestGroupedWritesShareATransaction(t *testing.T) {
	s := open(t, etcd.Options{Prefix: etcdkit.Prefix(etcdkit.Name(t))})
	_, err := s.Put(t.Context(), "default", "b", json.RawMessage(`"b1"`), nil, "t")
	require.NoError(t, err)
	_, err = s.Put(t.Context(), "default", "d", json.RawMessage(`"d1"`), nil, "t")
	require.NoError(t, err)
	before := s.Stats()

	got := queue(t, s,
		putOf(t, s, "a", `"a1"`, nil),
		putOf(t, s, "b", `"b2"`, u64(5)), // b is at version 1
		deleteOf(t, s, "c"),              // c does not exist
		putOf(t, s, "d", `"d2"`, nil),
		putOf(t, s, "a", `"a2"`, nil), // a again: the next group
	)
	var conflict *ctxd.ConflictError
	require.ErrorAs(t, got[1].err, &conflict, "the compare-and-swap's own answer")
	assert.Equal(t, uint64(1), conflict.Current)
	assert.ErrorIs(t, got[2].err, ctxd.ErrNotFound, "the delete's own answer")
	for _, i := range []int{0, 3, 4} {
		require.NoError(t, got[i].err, "write %d", i)
	}
	a1, d2, a2 := got[0].rec, got[3].rec, got[4].rec
	assert.Equal(t, a1.ModRev, d2.ModRev, "a and d committed together")
	assert.Equal(t, uint64(1), a1.Version)
	assert.Equal(t, uint64(2), d2.Version)
	assert.Greater(t, a2.ModRev, a1.ModRev, "the second write of a in a group after")
	assert.Equal(t, uint64(2), a2.Version)

	after := s.Stats()
	assert.Equal(t, uint64(3), after.Changes-before.Changes)
	assert.Equal(t, uint64(2), after.Commits-before.Commits, "a1 and d2 in one transaction, a2 in another")
	assert.Equal(t, uint64(3), after.Transactions-before.Transactions, "the group that failed its checks, then the two")

	for key, want := range map[string]string{"a": `"a2"`, "b": `"b1"`, "d": `"d2"`} {
		r, err := s.Get("default", key)
		require.NoError(t, err)
		assert.JSONEq(t, want, string(r.Value), key)
	}
	_, err = s.Get("default", "c")
	assert.ErrorIs(t, err, ctxd.ErrNotFound)
	// The feed has each change once, those of one revision together.
	changes, err := s.ReadLog(before.Changes, 100)
	require.NoError(t, err)
	var seen []string
	for _, c := range changes {
		if c.Revision >= a1.ModRev {
			seen = append(seen, fmt.Sprintf("%d %s v%d", c.Revision, c.Key, c.Version))
		}
	}
	assert.ElementsMatch(t, []string{
		fmt.Sprintf("%d a v1", a1.ModRev), fmt.Sprintf("%d d v2", a1.ModRev), fmt.Sprintf("%d a v2", a2.ModRev),
	}, seen)
}

// TestWritesAloneWhenGroupingIsOff: with MaxGroupWrites 1 every write is
// a transaction of its own (the negative control of the grouping tests:
// concurrent writers then never share a revision).
func TestWritesAloneWhenGroupingIsOff(t *testing.T) {
	s := open(t, etcd.Options{Prefix: etcdkit.Prefix(etcdkit.Name(t)), MaxGroupWrites: 1})
	revs := concurrentPuts(t, s, 16, 10)
	assert.Len(t, revs, 160, "160 writes, 160 revisions")
	st := s.Stats()
	assert.Equal(t, st.Changes, st.Commits)
}

// TestConcurrentWritesAreGrouped: 16 writers on a store with its defaults
// share transactions: fewer commits than writes, each still answered with
// its own key's version.
func TestConcurrentWritesAreGrouped(t *testing.T) {
	s := open(t, etcd.Options{Prefix: etcdkit.Prefix(etcdkit.Name(t))})
	revs := concurrentPuts(t, s, 16, 10)
	st := s.Stats()
	assert.Equal(t, uint64(160), st.Changes)
	assert.Less(t, st.Commits, st.Changes, "some writes shared a transaction")
	assert.Less(t, len(revs), 160, "some writes shared a revision")
}

// A writer whose write another writer's group took waits for that
// group's answer: it never returns before its write is answered (an
// acknowledgement of a write not yet applied, with a zero record), also
// when the queue runs dry first. Here writer A becomes a runner and,
// before it looks at the queue, writer B becomes the other runner and
// takes both writes in its group: A finds the queue empty while B's
// transaction is out. The race detector found it in a realtime test.
func TestWriterWaitsForTheGroupThatTookItsWrite(t *testing.T) {
	s := open(t, etcd.Options{Prefix: etcdkit.Prefix(etcdkit.Name(t)), GroupsInFlight: 2})
	queued, release := etcd.HoldGroups(s)
	release() // nothing held: only its count of queued writes is used
	aRunner, queueTaken := make(chan struct{}), make(chan struct{})
	var runners atomic.Int32
	etcd.OnGroupRunner(s, func() {
		if runners.Add(1) == 1 { // A: let B take the queue first
			close(aRunner)
			<-queueTaken
		}
	})
	var a ctxd.Record
	var aErr error
	aDone := make(chan struct{})
	go func() {
		defer close(aDone)
		a, aErr = s.Put(context.Background(), "default", "a", json.RawMessage(`1`), nil, "t")
	}()
	<-aRunner
	go func() {
		testkit.Eventually(t, func() bool { return queued() == 0 }, "B took the queue")
		close(queueTaken)
	}()
	b, err := s.Put(context.Background(), "default", "b", json.RawMessage(`2`), nil, "t")
	require.NoError(t, err)
	<-aDone
	require.NoError(t, aErr)
	assert.Positive(t, a.ModRev, "A's answer is its write's")
	assert.Equal(t, uint64(1), a.Version)
	assert.Equal(t, b.ModRev, a.ModRev, "one group, B's")
}

// concurrentPuts runs writers goroutines of each puts of keys of their
// own, checks every answer against a read, and returns the revisions
// the writes were given, each with the keys written at it.
func concurrentPuts(t *testing.T, s *etcd.Store, writers, each int) map[uint64][]string {
	var mu sync.Mutex
	revs := map[uint64][]string{}
	var wg sync.WaitGroup
	for w := range writers {
		wg.Go(func() {
			for i := range each {
				key := fmt.Sprintf("w%d/%d", w, i%3)
				r, err := s.Put(context.Background(), "default", key, json.RawMessage(fmt.Sprint(i)), nil, "t")
				if !assert.NoError(t, err) {
					return
				}
				assert.Equal(t, uint64(i/3+1), r.Version, key)
				mu.Lock()
				revs[r.ModRev] = append(revs[r.ModRev], key)
				mu.Unlock()
			}
		})
	}
	wg.Wait()
	for rev, keys := range revs {
		seen := map[string]bool{}
		for _, k := range keys {
			assert.False(t, seen[k], "two writes of %s at revision %d", k, rev)
			seen[k] = true
		}
	}
	return revs
}

// TestGroupTooLargeForEtcdGoesAlone: etcd refuses a group beyond its
// --max-txn-ops (4 here); each of its writes is then made alone, and
// every one is acknowledged.
func TestGroupTooLargeForEtcdGoesAlone(t *testing.T) {
	srv, err := etcdkit.Start(func(c *embed.Config) { c.MaxTxnOps = 4 })
	require.NoError(t, err)
	t.Cleanup(srv.Close)
	s, err := etcd.Open(etcd.Options{Endpoints: []string{srv.Endpoint}, Prefix: etcdkit.Prefix(etcdkit.Name(t))})
	require.NoError(t, err)
	t.Cleanup(func() { require.NoError(t, s.Close()) })

	var writes []func() (ctxd.Record, error)
	for i := range 6 {
		writes = append(writes, putOf(t, s, fmt.Sprint("k", i), fmt.Sprint(i), nil))
	}
	revs := map[uint64]bool{}
	for i, w := range queue(t, s, writes...) {
		require.NoError(t, w.err, "write %d", i)
		revs[w.rec.ModRev] = true
	}
	assert.Len(t, revs, 6, "each write alone")
}

// TestGroupsFitEtcdsDefaultMaxTxnOps: 100 queued deletes with If-Match
// (the writes with the most compares and ops) on an etcd with its default
// --max-txn-ops (128) go in two transactions that etcd accepts: groups
// are cut at DefaultMaxGroupWrites, not at limits.max_txn_ops (128
// writes, which etcd would refuse).
func TestGroupsFitEtcdsDefaultMaxTxnOps(t *testing.T) {
	s := openOnDefaultMaxTxnOps(t)

	const n = 100
	var deletes []func() (ctxd.Record, error)
	for i := range n {
		key := fmt.Sprint("k", i)
		_, err := s.Put(t.Context(), "default", key, json.RawMessage(`1`), nil, "t")
		require.NoError(t, err)
		deletes = append(deletes, func() (ctxd.Record, error) { return s.Delete(t.Context(), "default", key, u64(1), "t") })
	}
	before := s.Stats()
	for i, d := range queue(t, s, deletes...) {
		require.NoError(t, d.err, "delete %d", i)
	}
	after := s.Stats()
	assert.Equal(t, uint64(2), after.Transactions-before.Transactions, "63 deletes, then 37, each group accepted")
	assert.Equal(t, uint64(n), after.Changes-before.Changes)
}

// TestQueuedWriteWhoseClientLeftIsNotSent: a write whose context ends
// while it waits for a group answers its context's error and writes
// nothing.
func TestQueuedWriteWhoseClientLeftIsNotSent(t *testing.T) {
	s := open(t, etcd.Options{Prefix: etcdkit.Prefix(etcdkit.Name(t))})
	queued, release := etcd.HoldGroups(s)
	ctx, cancel := context.WithCancel(t.Context())
	done := make(chan error)
	go func() {
		_, err := s.Put(ctx, "default", "left", json.RawMessage(`1`), nil, "t")
		done <- err
	}()
	testkit.Eventually(t, func() bool { return queued() == 1 }, "the write queued")
	cancel()
	release()
	assert.ErrorIs(t, <-done, context.Canceled)
	_, err := s.Get("default", "left")
	assert.ErrorIs(t, err, ctxd.ErrNotFound, "nothing written")
	r, err := s.Put(t.Context(), "default", "kept", json.RawMessage(`1`), nil, "t")
	require.NoError(t, err, "the queue goes on")
	assert.Equal(t, uint64(1), r.Version)
}

func ttlPutOf(t *testing.T, s *etcd.Store, key, value string, ttl time.Duration, expect *uint64) func() (ctxd.Record, error) {
	return func() (ctxd.Record, error) {
		res, err := s.Txn(t.Context(), []ctxd.Write{{Namespace: "default", Key: key, Op: ctxd.OpPut, Value: json.RawMessage(value), Expect: expect, TTL: ttl, Who: "t"}})
		if err != nil {
			return ctxd.Record{}, err
		}
		return res.Records[0], nil
	}
}

// TestGroupedWritesWithATTL: puts with a TTL share a group with other
// writes. Each gets a lease of its own and a deadline no later than its
// lease's end; the one whose check fails gets its own answer and its
// lease is revoked (none left behind); a grouped key expires as one
// alone does.
func TestGroupedWritesWithATTL(t *testing.T) {
	s := open(t, etcd.Options{Prefix: etcdkit.Prefix(etcdkit.Name(t))})
	cli := etcdClient(t)
	leases := func() map[clientv3.LeaseID]bool { return leaseIDs(t, cli) }
	_, err := s.Put(t.Context(), "default", "c", json.RawMessage(`"c1"`), nil, "t")
	require.NoError(t, err)
	before := s.Stats()
	leasesBefore := leases()

	start := time.Now()
	got := queue(t, s,
		ttlPutOf(t, s, "a", `"a1"`, time.Hour, nil),
		putOf(t, s, "b", `"b1"`, nil),
		ttlPutOf(t, s, "c", `"c2"`, time.Hour, u64(7)), // c is at version 1
		ttlPutOf(t, s, "short", `"s1"`, s.MinTTL(), nil),
	)
	var conflict *ctxd.ConflictError
	require.ErrorAs(t, got[2].err, &conflict, "the compare-and-swap's own answer")
	for _, i := range []int{0, 1, 3} {
		require.NoError(t, got[i].err, "write %d", i)
	}
	a, b, short := got[0].rec, got[1].rec, got[3].rec
	assert.Equal(t, a.ModRev, b.ModRev, "committed together")
	assert.Equal(t, a.ModRev, short.ModRev, "committed together")
	after := s.Stats()
	assert.Equal(t, uint64(1), after.Commits-before.Commits, "one transaction")
	assert.WithinDuration(t, start.Add(time.Hour), a.ExpiresAt, 5*time.Second)
	assert.Equal(t, a.UpdatedAt.Add(time.Hour), a.ExpiresAt, "the deadline is the write's time plus its ttl")
	assert.Equal(t, short.UpdatedAt.Add(s.MinTTL()), short.ExpiresAt)
	assert.True(t, b.ExpiresAt.IsZero())
	r, err := s.Get("default", "a")
	require.NoError(t, err)
	assert.Equal(t, a.ExpiresAt, r.ExpiresAt, "a read shows the deadline the write answered")

	// Each written key holds a lease of its own; the failed write's lease
	// is revoked, so two leases more than before, in time.
	la, ls := leaseOfKey(t, cli, "a"), leaseOfKey(t, cli, "short")
	require.NotEqual(t, clientv3.NoLease, la)
	require.NotEqual(t, la, ls)
	ttl, err := cli.TimeToLive(t.Context(), la)
	require.NoError(t, err)
	assert.LessOrEqual(t, a.ExpiresAt, time.Now().Add(time.Duration(ttl.TTL+1)*time.Second), "the deadline is not after the lease's end")
	testkit.Eventually(t, func() bool {
		now := leases()
		extra := 0
		for id := range now {
			if !leasesBefore[id] {
				extra++
			}
		}
		return extra == 2 && now[la] && now[ls]
	}, "the leases of a and short alone are new (the failed write's is revoked)")

	// The short one expires, once, as a key alone does.
	testkit.Eventually(t, func() bool {
		_, err := s.Get("default", "short")
		return errors.Is(err, ctxd.ErrNotFound)
	}, "short expired")
	// A read hides the key from its deadline on; the expiry's change
	// reaches the log when its delete is committed, a moment later.
	expiries := func() int {
		changes, err := s.ReadLog(short.ModRev, 100)
		require.NoError(t, err)
		n := 0
		for _, c := range changes {
			if c.Key == "short" && c.Who == ctxd.WhoTTL {
				n++
			}
		}
		return n
	}
	testkit.Eventually(t, func() bool { return expiries() > 0 }, "the expiry's change in the log")
	assert.Equal(t, 1, expiries(), "one expiry change")
	_, err = s.Get("default", "a")
	assert.NoError(t, err, "a lives on")
}

// TestGroupsOfTTLPutsFitEtcdsDefaultMaxTxnOps: a put with a TTL is three
// etcd ops; 60 of them queued together on an etcd with its default
// --max-txn-ops (128) go in two groups etcd accepts (42, then 18), not in
// one it refuses (which would then send each alone: 61 requests).
func TestGroupsOfTTLPutsFitEtcdsDefaultMaxTxnOps(t *testing.T) {
	s := openOnDefaultMaxTxnOps(t)

	const n = 60
	var puts []func() (ctxd.Record, error)
	for i := range n {
		puts = append(puts, ttlPutOf(t, s, fmt.Sprint("k", i), `1`, time.Hour, nil))
	}
	before := s.Stats()
	for i, p := range queue(t, s, puts...) {
		require.NoError(t, p.err, "put %d", i)
	}
	after := s.Stats()
	assert.Equal(t, uint64(2), after.Transactions-before.Transactions, "42 puts, then 18, each group accepted")
	assert.Equal(t, uint64(n), after.Changes-before.Changes)
}

// TestGroupsOfExpiringPatchesFitEtcdsDefaultMaxTxnOps: a patch of an
// expiring key read from the cache with an If-Match makes three of a
// group's compares (its version, its revision, its deadline record's), so
// a group holds fewer of them: 60 go in 2 transactions, each accepted by
// an etcd with the default --max-txn-ops (128). Counting its ops alone
// (one put), a group of 63 would be refused and each write sent alone.
func TestGroupsOfExpiringPatchesFitEtcdsDefaultMaxTxnOps(t *testing.T) {
	s := openOnDefaultMaxTxnOps(t)
	const n = 60
	var patches []func() (ctxd.Record, error)
	for i := range n {
		key := fmt.Sprint("k", i)
		_, err := ttlPutOf(t, s, key, `{"n":1}`, time.Hour, nil)()
		require.NoError(t, err)
		patches = append(patches, func() (ctxd.Record, error) {
			return s.Patch(t.Context(), "default", key, ctxd.Patch{Type: ctxd.MergePatch, Doc: json.RawMessage(`{"n":2}`)}, u64(1), "t")
		})
	}
	_, err := s.Get("default", "k0") // the cache has caught up with the puts
	require.NoError(t, err)
	before, cache := s.Stats(), s.ReadCache()
	for i, p := range queue(t, s, patches...) {
		require.NoError(t, p.err, "patch %d", i)
		assert.Equal(t, uint64(2), p.rec.Version)
	}
	after := s.Stats()
	assert.Equal(t, cache.Hits+n, s.ReadCache().Hits, "each read from the cache")
	assert.Equal(t, uint64(2), after.Transactions-before.Transactions, "42 patches, then 18, each group accepted")
	assert.Equal(t, uint64(n), after.Changes-before.Changes)
}

// TestGroupWhoseLeaseEndedGoesAlone: a put with a TTL that waited in the
// queue longer than its TTL (etcd answered nothing meanwhile) has a lease
// etcd has ended; etcd refuses its group, which wrote nothing, and each
// write goes again alone: both land, the expiring one with a fresh lease
// and a deadline after the wait.
func TestGroupWhoseLeaseEndedGoesAlone(t *testing.T) {
	s := open(t, etcd.Options{Prefix: etcdkit.Prefix(etcdkit.Name(t))})
	cli := etcdClient(t)
	leases := func() map[clientv3.LeaseID]bool { return leaseIDs(t, cli) }
	leasesBefore := leases()
	queued, release := etcd.HoldGroups(s)
	type answer struct {
		rec ctxd.Record
		err error
	}
	short, plain := make(chan answer, 1), make(chan answer, 1)
	go func() {
		r, err := ttlPutOf(t, s, "short", `1`, s.MinTTL(), nil)()
		short <- answer{r, err}
	}()
	testkit.Eventually(t, func() bool { return queued() == 1 }, "the put with a TTL queued")
	go func() {
		r, err := putOf(t, s, "plain", `1`, nil)()
		plain <- answer{r, err}
	}()
	testkit.Eventually(t, func() bool { return queued() == 2 }, "the plain put queued")
	var granted []clientv3.LeaseID
	for id := range leases() {
		if !leasesBefore[id] {
			granted = append(granted, id)
		}
	}
	require.Len(t, granted, 1, "the queued put's lease")
	testkit.Eventually(t, func() bool {
		resp, err := cli.TimeToLive(t.Context(), granted[0])
		return err == nil && resp.TTL < 0
	}, "etcd ended the queued put's lease")
	released := time.Now()
	release()
	a, b := <-short, <-plain
	require.NoError(t, a.err)
	require.NoError(t, b.err)
	assert.NotEqual(t, a.rec.ModRev, b.rec.ModRev, "each alone")
	assert.True(t, a.rec.ExpiresAt.After(released), "a fresh lease: deadline %v, released %v", a.rec.ExpiresAt, released)
	r, err := s.Get("default", "short")
	require.NoError(t, err, "the key was written")
	assert.Equal(t, a.rec.ModRev, r.ModRev)
}

func patchOf(t *testing.T, s *etcd.Store, key, merge string) func() (ctxd.Record, error) {
	return func() (ctxd.Record, error) {
		return s.Patch(t.Context(), "default", key, ctxd.Patch{Type: ctxd.MergePatch, Doc: json.RawMessage(merge)}, nil, "t")
	}
}

// TestGroupedPatches: single patches join groups as the puts of their
// results. Two patches and a put queued together are one transaction. A
// patched key written by someone else after the patch read it (here
// another instance, while the group waits) fails that patch's compare
// alone: it is applied again to the new value, so neither write is lost.
func TestGroupedPatches(t *testing.T) {
	prefix := etcdkit.Prefix(etcdkit.Name(t))
	s := open(t, etcd.Options{Prefix: prefix})
	other := open(t, etcd.Options{Prefix: prefix})
	for _, k := range []string{"a", "b"} {
		_, err := s.Put(t.Context(), "default", k, json.RawMessage(`{"n":1}`), nil, "t")
		require.NoError(t, err)
	}
	before := s.Stats()
	got := queue(t, s, patchOf(t, s, "a", `{"x":1}`), patchOf(t, s, "b", `{"x":2}`), putOf(t, s, "c", `1`, nil))
	for i, g := range got {
		require.NoError(t, g.err, "write %d", i)
	}
	assert.Equal(t, got[0].rec.ModRev, got[1].rec.ModRev, "committed together")
	assert.Equal(t, got[0].rec.ModRev, got[2].rec.ModRev, "committed together")
	assert.Equal(t, uint64(1), s.Stats().Commits-before.Commits, "one transaction")
	assert.Equal(t, uint64(2), got[0].rec.Version)
	assert.JSONEq(t, `{"n":1,"x":1}`, string(got[0].rec.Value))
	assert.JSONEq(t, `{"n":1,"x":2}`, string(got[1].rec.Value))

	// The race: the patch has read a and waits in the queue; the other
	// instance writes a; the group's compare on a fails for the patch.
	queued, release := etcd.HoldGroups(s)
	done := make(chan queuedWrite, 1)
	go func() {
		r, err := patchOf(t, s, "a", `{"y":3}`)()
		done <- queuedWrite{r, err}
	}()
	testkit.Eventually(t, func() bool { return queued() == 1 }, "the patch queued")
	raced, err := other.Put(t.Context(), "default", "a", json.RawMessage(`{"n":1,"x":1,"z":4}`), nil, "other")
	require.NoError(t, err)
	retries := s.Stats().PatchRetries
	release()
	p := <-done
	require.NoError(t, p.err, "the patch is applied again, not refused")
	assert.Equal(t, retries+1, s.Stats().PatchRetries, "one round lost, counted")
	assert.Greater(t, p.rec.ModRev, raced.ModRev)
	assert.Equal(t, raced.Version+1, p.rec.Version)
	assert.JSONEq(t, `{"n":1,"x":1,"z":4,"y":3}`, string(p.rec.Value), "neither write lost")
	r, err := s.Get("default", "a")
	require.NoError(t, err)
	assert.JSONEq(t, `{"n":1,"x":1,"z":4,"y":3}`, string(r.Value))
}

// openOnDefaultMaxTxnOps opens a store on an etcd of its own that has
// etcd's default --max-txn-ops (128), as production clusters do.
func openOnDefaultMaxTxnOps(t *testing.T) *etcd.Store {
	t.Helper()
	srv, err := etcdkit.Start(func(c *embed.Config) { c.MaxTxnOps = embed.DefaultMaxTxnOps })
	require.NoError(t, err)
	t.Cleanup(srv.Close)
	s, err := etcd.Open(etcd.Options{Endpoints: []string{srv.Endpoint}, Prefix: etcdkit.Prefix(etcdkit.Name(t))})
	require.NoError(t, err)
	t.Cleanup(func() { require.NoError(t, s.Close()) })
	return s
}

// etcdClient is a client of the shared etcd, closed at the test's end.
func etcdClient(t *testing.T) *clientv3.Client {
	t.Helper()
	cli, err := clientv3.New(clientv3.Config{Endpoints: []string{etcdkit.Shared(t).Endpoint}})
	require.NoError(t, err)
	t.Cleanup(func() { _ = cli.Close() })
	return cli
}

// leaseIDs are the leases etcd holds now.
func leaseIDs(t *testing.T, cli *clientv3.Client) map[clientv3.LeaseID]bool {
	t.Helper()
	resp, err := cli.Leases(t.Context())
	require.NoError(t, err)
	ids := map[clientv3.LeaseID]bool{}
	for _, l := range resp.Leases {
		ids[l.ID] = true
	}
	return ids
}

func u64(v uint64) *uint64 { return &v }

func keepAliveOf(t *testing.T, s *etcd.Store, key string, ttl time.Duration) func() (ctxd.Record, error) {
	return func() (ctxd.Record, error) { return s.KeepAlive(t.Context(), "default", key, ttl, nil) }
}

// TestGroupedKeepAlives: a keepalive's rewrite of its key's deadline
// record joins a group. Two keepalives and a put queued together are one
// transaction, in which only the put is a change. A keepalive whose key
// another instance patched while it queued (the key moved, the lease
// kept) fails alone, the others go again, and it renews the key as it is
// now.
func TestGroupedKeepAlives(t *testing.T) {
	prefix := etcdkit.Prefix(etcdkit.Name(t))
	s := open(t, etcd.Options{Prefix: prefix})
	other := open(t, etcd.Options{Prefix: prefix})
	a, b := putTTL(t, s, "a", `1`, time.Hour), putTTL(t, s, "b", `1`, time.Hour)
	_, err := s.Get("default", "b") // the cache has caught up with the puts
	require.NoError(t, err)

	before := s.Stats()
	got := queue(t, s, keepAliveOf(t, s, "a", time.Hour), keepAliveOf(t, s, "b", time.Hour), putOf(t, s, "c", `1`, nil))
	for i, w := range got {
		require.NoError(t, w.err, "write %d", i)
	}
	after := s.Stats()
	assert.Equal(t, uint64(1), after.Transactions-before.Transactions, "one transaction")
	assert.Equal(t, uint64(1), after.Changes-before.Changes, "the put alone is a change")
	for i, first := range []ctxd.Record{a, b} {
		k := got[i].rec
		assert.Equal(t, first.ModRev, k.ModRev, "no new version")
		assert.True(t, k.ExpiresAt.After(first.ExpiresAt), "the deadline moved")
		r, err := other.Get("default", first.Key)
		require.NoError(t, err)
		assert.Equal(t, k.ExpiresAt, r.ExpiresAt, "the deadline record moved")
	}

	// b moves while its keepalive waits in the queue.
	queued, release := etcd.HoldGroups(s)
	answers := make(chan queuedWrite, 2)
	for i, w := range []func() (ctxd.Record, error){keepAliveOf(t, s, "b", time.Hour), putOf(t, s, "d", `1`, nil)} {
		go func() {
			r, err := w()
			answers <- queuedWrite{r, err}
		}()
		testkit.Eventually(t, func() bool { return queued() == i+1 }, "write %d queued", i)
	}
	patched, err := other.Patch(t.Context(), "default", "b", ctxd.Patch{Type: ctxd.MergePatch, Doc: json.RawMessage(`2`)}, nil, "other")
	require.NoError(t, err)
	before = s.Stats()
	release()
	for range 2 {
		w := <-answers
		require.NoError(t, w.err)
		if w.rec.Key == "b" {
			assert.Equal(t, patched.Version, w.rec.Version, "the key as it is now")
			assert.Equal(t, patched.ModRev, w.rec.ModRev)
			r, err := other.Get("default", "b")
			require.NoError(t, err)
			assert.Equal(t, w.rec.ExpiresAt, r.ExpiresAt, "its deadline moved")
		}
	}
	assert.Equal(t, uint64(1), s.Stats().Changes-before.Changes, "d once")
}

// TestGroupedKeepAliveWhoseLeaseEndedIsNotFound: a keepalive that waited
// in the queue longer than its key's TTL (etcd answered nothing
// meanwhile) finds the lease ended: etcd refuses its group, the others
// go again alone, and it answers that the key is not found (etcd deleted
// it with its lease).
func TestGroupedKeepAliveWhoseLeaseEndedIsNotFound(t *testing.T) {
	s := open(t, etcd.Options{Prefix: etcdkit.Prefix(etcdkit.Name(t))})
	short := putTTL(t, s, "short", `1`, s.MinTTL())
	_, err := s.Get("default", "short")
	require.NoError(t, err)
	queued, release := etcd.HoldGroups(s)
	answers := make(chan error, 2)
	go func() {
		_, err := s.KeepAlive(t.Context(), "default", "short", s.MinTTL(), nil)
		answers <- err
	}()
	testkit.Eventually(t, func() bool { return queued() == 1 }, "the keepalive queued")
	go func() {
		_, err := putOf(t, s, "plain", `1`, nil)()
		answers <- err
	}()
	testkit.Eventually(t, func() bool { return queued() == 2 }, "the put queued")
	cli := etcdClient(t)
	lease := leaseOfKey(t, cli, "short")
	testkit.Eventually(t, func() bool {
		resp, err := cli.TimeToLive(t.Context(), lease)
		return err == nil && resp.TTL < 0
	}, "etcd ended the key's lease")
	release()
	var gone, written int
	for range 2 {
		switch err := <-answers; {
		case err == nil:
			written++
		case errors.Is(err, ctxd.ErrNotFound):
			gone++
		default:
			t.Errorf("unexpected answer: %v", err)
		}
	}
	assert.Equal(t, 1, written, "the put")
	assert.Equal(t, 1, gone, "the keepalive")
	_, err = s.Get("default", "plain")
	require.NoError(t, err)
	assert.NotZero(t, short.ModRev)
}

// leaseOfKey is the etcd lease of the test's key (in its prefix's first
// generation, namespace default).
func leaseOfKey(t *testing.T, cli *clientv3.Client, key string) clientv3.LeaseID {
	t.Helper()
	resp, err := cli.Get(t.Context(), etcdkit.Prefix(etcdkit.Name(t))+"k/default/"+key)
	require.NoError(t, err)
	require.Len(t, resp.Kvs, 1)
	return clientv3.LeaseID(resp.Kvs[0].Lease)
}

// A write held in the queue past etcd.request_timeout (behind groups etcd
// did not answer) is answered unavailable and never sent: no write waits
// longer than the request timeout in all. One queued for less is sent, with
// the time it has left.
func TestQueuedPastTheRequestTimeoutIsNotSent(t *testing.T) {
	const timeout = 300 * time.Millisecond
	s := open(t, etcd.Options{Prefix: etcdkit.Prefix(etcdkit.Name(t)), RequestTimeout: timeout})
	queued, release := etcd.HoldGroups(s)
	done := make(chan error, 1)
	go func() { _, err := s.Put(t.Context(), "default", "late", json.RawMessage(`1`), nil, "t"); done <- err }()
	testkit.Eventually(t, func() bool { return queued() == 1 }, "the write queued")
	time.Sleep(timeout + 100*time.Millisecond) // its whole request timeout, and more
	release()
	err := <-done
	require.ErrorIs(t, err, ctxd.ErrUnavailable, "never sent: unavailable, not outcome_unknown")
	_, err = s.Get("default", "late")
	require.ErrorIs(t, err, ctxd.ErrNotFound, "it was not sent")

	got := queue(t, s, putOf(t, s, "soon", `1`, nil))
	require.NoError(t, got[0].err, "a write queued for less than the timeout is sent")
}
