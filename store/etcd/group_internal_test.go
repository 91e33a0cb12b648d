package etcd

import (
	"context"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/framework0/ctxd"
)

// A queued write is sent only with at least minLeft of its request
// timeout left, and its group's deadline is the earliest of its writes':
// never in the past, never shorter than minLeft, so that a busy etcd is
// not given a deadline it cannot meet (a write answered unavailable was
// never sent; one sent and timed out would be outcome_unknown).
func TestGroupSendsOnlyWritesWithTimeLeft(t *testing.T) {
	const minLeft = 100 * time.Millisecond
	g := &grouper{inFlight: 1, maxWrites: 10, minLeft: minLeft}
	now := time.Now()
	write := func(key string, left time.Duration) *groupWrite {
		return &groupWrite{ctx: context.Background(), w: ctxd.Write{Namespace: "default", Key: key, Op: ctxd.OpPut},
			expires: now.Add(left), done: make(chan struct{})}
	}
	late, short, fresh := write("late", -time.Millisecond), write("short", minLeft/2), write("fresh", 10*minLeft)
	g.queue = []*groupWrite{late, short, fresh}
	g.mu.Lock()
	group := g.takeLocked()
	g.mu.Unlock()
	require.Equal(t, []*groupWrite{fresh}, group, "only the write with time left is sent")
	for _, p := range []*groupWrite{late, short} {
		require.True(t, p.finished(), p.w.Key)
		assert.ErrorIs(t, p.err, ctxd.ErrUnavailable, "%s: never sent", p.w.Key)
	}
	assert.Equal(t, fresh.expires, groupDeadline(now.Add(time.Hour), group), "the group ends with its oldest write's time")
	assert.Equal(t, now.Add(time.Second), groupDeadline(now.Add(time.Second), group), "and never later than the request timeout")
	assert.False(t, groupDeadline(now.Add(time.Hour), group).Before(now.Add(minLeft)))
}
