package httpapi_test

import (
	"io"
	"net/http"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/framework0/ctxd"
	"github.com/framework0/ctxd/httpapi"
	"github.com/framework0/ctxd/store/bolt"
)

// TestBadRequestsChangeNothing sends every kind of bad request and checks the
// status, the JSON error code, and that the store's revision did not move.
func TestBadRequestsChangeNothing(t *testing.T) {
	e := newEnv(t, envOptions{
		store: bolt.Options{Limits: ctxd.Limits{MaxKeyBytes: ctxd.MaxKeyBytes, MaxValueBytes: 64, MaxTxnOps: 4}},
		cfg:   httpapi.Config{MaxBodyBytes: 1024},
	})
	e.put("exists", `"v1"`)
	okKey := keyPath("default", "k")

	tests := []struct {
		name   string
		method string
		path   string
		body   string
		hdr    []string
		status int
		code   string
	}{
		// Values.
		{"invalid JSON", http.MethodPut, okKey, `{"a":`, nil, 400, "bad_request"},
		{"not JSON at all", http.MethodPut, okKey, `hello`, nil, 400, "bad_request"},
		{"two JSON values", http.MethodPut, okKey, `1 2`, nil, 400, "bad_request"},
		{"empty body", http.MethodPut, okKey, ``, nil, 400, "bad_request"},
		{"lone surrogate in a string", http.MethodPut, okKey, `{"a":"\ud800"}`, nil, 400, "bad_request"},
		{"value over the store limit", http.MethodPut, okKey, `"` + strings.Repeat("v", 100) + `"`, nil, 413, "too_large"},
		{"body over the body limit", http.MethodPut, okKey, `"` + strings.Repeat("v", 2000) + `"`, nil, 413, "too_large"},

		// Keys.
		{"empty key", http.MethodPut, "/v1/ns/default/keys/", `1`, nil, 400, "bad_request"},
		{"empty key on GET", http.MethodGet, "/v1/ns/default/keys/", ``, nil, 400, "bad_request"},
		{"empty key on DELETE", http.MethodDelete, "/v1/ns/default/keys/", ``, nil, 400, "bad_request"},
		{"key over 1024 bytes", http.MethodPut, keyPath("default", strings.Repeat("k", ctxd.MaxKeyBytes+1)), `1`, nil, 413, "too_large"},
		{"control character in key", http.MethodPut, "/v1/ns/default/keys/a%01b", `1`, nil, 400, "bad_request"},
		{"newline in key", http.MethodPut, "/v1/ns/default/keys/a%0Ab", `1`, nil, 400, "bad_request"},
		{"DEL in key", http.MethodPut, "/v1/ns/default/keys/a%7Fb", `1`, nil, 400, "bad_request"},
		{"C1 control in key", http.MethodPut, "/v1/ns/default/keys/a%C2%85b", `1`, nil, 400, "bad_request"},
		{"invalid UTF-8 in key", http.MethodPut, "/v1/ns/default/keys/a%FFb", `1`, nil, 400, "bad_request"},
		{"control character in key on GET", http.MethodGet, "/v1/ns/default/keys/a%01b", ``, nil, 400, "bad_request"},
		{"control character in key on DELETE", http.MethodDelete, "/v1/ns/default/keys/a%01b", ``, nil, 400, "bad_request"},

		// Namespaces.
		{"bad namespace characters", http.MethodPut, "/v1/ns/bad%20ns%21/keys/k", `1`, nil, 400, "bad_request"},
		{"bad namespace on GET", http.MethodGet, "/v1/ns/bad%20ns%21/keys/k", ``, nil, 400, "bad_request"},
		{"bad namespace on list", http.MethodGet, "/v1/ns/bad%20ns%21/keys", ``, nil, 400, "bad_request"},
		{"bad namespace on history", http.MethodGet, "/v1/ns/bad%20ns%21/keys/k/history", ``, nil, 400, "bad_request"},
		{"slash in namespace", http.MethodPut, "/v1/ns/a%2Fb/keys/k", `1`, nil, 400, "bad_request"},
		{"namespace over 64 bytes", http.MethodPut, keyPath(strings.Repeat("n", 65), "k"), `1`, nil, 400, "bad_request"},

		// If-Match.
		{"If-Match not a number", http.MethodPut, okKey, `1`, []string{"If-Match", "abc"}, 400, "bad_request"},
		{"If-Match weak", http.MethodPut, okKey, `1`, []string{"If-Match", `W/"1"`}, 400, "bad_request"},
		{"If-Match star", http.MethodPut, okKey, `1`, []string{"If-Match", `*`}, 400, "bad_request"},
		{"If-Match negative", http.MethodPut, okKey, `1`, []string{"If-Match", `-1`}, 400, "bad_request"},
		{"If-Match list", http.MethodPut, okKey, `1`, []string{"If-Match", `"1", "2"`}, 400, "bad_request"},
		{"If-Match empty quotes", http.MethodPut, okKey, `1`, []string{"If-Match", `""`}, 400, "bad_request"},
		{"If-Match overflow", http.MethodPut, okKey, `1`, []string{"If-Match", `18446744073709551616`}, 400, "bad_request"},
		{"If-Match bad on DELETE", http.MethodDelete, keyPath("default", "exists"), ``, []string{"If-Match", "x"}, 400, "bad_request"},

		// Writes that fail their precondition.
		{"CAS conflict", http.MethodPut, keyPath("default", "exists"), `2`, []string{"If-Match", "7"}, 409, "conflict"},
		{"CAS must not exist", http.MethodPut, keyPath("default", "exists"), `2`, []string{"If-Match", "0"}, 409, "conflict"},
		{"delete conflict", http.MethodDelete, keyPath("default", "exists"), ``, []string{"If-Match", "2"}, 409, "conflict"},
		{"delete missing key", http.MethodDelete, keyPath("default", "missing"), ``, nil, 404, "not_found"},
		{"delete in unknown namespace", http.MethodDelete, keyPath("nobody", "missing"), ``, nil, 404, "not_found"},

		// Query parameters.
		{"bad limit on list", http.MethodGet, "/v1/ns/default/keys?limit=abc", ``, nil, 400, "bad_request"},
		{"zero limit on list", http.MethodGet, "/v1/ns/default/keys?limit=0", ``, nil, 400, "bad_request"},
		{"negative limit on list", http.MethodGet, "/v1/ns/default/keys?limit=-5", ``, nil, 400, "bad_request"},
		{"limit past 64 bits that is not a number", http.MethodGet, "/v1/ns/default/keys?limit=99999999999999999999x", ``, nil, 400, "bad_request"},
		{"negative limit past 64 bits", http.MethodGet, "/v1/ns/default/keys?limit=-99999999999999999999", ``, nil, 400, "bad_request"},
		{"bad limit on history", http.MethodGet, keyPath("default", "exists") + "/history?limit=x", ``, nil, 400, "bad_request"},
		{"bad before on history", http.MethodGet, keyPath("default", "exists") + "/history?before=-1", ``, nil, 400, "bad_request"},
		{"bad rev", http.MethodGet, keyPath("default", "exists") + "?rev=x", ``, nil, 400, "bad_request"},
		{"list prefix not UTF-8", http.MethodGet, "/v1/ns/default/keys?prefix=%FF", ``, nil, 400, "bad_request"},
		{"list prefix with a control character", http.MethodGet, "/v1/ns/default/keys?prefix=a%00&count=true", ``, nil, 400, "bad_request"},

		// Transactions.
		{"txn invalid JSON", http.MethodPost, "/v1/txn", `{"ops":[`, nil, 400, "bad_request"},
		{"txn empty body", http.MethodPost, "/v1/txn", ``, nil, 400, "bad_request"},
		{"txn not an object", http.MethodPost, "/v1/txn", `[1,2]`, nil, 400, "bad_request"},
		{"txn no ops", http.MethodPost, "/v1/txn", `{"ops":[]}`, nil, 400, "bad_request"},
		{"txn unknown op", http.MethodPost, "/v1/txn", `{"ops":[{"op":"patch","key":"a","value":1}]}`, nil, 400, "bad_request"},
		{"txn unknown field", http.MethodPost, "/v1/txn", `{"ops":[{"op":"put","key":"a","value":1,"if_verison":0}]}`, nil, 400, "bad_request"},
		{"txn put without value", http.MethodPost, "/v1/txn", `{"ops":[{"op":"put","key":"a"}]}`, nil, 400, "bad_request"},
		{"txn delete with value", http.MethodPost, "/v1/txn", `{"ops":[{"op":"delete","key":"exists","value":1}]}`, nil, 400, "bad_request"},
		{"txn empty key", http.MethodPost, "/v1/txn", `{"ops":[{"op":"put","key":"","value":1}]}`, nil, 400, "bad_request"},
		{"txn bad namespace", http.MethodPost, "/v1/txn", `{"ops":[{"op":"put","ns":"bad ns!","key":"a","value":1}]}`, nil, 400, "bad_request"},
		{"txn control char in key", http.MethodPost, "/v1/txn", `{"ops":[{"op":"put","key":"a\u0001","value":1}]}`, nil, 400, "bad_request"},
		{"txn negative if_version", http.MethodPost, "/v1/txn", `{"ops":[{"op":"put","key":"a","value":1,"if_version":-1}]}`, nil, 400, "bad_request"},
		{"txn duplicate key", http.MethodPost, "/v1/txn", `{"ops":[{"op":"put","key":"a","value":1},{"op":"delete","key":"a"}]}`, nil, 400, "bad_request"},
		{"txn lone surrogate in a key", http.MethodPost, "/v1/txn", `{"ops":[{"op":"put","key":"a\ud800","value":1}]}`, nil, 400, "bad_request"},
		{"txn lone surrogate in who", http.MethodPost, "/v1/txn", `{"who":"\udfff","ops":[{"op":"put","key":"a","value":1}]}`, nil, 400, "bad_request"},
		{"txn lone surrogate in a value", http.MethodPost, "/v1/txn", `{"ops":[{"op":"put","key":"a","value":"\udc00"}]}`, nil, 400, "bad_request"},
		{"txn key given twice in an op", http.MethodPost, "/v1/txn", `{"ops":[{"op":"put","key":"d1","value":1,"key":"d2"}]}`, nil, 400, "bad_request"},
		{"txn ops given twice", http.MethodPost, "/v1/txn", `{"ops":[],"ops":[{"op":"put","key":"d1","value":1}]}`, nil, 400, "bad_request"},
		{"txn trailing data", http.MethodPost, "/v1/txn", `{"ops":[{"op":"put","key":"a","value":1}]} {}`, nil, 400, "bad_request"},
		{"txn value over the store limit", http.MethodPost, "/v1/txn", `{"ops":[{"op":"put","key":"a","value":"` + strings.Repeat("v", 100) + `"}]}`, nil, 413, "too_large"},
		{"txn too many ops", http.MethodPost, "/v1/txn", `{"ops":[{"op":"put","key":"a","value":1},{"op":"put","key":"b","value":1},{"op":"put","key":"c","value":1},{"op":"put","key":"d","value":1},{"op":"put","key":"e","value":1}]}`, nil, 413, "too_large"},
		{"txn body over the body limit", http.MethodPost, "/v1/txn", `{"ops":[{"op":"put","key":"a","value":"` + strings.Repeat("v", 2000) + `"}]}`, nil, 413, "too_large"},
		{"txn conflict", http.MethodPost, "/v1/txn", `{"ops":[{"op":"put","key":"a","value":1},{"op":"put","key":"exists","value":2,"if_version":5}]}`, nil, 409, "conflict"},
		{"txn delete missing", http.MethodPost, "/v1/txn", `{"ops":[{"op":"put","key":"a","value":1},{"op":"delete","key":"missing"}]}`, nil, 404, "not_found"},

		// The author, on every route alike: an import keeps the who a dump
		// recorded, but not one the request gives.
		{"import who with a control character", http.MethodPost, "/v1/ns/imp/import?who=%00", `{"context":{"a":1}}`, nil, 400, "bad_request"},
		{"import who not UTF-8", http.MethodPost, "/v1/ns/imp/import?who=%FF", `{"context":{"a":1}}`, nil, 400, "bad_request"},
		{"import X-Ctxd-Who with a tab", http.MethodPost, "/v1/ns/imp/import", `{"context":{"a":1}}`, []string{"X-Ctxd-Who", "a\tb"}, 400, "bad_request"},
		{"who too long", http.MethodPut, okKey + "?who=" + strings.Repeat("w", 257), `1`, nil, 413, "too_large"},

		// Routing.
		{"unknown route", http.MethodGet, "/v1/nope", ``, nil, 404, "not_found"},
		{"unknown root route", http.MethodGet, "/nope", ``, nil, 404, "not_found"}, // GET / is the index page (compat.go)
		{"namespace without keys", http.MethodGet, "/v1/ns/default", ``, nil, 404, "not_found"},
		{"wrong method on key", http.MethodTrace, okKey, `1`, nil, 405, "method_not_allowed"},
		{"wrong method on list", http.MethodPost, "/v1/ns/default/keys", `1`, nil, 405, "method_not_allowed"},
		{"wrong method on txn", http.MethodGet, "/v1/txn", ``, nil, 405, "method_not_allowed"},
		{"wrong method on status", http.MethodDelete, "/v1/status", ``, nil, 405, "method_not_allowed"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			rev := e.revision()
			r := e.do(tt.method, tt.path, tt.body, tt.hdr...)
			requireError(t, r, tt.status, tt.code)
			assert.NotEmpty(t, r.header.Get("X-Request-Id"))
			assert.Equal(t, rev, e.revision(), "a failed request must write nothing")
		})
	}

	// Nothing above created a key or changed the one that exists.
	r := e.do(http.MethodGet, "/v1/ns/default/keys", "")
	require.Equal(t, http.StatusOK, r.status)
	p := decode[ctxd.ListPage](t, r)
	require.Len(t, p.Records, 1)
	assert.Equal(t, "exists", p.Records[0].Key)
	assert.Equal(t, `"v1"`, string(p.Records[0].Value))
	assert.Equal(t, uint64(1), p.Records[0].Version)
	r = e.do(http.MethodGet, "/v1/ns", "")
	assert.JSONEq(t, `{"namespaces":[{"name":"default","keys":1}]}`, string(r.body))
}

func TestIfMatchTwice(t *testing.T) {
	e := newEnv(t, envOptions{})
	e.put("k", "1")
	req, err := http.NewRequest(http.MethodPut, e.ts.URL+keyPath("default", "k"), strings.NewReader("2"))
	require.NoError(t, err)
	req.Header.Add("If-Match", "1")
	req.Header.Add("If-Match", "2")
	requireError(t, e.send(req), http.StatusBadRequest, "bad_request")
	assert.Equal(t, uint64(1), e.revision())
}

// A key's path names the same methods in every Allow (its OPTIONS, and
// the 405 of a method it refuses), and serves each method it names: POST
// only at a keepalive's path (OPTIONS named POST on every key's path,
// whose POST was a 405 whose Allow left it out).
func TestMethodNotAllowedListsAllowed(t *testing.T) {
	e := newEnv(t, envOptions{})
	for _, tt := range []struct {
		path  string
		allow string
	}{
		{keyPath("default", "k"), "OPTIONS, DELETE, GET, HEAD, PATCH, PUT"},
		{keyPath("default", "k") + "/keepalive", "OPTIONS, DELETE, GET, HEAD, PATCH, POST, PUT"},
	} {
		r := e.do(http.MethodOptions, tt.path, "")
		require.Equal(t, http.StatusNoContent, r.status, "OPTIONS %s: %s", tt.path, r.body)
		assert.Equal(t, tt.allow, r.header.Get("Allow"), "OPTIONS %s", tt.path)
		for _, m := range []string{http.MethodPost, http.MethodTrace, "PROPFIND"} {
			if strings.Contains(tt.allow, m) {
				continue
			}
			r := e.do(m, tt.path, `1`)
			requireError(t, r, http.StatusMethodNotAllowed, "method_not_allowed")
			assert.Equal(t, tt.allow, r.header.Get("Allow"), "%s %s", m, tt.path)
		}
		for _, m := range strings.Split(tt.allow, ", ") {
			r := e.do(m, tt.path, `1`)
			assert.NotEqual(t, http.StatusMethodNotAllowed, r.status, "%s %s is in Allow: %s", m, tt.path, r.body)
		}
	}
}

// chunked hides a body's length, so the client sends it chunked and the
// server learns its size only by reading.
type chunked struct{ r io.Reader }

func (c chunked) Read(p []byte) (int, error) { return c.r.Read(p) }

func TestBodyLimitWithoutContentLength(t *testing.T) {
	e := newEnv(t, envOptions{cfg: httpapi.Config{MaxBodyBytes: 1024}})

	// Within the limit.
	req, err := http.NewRequest(http.MethodPut, e.ts.URL+keyPath("default", "k"), chunked{strings.NewReader(`"` + strings.Repeat("v", 1000) + `"`)})
	require.NoError(t, err)
	r := e.send(req)
	require.Equal(t, http.StatusOK, r.status, string(r.body))

	// Over it.
	req, err = http.NewRequest(http.MethodPut, e.ts.URL+keyPath("default", "k"), chunked{strings.NewReader(`"` + strings.Repeat("v", 4000) + `"`)})
	require.NoError(t, err)
	requireError(t, e.send(req), http.StatusRequestEntityTooLarge, "too_large")

	req, err = http.NewRequest(http.MethodPost, e.ts.URL+"/v1/txn", chunked{strings.NewReader(`{"ops":[{"op":"put","key":"a","value":"` + strings.Repeat("v", 4000) + `"}]}`)})
	require.NoError(t, err)
	requireError(t, e.send(req), http.StatusRequestEntityTooLarge, "too_large")

	assert.Equal(t, uint64(1), e.revision())
	r = e.do(http.MethodGet, keyPath("default", "k"), "")
	assert.Equal(t, uint64(1), decode[ctxd.Record](t, r).Version)
}

func TestDefaultBodyLimit(t *testing.T) {
	e := newEnv(t, envOptions{store: bolt.Options{Limits: ctxd.Limits{MaxValueBytes: 4 << 20}}})
	big := `"` + strings.Repeat("v", int(httpapi.DefaultMaxBodyBytes)) + `"`
	requireError(t, e.do(http.MethodPut, keyPath("default", "big"), big), http.StatusRequestEntityTooLarge, "too_large")
	ok := `"` + strings.Repeat("v", int(httpapi.DefaultMaxBodyBytes)-2) + `"`
	r := e.do(http.MethodPut, keyPath("default", "big"), ok)
	require.Equal(t, http.StatusOK, r.status, "a body of exactly the limit is accepted")
}

// A field of the wrong type is named in the protocol's words, not in Go's
// ("cannot unmarshal string into Go struct field ... of type uint64").
func TestWrongTypeNamesTheField(t *testing.T) {
	e := newEnv(t, envOptions{})
	r := e.do(http.MethodPost, "/v1/txn", `{"ops":[{"op":"put","key":"a","value":1,"if_version":"3"}]}`)
	ae := requireError(t, r, http.StatusBadRequest, ctxd.CodeBadRequest)
	assert.Equal(t, `transaction body is not valid: "ops.if_version" must be a whole number, 0 or more, not a string`, ae.Error.Message)
	r = e.do(http.MethodPost, "/ctx", `{"key":5,"value":1}`)
	ce := requireErrorAnswer[ctxError](t, r, http.StatusBadRequest, ctxd.CodeBadRequest)
	assert.Equal(t, `the body is not a valid JSON object: "key" must be a string, not a number`, ce.Error.Message)
	// A member given twice: the last would have won, a key the client
	// may not have meant.
	rev := e.revision()
	r = e.do(http.MethodPost, "/ctx", `{"key":"c1","value":1,"key":"c2"}`)
	ce = requireErrorAnswer[ctxError](t, r, http.StatusBadRequest, ctxd.CodeBadRequest)
	assert.Contains(t, ce.Error.Message, `member "key" is given twice`)
	assert.Equal(t, rev, e.revision())
}
