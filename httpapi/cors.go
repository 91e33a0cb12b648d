package httpapi

import (
	"net/http"
	"strconv"
	"strings"

	"github.com/labstack/echo/v4"
)

// CORS for the origins of Config.CORSOrigins (http.cors_origins): browser
// pages served from them may call the API. Default: none, so that a page
// elsewhere cannot read the answers (the dashboard is served by the server
// itself and needs no CORS). Tokens are bearer tokens, never cookies, so
// credentials are not allowed.

const (
	corsMethods = "GET, HEAD, PUT, PATCH, POST, DELETE"
	// corsHeaders are the request headers the API reads.
	corsHeaders = "Authorization, Content-Type, If-Match, X-Ctxd-Who, X-Request-Id, X-Ctxd-Sha256"
	// corsExposed are the answer headers a page may read.
	corsExposed = "ETag, X-Request-Id, X-Ctxd-Revision, X-Ctxd-Sha256, Retry-After, WWW-Authenticate, Content-Disposition"
	// corsMaxAge is how long (seconds) a browser may cache a preflight answer.
	corsMaxAge = "600"
)

// corsPolicy is the allow-list.
type corsPolicy struct {
	any     bool
	origins map[string]bool // lower case, without a trailing slash
}

// newCORSPolicy returns the policy for origins ("*": any), or nil when
// there are none.
func newCORSPolicy(origins []string) *corsPolicy {
	if len(origins) == 0 {
		return nil
	}
	p := &corsPolicy{origins: map[string]bool{}}
	for _, o := range origins {
		if o == "*" {
			p.any = true
		}
		p.origins[normalOrigin(o)] = true
	}
	return p
}

// normalOrigin is a configured origin as browsers send it: lower case,
// without a trailing slash (the CORS policy and the cross-site write
// check compare the same form).
func normalOrigin(o string) string { return strings.ToLower(strings.TrimRight(o, "/")) }

func (p *corsPolicy) allows(origin string) bool {
	return p.any || p.origins[strings.ToLower(origin)]
}

// apply adds the CORS headers to a request from an allowed origin and
// answers a preflight (OPTIONS with Access-Control-Request-Method): 204
// for an allowed origin, 403 for another. done reports that the request
// was answered (or refused with err).
func (p *corsPolicy) apply(c echo.Context) (done bool, err error) {
	req := c.Request()
	origin := req.Header.Get(echo.HeaderOrigin)
	if origin == "" {
		return false, nil
	}
	preflight := req.Method == http.MethodOptions && req.Header.Get(echo.HeaderAccessControlRequestMethod) != ""
	h := c.Response().Header()
	h.Add(echo.HeaderVary, echo.HeaderOrigin)
	if !p.allows(origin) {
		if preflight {
			return true, &accessError{kind: errForbidden,
				msg: "origin " + strconv.Quote(origin) + " may not call this API: add it to http.cors_origins"}
		}
		// An ordinary request goes on; without the CORS headers the
		// browser does not let the page read the answer.
		return false, nil
	}
	h.Set(echo.HeaderAccessControlAllowOrigin, origin)
	if !preflight {
		h.Set(echo.HeaderAccessControlExposeHeaders, corsExposed)
		return false, nil
	}
	h.Add(echo.HeaderVary, echo.HeaderAccessControlRequestMethod)
	h.Add(echo.HeaderVary, echo.HeaderAccessControlRequestHeaders)
	h.Set(echo.HeaderAccessControlAllowMethods, corsMethods)
	h.Set(echo.HeaderAccessControlAllowHeaders, corsHeaders)
	h.Set(echo.HeaderAccessControlMaxAge, corsMaxAge)
	return true, c.NoContent(http.StatusNoContent)
}
