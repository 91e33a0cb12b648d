package testkit

import (
	"context"
	"errors"
	"net"
	"net/http"
	"net/url"
	"path/filepath"
	"strings"
	"testing"

	"github.com/rs/zerolog"
	"github.com/stretchr/testify/require"

	"github.com/framework0/ctxd/configs"
	"github.com/framework0/ctxd/realtime"
	"github.com/framework0/ctxd/server"
	"github.com/framework0/ctxd/store"
)

// Server is the whole ctxd server (package server: what `ctxd serve` runs)
// serving on a real loopback port, started by StartServer.
type Server struct {
	// URL is http://127.0.0.1:port; Addr the host:port alone.
	URL, Addr string
	// Config is the configuration it runs with (DataDir is a temp folder).
	Config configs.Config
	// Logs holds the server's log, JSON lines, across restarts.
	Logs *SyncBuffer

	t      testing.TB
	opts   []server.Option
	sndBuf int            // WithSendBuffer's, 0: the kernel's own
	srv    *server.Server // nil while stopped
	served chan error
}

// ServerOption changes the server StartServer starts.
type ServerOption func(*serverSettings)

type serverSettings struct {
	mutate []func(*configs.Config)
	opts   []server.Option
	sndBuf int
}

// WithConfig lets f change the configuration before the server starts
// (websocket.*, auth.*, history.*, ...).
func WithConfig(f func(*configs.Config)) ServerOption {
	return func(s *serverSettings) { s.mutate = append(s.mutate, f) }
}

// WithEtcd runs the server on store.backend etcd, on the etcd at
// endpoint under prefix (several servers on one prefix are instances of
// one deployment).
func WithEtcd(endpoint, prefix string) ServerOption {
	return WithConfig(func(c *configs.Config) {
		c.Store.Backend = configs.BackendEtcd
		c.Etcd.Endpoints = []string{endpoint}
		c.Etcd.Prefix = prefix
	})
}

// WithServerOptions passes options to server.New.
func WithServerOptions(opts ...server.Option) ServerOption {
	return func(s *serverSettings) { s.opts = append(s.opts, opts...) }
}

// WithSendBuffer locks the kernel send buffer of each connection the
// server accepts at size bytes (SmallSendBuffers), so that its writes to
// a client that does not read block after little: the kernel's own grows
// to take about 4 MB on Linux, more than a test's values would fill.
func WithSendBuffer(size int) ServerOption {
	return func(s *serverSettings) { s.sndBuf = size }
}

// StartServer starts the server on 127.0.0.1:0 with the default
// configuration (version "test", a new data folder, logs in Logs) changed
// by opts. When the test ends it is shut down, its database file checked
// for consistency, and, if the test failed, its log printed.
func StartServer(t testing.TB, opts ...ServerOption) *Server {
	t.Helper()
	var set serverSettings
	for _, o := range opts {
		o(&set)
	}
	cfg := configs.Defaults()
	cfg.Addr = "127.0.0.1:0"
	cfg.DataDir = t.TempDir()
	for _, f := range set.mutate {
		f(&cfg)
	}
	s := &Server{Config: cfg, Logs: &SyncBuffer{}, t: t, sndBuf: set.sndBuf,
		opts: append([]server.Option{server.Version("test")}, set.opts...)}
	s.Start()
	t.Cleanup(func() {
		s.Stop()
		CheckBoltFile(t, filepath.Join(cfg.DataDir, server.DBFile))
		LogOnFailure(t, "server log", s.Logs.String())
	})
	return s
}

// Start starts the server again after Stop, on the same address and data
// folder.
func (s *Server) Start() {
	t := s.t
	t.Helper()
	require.Nil(t, s.srv, "the server is running")
	addr := s.Config.Addr
	if s.Addr != "" {
		addr = s.Addr // a restart: the address clients know
	}
	log := zerolog.New(s.Logs).With().Timestamp().Logger()
	srv, err := server.New(s.Config, log, s.opts...)
	require.NoError(t, err)
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		_ = srv.Close()
		require.NoError(t, err)
	}
	if s.sndBuf > 0 {
		ln = SmallSendBuffers{Listener: ln, Size: s.sndBuf}
	}
	s.srv, s.served = srv, make(chan error, 1)
	s.Addr = ln.Addr().String()
	s.URL = "http://" + s.Addr
	go func() { s.served <- srv.Serve(ln) }()
}

// Stop shuts the server down gracefully, as SIGTERM does; the store is
// closed. It does nothing when the server is stopped.
func (s *Server) Stop() {
	s.t.Helper()
	s.stop(func(err error) { require.NoError(s.t, err) })
}

// StopFailed stops a server whose store failed (a full disk, say): its
// shutdown reports the store's failure, which must match want.
func (s *Server) StopFailed(want error) {
	s.t.Helper()
	s.stop(func(err error) { require.ErrorIs(s.t, err, want) })
}

func (s *Server) stop(check func(shutdown error)) {
	t := s.t
	t.Helper()
	if s.srv == nil {
		return
	}
	srv := s.srv
	s.srv = nil
	ctx, cancel := context.WithTimeout(context.Background(), Deadline)
	defer cancel()
	check(srv.Shutdown(ctx))
	if err := <-s.served; !errors.Is(err, http.ErrServerClosed) {
		t.Errorf("serve: %v", err)
	}
}

// Restart is Stop then Start: a real restart, the store reopened.
func (s *Server) Restart() {
	s.t.Helper()
	s.Stop()
	s.Start()
}

// Server is the running server.Server (nil while stopped).
func (s *Server) Server() *server.Server { return s.srv }

// Backend is the running server's store.
func (s *Server) Backend() store.Backend { return s.srv.Backend() }

// Hub is the running server's WebSocket hub.
func (s *Server) Hub() *realtime.Hub { return s.srv.Hub() }

// DataDir is the server's data folder.
func (s *Server) DataDir() string { return s.Config.DataDir }

// WatchURL is the ws:// URL of /v1/watch with the query q.
func (s *Server) WatchURL(q url.Values) string {
	u := "ws" + strings.TrimPrefix(s.URL, "http") + "/v1/watch"
	if len(q) > 0 {
		u += "?" + q.Encode()
	}
	return u
}

// SmallSendBuffers locks the kernel send buffer of each accepted
// connection at Size bytes (SO_SNDBUF), so that a client that stops
// reading blocks the server's writes soon (as etcd's TestWatchVictims
// shrinks its buffers). The client's receive buffer stays the kernel's:
// one locked after the handshake may lose what it advertised room for
// (realtime's dialSmall).
type SmallSendBuffers struct {
	net.Listener
	Size int
}

// Accept accepts a connection and shrinks its send buffer.
func (l SmallSendBuffers) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if tc, ok := c.(*net.TCPConn); ok {
		_ = tc.SetWriteBuffer(l.Size)
	}
	return c, err
}
