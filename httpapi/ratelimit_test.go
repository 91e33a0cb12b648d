package httpapi_test

import (
	"net/http"
	"net/http/httptest"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/framework0/ctxd/configs"
)

// One client flooding the server gets 429 with Retry-After and a JSON
// error, while another client keeps getting every answer, quickly.
func TestRateLimitFloodingClient(t *testing.T) {
	e := newFullEnv(t, true, func(c *configs.Config) { c.HTTP.RateLimit, c.HTTP.RateBurst = 20, 10 })
	_, err := e.store.Put(bg, "default", "k", []byte("1"), nil, "test")
	require.NoError(t, err)

	var (
		stop              atomic.Bool
		floodOK, flood429 atomic.Int64
		wg                sync.WaitGroup
		first429          atomic.Pointer[response]
	)
	for range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for !stop.Load() {
				req, _ := http.NewRequest("GET", e.url+"/v1/ns/default/keys/k", nil)
				req.Header.Set("Authorization", "Bearer "+tokWrite)
				res, err := e.hc.Do(req)
				if err != nil {
					continue
				}
				body := make([]byte, 4096)
				n, _ := res.Body.Read(body)
				res.Body.Close()
				switch res.StatusCode {
				case http.StatusOK:
					floodOK.Add(1)
				case http.StatusTooManyRequests:
					if flood429.Add(1) == 1 {
						first429.Store(&response{status: res.StatusCode, header: res.Header, body: body[:n]})
					}
				}
			}
		}()
	}

	// The other client: 15 requests at 10 per second, under its own limit.
	floodStart := time.Now()
	var worst time.Duration
	for range 15 {
		start := time.Now()
		r := e.do("GET", "/v1/ns/default/keys/k", "", "Authorization", "Bearer "+tokRead)
		worst = max(worst, time.Since(start))
		require.Equal(t, http.StatusOK, r.status, "the quiet client was refused: %s", r.body)
		time.Sleep(100 * time.Millisecond) // time is the subject: a client pacing itself at 10 requests/s
	}
	stop.Store(true)
	wg.Wait()
	flooded := time.Since(floodStart)

	assert.Less(t, worst, 2*time.Second, "the quiet client waited too long")
	// The flooder gets its burst and 20/s for as long as it flooded (about
	// 1.5 s; longer on a loaded machine), plus one for rounding: no more.
	allowed := 10 + int64(20*flooded.Seconds()) + 1
	assert.LessOrEqual(t, floodOK.Load(), allowed, "the flooder got through in %v", flooded)
	assert.Greater(t, flood429.Load(), int64(0))
	r := first429.Load()
	require.NotNil(t, r)
	requireError(t, *r, http.StatusTooManyRequests, "rate_limited")
	secs, err := strconv.Atoi(r.header.Get("Retry-After"))
	require.NoError(t, err, "Retry-After %q", r.header.Get("Retry-After"))
	assert.GreaterOrEqual(t, secs, 1)
	t.Logf("flooder: %d answered, %d refused; quiet client's slowest answer %v", floodOK.Load(), flood429.Load(), worst)
}

// Without a token a client is its IP address (an IPv6 one: its /64);
// X-Forwarded-For is not trusted; probes are never limited.
func TestRateLimitByAddress(t *testing.T) {
	e := newFullEnv(t, false, func(c *configs.Config) { c.HTTP.RateLimit, c.HTTP.RateBurst = 1, 2 })
	h := e.srv.Handler()
	get := func(path, remote string, hdr ...string) *httptest.ResponseRecorder {
		req := httptest.NewRequest("GET", path, nil)
		req.RemoteAddr = remote
		for i := 0; i+1 < len(hdr); i += 2 {
			req.Header.Set(hdr[i], hdr[i+1])
		}
		w := httptest.NewRecorder()
		h.ServeHTTP(w, req)
		return w
	}
	for i := range 2 {
		assert.Equal(t, http.StatusOK, get("/v1/status", "10.0.0.1:1000").Code, "request %d", i)
	}
	assert.Equal(t, http.StatusTooManyRequests, get("/v1/status", "10.0.0.1:1001").Code)
	assert.Equal(t, http.StatusTooManyRequests, get("/v1/status", "10.0.0.1:1002", "X-Forwarded-For", "10.9.9.9").Code)
	assert.Equal(t, http.StatusOK, get("/v1/status", "10.0.0.2:1000").Code, "another address has its own bucket")
	for range 5 {
		assert.Equal(t, http.StatusOK, get("/healthz", "10.0.0.1:1000").Code)
		assert.Equal(t, http.StatusOK, get("/readyz", "10.0.0.1:1000").Code)
	}

	get("/v1/status", "[2001:db8::1]:1000")
	get("/v1/status", "[2001:db8::2]:1000")
	assert.Equal(t, http.StatusTooManyRequests, get("/v1/status", "[2001:db8::3]:1000").Code, "one /64 is one client")
	assert.Equal(t, http.StatusOK, get("/v1/status", "[2001:db8:0:1::1]:1000").Code)
}
