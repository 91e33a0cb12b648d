package httpapi_test

import (
	"net/http"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/framework0/ctxd"
	"github.com/framework0/ctxd/internal/testkit"
)

// A request whose target is not a path gets a JSON error through the
// handler (X-Request-Id, the access log): OPTIONS * was answered by
// net/http itself with an empty 200, and CONNECT host:port by the router
// with a 404 naming an empty path. Over a real connection to the whole
// server, whose http.Server must pass OPTIONS * on. Two answers that never
// reach a handler are checked too, as README "Errors" describes them: an
// invalid percent-encoding in the path, and an Expect other than
// 100-continue.
func TestTargetsThatAreNotAPath(t *testing.T) {
	fs := &fuzzServer{s: testkit.StartServer(t)}
	rev := fs.s.Backend().Revision()
	for _, tt := range []struct {
		name, req string
		status    int
		code      string
	}{
		{"OPTIONS *", "OPTIONS * HTTP/1.1\r\nHost: localhost\r\n\r\n", http.StatusBadRequest, ctxd.CodeBadRequest},
		{"GET *", "GET * HTTP/1.1\r\nHost: localhost\r\n\r\n", http.StatusBadRequest, ctxd.CodeBadRequest},
		{"CONNECT", "CONNECT 127.0.0.1:443 HTTP/1.1\r\nHost: 127.0.0.1:443\r\n\r\n", http.StatusMethodNotAllowed, ctxd.CodeMethodNotAllowed},
		{"CONNECT localhost", "CONNECT localhost:8080 HTTP/1.1\r\nHost: localhost:8080\r\n\r\n", http.StatusMethodNotAllowed, ctxd.CodeMethodNotAllowed},
	} {
		t.Run(tt.name, func(t *testing.T) {
			req := []byte(strings.Replace(tt.req, "\r\n\r\n", "\r\nConnection: close\r\n\r\n", 1))
			res, err := fs.send(t, req)
			require.NoError(t, err)
			where := func() string { return string(req) + ": " + string(res.body) }
			require.Equal(t, tt.status, res.status, where())
			assert.Equal(t, tt.code, checkErrorAnswer(t, req, res, where))
			assert.NotEmpty(t, res.header.Get("X-Request-Id"), "through the handler")
			if tt.status == http.StatusMethodNotAllowed {
				assert.Equal(t, []string{""}, res.header.Values("Allow"), "a tunnel's target takes no method")
			}
		})
	}
	// An OPTIONS of a path is Echo's 204 with the path's methods.
	res, err := fs.send(t, []byte("OPTIONS /v1/status HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n"))
	require.NoError(t, err)
	assert.Equal(t, http.StatusNoContent, res.status)
	assert.Contains(t, res.header.Get("Allow"), "GET")

	// net/http's own answers, before any handler (README "Errors"): it
	// parses the target before a handler is chosen, and answers an
	// expectation it does not know before the handler is called.
	for _, req := range []string{
		"GET /ctx/%zz HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n",
		"PUT /v1/ns/default/keys/e HTTP/1.1\r\nHost: localhost\r\nExpect: something\r\nContent-Length: 1\r\nConnection: close\r\n\r\n1",
	} {
		res, err := fs.send(t, []byte(req))
		require.NoError(t, err)
		assert.Empty(t, res.header.Get("X-Request-Id"), "net/http's answer to %q", req)
		assert.Equal(t, "", checkErrorAnswer(t, []byte(req), res, func() string { return req }))
	}
	assert.Equal(t, rev, fs.s.Backend().Revision(), "nothing written")
	assert.Empty(t, troubleInLog(fs.s.Logs.Take()))
}
