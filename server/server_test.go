package server_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/gorilla/websocket"
	"github.com/rs/zerolog"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/framework0/ctxd"
	"github.com/framework0/ctxd/configs"
	"github.com/framework0/ctxd/internal/testkit"
	"github.com/framework0/ctxd/internal/testkit/etcdkit"
	"github.com/framework0/ctxd/server"
)

func TestMain(m *testing.M) {
	testkit.SmallLogSegments()
	testkit.VerifyNoLeaks(m, etcdkit.Stop)
}

func testConfig(t *testing.T) configs.Config {
	cfg := configs.Defaults()
	cfg.Addr = "127.0.0.1:0"
	cfg.DataDir = t.TempDir()
	return cfg
}

// Shutdown stops in order: WebSocket clients get a close frame naming
// where to resume, Serve returns http.ErrServerClosed, the store is closed
// last; a second Shutdown returns the first one's result.
func TestShutdownOrder(t *testing.T) {
	cfg := testConfig(t)
	srv, err := server.New(cfg, zerolog.Nop(), server.Version("v-test"))
	require.NoError(t, err)
	ln, err := net.Listen("tcp", cfg.Addr)
	require.NoError(t, err)
	served := make(chan error, 1)
	go func() { served <- srv.Serve(ln) }()

	_, err = srv.Backend().Put(context.Background(), "default", "k", []byte(`1`), nil, "test")
	require.NoError(t, err)
	ws := testkit.DialWatch(t, "ws://"+ln.Addr().String()+"/v1/watch", nil)
	ws.Expect(ctxd.TypeSubscribed)
	res, err := http.Get("http://" + ln.Addr().String() + "/v1/status")
	require.NoError(t, err)
	res.Body.Close()
	require.Equal(t, http.StatusOK, res.StatusCode)

	require.NoError(t, srv.Shutdown(context.Background()))
	require.ErrorIs(t, <-served, http.ErrServerClosed)
	var ce *websocket.CloseError
	_, err = ws.NextErr()
	require.ErrorAs(t, err, &ce)
	assert.Equal(t, websocket.CloseGoingAway, ce.Code)
	_, err = srv.Backend().Get("default", "k")
	assert.ErrorIs(t, err, ctxd.ErrClosed, "the store is closed")
	require.NoError(t, srv.Shutdown(context.Background()), "a second Shutdown")
	require.NoError(t, srv.Close())
	testkit.CheckBoltFile(t, filepath.Join(cfg.DataDir, server.DBFile))
}

// Configuration mistakes are *configs.Error, found before the store is
// opened.
func TestNewRefusesBadConfiguration(t *testing.T) {
	for name, mutate := range map[string]func(*configs.Config){
		"missing certificate": func(c *configs.Config) {
			c.TLS = configs.TLS{CertFile: "/nonexistent/cert.pem", KeyFile: "/nonexistent/key.pem"}
		},
		"access control without tokens": func(c *configs.Config) { c.Auth.Mode = configs.AuthOn },
		"unreadable tokens file": func(c *configs.Config) {
			c.Auth.Mode, c.Auth.TokensFile = configs.AuthOn, "/nonexistent/tokens.yaml"
		},
	} {
		t.Run(name, func(t *testing.T) {
			cfg := testConfig(t)
			mutate(&cfg)
			_, err := server.New(cfg, zerolog.Nop())
			var ce *configs.Error
			require.True(t, errors.As(err, &ce), "%v", err)
			_, statErr := os.Stat(filepath.Join(cfg.DataDir, server.DBFile))
			assert.True(t, os.IsNotExist(statErr), "no store opened")
		})
	}
}

// WrapHandler puts a handler in front of everything, the watch included.
func TestWrapHandler(t *testing.T) {
	var (
		mu   sync.Mutex
		seen []string
	)
	s := testkit.StartServer(t, testkit.WithServerOptions(server.WrapHandler(func(next http.Handler) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			mu.Lock()
			seen = append(seen, r.URL.Path)
			mu.Unlock()
			next.ServeHTTP(w, r)
		})
	})))
	res, err := http.Get(s.URL + "/healthz")
	require.NoError(t, err)
	res.Body.Close()
	testkit.DialWatch(t, s.WatchURL(nil), nil).Expect(ctxd.TypeSubscribed)
	mu.Lock()
	assert.Equal(t, []string{"/healthz", "/v1/watch"}, seen)
	mu.Unlock()
	assert.Equal(t, "test", statusVersion(t, s.URL))
}

func statusVersion(t *testing.T, base string) string {
	t.Helper()
	c, err := http.Get(base + "/v1/status")
	require.NoError(t, err)
	defer c.Body.Close()
	var st struct {
		Version string `json:"version"`
	}
	require.NoError(t, jsonDecode(c, &st))
	return st.Version
}

func jsonDecode(res *http.Response, v any) error { return json.NewDecoder(res.Body).Decode(v) }

// While a graceful stop drains (shutdown_drain), the server still answers,
// but /readyz is 503 unavailable and every answer closes its connection
// and carries ctxd.HeaderDraining; before the stop, none of that; the
// stop itself waits for the drain.
func TestShutdownDrain(t *testing.T) {
	ts := testkit.StartServer(t, testkit.WithConfig(func(c *configs.Config) { c.ShutdownDrain = 3 * time.Second }))
	_, err := ts.Backend().Put(context.Background(), "default", "k", json.RawMessage(`1`), nil, "t")
	require.NoError(t, err)
	get := func(path string) *http.Response {
		t.Helper()
		resp, err := http.Get(ts.URL + path)
		require.NoError(t, err)
		_, _ = io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		return resp
	}
	resp := get("/readyz")
	require.Equal(t, http.StatusOK, resp.StatusCode)
	assert.Empty(t, resp.Header.Get(ctxd.HeaderDraining))
	assert.False(t, resp.Close)

	stopped := make(chan struct{})
	go func() { defer close(stopped); ts.Stop() }()
	testkit.Eventually(t, func() bool { return get("/readyz").StatusCode == http.StatusServiceUnavailable }, "/readyz 503 while draining")
	resp = get("/v1/ns/default/keys/k")
	assert.Equal(t, http.StatusOK, resp.StatusCode, "requests are still served")
	assert.Equal(t, "1", resp.Header.Get(ctxd.HeaderDraining))
	assert.True(t, resp.Close, "the answer closes its connection")
	select {
	case <-stopped:
		t.Fatal("stopped before shutdown_drain")
	default:
	}
	<-stopped
}

// A server whose answers' temp files could take more than the free space
// of their file system (http.max_spool_bytes, twice over) says so when it
// starts, naming the setting; one whose temp files fit says nothing of it.
func TestStartupWarnsOfASpoolLargerThanTheDisk(t *testing.T) {
	for _, tc := range []struct {
		spool int64
		warns bool
	}{{1 << 44, true}, {1 << 20, false}} {
		cfg := testConfig(t)
		cfg.Dumps.Dir = filepath.Join(cfg.DataDir, "not", "yet")
		cfg.HTTP.MaxSpoolBytes = tc.spool
		var logged bytes.Buffer
		srv, err := server.New(cfg, zerolog.New(&logged))
		require.NoError(t, err)
		require.NoError(t, srv.Close())
		if tc.warns {
			assert.Contains(t, logged.String(), `"level":"warn"`)
			assert.Contains(t, logged.String(), "http.max_spool_bytes lets answers' temp files take up to 32768.0 GiB")
			assert.Contains(t, logged.String(), `"folder":"`+cfg.DataDir+`"`, "the nearest folder that exists")
		} else {
			assert.NotContains(t, logged.String(), "max_spool_bytes")
		}
	}
}
