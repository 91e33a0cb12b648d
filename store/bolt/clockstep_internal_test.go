package bolt

import (
	"context"
	"encoding/json"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/framework0/ctxd"
)

// steppedClocks are a wall clock a test steps (NTP, a resumed VM) and the
// monotonic clock beside it, which only moves forward with time.
type steppedClocks struct {
	mu   sync.Mutex
	wall time.Time
	mono time.Duration
}

func (c *steppedClocks) now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.wall
}

func (c *steppedClocks) elapsed() time.Duration {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.mono
}

// pass moves both clocks by d; step moves the wall clock alone.
func (c *steppedClocks) pass(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.wall, c.mono = c.wall.Add(d), c.mono+d
}

func (c *steppedClocks) step(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.wall = c.wall.Add(d)
}

// A step of the system clock changes no key's life: a key put with a 30 s
// ttl lives 30 s of the monotonic clock, whichever way the wall clock
// steps meanwhile, and the next write moves its stored deadline by the
// step, so that a restart (which measures deadlines against the wall
// clock) keeps it too. Before, deadlines were set and compared on the wall
// clock: a step forward of a day expired every expiring key at once (live
// clients' locks and registrations), a step back of an hour kept a dead
// client's 1 s lock for an hour; and on the clock of Open alone, a restart
// after a step forward expired every key set since.
func TestAClockStepMovesNoDeadline(t *testing.T) {
	clocks := &steppedClocks{wall: time.Date(2026, 12, 5, 12, 0, 0, 0, time.UTC)}
	var steps []time.Duration
	opts := Options{Now: clocks.now, OnClockStep: func(step time.Duration, _ int) { steps = append(steps, step) }}
	opts.hooks.elapsed = clocks.elapsed
	path := filepath.Join(t.TempDir(), "ctxd.db")
	s, err := Open(path, opts)
	require.NoError(t, err)
	defer func() { s.Close() }()
	ctx := context.Background()
	put := func(key string, ttl time.Duration) ctxd.Record {
		res, err := s.Txn(ctx, []ctxd.Write{{Namespace: "default", Key: key, Op: ctxd.OpPut, Value: json.RawMessage(`1`), TTL: ttl, Who: "t"}})
		require.NoError(t, err)
		return res.Records[0]
	}
	// expired runs two expiries, as the expirer would: the group that
	// moves the deadlines after a step publishes them for the next one.
	expired := func() int {
		total := 0
		for range 2 {
			n, err := s.expireDue()
			require.NoError(t, err)
			total += n
		}
		return total
	}

	lock := put("lock", 30*time.Second)
	assert.Equal(t, lock.UpdatedAt.Add(30*time.Second), lock.ExpiresAt)
	clocks.pass(time.Second)
	clocks.step(24 * time.Hour)
	assert.Zero(t, expired(), "a day's step forward expires nothing")
	assert.Equal(t, []time.Duration{24 * time.Hour}, steps, "the writer found the step")
	got, err := s.Get("default", "lock")
	require.NoError(t, err)
	assert.Equal(t, lock.ExpiresAt.Add(24*time.Hour), got.ExpiresAt, "the deadline moved by the step: 29 s left")

	// A put after the step: its deadline is on the wall clock, as its time.
	fresh := put("fresh", time.Minute)
	assert.Equal(t, fresh.UpdatedAt.Add(time.Minute), fresh.ExpiresAt)
	assert.Equal(t, clocks.now(), fresh.UpdatedAt)

	// A restart measures the stored deadlines against the wall clock.
	require.NoError(t, s.Close())
	clocks.pass(10 * time.Second)
	s, err = Open(path, opts)
	require.NoError(t, err)
	assert.Zero(t, expired(), "the restart after the step expires nothing")
	for _, key := range []string{"lock", "fresh"} {
		_, err := s.Get("default", key)
		require.NoError(t, err, key)
	}
	// The keys that are due are checked by their absence, not by what
	// expired() counts: the store's own expirer wakes on a real timer,
	// and on a loaded machine it may take them first.
	clocks.pass(20 * time.Second)
	expired()
	_, err = s.Get("default", "lock")
	require.ErrorIs(t, err, ctxd.ErrNotFound, "the lock, 30 s after it was put")

	put("short", time.Second)
	clocks.step(-time.Hour)
	clocks.pass(2 * time.Second)
	expired()
	_, err = s.Get("default", "short")
	require.ErrorIs(t, err, ctxd.ErrNotFound, "a step back of an hour keeps a 1 s key 1 s")
	assert.Len(t, steps, 2)
	_, err = s.Get("default", "fresh")
	require.NoError(t, err, "fresh still has 28 s")
}
