package msglimit_test

import (
	"testing"
	"time"

	"github.com/stretchr/testify/assert"

	"github.com/framework0/ctxd/internal/msglimit"
	"github.com/framework0/ctxd/internal/testkit"
)

// TestMain fails the run when a test leaves a goroutine running.
func TestMain(m *testing.M) { testkit.VerifyNoLeaks(m) }

// A burst is accepted, then messages are refused with the time until the
// next one is due; refusals take nothing from the bucket, so messages go
// on being accepted at the rate; more than MaxRefused refusals within the
// window disconnect, fewer spread over windows do not. Time is given, not
// read: no test waits.
func TestTake(t *testing.T) {
	l := msglimit.New(msglimit.Config{PerSecond: 10, Burst: 3, MaxRefused: 4})
	now := time.Unix(1000, 0)
	for i := range 3 {
		v, _ := l.Take(now)
		assert.Equal(t, msglimit.Accept, v, "burst message %d", i)
	}
	v, wait := l.Take(now)
	assert.Equal(t, msglimit.Refuse, v)
	assert.Equal(t, 100*time.Millisecond, wait, "10 per second: the next one in 100 ms")
	assert.Equal(t, int64(100), msglimit.RetryAfterMillis(wait))
	v, wait = l.Take(now.Add(40 * time.Millisecond))
	assert.Equal(t, msglimit.Refuse, v)
	assert.Equal(t, 60*time.Millisecond, wait)

	now = now.Add(100 * time.Millisecond)
	v, _ = l.Take(now)
	assert.Equal(t, msglimit.Accept, v, "refusals took no token")
	for range 2 { // refusals 3 and 4 of this window
		v, _ = l.Take(now)
		assert.Equal(t, msglimit.Refuse, v)
	}
	v, _ = l.Take(now)
	assert.Equal(t, msglimit.Disconnect, v, "a fifth refusal within the window")

	// Four refusals per window, windows apart: never disconnected.
	l = msglimit.New(msglimit.Config{PerSecond: 10, Burst: 1, MaxRefused: 4})
	now = time.Unix(2000, 0)
	for w := range 3 {
		at := now.Add(time.Duration(w) * msglimit.Window)
		v, _ := l.Take(at)
		assert.Equal(t, msglimit.Accept, v)
		for range 4 {
			v, _ = l.Take(at)
			assert.Equal(t, msglimit.Refuse, v, "window %d", w)
		}
	}
}

// MaxRefused 0 never disconnects; PerSecond 0 is no limit at all (nil);
// Burst 0 is PerSecond rounded up.
func TestConfigZeros(t *testing.T) {
	assert.Nil(t, msglimit.New(msglimit.Config{}))
	var off *msglimit.Limiter
	v, _ := off.Take(time.Now())
	assert.Equal(t, msglimit.Accept, v)

	l := msglimit.New(msglimit.Config{PerSecond: 2.5})
	now := time.Unix(1000, 0)
	for range 3 {
		v, _ := l.Take(now)
		assert.Equal(t, msglimit.Accept, v)
	}
	for range 1000 {
		v, _ := l.Take(now)
		assert.Equal(t, msglimit.Refuse, v)
	}
	assert.Contains(t, l.RefusedMessage(time.Millisecond/2), "2.5 per second with bursts of 3")
	assert.Contains(t, l.RefusedMessage(time.Millisecond/2), "retry after 1 ms")
}

// The pause after a refusal is the retry_after_ms answered, at most
// MaxPause.
func TestPause(t *testing.T) {
	assert.Equal(t, 10*time.Millisecond, msglimit.Pause(9*time.Millisecond+time.Microsecond))
	assert.Equal(t, time.Millisecond, msglimit.Pause(time.Nanosecond))
	assert.Equal(t, msglimit.MaxPause, msglimit.Pause(time.Minute))
}
