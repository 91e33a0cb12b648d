package httpapi_test

import (
	"encoding/json"
	"net/http"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/framework0/ctxd"
	"github.com/framework0/ctxd/httpapi"
	"github.com/framework0/ctxd/internal/testkit"
)

// GET /v1/openapi.json serves the embedded document (newEnv's client
// validates it as OpenAPI, and every exchange of this package's tests
// against it); its error code enum holds every code of the error tables.
func TestOpenAPIDocumentServed(t *testing.T) {
	e := newEnv(t, envOptions{})
	r := e.do(http.MethodGet, "/v1/openapi.json", "")
	require.Equal(t, http.StatusOK, r.status, string(r.body))
	assert.Equal(t, "application/json", r.header.Get("Content-Type"))
	want, err := httpapi.OpenAPI()
	require.NoError(t, err)
	assert.Equal(t, want, r.body)

	var doc struct {
		OpenAPI    string `json:"openapi"`
		Components struct {
			Schemas map[string]struct {
				Properties map[string]struct {
					Enum []string `json:"enum"`
				} `json:"properties"`
			} `json:"schemas"`
		} `json:"components"`
	}
	require.NoError(t, json.Unmarshal(r.body, &doc))
	assert.Equal(t, "3.1.0", doc.OpenAPI)
	codes := doc.Components.Schemas["ErrorObject"].Properties["code"].Enum
	for _, code := range ctxd.ErrorCodes() {
		assert.Contains(t, codes, code)
	}
	// The dashboard's API section offers it.
	page := e.do(http.MethodGet, "/", "")
	require.Equal(t, http.StatusOK, page.status)
	assert.Contains(t, string(page.body), `href="/v1/openapi.json"`)

	for _, code := range []string{ctxd.CodeUnauthorized, ctxd.CodeForbidden, ctxd.CodeRateLimited, ctxd.CodeMethodNotAllowed, ctxd.CodeInternal} {
		assert.Contains(t, codes, code)
	}
}

// The validator every test's client goes through refuses what the document
// does not describe, and says what: an undocumented route, status, field,
// or query parameter, and a request the document calls invalid that the
// server accepted.
func TestOpenAPIValidatorRefusesTheUndocumented(t *testing.T) {
	e := newEnv(t, envOptions{})
	e.put("k", `1`)
	good := e.do(http.MethodGet, keyPath("default", "k"), "")
	require.Equal(t, http.StatusOK, good.status)

	check := func(method, target, reqBody string, status int, body string) error {
		req := testkit.NewRequest(t, method, e.url+target, reqBody)
		return e.api.Check(req, []byte(reqBody), status, good.header, []byte(body))
	}
	require.NoError(t, check(http.MethodGet, keyPath("default", "k"), "", http.StatusOK, string(good.body)))

	cases := []struct {
		name, method, target, reqBody string
		status                        int
		body, want                    string
	}{
		{"route", http.MethodGet, "/v1/nope", "", http.StatusOK, `{}`,
			"GET /v1/nope answered 200: the path is not documented"},
		{"method", http.MethodPost, "/v1/status", "", http.StatusOK, `{}`,
			"method POST is not documented on /v1/status"},
		{"status", http.MethodGet, keyPath("default", "k"), "", http.StatusTeapot, string(good.body),
			"GET /v1/ns/{ns}/keys/{key} (/v1/ns/default/keys/k) answered 418"},
		{"field", http.MethodGet, keyPath("default", "k"), "", http.StatusOK,
			strings.Replace(string(good.body), `{`, `{"flavor":"mint",`, 1), `flavor`},
		{"error code", http.MethodGet, keyPath("default", "nope"), "", http.StatusNotFound,
			`{"error":{"code":"no_such_thing","message":"x"}}`, "no_such_thing"},
		{"query parameter accepted", http.MethodGet, keyPath("default", "k") + "?values=false", "", http.StatusOK,
			string(good.body), `query parameter "values" is not documented`},
		{"body accepted", http.MethodPost, "/v1/txn", `{"ops":[{"op":"put","key":"a","value":1,"color":"red"}]}`, http.StatusOK,
			`{"revision":2,"results":[]}`, "the server accepted a request the document calls invalid"},
	}
	for _, tt := range cases {
		t.Run(tt.name, func(t *testing.T) {
			err := check(tt.method, tt.target, tt.reqBody, tt.status, tt.body)
			require.Error(t, err)
			assert.Contains(t, err.Error(), tt.want)
		})
	}
	// A request the document calls invalid may be refused with a 4xx.
	require.NoError(t, check(http.MethodGet, keyPath("default", "k")+"?rev=abc", "", http.StatusBadRequest,
		`{"error":{"code":"bad_request","message":"bad rev"}}`))
}

// The Socket.IO handshake's query options (README "Socket.IO": ns,
// prefix, from_rev, from_index, token) are documented: a handshake with
// all of them, answered 200 (an Engine.IO open packet; the Socket.IO
// server is mounted by package server, not in this package's env),
// passes the validator every test's client goes through, which refuses
// an undocumented query parameter (the control: one more made-up option
// is reported). Bad values are the Socket.IO protocol's business (a
// connect error), so the document types them as strings.
func TestOpenAPIDocumentsSocketIOHandshakeOptions(t *testing.T) {
	e := newEnv(t, envOptions{})
	const handshake = "/socket.io/?EIO=4&transport=polling&ns=default&prefix=a&from_rev=1&from_index=0&token=x"
	open := []byte(`0{"sid":"s1","upgrades":["websocket"],"pingInterval":25000,"pingTimeout":20000,"maxPayload":1000000}`)
	hdr := http.Header{"Content-Type": {"text/plain; charset=UTF-8"}}
	check := func(target string) error {
		return e.api.Check(testkit.NewRequest(t, http.MethodGet, e.url+target, ""), nil, http.StatusOK, hdr, open)
	}
	require.NoError(t, check(handshake))
	err := check(handshake + "&flavor=mint")
	require.Error(t, err)
	assert.Contains(t, err.Error(), `query parameter "flavor" is not documented`)
}

// GET and HEAD /v1/auth/self (HEAD: openapi.go's HEAD of a GET route) are
// documented with exactly what they answer: any valid token may ask, so
// their 403 is not the token's rights (the shared Forbidden says "the
// token may not do this") but only the Host refusal against DNS
// rebinding; a real refusal of each passes the validator.
func TestOpenAPIAuthSelfIsRefusedOnlyForItsHost(t *testing.T) {
	s := testkit.StartServer(t) // auth.mode auto on 127.0.0.1: off, local hosts only
	hc := &http.Client{Transport: testkit.NewOpenAPI(t).Transport(t, nil)}
	send := func(method, host string) int {
		req := testkit.NewRequest(t, method, s.URL+"/v1/auth/self", "")
		if host != "" {
			req.Host = host
		}
		res, _ := testkit.Send(t, hc, req)
		return res.StatusCode
	}
	raw, err := httpapi.OpenAPI()
	require.NoError(t, err)
	var doc struct {
		Paths map[string]map[string]json.RawMessage `json:"paths"` // an operation, or a path's parameters
	}
	require.NoError(t, json.Unmarshal(raw, &doc))
	type operation struct {
		Responses map[string]struct {
			Description string `json:"description"`
		} `json:"responses"`
	}
	for _, method := range []string{http.MethodGet, http.MethodHead} {
		assert.Equal(t, http.StatusOK, send(method, ""), method)
		assert.Equal(t, http.StatusForbidden, send(method, "attacker.example"), method)
		rawOp, ok := doc.Paths["/v1/auth/self"][strings.ToLower(method)]
		require.True(t, ok, "%s /v1/auth/self is documented", method)
		var op operation
		require.NoError(t, json.Unmarshal(rawOp, &op))
		assert.Contains(t, op.Responses["403"].Description, "never for the token's rights", method)
		assert.Contains(t, op.Responses["403"].Description, "a Host other than localhost", method)
	}
}
