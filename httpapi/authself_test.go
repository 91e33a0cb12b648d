package httpapi_test

import (
	"net/http"
	"os"
	"path/filepath"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/framework0/ctxd"
	"github.com/framework0/ctxd/auth"
	"github.com/framework0/ctxd/configs"
	"github.com/framework0/ctxd/internal/testkit"
)

// authSelf asks GET /v1/auth/self with the secret ("" for none) and
// decodes its answer strictly.
func authSelf(t *testing.T, e *env, secret string) ctxd.TokenInfo {
	t.Helper()
	var hdr []string
	if secret != "" {
		hdr = []string{"Authorization", "Bearer " + secret}
	}
	r := e.do(http.MethodGet, "/v1/auth/self", "", hdr...)
	require.Equal(t, http.StatusOK, r.status, string(r.body))
	var info ctxd.TokenInfo
	require.NoError(t, ctxd.DecodeStrict(r.body, &info), string(r.body))
	assert.NotContains(t, string(r.body), "sha256", "never the token's hash")
	if secret != "" {
		assert.NotContains(t, string(r.body), secret, "never the token's secret")
	}
	return info
}

// GET /v1/auth/self tells each token of a tokens file what it may do:
// its name, the roles the file gives, the rights they imply and its
// limits; every role may ask (metrics too), a limited token included.
func TestAuthSelfSaysWhatEachTokenMay(t *testing.T) {
	e := newFullEnv(t, true)
	all := []string{"read", "write", "metrics", "admin"}
	for _, tc := range []struct {
		secret string
		want   ctxd.TokenInfo
	}{
		{tokAdmin, ctxd.TokenInfo{AccessControl: true, Name: "ops", Roles: []string{"admin"}, Rights: all}},
		{tokWrite, ctxd.TokenInfo{AccessControl: true, Name: "writer", Roles: []string{"write"}, Rights: []string{"read", "write"}}},
		{tokRead, ctxd.TokenInfo{AccessControl: true, Name: "reader", Roles: []string{"read"}, Rights: []string{"read"}}},
		{tokMetrics, ctxd.TokenInfo{AccessControl: true, Name: "prometheus", Roles: []string{"metrics"}, Rights: []string{"metrics"}}},
		{tokLimited, ctxd.TokenInfo{AccessControl: true, Name: "team-app", Roles: []string{"write"}, Rights: []string{"read", "write"},
			Namespaces: []string{"team"}, Prefixes: []string{"app."}}},
		{tokOther, ctxd.TokenInfo{AccessControl: true, Name: "other-reader", Roles: []string{"read"}, Rights: []string{"read"},
			Namespaces: []string{"other"}}},
	} {
		got := authSelf(t, e, tc.secret)
		assert.Equal(t, tc.want, got, tc.want.Name)
		assert.Equal(t, tc.secret != tokMetrics, got.May("read"), tc.want.Name)
	}

	// Without a token, or with one the server does not know: 401, as
	// everywhere.
	requireError(t, e.do(http.MethodGet, "/v1/auth/self", ""), http.StatusUnauthorized, "unauthorized")
	requireError(t, e.do(http.MethodGet, "/v1/auth/self", "", "Authorization", "Bearer "+auth.NewSecret()),
		http.StatusUnauthorized, "unauthorized")
	// It takes no query parameter: a typo is refused, not ignored.
	requireError(t, e.do(http.MethodGet, "/v1/auth/self?nmae=x", "", "Authorization", "Bearer "+tokRead),
		http.StatusBadRequest, "bad_request")
}

// Without access control everything is allowed, and the answer says so
// in the same shape: no name, the admin role, every right, no limits.
func TestAuthSelfWithoutAccessControl(t *testing.T) {
	e := newFullEnv(t, false)
	want := ctxd.TokenInfo{Roles: []string{"admin"}, Rights: []string{"read", "write", "metrics", "admin"}}
	assert.Equal(t, want, authSelf(t, e, ""))
	r := e.do(http.MethodGet, "/v1/auth/self", "")
	assert.JSONEq(t, `{"access_control":false,"roles":["admin"],"rights":["read","write","metrics","admin"]}`, string(r.body))
}

// A token a reload removed gets 401 at once; one whose rights a reload
// changed is answered with its new rights.
func TestAuthSelfAfterReload(t *testing.T) {
	tokens := filepath.Join(t.TempDir(), "tokens.yaml")
	keep, drop := auth.NewSecret(), auth.NewSecret()
	write := func(keepRest string, withDrop bool) {
		s := "tokens:\n" + testkit.TokenEntry("keep", keep, keepRest)
		if withDrop {
			s += testkit.TokenEntry("drop", drop, "    roles: [read]\n")
		}
		require.NoError(t, os.WriteFile(tokens, []byte(s), 0o600))
	}
	write("    roles: [write]\n", true)
	e := newFullEnv(t, true, func(c *configs.Config) { c.Auth.TokensFile = tokens })
	assert.Equal(t, "drop", authSelf(t, e, drop).Name)
	assert.Equal(t, []string{"read", "write"}, authSelf(t, e, keep).Rights)

	write("    roles: [read]\n    prefixes: [app.]\n", false)
	_, revoked, err := e.access.Reload()
	require.NoError(t, err)
	require.Equal(t, 2, revoked)
	requireError(t, e.do(http.MethodGet, "/v1/auth/self", "", "Authorization", "Bearer "+drop), http.StatusUnauthorized, "unauthorized")
	assert.Equal(t, ctxd.TokenInfo{AccessControl: true, Name: "keep", Roles: []string{"read"}, Rights: []string{"read"},
		Prefixes: []string{"app."}}, authSelf(t, e, keep))
}
