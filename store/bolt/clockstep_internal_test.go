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

// A step of the system clock moves no deadline: a key put with a 30 s
// ttl lives 30 s of the monotonic clock, whichever way the wall clock
// steps meanwhile. Before, deadlines were set and compared on the wall
// clock: a step forward of a day expired every expiring key at once (live
// clients' locks and registrations), a step back of an hour kept a dead
// client's 1 s lock for an hour.
func TestAClockStepMovesNoDeadline(t *testing.T) {
	clocks := &steppedClocks{wall: time.Date(2026, 12, 5, 12, 0, 0, 0, time.UTC)}
	opts := Options{Now: clocks.now}
	opts.hooks.elapsed = clocks.elapsed
	s, err := Open(filepath.Join(t.TempDir(), "ctxd.db"), opts)
	require.NoError(t, err)
	defer s.Close()
	ctx := context.Background()
	put := func(key string, ttl time.Duration) ctxd.Record {
		res, err := s.Txn(ctx, []ctxd.Write{{Namespace: "default", Key: key, Op: ctxd.OpPut, Value: json.RawMessage(`1`), TTL: ttl, Who: "t"}})
		require.NoError(t, err)
		return res.Records[0]
	}
	expired := func() int {
		n, err := s.expireDue()
		require.NoError(t, err)
		return n
	}

	lock := put("lock", 30*time.Second)
	clocks.pass(time.Second)
	clocks.step(24 * time.Hour)
	assert.Zero(t, expired(), "a day's step forward expires nothing")
	_, err = s.Get("default", "lock")
	require.NoError(t, err)
	kept, err := s.KeepAlive(ctx, "default", "lock", 30*time.Second, nil)
	require.NoError(t, err, "the client's keepalive finds its key")
	assert.Equal(t, lock.ExpiresAt.Add(time.Second), kept.ExpiresAt, "30 s from now on the monotonic clock")
	clocks.pass(29 * time.Second)
	assert.Zero(t, expired())
	clocks.pass(2 * time.Second)
	assert.Equal(t, 1, expired(), "30 s after its keepalive")

	put("short", time.Second)
	clocks.step(-time.Hour)
	clocks.pass(2 * time.Second)
	assert.Equal(t, 1, expired(), "a step back of an hour keeps a 1 s key 1 s")
	_, err = s.Get("default", "short")
	require.ErrorIs(t, err, ctxd.ErrNotFound)
}
