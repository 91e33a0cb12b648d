package httpapi_test

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"testing"

	"github.com/labstack/echo/v4"
	"github.com/rs/zerolog"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/framework0/ctxd"
	"github.com/framework0/ctxd/auth"
	"github.com/framework0/ctxd/configs"
	"github.com/framework0/ctxd/httpapi"
	"github.com/framework0/ctxd/internal/testkit"
	"github.com/framework0/ctxd/store/bolt"
)

// The tokens of the access tests. "limited" may write namespace team,
// keys starting with app. only.
var (
	tokAdmin   = auth.NewSecret()
	tokWrite   = auth.NewSecret()
	tokRead    = auth.NewSecret()
	tokLimited = auth.NewSecret()
	tokMetrics = auth.NewSecret()
	tokOther   = auth.NewSecret() // reads namespace other only
)

// testTokensYAML is the tokens file of the access tests.
func testTokensYAML() string {
	entry := testkit.TokenEntry
	return "tokens:\n" +
		entry("ops", tokAdmin, "    roles: [admin]\n") +
		entry("writer", tokWrite, "    roles: [write]\n") +
		entry("reader", tokRead, "    roles: [read]\n") +
		entry("team-app", tokLimited, "    roles: [write]\n    namespaces: [team]\n    prefixes: [app.]\n") +
		entry("prometheus", tokMetrics, "    roles: [metrics]\n") +
		entry("other-reader", tokOther, "    roles: [read]\n    namespaces: [other]\n")
}

// newFullEnv is an env whose server is the whole server
// (testkit.StartServer): snapshots, maintenance, dumps, metrics and the
// WebSocket, with the compat API on namespace team and, when access is
// set, access control on with the tokens of testTokensYAML.
func newFullEnv(t *testing.T, access bool, mutate ...func(*configs.Config)) *env {
	t.Helper()
	tokens := filepath.Join(t.TempDir(), "tokens.yaml")
	require.NoError(t, os.WriteFile(tokens, []byte(testTokensYAML()), 0o600))
	s := testkit.StartServer(t, testkit.WithConfig(func(c *configs.Config) {
		c.Compat.Namespace = "team"
		c.Snapshots.MaxUploadBytes = 1 << 20
		c.Auth.Mode = configs.AuthOff
		if access {
			c.Auth.Mode, c.Auth.TokensFile = configs.AuthOn, tokens
		}
		for _, f := range mutate {
			f(c)
		}
	}))
	api := testkit.NewOpenAPI(t)
	hc := &http.Client{Transport: api.Transport(t, nil)}
	return &env{t: t, store: s.Backend(), srv: s.Server().API(), url: s.URL, hc: hc, logs: s.Logs, api: api, access: s.Server().Access()}
}

// need is what a request needs.
type need int

const (
	public   need = iota // no token
	anyToken             // a valid token (no such route: 404 or 405)
	read
	write
	admin
	metrics
)

type accessCase struct {
	method, path, body string
	route              string // the route pattern it exercises
	need               need
	limitedOK          bool // the limited token (team, app.*) may
}

func accessCases() []accessCase {
	c := func(method, path, body, route string, n need, limitedOK bool) accessCase {
		return accessCase{method, path, body, route, n, limitedOK}
	}
	const keys = "/v1/ns/:ns/keys/*"
	cases := []accessCase{
		c("GET", "/healthz", "", "/healthz", public, true),
		c("GET", "/readyz", "", "/readyz", public, true),
		c("GET", "/v1/openapi.json", "", "/v1/openapi.json", public, true),
		c("GET", "/", "", "/", public, true),
		c("HEAD", "/", "", "/", public, true),
		c("GET", "/ui/x/app.js", "", "/ui/:version/*", public, true),
		c("HEAD", "/ui/x/app.js", "", "/ui/:version/*", public, true),

		c("GET", "/metrics", "", "/metrics", metrics, false),
		c("GET", "/v1/status", "", "/v1/status", read, true),
		c("GET", "/v1/auth/self", "", "/v1/auth/self", anyToken, true),
		c("GET", "/v1/ns", "", "/v1/ns", read, true),
		c("GET", "/v1/watch", "", "/v1/watch", read, true),
		// Socket.IO checks the token itself, at its CONNECT (the auth
		// payload comes after the handshake): realtime/socketio's tests.
		c("GET", "/socket.io/?EIO=4&transport=polling", "", "/socket.io/", public, true),
		c("POST", "/socket.io/?EIO=4&transport=polling&sid=none", "", "/socket.io/", public, true),

		c("GET", "/v1/ns/team/keys?prefix=app.", "", "/v1/ns/:ns/keys", read, true),
		c("GET", "/v1/ns/team/keys?prefix=app.x.y", "", "/v1/ns/:ns/keys", read, true),
		c("GET", "/v1/ns/team/keys", "", "/v1/ns/:ns/keys", read, false),
		c("GET", "/v1/ns/default/keys?prefix=app.", "", "/v1/ns/:ns/keys", read, false),
		c("GET", "/v1/ns/team/keys/app.x", "", keys, read, true),
		c("GET", "/v1/ns/team/keys/other", "", keys, read, false),
		c("GET", "/v1/ns/default/keys/app.x", "", keys, read, false),
		c("GET", "/v1/ns/team/keys/app.x/history", "", keys, read, true),
		c("GET", "/v1/ns/team/keys/secret/history", "", keys, read, false),
		c("GET", "/v1/ns/team/keys/app.x%2Fhistory", "", keys, read, true),
		c("HEAD", "/v1/ns/team/keys/app.x", "", keys, read, true),
		c("HEAD", "/v1/ns/team/keys/secret", "", keys, read, false),
		c("PUT", "/v1/ns/team/keys/app.y", `1`, keys, write, true),
		c("PUT", "/v1/ns/team/keys/zzz", `1`, keys, write, false),
		c("PUT", "/v1/ns/default/keys/app.y", `1`, keys, write, false),
		c("PUT", "/v1/ns/team/keys/app.%2F..%2Fsecret", `1`, keys, write, true), // the key "app./../secret"
		c("PUT", "/v1/ns/team/keys/..%2Fapp.z", `1`, keys, write, false),
		c("PUT", "/v1/ns/te%61m/keys/app.q", `1`, keys, write, true),       // "team", escaped
		c("PATCH", "/v1/ns/team/keys/app.x", `{"a":1}`, keys, write, true), // no Content-Type: the handler's 415
		c("PATCH", "/v1/ns/default/keys/app.x", `{"a":1}`, keys, write, false),
		c("DELETE", "/v1/ns/team/keys/app.gone", "", keys, write, true),
		c("DELETE", "/v1/ns/default/keys/app.gone", "", keys, write, false),
		c("POST", "/v1/ns/team/keys/app.hb/keepalive?ttl=1m", "", keys, write, true),
		c("POST", "/v1/ns/team/keys/secret/keepalive?ttl=1m", "", keys, write, false),
		c("POST", "/v1/txn", `{"ops":[{"op":"put","ns":"team","key":"app.t","value":1}]}`, "/v1/txn", write, true),
		c("POST", "/v1/txn", `{"ops":[{"op":"put","ns":"team","key":"app.t","value":1},{"op":"put","key":"app.u","value":2}]}`, "/v1/txn", write, false),
		c("POST", "/v1/txn", `{"ops":[{"op":"delete","ns":"team","key":"secret"}]}`, "/v1/txn", write, false),
		c("POST", "/v1/txn", `{"ops":[`, "/v1/txn", write, true), // malformed: the handler's 400

		c("GET", "/v1/ns/team/export", "", "/v1/ns/:ns/export", read, false),
		c("POST", "/v1/ns/team/import", `{"context":{"app.i":1}}`, "/v1/ns/:ns/import", write, false),
		c("POST", "/v1/ns/team/dumps?format=json", "", "/v1/ns/:ns/dumps", admin, false),
		c("GET", "/v1/dumps", "", "/v1/dumps", admin, false),
		c("GET", "/v1/dumps/nope.json", "", "/v1/dumps/*", admin, false),
		c("DELETE", "/v1/dumps/nope.json", "", "/v1/dumps/*", admin, false),

		c("POST", "/v1/snapshots", "", "/v1/snapshots", admin, false),
		c("GET", "/v1/snapshots", "", "/v1/snapshots", admin, false),
		c("POST", "/v1/snapshots/upload", "not a database", "/v1/snapshots/upload", admin, false),
		c("GET", "/v1/snapshots/nope", "", "/v1/snapshots/:id", admin, false),
		c("DELETE", "/v1/snapshots/nope", "", "/v1/snapshots/:id", admin, false),
		c("GET", "/v1/snapshots/nope/export", "", "/v1/snapshots/:id/export", admin, false),
		c("POST", "/v1/snapshots/nope/restore?dry_run=true", "", "/v1/snapshots/:id/restore", admin, false),
		c("POST", "/v1/compact", "", "/v1/compact", admin, false),
		c("POST", "/v1/defrag", "", "/v1/defrag", admin, false),

		c("GET", "/ctx?key=app.x", "", "/ctx", read, true),
		c("GET", "/ctx?key=other", "", "/ctx", read, false),
		c("POST", "/ctx", `{"key":"app.c","value":1}`, "/ctx", write, true),
		c("POST", "/ctx", `{"key":"other","value":1}`, "/ctx", write, false),
		c("GET", "/ctx/all", "", "/ctx/all", read, false),
		c("GET", "/ctx/history?key=app.x", "", "/ctx/history", read, true),
		c("GET", "/ctx/history", "", "/ctx/history", read, false),
		c("GET", "/ctx/status", "", "/ctx/status", read, true),
		c("POST", "/ctx/dump", `{"format":"json"}`, "/ctx/dump", admin, false),
		c("GET", "/ctx/dump/list", "", "/ctx/dump/list", admin, false),
		c("GET", "/ctx/dump/nope.json", "", "/ctx/dump/*", admin, false),
		c("GET", "/ctx/app.x", "", "/ctx/*", read, true),
		c("GET", "/ctx/other", "", "/ctx/*", read, false),
		c("DELETE", "/ctx/app.gone", "", "/ctx/*", write, true),
		c("DELETE", "/ctx/other", "", "/ctx/*", write, false),

		c("GET", "/v1/nope", "", "", anyToken, true),
		c("POST", "/v1/ns/team/keys/app.x", "", "", anyToken, true),
	}
	// Every GET route answers HEAD, with the GET's rule: each GET case
	// again as a HEAD (but the WebSocket and Engine.IO handshakes').
	for _, tc := range slices.Clone(cases) {
		switch tc.route {
		case "", "/", "/ui/:version/*", keys, "/v1/watch", "/socket.io/":
			continue // no route, HEAD cases of their own, or no HEAD
		}
		if tc.method == "GET" {
			tc.method = "HEAD"
			cases = append(cases, tc)
		}
	}
	return cases
}

// allowed says whether the holder of secret may make a request that needs n.
func allowed(secret string, n need, limitedOK bool) bool {
	switch secret {
	case tokAdmin:
		return true
	case tokWrite:
		return n != admin && n != metrics
	case tokRead:
		return n == public || n == anyToken || n == read
	case tokLimited:
		return n == public || n == anyToken || (n == read || n == write) && limitedOK
	case tokMetrics:
		return n == public || n == anyToken || n == metrics
	}
	return n == public
}

// Every route, with no token, a bad one, and each role: 401 without a
// valid token, 403 outside the token's rights, and otherwise whatever the
// handler answers.
func TestAccessEveryRouteAndRole(t *testing.T) {
	e := newFullEnv(t, true)
	for _, kv := range [][2]string{{"team", "app.x"}, {"team", "secret"}, {"default", "app.x"}, {"team", "app.gone"}, {"default", "app.gone"}} {
		_, err := e.store.Put(bg, kv[0], kv[1], []byte(`"v"`), nil, "test")
		require.NoError(t, err)
	}

	creds := []struct {
		name, header, secret string
	}{
		{"none", "", ""},
		{"bad token", "Bearer " + auth.NewSecret(), "bad"},
		{"not bearer", "Basic " + tokAdmin, "bad"},
		{"admin", "Bearer " + tokAdmin, tokAdmin},
		{"write", "Bearer " + tokWrite, tokWrite},
		{"read", "bearer " + tokRead, tokRead},
		{"limited", "Bearer " + tokLimited, tokLimited},
		{"metrics", "Bearer  " + tokMetrics + " ", tokMetrics},
	}
	for _, cr := range creds {
		for _, tc := range accessCases() {
			name := cr.name + " " + tc.method + " " + tc.path
			var hdr []string
			if cr.header != "" {
				hdr = []string{"Authorization", cr.header}
			}
			r := e.do(tc.method, tc.path, tc.body, hdr...)
			switch {
			case tc.need == public || allowed(cr.secret, tc.need, tc.limitedOK):
				assert.NotContains(t, []int{401, 403, 429}, r.status, "%s: %s", name, r.body)
			case cr.secret == "":
				requireAccessError(t, r, http.StatusUnauthorized, "unauthorized", name)
				assert.Equal(t, `Bearer realm="ctxd"`, r.header.Get("WWW-Authenticate"), name)
			case cr.secret == "bad":
				requireAccessError(t, r, http.StatusUnauthorized, "unauthorized", name)
				assert.Equal(t, `Bearer realm="ctxd", error="invalid_token"`, r.header.Get("WWW-Authenticate"), name)
			default:
				requireAccessError(t, r, http.StatusForbidden, "forbidden", name)
				assert.Contains(t, r.header.Get("WWW-Authenticate"), `error="insufficient_scope"`, name)
			}
		}
	}

}

// What a token is refused changes nothing, whatever the body holds.
func TestAccessRefusalWritesNothing(t *testing.T) {
	e := newFullEnv(t, true)
	_, err := e.store.Put(bg, "team", "secret", []byte(`"s"`), nil, "test")
	require.NoError(t, err)
	rev := e.store.Revision()
	lim := []string{"Authorization", "Bearer " + tokLimited}
	for _, req := range [][3]string{
		{"PUT", "/v1/ns/team/keys/zzz", "1"},
		{"PUT", "/v1/ns/default/keys/app.y", "1"},
		{"DELETE", "/v1/ns/team/keys/secret", ""},
		{"POST", "/v1/txn", `{"ops":[{"op":"put","ns":"team","key":"app.ok","value":1},{"op":"delete","ns":"team","key":"secret"}]}`},
		{"POST", "/ctx", `{"key":"secret","value":2}`},
		{"DELETE", "/ctx/secret", ""},
		{"POST", "/v1/ns/team/import", `{"context":{"app.i":1,"secret":3}}`},
	} {
		r := e.do(req[0], req[1], req[2], lim...)
		require.Equal(t, http.StatusForbidden, r.status, "%v: %s", req, r.body)
	}
	r := e.do("PUT", "/v1/ns/team/keys/app.ok", "1", "Authorization", "Bearer "+tokRead)
	require.Equal(t, http.StatusForbidden, r.status, "read token: %s", r.body)
	assert.Equal(t, rev, e.store.Revision(), "a refused request wrote something")
}

// The access log names the token a request came with (never its secret),
// allowed or refused; a request without a valid token has no name.
func TestAccessLogNamesTheToken(t *testing.T) {
	e := newFullEnv(t, true)
	e.do("GET", "/v1/status", "", "Authorization", "Bearer "+tokRead, "X-Request-Id", "by-reader")
	e.do("PUT", "/v1/ns/team/keys/app.x", "1", "Authorization", "Bearer "+tokRead, "X-Request-Id", "refused-reader")
	e.do("DELETE", "/v1/snapshots/none", "", "Authorization", "Bearer "+tokAdmin, "X-Request-Id", "by-ops")
	e.do("GET", "/v1/status", "", "Authorization", "Bearer "+auth.NewSecret(), "X-Request-Id", "bad-token")
	e.do("GET", "/healthz", "", "Authorization", "Bearer "+tokRead, "X-Request-Id", "public")

	byID := map[string]map[string]any{}
	testkit.Eventually(t, func() bool {
		for _, l := range e.logs.Lines(t) {
			if id, _ := l["request_id"].(string); l["message"] == "request" {
				byID[id] = l
			}
		}
		return len(byID) >= 5 && byID["public"] != nil
	}, "the requests' access log lines")
	for id, want := range map[string]string{"by-reader": "reader", "refused-reader": "reader", "by-ops": "ops"} {
		require.NotNil(t, byID[id], id)
		assert.Equal(t, want, byID[id]["token"], id)
	}
	assert.EqualValues(t, http.StatusForbidden, byID["refused-reader"]["status"])
	assert.EqualValues(t, http.StatusNotFound, byID["by-ops"]["status"])
	for _, id := range []string{"bad-token", "public"} {
		require.NotNil(t, byID[id], id)
		assert.NotContains(t, byID[id], "token", id)
	}
	assert.NotContains(t, e.logs.String(), tokRead, "a secret in the log")

	// A request the rate limit refuses names its token too.
	limited := newFullEnv(t, true, func(c *configs.Config) { c.HTTP.RateLimit, c.HTTP.RateBurst = 0.001, 1 })
	limited.do("GET", "/v1/status", "", "Authorization", "Bearer "+tokRead)
	r := limited.do("GET", "/v1/status", "", "Authorization", "Bearer "+tokRead, "X-Request-Id", "too-fast")
	require.Equal(t, http.StatusTooManyRequests, r.status, string(r.body))
	var line map[string]any
	testkit.Eventually(t, func() bool {
		for _, l := range limited.logs.Lines(t) {
			if l["request_id"] == "too-fast" && l["message"] == "request" {
				line = l
			}
		}
		return line != nil
	}, "the 429's access log line")
	assert.Equal(t, "reader", line["token"])
}

// requireAccessError checks a refusal: status, JSON error code, and for the
// /ctx routes Framework0's "status":"error".
func requireAccessError(t *testing.T, r response, status int, code, name string) {
	t.Helper()
	require.Equal(t, status, r.status, "%s: %s", name, r.body)
	require.Equal(t, "application/json", r.header.Get("Content-Type"), name)
	if strings.HasPrefix(name, "HEAD ") || strings.Contains(name, " HEAD ") {
		return // no body
	}
	var body struct {
		Error struct {
			Code, Message string
		}
		Status string
	}
	require.NoError(t, json.Unmarshal(r.body, &body), "%s: %s", name, r.body)
	require.Equal(t, code, body.Error.Code, "%s: %s", name, r.body)
	require.NotEmpty(t, body.Error.Message, name)
}

// The table above covers every route the server registers, so that a new
// route cannot go untested (and a route without an access rule is
// admin-only, see below).
func TestAccessCasesCoverEveryRoute(t *testing.T) {
	e := newFullEnv(t, true)
	covered := map[string]bool{}
	for _, tc := range accessCases() {
		covered[tc.method+" "+tc.route] = true
	}
	var missing []string
	for _, rt := range e.srv.Echo().Routes() {
		if !covered[rt.Method+" "+rt.Path] {
			missing = append(missing, rt.Method+" "+rt.Path)
		}
	}
	sort.Strings(missing)
	assert.Empty(t, missing, "routes without an access test case")
}

// A route added without an access rule is closed to all but admins.
func TestAccessRouteWithoutRuleIsAdminOnly(t *testing.T) {
	e := newFullEnv(t, true)
	e.api.Skip("/v1/brand-new") // this test's own route
	e.srv.Echo().GET("/v1/brand-new", func(c echo.Context) error { return c.NoContent(http.StatusNoContent) })
	requireAccessError(t, e.do("GET", "/v1/brand-new", "", "Authorization", "Bearer "+tokWrite), http.StatusForbidden, "forbidden", "write")
	assert.Equal(t, http.StatusNoContent, e.do("GET", "/v1/brand-new", "", "Authorization", "Bearer "+tokAdmin).status)
}

// GET /v1/ns lists only the namespaces the token may read.
func TestAccessNamespacesFiltered(t *testing.T) {
	e := newFullEnv(t, true)
	for _, ns := range []string{"team", "other"} {
		_, err := e.store.Put(bg, ns, "app.k", []byte(`1`), nil, "test")
		require.NoError(t, err)
	}
	names := func(secret string) []string {
		r := e.do("GET", "/v1/ns", "", "Authorization", "Bearer "+secret)
		require.Equal(t, http.StatusOK, r.status, string(r.body))
		var out struct{ Namespaces []ctxd.Namespace }
		require.NoError(t, json.Unmarshal(r.body, &out))
		var ns []string
		for _, n := range out.Namespaces {
			ns = append(ns, n.Name)
		}
		return ns
	}
	assert.Equal(t, []string{"default", "other", "team"}, names(tokRead))
	assert.Equal(t, []string{"team"}, names(tokLimited))
}

// Every count a token is given counts only the keys (and changes) it may
// read: GET /v1/ns, /v1/status, /ctx/status and /ctx/history told a token
// limited to team's app.* keys how many others there were, and how often
// they changed.
func TestAccessCountsOnlyWhatTheTokenReads(t *testing.T) {
	e := newFullEnv(t, true)
	put := func(ns, key string) {
		_, err := e.store.Put(bg, ns, key, []byte(`1`), nil, "test")
		require.NoError(t, err)
	}
	put("team", "app.a")
	put("team", "app.b")
	put("team", "app.a")
	for range 3 {
		put("team", "secret")
	}
	put("other", "app.c")
	get := func(secret, path string, out any) int {
		r := e.do("GET", path, "", "Authorization", "Bearer "+secret)
		if r.status == http.StatusOK {
			require.NoError(t, json.Unmarshal(r.body, out), string(r.body))
		}
		return r.status
	}
	var nss struct{ Namespaces []ctxd.Namespace }
	require.Equal(t, http.StatusOK, get(tokLimited, "/v1/ns", &nss))
	assert.Equal(t, []ctxd.Namespace{{Name: "team", Keys: 2}}, nss.Namespaces)
	require.Equal(t, http.StatusOK, get(tokRead, "/v1/ns", &nss))
	assert.Equal(t, []ctxd.Namespace{{Name: "default"}, {Name: "other", Keys: 1}, {Name: "team", Keys: 3}}, nss.Namespaces)

	var st ctxd.ServerStatus
	require.Equal(t, http.StatusOK, get(tokLimited, "/v1/status", &st))
	assert.Equal(t, [2]any{uint64(2), 1}, [2]any{st.Keys, st.Namespaces})
	assert.Nil(t, st.ReadCache, "the read cache counts others' keys")
	require.Equal(t, http.StatusOK, get(tokOther, "/v1/status", &st))
	assert.Equal(t, [2]any{uint64(1), 1}, [2]any{st.Keys, st.Namespaces})
	st = ctxd.ServerStatus{}
	require.Equal(t, http.StatusOK, get(tokRead, "/v1/status", &st))
	assert.Equal(t, [2]any{uint64(4), 3}, [2]any{st.Keys, st.Namespaces}, "as GET /v1/ns lists them")
	assert.NotNil(t, st.ReadCache, "a token that reads everything sees the cache")

	var cs struct{ Keys uint64 }
	require.Equal(t, http.StatusOK, get(tokLimited, "/ctx/status", &cs))
	assert.Equal(t, uint64(2), cs.Keys)
	require.Equal(t, http.StatusOK, get(tokRead, "/ctx/status", &cs))
	assert.Equal(t, uint64(3), cs.Keys)
	assert.Equal(t, http.StatusForbidden, get(tokOther, "/ctx/status", &cs), "namespace team is not its to read")

	var h struct {
		Total    int `json:"total_entries"`
		Filtered int `json:"filtered_entries"`
	}
	require.Equal(t, http.StatusOK, get(tokLimited, "/ctx/history?key=app.a", &h))
	assert.Equal(t, [2]int{3, 2}, [2]int{h.Total, h.Filtered}, "app.a twice, app.b once; secret's changes not counted")
	require.Equal(t, http.StatusOK, get(tokRead, "/ctx/history?key=app.a", &h))
	assert.Equal(t, [2]int{6, 2}, [2]int{h.Total, h.Filtered})
}

// Without access control (the default on loopback), nothing needs a token.
func TestAccessOff(t *testing.T) {
	e := newFullEnv(t, false)
	r := e.do("PUT", "/v1/ns/default/keys/a", "1")
	assert.Equal(t, http.StatusOK, r.status, string(r.body))
	r = e.do("POST", "/v1/compact", "", "Authorization", "Bearer whatever")
	assert.Equal(t, http.StatusOK, r.status, string(r.body))
}

// The WebSocket accepts the token as ?token= (browsers cannot set headers
// on it); other routes do not, so that tokens stay out of URLs.
func TestAccessQueryTokenOnlyOnWatch(t *testing.T) {
	e := newFullEnv(t, true)
	r := e.do("GET", "/v1/watch?token="+tokRead, "")
	requireError(t, r, http.StatusBadRequest, "bad_request") // past access control: not a WebSocket request
	r = e.do("GET", "/v1/watch?token=ctxd_nope", "")
	requireError(t, r, http.StatusUnauthorized, "unauthorized")
	r = e.do("GET", "/v1/status?token="+tokRead, "")
	requireError(t, r, http.StatusUnauthorized, "unauthorized")
	assert.Contains(t, r.header.Get("WWW-Authenticate"), "Bearer")
}

// The token's secret never appears in the log, not even from ?token=.
func TestAccessTokenNotLogged(t *testing.T) {
	e := newFullEnv(t, true)
	e.do("GET", "/v1/watch?token="+tokRead, "")
	e.do("GET", "/v1/status", "", "Authorization", "Bearer "+tokAdmin)
	e.do("GET", "/v1/status", "", "Authorization", "Bearer "+tokLimited+"x")
	logs := e.logs.String()
	for _, s := range []string{tokRead, tokAdmin, tokLimited} {
		assert.NotContains(t, logs, s)
	}
}

// A CORS preflight from an allowed origin is answered (204) without a
// token; other origins get 403; answers to allowed origins carry the CORS
// headers, others none.
func TestCORS(t *testing.T) {
	e := newFullEnv(t, true, func(c *configs.Config) { c.HTTP.CORSOrigins = []string{"https://app.example.com"} })
	preflight := func(origin string) response {
		return e.do("OPTIONS", "/v1/ns/default/keys/a", "", "Origin", origin,
			"Access-Control-Request-Method", "PUT", "Access-Control-Request-Headers", "authorization, content-type, if-match")
	}
	r := preflight("https://app.example.com")
	require.Equal(t, http.StatusNoContent, r.status, string(r.body))
	assert.Equal(t, "https://app.example.com", r.header.Get("Access-Control-Allow-Origin"))
	assert.Contains(t, r.header.Get("Access-Control-Allow-Methods"), "PUT")
	for _, h := range []string{"Authorization", "Content-Type", "If-Match", "X-Ctxd-Who"} {
		assert.Contains(t, r.header.Get("Access-Control-Allow-Headers"), h)
	}
	assert.NotEmpty(t, r.header.Get("Access-Control-Max-Age"))
	assert.Empty(t, r.header.Get("Access-Control-Allow-Credentials"))
	assert.Contains(t, r.header.Values("Vary"), "Origin")

	requireError(t, preflight("https://evil.example"), http.StatusForbidden, "forbidden")

	r = e.do("PUT", "/v1/ns/default/keys/a", "1", "Origin", "https://app.example.com", "Authorization", "Bearer "+tokWrite)
	require.Equal(t, http.StatusOK, r.status, string(r.body))
	assert.Equal(t, "https://app.example.com", r.header.Get("Access-Control-Allow-Origin"))
	assert.Contains(t, r.header.Get("Access-Control-Expose-Headers"), "ETag")

	// A refusal still carries the CORS headers, so the page can read why.
	r = e.do("GET", "/v1/status", "", "Origin", "https://app.example.com")
	requireError(t, r, http.StatusUnauthorized, "unauthorized")
	assert.Equal(t, "https://app.example.com", r.header.Get("Access-Control-Allow-Origin"))

	r = e.do("GET", "/v1/status", "", "Origin", "https://evil.example", "Authorization", "Bearer "+tokRead)
	require.Equal(t, http.StatusOK, r.status)
	assert.Empty(t, r.header.Get("Access-Control-Allow-Origin"))

	// Without an allow-list, no CORS at all.
	e2 := newFullEnv(t, false)
	r = e2.do("GET", "/v1/status", "", "Origin", "https://app.example.com")
	require.Equal(t, http.StatusOK, r.status)
	assert.Empty(t, r.header.Get("Access-Control-Allow-Origin"))
	r = e2.do("OPTIONS", "/v1/status", "", "Origin", "https://app.example.com", "Access-Control-Request-Method", "GET")
	assert.Empty(t, r.header.Get("Access-Control-Allow-Origin"))
}

// /readyz is public and /healthz too, even with access control on.
func TestAccessProbesArePublic(t *testing.T) {
	e := newFullEnv(t, true)
	assert.Equal(t, http.StatusOK, e.do("GET", "/healthz", "").status)
	assert.Equal(t, http.StatusOK, e.do("GET", "/readyz", "").status)
	r := e.do("GET", "/", "")
	assert.Equal(t, http.StatusOK, r.status)
	assert.True(t, strings.HasPrefix(r.header.Get("Content-Type"), "text/html"))
}

// restoringStore reports a restore in progress, as the bolt store's Ready
// does from the copy of the snapshot to the swap.
type restoringStore struct{ *bolt.Store }

func (restoringStore) Ready() error {
	return fmt.Errorf("%w: a restore is replacing the database", ctxd.ErrUnavailable)
}

// /readyz is 503 while a full restore replaces the database. It says why
// only with access control off: it answers without a token.
func TestReadyzWhileRestoring(t *testing.T) {
	e := newEnv(t, envOptions{})
	assert.Equal(t, http.StatusOK, e.do("GET", "/readyz", "").status)
	e.ts.Config.Handler = httpapi.New(restoringStore{e.st.Store}, httpapi.Config{}, zerolog.Nop()).Handler()
	r := e.do("GET", "/readyz", "")
	requireError(t, r, http.StatusServiceUnavailable, "unavailable")
	assert.Contains(t, string(r.body), "restore")
	assert.Equal(t, http.StatusOK, e.do("GET", "/healthz", "").status)

	tokens := filepath.Join(t.TempDir(), "tokens.yaml")
	require.NoError(t, os.WriteFile(tokens, []byte(testTokensYAML()), 0o600))
	access, err := auth.NewAuthorizer(tokens, auth.Options{})
	require.NoError(t, err)
	e.ts.Config.Handler = httpapi.New(restoringStore{e.st.Store}, httpapi.Config{Access: access}, zerolog.Nop()).Handler()
	r = e.do("GET", "/readyz", "")
	requireError(t, r, http.StatusServiceUnavailable, "unavailable")
	assert.NotContains(t, string(r.body), "restore", "with access control on, why is not told to anyone")
	assert.Contains(t, string(r.body), "server's log")
}

// A browser page of another site cannot change data: its simple requests
// (text/plain POSTs, no-cors fetches, forms) reach the server without a
// preflight, and access control is off on loopback by default. Reads,
// programs (no Origin, no Sec-Fetch-Site), the server's own pages and the
// origins of http.cors_origins go on.
func TestCrossSiteWritesAreRefused(t *testing.T) {
	e := newFullEnv(t, false)
	self := "http://" + strings.TrimPrefix(e.url, "http://")
	txn := `{"ops":[{"op":"put","ns":"default","key":"owned","value":1}]}`
	for _, hdr := range [][]string{
		{"Origin", "http://evil.example", "Content-Type", "text/plain"},
		{"Origin", "http://evil.example", "Sec-Fetch-Site", "cross-site"},
		{"Sec-Fetch-Site", "cross-site"},
		{"Sec-Fetch-Site", "same-site", "Origin", "http://other.localhost"},
	} {
		r := requireError(t, e.do("POST", "/v1/txn", txn, hdr...), http.StatusForbidden, "forbidden")
		assert.Contains(t, r.Error.Message, "cross-origin request refused", "%v", hdr)
		requireError(t, e.do("PUT", "/v1/ns/default/keys/owned", "1", hdr...), http.StatusForbidden, "forbidden")
		requireError(t, e.do("DELETE", "/v1/ns/default/keys/kept", "", hdr...), http.StatusForbidden, "forbidden")
	}
	requireError(t, e.do("GET", "/v1/ns/default/keys/owned", ""), http.StatusNotFound, "not_found")

	for _, hdr := range [][]string{
		nil,                               // curl, the CLI, the Go client
		{"Origin", self},                  // the dashboard
		{"Sec-Fetch-Site", "same-origin"}, // the dashboard
		{"Sec-Fetch-Site", "none"},        // typed by the user
	} {
		r := e.do("PUT", "/v1/ns/default/keys/mine", "1", hdr...)
		require.Equal(t, http.StatusOK, r.status, "%v: %s", hdr, r.body)
	}
	r := e.do("GET", "/v1/ns/default/keys/mine", "", "Origin", "http://evil.example", "Sec-Fetch-Site", "cross-site")
	require.Equal(t, http.StatusOK, r.status, "reads are not refused (the browser hides the answer): %s", r.body)

	// The origins of http.cors_origins may write; "*" lets every origin.
	allowed := newFullEnv(t, false, func(c *configs.Config) { c.HTTP.CORSOrigins = []string{"https://App.example.com"} })
	r = allowed.do("PUT", "/v1/ns/default/keys/a", "1", "Origin", "https://app.example.com", "Sec-Fetch-Site", "cross-site")
	require.Equal(t, http.StatusOK, r.status, string(r.body))
	requireError(t, allowed.do("PUT", "/v1/ns/default/keys/a", "1", "Origin", "https://evil.example"), http.StatusForbidden, "forbidden")
	any := newFullEnv(t, false, func(c *configs.Config) { c.HTTP.CORSOrigins = []string{"*"} })
	r = any.do("PUT", "/v1/ns/default/keys/a", "1", "Origin", "https://evil.example", "Sec-Fetch-Site", "cross-site")
	require.Equal(t, http.StatusOK, r.status, string(r.body))
}

// DNS rebinding: with access control off because the address is a
// loopback one (the default), a request that names the server by another
// host name (a page whose name now points at 127.0.0.1) is refused,
// reads and the WebSocket feed too; localhost and IP addresses go on, and
// auth.mode off answers any name.
func TestRebindingHostsAreRefused(t *testing.T) {
	s := testkit.StartServer(t) // auth.mode auto on 127.0.0.1: off
	hc := &http.Client{}
	get := func(host, path string) *http.Response {
		req, err := http.NewRequest(http.MethodGet, s.URL+path, nil)
		require.NoError(t, err)
		req.Host = host
		res, err := hc.Do(req)
		require.NoError(t, err)
		_, _ = io.Copy(io.Discard, res.Body)
		res.Body.Close()
		return res
	}
	port := s.URL[strings.LastIndex(s.URL, ":")+1:]
	for _, host := range []string{"attacker.example:" + port, "attacker.example", "127.0.0.1.nip.io:" + port} {
		assert.Equal(t, http.StatusForbidden, get(host, "/v1/ns/default/keys").StatusCode, host)
		assert.Equal(t, http.StatusForbidden, get(host, "/v1/watch").StatusCode, "%s: the feed's handshake", host)
	}
	for _, host := range []string{"127.0.0.1:" + port, "localhost:" + port, "LOCALHOST", "app.localhost:" + port, "[::1]:" + port, "10.1.2.3", "localhost.:" + port, "127.0.0.1."} {
		assert.Equal(t, http.StatusOK, get(host, "/v1/ns/default/keys").StatusCode, host)
	}
	off := testkit.StartServer(t, testkit.WithConfig(func(c *configs.Config) { c.Auth.Mode = configs.AuthOff }))
	req, err := http.NewRequest(http.MethodGet, off.URL+"/v1/ns/default/keys", nil)
	require.NoError(t, err)
	req.Host = "ctxd.internal.example"
	res, err := hc.Do(req)
	require.NoError(t, err)
	res.Body.Close()
	assert.Equal(t, http.StatusOK, res.StatusCode, "auth.mode off answers any name")
}
