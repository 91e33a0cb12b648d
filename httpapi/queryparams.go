package httpapi

import (
	"fmt"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"sync"

	"github.com/labstack/echo/v4"
	"go.yaml.in/yaml/v3"
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
// anything, as before.

// routeQueryParams maps "METHOD pattern" (Echo's route pattern, as
// c.Path() gives it) to the query parameters the route takes.
var routeQueryParams = sync.OnceValues(func() (map[string][]string, error) {
	return queryParamsOf(openapiYAML)
})

// refuseUnknownQuery returns a bad request naming the first query
// parameter c's route does not take, or nil.
func refuseUnknownQuery(c echo.Context) error {
	req := c.Request()
	if req.URL.RawQuery == "" {
		return nil
	}
	routes, err := routeQueryParams()
	if err != nil {
		return nil // a broken openapi.yaml: its test fails first
	}
	method := req.Method
	known, ok := routes[method+" "+c.Path()]
	if !ok && method == http.MethodHead {
		method = http.MethodGet
		known, ok = routes[method+" "+c.Path()]
	}
	if !ok {
		return nil
	}
	var names []string // allocated only for a request that is refused
	for name := range c.QueryParams() {
		if !slices.Contains(known, name) {
			names = append(names, name)
		}
	}
	if len(names) == 0 {
		return nil
	}
	slices.Sort(names)
	takes := "takes no query parameter"
	if len(known) > 0 {
		takes = "takes " + strings.Join(known, ", ")
	}
	return badRequest(fmt.Sprintf("unknown query parameter %s: %s %s %s", strconv.Quote(names[0]), method, c.Path(), takes))
}

// queryParamsOf reads the query parameters of each /v1/ operation of the
// OpenAPI document src, keyed as routeQueryParams is.
func queryParamsOf(src []byte) (map[string][]string, error) {
	var doc struct {
		Paths      map[string]map[string]yaml.Node `yaml:"paths"`
		Components struct {
			Parameters map[string]openapiParam `yaml:"parameters"`
		} `yaml:"components"`
	}
	if err := yaml.Unmarshal(src, &doc); err != nil {
		return nil, fmt.Errorf("openapi.yaml: %w", err)
	}
	resolve := func(node yaml.Node) ([]string, error) {
		var params []openapiParam
		if err := node.Decode(&params); err != nil {
			return nil, err
		}
		var names []string
		for _, p := range params {
			if p.Ref != "" {
				name, ok := strings.CutPrefix(p.Ref, "#/components/parameters/")
				target, found := doc.Components.Parameters[name]
				if !ok || !found {
					return nil, fmt.Errorf("parameter reference %q: no such parameter", p.Ref)
				}
				p = target
			}
			if p.In == "query" {
				names = append(names, p.Name)
			}
		}
		return names, nil
	}
	out := map[string][]string{}
	for path, item := range doc.Paths {
		pattern, ok := echoPattern(path)
		if !ok {
			continue
		}
		var shared []string
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
			names := slices.Clone(shared)
			if o.Parameters.Kind != 0 {
				own, err := resolve(o.Parameters)
				if err != nil {
					return nil, fmt.Errorf("openapi.yaml %s %s: %w", method, path, err)
				}
				names = append(names, own...)
			}
			// Several documented paths share one route (a key's GET and
			// its history): the route takes what any of them takes.
			key := strings.ToUpper(method) + " " + pattern
			names = append(out[key], names...)
			slices.Sort(names)
			out[key] = slices.Compact(names)
		}
	}
	return out, nil
}

// httpMethods are the operations of an OpenAPI path item.
var httpMethods = []string{"get", "put", "post", "delete", "options", "head", "patch", "trace"}

type openapiParam struct {
	Ref  string `yaml:"$ref"`
	Name string `yaml:"name"`
	In   string `yaml:"in"`
}

// echoPattern is the Echo route pattern serving the documented /v1/ path
// p: {x} becomes :x, except a key or a file name, which may hold slashes
// and is the route's trailing *; ok is false for a path that keeps its
// query open (not under /v1/, or the WebSocket handshake).
func echoPattern(p string) (string, bool) {
	if !strings.HasPrefix(p, "/v1/") || p == "/v1/watch" {
		return "", false
	}
	segs := strings.Split(p, "/")
	for i, s := range segs {
		switch {
		case s == "{key}" || s == "{filename}":
			return strings.Join(append(segs[:i:i], "*"), "/"), true
		case strings.HasPrefix(s, "{") && strings.HasSuffix(s, "}"):
			segs[i] = ":" + s[1:len(s)-1]
		}
	}
	return strings.Join(segs, "/"), true
}
