package socketio_test

import (
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"testing"
	"time"
	"unicode/utf8"

	"github.com/gorilla/websocket"

	"github.com/framework0/ctxd"
	"github.com/framework0/ctxd/internal/testkit"
	"github.com/framework0/ctxd/realtime/socketio"
)

// maxAnswerBytes bounds what the server queues to answer one packet it
// refuses (an error event, its ack): a client that sends and never reads
// holds at most 1,024 answers (the session is closed past them), so an
// answer that grew with the packet (an ack id or a namespace echoed
// whole) let one session hold 1,024 times max_message_bytes.
const maxAnswerBytes = 1 << 10

// FuzzDecode feeds the Socket.IO door's decoders, alone, a polling POST's
// body: the payload splits into packets and joins back into the same
// bytes (writePayload, with its Content-Length); each Socket.IO packet
// splits into type, namespace, ack id and data without losing a byte, and
// what the server builds to answer it (a refusal and its ack, a CONNECT
// to another namespace's CONNECT_ERROR, a pong) decodes back to the same
// ack id and namespace and stays within maxAnswerBytes, whatever the
// packet holds.
func FuzzDecode(f *testing.F) {
	for _, seed := range []string{
		"", "\x1e", "40", `40{"token":"t","ns":"team"}`, "2probe", "3", "5", "6", "1", "b4AQID",
		"42[\"context_set\",{\"key\":\"k\",\"value\":1}]\x1e2\x1e42" + `7["client_stats"]`,
		`421234["client_register",{"type":"agent"}]`, `42/admin,3["x"]`, `40/admin,{"token":"t"}`, "40/admin",
		"42/,1[1]", "4/", "41/x,", `451-["context_set",{"_placeholder":true,"num":0}]`, "43" + "12[]",
		"42" + strings.Repeat("9", 20) + "[", "40/" + strings.Repeat("n", 64) + ",{}",
		"2" + strings.Repeat("x", 100), "2\xff", "\x1e\x1e4\x1e", "4" + strings.Repeat("[", 1000),
	} {
		f.Add(seed)
	}
	f.Fuzz(func(t *testing.T, body string) {
		packets := socketio.DecodePayload(body)
		if got := strings.Join(packets, "\x1e"); got != body {
			t.Fatalf("payload %q split into %q, which joins into %q", body, packets, got)
		}
		w := httptest.NewRecorder()
		if err := socketio.WritePayload(w, packets); err != nil {
			t.Fatal(err)
		}
		if w.Body.String() != body || w.Header().Get("Content-Length") != strconv.Itoa(len(body)) {
			t.Fatalf("payload %q written back as %q, Content-Length %s", body, w.Body.String(), w.Header().Get("Content-Length"))
		}
		for _, p := range packets {
			switch {
			case p == "":
			case p[0] == '2':
				checkAnswer(t, p, socketio.Pong(p))
				if a := socketio.Pong(p); a[0] != '3' || len(a) > 1+len("probe") {
					t.Fatalf("ping %.40q answered %.40q", p, a)
				}
			case p[0] == '4' && len(p) > 1:
				decodeSocketIO(t, p[1:])
			}
		}
	})
}

// decodeSocketIO checks the decoding of Socket.IO packet p (not empty)
// and the answers built from it.
func decodeSocketIO(t *testing.T, p string) {
	typ, nsp, ack, data := socketio.ParsePacket(p)
	if typ != p[0] || nsp == "" || nsp[0] != '/' || strings.Contains(nsp, ",") {
		t.Fatalf("packet %.80q: type %q, namespace %.80q", p, typ, nsp)
	}
	if strings.Trim(ack, "0123456789") != "" || (data != "" && data[0] >= '0' && data[0] <= '9') {
		t.Fatalf("packet %.80q: ack id %.80q, then data %.80q", p, ack, data)
	}
	// Encoded back (the namespace before a comma, but for "/"), it is
	// the packet, or the packet named "/" or a namespace alone.
	t0 := p[:1]
	enc := t0 + ack + data
	if nsp != "/" {
		enc = t0 + nsp + "," + ack + data
	}
	if enc != p && p != t0+"/,"+ack+data && p != t0+nsp {
		t.Fatalf("packet %.80q decoded to type %q, namespace %.80q, ack %.80q, data %.80q: encoded back %.80q", p, typ, nsp, ack, data, enc)
	}
	answers := socketio.Refusal(p, ctxd.CodeBadRequest, "refused")
	for i, a := range answers {
		checkAnswer(t, p, a)
		var args []json.RawMessage
		switch atyp, ansp, aack, adata := socketio.ParsePacket(a[1:]); {
		case a[0] != '4' || ansp != "/":
			t.Fatalf("packet %.80q answered %.80q: not a Socket.IO packet of \"/\"", p, a)
		case json.Unmarshal([]byte(adata), &args) != nil:
			t.Fatalf("packet %.80q answered %.80q: its data is not a JSON array", p, a)
		case i == 0 && (atyp != '2' || aack != "" || len(args) != 2 || string(args[0]) != `"error"`):
			t.Fatalf("packet %.80q answered %.80q: not an error event", p, a)
		case i == 1 && (typ != '2' || atyp != '3' || aack != ack || len(args) != 1):
			t.Fatalf("packet %.80q (ack id %.40q) answered %.80q: not its ack", p, ack, a)
		}
	}
	if len(answers) != 1+btoi(typ == '2' && ack != "" && len(ack) <= socketio.MaxAckDigits) {
		t.Fatalf("packet %.80q answered %d packets", p, len(answers))
	}
	if typ == '0' && nsp != "/" && utf8.ValidString(p) { // the server refuses a packet that is not UTF-8 first
		a := socketio.NamespaceRefusal(nsp)
		checkAnswer(t, p, a)
		var m map[string]any
		atyp, ansp, aack, adata := socketio.ParsePacket(a[1:])
		var args []json.RawMessage
		connectError := atyp == '4' && ansp == nsp && json.Unmarshal([]byte(adata), &m) == nil
		errorEvent := atyp == '2' && ansp == "/" && json.Unmarshal([]byte(adata), &args) == nil && len(args) == 2 && string(args[0]) == `"error"`
		if a[0] != '4' || aack != "" || !connectError && !errorEvent {
			t.Fatalf("CONNECT %.80q answered %.80q: neither a CONNECT_ERROR of its namespace nor an error event", p, a)
		}
	}
}

// checkAnswer checks that a, an answer to packet p, is an Engine.IO
// packet within maxAnswerBytes that a polling answer, or a WebSocket text
// frame, can carry.
func checkAnswer(t *testing.T, p, a string) {
	t.Helper()
	if len(a) > maxAnswerBytes {
		t.Fatalf("packet of %d bytes (%.80q) answered with %d bytes (%.80q...): more than %d", len(p), p, len(a), a, maxAnswerBytes)
	}
	if a == "" || a[0] < '0' || a[0] > '6' || strings.Contains(a, "\x1e") || !utf8.ValidString(a) {
		t.Fatalf("packet %.80q answered %.80q: not an Engine.IO packet", p, a)
	}
}

func btoi(b bool) int {
	if b {
		return 1
	}
	return 0
}

// maxErrorBytes bounds an error event, or the ack that carries one, the
// server sends (its message may quote what the client sent).
const maxErrorBytes = 8 << 10

// FuzzSession sends fuzz-chosen packets to the whole server (a real HTTP
// server, its store in a temp folder) over one Engine.IO session: mode 0
// in one polling POST (the payload's packets joined by the record
// separator), 1 over a WebSocket each packet a frame, 2 over a WebSocket
// the payload as one frame; connect sends the Socket.IO CONNECT first.
// Then an Engine.IO ping of a probe's data, which a live session answers
// whatever came before. Every packet the server sends until then (or
// until the session ends) must be Engine.IO, its messages Socket.IO
// packets with JSON data, an error within maxErrorBytes; no request may
// hang; the server must log no panic and answer the next input's
// handshake; and the store's revision moves only by the writes the
// client is told of (context_set_confirmed): a refused context_set writes
// nothing.
func FuzzSession(f *testing.F) {
	deep := strings.Repeat("[", 9000) + strings.Repeat("]", 9000)
	deeper := strings.Repeat("[", 10001) + strings.Repeat("]", 10001)
	for _, seed := range []struct {
		mode    uint8
		connect bool
		body    string
	}{
		{0, true, `42["context_set",{"key":"fz","value":{"a":1}}]`},
		{1, true, `421["context_set",{"key":"fz","value":1,"if_version":0}]`},
		{2, true, `421["context_set",{"key":"fz","value":1,"nope":2}]`},
		{0, true, `42["context_set",{"key":"","value":1}]` + "\x1e" + `422["client_register",{"type":"agent","name":"f"}]` + "\x1e" + `423["client_stats"]`},
		{1, true, `42["context_set",{"key":"deep","value":` + deep + `}]`},
		{0, true, `427["context_set",{"key":"deeper","value":` + deeper + `}]`},
		{2, true, `42` + deeper},
		{0, true, `42["nope",1]` + "\x1e" + `42[` + "\x1e" + `42{}` + "\x1e" + `42[1]` + "\x1e" + `43[]` + "\x1e" + `49` + "\x1e" + `4`},
		{1, true, `451-["context_set",{"_placeholder":true,"num":0}]`},
		{0, true, `42` + strings.Repeat("1", 20) + `["client_stats"]`},
		{0, true, "6\x1e5\x1e3\x1e2\x1ebAQID"},
		{1, true, "41"}, {0, true, "1"}, {2, true, ""}, {0, false, ""},
		{0, false, `40{"ns":"bad ns!"}`}, {1, false, `40{"from_rev":"x"}`}, {2, false, `40{"from_rev":0,"from_index":3}`},
		{0, false, `40{"from_rev":99999999999}`}, {0, false, `40{"from_index":1}`}, {1, false, `40[`}, {0, false, `40/admin,{}`},
		{0, false, `40{"prefix":"fz","ns":"team"}` + "\x1e" + `42["context_set",{"key":"fz","value":2,"ns":"team"}]`},
		{0, false, `42["context_set",{"key":"fz","value":1}]`},
		{0, true, "42[\"context_set\",{\"key\":\"a\\ud800\",\"value\":1}]\x1e42[\"context_set\",{\"key\":\"\xff\",\"value\":1}]"},
	} {
		f.Add(seed.mode, seed.connect, seed.body)
	}
	srv := testkit.StartServer(f)
	hc := &http.Client{Timeout: fuzzWait}
	f.Fuzz(func(t *testing.T, mode uint8, connect bool, body string) {
		before := srv.Backend().Revision()
		s := openFuzzSession(t, srv, hc, mode%3 != 0)
		if connect {
			s.send("40")
			s.readUntil(func(p string) bool { return p[0] == '0' || p[0] == '4' }) // CONNECT's answer, or CONNECT_ERROR
		}
		if !s.ended {
			switch mode % 3 {
			case 0:
				s.post(body)
			case 1:
				for _, p := range strings.Split(body, "\x1e") {
					s.send(p)
				}
			case 2:
				s.send(body)
			}
		}
		if !s.ended {
			s.send("2probe")
			s.readUntil(func(p string) bool { return p == "3probe" })
		}
		// A write is confirmed to the client that made it; a refused
		// one wrote nothing.
		written := func() int { return int(srv.Backend().Revision() - before) }
		for !s.ended && s.confirmed < written() {
			s.fill()
		}
		if s.ended && written() > strings.Count(body, "context_set") || !s.ended && written() != s.confirmed {
			t.Fatalf("%d writes, %d confirmed to the client (session ended: %v)", written(), s.confirmed, s.ended)
		}
		s.close()
		if log := srv.Logs.Take(); strings.Contains(log, "panic") {
			t.Fatalf("the server logged a panic:\n%s", log)
		}
	})
}

// fuzzWait bounds every wait of FuzzSession for the server: each answer
// it waits for is due at once (the server pings every 30 s).
const fuzzWait = 10 * time.Second

// fuzzSession is one Engine.IO session of FuzzSession, on polling or a
// WebSocket.
type fuzzSession struct {
	t         *testing.T
	hc        *http.Client
	url       string // polling: .../socket.io/?EIO=4&transport=polling&sid=...
	ws        *websocket.Conn
	ended     bool     // the server ended the session
	read      []string // Socket.IO packets read (and "3probe"), not yet looked at
	confirmed int      // context_set_confirmed events
}

func openFuzzSession(t *testing.T, srv *testkit.Server, hc *http.Client, overWS bool) *fuzzSession {
	s := &fuzzSession{t: t, hc: hc}
	var open string
	if overWS {
		ws, resp, err := websocket.DefaultDialer.Dial("ws"+strings.TrimPrefix(srv.URL, "http")+"/socket.io/?EIO=4&transport=websocket", nil)
		if err != nil {
			t.Fatalf("the server does not answer a WebSocket handshake: %v", err)
		}
		_ = resp.Body.Close()
		s.ws = ws
		_ = ws.SetReadDeadline(time.Now().Add(fuzzWait))
		_, msg, err := ws.ReadMessage()
		if err != nil {
			t.Fatalf("no open packet: %v", err)
		}
		open = string(msg)
	} else {
		resp, err := hc.Get(srv.URL + "/socket.io/?EIO=4&transport=polling")
		if err != nil {
			t.Fatalf("the server does not answer a handshake: %v", err)
		}
		b, _ := io.ReadAll(resp.Body)
		_ = resp.Body.Close()
		open = string(b)
	}
	var hs struct {
		SID string `json:"sid"`
	}
	if !strings.HasPrefix(open, "0") || json.Unmarshal([]byte(open[1:]), &hs) != nil || hs.SID == "" {
		t.Fatalf("handshake answered %q", open)
	}
	s.url = srv.URL + "/socket.io/?EIO=4&transport=polling&sid=" + hs.SID
	return s
}

// send sends one Engine.IO packet (polling: a POST of it alone).
func (s *fuzzSession) send(p string) {
	if s.ws == nil {
		s.post(p)
		return
	}
	_ = s.ws.SetWriteDeadline(time.Now().Add(fuzzWait))
	if err := s.ws.WriteMessage(websocket.TextMessage, []byte(p)); err != nil {
		s.ended = true // closed by the server: what it sent before is read no more
	}
}

// post sends a polling payload; a refused one (400, 413) must be
// Engine.IO's JSON error. The session may go on (a body that is not
// UTF-8, refused by the server's gate): the next poll tells.
func (s *fuzzSession) post(payload string) {
	resp, err := s.hc.Post(s.url, "text/plain;charset=UTF-8", strings.NewReader(payload))
	if err != nil {
		s.t.Fatalf("POST of %.100q: %v", payload, err)
	}
	b, _ := io.ReadAll(resp.Body)
	_ = resp.Body.Close()
	switch resp.StatusCode {
	case http.StatusOK:
		if string(b) != "ok" {
			s.t.Fatalf("POST answered %.100q", b)
		}
	case http.StatusBadRequest, http.StatusRequestEntityTooLarge:
		s.engineError(resp.StatusCode, b)
	default:
		s.t.Fatalf("POST answered %d %.200q", resp.StatusCode, b)
	}
}

// engineError checks a refused request's answer, {"code","message"}.
func (s *fuzzSession) engineError(status int, b []byte) {
	var e struct {
		Code    *int   `json:"code"`
		Message string `json:"message"`
	}
	if json.Unmarshal(b, &e) != nil || e.Code == nil || e.Message == "" {
		s.t.Fatalf("a %d answered %.200q: not Engine.IO's error", status, b)
	}
}

// readUntil reads packets until done accepts one (each checked), or the
// session ends.
func (s *fuzzSession) readUntil(done func(string) bool) {
	for !s.ended || len(s.read) > 0 {
		if len(s.read) == 0 {
			s.fill()
			continue
		}
		p := s.read[0]
		s.read = s.read[1:]
		if done(p) {
			return
		}
	}
}

// fill reads what the server sends next: a poll's packets, or a frame.
func (s *fuzzSession) fill() {
	var packets []string
	if s.ws != nil {
		_ = s.ws.SetReadDeadline(time.Now().Add(fuzzWait))
		typ, msg, err := s.ws.ReadMessage()
		var ce *websocket.CloseError
		switch {
		case errors.As(err, &ce):
			s.ended = true
			return
		case err != nil:
			s.t.Fatalf("the WebSocket failed without a close frame: %v", err)
		case typ != websocket.TextMessage:
			s.t.Fatalf("a frame of type %d", typ)
		}
		packets = []string{string(msg)}
	} else {
		resp, err := s.hc.Get(s.url)
		if err != nil {
			s.t.Fatalf("poll: %v", err)
		}
		b, _ := io.ReadAll(resp.Body)
		_ = resp.Body.Close()
		if resp.StatusCode != http.StatusOK { // the session is gone
			s.engineError(resp.StatusCode, b)
			s.ended = true
			return
		}
		packets = strings.Split(string(b), "\x1e")
	}
	for _, p := range packets {
		s.check(p)
		switch {
		case p == "1":
			s.ended = true
		case p == "2":
			s.send("3")
		case strings.HasPrefix(p, "4"):
			s.read = append(s.read, p[1:])
		case p == "3probe":
			s.read = append(s.read, p)
		}
	}
}

// check checks a packet the server sent: Engine.IO, and a message a
// Socket.IO packet of "/" with JSON data.
func (s *fuzzSession) check(p string) {
	t := s.t
	if !utf8.ValidString(p) {
		t.Fatalf("a packet that is not UTF-8: %.200q", p)
	}
	switch {
	case p == "1" || p == "2" || p == "6":
		return
	case p != "" && p[0] == '3' && len(p) <= len("3probe"): // a pong
		return
	case p == "" || p[0] != '4' || len(p) < 2:
		t.Fatalf("not an Engine.IO packet the server sends: %.200q", p)
	}
	typ, nsp, ack, data := socketio.ParsePacket(p[1:])
	if nsp != "/" && typ != '4' {
		t.Fatalf("a packet of namespace %.100q: %.200q", nsp, p)
	}
	var args []json.RawMessage
	var obj map[string]json.RawMessage
	switch typ {
	case '0':
		if json.Unmarshal([]byte(data), &obj) != nil || obj["sid"] == nil || ack != "" {
			t.Fatalf("a CONNECT answer without its sid: %.200q", p)
		}
	case '1':
		if data != "" || ack != "" {
			t.Fatalf("a DISCONNECT with data: %.200q", p)
		}
	case '2', '3':
		var name string
		if json.Unmarshal([]byte(data), &args) != nil || typ == '2' && (ack != "" || len(args) < 1 || json.Unmarshal(args[0], &name) != nil) ||
			typ == '3' && (ack == "" || len(args) != 1) {
			t.Fatalf("not an event or an ack: %.200q", p)
		}
		if len(ack) > socketio.MaxAckDigits {
			t.Fatalf("an ack id of %d digits: %.200q", len(ack), p)
		}
		if name == ctxd.TypeContextSetConfirmed {
			s.confirmed++
		}
		var e struct{ Code, Message string }
		if i := len(args) - 1; (name == ctxd.TypeError || typ == '3') && json.Unmarshal(args[i], &e) == nil && e.Code != "" {
			if e.Message == "" {
				t.Fatalf("an error without a message: %.200q", p)
			}
			if len(p) > maxErrorBytes {
				t.Fatalf("an error of %d bytes (%.200q...): more than %d", len(p), p, maxErrorBytes)
			}
		}
	case '4':
		if json.Unmarshal([]byte(data), &obj) != nil || obj["message"] == nil || ack != "" {
			t.Fatalf("a CONNECT_ERROR without a message: %.200q", p)
		}
		if len(p) > maxErrorBytes {
			t.Fatalf("a CONNECT_ERROR of %d bytes (%.200q...): more than %d", len(p), p, maxErrorBytes)
		}
	default:
		t.Fatalf("a Socket.IO packet of type %q: %.200q", typ, p)
	}
}

// close ends the session from the client's side (polling: it reads what
// is left, for the server to forget the session at once).
func (s *fuzzSession) close() {
	if s.ws != nil {
		s.send("1")
		_ = s.ws.Close()
		return
	}
	if !s.ended {
		s.send("1")
	}
	for !s.ended {
		s.fill()
	}
}
