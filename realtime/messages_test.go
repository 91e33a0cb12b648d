package realtime_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/gorilla/websocket"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/framework0/ctxd"
	"github.com/framework0/ctxd/configs"
	"github.com/framework0/ctxd/internal/testkit"
	"github.com/framework0/ctxd/realtime"
	"github.com/framework0/ctxd/store"
	"github.com/framework0/ctxd/store/bolt"
)

func TestContextSet(t *testing.T) {
	ts := startServer(t, realtime.Options{})
	w := testkit.DialWatch(t, ts.wsURL(url.Values{"ns": {"nothing"}}), nil) // answers only
	w.Expect(ctxd.TypeSubscribed)
	watcher := testkit.DialWatch(t, ts.wsURL(url.Values{"ns": {"team"}}), nil)
	watcher.Expect(ctxd.TypeSubscribed)

	w.SendJSON(map[string]any{"type": "context_set", "id": "r1", "ns": "team", "key": "app/config",
		"value": map[string]any{"debug": true}, "who": "alice"})
	m := w.Expect(ctxd.TypeContextSetConfirmed)
	assert.JSONEq(t, `"r1"`, string(m.ID))
	assert.Equal(t, "team", m.NS)
	assert.Equal(t, "app/config", m.Key)
	assert.Equal(t, uint64(1), m.Version)
	assert.Equal(t, uint64(1), m.Rev)
	assert.Equal(t, "alice", m.Who)

	// The write is durable and visible to everyone, like a REST put.
	rec, err := ts.st.Get("team", "app/config")
	require.NoError(t, err)
	assert.JSONEq(t, `{"debug":true}`, string(rec.Value))
	got := watcher.Changes(1)
	assert.Equal(t, "alice", got[0].Who)
	assert.JSONEq(t, `{"debug":true}`, string(got[0].Value))

	// Compare-and-swap: same codes and details as REST.
	w.SendJSON(map[string]any{"type": "context_set", "id": 2, "ns": "team", "key": "app/config", "value": 1, "if_version": 1})
	m = w.Expect(ctxd.TypeContextSetConfirmed)
	assert.Equal(t, uint64(2), m.Version)
	assert.Equal(t, "websocket", m.Who)
	w.SendJSON(map[string]any{"type": "context_set", "id": 3, "ns": "team", "key": "app/config", "value": 2, "if_version": 1})
	m = w.Expect(ctxd.TypeError)
	assert.Equal(t, "conflict", m.Code)
	assert.JSONEq(t, "3", string(m.ID))
	require.NotNil(t, m.CurrentVersion)
	assert.Equal(t, uint64(2), *m.CurrentVersion)
	w.SendJSON(map[string]any{"type": "context_set", "key": "new", "value": 1, "if_version": 0})
	assert.Equal(t, uint64(1), w.Expect(ctxd.TypeContextSetConfirmed).Version)

	// Validation: as REST. A refused message writes nothing.
	rev := ts.st.Revision()
	for _, tc := range []struct {
		msg  string
		code string
	}{
		{`{"type":"context_set","value":1}`, "bad_request"},
		{`{"type":"context_set","key":"k"}`, "bad_request"},
		{`{"type":"context_set","key":"k","value":1,"ns":"bad ns"}`, "bad_request"},
		{`{"type":"context_set","key":"a\u0001b","value":1}`, "bad_request"},
		{`{"type":"context_set","key":"a\ud800","value":1}`, "bad_request"}, // not stored as "a\ufffd"
		{`{"type":"context_set","key":"k","value":"\udc00"}`, "bad_request"},
		{`{"type":"context_set","key":"` + strings.Repeat("k", 1025) + `","value":1}`, "too_large"},
		{`{"type":"context_set","key":"k","value":1,"ns":["a","b"]}`, "bad_request"},
	} {
		w.SendRaw([]byte(tc.msg))
		m := w.Expect(ctxd.TypeError)
		assert.Equal(t, tc.code, m.Code, tc.msg)
		assert.NotEmpty(t, m.Message)
	}
	assert.Equal(t, rev, ts.st.Revision(), "the refused messages wrote nothing")

	// The registered name is the default who.
	w.SendJSON(map[string]any{"type": "client_register", "client_type": "dashboard", "name": "ops-board"})
	w.Expect(ctxd.TypeRegistrationConfirmed)
	w.SendJSON(map[string]any{"type": "context_set", "key": "by-name", "value": true})
	assert.Equal(t, "ops-board", w.Expect(ctxd.TypeContextSetConfirmed).Who)
}

// context_patch applies a patch as PATCH does, answers with the value it
// left, feeds a put of that value to watchers, and reports a failed
// patch with the REST API's code, operation and pointer.
func TestContextPatch(t *testing.T) {
	ts := startServer(t, realtime.Options{})
	ts.put("team", "cfg", `{"debug":false,"tags":["a"]}`)
	w := testkit.DialWatch(t, ts.wsURL(url.Values{"ns": {"nothing"}}), nil)
	w.Expect(ctxd.TypeSubscribed)
	watcher := testkit.DialWatch(t, ts.wsURL(url.Values{"ns": {"team"}}), nil)
	watcher.Expect(ctxd.TypeSubscribed)

	w.SendJSON(map[string]any{"type": "context_patch", "id": "p1", "ns": "team", "key": "cfg", "patch": map[string]any{"debug": true}, "who": "ann"})
	m := w.Expect(ctxd.TypeContextPatchConfirmed)
	assert.JSONEq(t, `"p1"`, string(m.ID))
	assert.Equal(t, `{"debug":true,"tags":["a"]}`, string(m.Value))
	assert.Equal(t, uint64(2), m.Version)
	assert.Equal(t, "ann", m.Who)
	got := watcher.Changes(1)
	assert.Equal(t, "put", got[0].Op, "a patch is fed as a put of its result")
	assert.Equal(t, `{"debug":true,"tags":["a"]}`, string(got[0].Value))

	w.SendJSON(map[string]any{"type": "context_patch", "id": 2, "ns": "team", "key": "cfg", "if_version": 2,
		"patch": []any{map[string]any{"op": "add", "path": "/tags/-", "value": "b"}}})
	m = w.Expect(ctxd.TypeContextPatchConfirmed)
	assert.Equal(t, `{"debug":true,"tags":["a","b"]}`, string(m.Value))

	w.SendJSON(map[string]any{"type": "context_patch", "id": 3, "ns": "team", "key": "cfg",
		"patch": []any{map[string]any{"op": "test", "path": "/debug", "value": false}}})
	m = w.Expect(ctxd.TypeError)
	assert.Equal(t, ctxd.CodePatchTestFailed, m.Code)
	require.NotNil(t, m.Pointer)
	assert.Equal(t, "/debug", *m.Pointer)
	require.NotNil(t, m.OpIndex)
	assert.Equal(t, 0, *m.OpIndex)
	w.SendJSON(map[string]any{"type": "context_patch", "id": 4, "ns": "team", "key": "cfg", "patch": map[string]any{}, "if_version": 1})
	m = w.Expect(ctxd.TypeError)
	assert.Equal(t, ctxd.CodeConflict, m.Code)

	for _, tc := range []struct{ msg, code string }{
		{`{"type":"context_patch","ns":"team","key":"cfg"}`, "bad_request"},
		{`{"type":"context_patch","ns":"team","key":"cfg","patch":{},"patch_type":"xml"}`, "bad_request"},
		{`{"type":"context_patch","ns":"team","key":"cfg","patch":[{"op":"remove","path":"/nope"}]}`, ctxd.CodePatchFailed},
		{`{"type":"context_patch","ns":"team","key":"missing","patch":{}}`, "not_found"},
		{`{"type":"context_patch","patch":{}}`, "bad_request"},
	} {
		w.SendRaw([]byte(tc.msg))
		assert.Equal(t, tc.code, w.Expect(ctxd.TypeError).Code, tc.msg)
	}
	rec, err := ts.st.Get("team", "cfg")
	require.NoError(t, err)
	assert.Equal(t, uint64(3), rec.Version, "refused patches wrote nothing")
}

func TestRegisterAndStats(t *testing.T) {
	ts := testkit.StartServer(t) // the whole server: /v1/status counts the clients
	// What gorilla's upgrader refuses in plain text is refused in JSON.
	for name, hdr := range map[string]http.Header{
		"version 99": {"Sec-Websocket-Version": {"99"}},
		"no key":     {"Sec-Websocket-Key": {""}},
		"short key":  {"Sec-Websocket-Key": {"c2hvcnQ="}},
	} {
		req, err := http.NewRequest(http.MethodGet, ts.URL+"/v1/watch", nil)
		require.NoError(t, err)
		req.Header = http.Header{"Connection": {"Upgrade"}, "Upgrade": {"websocket"}, "Sec-Websocket-Version": {"13"},
			"Sec-Websocket-Key": {"dGhlIHNhbXBsZSBub25jZQ=="}}
		for k, v := range hdr {
			req.Header[k] = v
		}
		resp, err := http.DefaultClient.Do(req)
		require.NoError(t, err, name)
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		assert.Equal(t, http.StatusBadRequest, resp.StatusCode, name)
		assert.Contains(t, string(body), `"code":"bad_request"`, name)
	}

	a := testkit.DialWatch(t, ts.WatchURL(nil), nil)
	a.Expect(ctxd.TypeSubscribed)
	b := testkit.DialWatch(t, ts.WatchURL(nil), nil)
	bSub := b.Expect(ctxd.TypeSubscribed)
	c := testkit.DialWatch(t, ts.WatchURL(nil), nil)
	c.Expect(ctxd.TypeSubscribed)

	a.SendJSON(map[string]any{"type": "client_register", "id": "x", "client_type": "dashboard", "name": "board-1"})
	m := a.Expect(ctxd.TypeRegistrationConfirmed)
	assert.Equal(t, "dashboard", m.ClientType)
	assert.Equal(t, "board-1", m.Name)
	assert.NotEmpty(t, m.ClientID)
	assert.JSONEq(t, `"x"`, string(m.ID))
	b.SendJSON(map[string]any{"type": "client_register", "client_type": "script"})
	assert.Equal(t, bSub.ClientID, b.Expect(ctxd.TypeRegistrationConfirmed).ClientID)

	c.SendJSON(map[string]any{"type": "client_stats"})
	m = c.Expect(ctxd.TypeClientStats)
	assert.Equal(t, 3, m.ConnectedClients)
	assert.Equal(t, map[string]int{"dashboard": 1, "script": 1, "unregistered": 1}, m.ClientsByType)

	// /v1/status reports the same number.
	resp, err := http.Get(ts.URL + "/v1/status")
	require.NoError(t, err)
	var st struct {
		Clients int `json:"clients"`
	}
	require.NoError(t, json.NewDecoder(resp.Body).Decode(&st))
	resp.Body.Close()
	assert.Equal(t, 3, st.Clients)

	c.SendJSON(map[string]any{"type": "ping", "id": 7})
	assert.JSONEq(t, "7", string(c.Expect(ctxd.TypePong).ID))
}

// Bad messages get an error frame; the connection and the other clients'
// feeds go on.
func TestBadMessages(t *testing.T) {
	ts := startServer(t, realtime.Options{MaxMessageBytes: 1 << 10})
	bad := testkit.DialWatch(t, ts.wsURL(nil), nil)
	bad.Expect(ctxd.TypeSubscribed)
	other := testkit.DialWatch(t, ts.wsURL(nil), nil)
	other.Expect(ctxd.TypeSubscribed)

	for _, tc := range []struct {
		msg  string
		code string
	}{
		{`not json`, ctxd.CodeBadRequest},
		{`[1,2]`, ctxd.CodeBadRequest},
		{`{"type":"context_set","key":5,"id":"k5"}`, ctxd.CodeBadRequest},
		{`{"id":1}`, ctxd.CodeBadRequest},
		{`{"type":"explode","id":"e"}`, ctxd.CodeUnknownType},
		{`{"type":"ping","id":{"a":1}}`, ctxd.CodeBadRequest},
		{`{"type":"subscribe","ns":"no spaces"}`, ctxd.CodeBadRequest},
		{`{"type":"unsubscribe","ns":"never"}`, ctxd.CodeBadRequest},
		{`{"type":"subscribe","snapshot":true,"from_rev":1}`, ctxd.CodeBadRequest},
		{`{"type":"ping","pad":"` + strings.Repeat("x", 1200) + `"}`, ctxd.CodeTooLarge},
		// Not UTF-8: decoded anyway, the key would be "ws\ufffd".
		{"{\"type\":\"context_set\",\"id\":\"u\",\"key\":\"ws\xff\",\"value\":1}", ctxd.CodeBadRequest},
		{"{\"type\":\"context_set\",\"id\":\"u\",\"key\":\"k\",\"value\":1,\"who\":\"\xfe\"}", ctxd.CodeBadRequest},
		// Control characters in what client_stats and the CLI show.
		{`{"type":"client_register","client_type":"dash\u001b[2J"}`, ctxd.CodeBadRequest},
		{`{"type":"client_register","client_type":"dashboard","name":"a\nb"}`, ctxd.CodeBadRequest},
	} {
		bad.SendRaw([]byte(tc.msg))
		m := bad.Expect(ctxd.TypeError)
		assert.Equal(t, tc.code, m.Code, "%s: %s", tc.msg, m.Message)
		assert.NotEmpty(t, m.Message)
	}
	bad.SendRaw([]byte(`{"type":"context_set","key":5,"id":"k5"}`))
	assert.JSONEq(t, `"k5"`, string(bad.Expect(ctxd.TypeError).ID), "the id is recovered from a message that failed to decode")
	// An unknown field is refused: a misspelt if_version would have made
	// a compare-and-swap a plain write.
	bad.SendRaw([]byte(`{"type":"context_set","key":"k","value":1,"if_verison":3,"id":6}`))
	m0 := bad.Expect(ctxd.TypeError)
	assert.Equal(t, `message is not a valid JSON object: unknown field "if_verison"`, m0.Message)
	assert.JSONEq(t, `6`, string(m0.ID))
	// A member given twice is refused: the last would have won.
	bad.SendRaw([]byte(`{"type":"context_set","key":"k1","value":{"a":1,"a":2},"key":"k2","id":7}`))
	m1 := bad.Expect(ctxd.TypeError)
	assert.Equal(t, `message: member "key" is given twice in one object: give each once`, m1.Message)
	assert.JSONEq(t, `7`, string(m1.ID))
	// A field of the wrong type is named in the protocol's words, not Go's.
	bad.SendRaw([]byte(`{"type":"context_set","key":"k","value":1,"if_version":"3","id":5}`))
	m := bad.Expect(ctxd.TypeError)
	assert.Equal(t, `message is not a valid JSON object: "if_version" must be a whole number, 0 or more, not a string`, m.Message)
	assert.JSONEq(t, `5`, string(m.ID))
	require.NoError(t, bad.Conn.WriteMessage(websocket.BinaryMessage, []byte{1, 2}))
	assert.Equal(t, ctxd.CodeBadRequest, bad.Expect(ctxd.TypeError).Code)

	// Still connected and subscribed.
	ts.put("default", "k", "1")
	assert.Equal(t, []uint64{1}, revs(bad.Changes(1)))
	assert.Equal(t, []uint64{1}, revs(other.Changes(1)))

	// Over twice the limit, the connection is closed with 1009; the others
	// go on.
	// The server may close while the client is still writing: then the
	// write fails, or the read sees the reset rather than the close frame.
	// Either way the connection must end, and a close frame, when it
	// arrives, must say 1009.
	_ = bad.Conn.SetWriteDeadline(time.Now().Add(deadline))
	_ = bad.Conn.WriteMessage(websocket.TextMessage, []byte(`{"type":"ping","pad":"`+strings.Repeat("x", 4096)+`"}`))
	_, err := bad.NextErr()
	require.Error(t, err, "the connection must be closed")
	var ce *websocket.CloseError
	if errors.As(err, &ce) {
		assert.Equal(t, websocket.CloseMessageTooBig, ce.Code)
	}
	ts.put("default", "k", "2")
	assert.Equal(t, []uint64{2}, revs(other.Changes(2)))
}

func TestOrigins(t *testing.T) {
	ts := testkit.StartServer(t, testkit.WithConfig(func(c *configs.Config) {
		c.WebSocket.AllowedOrigins = []string{"https://dash.example.com"}
	}))
	for _, tc := range []struct {
		origin string
		ok     bool
	}{
		{"", true},
		{ts.URL, true}, // same origin
		{"http://localhost:3000", true},
		{"http://127.0.0.1:9999", true},
		{"https://dash.example.com", true},
		{"https://evil.example.com", false},
		{"https://dash.example.com.evil.net", false},
		{"null", false},
	} {
		hdr := http.Header{}
		if tc.origin != "" {
			hdr.Set("Origin", tc.origin)
		}
		c, resp, err := testkit.DialWatchErr(ts.WatchURL(nil), hdr)
		if tc.ok {
			require.NoError(t, err, tc.origin)
			c.Close()
			continue
		}
		require.Error(t, err, tc.origin)
		require.NotNil(t, resp, tc.origin)
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		assert.Equal(t, http.StatusForbidden, resp.StatusCode, tc.origin)
		assert.Contains(t, string(body), `"code":"forbidden"`)
		assert.Contains(t, string(body), "websocket.allowed_origins")
	}

	any := testkit.StartServer(t, testkit.WithConfig(func(c *configs.Config) { c.WebSocket.AllowedOrigins = []string{"*"} }))
	c, _, err := testkit.DialWatchErr(any.WatchURL(nil), http.Header{"Origin": {"https://anywhere.example"}})
	require.NoError(t, err)
	c.Close()
}

// Boolean parameters read as in the REST API (query.ParseBool).
func TestBoolParams(t *testing.T) {
	ts := startServer(t, realtime.Options{})
	for _, tc := range []struct {
		q    string
		want bool
	}{{"batch=true", true}, {"batch=yes", true}, {"batch=ON", true}, {"batch=1", true}, {"batch=t", true},
		{"batch=no", false}, {"batch=", false}, {"batch=off", false}, {"batch=f", false}} {
		c := testkit.DialWatch(t, ts.wsURL(nil)+"?"+tc.q, nil)
		assert.Equal(t, tc.want, c.Expect(ctxd.TypeSubscribed).Batch, tc.q)
		c.Conn.Close()
	}
}

// Refusals before the upgrade are JSON errors in the API's format (the
// whole server: the hub mounted in the API).
func TestRefusals(t *testing.T) {
	ts := testkit.StartServer(t, testkit.WithConfig(func(c *configs.Config) { c.WebSocket.MaxClients = 2 }))
	resp, err := http.Get(ts.URL + "/v1/watch")
	require.NoError(t, err)
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	assert.Equal(t, http.StatusBadRequest, resp.StatusCode)
	assert.Contains(t, string(body), `"code":"bad_request"`)

	// A typo (from_ref) or a parameter given twice is refused, not ignored:
	// from_ref=5 gave a feed from now, a gap where none was asked for.
	for _, q := range []string{"ns=bad%20ns", "from_rev=-1", "snapshot=maybe", "batch=2x", "snapshot=1&from_rev=3",
		"from_ref=5", "from_rev=1&from_rev=2", "prefix=a&prefix=c", "batch=true&batch=false",
		"prefix=%FF", "prefix=a%00"} { // no key starts so: echoed back as U+FFFD

		_, resp, err := testkit.DialWatchErr(ts.WatchURL(nil)+"?"+q, nil)
		require.Error(t, err, q)
		require.NotNil(t, resp, q)
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		assert.Equal(t, http.StatusBadRequest, resp.StatusCode, q)
		assert.Contains(t, string(body), `"code":"bad_request"`, q)
	}

	a := testkit.DialWatch(t, ts.WatchURL(nil), nil)
	a.Expect(ctxd.TypeSubscribed)
	b := testkit.DialWatch(t, ts.WatchURL(nil), nil)
	b.Expect(ctxd.TypeSubscribed)
	_, resp, err = testkit.DialWatchErr(ts.WatchURL(nil), nil)
	require.Error(t, err)
	require.NotNil(t, resp)
	resp.Body.Close()
	assert.Equal(t, http.StatusServiceUnavailable, resp.StatusCode)
	assert.Equal(t, "5", resp.Header.Get("Retry-After"))
}

// The two doors share websocket.max_clients: a Socket.IO session counts
// from its handshake on /v1/watch too, as /v1/watch clients count on
// /socket.io/. Before, /v1/watch counted its own clients alone, and
// max_clients clients of each door could connect, twice the cap.
func TestMaxClientsCountsBothDoors(t *testing.T) {
	ts := testkit.StartServer(t, testkit.WithConfig(func(c *configs.Config) { c.WebSocket.MaxClients = 2 }))
	res, err := http.Get(ts.URL + "/socket.io/?EIO=4&transport=polling")
	require.NoError(t, err)
	_ = res.Body.Close()
	require.Equal(t, http.StatusOK, res.StatusCode, "the Socket.IO handshake")
	a := testkit.DialWatch(t, ts.WatchURL(nil), nil)
	a.Expect(ctxd.TypeSubscribed)

	_, resp, err := testkit.DialWatchErr(ts.WatchURL(nil), nil)
	require.Error(t, err, "a third client, the second of /v1/watch")
	require.NotNil(t, resp)
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	assert.Equal(t, http.StatusServiceUnavailable, resp.StatusCode)
	assert.Equal(t, "5", resp.Header.Get("Retry-After"))
	assert.Contains(t, string(body), `"code":"unavailable"`)
}

func TestSubscribeUnsubscribe(t *testing.T) {
	ts := startServer(t, realtime.Options{})
	c := testkit.DialWatch(t, ts.wsURL(url.Values{"ns": {"a"}}), nil)
	c.Expect(ctxd.TypeSubscribed)
	ts.put("a", "k", "1") // 1
	ts.put("b", "k", "1") // 2
	assert.Equal(t, []uint64{1}, revs(c.Changes(1)))

	// Add b from now on.
	c.SendJSON(map[string]any{"type": "subscribe", "id": "s1", "ns": "b", "prefix": "x/"})
	m := c.Expect(ctxd.TypeSubscribed)
	assert.JSONEq(t, `"s1"`, string(m.ID))
	assert.Equal(t, []ctxd.Subscription{{Namespace: "a", Prefix: ""}, {Namespace: "b", Prefix: "x/"}}, m.Subscriptions)
	ts.put("b", "x/1", "1") // 3
	ts.put("b", "y/1", "1") // 4
	ts.put("a", "k", "2")   // 5
	assert.Equal(t, []uint64{3, 5}, revs(c.Changes(5)))

	// Add c with from_rev: its older changes are replayed, a's are not
	// sent twice.
	ts.put("c", "k", "1") // 6
	ts.put("a", "k", "3") // 7
	assert.Equal(t, []uint64{7}, revs(c.Changes(7)))
	c.SendJSON(map[string]any{"type": "subscribe", "ns": []string{"c"}, "from_rev": 0})
	assert.Equal(t, uint64(0), c.Expect(ctxd.TypeSubscribed).Rev)
	assert.Equal(t, []uint64{6}, revs(c.Changes(6)))
	ts.put("c", "k", "2") // 8
	ts.put("a", "k", "4") // 9
	assert.Equal(t, []uint64{8, 9}, revs(c.Changes(9)))

	// Drop a.
	c.SendJSON(map[string]any{"type": "unsubscribe", "ns": "a"})
	assert.Equal(t, []ctxd.Subscription{{Namespace: "b", Prefix: "x/"}, {Namespace: "c", Prefix: ""}}, c.Expect(ctxd.TypeSubscribed).Subscriptions)
	ts.put("a", "k", "5") // 10
	ts.put("c", "k", "3") // 11
	assert.Equal(t, []uint64{11}, revs(c.Changes(11)))

	// Add a with a snapshot: the snapshot first, then a's changes after it.
	c.SendJSON(map[string]any{"type": "subscribe", "ns": "a", "snapshot": true, "id": 9})
	m = c.Expect(ctxd.TypeSubscribed)
	assert.Equal(t, uint64(11), m.Rev)
	m = c.Expect(ctxd.TypeContextSnapshot)
	assert.True(t, m.Complete)
	assert.Equal(t, uint64(11), m.Rev)
	require.Len(t, m.Keys, 1)
	assert.JSONEq(t, "5", string(m.Keys[0].Value))
	ts.put("a", "k", "6") // 12
	assert.Equal(t, []uint64{12}, revs(c.Changes(12)))

	// Every namespace.
	all := testkit.DialWatch(t, ts.wsURL(url.Values{"ns": {"*"}, "snapshot": {"true"}}), nil)
	all.Expect(ctxd.TypeSubscribed)
	m = all.Expect(ctxd.TypeContextSnapshot)
	assert.Len(t, m.Keys, 5) // a/k, b/k, b/x/1, b/y/1, c/k
	ts.put("zzz", "k", "1")
	got := all.Changes(13)
	assert.Equal(t, "zzz", got[0].NS)
}

func TestNotifyDumped(t *testing.T) {
	ts := startServer(t, realtime.Options{})
	var clients []*wsClient
	for range 3 {
		c := testkit.DialWatch(t, ts.wsURL(nil), nil)
		c.Expect(ctxd.TypeSubscribed)
		clients = append(clients, c)
	}
	ts.hub.NotifyDumped(realtime.DumpInfo{Filename: "ctx.json", Format: "json", KeyCount: 3, FileSize: 120, Who: "ops"})
	for _, c := range clients {
		m := c.Expect(ctxd.TypeContextDumped)
		assert.Equal(t, "ctx.json", m.Filename)
		assert.Equal(t, "json", m.Format)
		assert.Equal(t, 3, m.KeyCount)
		assert.Equal(t, "ops", m.Who)
		assert.False(t, m.Timestamp.IsZero())
	}
}

// genStore is a store whose generation the test bumps, as an online restore
// does.
type genStore struct {
	*bolt.Store
	gen atomic.Uint64
}

func (g *genStore) Generation() uint64 { return g.gen.Load() }

// After a restore (a new generation), every client gets "reset" with the
// current revision and continues from there.
func TestResetOnRestore(t *testing.T) {
	var gs *genStore
	ts := startTestServer(&testServer{t: t, wrap: func(st *bolt.Store) store.Backend {
		gs = &genStore{Store: st}
		return gs
	}})
	c := testkit.DialWatch(t, ts.wsURL(nil), nil)
	c.Expect(ctxd.TypeSubscribed)
	b := testkit.DialWatch(t, ts.wsURL(url.Values{"batch": {"true"}}), nil)
	b.Expect(ctxd.TypeSubscribed)
	ts.put("default", "k", "1")
	assert.Equal(t, []uint64{1}, revs(c.Changes(1)))
	assert.Equal(t, []uint64{1}, revs(b.Changes(1)))

	gs.gen.Add(1)
	ts.put("default", "k", "2") // wakes the hub, which sees the new generation
	for _, w := range []*wsClient{c, b} {
		m := w.Expect(ctxd.TypeReset)
		assert.Equal(t, uint64(2), m.Rev)
		assert.NotEmpty(t, m.Message)
	}
	ts.put("default", "k", "3")
	assert.Equal(t, []uint64{3}, revs(c.Changes(3)))
	assert.Equal(t, []uint64{3}, revs(b.Changes(3)))
}

// A real online restore (the store swaps the file and bumps its
// generation): every client gets "reset" with the revision changes continue
// after, and later changes arrive, in order, above it.
func TestRealRestoreSendsReset(t *testing.T) {
	ts := startServer(t, realtime.Options{})
	for i := range 5 {
		ts.put("default", fmt.Sprintf("k%d", i), "1")
	}
	snap := ts.snapshot()
	for i := range 5 {
		ts.put("default", fmt.Sprintf("later%d", i), "2") // 6..10, undone by the restore
	}

	plain := testkit.DialWatch(t, ts.wsURL(nil), nil)
	plain.Expect(ctxd.TypeSubscribed)
	batch := testkit.DialWatch(t, ts.wsURL(url.Values{"batch": {"true"}, "from_rev": {"7"}}), nil)
	batch.Expect(ctxd.TypeSubscribed)
	assert.Equal(t, []uint64{8, 9, 10}, revs(batch.Changes(10)))

	res, err := ts.st.Restore(context.Background(), snap, ctxd.RestoreOptions{})
	require.NoError(t, err)
	for _, c := range []*wsClient{plain, batch} {
		m := c.Expect(ctxd.TypeReset)
		assert.Equal(t, res.Revision, m.Rev)
	}
	_, err = ts.st.Get("default", "later0")
	require.ErrorIs(t, err, ctxd.ErrNotFound)

	rev := ts.put("default", "after", "3")
	require.Greater(t, rev, res.Revision)
	for _, c := range []*wsClient{plain, batch} {
		got := c.Changes(rev)
		assert.Equal(t, []uint64{rev}, revs(got))
		assert.Equal(t, "after", got[0].Key)
	}
	// Resuming from before the snapshot's revision, where both histories
	// agree: the restored history is replayed.
	c := testkit.DialWatch(t, ts.wsURL(url.Values{"from_rev": {"3"}}), nil)
	c.Expect(ctxd.TypeSubscribed)
	assert.Equal(t, []uint64{4, 5, rev}, revs(c.Changes(rev)))
	// None of revision 6 (from_index=0), which the restore discarded: the
	// same as from_rev=5, the snapshot's, which resumes (before, it was
	// told compacted).
	none := testkit.DialWatch(t, ts.wsURL(url.Values{"from_rev": {"6"}, "from_index": {"0"}}), nil)
	assert.Equal(t, uint64(5), none.Expect(ctxd.TypeSubscribed).Rev)
	assert.Equal(t, []uint64{rev}, revs(none.Changes(rev)))
}

// A restore made while no client is connected (the hub's loop sleeps):
// the next client, whose position was checked against the restored
// store, gets no "reset", which would have moved it past the changes
// after its from_rev.
func TestRestoreWhileNoClientIsNoResetForTheNext(t *testing.T) {
	ts := startServer(t, realtime.Options{})
	ts.put("default", "k", "1")
	snap := ts.snapshot()
	ts.put("default", "k", "2")
	c := testkit.DialWatch(t, ts.wsURL(nil), nil) // the loop follows commits, then sleeps again
	c.Expect(ctxd.TypeSubscribed)
	require.NoError(t, c.Conn.Close())
	testkit.Eventually(t, func() bool { return ts.hub.Clients() == 0 })
	// A write with no one to serve: the loop passes over it, finds no
	// session and stops following commits (the restore will not wake it).
	ts.put("default", "k", "5")
	time.Sleep(100 * time.Millisecond)

	res, err := ts.st.Restore(context.Background(), snap, ctxd.RestoreOptions{})
	require.NoError(t, err)
	first := ts.put("default", "k", "3")
	last := ts.put("default", "k", "4")

	w := testkit.DialWatch(t, ts.wsURL(url.Values{"from_rev": {strconv.FormatUint(res.Revision, 10)}}), nil)
	w.Expect(ctxd.TypeSubscribed)
	got := w.Changes(last)
	assert.Equal(t, []uint64{first, last}, revs(got), "the changes after from_rev, no reset")
}
