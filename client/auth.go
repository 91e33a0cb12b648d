package client

import (
	"crypto/tls"
	"errors"
	"net/http"
)

// WithToken makes the client send token as "Authorization: Bearer <token>"
// on every request, the WebSocket of Watch included: what a server with
// access control (auth.mode) asks for. Without a token such a server
// answers 401 (see IsUnauthorized); a token without the rights a call needs
// gets 403.
func WithToken(token string) Option {
	return func(c *Client) { c.token = token }
}

// bearerTransport adds the Authorization header to every request.
type bearerTransport struct {
	token string
	base  http.RoundTripper
}

func (t *bearerTransport) RoundTrip(r *http.Request) (*http.Response, error) {
	// A RoundTripper must not change the request it is given.
	r2 := r.Clone(r.Context())
	r2.Header.Set("Authorization", "Bearer "+t.token)
	return t.base.RoundTrip(r2)
}

// withBearer returns a copy of hc that sends token on every request.
func withBearer(hc *http.Client, token string) *http.Client {
	base := hc.Transport
	if base == nil {
		base = http.DefaultTransport
	}
	cp := *hc
	cp.Transport = &bearerTransport{token: token, base: base}
	return &cp
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

// tlsConfig is the TLS configuration of the client's HTTP transport (a
// custom CA, for example), for the WebSocket of Watch to use too, without
// its ALPN protocols; nil means the system's defaults.
func (c *Client) tlsConfig() *tls.Config {
	if t := c.transport(); t != nil && t.TLSClientConfig != nil {
		cfg := t.TLSClientConfig.Clone()
		// The WebSocket speaks HTTP/1.1 only, and net/http adds "h2" to
		// its transport's config once it sets HTTP/2 up (on first use,
		// or Clone): the handshake would then fail.
		cfg.NextProtos = nil
		return cfg
	}
	return nil
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
