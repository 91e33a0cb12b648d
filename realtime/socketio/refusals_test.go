package socketio_test

import (
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/gorilla/websocket"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/framework0/ctxd"
	"github.com/framework0/ctxd/configs"
	"github.com/framework0/ctxd/internal/testkit"
)

// JSONP polling and binary Socket.IO packets are refused, as the README
// says: the first at the handshake (400), the second with an error event,
// the connection staying up.
func TestJSONPAndBinaryRefused(t *testing.T) {
	srv := testkit.StartServer(t)
	resp, _ := testkit.Send(t, http.DefaultClient,
		testkit.NewRequest(t, http.MethodGet, srv.URL+"/socket.io/?EIO=4&transport=polling&j=0", ""))
	assert.Equal(t, http.StatusBadRequest, resp.StatusCode)

	// A WebSocket handshake the upgrader refuses: Engine.IO's JSON, not
	// gorilla's plain text.
	req := testkit.NewRequest(t, http.MethodGet, srv.URL+"/socket.io/?EIO=4&transport=websocket", "")
	req.Header = http.Header{"Connection": {"Upgrade"}, "Upgrade": {"websocket"}, "Sec-Websocket-Version": {"99"},
		"Sec-Websocket-Key": {"dGhlIHNhbXBsZSBub25jZQ=="}}
	resp, body := testkit.Send(t, http.DefaultClient, req)
	assert.Equal(t, http.StatusBadRequest, resp.StatusCode)
	assert.Equal(t, "application/json", resp.Header.Get("Content-Type"))
	assert.Contains(t, string(body), `"code":3`)

	c := dial(t, srv, sioOpts{websocket: true})
	connected(t, c, nil)
	c.sendPacket(`451-["context_set",{"_placeholder":true,"num":0}]`)
	e := c.waitEvent("error")
	assert.Equal(t, ctxd.CodeBadRequest, e.Data["code"])
	assert.Contains(t, e.Data["message"], "binary")
	// A packet of an unknown Socket.IO type is answered too (it was
	// dropped without a word).
	for _, p := range []string{"49", "4x", "47[1]"} {
		c.sendPacket(p)
		e := c.waitEvent("error")
		assert.Equal(t, ctxd.CodeBadRequest, e.Data["code"], p)
		assert.Contains(t, e.Data["message"], "unknown Socket.IO packet type", p)
	}
	c.emit("client_register", map[string]any{"type": "agent", "name": "after"})
	assert.Equal(t, "after", c.waitEvent("registration_confirmed").Data["name"], "still connected")
}

// A string that escapes a lone surrogate is refused wherever it is, in an
// event or in the CONNECT's auth payload, and writes nothing: decoded, a
// key "a\ud800" would have been stored as "a\ufffd".
func TestLoneSurrogateRefused(t *testing.T) {
	srv := testkit.StartServer(t)
	rev := srv.Backend().Revision()
	c := dial(t, srv, sioOpts{websocket: true})
	connected(t, c, nil)
	for _, p := range []string{`42["context_set",{"key":"a\ud800","value":1}]`, `42["context_set",{"key":"k","value":"\udc00"}]`} {
		c.sendPacket(p)
		e := c.waitEvent("error")
		assert.Equal(t, ctxd.CodeBadRequest, e.Data["code"], p)
		assert.Contains(t, e.Data["message"], "lone surrogate", p)
	}
	// Bytes that are not UTF-8 would be decoded as U+FFFD: refused too.
	for _, p := range []string{"42[\"context_set\",{\"key\":\"sio\xff\",\"value\":1}]", "42[\"context_set\",{\"key\":\"k\",\"value\":1,\"who\":\"\xfe\"}]"} {
		c.sendPacket(p)
		e := c.waitEvent("error")
		assert.Equal(t, ctxd.CodeBadRequest, e.Data["code"], p)
		assert.Contains(t, e.Data["message"], "not valid UTF-8", p)
	}
	c.emit("client_register", map[string]any{"type": "agent", "name": "after"})
	assert.Equal(t, "after", c.waitEvent("registration_confirmed").Data["name"], "still connected")
	assert.Equal(t, rev, srv.Backend().Revision(), "nothing written")

	bad := dial(t, srv, sioOpts{websocket: true})
	bad.sendPacket(`40{"ns":"default","prefix":"p\udc00"}`)
	ans := bad.next()
	assert.True(t, strings.HasPrefix(ans, "4{"), "a CONNECT_ERROR: %s", ans)
	assert.Contains(t, ans, "lone surrogate")
	bad = dial(t, srv, sioOpts{websocket: true})
	bad.sendPacket(`40{"ns":"default","prefix":"p\u0000"}`)
	ans = bad.next()
	assert.True(t, strings.HasPrefix(ans, "4{"), "a CONNECT_ERROR: %s", ans)
	assert.Contains(t, ans, "prefix contains control character")
}

// An empty ns, in the auth payload or the query, is refused with a
// CONNECT error of code bad_request, as /v1/watch refuses ns= with 400;
// before, it fell back to compat.namespace as if none were given. Without
// ns (or with ns null) the client still sees compat.namespace.
func TestEmptyNamespaceRefused(t *testing.T) {
	srv := testkit.StartServer(t)
	for name, tc := range map[string]struct {
		o    sioOpts
		auth any
	}{
		"payload": {sioOpts{websocket: true}, map[string]any{"ns": ""}},
		"query":   {sioOpts{websocket: true, query: url.Values{"ns": {""}}}, nil},
	} {
		ans := dial(t, srv, tc.o).connect(tc.auth)
		assert.True(t, strings.HasPrefix(ans, "4{"), "%s: a CONNECT_ERROR: %s", name, ans)
		assert.Contains(t, ans, ctxd.CodeBadRequest, name)
		assert.Contains(t, ans, "namespace is empty", name)
	}
	for _, auth := range []any{nil, map[string]any{"ns": nil}} {
		c := dial(t, srv, sioOpts{websocket: true})
		assert.Equal(t, "default", connected(t, c, auth).Data["ns"], "%v", auth)
	}
}

// A context_snapshot over websocket.max_snapshot_bytes is refused with a
// CONNECT error of code too_large (it was built whole, 68 MB for a
// namespace of 66 values of 1 MB, for each client that connected), as
// /v1/watch refuses snapshot=true with 413; a prefix that fits connects.
func TestSnapshotOverTheLimitRefused(t *testing.T) {
	srv := testkit.StartServer(t, testkit.WithConfig(func(c *configs.Config) { c.WebSocket.MaxSnapshotBytes = 4 << 10 }))
	big := `"` + strings.Repeat("v", 1<<10) + `"`
	for i := range 10 {
		put(t, srv, "big/"+strconv.Itoa(i), big)
	}
	put(t, srv, "small/k", `1`)

	c := dial(t, srv, sioOpts{websocket: true})
	ans := c.connect(nil)
	assert.True(t, strings.HasPrefix(ans, "4{"), "a CONNECT_ERROR: %s", ans)
	assert.Contains(t, ans, ctxd.CodeTooLarge)
	assert.Contains(t, ans, "websocket.max_snapshot_bytes")

	ok := dial(t, srv, sioOpts{websocket: true})
	snap := connected(t, ok, map[string]any{"prefix": "small/"})
	assert.Equal(t, map[string]any{"small/k": 1.0}, snap.Data["context"])

	resp, body := testkit.Send(t, http.DefaultClient, testkit.NewRequest(t, http.MethodGet, srv.URL+"/v1/watch?snapshot=true", "",
		"Connection", "Upgrade", "Upgrade", "websocket", "Sec-WebSocket-Version", "13", "Sec-WebSocket-Key", "dGhlIHNhbXBsZSBub25jZQ=="))
	assert.Equal(t, http.StatusRequestEntityTooLarge, resp.StatusCode, "/v1/watch: the same setting")
	assert.Contains(t, string(body), `"message":"too large: the snapshot is larger than 4096 bytes`, "one line (it had a raw newline)")
}

// A packet over websocket.max_message_bytes is answered too_large (an
// error event, and the same as its ack), is not applied, and the session
// stays up, as /v1/watch answers such a message; over twice the limit the
// session is closed (1009 on a WebSocket, 413 to a polling POST), as the
// reference server does. An event the server cannot read gets its ack
// too, a field of the wrong type is named in the protocol's words, and an
// unknown field is refused.
func TestOversizeAndMalformedEvents(t *testing.T) {
	srv := testkit.StartServer(t, testkit.WithConfig(func(c *configs.Config) { c.WebSocket.MaxMessageBytes = 4 << 10 }))
	rev := srv.Backend().Revision()
	setOf := func(ack int, valueBytes int) string {
		return `42` + strconv.Itoa(ack) + `["context_set",{"key":"big","value":"` + strings.Repeat("v", valueBytes) + `"}]`
	}
	refusedWithAck := func(c *sio, ack int, code, message string) {
		t.Helper()
		e := c.waitEvent("error")
		assert.Equal(t, code, e.Data["code"])
		assert.Contains(t, e.Data["message"], message)
		p := c.next()
		require.True(t, strings.HasPrefix(p, "3"+strconv.Itoa(ack)+"["), "the ack: %s", p)
		assert.Contains(t, p, `"code":"`+code+`"`)
	}
	for _, transport := range []string{"websocket", "polling"} {
		t.Run(transport, func(t *testing.T) {
			c := dial(t, srv, sioOpts{websocket: transport == "websocket"})
			connected(t, c, nil)
			c.sendPacket(setOf(1, 5<<10))
			refusedWithAck(c, 1, ctxd.CodeTooLarge, "more than websocket.max_message_bytes (4096)")
			c.sendPacket(`422["context_set",{"key":"k","value":1,"if_version":"3"}]`)
			refusedWithAck(c, 2, ctxd.CodeBadRequest, `"if_version" must be a whole number, 0 or more, not a string`)
			c.sendPacket(`425["context_set",{"key":"a","value":1,"key":"b"}]`)
			refusedWithAck(c, 5, ctxd.CodeBadRequest, `member "key" is given twice`)
			// A misspelt field is refused, as on /v1/watch: "iff_version"
			// ignored was a compare-and-swap turned into a plain write.
			c.sendPacket(`426["context_set",{"key":"cas.k","value":"X","iff_version":99}]`)
			refusedWithAck(c, 6, ctxd.CodeBadRequest, `"iff_version"`)
			c.sendPacket(`423"not an array"`)
			refusedWithAck(c, 3, ctxd.CodeBadRequest, "an event is a JSON array [name, data]")
			c.sendPacket(`427["client_register",{"type":"agent\u001b[2J","name":"n"}]`)
			refusedWithAck(c, 7, ctxd.CodeBadRequest, "type contains control character U+001B")
			c.sendPacket(`428["client_register",{"client_type":"agent","name":"a\nb"}]`)
			refusedWithAck(c, 8, ctxd.CodeBadRequest, "name contains control character U+000A")
			c.emit("client_register", map[string]any{"type": "agent", "name": "after"})
			assert.Equal(t, "after", c.waitEvent("registration_confirmed").Data["name"], "still connected")
			assert.Equal(t, rev, srv.Backend().Revision(), "nothing written")

			c.sendPacket(setOf(4, 9<<10)) // over twice the limit
			if transport == "websocket" {
				assert.Equal(t, websocket.CloseMessageTooBig, c.closeError().Code)
			} else {
				<-c.pollDone // the session is gone: its poll ends
			}
			assert.Equal(t, rev, srv.Backend().Revision(), "nothing written")
		})
	}
}

// Over polling, an event between http.max_body_bytes (2 MiB) and the
// engine's maxPayload (twice websocket.max_message_bytes: 4 MiB) reaches
// the engine, as over WebSocket: too_large (error event and ack), not
// applied, and the session goes on. The HTTP layer's body limit answered
// it with a bare 413 (negative control: without the exemption of
// /socket.io/ POSTs in httpapi's limitBody, no error event comes).
func TestPollingEventOverTheBodyLimit(t *testing.T) {
	srv := testkit.StartServer(t)
	require.Greater(t, srv.Config.WebSocket.MaxMessageBytes, int64(0))
	require.Less(t, srv.Config.HTTP.MaxBodyBytes, int64(3<<20))
	require.Greater(t, 2*srv.Config.WebSocket.MaxMessageBytes, int64(3<<20))
	rev := srv.Backend().Revision()
	c := dial(t, srv, sioOpts{})
	connected(t, c, nil)
	c.sendPacket(`421["context_set",{"key":"big","value":"` + strings.Repeat("v", 3<<20) + `"}]`)
	e := c.waitEvent("error")
	assert.Equal(t, ctxd.CodeTooLarge, e.Data["code"])
	p := c.next()
	require.True(t, strings.HasPrefix(p, "31["), "the ack: %s", p)
	assert.Contains(t, p, `"code":"too_large"`)
	c.emit("client_register", map[string]any{"type": "agent", "name": "after"})
	assert.Equal(t, "after", c.waitEvent("registration_confirmed").Data["name"], "still connected")
	assert.Equal(t, rev, srv.Backend().Revision(), "nothing written")
}

// A session takes one WebSocket: of two probes that both confirm the
// upgrade, the second is closed. Before, each became the session's
// transport, with a reader and a writer of its own, for as long as the
// session lived: one session, counted once against max_clients, could
// hold any number of WebSocket connections.
func TestASecondUpgradeIsRefused(t *testing.T) {
	srv := testkit.StartServer(t)
	e := newEngine(t, srv.URL)
	wsURL := "ws" + strings.TrimPrefix(e.base, "http") + "&transport=websocket"
	wsURL = strings.Replace(wsURL, "transport=polling&", "", 1)
	probes := make([]*websocket.Conn, 2)
	for i := range probes {
		ws, resp, err := websocket.DefaultDialer.Dial(wsURL, nil)
		require.NoError(t, err)
		_ = resp.Body.Close()
		t.Cleanup(func() { _ = ws.Close() })
		require.NoError(t, ws.WriteMessage(websocket.TextMessage, []byte("2probe")))
		_, msg, err := ws.ReadMessage()
		require.NoError(t, err)
		require.Equal(t, "3probe", string(msg))
		probes[i] = ws
	}
	// Each confirms the upgrade, then pings: only the session's
	// transport answers (a probing connection closes at a ping).
	for i, ws := range probes {
		require.NoError(t, ws.WriteMessage(websocket.TextMessage, []byte("5")))
		require.NoError(t, ws.WriteMessage(websocket.TextMessage, []byte("2x")))
		require.NoError(t, ws.SetReadDeadline(time.Now().Add(testkit.Deadline)))
		_, msg, err := ws.ReadMessage()
		if i == 0 {
			require.NoError(t, err)
			assert.Equal(t, "3x", string(msg), "the first is the session's transport")
		} else {
			assert.Error(t, err, "the second is closed, not answered (%q)", msg)
		}
	}
}

// One session's packets are handled one at a time: two polling POSTs at
// once (the second is refused, as the reference server refuses "data
// request overlap", and the session closed) never CONNECT two clients.
// Before, each POST ran its CONNECT: 9 sessions of 100 connected two
// clients, and the first stayed in the server's clients for good,
// counted in client_stats and holding its session's queue (a snapshot of
// up to max_snapshot_bytes), its feed long gone.
func TestOverlappingPostsConnectOneClient(t *testing.T) {
	srv := testkit.StartServer(t)
	sio := srv.Server().SocketIO()
	refused := 0
	for range 50 {
		e := newEngine(t, srv.URL)
		var wg sync.WaitGroup
		codes := make([]int, 2)
		for i := range codes {
			wg.Add(1)
			go func() {
				defer wg.Done()
				res, err := http.Post(e.base, "text/plain", strings.NewReader("40"))
				require.NoError(t, err)
				_ = res.Body.Close()
				codes[i] = res.StatusCode
			}()
		}
		wg.Wait()
		for _, code := range codes {
			if code == http.StatusBadRequest {
				refused++
			}
		}
		e.post("1")
		for e.poll() != nil {
		}
	}
	t.Logf("%d of 50 second POSTs overlapped the first and were refused", refused)
	testkit.Eventually(t, func() bool { return sio.Clients() == 0 }, "no client left once every session closed")
}
