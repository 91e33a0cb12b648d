package client

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"net/http/httptrace"
	"net/url"
	"sync/atomic"
	"testing"

	"github.com/gorilla/websocket"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.uber.org/goleak"

	"github.com/framework0/ctxd/internal/testkit"
)

// ctxdLike answers a GET of a key with a record, and /v1/watch with a
// WebSocket that says "subscribed" and waits for the client to go.
func ctxdLike() http.Handler {
	var up websocket.Upgrader
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != "/v1/watch" {
			_, _ = io.WriteString(w, `{"ns":"default","key":"k","value":1,"version":1}`)
			return
		}
		conn, err := up.Upgrade(w, r, nil)
		if err != nil {
			return
		}
		defer conn.Close()
		_ = conn.WriteJSON(map[string]any{"type": "subscribed", "rev": 1})
		for {
			if _, _, err := conn.ReadMessage(); err != nil {
				return
			}
		}
	})
}

// watchConnects runs a Watch until the server accepts it, and reports
// whether it did; the Watch's error otherwise.
func watchConnects(t *testing.T, c *Client) error {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), testkit.Deadline)
	defer cancel()
	return c.Watch(ctx, WatchOptions{OnConnect: func(uint64) { cancel() }}, func(WatchEvent) error { return nil })
}

// Watch uses the dial and the proxy of the client's *http.Transport, as
// the REST calls do: it used the dial only with a connection timeout, and
// always the environment's proxy.
func TestWatchUsesTheTransportsDialAndProxy(t *testing.T) {
	srv := httptest.NewServer(ctxdLike())
	t.Cleanup(srv.Close)
	var dials atomic.Int64
	var proxyAsked atomic.Value
	tr := &http.Transport{
		DialContext: func(ctx context.Context, network, addr string) (net.Conn, error) {
			dials.Add(1)
			return (&net.Dialer{}).DialContext(ctx, network, addr)
		},
		Proxy: func(r *http.Request) (*url.URL, error) {
			proxyAsked.Store(r.URL.String())
			return nil, nil // no proxy
		},
	}
	t.Cleanup(tr.CloseIdleConnections)
	c, err := New(srv.URL, WithHTTPClient(&http.Client{Transport: tr}))
	require.NoError(t, err)
	require.NoError(t, watchConnects(t, c))
	assert.Equal(t, int64(1), dials.Load(), "Watch dialed through the transport")
	assert.Contains(t, proxyAsked.Load(), "/v1/watch", "Watch asked the transport's Proxy")
}

// WithTLSConfig's CA is trusted by the REST calls and by Watch; through a
// RoundTripper that is not an *http.Transport (a wrapper), whose TLS
// settings Watch cannot see, it is what makes Watch trust the server.
func TestWithTLSConfig(t *testing.T) {
	srv := httptest.NewTLSServer(ctxdLike())
	t.Cleanup(srv.Close)
	roots := x509.NewCertPool()
	roots.AddCert(srv.Certificate())
	cfg := &tls.Config{RootCAs: roots}
	ctx := context.Background()

	c, err := New(srv.URL)
	require.NoError(t, err)
	_, err = c.Get(ctx, "", "k", GetOptions{})
	require.Error(t, err, "the test's CA is not the system's")

	c, err = New(srv.URL, WithTLSConfig(cfg))
	require.NoError(t, err)
	t.Cleanup(c.CloseIdleConnections)
	_, err = c.Get(ctx, "", "k", GetOptions{})
	require.NoError(t, err)
	require.NoError(t, watchConnects(t, c))

	inner := &http.Transport{TLSClientConfig: cfg}
	t.Cleanup(inner.CloseIdleConnections)
	wrapped := &http.Client{Transport: roundTripFunc(inner.RoundTrip)}
	c, err = New(srv.URL, WithHTTPClient(wrapped))
	require.NoError(t, err)
	_, err = c.Get(ctx, "", "k", GetOptions{})
	require.NoError(t, err, "the wrapper's own transport trusts the CA")
	require.Error(t, watchConnects(t, c), "Watch cannot see inside the wrapper")
	c, err = New(srv.URL, WithHTTPClient(wrapped), WithTLSConfig(cfg))
	require.NoError(t, err)
	require.NoError(t, watchConnects(t, c))
}

// CloseIdleConnections releases the connections of the transport the
// client made itself (here for WithConnectTimeout), and their goroutines,
// which stayed 90s; twice is fine. It leaves the caller's transport and
// http.DefaultTransport alone.
func TestCloseIdleConnections(t *testing.T) {
	srv := httptest.NewServer(ctxdLike())
	t.Cleanup(srv.Close)
	ctx := context.Background()
	// reused reports whether a Get found an idle connection to use.
	reused := func(c *Client) bool {
		var got atomic.Bool
		trace := &httptrace.ClientTrace{GotConn: func(info httptrace.GotConnInfo) { got.Store(info.Reused) }}
		_, err := c.Get(httptrace.WithClientTrace(ctx, trace), "", "k", GetOptions{})
		require.NoError(t, err)
		return got.Load()
	}

	before := goleak.IgnoreCurrent()
	own, err := New(srv.URL, WithConnectTimeout(testkit.Deadline))
	require.NoError(t, err)
	reused(own)
	assert.True(t, reused(own), "kept alive")
	own.CloseIdleConnections()
	own.CloseIdleConnections()
	goleak.VerifyNone(t, before)
	assert.False(t, reused(own), "the client's own transport's idle connection was closed")
	own.CloseIdleConnections()

	tr := &http.Transport{}
	t.Cleanup(tr.CloseIdleConnections)
	for name, c := range map[string]*Client{
		"the caller's transport": must(New(srv.URL, WithHTTPClient(&http.Client{Transport: tr}))),
		"http.DefaultTransport":  must(New(srv.URL)),
	} {
		reused(c)
		c.CloseIdleConnections()
		assert.True(t, reused(c), "%s keeps its idle connections", name)
	}
}

func must(c *Client, err error) *Client {
	if err != nil {
		panic(err)
	}
	return c
}
