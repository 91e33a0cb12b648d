package server_test

import (
	"bufio"
	"context"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/rs/zerolog"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/framework0/ctxd/configs"
	"github.com/framework0/ctxd/internal/testkit"
	"github.com/framework0/ctxd/server"
)

// At http.max_connections, a new client waits until a connection closes
// (the log says why), and is then served: idle keep-alive connections,
// which anyone may open, cannot take the files the store needs.
func TestConnectionLimit(t *testing.T) {
	s := testkit.StartServer(t, testkit.WithConfig(func(c *configs.Config) { c.HTTP.MaxConnections = 3 }))
	addr := strings.TrimPrefix(s.URL, "http://")
	var idle []net.Conn
	for range 3 {
		idle = append(idle, idleConnection(t, addr))
	}

	answered := make(chan int, 1)
	go func() {
		hc := &http.Client{Timeout: testkit.Deadline}
		res, err := hc.Get(s.URL + "/healthz")
		if err != nil {
			answered <- 0
			return
		}
		res.Body.Close()
		answered <- res.StatusCode
	}()
	select {
	case code := <-answered:
		t.Fatalf("a fourth connection was served (%d) while 3 of http.max_connections 3 were open", code)
	case <-time.After(300 * time.Millisecond):
	}
	testkit.Eventually(t, func() bool { return strings.Contains(s.Logs.String(), "connection limit reached") }, "the log says why clients wait")
	idle[0].Close()
	select {
	case code := <-answered:
		assert.Equal(t, http.StatusOK, code, "served once a connection closed")
	case <-time.After(testkit.Deadline):
		t.Fatal("the waiting client was not served after a connection closed")
	}
}

// A shutdown at the cap ends within its deadline: Accept, waiting for a
// slot, returns when the listener closes (http.Server waits for Serve to
// return before it closes idle connections, which would otherwise hold
// their slots until their idle timeout, 2 minutes).
func TestShutdownAtTheConnectionLimit(t *testing.T) {
	cfg := testConfig(t)
	cfg.HTTP.MaxConnections = 1
	srv, err := server.New(cfg, zerolog.Nop())
	require.NoError(t, err)
	ln, err := net.Listen("tcp", cfg.Addr)
	require.NoError(t, err)
	served := make(chan error, 1)
	go func() { served <- srv.Serve(ln) }()
	idleConnection(t, ln.Addr().String())
	// Serve now waits in Accept for the one slot, which the idle
	// connection holds.
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	stopped := make(chan error, 1)
	go func() { stopped <- srv.Shutdown(ctx) }()
	select {
	case err := <-stopped:
		require.NoError(t, err, "Shutdown ended before its deadline, closing the idle connection")
	case <-time.After(testkit.Deadline):
		// Without the fix it returns after the idle connection's
		// timeout (2 minutes), whatever its context.
		t.Fatal("Shutdown at the connection limit did not return")
	}
	assert.ErrorIs(t, <-served, http.ErrServerClosed)
}

// idleConnection opens a connection to addr that one request was answered
// on, so that the server accepted it and keeps it alive, idle; closed when
// the test ends.
func idleConnection(t *testing.T, addr string) net.Conn {
	t.Helper()
	c, err := net.Dial("tcp", addr)
	require.NoError(t, err)
	t.Cleanup(func() { c.Close() })
	_, err = c.Write([]byte("GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n"))
	require.NoError(t, err)
	res, err := http.ReadResponse(bufio.NewReader(c), nil)
	require.NoError(t, err)
	res.Body.Close()
	require.Equal(t, http.StatusOK, res.StatusCode)
	return c
}
