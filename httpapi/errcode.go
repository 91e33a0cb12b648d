package httpapi

import (
	"errors"
	"net/http"
)

// ErrorCode returns the HTTP status and the JSON error code that the API
// answers err with, from the one error table, so that other front ends (the
// WebSocket feed's context_set) report errors with the same codes. known is
// false for an error in no row of the table: it is internal, and its text
// belongs in the server log, not in the answer.
func ErrorCode(err error) (status int, code string, known bool) {
	for i := range errorTable {
		if errors.Is(err, errorTable[i].err) {
			return errorTable[i].status, errorTable[i].code, true
		}
	}
	return http.StatusInternalServerError, "internal", false
}
