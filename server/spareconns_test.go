package server_test

import (
	"context"
	"errors"
	"io"
	"net"
	"net/http"
	"path/filepath"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/rs/zerolog"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/framework0/ctxd/internal/testkit"
	"github.com/framework0/ctxd/server"
)

// spareShutdownTimeout is the tests' graceful stop deadline: below the
// 5 s for which net/http's Shutdown alone takes a connection that never
// sent a request as busy.
const spareShutdownTimeout = 2 * time.Second

// A graceful stop closes at once a connection that never sent a byte (a
// browser's spare one), and ends before its deadline: without that, it
// reached it and logged that requests were still running.
func TestShutdownClosesConnectionsThatSentNothing(t *testing.T) {
	srv, ln, logs := startWatchedServer(t)
	spare := dialWatched(t, ln)
	testkit.Eventually(t, func() bool { return ln.accepts.Load() >= 2 }, "the server accepted the connection")

	ctx, cancel := context.WithTimeout(context.Background(), spareShutdownTimeout)
	defer cancel()
	require.NoError(t, srv.Shutdown(ctx))
	assert.NotContains(t, logs.String(), "shutdown_timeout", "Shutdown ended before its deadline")
	requireClosedByServer(t, spare)
}

// A connection that sent part of its first request is not a spare one:
// a graceful stop leaves it to net/http, which reads the rest of the
// request (and then, as the server stops, closes the connection without
// answering it).
func TestShutdownKeepsAConnectionWithARequestBegun(t *testing.T) {
	srv, ln, logs := startWatchedServer(t)
	spare := dialWatched(t, ln)
	begun := dialWatched(t, ln)
	half, rest := "GET /healthz HTT", "P/1.1\r\nHost: 127.0.0.1\r\n\r\n"
	_, err := begun.Write([]byte(half))
	require.NoError(t, err)
	testkit.Eventually(t, func() bool { return ln.accepts.Load() >= 3 && ln.rereads.Load() >= 1 },
		"the server accepted both connections and read what the second sent")

	stopped := make(chan error, 1)
	go func() {
		ctx, cancel := context.WithTimeout(context.Background(), spareShutdownTimeout)
		defer cancel()
		stopped <- srv.Shutdown(ctx)
	}()
	requireClosedByServer(t, spare) // the stop has closed the spare connections
	_, err = begun.Write([]byte(rest))
	require.NoError(t, err)
	requireClosedByServer(t, begun)
	assert.Equal(t, int64(len(half)+len(rest)), ln.read.Load(), "the server read the whole request before closing the connection")
	require.NoError(t, <-stopped)
	assert.NotContains(t, logs.String(), "shutdown_timeout", "Shutdown ended before its deadline")
}

// startWatchedServer starts a server on a watchedListener; it is closed,
// and its database file checked, when the test ends.
func startWatchedServer(t *testing.T) (*server.Server, *watchedListener, *testkit.SyncBuffer) {
	t.Helper()
	cfg := testConfig(t)
	logs := &testkit.SyncBuffer{}
	srv, err := server.New(cfg, zerolog.New(logs))
	require.NoError(t, err)
	tcp, err := net.Listen("tcp", cfg.Addr)
	if err != nil {
		_ = srv.Close()
		require.NoError(t, err)
	}
	ln := &watchedListener{Listener: tcp}
	served := make(chan error, 1)
	go func() { served <- srv.Serve(ln) }()
	t.Cleanup(func() {
		assert.NoError(t, srv.Close())
		assert.ErrorIs(t, <-served, http.ErrServerClosed)
		testkit.CheckBoltFile(t, filepath.Join(cfg.DataDir, server.DBFile))
		testkit.LogOnFailure(t, "server log", logs.String())
	})
	return srv, ln, logs
}

// watchedListener is a TCP listener that lets a test wait, without
// sleeping, for what the server has done with its connections. accepts
// counts the server's calls of Accept: once it is n+1, the server has
// taken n connections (it calls Accept again only then). rereads counts
// the reads the server began on a connection that had given it bytes: the
// server has taken in those bytes and waits for more. read counts the
// bytes the server read, on all connections.
type watchedListener struct {
	net.Listener
	accepts, rereads atomic.Int32
	read             atomic.Int64
}

func (l *watchedListener) Accept() (net.Conn, error) {
	l.accepts.Add(1)
	c, err := l.Listener.Accept()
	if err != nil {
		return nil, err
	}
	return &watchedConn{Conn: c, l: l}, nil
}

type watchedConn struct {
	net.Conn
	l        *watchedListener
	gotBytes atomic.Bool
}

func (c *watchedConn) Read(p []byte) (int, error) {
	if c.gotBytes.Load() {
		c.l.rereads.Add(1)
	}
	n, err := c.Conn.Read(p)
	if n > 0 {
		c.l.read.Add(int64(n))
		c.gotBytes.Store(true)
	}
	return n, err
}

// dialWatched opens a connection to ln, closed when the test ends.
func dialWatched(t *testing.T, ln *watchedListener) net.Conn {
	t.Helper()
	c, err := net.Dial("tcp", ln.Addr().String())
	require.NoError(t, err)
	t.Cleanup(func() { c.Close() })
	return c
}

// requireClosedByServer waits until the server closed c: a read returns
// end of file, or a reset.
func requireClosedByServer(t *testing.T, c net.Conn) {
	t.Helper()
	require.NoError(t, c.SetReadDeadline(time.Now().Add(testkit.Deadline)))
	n, err := c.Read(make([]byte, 1))
	assert.Zero(t, n)
	require.True(t, errors.Is(err, io.EOF) || errors.Is(err, syscall.ECONNRESET), "closed by the server: %v", err)
}
