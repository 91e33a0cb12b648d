// Package msglimit is the per-connection rate limit of the realtime doors,
// /v1/watch and Socket.IO (websocket.rate_limit, websocket.rate_burst,
// websocket.rate_limit_max_refused): each connection has a token bucket
// for the messages its client sends.
//
// A message past the bucket is refused: the door does not apply it and
// answers an error of code rate_limited with retry_after_ms, the time until
// the bucket holds a message again. A refused message takes nothing from
// the bucket. After answering a refusal, the door stops reading that
// connection for the time it told the client to wait (Pause): a client
// that keeps sending is throttled by TCP itself, has a message refused
// and the next one applied, in turn, and costs the server about two
// messages per token whatever it sends. What cuts it off is the count of
// refusals: more than MaxRefused within Window, and the door disconnects
// it (close 1008, reason rate_limited).
//
// The check comes before the message is even decoded, so that a flooding
// client costs the server little and never reaches the store's writer
// beyond its rate.
package msglimit

import (
	"math"
	"strconv"
	"sync"
	"time"

	"golang.org/x/time/rate"
)

// Window is the period over which a connection's refused messages are
// counted for MaxRefused: it starts at a refusal, and the first refusal
// after it ends starts the next one.
const Window = 10 * time.Second

// Config is the limit of one connection.
type Config struct {
	// PerSecond is how many messages per second a client may send; 0
	// turns the limit off.
	PerSecond float64
	// Burst is how many it may send at once; 0 means PerSecond rounded up
	// (at least 1).
	Burst int
	// MaxRefused disconnects a client with more than this many messages
	// refused within Window; 0 never disconnects.
	MaxRefused int
}

// Verdict is what to do with a message.
type Verdict uint8

// Verdicts of Take.
const (
	// Accept: apply the message.
	Accept Verdict = iota
	// Refuse: do not apply it; answer rate_limited with retry_after_ms.
	Refuse
	// Disconnect: do not apply it; the client kept sending past its
	// limit: tell it (rate_limited) and close the connection (1008).
	Disconnect
)

// Limiter is one connection's limit. A nil *Limiter (limit off) accepts
// everything. It is safe for concurrent use.
type Limiter struct {
	cfg Config

	mu      sync.Mutex
	bucket  *rate.Limiter
	refused int       // refusals in the current window
	since   time.Time // start of the current window
}

// New returns the limiter of one connection, or nil when c.PerSecond is 0.
func New(c Config) *Limiter {
	if c.PerSecond <= 0 {
		return nil
	}
	if c.Burst <= 0 {
		c.Burst = max(1, int(math.Ceil(c.PerSecond)))
	}
	return &Limiter{cfg: c, bucket: rate.NewLimiter(rate.Limit(c.PerSecond), c.Burst)}
}

// Take counts one message that arrived at now and says what to do with
// it. For Refuse and Disconnect it also returns how long until the bucket
// holds a message again.
func (l *Limiter) Take(now time.Time) (Verdict, time.Duration) {
	if l == nil {
		return Accept, 0
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.bucket.AllowN(now, 1) {
		return Accept, 0
	}
	wait := time.Duration((1 - l.bucket.TokensAt(now)) / l.cfg.PerSecond * float64(time.Second))
	if l.refused == 0 || now.Sub(l.since) >= Window {
		l.refused, l.since = 0, now
	}
	l.refused++
	if l.cfg.MaxRefused > 0 && l.refused > l.cfg.MaxRefused {
		return Disconnect, wait
	}
	return Refuse, wait
}

// MaxPause bounds Pause (a very low rate would otherwise hold a
// connection's reads for long).
const MaxPause = time.Second

// Pause is how long a door stops reading a connection after a refusal
// with wait: the retry_after_ms it answered (by then the bucket holds a
// message again), at most MaxPause.
func Pause(wait time.Duration) time.Duration {
	return min(time.Duration(RetryAfterMillis(wait))*time.Millisecond, MaxPause)
}

// RetryAfterMillis is a wait in whole milliseconds, rounded up, at least 1:
// the retry_after_ms of a refusal.
func RetryAfterMillis(d time.Duration) int64 {
	return max(1, (d.Nanoseconds()+int64(time.Millisecond)-1)/int64(time.Millisecond))
}

// RefusedMessage is the message of a refusal's error, for the client.
func (l *Limiter) RefusedMessage(wait time.Duration) string {
	return "too many messages: at most " + l.limitText() + "; this one was not applied: retry after " +
		strconv.FormatInt(RetryAfterMillis(wait), 10) + " ms"
}

// DisconnectMessage is the message of the last error before a disconnect.
func (l *Limiter) DisconnectMessage() string {
	return "more than " + strconv.Itoa(l.cfg.MaxRefused) + " messages refused within " + Window.String() +
		" (websocket.rate_limit_max_refused) for sending more than " + l.limitText() + ": disconnected"
}

func (l *Limiter) limitText() string {
	return strconv.FormatFloat(l.cfg.PerSecond, 'g', -1, 64) + " per second with bursts of " +
		strconv.Itoa(l.cfg.Burst) + " (websocket.rate_limit, websocket.rate_burst)"
}
