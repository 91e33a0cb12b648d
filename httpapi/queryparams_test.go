package httpapi_test

import (
	"net/http"
	"sort"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/framework0/ctxd"
	"github.com/framework0/ctxd/httpapi"
)

// A v1 route refuses a query parameter it does not take, before it does
// anything: a typo is not ignored. Before, ?dry-run=true (for dry_run)
// ran a real restore and ?tll=5m (for ttl) stored a key that never
// expires. The routes of Framework0's /ctx API still accept anything.
func TestUnknownQueryParametersRefused(t *testing.T) {
	e, m := newSnapshotEnv(t)
	e.put("k", `1`)
	meta, err := m.Create(bg, "api")
	require.NoError(t, err)
	e.put("k", `2`)
	rev := e.revision()

	ae := requireError(t, e.do(http.MethodPost, "/v1/snapshots/"+meta.ID+"/restore?dry-run=true", ""), http.StatusBadRequest, "bad_request")
	assert.Contains(t, ae.Error.Message, `unknown query parameter "dry-run"`)
	assert.Contains(t, ae.Error.Message, "takes dry_run, ns, prefix, who", "the answer says what the route takes")
	ae = requireError(t, e.do(http.MethodPut, keyPath("default", "k")+"?tll=5m", `3`), http.StatusBadRequest, "bad_request")
	assert.Contains(t, ae.Error.Message, `unknown query parameter "tll"`)
	requireError(t, e.do(http.MethodGet, keyPath("default", "k")+"?revision=1", ""), http.StatusBadRequest, "bad_request")
	assert.Equal(t, http.StatusBadRequest, e.do(http.MethodHead, keyPath("default", "k")+"?limit=1&x=1", "").status, "HEAD takes GET's rev only")
	ae = requireError(t, e.do(http.MethodPost, "/v1/defrag?now=1", ""), http.StatusBadRequest, "bad_request")
	assert.Contains(t, ae.Error.Message, "takes no query parameter")
	// A key's GET and its history share a route, not their parameters.
	ae = requireError(t, e.do(http.MethodGet, keyPath("default", "k")+"/history?rev=1", ""), http.StatusBadRequest, "bad_request")
	assert.Contains(t, ae.Error.Message, `unknown query parameter "rev": GET /v1/ns/:ns/keys/*/history takes before, limit`)
	requireError(t, e.do(http.MethodGet, keyPath("default", "k")+"?before=2", ""), http.StatusBadRequest, "bad_request")
	// A parameter given twice, where the first would have won silently.
	ae = requireError(t, e.do(http.MethodPut, keyPath("default", "k")+"?ttl=5s&ttl=6s", `3`), http.StatusBadRequest, "bad_request")
	assert.Contains(t, ae.Error.Message, `query parameter "ttl" given more than once`)
	requireError(t, e.do(http.MethodGet, keyPath("default", "k")+"?rev=1&rev=2", ""), http.StatusBadRequest, "bad_request")
	// The keepalive (the key route's POST) is checked as every route.
	ae = requireError(t, e.do(http.MethodPost, keyPath("default", "k")+"/keepalive?ttl=10s&bogus=1", ""), http.StatusBadRequest, "bad_request")
	assert.Contains(t, ae.Error.Message, `unknown query parameter "bogus": POST /v1/ns/:ns/keys/*/keepalive takes ttl`)
	requireError(t, e.do(http.MethodPost, keyPath("default", "k")+"/keepalive?ttl=5s&ttl=60s", ""), http.StatusBadRequest, "bad_request")
	got := decode[ctxd.Record](t, e.do(http.MethodGet, keyPath("default", "k"), ""))
	assert.JSONEq(t, `2`, string(got.Value), "nothing was restored or written")
	assert.Equal(t, rev, e.revision(), "refused requests change nothing")

	// What the routes take still works, HEAD included.
	got = decode[ctxd.Record](t, e.do(http.MethodGet, keyPath("default", "k")+"?rev=1", ""))
	assert.JSONEq(t, `1`, string(got.Value))
	assert.Equal(t, http.StatusOK, e.do(http.MethodHead, keyPath("default", "k")+"?rev=1", "").status)
	assert.Equal(t, http.StatusOK, e.do(http.MethodPost, "/v1/snapshots/"+meta.ID+"/restore?dry_run=true", "").status)
	assert.Equal(t, http.StatusOK, e.do(http.MethodPost, "/v1/snapshots/"+meta.ID+"/restore?dry_run=true&ns=default&ns=other", "").status,
		"ns is repeatable")
	assert.Equal(t, http.StatusOK, e.do(http.MethodGet, keyPath("default", "k")+"/history?limit=1", "").status)
	// A flag given without a value is set: "?dry_run" ran a real restore.
	res := decode[ctxd.RestoreResult](t, e.do(http.MethodPost, "/v1/snapshots/"+meta.ID+"/restore?dry_run", ""))
	assert.True(t, res.DryRun)
	assert.Equal(t, rev, e.revision())
	// Framework0's clients may send what they like (a cache buster), which
	// the document does not describe.
	e.api.Skip("/ctx")
	assert.Equal(t, http.StatusOK, e.do(http.MethodGet, "/ctx?key=k&_=1733150000", "").status)
}

// A query string that does not parse is refused on every route, before
// anything is done: net/url drops a pair with a ";" or a bad escape and
// keeps the rest, so that "?dry_run=true;" ran a real restore, "?rev=1;"
// read the current value and "?ttl=5m;" stored a key that never expires.
func TestMalformedQueryStringsRefused(t *testing.T) {
	e, m := newSnapshotEnv(t)
	e.put("k", `1`)
	meta, err := m.Create(bg, "api")
	require.NoError(t, err)
	e.put("k", `2`)
	rev := e.revision()

	ae := requireError(t, e.do(http.MethodPost, "/v1/snapshots/"+meta.ID+"/restore?dry_run=true;&ns=default", ""), http.StatusBadRequest, "bad_request")
	assert.Contains(t, ae.Error.Message, "malformed query string: invalid semicolon separator in query")
	ae = requireError(t, e.do(http.MethodGet, keyPath("default", "k")+"?rev=1;", ""), http.StatusBadRequest, "bad_request")
	assert.Contains(t, ae.Error.Message, "malformed query string")
	requireError(t, e.do(http.MethodPut, keyPath("default", "t")+"?ttl=5m;", `1`), http.StatusBadRequest, "bad_request")
	ae = requireError(t, e.do(http.MethodPut, keyPath("default", "t")+"?%ZZ=1", `1`), http.StatusBadRequest, "bad_request")
	assert.Contains(t, ae.Error.Message, `invalid URL escape "%ZZ"`)
	requireError(t, e.do(http.MethodPut, keyPath("default", "t")+"?who=a%2", `1`), http.StatusBadRequest, "bad_request")
	e.api.Skip("/ctx")
	res := e.do(http.MethodGet, "/ctx?key=k;", "")
	assert.Equal(t, http.StatusBadRequest, res.status)
	assert.Contains(t, string(res.body), `"code":"bad_request"`)
	assert.Contains(t, string(res.body), `"status":"error"`, "in Framework0's shape on /ctx")

	got := decode[ctxd.Record](t, e.do(http.MethodGet, keyPath("default", "k"), ""))
	assert.JSONEq(t, `2`, string(got.Value), "nothing was restored")
	requireError(t, e.do(http.MethodGet, keyPath("default", "t"), ""), http.StatusNotFound, "not_found")
	assert.Equal(t, rev, e.revision(), "refused requests change nothing")
	// Past 10,000 parameters ParseQuery refuses the string, and Query()
	// gave none at all: ?rev=1 read the current value.
	requireError(t, e.do(http.MethodGet, keyPath("default", "k")+"?rev=1"+strings.Repeat("&", 10000), ""), http.StatusBadRequest, "bad_request")
	// Escaped, both characters are fine.
	assert.Equal(t, http.StatusOK, e.do(http.MethodPut, keyPath("default", "t")+"?who=a%3Bb%25", `1`).status)
}

// Every v1 route the server registers has its query parameters in
// openapi.yaml (the only source of what a route takes), except the
// WebSocket handshake, which reads its own options: a route added without
// a documented query would take none.
func TestQueryParametersCoverEveryV1Route(t *testing.T) {
	e := newFullEnv(t, false)
	routes, err := httpapi.RouteQueryParams()
	require.NoError(t, err)
	var missing []string
	for _, rt := range e.srv.Echo().Routes() {
		if !strings.HasPrefix(rt.Path, "/v1/") || rt.Path == "/v1/watch" {
			continue
		}
		method := rt.Method
		if method == http.MethodHead {
			method = http.MethodGet
		}
		ok := false
		for _, suffix := range []string{"", "/history", "/keepalive"} { // what the key route serves
			_, found := routes[method+" "+rt.Path+suffix]
			ok = ok || found
		}
		if !ok {
			missing = append(missing, rt.Method+" "+rt.Path)
		}
	}
	sort.Strings(missing)
	assert.Empty(t, missing, "v1 routes whose query parameters openapi.yaml does not give")
	assert.Equal(t, []string{"dry_run", "ns", "prefix", "who"}, routes["POST /v1/snapshots/:id/restore"])
	assert.Equal(t, []string{"rev"}, routes["GET /v1/ns/:ns/keys/*"], "a key's GET")
	assert.Equal(t, []string{"before", "limit"}, routes["GET /v1/ns/:ns/keys/*/history"], "its history, which the key route serves")
}
