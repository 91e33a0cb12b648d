package httpapi

import "github.com/framework0/ctxd/internal/jsontext"

// Exported for the tests in package httpapi_test.
var (
	AppendRecord = appendRecord
	AppendChange = appendChange
	AppendString = jsontext.AppendString
	AppendMillis = appendMillis
	// RouteQueryParams maps "METHOD pattern" to the query parameters the
	// route takes (queryparams.go).
	RouteQueryParams = routeQueryParams
)

// The answers built from a struct of this package, for the tests to
// decode into.
type (
	CompatStatus   = compatStatusResponse
	CompatDump     = compatDumpResponse
	CompatDumpList = compatDumpListResponse
	ImportResult   = importResponse
)
