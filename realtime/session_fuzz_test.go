package realtime_test

import (
	"bytes"
	"encoding/hex"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/gorilla/websocket"

	"github.com/framework0/ctxd"
	"github.com/framework0/ctxd/internal/testkit"
)

// maxErrorBytes bounds an error frame the server sends (its message may
// quote what the client sent; its id is the client's).
const maxErrorBytes = 8 << 10

// answerFields are the fields of each message /v1/watch sends (README,
// "Messages from the server"), besides type.
var answerFields = map[string][]string{
	ctxd.TypeSubscribed:            {"client_id", "rev", "index", "subscriptions", "batch", "id"},
	ctxd.TypeContextSnapshot:       {"rev", "keys", "complete", "id"},
	ctxd.TypeContextUpdated:        {"rev", "index", "count", "ns", "key", "op", "value", "version", "who", "timestamp", "expires_at", "expired"},
	ctxd.TypeBatch:                 {"messages"},
	ctxd.TypeContextSetConfirmed:   {"ns", "key", "version", "rev", "who", "timestamp", "id"},
	ctxd.TypeContextPatchConfirmed: {"ns", "key", "value", "version", "rev", "who", "timestamp", "id"},
	ctxd.TypeRegistrationConfirmed: {"client_id", "client_type", "name", "timestamp", "id"},
	ctxd.TypeClientStats:           {"connected_clients", "clients_by_type", "rev", "timestamp", "id"},
	ctxd.TypePong:                  {"rev", "id"},
	ctxd.TypeCompacted:             {"from_rev", "compacted_revision", "rev", "message", "id"},
	ctxd.TypeReset:                 {"rev", "message", "id"},
	ctxd.TypeError: {"code", "message", "id", "from_rev", "from_index", "retry_after_ms", "ns", "key", "current_version",
		"op_index", "op", "pointer"},
}

// FuzzSession runs a whole /v1/watch session on the whole server (a
// real HTTP server, its store in a temp folder): the handshake with a
// fuzz-chosen query, then the fuzz-chosen messages (separated by the
// record separator, one frame each), then a ping, which a live session
// answers whatever came before. Every frame the server sends until
// then (or until it closes the connection) must be a JSON object of the
// documented protocol (a known type, only that type's fields), an error
// frame within maxErrorBytes and any other answer within that plus the
// size of what the client sent (a confirmation names its key, not
// more; subscribed lists the subscriptions, each namespace of a subscribe
// with its prefix: 64 times that at most); a refused handshake is the API's
// JSON error, not a 500; the server logs no panic and no error; and the
// store's revision moves only by the writes the client is told of.
func FuzzSession(f *testing.F) {
	for _, seed := range []struct{ query, body string }{
		{"", `{"type":"ping","id":1}`},
		{"ns=team&prefix=app/", `{"type":"context_set","id":"a","ns":"team","key":"app/x","value":{"a":1}}`},
		{"snapshot=true", `{"type":"context_patch","id":2,"key":"fz","patch":{"a":2}}` + "\x1e" + `{"type":"context_patch","key":"fz","patch":[{"op":"test","path":"/a","value":3}]}`},
		{"from_rev=0&batch=true", `{"type":"subscribe","id":3,"ns":["a","b"],"prefix":"p","from_rev":1,"from_index":1}` + "\x1e" + `{"type":"unsubscribe","ns":"a","prefix":"p"}`},
		{"from_rev=99999999", `{"type":"client_register","id":4,"client_type":"dashboard","name":"fz"}` + "\x1e" + `{"type":"client_stats","id":5}`},
		{"ns=*", `{"type":"subscribe","snapshot":true,"ns":"*"}` + "\x1e" + `{"type":"nope","id":6}` + "\x1e" + `{}` + "\x1e" + `[]` + "\x1e" + `{`},
		{"from_index=1", ""}, {"ns=bad ns!", ""}, {"from_rev=x", ""}, {"snapshot=true&from_rev=1", ""}, {"zzz=1", ""},
		{"", `{"type":"context_set","key":"fz","value":1,"if_version":0,"nope":1}` + "\x1e" + `{"type":"context_set","key":"fz","value":1,"value":2}`},
		{"", "{\"type\":\"context_set\",\"key\":\"a\\ud800\",\"value\":1}\x1e{\"type\":\"\xff\"}\x1e{\"id\":{}}"},
		{"", `{"type":"` + strings.Repeat("\x7f", 100) + `","id":"` + strings.Repeat("i", 100) + `"}`},
	} {
		f.Add(seed.query, seed.body)
	}
	srv := testkit.StartServer(f)
	wsBase := "ws" + strings.TrimPrefix(srv.URL, "http") + "/v1/watch"
	f.Fuzz(func(t *testing.T, query, body string) {
		before := srv.Backend().Revision()
		s := openWatchFuzz(t, wsBase, query)
		if s != nil {
			for _, m := range strings.Split(body, "\x1e") {
				s.send(m)
			}
			s.send(`{"type":"ping","id":"fuzz-alive"}`)
			s.readUntilAlive(len(query) + len(body))
			s.close()
		}
		written := int(srv.Backend().Revision() - before)
		confirmed := 0
		if s != nil {
			confirmed = s.confirmed
		}
		if written != confirmed && (s == nil || !s.ended || written > strings.Count(body, "context_")) {
			t.Fatalf("%d writes, %d confirmed to the client", written, confirmed)
		}
		if log := srv.Logs.Take(); strings.Contains(log, "panic") || strings.Contains(log, `"level":"error"`) {
			t.Fatalf("the server logged an error:\n%.4000s", log)
		}
	})
}

// watchFuzz is one /v1/watch session of FuzzSession.
type watchFuzz struct {
	t         *testing.T
	ws        *websocket.Conn
	ended     bool // the server closed the connection
	confirmed int  // context_set_confirmed and context_patch_confirmed
}

// openWatchFuzz connects with the query; nil when the handshake is
// refused (with the API's JSON error).
func openWatchFuzz(t *testing.T, base, query string) *watchFuzz {
	u := base
	if query != "" {
		u += "?" + requestLineSafe(query)
	}
	d := websocket.Dialer{HandshakeTimeout: testkit.Deadline}
	ws, resp, err := d.Dial(u, nil)
	if err == nil {
		_ = resp.Body.Close()
		return &watchFuzz{t: t, ws: ws}
	}
	if resp == nil { // a URL the dialer refuses to send: nothing reached the server
		if errors.Is(err, websocket.ErrBadHandshake) {
			t.Fatalf("handshake of %q: %v", query, err)
		}
		return nil
	}
	_ = resp.Body.Close()
	// The dialer keeps 1,024 bytes of a refusal: ask again for all of it.
	req, err := http.NewRequest(http.MethodGet, "http"+strings.TrimPrefix(u, "ws"), nil)
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Connection", "Upgrade")
	req.Header.Set("Upgrade", "websocket")
	req.Header.Set("Sec-WebSocket-Version", "13")
	req.Header.Set("Sec-WebSocket-Key", "dGhlIHNhbXBsZSBub25jZQ==")
	resp, err = http.DefaultClient.Do(req)
	if err != nil {
		t.Fatalf("handshake of %q: %v", query, err)
	}
	b, _ := io.ReadAll(resp.Body)
	_ = resp.Body.Close()
	var e struct {
		Error struct {
			Code    string `json:"code"`
			Message string `json:"message"`
		} `json:"error"`
	}
	if resp.StatusCode >= 500 && resp.StatusCode != http.StatusServiceUnavailable ||
		resp.StatusCode < 400 || json.Unmarshal(b, &e) != nil || e.Error.Code == "" || e.Error.Message == "" {
		t.Fatalf("handshake of %.100q answered %d %.300q", query, resp.StatusCode, b)
	}
	if len(b) > maxErrorBytes {
		t.Fatalf("handshake of %d bytes (%.100q) refused with %d bytes (%.300q...): more than %d", len(query), query, len(b), b, maxErrorBytes)
	}
	return nil
}

// requestLineSafe percent-encodes the bytes of query that an HTTP
// request line cannot hold (Go's server answers such a line itself, in
// plain text): the server still decodes them from the query.
func requestLineSafe(query string) string {
	var b strings.Builder
	for i := 0; i < len(query); i++ {
		if c := query[i]; c <= ' ' || c >= 0x7f || c == '#' {
			b.WriteString("%" + strings.ToUpper(hex.EncodeToString([]byte{c})))
			continue
		}
		b.WriteByte(query[i])
	}
	return b.String()
}

func (s *watchFuzz) send(m string) {
	if s.ended {
		return
	}
	_ = s.ws.SetWriteDeadline(time.Now().Add(testkit.Deadline))
	if err := s.ws.WriteMessage(websocket.TextMessage, []byte(m)); err != nil {
		s.ended = true // closed by the server: what it sent is read no more
	}
}

// readUntilAlive reads and checks frames until the pong of the last ping,
// or the server's close frame. sent is the size of everything the client
// sent.
func (s *watchFuzz) readUntilAlive(sent int) {
	t := s.t
	for !s.ended {
		_ = s.ws.SetReadDeadline(time.Now().Add(testkit.Deadline))
		typ, data, err := s.ws.ReadMessage()
		var ce *websocket.CloseError
		switch {
		case errors.As(err, &ce):
			switch ce.Code {
			case websocket.CloseNormalClosure, websocket.ClosePolicyViolation, websocket.CloseMessageTooBig, websocket.CloseTryAgainLater:
			default:
				t.Fatalf("closed with %d %q", ce.Code, ce.Text)
			}
			s.ended = true
			return
		case err != nil:
			t.Fatalf("the WebSocket failed without a close frame: %v", err)
		case typ != websocket.TextMessage:
			t.Fatalf("a frame of type %d", typ)
		}
		if s.check(data, sent) {
			return
		}
	}
}

// check checks a frame; true when it is the pong of the last ping.
func (s *watchFuzz) check(data []byte, sent int) bool {
	t := s.t
	m := decodeDocumented(t, data)
	var typ string
	_ = json.Unmarshal(m["type"], &typ)
	size := len(data)
	switch typ {
	case ctxd.TypeContextUpdated, ctxd.TypeContextSnapshot:
		return false // the feed: what the store holds
	case ctxd.TypeBatch:
		for _, raw := range decodeBatch(t, m["messages"]) {
			decodeDocumented(t, raw)
		}
		return false
	case ctxd.TypeContextSetConfirmed:
		s.confirmed++
	case ctxd.TypeContextPatchConfirmed:
		s.confirmed++
		size -= len(m["value"]) // the value the patch left
	case ctxd.TypeError:
		var e struct{ Code, Message string }
		if json.Unmarshal(data, &e) != nil || e.Code == "" || e.Message == "" {
			t.Fatalf("an error without its code or message: %.300q", data)
		}
		if size > maxErrorBytes {
			t.Fatalf("an error of %d bytes (%.300q...): more than %d", size, data, maxErrorBytes)
		}
	case ctxd.TypePong:
		if string(m["id"]) == `"fuzz-alive"` {
			return true
		}
	case ctxd.TypeSubscribed:
		// It lists every subscription: up to 64, one per namespace
		// of a subscribe, each with the subscribe's prefix.
		sent *= 64
	}
	if size > maxErrorBytes+sent {
		t.Fatalf("an answer of %d bytes to %d bytes sent (%.300q...)", size, sent, data)
	}
	return false
}

// decodeDocumented decodes a message the server sent: a JSON object of
// a documented type with only that type's fields.
func decodeDocumented(t *testing.T, data []byte) map[string]json.RawMessage {
	var m map[string]json.RawMessage
	if err := json.Unmarshal(data, &m); err != nil {
		t.Fatalf("a frame that is not a JSON object: %.300q", data)
	}
	var typ string
	if json.Unmarshal(m["type"], &typ) != nil {
		t.Fatalf("a frame without a type: %.300q", data)
	}
	fields, ok := answerFields[typ]
	if !ok {
		t.Fatalf("a frame of an undocumented type: %.300q", data)
	}
	for k := range m {
		if k != "type" && !slices.Contains(fields, k) {
			t.Fatalf("a %s with field %q: %.300q", typ, k, data)
		}
	}
	if id, ok := m["id"]; ok && !bytes.HasPrefix(id, []byte(`"`)) && !isNumber(id) {
		t.Fatalf("an id that is neither a string nor a number: %.300q", data)
	}
	return m
}

func decodeBatch(t *testing.T, raw json.RawMessage) []json.RawMessage {
	var msgs []json.RawMessage
	if json.Unmarshal(raw, &msgs) != nil || len(msgs) < 2 {
		t.Fatalf("a batch of %.300q", raw)
	}
	return msgs
}

func isNumber(b []byte) bool {
	var f float64
	return json.Unmarshal(b, &f) == nil
}

// close ends the session from the client's side.
func (s *watchFuzz) close() {
	_ = s.ws.WriteControl(websocket.CloseMessage, websocket.FormatCloseMessage(websocket.CloseNormalClosure, ""), time.Now().Add(time.Second))
	_ = s.ws.Close()
}
