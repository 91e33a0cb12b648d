package realtime

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/gorilla/websocket"
	"github.com/rs/zerolog"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/framework0/ctxd"
	"github.com/framework0/ctxd/httpapi"
	"github.com/framework0/ctxd/store"
	"github.com/framework0/ctxd/store/bolt"
)

// deadline bounds every wait in these tests: long enough never to fire on
// a slow machine, so that a bug fails the test instead of hanging it. No
// test asserts on time.
const deadline = 60 * time.Second

// testServer is the real API (httpapi) with the hub mounted at /v1/watch,
// over a real store in a folder that survives restarts.
type testServer struct {
	t    testing.TB
	dir  string
	opts Options
	st   *bolt.Store
	hub  *Hub
	srv  *httptest.Server
	once *sync.Once
	// sndBuf, when > 0, is the kernel send buffer of accepted connections.
	sndBuf int
	// wrap, when set, wraps the store the hub sees.
	wrap func(*bolt.Store) store.Backend
}

func startServer(t testing.TB, opts Options) *testServer {
	t.Helper()
	return startServerBuf(t, opts, 0)
}

func startServerBuf(t testing.TB, opts Options, sndBuf int) *testServer {
	t.Helper()
	return startTestServer(&testServer{t: t, dir: t.TempDir(), opts: opts, sndBuf: sndBuf})
}

func startTestServer(ts *testServer) *testServer {
	ts.t.Helper()
	ts.start()
	ts.t.Cleanup(ts.stop)
	return ts
}

func (ts *testServer) start() {
	t := ts.t
	t.Helper()
	st, err := bolt.Open(filepath.Join(ts.dir, "ctxd.db"), bolt.Options{})
	require.NoError(t, err)
	var hs store.Backend = st
	if ts.wrap != nil {
		hs = ts.wrap(st)
	}
	hub := New(hs, ts.opts, zerolog.Nop())
	api := httpapi.New(st, httpapi.Config{Version: "test", Clients: hub.Clients}, zerolog.Nop())
	api.Echo().GET("/v1/watch", hub.Serve)
	srv := httptest.NewUnstartedServer(api.Handler())
	if ts.sndBuf > 0 {
		srv.Listener = smallBufListener{Listener: srv.Listener, size: ts.sndBuf}
	}
	srv.Start()
	ts.st, ts.hub, ts.srv, ts.once = st, hub, srv, &sync.Once{}
}

// smallBufListener shrinks the kernel send buffer of each accepted
// connection, so that a client that stops reading blocks the server's
// writes soon (as etcd's TestWatchVictims shrinks its buffers).
type smallBufListener struct {
	net.Listener
	size int
}

func (l smallBufListener) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if tc, ok := c.(*net.TCPConn); ok {
		_ = tc.SetWriteBuffer(l.size)
	}
	return c, err
}

// dialSmall dials with a small kernel receive buffer.
func dialSmall(t testing.TB, u string, size int) *wsClient {
	t.Helper()
	d := websocket.Dialer{
		HandshakeTimeout: deadline,
		NetDialContext: func(ctx context.Context, network, addr string) (net.Conn, error) {
			var nd net.Dialer
			c, err := nd.DialContext(ctx, network, addr)
			if tc, ok := c.(*net.TCPConn); ok {
				_ = tc.SetReadBuffer(size)
			}
			return c, err
		},
	}
	c, resp, err := d.Dial(u, nil)
	if resp != nil && resp.Body != nil {
		resp.Body.Close()
	}
	require.NoError(t, err)
	t.Cleanup(func() { c.Close() })
	return &wsClient{t: t, c: c}
}

// stop closes the hub, the HTTP server and the store, checking the store.
func (ts *testServer) stop() {
	ts.once.Do(func() {
		assert.Zero(ts.t, ts.hub.Stats().BufferFull, "melody dropped frames")
		assert.NoError(ts.t, ts.hub.Close())
		ts.srv.CloseClientConnections()
		ts.srv.Close()
		assert.NoError(ts.t, ts.st.Check())
		assert.NoError(ts.t, ts.st.Close())
	})
}

// restart is a real restart: everything is closed, the store reopened.
func (ts *testServer) restart() {
	ts.stop()
	ts.start()
}

func (ts *testServer) wsURL(q url.Values) string {
	u := "ws" + strings.TrimPrefix(ts.srv.URL, "http") + "/v1/watch"
	if len(q) > 0 {
		u += "?" + q.Encode()
	}
	return u
}

// put writes through the REST API and returns the change's revision.
func (ts *testServer) put(ns, key, value string) uint64 {
	ts.t.Helper()
	rec, err := ts.putErr(ns, key, value)
	require.NoError(ts.t, err)
	return rec.ModRev
}

// putMany writes n changes to the namespace default, kv(i) giving each
// key and value, in transactions of 50 (each change its own revision).
func (ts *testServer) putMany(n int, kv func(i int) (key, value string)) {
	ts.t.Helper()
	for lo := 0; lo < n; lo += 50 {
		var ops []ctxd.Write
		for i := lo; i < min(n, lo+50); i++ {
			k, v := kv(i)
			ops = append(ops, ctxd.Write{Namespace: "default", Key: k, Op: ctxd.OpPut, Value: []byte(v), Who: "test"})
		}
		_, err := ts.st.Txn(context.Background(), ops)
		require.NoError(ts.t, err)
	}
}

func (ts *testServer) putErr(ns, key, value string) (ctxd.Record, error) {
	req, err := http.NewRequest(http.MethodPut, ts.srv.URL+"/v1/ns/"+ns+"/keys/"+url.PathEscape(key), strings.NewReader(value))
	if err != nil {
		return ctxd.Record{}, err
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return ctxd.Record{}, err
	}
	defer resp.Body.Close()
	var rec ctxd.Record
	if resp.StatusCode != http.StatusOK {
		var b bytes.Buffer
		_, _ = b.ReadFrom(resp.Body)
		return rec, fmt.Errorf("put %s/%s: %d %s", ns, key, resp.StatusCode, b.String())
	}
	return rec, json.NewDecoder(resp.Body).Decode(&rec)
}

// msg is any frame from the server, decoded loosely.
type msg struct {
	Type      string          `json:"type"`
	ID        json.RawMessage `json:"id"`
	Rev       uint64          `json:"rev"`
	NS        string          `json:"ns"`
	Key       string          `json:"key"`
	Op        string          `json:"op"`
	Value     json.RawMessage `json:"value"`
	Version   uint64          `json:"version"`
	Who       string          `json:"who"`
	Timestamp time.Time       `json:"timestamp"`

	Code              string  `json:"code"`
	Message           string  `json:"message"`
	FromRev           *uint64 `json:"from_rev"`
	CompactedRevision uint64  `json:"compacted_revision"`
	CurrentVersion    *uint64 `json:"current_version"`

	ClientID         string              `json:"client_id"`
	ClientType       string              `json:"client_type"`
	Name             string              `json:"name"`
	ConnectedClients int                 `json:"connected_clients"`
	ClientsByType    map[string]int      `json:"clients_by_type"`
	Subscriptions    []ctxd.Subscription `json:"subscriptions"`
	Batch            bool                `json:"batch"`
	Keys             []ctxd.Record       `json:"keys"`
	Complete         bool                `json:"complete"`
	Filename         string              `json:"filename"`
	Format           string              `json:"format"`
	KeyCount         int                 `json:"key_count"`

	Messages []json.RawMessage `json:"messages"`
}

// wsClient is a real WebSocket client (gorilla).
type wsClient struct {
	t       testing.TB
	c       *websocket.Conn
	pending []msg // messages of a batch frame not returned yet
	frames  int
}

func dial(t testing.TB, u string, hdr http.Header) *wsClient {
	t.Helper()
	c, resp, err := dialErr(u, hdr)
	if resp != nil && resp.Body != nil {
		resp.Body.Close()
	}
	require.NoError(t, err)
	wc := &wsClient{t: t, c: c}
	t.Cleanup(func() { c.Close() })
	return wc
}

func dialErr(u string, hdr http.Header) (*websocket.Conn, *http.Response, error) {
	d := websocket.Dialer{HandshakeTimeout: deadline}
	ctx, cancel := context.WithTimeout(context.Background(), deadline)
	defer cancel()
	return d.DialContext(ctx, u, hdr)
}

// next returns the next message, expanding batch frames.
func (w *wsClient) next() msg {
	w.t.Helper()
	m, err := w.nextErr()
	require.NoError(w.t, err)
	return m
}

func (w *wsClient) nextErr() (msg, error) {
	if len(w.pending) > 0 {
		m := w.pending[0]
		w.pending = w.pending[1:]
		return m, nil
	}
	_ = w.c.SetReadDeadline(time.Now().Add(deadline))
	typ, data, err := w.c.ReadMessage()
	if err != nil {
		return msg{}, err
	}
	w.frames++
	if typ != websocket.TextMessage {
		return msg{}, fmt.Errorf("frame type %d, want text", typ)
	}
	var m msg
	if err := json.Unmarshal(data, &m); err != nil {
		return msg{}, fmt.Errorf("frame %q: %w", data, err)
	}
	if m.Type != ctxd.TypeBatch {
		return m, nil
	}
	if len(m.Messages) < 2 {
		return msg{}, fmt.Errorf("batch frame with %d messages: %s", len(m.Messages), data)
	}
	for _, raw := range m.Messages {
		var sub msg
		if err := json.Unmarshal(raw, &sub); err != nil {
			return msg{}, err
		}
		if sub.Type != ctxd.TypeContextUpdated {
			return msg{}, fmt.Errorf("batch holds a %q message", sub.Type)
		}
		w.pending = append(w.pending, sub)
	}
	return w.nextErr()
}

// expect returns the next message, which must be of type typ.
func (w *wsClient) expect(typ string) msg {
	w.t.Helper()
	m := w.next()
	require.Equal(w.t, typ, m.Type, "message: %+v", m)
	return m
}

func (w *wsClient) sendJSON(v any) {
	w.t.Helper()
	b, err := json.Marshal(v)
	require.NoError(w.t, err)
	w.sendRaw(b)
}

func (w *wsClient) sendRaw(b []byte) {
	w.t.Helper()
	require.NoError(w.t, w.c.SetWriteDeadline(time.Now().Add(deadline)))
	require.NoError(w.t, w.c.WriteMessage(websocket.TextMessage, b))
}

// changes reads context_updated messages until one with revision >= upTo
// has arrived (other types are a test failure), and returns them.
func (w *wsClient) changes(upTo uint64) []msg {
	w.t.Helper()
	var out []msg
	for {
		m := w.next()
		require.Equal(w.t, ctxd.TypeContextUpdated, m.Type, "message: %+v", m)
		out = append(out, m)
		if m.Rev >= upTo {
			return out
		}
	}
}

// lite is the part of a frame the high-volume tests look at.
type lite struct {
	Type     string            `json:"type"`
	Rev      uint64            `json:"rev"`
	Code     string            `json:"code"`
	FromRev  *uint64           `json:"from_rev"`
	Messages []json.RawMessage `json:"messages"`
}

// changeRevs reads context_updated messages until revision upTo, decoding
// only their type and revision, and returns the revisions. Any other
// message is returned as stop, with the revisions read before it.
func (w *wsClient) changeRevs(upTo uint64) (got []uint64, stop *lite, err error) {
	var queue []lite
	for {
		if len(queue) == 0 {
			_ = w.c.SetReadDeadline(time.Now().Add(deadline))
			_, data, err := w.c.ReadMessage()
			if err != nil {
				return got, nil, err
			}
			var l lite
			if err := json.Unmarshal(data, &l); err != nil {
				return got, nil, err
			}
			if l.Type != ctxd.TypeBatch {
				queue = append(queue, l)
			}
			for _, raw := range l.Messages {
				var m lite
				if err := json.Unmarshal(raw, &m); err != nil {
					return got, nil, err
				}
				queue = append(queue, m)
			}
		}
		l := queue[0]
		queue = queue[1:]
		if l.Type != ctxd.TypeContextUpdated {
			return got, &l, nil
		}
		got = append(got, l.Rev)
		if l.Rev >= upTo {
			if len(queue) > 0 {
				return got, nil, fmt.Errorf("%d more changes after revision %d", len(queue), upTo)
			}
			return got, nil, nil
		}
	}
}

// revs returns the revisions of msgs.
func revs(msgs []msg) []uint64 {
	out := make([]uint64, len(msgs))
	for i, m := range msgs {
		out[i] = m.Rev
	}
	return out
}

// checkSeq checks that got is exactly lo..hi, reporting the first
// difference (not the whole slice) with t.Errorf, so that it can be used
// from any goroutine.
func checkSeq(t testing.TB, lo, hi uint64, got []uint64, what string) bool {
	t.Helper()
	for i, r := range got {
		if want := lo + uint64(i); r != want || r > hi {
			t.Errorf("%s: element %d is revision %d, want %d (range %d..%d, got %d)", what, i, r, want, lo, hi, len(got))
			return false
		}
	}
	if uint64(len(got)) != hi-lo+1 {
		t.Errorf("%s: got %d revisions, want %d..%d", what, len(got), lo, hi)
		return false
	}
	return true
}

// seq returns lo..hi.
func seq(lo, hi uint64) []uint64 {
	var out []uint64
	for r := lo; r <= hi; r++ {
		out = append(out, r)
	}
	return out
}

// isClose reports whether err is the connection being closed.
func isClose(err error) bool {
	var ce *websocket.CloseError
	return errors.As(err, &ce)
}
