package httpapi

import (
	_ "embed"
	"encoding/json"
	"fmt"
	"net/http"
	"strings"
	"sync"

	"github.com/labstack/echo/v4"
	"go.yaml.in/yaml/v3"
)

// GET /v1/openapi.json serves the OpenAPI 3.1 description of the API. The
// description is written by hand in openapi.yaml (readable, easy to extend
// beside the code it describes) and embedded in the binary; it becomes JSON
// once, on first use, with what must never drift from the code filled in:
// the enum of error codes (from the error tables) and the answers every
// route may give (from access control, the rate limit and the store).

//go:embed openapi.yaml
var openapiYAML []byte

// commonResponses are the answers any route may give, whatever it does:
// access control's 401 and 403, 413 for an author (X-Ctxd-Who) or a key
// past its limit, a compressed body's 415, the rate limit's 429, a bug's
// 500, and 503 from a store that is closed or a write whose outcome is
// unknown. Each is added to every operation that does not list that
// status itself.
var commonResponses = map[string]string{
	"401": "Unauthorized",
	"403": "Forbidden",
	"413": "TooLarge",
	"415": "UnsupportedEncoding",
	"429": "RateLimited",
	"500": "Internal",
	"503": "Unavailable",
}

var openapiDoc = sync.OnceValues(func() ([]byte, error) { return buildOpenAPI(openapiYAML, errorCodes()) })

// OpenAPI returns the OpenAPI document served at /v1/openapi.json, as JSON.
func OpenAPI() ([]byte, error) { return openapiDoc() }

func (s *Server) serveOpenAPI(c echo.Context) error {
	doc, err := OpenAPI()
	if err != nil {
		return err // a broken openapi.yaml: its test fails first
	}
	return c.Blob(http.StatusOK, echo.MIMEApplicationJSON, doc)
}

// buildOpenAPI converts the YAML document src to indented JSON, with codes
// as the enum of ErrorObject.code and commonResponses and the X-Request-Id
// header added to every operation.
func buildOpenAPI(src []byte, codes []string) ([]byte, error) {
	var raw any
	if err := yaml.Unmarshal(src, &raw); err != nil {
		return nil, fmt.Errorf("openapi.yaml: %w", err)
	}
	doc, ok := stringKeys(raw).(map[string]any)
	if !ok {
		return nil, fmt.Errorf("openapi.yaml: not a mapping")
	}
	code, err := lookup(doc, "components", "schemas", "ErrorObject", "properties", "code")
	if err != nil {
		return nil, err
	}
	code["enum"] = codes
	shared, err := lookup(doc, "components", "responses")
	if err != nil {
		return nil, err
	}
	for name, r := range shared {
		resp, ok := r.(map[string]any)
		if !ok {
			return nil, fmt.Errorf("openapi.yaml: components.responses.%s is not a mapping", name)
		}
		addRequestIDHeader(resp)
	}
	paths, err := lookup(doc, "paths")
	if err != nil {
		return nil, err
	}
	for path, item := range paths {
		ops, ok := item.(map[string]any)
		if !ok {
			return nil, fmt.Errorf("openapi.yaml: paths.%s is not a mapping", path)
		}
		ops["options"] = preflight()
		if get, ok := ops["get"].(map[string]any); ok && ops["head"] == nil && !upgradeRoutes[path] {
			ops["head"] = headOf(get)
		}
		for method, op := range ops {
			if method == "parameters" || method == "summary" || method == "description" {
				continue
			}
			_, refusesQuery := echoPattern(path)
			if err := addCommonResponses(op, refusesQuery); err != nil {
				return nil, fmt.Errorf("openapi.yaml: %s %s: %w", strings.ToUpper(method), path, err)
			}
		}
	}
	return json.MarshalIndent(doc, "", "  ")
}

// upgradeRoutes are the GET routes that upgrade to a WebSocket (or answer
// Engine.IO): they take no HEAD.
var upgradeRoutes = map[string]bool{"/v1/watch": true, "/socket.io/": true}

// headOf is the HEAD operation of a GET route (getAndHead): its answers'
// statuses and headers, without their bodies.
func headOf(get map[string]any) map[string]any {
	head := map[string]any{}
	for k, v := range get {
		switch k {
		case "operationId":
			head[k] = fmt.Sprint(v) + "Head"
		case "summary":
			head[k] = "The headers of: " + fmt.Sprint(v)
		case "requestBody", "description":
		case "responses":
			responses := map[string]any{}
			for status, r := range v.(map[string]any) {
				resp, _ := r.(map[string]any)
				if ref, ok := resp["$ref"]; ok {
					name := strings.TrimPrefix(fmt.Sprint(ref), "#/components/responses/")
					responses[status] = map[string]any{"description": "the headers of " + name}
					continue
				}
				bodiless := map[string]any{"description": resp["description"]}
				if h, ok := resp["headers"]; ok {
					bodiless["headers"] = h
				}
				responses[status] = bodiless
			}
			head[k] = responses
		default:
			head[k] = v
		}
	}
	return head
}

// preflight is the OPTIONS operation of every path: a browser's CORS
// preflight, answered by the server's CORS layer (cors.go) whatever the
// route.
func preflight() map[string]any {
	header := func(desc string) any {
		return map[string]any{"description": desc, "schema": map[string]any{"type": "string"}}
	}
	return map[string]any{
		"tags":     []any{"server"},
		"summary":  "CORS preflight (for an origin in http.cors_origins)",
		"security": []any{},
		"responses": map[string]any{
			"204": map[string]any{
				"description": "the origin may send this request",
				"headers": map[string]any{
					"Access-Control-Allow-Origin":  header("the origin"),
					"Access-Control-Allow-Methods": header("the methods allowed"),
					"Access-Control-Allow-Headers": header("the request headers allowed"),
				},
			},
			"403": map[string]any{"$ref": "#/components/responses/Forbidden"},
		},
	}
}

// addCommonResponses adds commonResponses to the operation op where it does
// not list them, and the X-Request-Id header to each of its own answers
// (the shared ones, $ref'd, have it already).
func addCommonResponses(op any, refusesQuery bool) error {
	responses, err := lookup(op, "responses")
	if err != nil {
		return err
	}
	add := func(status, name string) {
		if _, ok := responses[status]; !ok {
			responses[status] = map[string]any{"$ref": "#/components/responses/" + name}
		}
	}
	for status, name := range commonResponses {
		add(status, name)
	}
	if refusesQuery {
		add("400", "BadRequest") // an unknown query parameter (queryparams.go)
	}
	for status, r := range responses {
		resp, ok := r.(map[string]any)
		if !ok {
			return fmt.Errorf("response %s is not a mapping", status)
		}
		if _, isRef := resp["$ref"]; isRef {
			continue
		}
		addRequestIDHeader(resp)
	}
	return nil
}

// addRequestIDHeader documents X-Request-Id on the answer resp.
func addRequestIDHeader(resp map[string]any) {
	headers, ok := resp["headers"].(map[string]any)
	if !ok {
		headers = map[string]any{}
		resp["headers"] = headers
	}
	headers["X-Request-Id"] = map[string]any{"$ref": "#/components/headers/X-Request-Id"}
}

// lookup walks the mappings of v along path and returns the last one.
func lookup(v any, path ...string) (map[string]any, error) {
	for i, name := range path {
		m, ok := v.(map[string]any)
		if !ok {
			return nil, fmt.Errorf("openapi.yaml: %s is not a mapping", strings.Join(path[:i], "."))
		}
		if v, ok = m[name]; !ok {
			return nil, fmt.Errorf("openapi.yaml: no %s", strings.Join(path[:i+1], "."))
		}
	}
	m, ok := v.(map[string]any)
	if !ok {
		return nil, fmt.Errorf("openapi.yaml: %s is not a mapping", strings.Join(path, "."))
	}
	return m, nil
}

// stringKeys turns the map[any]any that YAML gives for a mapping with a
// non-string key (an unquoted status code) into map[string]any, so that the
// document encodes as JSON; it recurses into every value.
func stringKeys(v any) any {
	switch v := v.(type) {
	case map[string]any:
		for k, e := range v {
			v[k] = stringKeys(e)
		}
		return v
	case map[any]any:
		m := make(map[string]any, len(v))
		for k, e := range v {
			m[fmt.Sprint(k)] = stringKeys(e)
		}
		return m
	case []any:
		for i, e := range v {
			v[i] = stringKeys(e)
		}
		return v
	default:
		return v
	}
}
