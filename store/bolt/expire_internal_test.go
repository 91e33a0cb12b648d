package bolt

import (
	"context"
	"encoding/json"
	"path/filepath"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/framework0/ctxd"
)

// heldGroups stands in for the writer: the test holds s.writing (the
// writer and lone writes wait for it), commits each batch as one group
// (written to the log, not landed: unpublished, so the deadline index does
// not have its deadlines yet), then lands them all, in order.
type heldGroups struct {
	s       *Store
	flights []*flight
}

func holdGroups(s *Store) *heldGroups {
	s.writing.Lock()
	return &heldGroups{s: s}
}

// commit makes reqs one group. Their answers come once land has run.
func (h *heldGroups) commit(t *testing.T, reqs ...*request) {
	t.Helper()
	f := h.s.commit(reqs)
	require.NotNil(t, f, "the group was refused")
	h.flights = append(h.flights, f)
}

// land hands the groups to the syncer and lets the writer go.
func (h *heldGroups) land() {
	for _, f := range h.flights {
		h.s.send(f)
	}
	h.s.writing.Unlock()
}

func answer(t *testing.T, r *request) ctxd.TxnResult {
	t.Helper()
	res := <-r.done
	require.NoError(t, res.err)
	return res.res
}

// An expiry takes the keys the deadline index lists as due, and checks
// each again against the state so far: the index has only published
// deadlines, and a keepalive in a group not yet published (case 1), or a
// put with a new ttl earlier in the expiry's own group (case 2), moved
// the key's deadline past now. The expiry then deletes nothing, and the
// key lives to its new deadline, when it expires. Run without the check
// in group.expire, the key is deleted (by ctxd:ttl) in both cases though
// its client kept it alive or put it again. (A keepalive in the expiry's
// own group cannot move the deadline: the group's clock is past it, and
// the keepalive meets the key expired, expireTouched.)
func TestExpiryRechecksDeadlinesNotPublishedYet(t *testing.T) {
	open := func(t *testing.T) (*Store, *steppedClocks) {
		clocks := &steppedClocks{wall: time.Date(2026, 12, 5, 12, 0, 0, 0, time.UTC)}
		opts := Options{Now: clocks.now}
		opts.hooks.elapsed = clocks.elapsed
		s, err := Open(filepath.Join(t.TempDir(), "ctxd.db"), opts)
		require.NoError(t, err)
		t.Cleanup(func() {
			assert.NoError(t, s.Check())
			require.NoError(t, s.Close())
		})
		return s, clocks
	}
	ctx := context.Background()
	put := func(key string, ttl time.Duration) *request {
		w := ctxd.Write{Namespace: "default", Key: key, Op: ctxd.OpPut, Value: json.RawMessage(`1`), TTL: ttl, Who: "t"}
		return &request{writes: []ctxd.Write{w}, size: changeSize(&w), done: make(chan result, 1)}
	}
	expire := func() *request { return &request{expire: true, done: make(chan result, 1)} }
	// Deadlines are hours away in real time too: the store's expirer,
	// which sleeps on a real timer, stays out of the way. An expiry of
	// its that gets in anyway (a wake from the first put, handled late)
	// queues behind the held groups (s.writing), and rechecks too.
	//
	// check says that key lives with deadline, and expires then.
	check := func(t *testing.T, s *Store, clocks *steppedClocks, key string, deadline time.Time) {
		t.Helper()
		rec, err := s.Get("default", key)
		require.NoError(t, err, "the key lives")
		assert.Equal(t, deadline, rec.ExpiresAt, "with its new deadline")
		n, err := s.expireDue()
		require.NoError(t, err)
		assert.Zero(t, n, "not due yet")
		clocks.pass(deadline.Sub(s.ttlClock.now()))
		// By its absence, not by what expireDue counts: the store's own
		// expirer wakes on a real timer, and may take it first.
		_, err = s.expireDue()
		require.NoError(t, err)
		_, err = s.Get("default", key)
		require.ErrorIs(t, err, ctxd.ErrNotFound, "it expires at its new deadline")
	}

	t.Run("keepalive in an unpublished group before", func(t *testing.T) {
		s, clocks := open(t)
		res, err := s.Txn(ctx, put("k", time.Hour).writes)
		require.NoError(t, err)
		first := res.Records[0].ExpiresAt
		clocks.pass(30 * time.Minute)

		h := holdGroups(s)
		ka := &request{keepAlive: &keepAlive{ns: "default", key: "k", ttl: 2 * time.Hour}, done: make(chan result, 1)}
		h.commit(t, ka) // before the first deadline: it holds
		clocks.pass(time.Hour)
		require.True(t, s.ttlClock.now().After(first), "the index's deadline has passed")
		exp := expire()
		h.commit(t, exp)
		h.land()

		kept := answer(t, ka).Records[0].ExpiresAt
		assert.Equal(t, first.Add(90*time.Minute), kept, "2 h from the keepalive")
		assert.Empty(t, answer(t, exp).Records, "the expiry deletes nothing")
		check(t, s, clocks, "k", kept)
	})

	t.Run("put with a new ttl earlier in the same group", func(t *testing.T) {
		s, clocks := open(t)
		res, err := s.Txn(ctx, put("k", time.Hour).writes)
		require.NoError(t, err)
		first := res.Records[0].ExpiresAt

		h := holdGroups(s)
		clocks.pass(2 * time.Hour)
		require.True(t, s.ttlClock.now().After(first), "the index's deadline has passed")
		again, exp := put("k", time.Hour), expire()
		// The put meets k expired (expireTouched) and makes it again.
		h.commit(t, again, exp)
		h.land()

		rec := answer(t, again).Records[0]
		assert.Equal(t, uint64(1), rec.Version, "made again after its expiry")
		assert.Equal(t, first.Add(2*time.Hour), rec.ExpiresAt, "1 h from the put")
		assert.Empty(t, answer(t, exp).Records, "the expiry deletes nothing")
		check(t, s, clocks, "k", rec.ExpiresAt)
	})
}
