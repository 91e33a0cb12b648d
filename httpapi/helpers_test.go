package httpapi_test

import (
	"bytes"
	"context"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"net/url"
	"testing"

	"github.com/rs/zerolog"
	"github.com/stretchr/testify/require"

	"github.com/framework0/ctxd"
	"github.com/framework0/ctxd/auth"
	"github.com/framework0/ctxd/httpapi"
	"github.com/framework0/ctxd/internal/testkit"
	"github.com/framework0/ctxd/store"
	"github.com/framework0/ctxd/store/bolt"
)

// env is a real store behind a real router on a test server.
type env struct {
	t     *testing.T
	st    *testkit.Bolt // nil in a full env: use store
	store store.Backend // the store the API serves
	srv   *httpapi.Server
	ts    *httptest.Server // nil in a full env
	url   string           // where do sends requests
	hc    *http.Client     // checks every exchange against the OpenAPI document
	logs  *testkit.SyncBuffer
	api   *testkit.OpenAPI
	// access is the full env's access control (nil without): its Reload
	// reads the tokens file again, as SIGHUP does.
	access *auth.Authorizer
}

type envOptions struct {
	store bolt.Options
	cfg   httpapi.Config
	// sndBuf, when > 0, is the kernel send buffer of the server's
	// connections (testkit.SmallSendBuffers): a client that reads nothing
	// stalls the server's writes after a few hundred KB instead of MBs.
	sndBuf int
}

func newEnv(t *testing.T, opts envOptions) *env {
	t.Helper()
	st := testkit.OpenBolt(t, opts.store)
	logs := &testkit.SyncBuffer{}
	if opts.cfg.Version == "" {
		opts.cfg.Version = "test-1.2.3"
	}
	srv := httpapi.New(st.Store, opts.cfg, zerolog.New(logs))
	ts := httptest.NewUnstartedServer(srv.Handler())
	if opts.sndBuf > 0 {
		ts.Listener = testkit.SmallSendBuffers{Listener: ts.Listener, Size: opts.sndBuf}
	}
	ts.Start()
	t.Cleanup(ts.Close) // before the store's check and close (cleanups run last first)
	api := testkit.NewOpenAPI(t)
	hc := &http.Client{Transport: api.Transport(t, ts.Client().Transport)}
	return &env{t: t, st: st, store: st.Store, srv: srv, ts: ts, url: ts.URL, hc: hc, logs: logs, api: api}
}

// response is a finished HTTP exchange.
type response struct {
	status int
	header http.Header
	body   []byte
}

// do sends a request; hdr holds header name/value pairs.
func (e *env) do(method, path, body string, hdr ...string) response {
	e.t.Helper()
	return e.send(testkit.NewRequest(e.t, method, e.url+path, body, hdr...))
}

// doUnchecked is do past the OpenAPI validator, for what the server
// takes but the validator cannot: a query integer too large for 64 bits
// (JSON Schema's integer has no bound; kin-openapi reads one into an
// int64), a PUT body of a type other than the document's application/json
// (read as JSON all the same, as curl -d sends a form type).
func (e *env) doUnchecked(method, path, body string, hdr ...string) response {
	e.t.Helper()
	res, b := testkit.Send(e.t, e.ts.Client(), testkit.NewRequest(e.t, method, e.url+path, body, hdr...))
	return response{status: res.StatusCode, header: res.Header, body: b}
}

func (e *env) send(req *http.Request) response {
	e.t.Helper()
	res, b := testkit.Send(e.t, e.hc, req)
	return response{status: res.StatusCode, header: res.Header, body: b}
}

// keyPath is the v1 path of a key, escaped as clients send it.
func keyPath(ns, key string) string {
	return "/v1/ns/" + url.PathEscape(ns) + "/keys/" + url.PathEscape(key)
}

// put writes a key in namespace default through the API.
func (e *env) put(key, value string) ctxd.Record {
	e.t.Helper()
	r := e.do(http.MethodPut, keyPath("default", key), value)
	require.Equal(e.t, http.StatusOK, r.status, string(r.body))
	return decode[ctxd.Record](e.t, r)
}

// revision reads the store's revision through /v1/status.
func (e *env) revision() uint64 {
	e.t.Helper()
	r := e.do(http.MethodGet, "/v1/status", "")
	require.Equal(e.t, http.StatusOK, r.status, string(r.body))
	return decode[ctxd.ServerStatus](e.t, r).Revision
}

// decode decodes r's body strictly into T (a data-model type, usually): a
// field T does not have fails the test.
func decode[T any](t *testing.T, r response) T {
	t.Helper()
	var v T
	dec := json.NewDecoder(bytes.NewReader(r.body))
	dec.DisallowUnknownFields()
	require.NoError(t, dec.Decode(&v), "body: %s", r.body)
	return v
}

// hasField reports whether the JSON object in r's body has the member name:
// decode fills a field the data model omits when empty (a last page's
// "next") with its zero value, which cannot tell "absent" from "empty".
func hasField(t *testing.T, r response, name string) bool {
	t.Helper()
	var members map[string]json.RawMessage
	require.NoError(t, json.Unmarshal(r.body, &members), "body: %s", r.body)
	_, ok := members[name]
	return ok
}

// apiError is the error answer, decoded strictly.
type apiError struct {
	Error struct {
		Code              string  `json:"code"`
		Message           string  `json:"message"`
		NS                string  `json:"ns"`
		Key               string  `json:"key"`
		CurrentVersion    *uint64 `json:"current_version"`
		CompactedRevision *uint64 `json:"compacted_revision"`
		OpIndex           *int    `json:"op_index"`
		Op                string  `json:"op"`
		Pointer           *string `json:"pointer"`
	} `json:"error"`
}

// errorObject returns the answer's error object; ctxError has it too.
func (ae apiError) errorObject() apiError { return ae }

// requireErrorAnswer checks an error answer's status and content type,
// decodes it strictly into T (apiError, or ctxError on the /ctx routes) and
// checks its error code and message.
func requireErrorAnswer[T interface{ errorObject() apiError }](t *testing.T, r response, status int, code string) T {
	t.Helper()
	require.Equal(t, status, r.status, "body: %s", r.body)
	require.Equal(t, "application/json", r.header.Get("Content-Type"))
	answer := decode[T](t, r)
	ae := answer.errorObject()
	require.Equal(t, code, ae.Error.Code, "body: %s", r.body)
	require.NotEmpty(t, ae.Error.Message)
	return answer
}

// requireError checks a JSON error response's status and code, and returns it.
func requireError(t *testing.T, r response, status int, code string) apiError {
	t.Helper()
	return requireErrorAnswer[apiError](t, r, status, code)
}

// refusal is a GET that must be refused with status and code.
type refusal struct {
	name, path string
	status     int
	code       string
}

// requireRefusals sends each refusal's GET to e, its path as is (never
// cleaned by the client), in a subtest, and checks the answer with check:
// requireError, or requireCtxError on the /ctx routes.
func requireRefusals[A any](t *testing.T, e *env, cases []refusal, check func(t *testing.T, r response, status int, code string) A) {
	t.Helper()
	for _, tt := range cases {
		t.Run(tt.name, func(t *testing.T) {
			req := testkit.NewRequest(t, http.MethodGet, e.url, "")
			req.URL.Opaque = tt.path
			check(t, e.send(req), tt.status, tt.code)
		})
	}
}

var bg = context.Background()

func urlQueryEscape(s string) string { return url.QueryEscape(s) }
