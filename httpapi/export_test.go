package httpapi

import "github.com/framework0/ctxd/internal/jsontext"

// Exported for the tests in package httpapi_test.
var (
	AppendRecord = appendRecord
	AppendChange = appendChange
	AppendString = jsontext.AppendString
)
