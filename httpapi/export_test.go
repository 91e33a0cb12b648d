package httpapi

import "github.com/framework0/ctxd/internal/jsontext"

// Exported for the tests in package httpapi_test.
var (
	AppendRecord = appendRecord
	AppendChange = appendChange
	AppendString = jsontext.AppendString
	AppendMillis = appendMillis
)

// RouteQueryParams maps "METHOD pattern" to the query parameters the
// route takes (queryparams.go).
func RouteQueryParams() (map[string][]string, error) {
	routes, err := routeQueryParams()
	out := make(map[string][]string, len(routes))
	for route, q := range routes {
		out[route] = q.names
	}
	return out, err
}

// The answers built from a struct of this package, for the tests to
// decode into.
type (
	CompatStatus   = compatStatusResponse
	CompatDump     = compatDumpResponse
	CompatDumpList = compatDumpListResponse
	ImportResult   = importResponse
)
