package httpapi

// Exported for the tests in package httpapi_test.
var (
	AppendRecord = appendRecord
	AppendChange = appendChange
	AppendString = appendString
)
