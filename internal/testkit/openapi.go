package testkit

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"regexp"
	"slices"
	"strings"
	"sync"
	"testing"

	"github.com/getkin/kin-openapi/openapi3"
	"github.com/getkin/kin-openapi/openapi3filter"
	"github.com/getkin/kin-openapi/routers"
	"github.com/stretchr/testify/require"

	"github.com/framework0/ctxd/httpapi"
)

// OpenAPI checks HTTP exchanges against the API's OpenAPI document
// (httpapi.OpenAPI), with kin-openapi's validator:
//
//   - the route (path and method) must be documented; a request to an
//     undocumented one may only be answered 404 or 405, with the error shape;
//   - every answer must match its operation: a documented status, its
//     headers, its content type and body schema (the schemas refuse fields
//     they do not name);
//   - a request the document calls invalid (a missing or mistyped parameter,
//     an undocumented query parameter, a body off its schema) must be
//     refused with a 4xx: a server that accepts it has drifted from the
//     document.
//
// The answer of a WebSocket upgrade (101) is checked for its status only.
type OpenAPI struct {
	skip   []string // path prefixes not checked (Skip)
	doc    *openapi3.T
	routes []openapiRoute
	errSch *openapi3.SchemaRef
}

// openapiRoute is one documented path template, matched as a regexp on the
// request's escaped path.
type openapiRoute struct {
	template string
	item     *openapi3.PathItem
	re       *regexp.Regexp
	params   []string
	literals int // characters outside parameters: more is more specific
}

// paramInPath matches a path template's parameter.
var paramInPath = regexp.MustCompile(`\{([^}]+)\}`)

// NewOpenAPI returns a validator of the API's OpenAPI document. The
// document is loaded and checked as OpenAPI once per test binary and
// shared: validation only reads it.
func NewOpenAPI(t testing.TB) *OpenAPI {
	t.Helper()
	shared, err := loadOpenAPI()
	require.NoError(t, err)
	v := *shared
	v.skip = nil
	return &v
}

var loadOpenAPI = sync.OnceValues(func() (*OpenAPI, error) {
	raw, err := httpapi.OpenAPI()
	if err != nil {
		return nil, err
	}
	doc, err := openapi3.NewLoader().LoadFromData(raw)
	if err != nil {
		return nil, fmt.Errorf("load the OpenAPI document: %w", err)
	}
	if err := doc.Validate(context.Background()); err != nil {
		return nil, fmt.Errorf("the OpenAPI document is not valid OpenAPI: %w", err)
	}
	v := &OpenAPI{doc: doc, errSch: doc.Components.Schemas["Error"]}
	if v.errSch == nil {
		return nil, errors.New("the OpenAPI document has no components.schemas.Error")
	}
	for template, item := range doc.Paths.Map() {
		v.routes = append(v.routes, newOpenAPIRoute(template, item))
	}
	// The most specific template first, as Echo prefers static segments:
	// /ctx/dump/list before /ctx/dump/{filename} before /ctx/{key}.
	slices.SortFunc(v.routes, func(a, b openapiRoute) int { return b.literals - a.literals })
	return v, nil
})

// newOpenAPIRoute compiles a path template. The last parameter, and {key}
// (a key's history is .../keys/{key}/history), may hold slashes, as Echo's
// wildcard does; the others match one path segment.
func newOpenAPIRoute(template string, item *openapi3.PathItem) openapiRoute {
	r := openapiRoute{template: template, item: item}
	var expr strings.Builder
	expr.WriteString("^")
	rest := template
	for {
		loc := paramInPath.FindStringSubmatchIndex(rest)
		if loc == nil {
			break
		}
		expr.WriteString(regexp.QuoteMeta(rest[:loc[0]]))
		r.literals += loc[0]
		name := rest[loc[2]:loc[3]]
		r.params = append(r.params, name)
		rest = rest[loc[1]:]
		if name == "key" || rest == "" {
			expr.WriteString("(.*)") // Echo's wildcard: empty too (refused by the handler)
		} else {
			expr.WriteString("([^/]+)")
		}
	}
	expr.WriteString(regexp.QuoteMeta(rest) + "$")
	r.literals += len(rest)
	r.re = regexp.MustCompile(expr.String())
	return r
}

// findRoute returns the documented operation of req: the most specific
// template that matched (or "") and the route (nil when the method is not
// documented on any template that matched).
func (v *OpenAPI) findRoute(req *http.Request) (string, *routers.Route, map[string]string) {
	path := req.URL.EscapedPath()
	first := ""
	for _, r := range v.routes {
		m := r.re.FindStringSubmatch(path)
		if m == nil {
			continue
		}
		params := make(map[string]string, len(r.params))
		for i, name := range r.params {
			params[name] = m[i+1]
		}
		if first == "" {
			first = r.template
		}
		if op := r.item.GetOperation(req.Method); op != nil {
			return r.template, &routers.Route{Spec: v.doc, Path: r.template, PathItem: r.item, Method: req.Method, Operation: op}, params
		}
	}
	return first, nil, nil
}

// Skip leaves requests under the path prefix unchecked: routes a test adds
// to the server for itself.
func (v *OpenAPI) Skip(prefix string) { v.skip = append(v.skip, prefix) }

// requestURL is the URL req is sent with: a client request with
// URL.Opaque set (a path sent as is, never cleaned) is sent as the Opaque
// text, query included.
func requestURL(req *http.Request) *url.URL {
	if req.URL.Opaque == "" {
		return req.URL
	}
	u, err := url.ParseRequestURI(req.URL.Opaque)
	if err != nil {
		return req.URL
	}
	return u
}

// refusalOfNoRoute reports whether status is what the server may answer a
// request to a route it does not have: 404 and 405 from the router, and the
// access layer's 401, 403 and 429, which come before routing.
func refusalOfNoRoute(status int) bool {
	switch status {
	case http.StatusNotFound, http.StatusMethodNotAllowed, http.StatusUnauthorized, http.StatusForbidden, http.StatusTooManyRequests:
		return true
	}
	return false
}

// Check checks one exchange: req with its body reqBody, and the answer's
// status, header and body. The error says which route, parameter, status
// or field the document is missing or contradicts.
func (v *OpenAPI) Check(req *http.Request, reqBody []byte, status int, header http.Header, body []byte) error {
	if u := requestURL(req); u != req.URL {
		req = req.Clone(context.Background())
		req.URL, req.URL.Host, req.URL.Scheme = u, req.Host, "http"
	}
	for _, prefix := range v.skip {
		if strings.HasPrefix(req.URL.Path, prefix) {
			return nil
		}
	}
	what := req.Method + " " + req.URL.RequestURI() + " answered " + fmt.Sprint(status)
	template, route, params := v.findRoute(req)
	if route == nil {
		if refusalOfNoRoute(status) {
			// The server refused a route it does not have: the refusal
			// must still be the error shape.
			return v.checkErrorShape(what, body)
		}
		if req.Method == http.MethodOptions && status == http.StatusNoContent {
			return nil // a CORS preflight is answered for any path; the request after it is checked
		}
		if template == "" {
			return fmt.Errorf("openapi: %s: the path is not documented (add it to httpapi/openapi.yaml)", what)
		}
		return fmt.Errorf("openapi: %s: method %s is not documented on %s (add it to httpapi/openapi.yaml)", what, req.Method, template)
	}
	what = req.Method + " " + template + " (" + req.URL.RequestURI() + ") answered " + fmt.Sprint(status)
	if status == http.StatusSwitchingProtocols {
		if route.Operation.Responses.Status(status) == nil {
			return fmt.Errorf("openapi: %s: status 101 is not documented", what)
		}
		return nil // a WebSocket: the frames are not HTTP
	}

	reqErr := v.checkRequest(req, reqBody, route, params)
	in := &openapi3filter.RequestValidationInput{Request: req, PathParams: params, Route: route,
		Options: &openapi3filter.Options{AuthenticationFunc: openapi3filter.NoopAuthenticationFunc}}
	out := &openapi3filter.ResponseValidationInput{
		RequestValidationInput: in,
		Status:                 status,
		Header:                 header,
		Options:                &openapi3filter.Options{IncludeResponseStatus: true, MultiError: true},
	}
	out.SetBodyBytes(body)
	if err := openapi3filter.ValidateResponse(context.Background(), out); err != nil {
		return fmt.Errorf("openapi: %s: the answer does not match the document: %w", what, err)
	}
	if reqErr != nil && status < 400 {
		return fmt.Errorf("openapi: %s: the server accepted a request the document calls invalid: %w", what, reqErr)
	}
	return nil
}

// checkRequest validates req against route: its parameters, body and
// query parameters the operation does not name.
func (v *OpenAPI) checkRequest(req *http.Request, body []byte, route *routers.Route, params map[string]string) error {
	r := req.Clone(context.Background())
	r.Body = io.NopCloser(bytes.NewReader(body))
	if len(body) == 0 {
		r.Body = http.NoBody
	}
	// ctxd reads a body as what the route takes whatever its Content-Type
	// says; clients (Go's, curl's -d) often send none or a form type.
	if rb := route.Operation.RequestBody; rb != nil && rb.Value != nil && r.Header.Get("Content-Type") == "" {
		for mt := range rb.Value.Content {
			r.Header.Set("Content-Type", mt)
			break
		}
	}
	documented := map[string]bool{}
	for _, list := range []openapi3.Parameters{route.PathItem.Parameters, route.Operation.Parameters} {
		for _, p := range list {
			if p.Value != nil && p.Value.In == openapi3.ParameterInQuery {
				documented[p.Value.Name] = true
			}
		}
	}
	var errs []error
	for name := range r.URL.Query() {
		if !documented[name] {
			errs = append(errs, fmt.Errorf("query parameter %q is not documented", name))
		}
	}
	in := &openapi3filter.RequestValidationInput{Request: r, PathParams: unescapeAll(params), Route: route,
		Options: &openapi3filter.Options{AuthenticationFunc: openapi3filter.NoopAuthenticationFunc, MultiError: true}}
	if err := openapi3filter.ValidateRequest(context.Background(), in); err != nil {
		errs = append(errs, err)
	}
	return errors.Join(errs...)
}

// checkErrorShape checks that body is the error answer.
func (v *OpenAPI) checkErrorShape(what string, body []byte) error {
	var value any
	if err := json.Unmarshal(body, &value); err != nil {
		return fmt.Errorf("openapi: %s: the error answer is not JSON: %w", what, err)
	}
	if err := v.errSch.Value.VisitJSON(value, openapi3.EnableJSONSchema2020()); err != nil {
		return fmt.Errorf("openapi: %s: the error answer does not match components.schemas.Error: %w", what, err)
	}
	return nil
}

func unescapeAll(params map[string]string) map[string]string {
	out := make(map[string]string, len(params))
	for k, s := range params {
		if u, err := url.PathUnescape(s); err == nil {
			s = u
		}
		out[k] = s
	}
	return out
}

// Transport returns an http.RoundTripper that sends requests with base
// (http.DefaultTransport when nil) and checks each exchange with v; a
// mismatch fails t (t.Errorf: the test goes on, and its own checks still
// run).
func (v *OpenAPI) Transport(t testing.TB, base http.RoundTripper) http.RoundTripper {
	if base == nil {
		base = http.DefaultTransport
	}
	return &openapiTransport{t: t, v: v, base: base}
}

type openapiTransport struct {
	t    testing.TB
	v    *OpenAPI
	base http.RoundTripper
}

func (tr *openapiTransport) RoundTrip(req *http.Request) (*http.Response, error) {
	var reqBody []byte
	if req.Body != nil && req.Body != http.NoBody {
		b, err := io.ReadAll(req.Body)
		req.Body.Close()
		if err != nil {
			return nil, err
		}
		reqBody = b
		req = req.Clone(req.Context())
		req.Body = io.NopCloser(bytes.NewReader(b))
		req.GetBody = func() (io.ReadCloser, error) { return io.NopCloser(bytes.NewReader(b)), nil }
	}
	res, err := tr.base.RoundTrip(req)
	if err != nil || res.StatusCode == http.StatusSwitchingProtocols {
		if err == nil {
			if cerr := tr.v.Check(req, reqBody, res.StatusCode, res.Header, nil); cerr != nil {
				tr.t.Error(cerr)
			}
		}
		return res, err
	}
	body, err := io.ReadAll(res.Body)
	res.Body.Close()
	if err != nil {
		// The reader of the answer meets the same error where it would have.
		res.Body = io.NopCloser(io.MultiReader(bytes.NewReader(body), &failingReader{err}))
		return res, nil
	}
	res.Body = io.NopCloser(bytes.NewReader(body))
	if cerr := tr.v.Check(req, reqBody, res.StatusCode, res.Header, body); cerr != nil {
		tr.t.Error(cerr)
	}
	return res, nil
}

// failingReader returns its error.
type failingReader struct{ err error }

func (r *failingReader) Read([]byte) (int, error) { return 0, r.err }

// HTTPClient returns an http.Client whose every exchange is checked with v:
// for a Go client of the API, such as package client's, talking to a real
// server. Its connections are closed when the test ends.
func (v *OpenAPI) HTTPClient(t testing.TB) *http.Client {
	return &http.Client{Transport: v.Transport(t, ownTransport(t))}
}

// ownTransport is a transport of the test's own, whose idle connections
// are closed when it ends (the leak check would see their goroutines).
func ownTransport(t testing.TB) *http.Transport {
	tr := http.DefaultTransport.(*http.Transport).Clone()
	t.Cleanup(tr.CloseIdleConnections)
	return tr
}

// Proxy starts a reverse proxy to the server at target (http://host:port)
// that checks every exchange with v, and returns its URL: a process that
// talks to a server over HTTP (the ctxd CLI run as a child process) is
// pointed at it, so that a route, field or status the document lacks
// fails t. Paths are passed as sent (escaped keys stay escaped), and
// WebSocket upgrades pass through (their frames are not checked). The
// proxy closes when the test ends.
func (v *OpenAPI) Proxy(t testing.TB, target string) string {
	t.Helper()
	u, err := url.Parse(target)
	require.NoError(t, err)
	rp := &httputil.ReverseProxy{
		Rewrite:   func(r *httputil.ProxyRequest) { r.SetURL(u) },
		Transport: v.Transport(t, ownTransport(t)),
		ErrorLog:  log.New(io.Discard, "", 0),
	}
	ts := httptest.NewServer(rp)
	t.Cleanup(ts.Close)
	return ts.URL
}
