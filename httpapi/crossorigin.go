package httpapi

import (
	"net"
	"net/http"
	"net/netip"
	"slices"
	"strconv"
	"strings"

	"github.com/labstack/echo/v4"
)

// Cross-site request forgery. A browser sends a page's "simple" requests
// (a POST of text/plain, a form, fetch with mode "no-cors") to any origin
// without asking first; without CORS headers it only hides the answer from
// the page. So a page on any web site could write through a server its
// visitor reaches (one on their own machine, where access control is off by
// default, or one that trusts their network), and a guessed snapshot id
// let it replace the whole database. Every request that may change
// something (any method but GET, HEAD and OPTIONS) from a browser page of
// another origin is refused, unless http.cors_origins allows that origin.
// Programs (curl, the CLI, the Go client) send neither Sec-Fetch-Site nor
// Origin and are never refused; the dashboard is served by the server
// itself (same origin).
//
// net/http's CrossOriginProtection decides: Sec-Fetch-Site when the
// browser sends it, else Origin's host against Host.

// newCrossOriginCheck returns the check that trusts corsOrigins (nil when
// "*" allows every origin). An entry that is not an origin
// (scheme://host[:port]; configs refuses those) trusts nothing: no browser
// sends it.
func newCrossOriginCheck(corsOrigins []string) *http.CrossOriginProtection {
	if slices.Contains(corsOrigins, "*") {
		return nil
	}
	p := http.NewCrossOriginProtection()
	for _, o := range corsOrigins {
		_ = p.AddTrustedOrigin(normalOrigin(o))
	}
	return p
}

// crossOrigin refuses a cross-origin browser request that may change
// something. /socket.io/ is left to its own origin check
// (websocket.allowed_origins), which its browser clients are configured by.
func (g *gate) crossOrigin(c echo.Context) error {
	if g.csrf == nil || c.Path() == "/socket.io/" {
		return nil
	}
	req := c.Request()
	if err := g.csrf.Check(req); err != nil {
		from := req.Header.Get(echo.HeaderOrigin)
		if from == "" {
			from = "another site (Sec-Fetch-Site: " + req.Header.Get("Sec-Fetch-Site") + ")"
		} else {
			from = "origin " + strconv.Quote(from)
		}
		return &accessError{kind: errForbidden,
			msg: "cross-origin request refused: a browser page of " + from + " may not change data here (add its origin to http.cors_origins to allow it)"}
	}
	return nil
}

// DNS rebinding. A page of attacker.example whose name its DNS server then
// points at 127.0.0.1 is same-origin with the server in its visitor's
// browser: it reads and writes everything a loopback server with access
// control off holds, the WebSocket feed included (its Origin equals the
// Host). Its requests carry Host: attacker.example. So while access
// control is off because the address is a loopback one (auth.mode auto),
// a request must name the server by an IP address or as localhost
// (Config.LocalHostsOnly); auth.mode off keeps any Host, for a proxy on
// the same machine that passes its own.

// foreignHost refuses a request whose Host is a name other than localhost.
func (g *gate) foreignHost(c echo.Context) error {
	if !g.s.cfg.LocalHostsOnly || isProbe(c) {
		return nil
	}
	host := c.Request().Host
	if h, _, err := net.SplitHostPort(host); err == nil {
		host = h
	}
	host = strings.TrimSuffix(strings.TrimPrefix(host, "["), "]")
	host = strings.TrimSuffix(host, ".") // "localhost.", "127.0.0.1." name the same
	if host == "" || strings.EqualFold(host, "localhost") || strings.HasSuffix(strings.ToLower(host), ".localhost") {
		return nil
	}
	if _, err := netip.ParseAddr(host); err == nil {
		return nil
	}
	return &accessError{kind: errForbidden, msg: "host " + strconv.Quote(c.Request().Host) +
		" refused: with access control off on a loopback address, the server answers only to localhost or an IP address " +
		"(a web page whose name points at this machine could otherwise read and change its data); " +
		"set auth.mode: off to answer any name (behind a proxy that passes its own), or turn access control on"}
}
