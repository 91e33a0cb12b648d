package storetest

import (
	"encoding/json"
	"errors"
	"fmt"
	"math/rand/v2"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/framework0/ctxd"
	"github.com/framework0/ctxd/store"
)

// The TTL checks run on the real clock: a backend expires keys on its own
// time (bolt with timers, etcd with leases). Deadlines are a few units
// (Harness.TTLUnit) away, and every wait is for the expiry change itself,
// on the Committed channel, bounded generously; how close to its deadline
// an expiry came is checked on the times it recorded.

// expiryLag bounds how long after its deadline an expiry may be recorded:
// the contract says about a second; this leaves room for a loaded machine.
const expiryLag = 3 * time.Second

// putTTL writes a value that expires after ttl.
func (b *backend) putTTL(ns, key, value string, ttl time.Duration) ctxd.Record {
	b.t.Helper()
	res, err := b.Txn(b.t.Context(), []ctxd.Write{{Namespace: ns, Key: key, Op: ctxd.OpPut, Value: json.RawMessage(value), Who: "test", TTL: ttl}})
	require.NoError(b.t, err, "put %s/%s with ttl %s", ns, key, ttl)
	return res.Records[0]
}

// waitExpiry waits until the log after revision after holds the expiry of
// ns/key, and returns it.
func (b *backend) waitExpiry(after uint64, ns, key string) ctxd.Change {
	b.t.Helper()
	deadline := time.After(20 * time.Second)
	for {
		rev, changed := b.Committed()
		for _, c := range b.log(after) {
			if c.Namespace == ns && c.Key == key && c.Op == ctxd.OpDelete {
				return c
			}
		}
		select {
		case <-changed:
		case <-deadline:
			b.t.Fatalf("%s/%s did not expire within 20 s (revision %d)", ns, key, rev)
		}
	}
}

// assertExpiry checks an expiry change: a delete by ctxd.WhoTTL marked
// Expired, recorded at or after the deadline and not long after it.
func assertExpiry(t testing.TB, c ctxd.Change, deadline time.Time, version uint64) {
	t.Helper()
	assert.Equal(t, ctxd.OpDelete, c.Op)
	assert.Equal(t, ctxd.WhoTTL, c.Who)
	assert.True(t, c.Expired, "an expiry is marked Expired")
	assert.Equal(t, version, c.Version, "the expiry deletes the version that expired")
	assert.Nil(t, c.Value)
	assert.False(t, c.Time.Before(deadline), "expired at %s, before its deadline %s", c.Time, deadline)
	assert.Less(t, c.Time.Sub(deadline), expiryLag, "expired at %s, deadline %s", c.Time, deadline)
}

func checkTTLExpiry(t testing.TB, h Harness) {
	b := open(t, h, h.ttlConfig())
	unit := h.ttlUnit()
	permanent := b.put("default", "permanent", `1`)
	a := b.putTTL("default", "a", `"soon"`, unit)
	assert.WithinDuration(t, a.UpdatedAt.Add(unit), a.ExpiresAt, unit/2, "expires_at is the write's time plus the ttl")
	assert.Equal(t, a.ExpiresAt, b.get("default", "a").ExpiresAt, "a read shows the deadline")
	assert.True(t, permanent.ExpiresAt.IsZero(), "a put without ttl does not expire")
	// A later put without ttl makes a key permanent; with one, resets it.
	b.putTTL("default", "made-permanent", `1`, unit)
	kept := b.put("default", "made-permanent", `2`)
	assert.True(t, kept.ExpiresAt.IsZero())
	b.putTTL("default", "reset", `1`, unit)
	reset := b.putTTL("default", "reset", `2`, time.Hour)
	assert.WithinDuration(t, reset.UpdatedAt.Add(time.Hour), reset.ExpiresAt, time.Second)
	// In a transaction too.
	res, err := b.Txn(t.Context(), []ctxd.Write{
		{Namespace: "team", Key: "t1", Op: ctxd.OpPut, Value: json.RawMessage(`1`), Who: "test", TTL: unit},
		{Namespace: "team", Key: "t2", Op: ctxd.OpPut, Value: json.RawMessage(`2`), Who: "test"},
	})
	require.NoError(t, err)
	assert.False(t, res.Records[0].ExpiresAt.IsZero())
	assert.True(t, res.Records[1].ExpiresAt.IsZero())

	before := a.ModRev - 1
	exp := b.waitExpiry(before, "default", "a")
	assertExpiry(t, exp, a.ExpiresAt, a.Version)
	_, err = b.Get("default", "a")
	assert.ErrorIs(t, err, ctxd.ErrNotFound, "an expired key is gone")
	hist, err := b.History("default", "a", ctxd.HistoryOptions{})
	require.NoError(t, err)
	require.NotEmpty(t, hist.Changes)
	assert.Equal(t, exp.Revision, hist.Changes[0].Revision, "the expiry is in the key's history")
	assert.True(t, hist.Changes[0].Expired)
	assert.Equal(t, ctxd.WhoTTL, hist.Changes[0].Who)
	assert.False(t, hist.Changes[len(hist.Changes)-1].ExpiresAt.IsZero(), "the put in history shows its deadline")
	t1 := b.waitExpiry(before, "team", "t1")
	assertExpiry(t, t1, res.Records[0].ExpiresAt, 1)
	// Each expiry has a revision of its own.
	assert.NotEqual(t, exp.Revision, t1.Revision)
	// A compare-and-swap against the expired version fails: the key is gone.
	_, err = b.Put(t.Context(), "default", "a", json.RawMessage(`3`), u64(a.Version), "test")
	var ce *ctxd.ConflictError
	require.ErrorAs(t, err, &ce)
	assert.Equal(t, uint64(0), ce.Current)
	// The keys made permanent or reset did not expire.
	for _, key := range []string{"permanent", "made-permanent", "reset"} {
		b.get("default", key)
	}
	b.get("team", "t2")
}

func checkKeepAlive(t testing.TB, h Harness) {
	b := open(t, h, h.ttlConfig())
	// hb lives 3 units (Harness.TTLUnit) unless kept alive. A marker of 2
	// units ages it before the keepalive, which so moves its deadline 2
	// units or more; one of a unit, put after a restart, has its deadline
	// past hb's first one and before its moved one, with 2 units to spare
	// for the restart and the expiry's lag. (Checked: on etcd, a
	// keepalive that rewrote the deadline but did not renew the lease
	// failed at "hb outlived its first deadline".)
	unit := h.ttlUnit()
	hbTTL := 3 * unit
	k := b.putTTL("default", "hb", `"alive"`, hbTTL)
	b.put("default", "forever", `1`)
	// A wrong version, a missing key, a key without deadline and a bad
	// ttl are refused and change nothing.
	_, err := b.KeepAlive(t.Context(), "default", "hb", hbTTL, u64(k.Version+1))
	var ce *ctxd.ConflictError
	require.ErrorAs(t, err, &ce)
	assert.Equal(t, k.Version, ce.Current)
	_, err = b.KeepAlive(t.Context(), "default", "missing", hbTTL, nil)
	assert.ErrorIs(t, err, ctxd.ErrNotFound)
	// With an expected version, a missing key is at version 0, as for a
	// delete or a patch: a conflict (it was not found, whatever version
	// was expected), and not found when 0 was expected.
	_, err = b.KeepAlive(t.Context(), "default", "missing", hbTTL, u64(1))
	require.ErrorAs(t, err, &ce, "a missing key, version 1 expected")
	assert.Equal(t, uint64(0), ce.Current)
	_, err = b.KeepAlive(t.Context(), "default", "missing", hbTTL, u64(0))
	assert.ErrorIs(t, err, ctxd.ErrNotFound, "a missing key, version 0 expected")
	_, err = b.KeepAlive(t.Context(), "default", "forever", hbTTL, nil)
	assert.ErrorIs(t, err, ctxd.ErrInvalid, "a key without a deadline has nothing to extend")
	_, err = b.KeepAlive(t.Context(), "default", "hb", time.Nanosecond, nil)
	assert.ErrorIs(t, err, ctxd.ErrInvalid, "a ttl below the minimum")
	if h.KeepAlive == KeepAlivePutTTL {
		_, err = b.KeepAlive(t.Context(), "default", "hb", time.Hour, nil)
		assert.ErrorIs(t, err, ctxd.ErrInvalid, "a ttl other than the put's (KeepAlivePutTTL)")
	}
	assert.Equal(t, k.ExpiresAt, b.get("default", "hb").ExpiresAt)

	// Once hb is 2 units old (a marker put with it for 2 units expired),
	// keep it alive for its ttl again: its deadline moves 2 units or more.
	m1 := b.putTTL("default", "m1", `1`, 2*unit)
	b.waitExpiry(m1.ModRev, "default", "m1")
	rev := b.Revision()
	got, err := b.KeepAlive(t.Context(), "default", "hb", hbTTL, u64(k.Version))
	require.NoError(t, err)
	assert.Equal(t, k.Version, got.Version, "a keepalive makes no version")
	assert.Equal(t, k.ModRev, got.ModRev)
	assert.Equal(t, `"alive"`, string(got.Value))
	assert.True(t, got.ExpiresAt.After(k.ExpiresAt.Add(unit)), "the deadline moved: %s, was %s", got.ExpiresAt, k.ExpiresAt)
	assert.Equal(t, rev, b.Revision(), "a keepalive makes no revision")
	assert.Empty(t, b.log(rev), "nor a change in the feed")
	assert.Equal(t, []uint64{k.ModRev}, b.historyRevs("default", "hb"), "nor a history entry")
	assert.Equal(t, got.ExpiresAt, b.get("default", "hb").ExpiresAt)
	page, err := b.List("default", ctxd.ListOptions{Prefix: "hb"})
	require.NoError(t, err)
	require.Len(t, page.Records, 1)
	assert.Equal(t, got.ExpiresAt, page.Records[0].ExpiresAt, "a listing shows the moved deadline")
	viewed := 0
	require.NoError(t, b.View(func(v store.View) error {
		return v.ForEach("default", "hb", func(r ctxd.Record) error {
			viewed++
			assert.Equal(t, got.ExpiresAt, r.ExpiresAt, "a view (exports, dumps, a watch's snapshot) shows the moved deadline")
			return nil
		})
	}))
	assert.Equal(t, 1, viewed)

	// The move survives a restart: a key put after it with a deadline past
	// hb's first one expires, and hb does not.
	b.restart()
	assert.Equal(t, got.ExpiresAt, b.get("default", "hb").ExpiresAt, "the keepalive is durable")
	m := b.putTTL("default", "marker", `1`, unit)
	require.True(t, m.ExpiresAt.After(k.ExpiresAt))
	b.waitExpiry(m.ModRev, "default", "marker")
	assert.Equal(t, got.ExpiresAt, b.get("default", "hb").ExpiresAt, "hb outlived its first deadline")
	if h.KeepAlive == KeepAliveAnyTTL {
		// Any ttl within the limits, here longer than the put's.
		long, err := b.KeepAlive(t.Context(), "default", "hb", time.Hour, nil)
		require.NoError(t, err)
		assert.Equal(t, k.Version, long.Version, "a keepalive makes no version")
		assert.True(t, long.ExpiresAt.After(got.ExpiresAt.Add(30*time.Minute)), "the deadline moved: %s", long.ExpiresAt)
	}
	// A put without ttl after a keepalive makes the key permanent.
	assert.True(t, b.put("default", "hb", `"done"`).ExpiresAt.IsZero())
	assert.True(t, b.get("default", "hb").ExpiresAt.IsZero())
}

// checkExpiryAtStartUp: a deadline that passed while the backend was down
// expires when it starts, as a change like any other. Without the
// harness's clock the backend is down for the real time it takes.
func checkExpiryAtStartUp(t testing.TB, h Harness) {
	cfg := Config{}
	var clock *fakeClock
	if h.Clock {
		clock = newFakeClock(time.Now().UTC())
		cfg.Now = clock.Now
	}
	b := open(t, h, cfg)
	k := b.putTTL("default", "lock", `"held"`, time.Second)
	require.NoError(t, b.Close())
	if clock != nil {
		clock.Advance(2 * time.Second)
	} else {
		time.Sleep(2 * time.Second)
	}
	b.Backend = b.h.Open(b.t, b.dir, b.cfg)
	exp := b.waitExpiry(k.ModRev, "default", "lock")
	assert.Equal(t, ctxd.WhoTTL, exp.Who)
	assert.True(t, exp.Expired)
	assert.Equal(t, k.ModRev+1, exp.Revision, "the expiry is the next revision")
	_, err := b.Get("default", "lock")
	assert.ErrorIs(t, err, ctxd.ErrNotFound)
}

// checkDeadlinesInSnapshots: a full restore brings deadlines back with
// the values; a partial one puts keys back with their deadline.
func checkDeadlinesInSnapshots(t testing.TB, h Harness) {
	if !h.Snapshots {
		checkNoSnapshots(t, h)
		return
	}
	b := open(t, h, Config{})
	k := b.putTTL("default", "k", `1`, time.Hour)
	keep := 2 * time.Hour
	if h.KeepAlive == KeepAlivePutTTL {
		keep = time.Hour
	}
	x, err := b.KeepAlive(t.Context(), "default", "k", keep, nil)
	require.NoError(t, err)
	path, _ := b.writeSnapshot()
	b.put("default", "k", `2`)
	_, err = b.Restore(t.Context(), path, ctxd.RestoreOptions{})
	require.NoError(t, err)
	got := b.get("default", "k")
	assert.Equal(t, `1`, string(got.Value))
	assert.Equal(t, x.ExpiresAt, got.ExpiresAt, "a full restore keeps the keepalive's deadline")
	assert.True(t, got.ExpiresAt.After(k.ExpiresAt))

	b.put("default", "k", `3`)
	_, err = b.Restore(t.Context(), path, ctxd.RestoreOptions{Namespaces: []string{"default"}})
	require.NoError(t, err)
	got = b.get("default", "k")
	assert.Equal(t, `1`, string(got.Value))
	assert.WithinDuration(t, x.ExpiresAt, got.ExpiresAt, 5*time.Second, "a partial restore puts the key back with its deadline")
}

// checkTTLBadInput: a ttl out of the limits, or on a delete, is refused
// and changes nothing.
func checkTTLBadInput(t testing.TB, h Harness) {
	b := open(t, h, Config{Limits: ctxd.Limits{MinTTL: 2 * time.Second, MaxTTL: time.Hour}})
	for name, w := range map[string]ctxd.Write{
		"below min_ttl":   {Namespace: "default", Key: "k", Op: ctxd.OpPut, Value: json.RawMessage(`1`), TTL: time.Second},
		"above max_ttl":   {Namespace: "default", Key: "k", Op: ctxd.OpPut, Value: json.RawMessage(`1`), TTL: 2 * time.Hour},
		"negative":        {Namespace: "default", Key: "k", Op: ctxd.OpPut, Value: json.RawMessage(`1`), TTL: -time.Second},
		"ttl on a delete": {Namespace: "default", Key: "k", Op: ctxd.OpDelete, TTL: time.Hour},
	} {
		_, err := b.Txn(t.Context(), []ctxd.Write{w})
		assert.True(t, errors.Is(err, ctxd.ErrInvalid), "%s: got %v", name, err)
	}
	assert.Equal(t, uint64(0), b.Revision(), "refused writes change nothing")
}

// expiring runs check on a backend that expires keys, and on one that
// does not (Harness.Expiry false) checks that it says so instead.
// checkKeepAlivesRacingWrites: keepalives without If-Match racing puts
// with a TTL, patches and deletes of their keys answer the key as it is
// then (RaceWritesOfExpiringKeys, on one backend). On etcd a keepalive
// answered a conflict it did not ask about when its key moved between its
// read and its rewrite; on bolt a keepalive of a key replaced later in the
// same commit group put the old deadline back in the deadline index, under
// the old revision, and a patch then found none and made the key
// permanent. 300 ms (about a thousand requests on a loaded 2-core VM)
// found each of them every time; a second (and a backlog of changes that
// the eager committer took seconds to apply at close) found no more.
func checkKeepAlivesRacingWrites(t testing.TB, h Harness) {
	RaceWritesOfExpiringKeys(t, []store.Backend{open(t, h, Config{}).Backend}, 4, 16, 300*time.Millisecond)
}

// RaceWritesOfExpiringKeys has writers clients put (with a TTL of an
// hour), keep alive (without If-Match), patch and delete keys keys of
// namespace default for d, each request on one of backends (instances of
// one deployment) at random, with fixed seeds. Each answer must be the
// key as it is then, or not found (a key deleted meanwhile): no other
// error, never a conflict no request asked about; keepalives and patches
// answer a deadline (a patch keeps the key's); each kind of request
// applies at least once (the race goes on past d until it has).
func RaceWritesOfExpiringKeys(t testing.TB, backends []store.Backend, keys, writers int, d time.Duration) {
	const kinds = 4 // put with a TTL, keepalive, patch, delete
	var applied [kinds]atomic.Int64
	// The race runs d, and on until each kind of request has applied
	// once (for at most a minute): on a loaded machine d may see only a
	// few patches, all of them of keys a delete had just removed.
	start := time.Now()
	end, giveUp := start.Add(d), start.Add(d+time.Minute)
	running := func() bool {
		now := time.Now()
		if now.Before(end) {
			return true
		}
		for kind := range applied {
			if applied[kind].Load() == 0 {
				return now.Before(giveUp)
			}
		}
		return false
	}
	var wg sync.WaitGroup
	for g := range writers {
		wg.Go(func() {
			r := rand.New(rand.NewPCG(uint64(g), 7))
			for running() {
				b, key := backends[r.IntN(len(backends))], fmt.Sprint("k", r.IntN(keys))
				var (
					kind int
					rec  ctxd.Record
					err  error
				)
				switch n := r.IntN(10); {
				case n < 3:
					var res ctxd.TxnResult
					if res, err = b.Txn(t.Context(), []ctxd.Write{{Namespace: "default", Key: key, Op: ctxd.OpPut, Value: json.RawMessage(`{"n":1}`), Who: "t", TTL: time.Hour}}); err == nil {
						rec = res.Records[0]
					}
				case n < 7:
					kind = 1
					rec, err = b.KeepAlive(t.Context(), "default", key, time.Hour, nil)
				case n < 9:
					kind = 2
					rec, err = b.Patch(t.Context(), "default", key, ctxd.Patch{Type: ctxd.MergePatch, Doc: json.RawMessage(fmt.Sprintf(`{"m":%d}`, r.IntN(100)))}, nil, "t")
				default:
					kind = 3
					_, err = b.Delete(t.Context(), "default", key, nil, "t")
				}
				switch {
				case errors.Is(err, ctxd.ErrNotFound):
				case err != nil:
					assert.NoError(t, err, "only not found, for a key deleted meanwhile")
					return
				default:
					applied[kind].Add(1)
					if kind < 3 {
						assert.False(t, rec.ExpiresAt.IsZero(), "the key's deadline (a keepalive's new one, the one a patch keeps)")
					}
				}
			}
		})
	}
	wg.Wait()
	for kind, name := range []string{"puts with a ttl", "keepalives", "patches", "deletes"} {
		assert.Positive(t, applied[kind].Load(), "some %s applied", name)
	}
}

func expiring(check func(testing.TB, Harness)) func(testing.TB, Harness) {
	return func(t testing.TB, h Harness) {
		if !h.Expiry {
			checkNoExpiry(t, h)
			return
		}
		check(t, h)
	}
}

// checkNoExpiry: a backend without expiry refuses a put with a TTL (alone
// or in a transaction) and a keepalive with ctxd.ErrNotSupported, and
// changes nothing.
func checkNoExpiry(t testing.TB, h Harness) {
	b := open(t, h, Config{})
	ctx := t.Context()
	b.put("default", "k", `1`)
	unchanged := b.checkpoint()
	_, err := b.Txn(ctx, []ctxd.Write{{Namespace: "default", Key: "k", Op: ctxd.OpPut, Value: json.RawMessage(`2`), Who: "t", TTL: time.Minute}})
	assert.ErrorIs(t, err, ctxd.ErrNotSupported, "a put with a TTL")
	_, err = b.Txn(ctx, []ctxd.Write{
		put("default", "other", `1`),
		{Namespace: "default", Key: "k", Op: ctxd.OpPut, Value: json.RawMessage(`2`), Who: "t", TTL: time.Minute},
	})
	assert.ErrorIs(t, err, ctxd.ErrNotSupported, "a transaction with a TTL")
	_, err = b.KeepAlive(ctx, "default", "k", time.Minute, nil)
	assert.ErrorIs(t, err, ctxd.ErrNotSupported, "a keepalive")
	unchanged("refused expiry")
}

// checkPatchKeepsTheDeadline: a patch changes part of an expiring key's
// value, not its life: the key keeps its deadline (a put without a TTL
// would make it permanent).
func checkPatchKeepsTheDeadline(t testing.TB, h Harness) {
	b := open(t, h, Config{})
	k := b.putTTL("default", "k", `{"a":1}`, time.Hour)
	require.False(t, k.ExpiresAt.IsZero())
	r, err := b.Patch(t.Context(), "default", "k", mergePatch(`{"b":2}`), nil, "t")
	require.NoError(t, err)
	assert.Equal(t, `{"a":1,"b":2}`, string(r.Value))
	assert.WithinDuration(t, k.ExpiresAt, r.ExpiresAt, time.Second, "the patch's answer")
	assert.WithinDuration(t, k.ExpiresAt, b.get("default", "k").ExpiresAt, time.Second, "the key")
}
