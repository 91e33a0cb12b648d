package httpapi

import (
	"net/http"
	"slices"

	"github.com/framework0/ctxd"
	"github.com/framework0/ctxd/internal/jsontext"
)

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

// ErrorStatus returns the status the error tables send an answer of
// code with, and false for a code that is not among those an answer may
// carry (the OpenAPI document's enum).
func ErrorStatus(code string) (int, bool) {
	if !slices.Contains(errorCodes(), code) {
		return 0, false
	}
	if status := ctxd.StatusOf(code); status != 0 {
		return status, true
	}
	for _, row := range errorTable {
		if row.code == code {
			return row.status, true
		}
	}
	for status, c := range echoErrorCodes {
		if c == code {
			return status, true
		}
	}
	if code == ctxd.CodeInternal {
		return http.StatusInternalServerError, true
	}
	return 0, false
}
