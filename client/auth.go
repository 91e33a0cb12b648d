package client

import (
	"context"
	"crypto/tls"
	"errors"
	"net/http"
	"net/url"
	"slices"
	"strings"
)

// WithToken makes the client send token as "Authorization: Bearer <token>"
// on every request to the servers given to New, the WebSocket of Watch
// included: what a server with access control (auth.mode) asks for.
// Without a token such a server answers 401 (see IsUnauthorized); a token
// without the rights a call needs gets 403. A redirect to any other
// origin (scheme, host and port) is followed without the token.
func WithToken(token string) Option {
	return func(c *Client) { c.token = token }
}

// AuthSelf returns what the client's token may do (GET /v1/auth/self):
// its name, roles, rights and limits; on a server without access control,
// AccessControl false and every right. An unknown or revoked token gets
// an error that IsUnauthorized reports. Test a right with TokenInfo.May.
func (c *Client) AuthSelf(ctx context.Context) (TokenInfo, error) {
	return call[TokenInfo](ctx, c, "auth self", request{method: http.MethodGet, path: "/v1/auth/self"})
}

// bearerTransport adds the Authorization header to the requests for the
// client's own servers (origins), and to no other. net/http drops the
// header of a request it redirects to another host, but follows the
// redirect through the transport again: a header the transport added to
// every request went to wherever a server, or anything on the way,
// redirected.
type bearerTransport struct {
	token   string
	origins []string
	base    http.RoundTripper
}

func (t *bearerTransport) RoundTrip(r *http.Request) (*http.Response, error) {
	if !slices.Contains(t.origins, origin(r.URL)) {
		return t.base.RoundTrip(r)
	}
	// A RoundTripper must not change the request it is given.
	r2 := r.Clone(r.Context())
	r2.Header.Set("Authorization", "Bearer "+t.token)
	return t.base.RoundTrip(r2)
}

// withBearer returns a copy of hc that sends token on every request to
// one of servers (base URLs, as parseServers returns them).
func withBearer(hc *http.Client, token string, servers []string) *http.Client {
	base := hc.Transport
	if base == nil {
		base = http.DefaultTransport
	}
	var origins []string
	for _, s := range servers {
		u, _ := url.Parse(s) // parseServers parsed it already
		origins = append(origins, origin(u))
	}
	cp := *hc
	cp.Transport = &bearerTransport{token: token, origins: origins, base: base}
	return &cp
}

// origin is a URL's scheme and host (with the port, when given), the
// host lower-cased: what a token is sent to.
func origin(u *url.URL) string {
	host := strings.ToLower(u.Host)
	// The scheme's default port is the same origin written two ways: a
	// redirect from one form to the other keeps the token.
	switch {
	case u.Scheme == "http" && strings.HasSuffix(host, ":80"), u.Scheme == "https" && strings.HasSuffix(host, ":443"):
		host = host[:strings.LastIndexByte(host, ':')]
	}
	return u.Scheme + "://" + host
}

// authHeader is the header of the WebSocket handshake: the token, if any.
func (c *Client) authHeader() http.Header {
	if c.token == "" {
		return nil
	}
	return http.Header{"Authorization": {"Bearer " + c.token}}
}

// transport is net/http's Transport under the client's HTTP client (its
// own token wrapper aside), or nil for another RoundTripper.
func (c *Client) transport() *http.Transport {
	rt := c.hc.Transport
	if bt, ok := rt.(*bearerTransport); ok {
		rt = bt.base
	}
	if rt == nil {
		rt = http.DefaultTransport
	}
	t, _ := rt.(*http.Transport)
	return t
}

// watchTLSConfig is the TLS configuration of Watch's WebSocket:
// WithTLSConfig's, else that of the client's HTTP transport when it is an
// *http.Transport (a custom CA, for example), without its ALPN protocols;
// nil means the system's defaults.
func (c *Client) watchTLSConfig() *tls.Config {
	cfg := c.tlsConfig
	if t := c.transport(); cfg == nil && t != nil {
		cfg = t.TLSClientConfig
	}
	if cfg == nil {
		return nil
	}
	cfg = cfg.Clone()
	// The WebSocket speaks HTTP/1.1 only, and net/http adds "h2" to its
	// transport's config once it sets HTTP/2 up (on first use, or
	// Clone): the handshake would then fail.
	cfg.NextProtos = nil
	return cfg
}

// IsUnauthorized reports whether err is the server's 401: no token, or one
// it does not know, or (ending a Watch) one a reload of the server's
// tokens file revoked.
func IsUnauthorized(err error) bool { return hasStatus(err, http.StatusUnauthorized) }

// IsForbidden reports whether err is the server's 403: the token lacks the
// rights the call needs.
func IsForbidden(err error) bool { return hasStatus(err, http.StatusForbidden) }

func hasStatus(err error, status int) bool {
	var ae *APIError
	return errors.As(err, &ae) && ae.Status == status
}
