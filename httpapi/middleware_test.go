package httpapi_test

import (
	"context"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/labstack/echo/v4"
	"github.com/rs/zerolog"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/framework0/ctxd/httpapi"
	"github.com/framework0/ctxd/internal/testkit"
	"github.com/framework0/ctxd/store/bolt"
)

func TestRequestID(t *testing.T) {
	e := newEnv(t, envOptions{})

	r := e.do(http.MethodGet, "/healthz", "", "X-Request-Id", "client-id-42")
	assert.Equal(t, "client-id-42", r.header.Get("X-Request-Id"), "a client id is echoed back")

	seen := map[string]bool{}
	for range 3 {
		id := e.do(http.MethodGet, "/healthz", "").header.Get("X-Request-Id")
		require.NotEmpty(t, id)
		assert.False(t, seen[id], "generated ids are unique")
		seen[id] = true
	}

	// Ids that could break a log line or a header are replaced.
	for _, bad := range []string{"has space", strings.Repeat("x", 129), "tab\there"} {
		id := e.do(http.MethodGet, "/healthz", "", "X-Request-Id", bad).header.Get("X-Request-Id")
		assert.NotEqual(t, bad, id)
		assert.NotEmpty(t, id)
	}

	// Errors carry the id too.
	r = e.do(http.MethodGet, "/nope", "", "X-Request-Id", "err-id")
	assert.Equal(t, "err-id", r.header.Get("X-Request-Id"))
}

func TestAccessLog(t *testing.T) {
	e := newEnv(t, envOptions{})
	e.do(http.MethodPut, keyPath("default", "a/b"), `"hello"`, "X-Request-Id", "log-put")
	e.do(http.MethodGet, keyPath("default", "missing"), "", "X-Request-Id", "log-404")
	e.do(http.MethodGet, keyPath("default", "a/b")+"?rev=1", "", "X-Request-Id", "log-query")
	chunked := testkit.NewRequest(t, http.MethodPut, e.url+keyPath("default", "c"), "", "X-Request-Id", "log-chunked")
	chunked.Body, chunked.ContentLength = io.NopCloser(strings.NewReader(`"chunked body"`)), -1 // sent chunked
	e.send(chunked)

	// A line is written after its answer was sent (sendWhole): the last
	// one may still be on its way when the client has the answer.
	byID := map[string]map[string]any{}
	testkit.Eventually(t, func() bool {
		for _, l := range e.logs.Lines(t) {
			if l["message"] == "request" {
				id, _ := l["request_id"].(string)
				byID[id] = l
			}
		}
		return byID["log-put"] != nil && byID["log-404"] != nil && byID["log-query"] != nil && byID["log-chunked"] != nil
	}, "the requests' access log lines")
	put := byID["log-put"]
	require.NotNil(t, put, "one access log line per request")
	assert.Equal(t, "info", put["level"])
	assert.Equal(t, "PUT", put["method"])
	assert.Equal(t, "/v1/ns/default/keys/a%2Fb", put["path"])
	assert.EqualValues(t, 200, put["status"])
	assert.EqualValues(t, 7, put["bytes_in"])
	assert.Greater(t, put["bytes"], float64(50))
	assert.Contains(t, put, "latency_ms")
	assert.Contains(t, put, "remote")

	assert.EqualValues(t, 14, byID["log-chunked"]["bytes_in"], "a chunked body: the bytes read")
	assert.EqualValues(t, 0, byID["log-404"]["bytes_in"])

	q := byID["log-query"]
	require.NotNil(t, q)
	assert.Equal(t, "/v1/ns/default/keys/a%2Fb", q["path"], "the path as sent, without the query")

	nf := byID["log-404"]
	require.NotNil(t, nf)
	assert.EqualValues(t, 404, nf["status"], "the status logged is the one sent for errors")
	assert.Greater(t, nf["bytes"], float64(10))
	assert.Equal(t, "not_found", nf["error"], "the error's code")
	assert.NotContains(t, nf, "error_message", "a 4xx's message is the client's to read")
	assert.NotContains(t, put, "error")
}

// TestAppendMillis: the access log's latency_ms is written as zerolog's
// Float64 wrote float64(d.Microseconds())/1000 before (strconv's shortest
// 'f' format).
func TestAppendMillis(t *testing.T) {
	check := func(us int64) {
		d := time.Duration(us) * time.Microsecond
		want := strconv.FormatFloat(float64(us)/1000, 'f', -1, 64)
		require.Equal(t, want, string(httpapi.AppendMillis(nil, d)), "%d µs", us)
	}
	for us := int64(-2000); us <= 200_000; us++ {
		check(us)
	}
	rng := rand.New(rand.NewPCG(1, 2))
	for range 100_000 { // up to 31 years; past 2^42 ms float64 has no third decimal
		check(rng.Int64N(1e15))
	}
	require.Equal(t, "1.5", string(httpapi.AppendMillis(nil, 1500*time.Microsecond+999)), "below a microsecond is cut")
}

func TestPanicRecovery(t *testing.T) {
	e := newEnv(t, envOptions{})
	e.api.Skip("/test/") // this test's own routes
	e.srv.Echo().GET("/test/panic", func(echo.Context) error { panic("boom") })
	e.srv.Echo().GET("/test/error", func(echo.Context) error { return errors.New("secret internal detail") })
	e.srv.Echo().GET("/test/teapot", func(echo.Context) error {
		return echo.NewHTTPError(http.StatusTooManyRequests, "slow down")
	})
	e.srv.Echo().GET("/test/echo500", func(echo.Context) error {
		return echo.NewHTTPError(http.StatusBadGateway, "upstream")
	})

	r := e.do(http.MethodGet, "/test/panic", "", "X-Request-Id", "panic-id")
	ae := requireError(t, r, http.StatusInternalServerError, "internal")
	assert.NotContains(t, ae.Error.Message, "boom")

	var logged map[string]any
	for _, l := range e.logs.Lines(t) {
		if l["message"] == "panic in handler" {
			logged = l
		}
	}
	require.NotNil(t, logged, "the panic is logged")
	assert.Equal(t, "boom", logged["panic"])
	assert.Equal(t, "panic-id", logged["request_id"])
	assert.Contains(t, logged["stack"], "goroutine")

	// The server keeps serving.
	r = e.do(http.MethodGet, "/healthz", "")
	assert.Equal(t, http.StatusOK, r.status)

	// Unknown errors are internal; their text stays in the log.
	r = e.do(http.MethodGet, "/test/error", "")
	ae = requireError(t, r, http.StatusInternalServerError, "internal")
	assert.NotContains(t, ae.Error.Message, "secret")
	assert.Contains(t, fmt.Sprint(e.logs.Lines(t)), "secret internal detail")

	// Echo's own errors are rendered in our format.
	ae = requireError(t, e.do(http.MethodGet, "/test/teapot", ""), http.StatusTooManyRequests, "too_many_requests")
	assert.Equal(t, "slow down", ae.Error.Message)
	requireError(t, e.do(http.MethodGet, "/test/echo500", ""), http.StatusInternalServerError, "internal")
}

// TestConcurrentRequests exercises the handlers, the middleware and the
// buffer pool from many goroutines (run with -race).
func TestConcurrentRequests(t *testing.T) {
	e := newEnv(t, envOptions{})
	const workers, each = 8, 25
	var wg sync.WaitGroup
	errs := make(chan error, workers*each)
	for w := range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			client := e.ts.Client()
			// send sends method path and reports a failure, or a status
			// other than 200, on errs; false when nothing was answered.
			send := func(method, path, body string) bool {
				req, _ := http.NewRequest(method, e.ts.URL+path, strings.NewReader(body))
				res, err := client.Do(req)
				if err != nil {
					errs <- err
					return false
				}
				res.Body.Close()
				if res.StatusCode != http.StatusOK {
					errs <- fmt.Errorf("%s %s: status %d", method, path, res.StatusCode)
				}
				return true
			}
			for i := range each {
				path := keyPath("default", fmt.Sprintf("w%d/k%d", w, i))
				if send(http.MethodPut, path, fmt.Sprintf(`{"w":%d,"i":%d}`, w, i)) {
					send(http.MethodGet, path, "")
				}
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	assert.Equal(t, uint64(workers*each), e.revision())
}

// gatedWriter blocks every write until open is closed.
type gatedWriter struct{ open chan struct{} }

func (w gatedWriter) Write(p []byte) (int, error) {
	<-w.open
	return len(p), nil
}

// TestAnswerIsSentBeforeTheAccessLog: a JSON answer goes out with its
// Content-Length (not chunked) before the access log line is written, so
// that logging is off the request's latency. The logger here blocks until
// the test has its answer; with the log written first the request would
// never finish.
func TestAnswerIsSentBeforeTheAccessLog(t *testing.T) {
	st := testkit.OpenBolt(t, bolt.Options{})
	gate := gatedWriter{open: make(chan struct{})}
	srv := httpapi.New(st.Store, httpapi.Config{Version: "test"}, zerolog.New(gate))
	ts := httptest.NewServer(srv.Handler())
	t.Cleanup(ts.Close)
	t.Cleanup(func() { close(gate.open) }) // runs first: lets the handlers finish

	for _, tc := range []struct{ method, path, body string }{
		{http.MethodPut, "/v1/ns/app/keys/k", `{"a":1}`},
		{http.MethodGet, "/v1/ns/app/keys/k", ""},
		{http.MethodGet, "/v1/ns/app/keys/missing", ""}, // an error answer
	} {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		req, err := http.NewRequestWithContext(ctx, tc.method, ts.URL+tc.path, strings.NewReader(tc.body))
		require.NoError(t, err)
		// A connection per request: each handler stays blocked in the log.
		hc := &http.Client{Transport: &http.Transport{DisableKeepAlives: true}}
		res, err := hc.Do(req)
		require.NoError(t, err, "%s %s: no answer while the access log is blocked", tc.method, tc.path)
		body, err := io.ReadAll(res.Body)
		require.NoError(t, err)
		require.NoError(t, res.Body.Close())
		cancel()
		assert.Equal(t, int64(len(body)), res.ContentLength, "%s %s", tc.method, tc.path)
		assert.Empty(t, res.TransferEncoding, "%s %s: not chunked", tc.method, tc.path)
	}
}
