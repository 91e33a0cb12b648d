package httpapi

import (
	"hash/maphash"
	"math"
	"strconv"
	"sync"
	"time"

	"github.com/labstack/echo/v4"
	"golang.org/x/time/rate"

	"github.com/framework0/ctxd/auth"
	"github.com/framework0/ctxd/internal/clientaddr"
)

// The per-client rate limit (Config.RateLimit, http.rate_limit): each
// client has a token bucket of RateBurst requests refilled at RateLimit per
// second. A client is its access token when it sent a valid one, else its
// IP address (an IPv6 client: its /64, which one host usually holds
// whole). The address is the connection's, never X-Forwarded-For, which a
// client could forge. Past its bucket a request gets 429 rate_limited with
// Retry-After, before anything else is done for it (its body is not read),
// so a flooding client costs little and the others go on being served.

const (
	limiterShards = 64
	// maxClientsPerShard bounds the memory of the limiter (64 x 4096
	// clients); past it an idle client, or any one, is forgotten.
	maxClientsPerShard = 4096
	// sweepEvery is how often a shard forgets clients that have been idle
	// long enough to have a full bucket again.
	sweepEvery = 10 * time.Second
)

type limiter struct {
	limit rate.Limit
	burst int
	idle  time.Duration // a bucket left alone this long is full again
	seed  maphash.Seed
	shard [limiterShards]limiterShard
}

type limiterShard struct {
	mu      sync.Mutex
	clients map[string]*clientBucket
	swept   time.Time
}

type clientBucket struct {
	lim  *rate.Limiter
	last time.Time
}

// newLimiter returns a limiter of perSecond requests per second with
// bursts of burst (0: perSecond rounded up, at least 1), or nil when
// perSecond is 0.
func newLimiter(perSecond float64, burst int) *limiter {
	if perSecond <= 0 {
		return nil
	}
	if burst <= 0 {
		burst = max(1, int(math.Ceil(perSecond)))
	}
	l := &limiter{
		limit: rate.Limit(perSecond),
		burst: burst,
		idle:  max(time.Second, time.Duration(float64(burst)/perSecond*float64(time.Second))),
		seed:  maphash.MakeSeed(),
	}
	for i := range l.shard {
		l.shard[i].clients = make(map[string]*clientBucket)
	}
	return l
}

// allow takes one request from the client's bucket, or answers why not:
// 429 with Retry-After (whole seconds, at least 1).
func (l *limiter) allow(c echo.Context, t *auth.Token) error {
	key := clientKey(c, t)
	now := time.Now()
	sh := &l.shard[maphash.String(l.seed, key)%limiterShards]
	sh.mu.Lock()
	b := sh.clients[key]
	if b == nil {
		if now.Sub(sh.swept) > sweepEvery || len(sh.clients) >= maxClientsPerShard {
			sh.sweep(now, l.idle)
		}
		b = &clientBucket{lim: rate.NewLimiter(l.limit, l.burst)}
		sh.clients[key] = b
	}
	b.last = now
	ok := b.lim.AllowN(now, 1)
	var wait time.Duration
	if !ok {
		wait = time.Duration((1 - b.lim.TokensAt(now)) / float64(l.limit) * float64(time.Second))
	}
	sh.mu.Unlock()
	if ok {
		return nil
	}
	secs := max(1, int(math.Ceil(wait.Seconds())))
	c.Response().Header().Set(echo.HeaderRetryAfter, strconv.Itoa(secs))
	return &accessError{kind: errRateLimited, msg: "too many requests from this client (" + key +
		"): at most " + strconv.FormatFloat(float64(l.limit), 'g', -1, 64) + " per second with bursts of " +
		strconv.Itoa(l.burst) + " (http.rate_limit); retry after " + strconv.Itoa(secs) + "s"}
}

// sweep forgets the clients idle for longer than idle, and when the shard
// is still full, any one: it gets a full bucket, as after a pause.
func (sh *limiterShard) sweep(now time.Time, idle time.Duration) {
	sh.swept = now
	for k, b := range sh.clients {
		if now.Sub(b.last) > idle {
			delete(sh.clients, k)
		}
	}
	for k := range sh.clients {
		if len(sh.clients) < maxClientsPerShard {
			break
		}
		delete(sh.clients, k)
	}
}

// clientKey names the client of a request for the limiter.
func clientKey(c echo.Context, t *auth.Token) string {
	if t != nil {
		return "token " + t.Name
	}
	return "address " + clientaddr.Of(c.Request().RemoteAddr)
}
