package perf

import (
	"context"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/framework0/ctxd/internal/testkit"
)

func TestHTTPConn(t *testing.T) {
	big := strings.Repeat("x", 100<<10)
	mux := http.NewServeMux()
	mux.HandleFunc("PUT /small", func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		w.Header().Set("Content-Type", "application/json")
		_, _ = io.WriteString(w, `{"got":`+string(b)+`,"if_match":"`+r.Header.Get("If-Match")+`","version":12}`)
	})
	mux.HandleFunc("GET /chunked", func(w http.ResponseWriter, r *http.Request) {
		for range 4 {
			_, _ = io.WriteString(w, big[:len(big)/4])
			w.(http.Flusher).Flush()
		}
	})
	mux.HandleFunc("GET /close", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Connection", "close")
		_, _ = io.WriteString(w, "bye")
	})
	mux.HandleFunc("GET /missing", func(w http.ResponseWriter, r *http.Request) {
		http.Error(w, `{"error":{"code":"not_found"}}`, http.StatusNotFound)
	})
	// Another server's error page, as a --target that is not ctxd
	// answers (python3 -m http.server's 404, longer).
	page := "<!DOCTYPE HTML>\n<html lang=\"en\">\n    <head>\n        <title>Error response</title>\n    </head>\n    <body>\n" +
		strings.Repeat("        <p>Error code explanation: 404 - Nothing matches the given URI.</p>\n", 20) + "    </body>\n</html>\n"
	mux.HandleFunc("GET /page", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/html")
		w.WriteHeader(http.StatusNotFound)
		_, _ = io.WriteString(w, page)
	})
	var conns atomic.Int64
	srv := httptest.NewUnstartedServer(mux)
	srv.Config.ConnState = func(_ net.Conn, s http.ConnState) {
		if s == http.StateNew {
			conns.Add(1)
		}
	}
	srv.Start()
	defer srv.Close()

	ep, err := parseEndpoint(srv.URL + "/")
	require.NoError(t, err)
	c := newHTTPConn(ep)
	defer c.Close()

	status, err := c.do(http.MethodPut, "/small", []byte(`[1,2]`), header{"If-Match", "7"})
	require.NoError(t, err)
	require.Equal(t, http.StatusOK, status)
	require.Equal(t, `{"got":[1,2],"if_match":"7","version":12}`, c.body.String())
	v, ok := jsonUint(c.body.Bytes(), "version")
	require.True(t, ok)
	require.EqualValues(t, 12, v)
	_, ok = jsonUint(c.body.Bytes(), "nope")
	require.False(t, ok)

	require.NoError(t, c.expect(http.StatusOK, http.MethodGet, "/chunked", nil))
	require.Equal(t, big, c.body.String())

	err = c.expect(http.StatusOK, http.MethodGet, "/missing", nil)
	var se *statusError
	require.ErrorAs(t, err, &se)
	require.Equal(t, http.StatusNotFound, se.status)
	require.Contains(t, err.Error(), "not_found")
	require.NotContains(t, err.Error(), "not a ctxd answer")

	// Not ctxd's JSON error: said so, with a short excerpt on one line.
	err = c.expect(http.StatusOK, http.MethodGet, "/page", nil)
	require.ErrorAs(t, err, &se)
	require.Equal(t, http.StatusNotFound, se.status)
	require.True(t, strings.HasPrefix(err.Error(), `GET /page: status 404, not a ctxd answer: <!DOCTYPE HTML> <html lang="en"> <head> <title>Error response</title>`), err.Error())
	require.NotContains(t, err.Error(), "\n")
	require.Less(t, len(err.Error()), 200, err.Error())
	require.EqualValues(t, 1, conns.Load(), "one keep-alive connection so far")

	require.NoError(t, c.expect(http.StatusOK, http.MethodGet, "/close", nil))
	require.Equal(t, "bye", c.body.String())
	require.Nil(t, c.c, "Connection: close closes it")
	require.NoError(t, c.expect(http.StatusOK, http.MethodGet, "/chunked", nil))
	require.EqualValues(t, 2, conns.Load(), "a new connection after a close")

	// A server that is gone: an error, and the next request reconnects.
	srv.Close()
	_, err = c.do(http.MethodGet, "/chunked", nil)
	require.Error(t, err)
}

func TestParseEndpoint(t *testing.T) {
	ep, err := parseEndpoint("http://127.0.0.1:8080/ctxd/")
	require.NoError(t, err)
	require.Equal(t, "127.0.0.1:8080", ep.addr)
	require.Equal(t, "/ctxd", ep.prefix)
	require.Equal(t, "http://127.0.0.1:8080/ctxd", ep.base)
	ep, err = parseEndpoint("https://example.test")
	require.NoError(t, err)
	require.Equal(t, "example.test:443", ep.addr)
	require.True(t, ep.tls)
	for _, bad := range []string{"127.0.0.1:8080", "ftp://x", "http://", "http://x/?a=b"} {
		_, err := parseEndpoint(bad)
		require.Error(t, err, bad)
	}
}

// A server that refuses connections (stopped, restarting): its clients
// wait before each new attempt, from 1 ms doubling up to 100 ms, instead
// of redialing at once in a loop (tens of thousands of refusals a second
// on loopback, each an error, a core taken from the machine the server
// shares); each failed request is still counted as an error.
func TestRefusedConnectionsAreRetriedAfterAWait(t *testing.T) {
	require.Zero(t, redialWait(0))
	require.Equal(t, time.Millisecond, redialWait(1))
	require.Equal(t, 8*time.Millisecond, redialWait(4))
	require.Equal(t, redialMax, redialWait(8))
	require.Equal(t, redialMax, redialWait(1000))

	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	ep, err := parseEndpoint("http://" + ln.Addr().String())
	require.NoError(t, err)
	l := load{clients: 2, duration: 300 * time.Millisecond}
	// Each client connected (the kernel accepted); then the server goes
	// away: every request after fails, every connection is refused.
	l.setup = func(w *worker) error {
		if w.id == l.clients-1 {
			return ln.Close()
		}
		return nil
	}
	l.op = func(w *worker) (uint8, error) {
		return kindRead, w.conn.expect(http.StatusOK, http.MethodGet, "/", nil)
	}
	e := runFailingLoad(t, ep, l)
	require.GreaterOrEqual(t, e.Errors, int64(2*2), "a first failure and a refusal each")
	// 300 ms of waits of 1, 2, 4 ... 100 ms is ten attempts a client: a
	// busy machine makes fewer, not more; without the waits, thousands.
	require.Less(t, e.Errors, int64(100), "%d attempts in 300 ms", e.Errors)
	require.Condition(t, func() bool {
		for _, s := range e.ErrorSamples {
			if strings.Contains(s, "connection refused") {
				return true
			}
		}
		return false
	}, "%v", e.ErrorSamples)
}

// A server that cannot be reached at all (a closed port from the start):
// the run goes on, as when the server goes away during it, and every
// request that failed is an error. The run stopped at the first client's
// connection, and a comparison counted one error for the round.
func TestAnUnreachableServerCountsEveryFailedRequest(t *testing.T) {
	ep, err := parseEndpoint("http://" + testkit.FreeAddr(t))
	require.NoError(t, err)
	l := load{clients: 3, duration: 150 * time.Millisecond}
	l.op = func(w *worker) (uint8, error) {
		return kindRead, w.conn.expect(http.StatusOK, http.MethodGet, "/", nil)
	}
	e := runFailingLoad(t, ep, l)
	require.GreaterOrEqual(t, e.Errors, int64(2*l.clients), "each client tried more than once")
	require.Len(t, e.ErrorSamples, 1)
	require.Contains(t, e.ErrorSamples[0], "connect to "+ep.addr)
	require.Contains(t, e.ErrorSamples[0], "connection refused")
}

// runFailingLoad runs l against ep, where no request succeeds, and
// returns its errors, which must count every request sent.
func runFailingLoad(t *testing.T, ep endpoint, l load) RunErrors {
	t.Helper()
	res, err := runLoad(context.Background(), ep, l)
	require.NoError(t, err)
	require.Empty(t, res.samples)
	e := res.errs.result()
	var sent int64
	for _, w := range res.workers {
		sent += w.n
	}
	require.Equal(t, sent, e.Errors, "every failed request is an error")
	return e
}

// A server that answers no connection attempt (a machine gone, a
// firewall dropping them): the clients' connections made before the run
// do not wait dialTimeout (10 s) each, one after the other, for clients
// times 10 s deaf to Ctrl-C. Once one attempt failed the others connect
// at their first request, in the run, and a stop ends the attempt under
// way. Here the run is stopped during the first attempt: runLoad
// returned after its 8 clients' 80 s (checked).
func TestAServerThatAnswersNoConnectionDoesNotHoldTheRunsStart(t *testing.T) {
	ep, err := parseEndpoint("http://" + testkit.NoAnswerAddr(t))
	require.NoError(t, err)
	l := load{clients: 8, duration: 100 * time.Millisecond}
	l.op = func(w *worker) (uint8, error) {
		return kindRead, w.conn.expect(http.StatusOK, http.MethodGet, "/", nil)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
	defer cancel()
	done := make(chan error, 1)
	go func() {
		_, err := runLoad(ctx, ep, l)
		done <- err
	}()
	select {
	case err = <-done:
	case <-time.After(testkit.Deadline):
		t.Fatal("runLoad still connects its clients, one after the other")
	}
	require.ErrorIs(t, err, context.DeadlineExceeded, "stopped")
}

// A server that takes connections and requests but answers none (hung,
// or stopped with SIGSTOP): a stop (Ctrl-C) ends the requests under way,
// at the run's start (its status request) and in a request loop, instead
// of waiting out ioTimeout (60 s) for each; so too a fan-out's write.
func TestAStopEndsRequestsAHungServerHolds(t *testing.T) {
	hung, requests := testkit.SilentAfterRequest(t, true)
	ep, err := parseEndpoint(hung)
	require.NoError(t, err)
	l := load{clients: 2, duration: time.Minute}
	l.op = func(w *worker) (uint8, error) {
		return kindRead, w.conn.expect(http.StatusOK, http.MethodGet, "/", nil)
	}
	stopWhenHeld := func() (context.Context, context.CancelFunc) {
		ctx, cancel := context.WithCancel(context.Background())
		go func() {
			for ctx.Err() == nil && requests.Load() == 0 {
				time.Sleep(5 * time.Millisecond)
			}
			cancel()
		}()
		return ctx, cancel
	}
	runs := map[string]func(context.Context) error{
		"run's start": func(ctx context.Context) error {
			_, err := Run(ctx, tinyConfig(), Target{URL: hung})
			return err
		},
		"request loop": func(ctx context.Context) error {
			_, err := runLoad(ctx, ep, l)
			return err
		},
	}
	runs["fan-out write"] = func(ctx context.Context) error {
		feed := &wsFeed{ep: ep}
		defer feed.closeWriters()
		require.NoError(t, feed.Connect(1))
		return feed.Put(ctx, 0, "k", []byte(`1`))
	}
	for name, run := range runs {
		requests.Store(0)
		ctx, cancel := stopWhenHeld()
		done := make(chan error, 1)
		go func() { done <- run(ctx) }()
		select {
		case err = <-done:
		case <-time.After(10 * time.Second):
			t.Fatalf("%s: still waiting for the hung server's answer after the stop", name)
		}
		cancel()
		require.ErrorIs(t, err, context.Canceled, name)
	}
}
