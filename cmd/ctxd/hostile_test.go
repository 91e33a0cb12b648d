package main

import (
	"bufio"
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// hostileKind is what a hostile request may get back.
type hostileKind int

const (
	// jsonError: a 4xx with ctxd's JSON error body, from ctxd itself.
	jsonError hostileKind = iota
	// httpLevel: a request Go's HTTP server refuses before ctxd sees it
	// (oversized headers: 431; a malformed request line, header or
	// Content-Length: 400). It answers in plain text and closes the
	// connection; ctxd's JSON error is also accepted.
	httpLevel
	// slowClient: a client too slow to send its headers or body. The
	// server closes the connection at http.read_header_timeout or
	// http.read_timeout, after a JSON 4xx if a handler was reading the
	// body, or without an answer.
	slowClient
)

type hostileReq struct {
	name string
	raw  string
	kind hostileKind
	// head is sent at once, before raw.
	head string
	// trickle, when set, sends raw in pieces of this size, this far apart.
	trickle      int
	trickleEvery time.Duration
	// stall leaves the connection open after raw, without sending more.
	stall bool
}

// req builds a raw HTTP/1.1 request.
func req(method, target, body string, headers ...string) string {
	var b strings.Builder
	fmt.Fprintf(&b, "%s %s HTTP/1.1\r\nHost: ctxd\r\nConnection: close\r\n", method, target)
	for i := 0; i+1 < len(headers); i += 2 {
		fmt.Fprintf(&b, "%s: %s\r\n", headers[i], headers[i+1])
	}
	if body != "" || method == "PUT" || method == "POST" {
		fmt.Fprintf(&b, "Content-Length: %d\r\n", len(body))
	}
	b.WriteString("\r\n")
	b.WriteString(body)
	return b.String()
}

func hostileRequests() []hostileReq {
	var out []hostileReq
	add := func(kind hostileKind, name, raw string) {
		out = append(out, hostileReq{name: name, raw: raw, kind: kind})
	}

	// Broken JSON, to every route that reads a JSON body.
	broken := []string{`{`, `}`, `{"a":}`, `[1,2`, `nul`, `tru`, `"abc`, `{"a" 1}`, `{'a':1}`, `NaN`, `Infinity`,
		`-`, `01`, `1.`, `.5`, `+1`, `[1,]`, `{"a":1,}`, "\xff\xfe", "\"\xff\"", "{\"a\":\"\xc3\"}", "\"\xed\xa0\x80\"",
		"1 2", "{\"a\":1}garbage", "\x00", " "}
	for _, b := range broken {
		q := strconv.Quote(b)
		add(jsonError, "PUT broken "+q, req("PUT", "/v1/ns/default/keys/h", b))
		add(jsonError, "txn broken "+q, req("POST", "/v1/txn", b))
		add(jsonError, "txn op broken "+q, req("POST", "/v1/txn", `{"ops":[{"op":"put","key":"h","value":`+b+`}]}`))
		add(jsonError, "/ctx broken "+q, req("POST", "/ctx", b))
		add(jsonError, "import broken "+q, req("POST", "/v1/ns/default/import", b))
		if strings.TrimSpace(b) != "" { // no body: a dump with the defaults
			add(jsonError, "/ctx/dump broken "+q, req("POST", "/ctx/dump", b))
		}
	}
	add(jsonError, "txn unknown field", req("POST", "/v1/txn", `{"ops":[{"op":"put","key":"h","value":1,"if_verison":3}]}`))
	add(jsonError, "txn bad op", req("POST", "/v1/txn", `{"ops":[{"op":"rm","key":"h"}]}`))
	add(jsonError, "txn no ops", req("POST", "/v1/txn", `{"ops":[]}`))
	add(jsonError, "/ctx null value", req("POST", "/ctx", `{"key":"h","value":null}`))
	add(jsonError, "/ctx no key", req("POST", "/ctx", `{"value":1}`))
	add(jsonError, "import key twice", req("POST", "/v1/ns/default/import", `{"context":{"a":1,"a":2}}`))
	add(jsonError, "upload garbage", req("POST", "/v1/snapshots/upload", "not a database", "Content-Type", "application/octet-stream"))

	// Invalid UTF-8 and control characters in keys, namespaces, queries.
	for _, k := range []string{"%FF", "%C3", "%ED%A0%80", "a%00b", "a%0Ab", "%7F", "a%1Bb"} {
		add(jsonError, "GET key "+k, req("GET", "/v1/ns/default/keys/"+k, ""))
		add(jsonError, "PUT key "+k, req("PUT", "/v1/ns/default/keys/"+k, "1"))
		add(jsonError, "DELETE key "+k, req("DELETE", "/v1/ns/default/keys/"+k, ""))
		add(jsonError, "GET ns "+k, req("GET", "/v1/ns/"+k+"/keys", ""))
		add(jsonError, "compat key "+k, req("GET", "/ctx/"+k, ""))
	}
	add(jsonError, "txn key not UTF-8", req("POST", "/v1/txn", "{\"ops\":[{\"op\":\"put\",\"key\":\"\xff\",\"value\":1}]}"))
	add(jsonError, "/ctx key not UTF-8", req("POST", "/ctx", "{\"key\":\"\xff\",\"value\":1}"))
	add(jsonError, "import key not UTF-8", req("POST", "/v1/ns/default/import", "{\"context\":{\"\xff\":1}}"))
	add(jsonError, "who not UTF-8, bad body", req("PUT", "/v1/ns/default/keys/h", "{", "X-Ctxd-Who", "\xff\xfe"))
	add(httpLevel, "raw byte in path", req("GET", "/v1/ns/default/keys/\xff", ""))
	add(httpLevel, "raw space in path", "GET /v1/ns/default/keys/a b HTTP/1.1\r\nHost: ctxd\r\n\r\n")
	add(httpLevel, "invalid percent-encoding", req("GET", "/ctx/%zz", ""))
	add(jsonError, "OPTIONS *", req("OPTIONS", "*", ""))
	add(jsonError, "CONNECT host:port", req("CONNECT", "127.0.0.1:443", ""))

	// Path tricks.
	for _, p := range []string{
		"/v1/ns/..%2f..%2f/keys/x", "/v1/ns/%2e%2e/keys/x", "/v1/ns/../keys/x", "/v1/ns/./keys/x",
		"/v1/ns/default/keys/", "/v1/ns//keys/x", "//v1//ns", "/v1/ns/" + strings.Repeat("n", 65) + "/keys/x",
		"/v1/ns/default/keys/" + strings.Repeat("k", 2000), "/v1/ns/default/keys/../../../etc/passwd",
		"/v1/ns/default/keys/..%2f..%2f..%2fetc%2fpasswd", "/%2e%2e/%2e%2e/etc/passwd", "/../../etc/passwd",
		"/v1/dumps/..%2f..%2fctxd.db", "/v1/dumps/../ctxd.db", "/v1/dumps/%2e%2e%2fctxd.db", "/v1/dumps/.tmp-x",
		"/v1/dumps/a%00.json", "/v1/dumps/%2Fetc%2Fpasswd", "/v1/dumps/nope.json", "/v1/dumps/..",
		"/ctx/dump/..%2fctxd.db", "/ctx/dump/....//....//etc/passwd", "/ctx/dump/%2e%2e", "/ctx/dump/nope.csv",
		"/v1/snapshots/..%2f..%2fctxd.db", "/v1/snapshots/..", "/v1/snapshots/%00", "/v1/snapshots/nope/export",
		"/ui/../../../etc/passwd", "/ui/x/..%2f..%2fgo.mod", "/ui/", "/ui/x/", "/v1/ns/default/keys/a/history/history",
		"/v1/ns/default/keys/nope/history", "/nope", "/v1", "/v1/", "/v1/ns/default", "/ctx/", "/metricsx",
	} {
		add(jsonError, "GET "+p, req("GET", p, ""))
	}
	for _, p := range []string{"/v1/ns/..%2f..%2f/keys/x", "/v1/ns/default/keys/../../x", "/v1/snapshots/..%2fctxd.db"} {
		add(jsonError, "DELETE "+p, req("DELETE", p, ""))
	}
	add(jsonError, "PUT traversal key, bad body", req("PUT", "/v1/ns/default/keys/..%2f..%2fx", "{"))
	add(jsonError, "dump to traversal name", req("POST", "/v1/ns/default/dumps?format=json&filename=..%2f..%2fx", ""))
	add(jsonError, "dump to absolute name", req("POST", "/v1/ns/default/dumps?format=json&filename=%2Ftmp%2Fx", ""))
	add(jsonError, "compat dump traversal", req("POST", "/ctx/dump", `{"format":"json","filename":"../../x"}`))
	add(jsonError, "compat dump bad format", req("POST", "/ctx/dump", `{"format":"xml"}`))
	add(jsonError, "restore traversal", req("POST", "/v1/snapshots/..%2f..%2fctxd.db/restore", ""))

	// Bad query parameters.
	for _, q := range []string{"rev=-1", "rev=abc", "rev=0x10", "rev=99999999999999999999999", "rev=999999"} {
		add(jsonError, "GET ?"+q, req("GET", "/v1/ns/default/keys/a?"+q, ""))
	}
	for _, q := range []string{"limit=0", "limit=-5", "limit=abc", "limit=99999999999999999999"} {
		add(jsonError, "list ?"+q, req("GET", "/v1/ns/default/keys?"+q, ""))
	}
	for _, q := range []string{"before=abc", "before=0", "limit=x"} {
		add(jsonError, "history ?"+q, req("GET", "/v1/ns/default/keys/a/history?"+q, ""))
	}
	for _, q := range []string{"format=xml", "rev=abc", "history=maybe", "rev=999999"} {
		add(jsonError, "export ?"+q, req("GET", "/v1/ns/default/export?"+q, ""))
	}
	add(jsonError, "compact bad rev", req("POST", "/v1/compact?rev=abc", ""))
	add(jsonError, "compact future rev", req("POST", "/v1/compact?rev=999999", ""))
	add(jsonError, "watch not a WebSocket", req("GET", "/v1/watch", ""))
	add(jsonError, "watch bad from_rev", req("GET", "/v1/watch?from_rev=x", "", "Connection", "Upgrade", "Upgrade", "websocket"))
	add(jsonError, "compat get no key", req("GET", "/ctx", ""))

	// Wrong methods.
	paths := []string{"/v1/ns", "/v1/ns/default/keys", "/v1/ns/default/keys/a", "/v1/txn", "/v1/status", "/healthz",
		"/readyz", "/metrics", "/v1/watch", "/v1/ns/default/export", "/v1/ns/default/import", "/v1/ns/default/dumps",
		"/v1/dumps", "/v1/snapshots", "/v1/snapshots/x", "/v1/compact", "/v1/defrag", "/ctx", "/ctx/all", "/ctx/a", "/"}
	for _, p := range paths {
		for _, m := range []string{"PATCH", "TRACE", "PROPFIND", "FOO"} {
			add(jsonError, m+" "+p, req(m, p, ""))
		}
	}
	for _, mp := range [][2]string{{"POST", "/v1/ns/default/keys/a"}, {"PUT", "/v1/status"}, {"DELETE", "/v1/ns"},
		{"PUT", "/v1/txn"}, {"GET", "/v1/txn"}, {"DELETE", "/ctx/all"}, {"PUT", "/ctx"}, {"GET", "/v1/compact"},
		{"get", "/v1/status"}, {"DELETE", "/healthz"}, {"POST", "/v1/ns/default/export"}, {"GET", "/v1/ns/default/import"}} {
		add(jsonError, mp[0]+" "+mp[1], req(mp[0], mp[1], ""))
	}

	// Bad headers.
	for _, im := range []string{"abc", "-1", `W/"1"`, "*", "1, 2", `""`, "99999999999999999999999", " 1 1"} {
		add(jsonError, "If-Match "+im, req("PUT", "/v1/ns/default/keys/h", "1", "If-Match", im))
	}
	add(jsonError, "declared body too large", "PUT /v1/ns/default/keys/h HTTP/1.1\r\nHost: ctxd\r\nContent-Length: 104857600\r\n\r\n")
	big := strings.Repeat("x", 3<<20)
	add(jsonError, "chunked body too large", "PUT /v1/ns/default/keys/h HTTP/1.1\r\nHost: ctxd\r\nTransfer-Encoding: chunked\r\n\r\n"+
		fmt.Sprintf("%x\r\n\"%s\"\r\n0\r\n\r\n", len(big)+2, big))
	add(jsonError, "broken chunk", "PUT /v1/ns/default/keys/h HTTP/1.1\r\nHost: ctxd\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\nzz\r\n1\r\n0\r\n\r\n")
	add(jsonError, "xml content type", req("PUT", "/v1/ns/default/keys/h", "<a/>", "Content-Type", "application/xml"))
	add(httpLevel, "huge header", req("GET", "/v1/status", "", "X-Big", strings.Repeat("a", 70<<10)))
	var many []string
	for i := range 2000 {
		many = append(many, "X-H"+strconv.Itoa(i), strings.Repeat("b", 40))
	}
	add(httpLevel, "many headers", req("GET", "/v1/status", "", many...))
	add(httpLevel, "bad header name", "GET /v1/status HTTP/1.1\r\nHost: ctxd\r\nBad Header: x\r\n\r\n")
	add(httpLevel, "NUL in header", "GET /v1/status HTTP/1.1\r\nHost: ctxd\r\nX-A: a\x00b\r\n\r\n")
	add(httpLevel, "negative Content-Length", "PUT /v1/ns/default/keys/h HTTP/1.1\r\nHost: ctxd\r\nContent-Length: -1\r\n\r\n1")
	add(httpLevel, "two Content-Lengths", "PUT /v1/ns/default/keys/h HTTP/1.1\r\nHost: ctxd\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\n12")
	add(httpLevel, "Content-Length not a number", "PUT /v1/ns/default/keys/h HTTP/1.1\r\nHost: ctxd\r\nContent-Length: abc\r\n\r\n1")
	add(httpLevel, "no Host", "GET /v1/status HTTP/1.1\r\n\r\n")
	add(httpLevel, "bad request line", "GET\r\n\r\n")
	add(httpLevel, "bad protocol", "GET /v1/status HTTP/9.9\r\nHost: ctxd\r\n\r\n") // net/http: 505
	add(httpLevel, "garbage", "\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03 not http at all\r\n\r\n")

	// Slow clients.
	out = append(out,
		hostileReq{name: "headers never finished", raw: "GET /v1/status HTTP/1.1\r\nHost: ctxd\r\n", kind: slowClient, stall: true},
		hostileReq{name: "nothing sent", raw: "", kind: slowClient, stall: true},
		hostileReq{name: "body shorter than Content-Length", raw: "PUT /v1/ns/default/keys/h HTTP/1.1\r\nHost: ctxd\r\nContent-Length: 100\r\n\r\n\"abc", kind: slowClient, stall: true},
		hostileReq{name: "body trickled past read_timeout", kind: slowClient, trickle: 1, trickleEvery: 100 * time.Millisecond,
			head: "PUT /v1/ns/default/keys/h HTTP/1.1\r\nHost: ctxd\r\nContent-Length: 60\r\n\r\n",
			raw:  "\"" + strings.Repeat("s", 58) + "\""},
		hostileReq{name: "headers trickled past read_header_timeout", kind: slowClient, trickle: 1, trickleEvery: 100 * time.Millisecond,
			raw: "GET /v1/status HTTP/1.1\r\nHost: ctxd\r\nX-Slow: " + strings.Repeat("s", 40) + "\r\n\r\n"},
		hostileReq{name: "chunked body stalled", raw: "POST /v1/txn HTTP/1.1\r\nHost: ctxd\r\nTransfer-Encoding: chunked\r\n\r\n5\r\n{\"ops", kind: slowClient, stall: true},
	)
	return out
}

// hostileResult is what came back.
type hostileResult struct {
	status int
	ctype  string
	body   []byte
	closed bool // the server closed the connection without an answer
	took   time.Duration
}

func sendHostile(t *testing.T, addr string, h hostileReq) hostileResult {
	conn, err := net.Dial("tcp", addr)
	require.NoError(t, err)
	defer conn.Close()
	start := time.Now()
	_ = conn.SetDeadline(start.Add(20 * time.Second))
	raw := []byte(h.raw)
	if h.head != "" {
		_, _ = conn.Write([]byte(h.head))
	}
	if h.trickle > 0 {
		for len(raw) > 0 {
			n := min(h.trickle, len(raw))
			if _, err := conn.Write(raw[:n]); err != nil {
				break // the server closed it
			}
			raw = raw[n:]
			time.Sleep(h.trickleEvery) // time is the subject: a slow (slowloris) client
		}
	} else if len(raw) > 0 {
		_, _ = conn.Write(raw) // the server may close before it read everything
	}
	res, err := http.ReadResponse(bufio.NewReader(conn), nil)
	if err != nil {
		var ne net.Error
		if errors.As(err, &ne) && ne.Timeout() {
			t.Errorf("%s: no answer and the connection still open after 20s", h.name)
		}
		return hostileResult{closed: true, took: time.Since(start)}
	}
	defer res.Body.Close()
	body, _ := io.ReadAll(io.LimitReader(res.Body, 1<<20))
	return hostileResult{status: res.StatusCode, ctype: res.Header.Get("Content-Type"), body: body, took: time.Since(start)}
}

func isJSONError(r hostileResult) bool {
	var e struct {
		Error struct{ Code, Message string }
	}
	return r.status >= 400 && r.status < 500 && r.ctype == "application/json" &&
		json.Unmarshal(r.body, &e) == nil && e.Error.Code != "" && e.Error.Message != ""
}

// Several hundred malformed requests against the built `ctxd serve`: each
// gets a 4xx with a JSON error from ctxd; those Go's HTTP server refuses
// before ctxd sees them (oversized or malformed headers, a malformed
// request line) get its plain-text 400 or 431 and a closed connection;
// slow clients are disconnected at the read timeouts. The server stays up
// and nothing is written.
func TestHostileInput(t *testing.T) {
	dir := t.TempDir()
	cfg := writeFile(t, filepath.Join(dir, "ctxd.yaml"), "http:\n  read_header_timeout: 1s\n  read_timeout: 2s\n")
	srv := startServer(t, filepath.Join(dir, "data"), "--config", cfg)
	env := []string{"CTXD_SERVER=" + srv.URL}
	for _, kv := range [][2]string{{"a", "1"}, {"h", `"original"`}, {"deploy/prod/version", `"1.4.2"`}} {
		require.Equal(t, 0, cli(t, env, "", "put", kv[0], kv[1]).code)
	}
	require.Equal(t, 0, cli(t, env, "", "dump", "--server-side", "--filename", "keep").code)
	require.Equal(t, 0, cli(t, env, "", "snapshot", "create").code)
	before := serverState(t, srv.URL)

	reqs := hostileRequests()
	require.GreaterOrEqual(t, len(reqs), 300)
	results := make([]hostileResult, len(reqs))
	var wg sync.WaitGroup
	work := make(chan int)
	for range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range work {
				results[i] = sendHostile(t, srv.Addr, reqs[i])
			}
		}()
	}
	// The slow ones first, so that their waits overlap the rest.
	for i := len(reqs) - 1; i >= 0; i-- {
		work <- i
	}
	close(work)
	wg.Wait()

	counts := map[string]int{}
	for i, h := range reqs {
		r := results[i]
		switch {
		case isJSONError(r):
			counts["JSON 4xx from ctxd"]++
		case (h.kind == httpLevel && (r.status == 400 || r.status == 431 || r.status == 505) ||
			h.kind == slowClient && (r.status == 400 || r.status == 408)) && strings.HasPrefix(r.ctype, "text/plain"):
			counts[fmt.Sprintf("%d text/plain from net/http, connection closed", r.status)]++
		case h.kind == slowClient && r.closed:
			counts["closed without an answer (slow client)"]++
		case h.kind == httpLevel && r.closed:
			counts["closed without an answer (not HTTP)"]++
		default:
			t.Errorf("%s: got status %d %q closed=%v: %.300s", h.name, r.status, r.ctype, r.closed, r.body)
		}
		if h.kind != jsonError {
			t.Logf("%s: status %d %q, closed without an answer %v, after %v", h.name, r.status, r.ctype, r.closed, r.took.Round(time.Millisecond))
		}
		if h.kind == slowClient {
			assert.Less(t, r.took, 10*time.Second, "%s: the server kept a slow client for %v", h.name, r.took)
		}
	}
	t.Logf("%d hostile requests: %v", len(reqs), counts)

	res, err := http.Get(srv.URL + "/healthz")
	require.NoError(t, err, "the server is down")
	res.Body.Close()
	assert.Equal(t, before, serverState(t, srv.URL), "the hostile requests changed the data")
	r := cli(t, env, "", "get", "h")
	require.Equal(t, 0, r.code, r.stderr)
	assert.Equal(t, "original\n", r.stdout)
	assert.NotContains(t, srv.Stderr.String(), "panic")
}

// serverState is what the hostile requests must not change: the revision,
// the keys of every namespace, the dump files and the snapshots.
func serverState(t *testing.T, base string) string {
	t.Helper()
	get := func(path string) string {
		res, err := http.Get(base + path)
		require.NoError(t, err)
		defer res.Body.Close()
		b, err := io.ReadAll(res.Body)
		require.NoError(t, err)
		require.Equal(t, http.StatusOK, res.StatusCode, "%s: %s", path, b)
		return string(b)
	}
	var st struct {
		Revision uint64 `json:"revision"`
		Keys     uint64 `json:"keys"`
	}
	require.NoError(t, json.Unmarshal([]byte(get("/v1/status")), &st))
	var dumps struct {
		Dumps []struct{ Filename string } `json:"dumps"`
	}
	require.NoError(t, json.Unmarshal([]byte(get("/v1/dumps")), &dumps))
	var snaps struct {
		Snapshots []struct{ ID string } `json:"snapshots"`
	}
	require.NoError(t, json.Unmarshal([]byte(get("/v1/snapshots")), &snaps))
	var b bytes.Buffer
	fmt.Fprintf(&b, "revision %d keys %d dumps %v snapshots %v\n", st.Revision, st.Keys, dumps.Dumps, snaps.Snapshots)
	b.WriteString(get("/v1/ns"))
	b.WriteString(get("/v1/ns/default/keys?limit=1000"))
	return b.String()
}
