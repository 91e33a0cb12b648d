package httpapi_test

import (
	"bufio"
	"bytes"
	"cmp"
	"encoding/json"
	"errors"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/framework0/ctxd"
	"github.com/framework0/ctxd/configs"
	"github.com/framework0/ctxd/httpapi"
	"github.com/framework0/ctxd/internal/testkit"
)

// FuzzRequest sends one request per input to the whole server
// (testkit.StartServer: the API, the WebSocket and Socket.IO handshakes,
// snapshots, dumps, the /ctx routes on namespace team, access control on)
// over a real connection, written byte by byte as the input says, so
// that what no Go client would send reaches it too. The input picks a
// method (odd ones included), a route shape whose segments it fills
// (escaped, or raw), a query string, header lines, a token and a body.
// Every answer must be what the rule promises: "bad input gets a clear
// 4xx JSON error and changes nothing; the server never panics on input":
//
//   - never a 500, nor a panic or an error in the server's log;
//   - an error answer (4xx, 5xx) is {"error":{"code","message"}} with a
//     code an answer may carry, sent with that code's status (the error
//     tables). Except net/http's own plain-text answers to a request it
//     cannot parse (400, 431, 501, 505; 417 to an Expect it does not
//     know), which never reach the handler (no X-Request-Id), and the
//     Engine.IO server's {"code":n,"message"} on /socket.io/;
//   - an error answer (but outcome_unknown) leaves the store's revision
//     where it was, but for keys expiring meanwhile (changes by ctxd:ttl).
//
// The server is started once per fuzzing process and keeps its data
// from input to input (seeded with a few keys, a snapshot and a dump,
// which the route shapes name when the input leaves the name empty); it
// keeps at most a few snapshots.
func FuzzRequest(f *testing.F) {
	for _, seed := range requestSeeds {
		f.Add(seed.method, seed.route, seed.opts, seed.seg1, seed.seg2, seed.query, seed.header, []byte(seed.body))
	}
	srv := startFuzzServer(f)
	f.Fuzz(func(t *testing.T, method, route, opts uint8, seg1, seg2, query, header string, body []byte) {
		in := fuzzInput{method: method, route: route, opts: opts, seg1: seg1, seg2: seg2, query: query, header: header, body: body}
		srv.check(t, in)
	})
}

// fuzzInput is one input of FuzzRequest. opts: bits 0-2 the token
// (fuzzTokens), bit 3 a chunked body, bit 4 the segments raw (not
// path-escaped).
type fuzzInput struct {
	method, route, opts uint8
	seg1, seg2          string
	query, header       string
	body                []byte
}

const (
	optChunked = 1 << 3
	optRaw     = 1 << 4
)

// fuzzMethods are the methods an input picks from (method modulo their
// number): the API's, and others a client may send.
var fuzzMethods = []string{
	http.MethodGet, http.MethodHead, http.MethodPut, http.MethodPost, http.MethodPatch, http.MethodDelete,
	http.MethodOptions, http.MethodTrace, http.MethodConnect, "PROPFIND", "get", "M-SEARCH", "GET\x00", "",
}

// fuzzRoute is a route shape: its path, where {1} and {2} are the
// input's segments (def when the input's is empty: "$snap" names the
// newest snapshot, "$dump" the newest dump).
type fuzzRoute struct {
	path string
	def  [2]string
}

// fuzzRoutes are the shapes an input picks from (route modulo their
// number); the last sends seg1 as the whole request target.
var fuzzRoutes = []fuzzRoute{
	{"/v1/ns/{1}/keys/{2}", [2]string{"default", "k"}},
	{"/v1/ns/{1}/keys/{2}/history", [2]string{"default", "k"}},
	{"/v1/ns/{1}/keys/{2}/keepalive", [2]string{"default", "ttl"}},
	{"/v1/ns/{1}/keys", [2]string{"default"}},
	{"/v1/ns", [2]string{}},
	{"/v1/txn", [2]string{}},
	{"/v1/watch", [2]string{}},
	{"/v1/status", [2]string{}},
	{"/v1/snapshots", [2]string{}},
	{"/v1/snapshots/upload", [2]string{}},
	{"/v1/snapshots/{1}", [2]string{"$snap"}},
	{"/v1/snapshots/{1}/export", [2]string{"$snap"}},
	{"/v1/snapshots/{1}/restore", [2]string{"$snap"}},
	{"/v1/ns/{1}/export", [2]string{"default"}},
	{"/v1/ns/{1}/import", [2]string{"imported"}},
	{"/v1/ns/{1}/dumps", [2]string{"default"}},
	{"/v1/dumps", [2]string{}},
	{"/v1/dumps/{1}", [2]string{"$dump"}},
	{"/v1/compact", [2]string{}},
	{"/v1/defrag", [2]string{}},
	{"/ctx", [2]string{}},
	{"/ctx/{1}", [2]string{"k"}},
	{"/ctx/all", [2]string{}},
	{"/ctx/history", [2]string{}},
	{"/ctx/status", [2]string{}},
	{"/ctx/dump", [2]string{}},
	{"/ctx/dump/list", [2]string{}},
	{"/ctx/dump/{1}", [2]string{"$dump"}},
	{"/healthz", [2]string{}},
	{"/readyz", [2]string{}},
	{"/metrics", [2]string{}},
	{"/v1/openapi.json", [2]string{}},
	{"/", [2]string{}},
	{"/ui/{1}/{2}", [2]string{"x", "app.js"}},
	{"/socket.io/", [2]string{}},
	{"{raw}", [2]string{"/"}},
}

// fuzzTokens are the bearer tokens an input picks from (opts & 7): the
// access tests' (testTokensYAML), none, and one the server never issued.
var fuzzTokens = []*string{&tokAdmin, nil, &tokWrite, &tokRead, &tokLimited, &tokMetrics, &tokOther, new(string)}

// fuzzServer is FuzzRequest's server.
type fuzzServer struct {
	s *testkit.Server
}

func startFuzzServer(f *testing.F) *fuzzServer {
	tokens := filepath.Join(f.TempDir(), "tokens.yaml")
	require.NoError(f, os.WriteFile(tokens, []byte(testTokensYAML()), 0o600))
	s := testkit.StartServer(f, testkit.WithConfig(func(c *configs.Config) {
		c.Compat.Namespace = "team"
		c.Auth.Mode, c.Auth.TokensFile = configs.AuthOn, tokens
		c.Snapshots.MaxUploadBytes = 1 << 20
		c.Dumps.Keep = 3
	}))
	st := s.Backend()
	for _, w := range []ctxd.Write{
		{Namespace: "default", Key: "k", Op: ctxd.OpPut, Value: json.RawMessage(`{"a":[1,{"b":"c"}],"n":null}`), Who: "seed"},
		{Namespace: "default", Key: "a/b", Op: ctxd.OpPut, Value: json.RawMessage(`"x"`), Who: "seed"},
		{Namespace: "default", Key: "ttl", Op: ctxd.OpPut, Value: json.RawMessage(`1`), Who: "seed", TTL: time.Hour},
		{Namespace: "team", Key: "k", Op: ctxd.OpPut, Value: json.RawMessage(`[1,2,3]`), Who: "seed"},
		{Namespace: "team", Key: "app.x", Op: ctxd.OpPut, Value: json.RawMessage(`{"y":true}`), Who: "seed"},
	} {
		_, err := st.Txn(bg, []ctxd.Write{w})
		require.NoError(f, err)
	}
	_, err := s.Server().Snapshots().Create(bg, "test")
	require.NoError(f, err)
	fs := &fuzzServer{s: s}
	// A dump in the dump folder, for the download routes to name.
	res, err := fs.send(f, seed("POST", "/ctx/dump", asAdmin, "", "", "", "", "").input().bytes(f, fs))
	require.NoError(f, err)
	require.Equal(f, http.StatusOK, res.status, "%s", res.body)
	s.Logs.Take()
	return fs
}

// answer is what came back.
type answer struct {
	status int
	header http.Header
	body   []byte
}

// check sends in and checks the answer, the log and the revision.
func (fs *fuzzServer) check(t *testing.T, in fuzzInput) {
	st := fs.s.Backend()
	req := in.bytes(t, fs)
	before := st.Revision()
	res, err := fs.send(t, req)
	fs.pruneSnapshots(t)
	log := fs.s.Logs.Take()
	if line := troubleInLog(log); line != "" {
		t.Fatalf("the server logged trouble for request %q:\n%s", req, line)
	}
	if err != nil {
		t.Fatalf("no answer to request %q: %v", req, err)
	}
	if res.status < 400 {
		return
	}
	where := func() string {
		return "request " + strconv.Quote(string(req)) + ": " + strconv.Itoa(res.status) + " " + string(res.body)
	}
	if res.status == http.StatusInternalServerError {
		t.Fatalf("500 to %s", where())
	}
	code := checkErrorAnswer(t, req, res, where)
	if code == ctxd.CodeOutcomeUnknown {
		return
	}
	if after := st.Revision(); after != before {
		changes, err := st.ReadLog(before, int(after-before)+1)
		require.NoError(t, err, "a refused request moved the revision from %d to %d: %s", before, after, where())
		for _, c := range changes {
			if c.Who != ctxd.WhoTTL || !c.Expired {
				t.Fatalf("a refused request moved the revision from %d to %d (change %+v): %s", before, after, c, where())
			}
		}
	}
}

// checkErrorAnswer checks an error answer's form and returns its code
// ("" for the answers documented otherwise).
func checkErrorAnswer(t *testing.T, req []byte, res answer, where func() string) string {
	if res.header.Get("X-Request-Id") == "" {
		// Not through the handler: net/http's own answer to a request
		// it could not parse.
		switch res.status {
		case http.StatusBadRequest, http.StatusRequestHeaderFieldsTooLarge, http.StatusNotImplemented, http.StatusHTTPVersionNotSupported:
			if !strings.HasPrefix(res.header.Get("Content-Type"), "text/plain") {
				t.Fatalf("net/http's answer is not its plain text: %s", where())
			}
		case http.StatusExpectationFailed:
		default:
			t.Fatalf("an answer without X-Request-Id (not from the handler): %s", where())
		}
		return ""
	}
	if ct := res.header.Get("Content-Type"); ct != "application/json" {
		t.Fatalf("error answer of Content-Type %q: %s", ct, where())
	}
	if requestMethod(req) == http.MethodHead {
		return "" // no body to read the code from
	}
	if isEngineIO(req) {
		// The Engine.IO server's own refusal; the API's (a method it
		// does not route, a body refused before it) are as everywhere.
		var e struct {
			Code    *int    `json:"code"`
			Message *string `json:"message"`
		}
		if err := strictJSON(res.body, &e); err == nil && e.Code != nil && e.Message != nil && *e.Message != "" {
			return ""
		}
	}
	var e struct {
		Error struct {
			Code              string  `json:"code"`
			Message           string  `json:"message"`
			NS                *string `json:"ns"`
			Key               *string `json:"key"`
			CurrentVersion    *uint64 `json:"current_version"`
			CompactedRevision *uint64 `json:"compacted_revision"`
			OpIndex           *int    `json:"op_index"`
			Op                *string `json:"op"`
			Pointer           *string `json:"pointer"`
		} `json:"error"`
		Status *string `json:"status"` // the /ctx routes': "error"
	}
	if err := strictJSON(res.body, &e); err != nil {
		t.Fatalf("error answer not the JSON error object (%v): %s", err, where())
	}
	if e.Error.Code == "" || e.Error.Message == "" {
		t.Fatalf("error answer without its code or message: %s", where())
	}
	if e.Status != nil && *e.Status != "error" {
		t.Fatalf("error answer with status %q: %s", *e.Status, where())
	}
	status, ok := httpapi.ErrorStatus(e.Error.Code)
	if !ok {
		t.Fatalf("error code %q is not in the error tables: %s", e.Error.Code, where())
	}
	if status != res.status {
		t.Fatalf("error code %q sent with %d; the tables send it with %d: %s", e.Error.Code, res.status, status, where())
	}
	return e.Error.Code
}

// strictJSON decodes one JSON value into v, unknown members refused.
func strictJSON(b []byte, v any) error {
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		return err
	}
	if dec.More() {
		return errors.New("data after the JSON value")
	}
	return nil
}

// requestMethod is the method of the request line.
func requestMethod(req []byte) string {
	m, _, _ := bytes.Cut(req, []byte(" "))
	return string(m)
}

// isEngineIO reports a request the Socket.IO route (/socket.io/) serves.
func isEngineIO(req []byte) bool {
	line, _, _ := bytes.Cut(req, []byte("\r\n"))
	f := strings.Fields(string(line))
	if len(f) < 2 {
		return false
	}
	u, err := url.ParseRequestURI(f[1])
	return err == nil && u.Path == "/socket.io/"
}

// troubleInLog returns the first line of log that tells of a panic or an
// error (but the access log's lines, whose statuses are checked), or "".
func troubleInLog(log string) string {
	for _, line := range strings.Split(log, "\n") {
		if line == "" {
			continue
		}
		var m map[string]any
		if err := json.Unmarshal([]byte(line), &m); err != nil {
			return line // not zerolog's
		}
		msg, _ := m["message"].(string)
		_, panicked := m["panic"]
		switch {
		case panicked, strings.Contains(msg, "panic"):
			return line
		case m["level"] == "error" && msg != "request", m["component"] == "http": // net/http's own log
			return line
		}
	}
	return ""
}

// send writes req on a new connection and reads the answer, then waits
// until the server is done with the connection: what it logs of the
// request is in its log by then.
func (fs *fuzzServer) send(t testing.TB, req []byte) (answer, error) {
	conn, err := net.Dial("tcp", fs.s.Addr)
	require.NoError(t, err)
	defer conn.Close()
	require.NoError(t, conn.SetDeadline(time.Now().Add(testkit.Deadline)))
	_, _ = conn.Write(req) // the server may answer and close before it read all
	br := bufio.NewReader(conn)
	hreq := &http.Request{Method: requestMethod(req)}
	for {
		res, err := http.ReadResponse(br, hreq)
		if err != nil {
			return answer{}, err
		}
		if res.StatusCode >= 100 && res.StatusCode < 200 && res.StatusCode != http.StatusSwitchingProtocols {
			continue // 100 Continue, before the answer
		}
		var body bytes.Buffer
		_, err = body.ReadFrom(res.Body)
		res.Body.Close()
		if err == nil {
			// The server closes the connection once it has finished the
			// request (Connection: close), or on the end of the next
			// one's (keep-alive, a WebSocket).
			err = conn.(*net.TCPConn).CloseWrite()
		}
		if err == nil {
			_, err = io.Copy(io.Discard, br)
		}
		return answer{status: res.StatusCode, header: res.Header, body: body.Bytes()}, err
	}
}

// pruneSnapshots keeps the newest few snapshots: the input may take one
// per request, each a copy of the database.
func (fs *fuzzServer) pruneSnapshots(t *testing.T) {
	snaps := fs.s.Server().Snapshots()
	list, err := snaps.List()
	require.NoError(t, err)
	const keep = 3
	if len(list) <= keep {
		return
	}
	slices.SortFunc(list, func(a, b ctxd.SnapshotMeta) int { return a.Created.Compare(b.Created) })
	for _, m := range list[:len(list)-keep] {
		require.NoError(t, snaps.Delete(m.ID))
	}
}

// newest returns the name of the newest snapshot ("$snap") or dump
// ("$dump"), or "none".
func (fs *fuzzServer) newest(t testing.TB, what string) string {
	switch what {
	case "$snap":
		list, err := fs.s.Server().Snapshots().List()
		if err == nil && len(list) > 0 {
			return slices.MaxFunc(list, func(a, b ctxd.SnapshotMeta) int { return a.Created.Compare(b.Created) }).ID
		}
	case "$dump":
		names := testkit.DirNames(t, fs.s.Config.DumpsFolder())
		if len(names) > 0 {
			return names[len(names)-1]
		}
	}
	return "none"
}

// bytes is the request in, as written on the connection.
func (in fuzzInput) bytes(t testing.TB, fs *fuzzServer) []byte {
	noCRLF := strings.NewReplacer("\r", "", "\n", "")
	method := fuzzMethods[int(in.method)%len(fuzzMethods)]
	route := fuzzRoutes[int(in.route)%len(fuzzRoutes)]
	segs := [2]string{in.seg1, in.seg2}
	for i := range segs {
		if segs[i] == "" {
			segs[i] = route.def[i]
			if strings.HasPrefix(segs[i], "$") {
				segs[i] = fs.newest(t, segs[i])
			}
		} else if in.opts&optRaw == 0 {
			segs[i] = url.PathEscape(segs[i])
		}
		segs[i] = noCRLF.Replace(segs[i])
	}
	target := strings.NewReplacer("{1}", segs[0], "{2}", segs[1]).Replace(route.path)
	if route.path == "{raw}" {
		target = noCRLF.Replace(cmp.Or(in.seg1, "/"))
	}
	if in.query != "" {
		target += "?" + noCRLF.Replace(in.query)
	}
	var b bytes.Buffer
	b.WriteString(method + " " + target + " HTTP/1.1\r\n")
	host, conn := fs.s.Addr, "close"
	var auth bool
	for _, line := range strings.Split(in.header, "\n") {
		line = strings.TrimSuffix(line, "\r")
		name, value, ok := strings.Cut(line, ":")
		if !ok {
			continue
		}
		switch strings.ToLower(strings.TrimSpace(name)) {
		case "content-length", "transfer-encoding":
			continue // the framing is the harness's: a wrong one would hang
		case "host":
			host = strings.TrimSpace(value)
			continue
		case "connection":
			conn = strings.TrimSpace(value)
			continue
		case "authorization":
			auth = true
		}
		b.WriteString(line + "\r\n")
	}
	b.WriteString("Host: " + host + "\r\nConnection: " + conn + "\r\n")
	if tok := fuzzTokens[in.opts&7]; tok != nil && !auth {
		b.WriteString("Authorization: Bearer " + cmp.Or(*tok, "not-a-token") + "\r\n")
	}
	switch {
	case in.opts&optChunked != 0:
		b.WriteString("Transfer-Encoding: chunked\r\n\r\n")
		for rest := in.body; len(rest) > 0; {
			n := min(len(rest), 7)
			b.WriteString(strconv.FormatInt(int64(n), 16) + "\r\n")
			b.Write(rest[:n])
			b.WriteString("\r\n")
			rest = rest[n:]
		}
		b.WriteString("0\r\n\r\n")
	case len(in.body) > 0 || (method != http.MethodGet && method != http.MethodHead):
		b.WriteString("Content-Length: " + strconv.Itoa(len(in.body)) + "\r\n\r\n")
		b.Write(in.body)
	default:
		b.WriteString("\r\n")
	}
	return b.Bytes()
}

// requestSeed is a seed of FuzzRequest, its method and route by name.
type requestSeed struct {
	method, route, opts uint8
	seg1, seg2          string
	query, header, body string
}

// seed makes a requestSeed; header holds "Name: value" lines.
func seed(method, route string, opts uint8, seg1, seg2, query, header, body string) requestSeed {
	m := slices.Index(fuzzMethods, method)
	r := slices.IndexFunc(fuzzRoutes, func(fr fuzzRoute) bool { return fr.path == route })
	if m < 0 || r < 0 {
		panic("FuzzRequest seed: no method " + method + " or route " + route)
	}
	return requestSeed{uint8(m), uint8(r), opts, seg1, seg2, query, header, body}
}

func (s requestSeed) input() fuzzInput {
	return fuzzInput{method: s.method, route: s.route, opts: s.opts, seg1: s.seg1, seg2: s.seg2, query: s.query, header: s.header, body: []byte(s.body)}
}

// Tokens (opts & 7): 0 admin, 1 none, 2 write, 3 read, 4 team-app
// (writes team, keys app.*), 5 metrics, 6 reads namespace other, 7 not
// a token.
const (
	asAdmin   = 0
	asNobody  = 1
	asReader  = 3
	asLimited = 4
	asUnknown = 7
)

const (
	keyRoute = "/v1/ns/{1}/keys/{2}"
	asMerge  = "Content-Type: " + mergeType + "\n"
	asPatch  = "Content-Type: " + jsonType + "\n"
)

var requestSeeds = []requestSeed{
	seed("GET", keyRoute, asAdmin, "", "", "", "", ""),
	seed("GET", keyRoute, asAdmin, "", "", "rev=1", "Accept: application/json\n", ""),
	seed("GET", keyRoute, asAdmin, "", "a/b", "", "", ""),
	seed("GET", keyRoute, asAdmin|optRaw, "default", "a%2Fb", "", "", ""),
	seed("HEAD", keyRoute, asAdmin, "", "", "", "If-None-Match: \"1\"\n", ""),
	seed("PUT", keyRoute, asAdmin, "", "new", "who=fuzz", "X-Ctxd-Who: someone\nIf-Match: \"0\"\nContent-Type: application/json\n", `{"x":[1,2]}`),
	seed("PUT", keyRoute, asAdmin, "", "", "", "If-None-Match: *\n", `1`),
	seed("PUT", keyRoute, asAdmin, "", "short", "ttl=5s", "", `"v"`),
	seed("PUT", keyRoute, asAdmin|optChunked, "team", "app.chunked", "", "", `{"long":"a value sent in chunks"}`),
	seed("PUT", keyRoute, asAdmin, "", "", "", "Expect: 100-continue\n", `2`),
	seed("PUT", keyRoute, asAdmin, "", "", "", "Expect: something\n", `2`),
	seed("PUT", keyRoute, asAdmin, "", "", "", "Content-Encoding: gzip\n", "\x1f\x8b\x08\x00"),
	seed("PATCH", keyRoute, asAdmin, "", "", "", asMerge, `{"a":null,"z":{"y":1}}`),
	seed("PATCH", keyRoute, asAdmin, "", "", "", asPatch+"If-Match: 1\n",
		`[{"op":"add","path":"/a/-","value":2},{"op":"test","path":"/n","value":null},{"op":"move","from":"/a/0","path":"/m"}]`),
	seed("PATCH", keyRoute, asAdmin, "", "", "", "Content-Type: text/plain\n", `{}`),
	seed("DELETE", keyRoute, asAdmin, "", "gone", "", "If-Match: 99\n", ""),
	seed("POST", "/v1/ns/{1}/keys/{2}/keepalive", asAdmin, "", "", "ttl=30s", "", ""),
	seed("GET", "/v1/ns/{1}/keys/{2}/history", asAdmin, "", "", "limit=2&before=3", "", ""),
	seed("GET", "/v1/ns/{1}/keys", asAdmin, "", "", "prefix=a&limit=1&values=false&after=a", "", ""),
	seed("GET", "/v1/ns/{1}/keys", asLimited, "team", "", "count=true&prefix=app.", "", ""),
	seed("GET", "/v1/ns", asReader, "", "", "", "", ""),
	seed("POST", "/v1/txn", asAdmin, "", "", "", "Content-Type: application/json\n",
		`{"who":"w","ops":[{"op":"put","key":"t","value":1,"ttl":"1s"},{"op":"patch","key":"k","patch":{"b":2}},{"op":"patch","key":"a/b","patch":[{"op":"replace","path":"","value":{"x":1}}],"patch_type":"json"},{"op":"delete","ns":"team","key":"k","if_version":1}]}`),
	seed("POST", "/v1/txn", asLimited, "", "", "", "Origin: http://evil.example\nContent-Type: text/plain\n", `{"ops":[{"op":"put","ns":"team","key":"app.y","value":1}]}`),
	seed("GET", "/v1/watch", asAdmin, "", "", "ns=default&from_rev=1&snapshot=true", "", ""),
	seed("GET", "/v1/watch", asAdmin, "", "", "ns=default", "Connection: Upgrade\nUpgrade: websocket\nSec-WebSocket-Version: 12\n", ""),
	seed("GET", "/v1/watch", asAdmin, "", "", "ns=team&prefix=app.&from_rev=2", "Connection: Upgrade\nUpgrade: websocket\nSec-WebSocket-Version: 13\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\n", ""),
	seed("GET", "/socket.io/", asAdmin, "", "", "EIO=4&transport=polling", "", ""),
	seed("GET", "/v1/status", asNobody, "", "", "", "", ""),
	seed("POST", "/v1/snapshots", asAdmin, "", "", "", "", ""),
	seed("GET", "/v1/snapshots", asAdmin, "", "", "", "", ""),
	seed("POST", "/v1/snapshots/upload", asAdmin, "", "", "", "Content-Type: application/octet-stream\nX-Ctxd-Sha256: 00\n", "SQLite format 3\x00"),
	seed("GET", "/v1/snapshots/{1}", asAdmin, "", "", "", "Range: bytes=0-10\n", ""),
	seed("GET", "/v1/snapshots/{1}", asAdmin, "", "", "", "Range: bytes=999999999-\nIf-Match: \"x\"\n", ""),
	seed("GET", "/v1/snapshots/{1}/export", asAdmin, "", "", "format=csv&ns=default&spreadsheet_safe=true", "", ""),
	seed("POST", "/v1/snapshots/{1}/restore", asAdmin, "", "", "dry_run=true&ns=default&prefix=a", "", ""),
	seed("DELETE", "/v1/snapshots/{1}", asAdmin, "nonexistent", "", "", "", ""),
	seed("GET", "/v1/ns/{1}/export", asAdmin, "", "", "format=json&history=true", "", ""),
	seed("GET", "/v1/ns/{1}/export", asReader, "", "", "format=pretty&rev=2", "", ""),
	seed("POST", "/v1/ns/{1}/import", asAdmin, "", "", "", "", `{"context":{"a":1,"b":{"c":[]}},"expires_at":{"a":"2999-01-01T00:00:00Z"}}`),
	seed("POST", "/v1/ns/{1}/dumps", asAdmin, "", "", "format=txt&filename=x&history=1", "", ""),
	seed("GET", "/v1/dumps", asAdmin, "", "", "", "", ""),
	seed("GET", "/v1/dumps/{1}", asAdmin, "", "", "", "Range: bytes=-5\n", ""),
	seed("DELETE", "/v1/dumps/{1}", asAdmin, "../ctxd.db", "", "", "", ""),
	seed("POST", "/v1/compact", asAdmin, "", "", "rev=2&keep_versions=1", "", ""),
	seed("POST", "/v1/defrag", asAdmin, "", "", "", "", ""),
	seed("GET", "/ctx", asAdmin, "", "", "key=k", "", ""),
	seed("POST", "/ctx", asAdmin, "", "", "", "", `{"key":"n","value":{"v":1},"who":"w","ttl":"5s"}`),
	seed("GET", "/ctx/{1}", asAdmin, "", "", "", "", ""),
	seed("DELETE", "/ctx/{1}", asAdmin, "missing", "", "who=w", "", ""),
	seed("GET", "/ctx/all", asAdmin, "", "", "", "", ""),
	seed("GET", "/ctx/history", asLimited, "", "", "key=k&who=seed", "", ""),
	seed("GET", "/ctx/status", asAdmin, "", "", "", "", ""),
	seed("POST", "/ctx/dump", asAdmin, "", "", "format=json", "", `{"format":"csv","include_history":"yes","filename":"f"}`),
	seed("GET", "/ctx/dump/list", asAdmin, "", "", "", "", ""),
	seed("GET", "/ctx/dump/{1}", asAdmin, "", "", "", "", ""),
	seed("GET", "/healthz", asNobody, "", "", "", "", ""),
	seed("GET", "/readyz", asNobody, "", "", "", "", ""),
	seed("GET", "/metrics", 5, "", "", "", "", ""),
	seed("GET", "/v1/openapi.json", asNobody, "", "", "", "", ""),
	seed("GET", "/", asNobody, "", "", "", "Accept: text/html\nAccept-Encoding: gzip\n", ""),
	seed("GET", "/ui/{1}/{2}", asNobody, "", "", "", "", ""),
	seed("GET", "/socket.io/", asAdmin, "", "", "EIO=4&transport=websocket", "", ""),
	seed("POST", "/socket.io/", asAdmin, "", "", "EIO=4&transport=polling&sid=none", "Content-Type: text/plain\n", "40"),
	seed("OPTIONS", "{raw}", asNobody, "*", "", "", "", ""),
	seed("OPTIONS", keyRoute, asNobody, "", "", "", "Origin: http://evil.example\nAccess-Control-Request-Method: PUT\n", ""),
	seed("GET", "{raw}", asAdmin, "/v1/ns/%zz/keys/k", "", "", "", ""),
	seed("GET", "{raw}", asAdmin, "http://127.0.0.1/v1/status", "", "", "", ""),
	seed("GET", "{raw}", asAdmin, "//v1/../v1/status", "", "", "", ""),
	seed("GET", "{raw}", asAdmin, "/v1/ns/default/keys/k", "", "rev=1;&x=%", "", ""),
	seed("TRACE", keyRoute, asAdmin, "", "", "", "", ""),
	seed("CONNECT", "{raw}", asAdmin, "127.0.0.1:1", "", "", "", ""),
	seed("PROPFIND", "/v1/ns", asAdmin, "", "", "", "", ""),
	seed("get", "/v1/status", asAdmin, "", "", "", "", ""),
	seed("GET\x00", "/v1/status", asAdmin, "", "", "", "", ""),
	seed("", "/v1/status", asAdmin, "", "", "", "", ""),
	seed("PUT", keyRoute, asReader, "", "", "", "", `3`),
	seed("PUT", keyRoute, asUnknown, "", "", "", "", `3`),
	seed("PUT", keyRoute, asAdmin, "", "", "", "X-Ctxd-Who: a\x01b\n", `3`),
	seed("PUT", keyRoute, asAdmin, "", "", "", "Host: evil.example\n", `3`),
}
