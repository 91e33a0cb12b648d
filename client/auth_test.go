package client

import (
	"context"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"sync"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// authSeen records the Authorization header of each request a server got.
type authSeen struct {
	mu   sync.Mutex
	list []string
}

func (a *authSeen) add(r *http.Request) {
	a.mu.Lock()
	defer a.mu.Unlock()
	a.list = append(a.list, r.Header.Get("Authorization"))
}

func (a *authSeen) got() []string {
	a.mu.Lock()
	defer a.mu.Unlock()
	return append([]string(nil), a.list...)
}

// The token goes to the servers given to New only: a redirect to another
// host (here 127.0.0.1 to localhost, another origin for the same machine)
// is followed without it.
func TestTokenIsNotSentOnARedirectToAnotherHost(t *testing.T) {
	var elsewhere, own authSeen
	other := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		elsewhere.add(r)
		_, _ = io.WriteString(w, `{"ns":"default","key":"k","value":1,"version":1}`)
	}))
	t.Cleanup(other.Close)
	otherURL := strings.Replace(other.URL, "127.0.0.1", "localhost", 1)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		own.add(r)
		http.Redirect(w, r, otherURL+r.URL.RequestURI(), http.StatusFound)
	}))
	t.Cleanup(srv.Close)

	c, err := New(srv.URL, WithToken("secret"))
	require.NoError(t, err)
	_, err = c.Get(context.Background(), "", "k", GetOptions{})
	require.NoError(t, err)
	assert.Equal(t, []string{"Bearer secret"}, own.got(), "the client's own server gets the token")
	assert.Equal(t, []string{""}, elsewhere.got(), "the host redirected to does not")
}

// A URL with its scheme's default port is the same origin as one
// without: the token follows a redirect between the two forms, and no
// other.
func TestOriginNamesTheDefaultPortOnce(t *testing.T) {
	for _, tc := range []struct{ a, b string }{
		{"https://Ctxd.example:443/v1", "https://ctxd.example/x"},
		{"http://ctxd.example:80", "http://ctxd.example"},
		{"http://[::1]:80/", "http://[::1]"},
	} {
		a, b := mustParse(t, tc.a), mustParse(t, tc.b)
		assert.Equal(t, origin(a), origin(b), "%s and %s", tc.a, tc.b)
	}
	for _, tc := range []struct{ a, b string }{
		{"https://ctxd.example:8443", "https://ctxd.example"},
		{"http://ctxd.example:443", "https://ctxd.example"},
		{"https://ctxd.example:80", "http://ctxd.example"},
	} {
		assert.NotEqual(t, origin(mustParse(t, tc.a)), origin(mustParse(t, tc.b)), "%s and %s", tc.a, tc.b)
	}
}

func mustParse(t *testing.T, s string) *url.URL {
	t.Helper()
	u, err := url.Parse(s)
	require.NoError(t, err)
	return u
}
