package server_test

import (
	"bytes"
	"net/http"
	"os"
	"path/filepath"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/framework0/ctxd/auth"
	"github.com/framework0/ctxd/configs"
	"github.com/framework0/ctxd/internal/testkit"
)

// getWithToken sends GET url with the bearer token secret (none when empty) and
// returns the status and body.
func getWithToken(t *testing.T, url, secret string) (int, []byte) {
	t.Helper()
	req := testkit.NewRequest(t, http.MethodGet, url, "")
	if secret != "" {
		req.Header.Set("Authorization", "Bearer "+secret)
	}
	resp, body := testkit.Send(t, http.DefaultClient, req)
	return resp.StatusCode, body
}

// http.pprof serves Go's profiles of the running server: off by default
// (404), on it gives a real CPU profile (gzip-compressed protobuf) and the
// named profiles; with access control on, only admins reach them.
func TestPprof(t *testing.T) {
	t.Parallel()
	off := testkit.StartServer(t)
	status, _ := getWithToken(t, off.URL+"/debug/pprof/heap", "")
	require.Equal(t, http.StatusNotFound, status, "pprof is off by default")

	on := testkit.StartServer(t, testkit.WithConfig(func(c *configs.Config) { c.HTTP.Pprof = true }))
	status, body := getWithToken(t, on.URL+"/debug/pprof/profile?seconds=1", "")
	require.Equal(t, http.StatusOK, status, string(body))
	require.True(t, bytes.HasPrefix(body, []byte{0x1f, 0x8b}), "a CPU profile is gzip-compressed protobuf")
	status, body = getWithToken(t, on.URL+"/debug/pprof/goroutine?debug=1", "")
	require.Equal(t, http.StatusOK, status)
	require.Contains(t, string(body), "goroutine profile:")
	status, body = getWithToken(t, on.URL+"/debug/pprof/", "")
	require.Equal(t, http.StatusOK, status)
	require.Contains(t, string(body), "heap")

	admin, reader := auth.NewSecret(), auth.NewSecret()
	tokens := filepath.Join(t.TempDir(), "tokens.yaml")
	require.NoError(t, os.WriteFile(tokens, []byte("tokens:\n"+
		"  - name: ops\n    hash: "+auth.HashSecret(admin)+"\n    roles: [admin]\n"+
		"  - name: dash\n    hash: "+auth.HashSecret(reader)+"\n    roles: [read, metrics]\n"), 0o600))
	guarded := testkit.StartServer(t, testkit.WithConfig(func(c *configs.Config) {
		c.HTTP.Pprof = true
		c.Auth.Mode, c.Auth.TokensFile = configs.AuthOn, tokens
	}))
	for secret, want := range map[string]int{"": http.StatusUnauthorized, reader: http.StatusForbidden, admin: http.StatusOK} {
		status, body := getWithToken(t, guarded.URL+"/debug/pprof/heap?debug=1", secret)
		require.Equal(t, want, status, string(body))
	}
}
