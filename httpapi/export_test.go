package httpapi

import "github.com/framework0/ctxd/internal/jsontext"

// Exported for the tests in package httpapi_test.
var (
	AppendRecord = appendRecord
	AppendChange = appendChange
	AppendString = jsontext.AppendString
	AppendMillis = appendMillis
)

// The answers built from a struct of this package, for the tests to
// decode into.
type (
	CompatStatus   = compatStatusResponse
	CompatDump     = compatDumpResponse
	CompatDumpList = compatDumpListResponse
	ImportResult   = importResponse
)
