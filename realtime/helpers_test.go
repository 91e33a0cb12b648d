package realtime_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/http/httptest"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/gorilla/websocket"
	"github.com/labstack/echo/v4"
	"github.com/rs/zerolog"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/framework0/ctxd"
	"github.com/framework0/ctxd/internal/testkit"
	"github.com/framework0/ctxd/realtime"
	"github.com/framework0/ctxd/store"
	"github.com/framework0/ctxd/store/bolt"
)

// deadline bounds every wait in these tests: long enough never to fire on
// a slow machine, so that a bug fails the test instead of hanging it. No
// test asserts on time.
const deadline = testkit.Deadline

// wsClient is a WebSocket client of /v1/watch; msg any message from it.
type (
	wsClient = testkit.WS
	msg      = testkit.Frame
)

// testServer is the hub alone, mounted at /v1/watch on a bare Echo router,
// over a real store in a folder that survives restarts: the unit under
// test, with any realtime.Options. Tests of the hub inside the whole
// server (the API's error format, access control, dumps, /v1/status) use
// testkit.StartServer instead.
type testServer struct {
	t    testing.TB
	opts realtime.Options
	st   *testkit.Bolt
	hub  *realtime.Hub
	srv  *httptest.Server
	once *sync.Once
	// sndBuf, when > 0, is the kernel send buffer of accepted connections.
	sndBuf int
	// wrap, when set, wraps the store the hub sees.
	wrap func(*bolt.Store) store.Backend
	// storeOpts are the store's options (a commit hook, say).
	storeOpts bolt.Options
}

func startServer(t testing.TB, opts realtime.Options) *testServer {
	t.Helper()
	return startServerBuf(t, opts, 0)
}

func startServerBuf(t testing.TB, opts realtime.Options, sndBuf int) *testServer {
	t.Helper()
	return startTestServer(&testServer{t: t, opts: opts, sndBuf: sndBuf})
}

func startTestServer(ts *testServer) *testServer {
	ts.t.Helper()
	ts.st = testkit.OpenBolt(ts.t, ts.storeOpts)
	ts.start()
	ts.t.Cleanup(ts.stop)
	return ts
}

func (ts *testServer) start() {
	ts.t.Helper()
	if ts.st.Store == nil {
		ts.st.Open()
	}
	var hs store.Backend = ts.st.Store
	if ts.wrap != nil {
		hs = ts.wrap(ts.st.Store)
	}
	hub := realtime.New(hs, ts.opts, zerolog.Nop())
	e := echo.New()
	e.GET("/v1/watch", hub.Serve)
	srv := httptest.NewUnstartedServer(e)
	if ts.sndBuf > 0 {
		srv.Listener = testkit.SmallSendBuffers{Listener: srv.Listener, Size: ts.sndBuf}
	}
	srv.Start()
	ts.hub, ts.srv, ts.once = hub, srv, &sync.Once{}
}

// dialSmall dials with a small kernel receive buffer, locked
// (SO_RCVBUF), set before the connection's handshake so that the window
// it advertises fits it. Only for a test that needs its client to hold
// little, not to make the server's writes block soon (startServerBuf's
// send buffer does that). Set after the handshake, as it was, the buffer
// held less than the default window had let in: Linux cannot grow a
// locked buffer to hold it, and drops those segments, then the server's
// as beyond the now zero window, window updates and acknowledgements
// included, and the lost data came back only at the server's backed-off
// retransmission timeout. The client's sends could stall
// (TestClientThatDoesNotReadStallsItselfByCount, 2 runs of 30 under
// -race, which keeps its kernel's buffer since), and reading the 24
// changes of 4 KiB of TestEtcdSubscribeInsideRevision took it 1 to 1.5 s.
func dialSmall(t testing.TB, u string, size int) *wsClient {
	t.Helper()
	return testkit.DialWatchWith(t, &websocket.Dialer{
		NetDialContext: func(ctx context.Context, network, addr string) (net.Conn, error) {
			nd := net.Dialer{Control: func(_, _ string, rc syscall.RawConn) error {
				var err error
				if cerr := rc.Control(func(fd uintptr) { err = syscall.SetsockoptInt(int(fd), syscall.SOL_SOCKET, syscall.SO_RCVBUF, size) }); cerr != nil {
					return cerr
				}
				return err
			}}
			return nd.DialContext(ctx, network, addr)
		},
	}, u, nil)
}

// stop closes the hub, the HTTP server and the store, checking the store.
func (ts *testServer) stop() {
	ts.once.Do(func() {
		assert.Zero(ts.t, ts.hub.Stats().BufferFull, "melody dropped frames")
		assert.NoError(ts.t, ts.hub.Close())
		ts.srv.CloseClientConnections()
		ts.srv.Close()
		ts.st.CloseChecked()
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

// snapshot writes a snapshot of the store to a file and returns its path.
func (ts *testServer) snapshot() string {
	ts.t.Helper()
	path := filepath.Join(ts.t.TempDir(), "snap.db")
	f, err := os.Create(path)
	require.NoError(ts.t, err)
	_, err = ts.st.WriteSnapshot(f)
	require.NoError(ts.t, err)
	require.NoError(ts.t, f.Close())
	return path
}

// put writes through the store and returns the change's revision.
func (ts *testServer) put(ns, key, value string) uint64 {
	ts.t.Helper()
	rec, err := ts.st.Put(context.Background(), ns, key, json.RawMessage(value), nil, "test")
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

// lite is the part of a frame the high-volume tests look at.
type lite struct {
	Type     string            `json:"type"`
	Rev      uint64            `json:"rev"`
	Code     string            `json:"code"`
	FromRev  *uint64           `json:"from_rev"`
	Messages []json.RawMessage `json:"messages"`
}

// changeRevs reads from w context_updated messages until revision upTo, decoding
// only their type and revision, and returns the revisions. Any other
// message is returned as stop, with the revisions read before it.
func changeRevs(w *wsClient, upTo uint64) (got []uint64, stop *lite, err error) {
	var queue []lite
	for {
		if len(queue) == 0 {
			_ = w.Conn.SetReadDeadline(time.Now().Add(deadline))
			_, data, err := w.Conn.ReadMessage()
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
