package httpapi

import (
	"bytes"
	"io"
	"net/http"

	"github.com/labstack/echo/v4"

	"github.com/framework0/ctxd/auth"
)

// gate is what every request passes before its handler, in this order:
// the UTF-8 check of its body (utf8body.go), the Host check against DNS
// rebinding (crossorigin.go), CORS (cors.go; a preflight is answered
// here), the refusal of cross-site writes (crossorigin.go), access control
// (access.go: who is asking, may they), and the per-client rate limit
// (ratelimit.go). Each part is off when its configuration is empty.
type gate struct {
	s       *Server
	access  *auth.Authorizer
	rules   map[string]rule
	cors    *corsPolicy
	csrf    *http.CrossOriginProtection
	limiter *limiter
}

func newGate(s *Server) *gate {
	return &gate{
		s:       s,
		access:  s.cfg.Access,
		rules:   s.accessRules(),
		cors:    newCORSPolicy(s.cfg.CORSOrigins),
		csrf:    newCrossOriginCheck(s.cfg.CORSOrigins),
		limiter: newLimiter(s.cfg.RateLimit, s.cfg.RateBurst),
	}
}

// check runs before the handler. done reports that the handler must not
// run: the request was answered here (a CORS preflight), or err is the
// refusal, for the error handler to answer.
func (g *gate) check(c echo.Context) (done bool, err error) {
	g.s.requireUTF8Body(c) // utf8body.go
	if err := g.foreignHost(c); err != nil {
		return true, err
	}
	if g.cors != nil {
		if done, err := g.cors.apply(c); done || err != nil {
			return true, err
		}
	}
	if err := g.crossOrigin(c); err != nil {
		return true, err
	}
	if g.access == nil && g.limiter == nil {
		return false, nil
	}
	r := g.ruleFor(c)
	var (
		t       *auth.Token
		authErr error
	)
	if g.access != nil && !r.public {
		t, authErr = g.authenticate(c, r)
		if t != nil {
			// Before the rate limit and the check: the access log names
			// the token of a refused request too.
			c.SetRequest(c.Request().WithContext(auth.NewContext(c.Request().Context(), t)))
		}
	}
	if g.limiter != nil && !isProbe(c) { // probes are never rate limited
		if err := g.limiter.allow(c, t); err != nil {
			return true, err
		}
	}
	if g.access == nil || r.public {
		return false, nil
	}
	if authErr != nil {
		return true, authErr
	}
	if err := g.authorize(c, r, t); err != nil {
		return true, err
	}
	return false, nil
}

// isProbe reports a health or readiness probe: never rate limited, and
// answered whatever Host names the server (they tell nothing).
func isProbe(c echo.Context) bool {
	p := c.Path()
	return p == "/healthz" || p == "/readyz"
}

// peekBody reads the request body (within the body limit) for an access
// check and puts it back for the handler.
func (s *Server) peekBody(c echo.Context) ([]byte, error) {
	if err := s.limitBody(c); err != nil {
		return nil, err
	}
	req := c.Request()
	body, err := readBody(req)
	if err != nil {
		return nil, err
	}
	req.Body = io.NopCloser(bytes.NewReader(body))
	return body, nil
}
