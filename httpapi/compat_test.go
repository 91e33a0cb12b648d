package httpapi_test

import (
	"encoding/json"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/framework0/ctxd"
	"github.com/framework0/ctxd/export"
	"github.com/framework0/ctxd/httpapi"
	"github.com/framework0/ctxd/internal/testkit"
)

// The /ctx answers, decoded strictly: a field more or less fails the test.
// The answers the server builds from a struct (status, dump, dump list)
// are decoded into that struct (export_test.go), the others into these.

type ctxValue struct {
	Key       string          `json:"key"`
	Value     json.RawMessage `json:"value"`
	Timestamp time.Time       `json:"timestamp"`
	Status    string          `json:"status"`
}

type ctxSet struct {
	Status    string          `json:"status"`
	Key       string          `json:"key"`
	Value     json.RawMessage `json:"value"`
	Who       string          `json:"who"`
	Timestamp time.Time       `json:"timestamp"`
}

type ctxDeleted struct {
	Status    string    `json:"status"`
	Key       string    `json:"key"`
	Who       string    `json:"who"`
	Timestamp time.Time `json:"timestamp"`
}

type ctxAll struct {
	Context          map[string]json.RawMessage `json:"context"`
	HistoryCount     int                        `json:"history_count"`
	ConnectedClients int                        `json:"connected_clients"`
	Timestamp        time.Time                  `json:"timestamp"`
	Status           string                     `json:"status"`
}

type ctxHistoryEntry struct {
	Timestamp time.Time       `json:"timestamp"`
	Key       string          `json:"key"`
	Before    json.RawMessage `json:"before"`
	After     json.RawMessage `json:"after"`
	Who       string          `json:"who"`
	Action    string          `json:"action"`
}

type ctxHistory struct {
	History         []ctxHistoryEntry `json:"history"`
	TotalEntries    int               `json:"total_entries"`
	FilteredEntries int               `json:"filtered_entries"`
	Timestamp       time.Time         `json:"timestamp"`
	Status          string            `json:"status"`
}

// ctxError is a /ctx error: ctxd's error object plus Framework0's status.
type ctxError struct {
	apiError
	Status string `json:"status"`
}

// requireCtxError checks a /ctx error answer's status and code, and
// returns it.
func requireCtxError(t *testing.T, r response, status int, code string) ctxError {
	t.Helper()
	ce := requireErrorAnswer[ctxError](t, r, status, code)
	assert.Equal(t, "error", ce.Status)
	return ce
}

// dumpEnv is an env with a dump folder, recording the dump hook's calls.
type dumpEnv struct {
	*env
	dir string

	mu    sync.Mutex
	hooks []ctxd.DumpInfo
}

func newDumpEnv(t *testing.T, cfg httpapi.Config) *dumpEnv {
	t.Helper()
	d := &dumpEnv{dir: filepath.Join(t.TempDir(), "dumps")}
	dumps, err := export.OpenDir(d.dir)
	require.NoError(t, err)
	cfg.Dumps = dumps
	cfg.OnDump = func(info ctxd.DumpInfo) {
		d.mu.Lock()
		d.hooks = append(d.hooks, info)
		d.mu.Unlock()
	}
	d.env = newEnv(t, envOptions{cfg: cfg})
	return d
}

func (d *dumpEnv) hookCalls() []ctxd.DumpInfo {
	d.mu.Lock()
	defer d.mu.Unlock()
	return append([]ctxd.DumpInfo(nil), d.hooks...)
}

// set writes a key through POST /ctx.
func (e *env) set(key, value, who string) ctxSet {
	e.t.Helper()
	body := `{"key":` + strconv.Quote(key) + `,"value":` + value
	if who != "" {
		body += `,"who":` + strconv.Quote(who)
	}
	r := e.do(http.MethodPost, "/ctx", body+"}", "Content-Type", "application/json")
	require.Equal(e.t, http.StatusOK, r.status, string(r.body))
	return decode[ctxSet](e.t, r)
}

func TestCompatSet(t *testing.T) {
	e := newEnv(t, envOptions{})
	ok := []struct {
		name, body, key, value, who string
	}{
		{"string", `{"key":"app.name","value":"ctxd"}`, "app.name", `"ctxd"`, "api_client"},
		{"number", `{"key":"app.config.level","value":3,"who":"alice"}`, "app.config.level", `3`, "alice"},
		{"float", `{"key":"ratio","value":-0.25e2}`, "ratio", `-0.25e2`, "api_client"},
		{"boolean", `{"key":"app.config.debug","value":false}`, "app.config.debug", `false`, "api_client"},
		{"object", `{"key":"app.config","value":{"debug":true,"tags":["a"]},"who":"bob"}`, "app.config", `{"debug":true,"tags":["a"]}`, "bob"},
		{"array", `{"key":"list","value":[1,"two",null,{"x":[]}]}`, "list", `[1,"two",null,{"x":[]}]`, "api_client"},
		{"empty string", `{"key":"empty","value":""}`, "empty", `""`, "api_client"},
		{"unicode", `{"key":"ünï/日本","value":"🎉"}`, "ünï/日本", `"🎉"`, "api_client"},
		{"empty who is the default", `{"key":"w","value":1,"who":""}`, "w", `1`, "api_client"},
		{"null who is the default", `{"key":"w","value":1,"who":null}`, "w", `1`, "api_client"},
		{"unknown fields are ignored", `{"key":"u","value":1,"extra":true}`, "u", `1`, "api_client"},
	}
	for _, tt := range ok {
		t.Run(tt.name, func(t *testing.T) {
			r := e.do(http.MethodPost, "/ctx", tt.body, "Content-Type", "application/json")
			require.Equal(t, http.StatusOK, r.status, string(r.body))
			assert.Equal(t, "application/json", r.header.Get("Content-Type"))
			got := decode[ctxSet](t, r)
			assert.Equal(t, "success", got.Status)
			assert.Equal(t, tt.key, got.Key)
			assert.Equal(t, tt.value, string(got.Value))
			assert.Equal(t, tt.who, got.Who)
			assert.WithinDuration(t, time.Now(), got.Timestamp, time.Minute)

			// The value comes back exactly, on both read forms and on v1.
			r = e.do(http.MethodGet, "/ctx?key="+url.QueryEscape(tt.key), "")
			require.Equal(t, http.StatusOK, r.status, string(r.body))
			assert.Equal(t, tt.value, string(decode[ctxValue](t, r).Value))
			r = e.do(http.MethodGet, "/ctx/"+url.PathEscape(tt.key), "")
			require.Equal(t, http.StatusOK, r.status, string(r.body))
			assert.Equal(t, tt.value, string(decode[ctxValue](t, r).Value))
			rec := decode[ctxd.Record](t, e.do(http.MethodGet, keyPath("default", tt.key), ""))
			assert.Equal(t, tt.value, string(rec.Value))
			assert.Equal(t, tt.who, rec.Who)
		})
	}

	rev := e.revision()
	bad := []struct{ name, body string }{
		{"invalid JSON", `{"key":"a","value":`},
		{"not JSON", `key=a&value=1`},
		{"empty body", ``},
		{"array body", `[{"key":"a","value":1}]`},
		{"missing value", `{"key":"a"}`},
		{"null value", `{"key":"a","value":null}`},
		{"missing key", `{"value":1}`},
		{"empty key", `{"key":"","value":1}`},
		{"key not a string", `{"key":5,"value":1}`},
		{"who not a string", `{"key":"a","value":1,"who":5}`},
		{"control character in key", `{"key":"a\u0001b","value":1}`},
		{"two objects", `{"key":"a","value":1} {"key":"b","value":2}`},
		{"lone surrogate in the value", `{"key":"a","value":"\ud800"}`},
		{"lone surrogate in the key", `{"key":"a\udc00","value":1}`},
	}
	for _, tt := range bad {
		t.Run(tt.name, func(t *testing.T) {
			requireCtxError(t, e.do(http.MethodPost, "/ctx", tt.body, "Content-Type", "application/json"), http.StatusBadRequest, "bad_request")
		})
	}
	assert.Equal(t, rev, e.revision(), "bad requests wrote nothing")
}

func TestCompatGet(t *testing.T) {
	e := newEnv(t, envOptions{})
	e.set("app.config.debug", `true`, "")
	e.set("deploy/prod/version", `"1.4.2"`, "")

	tests := []struct {
		name   string
		path   string
		status int
		key    string
		value  string
	}{
		{"query form", "/ctx?key=app.config.debug", 200, "app.config.debug", `true`},
		{"query form, slash key", "/ctx?key=deploy%2Fprod%2Fversion", 200, "deploy/prod/version", `"1.4.2"`},
		{"query form, unknown key is null", "/ctx?key=nope", 200, "nope", `null`},
		{"path form", "/ctx/app.config.debug", 200, "app.config.debug", `true`},
		{"path form, raw slashes", "/ctx/deploy/prod/version", 200, "deploy/prod/version", `"1.4.2"`},
		{"path form, escaped slashes", "/ctx/deploy%2Fprod%2Fversion", 200, "deploy/prod/version", `"1.4.2"`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := e.do(http.MethodGet, tt.path, "")
			require.Equal(t, tt.status, r.status, string(r.body))
			got := decode[ctxValue](t, r)
			assert.Equal(t, ctxValue{Key: tt.key, Value: json.RawMessage(tt.value), Status: "success", Timestamp: got.Timestamp}, got)
			assert.WithinDuration(t, time.Now(), got.Timestamp, time.Minute)
		})
	}
	requireRefusals(t, e, []refusal{
		{"path form, unknown key", "/ctx/nope", 404, "not_found"},
		{"no key parameter", "/ctx", 400, "bad_request"},
		{"empty key parameter", "/ctx?key=", 400, "bad_request"},
		{"path form, empty key", "/ctx/", 400, "bad_request"},
		{"control character", "/ctx?key=a%01", 400, "bad_request"},
	}, requireCtxError)
}

func TestCompatDelete(t *testing.T) {
	e := newEnv(t, envOptions{})
	e.set("a.b", `1`, "")
	e.set("c", `2`, "")
	tests := []struct {
		name, path string
		hdr        []string
		key, who   string
	}{
		{"default who", "/ctx/a.b", nil, "a.b", "api_client"},
		{"who in query", "/ctx/c?who=alice", nil, "c", "alice"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := e.do(http.MethodDelete, tt.path, "", tt.hdr...)
			require.Equal(t, http.StatusOK, r.status, string(r.body))
			got := decode[ctxDeleted](t, r)
			assert.Equal(t, "success", got.Status)
			assert.Equal(t, tt.key, got.Key)
			assert.Equal(t, tt.who, got.Who)
			r = e.do(http.MethodGet, "/ctx?key="+tt.key, "")
			assert.Equal(t, "null", string(decode[ctxValue](t, r).Value))
		})
	}
	requireCtxError(t, e.do(http.MethodDelete, "/ctx/a.b", ""), 404, "not_found")
	requireCtxError(t, e.do(http.MethodDelete, "/ctx/", ""), 400, "bad_request")
}

// The /ctx writes hold to If-Match and If-None-Match: * as v1's do: a
// client that states the version it expects never gets an unconditional
// write (they were ignored: a stale If-Match deleted the key).
func TestCompatWritesHonourIfMatch(t *testing.T) {
	e := newEnv(t, envOptions{})
	e.set("lock", `"ann"`, "")
	rev := e.revision()

	ce := requireCtxError(t, e.do(http.MethodPost, "/ctx", `{"key":"lock","value":"bob"}`, "If-Match", "2"), http.StatusConflict, "conflict")
	assert.Equal(t, uint64(1), *ce.Error.CurrentVersion)
	requireCtxError(t, e.do(http.MethodPost, "/ctx", `{"key":"lock","value":"bob"}`, "If-None-Match", "*"), http.StatusConflict, "conflict")
	requireCtxError(t, e.do(http.MethodDelete, "/ctx/lock", "", "If-Match", `"2"`), http.StatusConflict, "conflict")
	requireCtxError(t, e.do(http.MethodDelete, "/ctx/lock", "", "If-Match", "W/1"), http.StatusBadRequest, "bad_request")
	requireCtxError(t, e.do(http.MethodPost, "/ctx", `{"key":"lock","value":"bob"}`, "If-None-Match", `"1"`), http.StatusBadRequest, "bad_request")
	assert.Equal(t, rev, e.revision(), "refused writes wrote nothing")
	assert.Equal(t, `"ann"`, string(decode[ctxValue](t, e.do(http.MethodGet, "/ctx/lock", "")).Value))

	r := e.do(http.MethodPost, "/ctx", `{"key":"lock","value":"bob"}`, "If-Match", "1")
	require.Equal(t, http.StatusOK, r.status, string(r.body))
	r = e.do(http.MethodPost, "/ctx", `{"key":"new","value":1}`, "If-None-Match", "*")
	require.Equal(t, http.StatusOK, r.status, string(r.body))
	r = e.do(http.MethodDelete, "/ctx/lock", "", "If-Match", `"2"`)
	require.Equal(t, http.StatusOK, r.status, string(r.body))
}

func TestCompatAll(t *testing.T) {
	e := newEnv(t, envOptions{cfg: httpapi.Config{Clients: func() int { return 3 }}})
	r := e.do(http.MethodGet, "/ctx/all", "")
	require.Equal(t, http.StatusOK, r.status, string(r.body))
	got := decode[ctxAll](t, r)
	assert.Equal(t, map[string]json.RawMessage{}, got.Context)
	assert.Equal(t, 0, got.HistoryCount)

	e.set("a", `{"x": [1, 2]}`, "")
	e.set("a", `2`, "")
	e.set("b.c", `"s"`, "")
	e.do(http.MethodDelete, "/ctx/b.c", "")
	e.set("d", `false`, "")
	e.put("other.ns.key.is.default.too", `1`)
	r = e.do(http.MethodPut, keyPath("elsewhere", "x"), `1`)
	require.Equal(t, http.StatusOK, r.status)

	r = e.do(http.MethodGet, "/ctx/all", "")
	require.Equal(t, http.StatusOK, r.status, string(r.body))
	assert.Equal(t, "application/json", r.header.Get("Content-Type"))
	got = decode[ctxAll](t, r)
	assert.Equal(t, map[string]json.RawMessage{
		"a": json.RawMessage(`2`), "d": json.RawMessage(`false`), "other.ns.key.is.default.too": json.RawMessage(`1`),
	}, got.Context)
	assert.Equal(t, 6, got.HistoryCount, "changes of the compat namespace only")
	assert.Equal(t, 3, got.ConnectedClients)
	assert.Equal(t, "success", got.Status)
	assert.WithinDuration(t, time.Now(), got.Timestamp, time.Minute)
}

func TestCompatHistory(t *testing.T) {
	e := newEnv(t, envOptions{})
	e.set("app.mode", `"dev"`, "alice")
	e.set("app.mode", `{"name":"prod"}`, "bob")
	e.set("other", `1`, "bob")
	r := e.do(http.MethodDelete, "/ctx/app.mode?who=carol", "")
	require.Equal(t, http.StatusOK, r.status)
	e.set("app.mode", `"again"`, "")

	want := []ctxHistoryEntry{
		{Key: "app.mode", Before: json.RawMessage(`null`), After: json.RawMessage(`"dev"`), Who: "alice", Action: "set"},
		{Key: "app.mode", Before: json.RawMessage(`"dev"`), After: json.RawMessage(`{"name":"prod"}`), Who: "bob", Action: "set"},
		{Key: "other", Before: json.RawMessage(`null`), After: json.RawMessage(`1`), Who: "bob", Action: "set"},
		{Key: "app.mode", Before: json.RawMessage(`{"name":"prod"}`), After: json.RawMessage(`null`), Who: "carol", Action: "delete"},
		{Key: "app.mode", Before: json.RawMessage(`null`), After: json.RawMessage(`"again"`), Who: "api_client", Action: "set"},
	}
	tests := []struct {
		name, query string
		want        []int
	}{
		{"all", "", []int{0, 1, 2, 3, 4}},
		{"by key", "?key=app.mode", []int{0, 1, 3, 4}},
		{"by who", "?who=bob", []int{1, 2}},
		{"by key and who", "?key=app.mode&who=bob", []int{1}},
		{"no match", "?key=nope", []int{}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := e.do(http.MethodGet, "/ctx/history"+tt.query, "")
			require.Equal(t, http.StatusOK, r.status, string(r.body))
			got := decode[ctxHistory](t, r)
			assert.Equal(t, "success", got.Status)
			assert.Equal(t, len(want), got.TotalEntries)
			assert.Equal(t, len(tt.want), got.FilteredEntries)
			require.Len(t, got.History, len(tt.want))
			var last time.Time
			for i, idx := range tt.want {
				h := got.History[i]
				assert.False(t, h.Timestamp.Before(last), "in the order the changes happened")
				last = h.Timestamp
				h.Timestamp = time.Time{}
				assert.Equal(t, want[idx], h, "entry %d", i)
			}
		})
	}
}

func TestCompatStatus(t *testing.T) {
	e := newDumpEnv(t, httpapi.Config{Version: "v1.2.3", Clients: func() int { return 2 }})
	e.set("a", `1`, "")
	e.set("b", `2`, "")
	r := e.do(http.MethodGet, "/ctx/status", "")
	require.Equal(t, http.StatusOK, r.status, string(r.body))
	got := decode[httpapi.CompatStatus](t, r)
	assert.Equal(t, "running", got.Status)
	assert.Equal(t, "v1.2.3", got.Version)
	assert.Equal(t, "default", got.Namespace)
	assert.Equal(t, uint64(2), got.Revision)
	assert.Equal(t, uint64(2), got.Keys)
	assert.Equal(t, 2, got.ConnectedClients)
	assert.Equal(t, e.dir, got.DumpDirectory)
}

// compat.namespace moves the whole /ctx API to another namespace.
func TestCompatNamespace(t *testing.T) {
	e := newDumpEnv(t, httpapi.Config{CompatNamespace: "legacy"})
	e.set("k", `"v"`, "")
	requireError(t, e.do(http.MethodGet, keyPath("default", "k"), ""), 404, "not_found")
	assert.Equal(t, `"v"`, string(decode[ctxd.Record](t, e.do(http.MethodGet, keyPath("legacy", "k"), "")).Value))
	e.put("in.default", `1`)
	all := decode[ctxAll](t, e.do(http.MethodGet, "/ctx/all", ""))
	assert.Equal(t, map[string]json.RawMessage{"k": json.RawMessage(`"v"`)}, all.Context)
	d := decode[httpapi.CompatDump](t, e.do(http.MethodPost, "/ctx/dump", `{"filename":"legacy"}`))
	b, err := os.ReadFile(d.Path)
	require.NoError(t, err)
	assert.Contains(t, string(b), `"namespace":"legacy"`)
	assert.Equal(t, 1, d.KeyCount)
}

func TestIndexPage(t *testing.T) {
	e := newEnv(t, envOptions{})
	r := e.do(http.MethodGet, "/", "")
	require.Equal(t, http.StatusOK, r.status)
	assert.Equal(t, "text/html; charset=UTF-8", r.header.Get("Content-Type"))
	for _, link := range []string{`href="/ctx/all"`, `href="/ctx/status"`, `href="/v1/status"`, "POST /ctx"} {
		assert.Contains(t, string(r.body), link)
	}
	r = e.do(http.MethodHead, "/", "")
	assert.Equal(t, http.StatusOK, r.status)
	assert.Empty(t, r.body)
}

// parsed is a dump file's content parsed back: key -> value as in the dump.
func parseJSONDump(t *testing.T, b []byte) map[string]json.RawMessage {
	t.Helper()
	var d struct {
		Context map[string]json.RawMessage `json:"context"`
	}
	require.NoError(t, json.Unmarshal(b, &d), "%s", b)
	return d.Context
}

func TestCompatDump(t *testing.T) {
	e := newDumpEnv(t, httpapi.Config{})
	e.set("app.name", `"ctxd"`, "")
	e.set("app.config", `{"debug": true}`, "")
	e.set("n", `42`, "")
	rev := e.revision()

	tests := []struct {
		name, query, body  string
		filename, format   string
		who                string
		history, generated bool
	}{
		{name: "defaults", body: ``, filename: "context_dump_", format: "json", who: "api_client", generated: true},
		{name: "JSON body", body: `{"format":"csv","filename":"report","who":"alice","include_history":true}`, filename: "report.csv", format: "csv", who: "alice", history: true},
		{name: "query parameters", query: "?format=txt&filename=plain&who=bob&include_history=false", filename: "plain.txt", format: "txt", who: "bob"},
		{name: "pretty keeps its extension", body: `{"format":"pretty","filename":"p.pretty"}`, filename: "p.pretty", format: "pretty", who: "api_client"},
		{name: "body wins over query", query: "?format=csv&who=q", body: `{"format":"json","filename":"b"}`, filename: "b.json", format: "json", who: "q"},
		{name: "format in any case", body: `{"format":"JSON","filename":"upper"}`, filename: "upper.json", format: "json", who: "api_client"},
		{name: "history as a string", body: `{"filename":"h","include_history":"true"}`, filename: "h.json", format: "json", who: "api_client", history: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			before := len(e.hookCalls())
			r := e.do(http.MethodPost, "/ctx/dump"+tt.query, tt.body, "Content-Type", "application/json")
			require.Equal(t, http.StatusOK, r.status, string(r.body))
			got := decode[httpapi.CompatDump](t, r)
			assert.Equal(t, "success", got.Status)
			if tt.generated {
				assert.Regexp(t, `^context_dump_\d{8}_\d{6}(_\d+)?\.json$`, got.Filename)
			} else {
				assert.Equal(t, tt.filename, got.Filename)
			}
			assert.Equal(t, tt.format, got.Format)
			assert.Equal(t, filepath.Join(e.dir, got.Filename), got.Path)
			assert.Equal(t, 3, got.KeyCount)
			assert.Equal(t, tt.who, got.Who)
			assert.WithinDuration(t, time.Now(), got.Timestamp, time.Minute)
			b, err := os.ReadFile(got.Path)
			require.NoError(t, err)
			assert.Equal(t, int64(len(b)), got.FileSize)
			switch tt.format {
			case "json":
				assert.Equal(t, map[string]json.RawMessage{
					"app.name": json.RawMessage(`"ctxd"`), "app.config": json.RawMessage(`{"debug":true}`), "n": json.RawMessage(`42`),
				}, parseJSONDump(t, b))
				assert.Contains(t, string(b), `"revision":`+strconv.FormatUint(rev, 10))
				assert.Equal(t, tt.history, strings.Contains(string(b), `"history":[`))
			case "csv":
				assert.True(t, strings.HasPrefix(string(b), "Key,Value,Type,Version,Revision,Who,Updated_At"), "%s", b)
			case "txt":
				assert.Contains(t, string(b), "app.name=ctxd\n")
			}
			// The hook saw the dump.
			calls := e.hookCalls()
			require.Len(t, calls, before+1)
			h := calls[len(calls)-1]
			assert.Equal(t, got.Filename, h.Filename)
			assert.Equal(t, got.Path, h.Path)
			assert.Equal(t, tt.format, h.Format)
			assert.Equal(t, rev, h.Revision)
			assert.Equal(t, 3, h.KeyCount)
			assert.Equal(t, got.FileSize, h.FileSize)
			assert.Equal(t, tt.who, h.Who)
			assert.Equal(t, tt.history, h.IncludeHistory)
		})
	}

	t.Run("same filename replaces", func(t *testing.T) {
		e.set("n", `43`, "")
		got := decode[httpapi.CompatDump](t, e.do(http.MethodPost, "/ctx/dump", `{"filename":"report","format":"csv"}`))
		assert.Equal(t, "report.csv", got.Filename)
		b, err := os.ReadFile(got.Path)
		require.NoError(t, err)
		assert.Contains(t, string(b), "\r\nn,43,number,")
	})

	hooks := len(e.hookCalls())
	files := testkit.DirNames(t, e.dir)
	badBodies := []struct{ name, query, body string }{
		{"unknown format", "", `{"format":"xml"}`},
		{"unknown format in query", "?format=yaml", ``},
		{"slash in filename", "", `{"filename":"a/b"}`},
		{"dot-dot filename", "", `{"filename":".."}`},
		{"escaping filename", "", `{"filename":"../../ctxd.db"}`},
		{"absolute filename", "", `{"filename":"/etc/passwd"}`},
		{"NUL in filename", "", `{"filename":"a\u0000b"}`},
		{"encoded filename", "?filename=..%252Fx", ``},
		{"hidden filename", "", `{"filename":".hidden"}`},
		{"filename too long", "", `{"filename":"` + strings.Repeat("x", 200) + `"}`},
		{"invalid JSON", "", `{"format":`},
		{"bad include_history", "", `{"include_history":"maybe"}`},
		{"bad include_history in query", "?include_history=2", ``},
		// A body's who is held to a change's rules, as ?who= is: it
		// was written as given into the file's header and the
		// context_dumped message (an escape sequence, for a terminal).
		{"control character in who", "", `{"who":"a\u001b[31mb"}`},
	}
	for _, tt := range badBodies {
		t.Run(tt.name, func(t *testing.T) {
			requireCtxError(t, e.do(http.MethodPost, "/ctx/dump"+tt.query, tt.body), http.StatusBadRequest, "bad_request")
		})
	}
	requireCtxError(t, e.do(http.MethodPost, "/ctx/dump", `{"who":"`+strings.Repeat("w", ctxd.MaxWhoBytes+1)+`"}`),
		http.StatusRequestEntityTooLarge, "too_large")
	assert.Equal(t, files, testkit.DirNames(t, e.dir), "refused dumps wrote nothing")
	assert.Len(t, e.hookCalls(), hooks, "refused dumps called no hook")
	assert.NoFileExists(t, filepath.Join(filepath.Dir(e.dir), "ctxd.db.json"))
}

func TestCompatDumpListAndDownload(t *testing.T) {
	e := newDumpEnv(t, httpapi.Config{})
	r := e.do(http.MethodGet, "/ctx/dump/list", "")
	require.Equal(t, http.StatusOK, r.status, string(r.body))
	empty := decode[httpapi.CompatDumpList](t, r)
	assert.Equal(t, 0, empty.DumpCount)
	assert.Equal(t, []ctxd.DumpFile{}, empty.DumpFiles)
	assert.Equal(t, []ctxd.DumpInfo{}, empty.DumpHistory)

	e.set("k", `"v"`, "")
	first := decode[httpapi.CompatDump](t, e.do(http.MethodPost, "/ctx/dump", `{"filename":"first","format":"txt"}`))
	second := decode[httpapi.CompatDump](t, e.do(http.MethodPost, "/ctx/dump", `{"filename":"second","format":"csv"}`))
	// A crash's leftovers and stray files are not dumps.
	require.NoError(t, os.WriteFile(filepath.Join(e.dir, export.TempPrefix+"third.json-42"), []byte(`{"partial`), 0o600))
	require.NoError(t, os.Mkdir(filepath.Join(e.dir, "folder"), 0o700))

	r = e.do(http.MethodGet, "/ctx/dump/list", "")
	require.Equal(t, http.StatusOK, r.status, string(r.body))
	got := decode[httpapi.CompatDumpList](t, r)
	assert.Equal(t, "success", got.Status)
	assert.Equal(t, e.dir, got.DumpDirectory)
	assert.Equal(t, 2, got.DumpCount)
	require.Len(t, got.DumpFiles, 2)
	names := []string{got.DumpFiles[0].Filename, got.DumpFiles[1].Filename}
	assert.ElementsMatch(t, []string{"first.txt", "second.csv"}, names)
	for _, f := range got.DumpFiles {
		assert.Equal(t, filepath.Join(e.dir, f.Filename), f.Path)
		assert.Positive(t, f.Size)
		assert.WithinDuration(t, time.Now(), f.Modified, time.Minute)
	}
	require.Len(t, got.DumpHistory, 2)
	assert.Equal(t, "second.csv", got.DumpHistory[0].Filename, "newest first")

	downloads := []struct {
		name, path, ctype string
		want              httpapi.CompatDump
	}{
		{"txt", "/ctx/dump/first.txt", "text/plain; charset=utf-8", first},
		{"csv", "/ctx/dump/second.csv", "text/csv; charset=utf-8", second},
		{"v1 route", "/v1/dumps/second.csv", "text/csv; charset=utf-8", second},
	}
	for _, tt := range downloads {
		t.Run(tt.name, func(t *testing.T) {
			r := e.do(http.MethodGet, tt.path, "")
			require.Equal(t, http.StatusOK, r.status, string(r.body))
			assert.Equal(t, tt.ctype, r.header.Get("Content-Type"))
			assert.Equal(t, `attachment; filename="`+tt.want.Filename+`"`, r.header.Get("Content-Disposition"))
			b, err := os.ReadFile(tt.want.Path)
			require.NoError(t, err)
			assert.Equal(t, string(b), string(r.body))
		})
	}

	requireRefusals(t, e.env, []refusal{
		{"unknown file", "/ctx/dump/nope.json", 404, "not_found"},
		{"temp file is not a dump", "/ctx/dump/" + export.TempPrefix + "third.json-42", 400, "bad_request"},
		{"folder is not a dump", "/ctx/dump/folder", 404, "not_found"},
		{"escaped slashes", "/ctx/dump/..%2F..%2Fctxd.db", 400, "bad_request"},
		{"raw slashes", "/ctx/dump/../ctxd.db", 400, "bad_request"},
		{"nested path", "/ctx/dump/a/b.json", 400, "bad_request"},
		{"encoded dots", "/ctx/dump/%2e%2e", 400, "bad_request"},
		{"double encoded", "/ctx/dump/%252e%252e%252fctxd.db", 400, "bad_request"},
		{"NUL", "/ctx/dump/a%00.json", 400, "bad_request"},
		{"absolute", "/ctx/dump/%2Fetc%2Fpasswd", 400, "bad_request"},
		{"backslash", "/ctx/dump/..%5Cctxd.db", 400, "bad_request"},
	}, requireCtxError)
	r = e.do(http.MethodGet, "/v1/dumps/..%2Fctxd.db", "")
	requireError(t, r, 400, "bad_request")
}

// Without a dump folder, the dump routes say so and nothing else breaks.
func TestDumpsDisabled(t *testing.T) {
	e := newEnv(t, envOptions{})
	requireCtxError(t, e.do(http.MethodPost, "/ctx/dump", ``), 503, "unavailable")
	requireCtxError(t, e.do(http.MethodGet, "/ctx/dump/list", ``), 503, "unavailable")
	requireError(t, e.do(http.MethodGet, "/v1/dumps", ``), 503, "unavailable")
	r := e.do(http.MethodGet, "/v1/ns/default/export", "")
	assert.Equal(t, http.StatusOK, r.status, "exports need no dump folder")
}

// Every error of a /ctx route carries Framework0's "status":"error", from
// the router (405) and the body limit as from the handlers; the v1 routes'
// errors do not. (The router's 405 and the body limit's 413 went out
// without it: the compat handlers added it to their own errors only.)
func TestCompatErrorsFromTheRouterAndLimits(t *testing.T) {
	e := newEnv(t, envOptions{cfg: httpapi.Config{MaxBodyBytes: 64}})
	rev := e.revision()
	for _, r := range []struct{ method, path string }{
		{http.MethodPut, "/ctx/w1"}, {http.MethodPost, "/ctx/status"}, {http.MethodPut, "/ctx"},
		{http.MethodPost, "/ctx/history"},
	} {
		requireCtxError(t, e.do(r.method, r.path, `1`), http.StatusMethodNotAllowed, "method_not_allowed")
	}
	big := `{"key":"a","value":"` + strings.Repeat("x", 100) + `"}`
	requireCtxError(t, e.do(http.MethodPost, "/ctx", big, "Content-Type", "application/json"), http.StatusRequestEntityTooLarge, "too_large")
	assert.Equal(t, rev, e.revision(), "the refused requests wrote nothing")

	v1 := requireErrorAnswer[ctxError](t, e.do(http.MethodPost, "/v1/status", ``), http.StatusMethodNotAllowed, "method_not_allowed")
	assert.Empty(t, v1.Status, "a v1 error has no Framework0 status")
}
