package httpapi

import (
	"fmt"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"sync"

	"github.com/labstack/echo/v4"
	"go.yaml.in/yaml/v3"

	"github.com/framework0/ctxd"
)

// A v1 route refuses a query parameter it does not take (400 bad_request
// naming it), before its handler runs: a typo must not be ignored.
// ?dry-run=true on a restore ran a real restore, ?tll=5m on a put stored
// a key that never expires. The names each route takes are those
// openapi.yaml documents for it, the document every test's exchange is
// validated against (an undocumented parameter fails the test that sends
// it), so the code and the document cannot drift apart. Routes outside
// /v1/ (Framework0's /ctx, the dashboard, health and metrics) and the
// WebSocket handshake (/v1/watch, which parses its own options) accept
// any name, as before; but no route takes a query string that does not
// parse (refuseMalformedQuery).

// routeQueryParams maps "METHOD pattern" (Echo's route pattern, as
// c.Path() gives it, followed by what the documented path has after a
// key: "/history") to the query parameters the route takes.
var routeQueryParams = sync.OnceValues(func() (map[string]queryParams, error) {
	return queryParamsOf(openapiYAML)
})

// queryParams are the query parameters of one operation: the names it
// takes, and those of them it takes more than once (an array).
type queryParams struct {
	names, repeatable []string
}

// refuseMalformedQuery refuses, on every route, a query string that does
// not parse: net/url (and Echo's QueryParams on it) drops a pair with a
// ";" or a bad %-escape and keeps the rest (past 10,000 parameters, it
// keeps none), so that
// "?dry_run=true;&ns=default" ran a real restore and "?rev=1;" read the
// current value, each answered as if the client had asked for it.
func refuseMalformedQuery(c echo.Context) error {
	raw := c.Request().URL.RawQuery
	if raw == "" {
		return nil
	}
	// Parsed whole, not screened for ";" and "%": ParseQuery also refuses
	// more than 10,000 parameters, and Query() then gives none at all.
	if _, err := url.ParseQuery(raw); err != nil {
		return badRequest("malformed query string: " + err.Error() +
			` (a ";" must be sent as %3B, a "%" as %25)`)
	}
	return nil
}

// refuseUnknownQuery returns a bad request naming the first query
// parameter c's route does not take, or one given twice that it takes
// once (the first would have won, silently), or nil.
func refuseUnknownQuery(c echo.Context) error {
	req := c.Request()
	if req.URL.RawQuery == "" {
		return nil
	}
	if err := refuseMalformedQuery(c); err != nil {
		return err
	}
	routes, err := routeQueryParams()
	if err != nil {
		return nil // a broken openapi.yaml: its test fails first
	}
	method := req.Method
	if method == http.MethodHead {
		method = http.MethodGet // a HEAD is its GET's
	}
	route := c.Path() + keyRouteSuffix(c.Path(), method, req.URL.EscapedPath())
	known, ok := routes[method+" "+route]
	if !ok {
		return nil
	}
	var names, twice []string // allocated only for a request that is refused
	for name, values := range c.QueryParams() {
		switch {
		case !slices.Contains(known.names, name):
			names = append(names, name)
		case len(values) > 1 && !slices.Contains(known.repeatable, name):
			twice = append(twice, name)
		}
	}
	if len(names) > 0 {
		slices.Sort(names)
		takes := "takes no query parameter"
		if len(known.names) > 0 {
			takes = "takes " + strings.Join(known.names, ", ")
		}
		return badRequest(fmt.Sprintf("unknown query parameter %s: %s %s %s", strconv.Quote(names[0]), method, route, takes))
	}
	if len(twice) > 0 {
		slices.Sort(twice)
		return badRequest(fmt.Sprintf("query parameter %s given more than once: %s %s takes one", strconv.Quote(twice[0]), method, route))
	}
	return nil
}

// keyRouteSuffix is what the documented path of a request to a key route
// (pattern) has after the key: the key route serves a key's history on
// GET and its keepalive on POST, by their raw suffixes (parseKeyPath),
// each documented as a path of its own.
func keyRouteSuffix(pattern, method, escapedPath string) string {
	if !strings.HasPrefix(pattern, keysPrefix) || !strings.HasSuffix(pattern, "*") {
		return ""
	}
	switch {
	case method == http.MethodGet && strings.HasSuffix(escapedPath, historySuffix):
		return historySuffix
	case method == http.MethodPost && strings.HasSuffix(escapedPath, keepaliveSuffix):
		return keepaliveSuffix
	}
	return ""
}

// refuseBadWho refuses a request whose author (?who=, X-Ctxd-Who) is not
// text a change may record, before it does anything: every route checks
// it alike, an import's and a restore's too, whose writes keep the who a
// dump recorded unchecked. Except where no author is taken: the probes
// (a load balancer's header must not fail /healthz) and /ctx/history,
// whose ?who= is a filter (one no change has finds nothing).
func refuseBadWho(c echo.Context) error {
	if p := c.Path(); p == "/healthz" || p == "/readyz" || p == "/metrics" || p == "/ctx/history" {
		return nil
	}
	if w, _ := queryParam(c, "who"); w != "" {
		if err := ctxd.ValidateWho(w); err != nil {
			return err
		}
	}
	if w := c.Request().Header.Get(headerWho); w != "" {
		if err := ctxd.ValidateWho(w); err != nil {
			return fmt.Errorf("%s: %w", headerWho, err)
		}
	}
	// Under a token's name (auth.who: token) a who that fits alone may
	// not: say so here, where the store would name only the sum.
	if signed := who(c); len(signed) > ctxd.MaxWhoBytes {
		return ctxd.TooLargef("who is recorded as %q: %d bytes with the token's name before it, at most %d allowed: give a shorter who",
			strings.ToValidUTF8(signed[:min(len(signed), 80)], "")+"...", len(signed), ctxd.MaxWhoBytes)
	}
	return nil
}

// queryParamsOf reads the query parameters of each /v1/ operation of the
// OpenAPI document src, keyed as routeQueryParams is.
func queryParamsOf(src []byte) (map[string]queryParams, error) {
	var doc struct {
		Paths      map[string]map[string]yaml.Node `yaml:"paths"`
		Components struct {
			Parameters map[string]openapiParam `yaml:"parameters"`
		} `yaml:"components"`
	}
	if err := yaml.Unmarshal(src, &doc); err != nil {
		return nil, fmt.Errorf("openapi.yaml: %w", err)
	}
	resolve := func(node yaml.Node) (queryParams, error) {
		var params []openapiParam
		if err := node.Decode(&params); err != nil {
			return queryParams{}, err
		}
		var q queryParams
		for _, p := range params {
			if p.Ref != "" {
				name, ok := strings.CutPrefix(p.Ref, "#/components/parameters/")
				target, found := doc.Components.Parameters[name]
				if !ok || !found {
					return queryParams{}, fmt.Errorf("parameter reference %q: no such parameter", p.Ref)
				}
				p = target
			}
			if p.In == "query" {
				q.names = append(q.names, p.Name)
				if p.Schema.Type == "array" {
					q.repeatable = append(q.repeatable, p.Name)
				}
			}
		}
		return q, nil
	}
	out := map[string]queryParams{}
	for path, item := range doc.Paths {
		pattern, ok := echoPattern(path)
		if !ok {
			continue
		}
		var shared queryParams
		if node, ok := item["parameters"]; ok {
			var err error
			if shared, err = resolve(node); err != nil {
				return nil, fmt.Errorf("openapi.yaml %s: %w", path, err)
			}
		}
		for method, op := range item {
			if !slices.Contains(httpMethods, method) {
				continue // parameters, a summary
			}
			var o struct {
				Parameters yaml.Node `yaml:"parameters"`
			}
			if err := op.Decode(&o); err != nil {
				return nil, fmt.Errorf("openapi.yaml %s %s: %w", method, path, err)
			}
			q := queryParams{names: slices.Clone(shared.names), repeatable: slices.Clone(shared.repeatable)}
			if o.Parameters.Kind != 0 {
				own, err := resolve(o.Parameters)
				if err != nil {
					return nil, fmt.Errorf("openapi.yaml %s %s: %w", method, path, err)
				}
				q.names, q.repeatable = append(q.names, own.names...), append(q.repeatable, own.repeatable...)
			}
			slices.Sort(q.names)
			out[strings.ToUpper(method)+" "+pattern] = q
		}
	}
	return out, nil
}

// httpMethods are the operations of an OpenAPI path item.
var httpMethods = []string{"get", "put", "post", "delete", "options", "head", "patch", "trace"}

type openapiParam struct {
	Ref    string `yaml:"$ref"`
	Name   string `yaml:"name"`
	In     string `yaml:"in"`
	Schema struct {
		Type string `yaml:"type"`
	} `yaml:"schema"`
}

// echoPattern is the Echo route pattern serving the documented /v1/ path
// p: {x} becomes :x, except a key or a file name, which may hold slashes
// and is the route's trailing *, followed by what p has after it (a key's
// "/history", which the key route serves: keyRouteSuffix); ok is false for
// a path that keeps its query open (not under /v1/, or the WebSocket
// handshake).
func echoPattern(p string) (string, bool) {
	if !strings.HasPrefix(p, "/v1/") || p == "/v1/watch" {
		return "", false
	}
	segs := strings.Split(p, "/")
	for i, s := range segs {
		switch {
		case s == "{key}" || s == "{filename}":
			rest := ""
			if i+1 < len(segs) {
				rest = "/" + strings.Join(segs[i+1:], "/")
			}
			return strings.Join(append(segs[:i:i], "*"), "/") + rest, true
		case strings.HasPrefix(s, "{") && strings.HasSuffix(s, "}"):
			segs[i] = ":" + s[1:len(s)-1]
		}
	}
	return strings.Join(segs, "/"), true
}
