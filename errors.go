package ctxd

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"slices"
)

var (
	// ErrNotFound is returned when a key (or a key at the requested revision)
	// does not exist.
	ErrNotFound = errors.New("not found")
	// ErrConflict is returned when a write carried an expected version that
	// differs from the key's current version. The error is a *ConflictError.
	ErrConflict = errors.New("version conflict")
	// ErrCompacted is returned when a read asks for a revision older than the
	// oldest one history still holds.
	ErrCompacted = errors.New("revision compacted")
	// ErrFutureRevision is returned when a read asks for a revision that has
	// not been committed yet.
	ErrFutureRevision = errors.New("revision not yet committed")
	// ErrTooLarge is returned when a key, value or transaction exceeds the
	// configured limits.
	ErrTooLarge = errors.New("too large")
	// ErrInvalid is returned for malformed input: an empty key, control
	// characters, a bad namespace name, a value that is not JSON.
	ErrInvalid = errors.New("invalid input")
	// ErrClosed is returned by operations on a closed store.
	ErrClosed = errors.New("store closed")
	// ErrBadSnapshot is returned for a file that is not a usable snapshot.
	ErrBadSnapshot = errors.New("bad snapshot")
	// ErrNotSupported is returned for an operation the backend in use cannot
	// do (defragmenting a remote engine's files, for example).
	ErrNotSupported = errors.New("not supported by this storage backend")
	// ErrUnavailable is returned when the store cannot take a request now: it
	// is closing, or a restore is replacing the database. Nothing was applied.
	ErrUnavailable = errors.New("unavailable")
	// ErrOutcomeUnknown is returned when a write was handed to the store but
	// the caller stopped waiting (timeout, cancelled request, shutdown)
	// before it was told the outcome: the write may or may not have been
	// applied. Read the key (or the revision) to learn which.
	ErrOutcomeUnknown = errors.New("outcome unknown")
)

// ConflictError reports a failed compare-and-swap. It matches ErrConflict
// with errors.Is.
type ConflictError struct {
	Namespace string
	Key       string
	Expected  uint64 // the version the caller expected (0: must not exist)
	Current   uint64 // the key's version now (0: it does not exist)
}

func (e *ConflictError) Error() string {
	return fmt.Sprintf("version conflict on %s/%s: expected version %d, current version %d",
		e.Namespace, e.Key, e.Expected, e.Current)
}

// Is makes errors.Is(err, ErrConflict) true.
func (e *ConflictError) Is(target error) bool { return target == ErrConflict }

// CompactedError reports a read below the compacted revision. It matches
// ErrCompacted with errors.Is.
type CompactedError struct {
	Requested uint64 // the revision asked for
	Compacted uint64 // the oldest revision history still answers for
	// RestoredFrom is set when the revision was discarded by a full restore
	// from a snapshot taken at that revision, rather than by compaction.
	RestoredFrom uint64
}

func (e *CompactedError) Error() string {
	if e.RestoredFrom > 0 {
		return fmt.Sprintf("revision %d is not in history: the database was restored from a snapshot at revision %d; read the current state",
			e.Requested, e.RestoredFrom)
	}
	return fmt.Sprintf("revision %d is compacted: history starts at revision %d", e.Requested, e.Compacted)
}

// Is makes errors.Is(err, ErrCompacted) true.
func (e *CompactedError) Is(target error) bool { return target == ErrCompacted }

// Invalidf returns an error matching ErrInvalid with a message a person can act on.
func Invalidf(format string, args ...any) error {
	return fmt.Errorf("%w: %s", ErrInvalid, fmt.Sprintf(format, args...))
}

// TooLargef returns an error matching ErrTooLarge.
func TooLargef(format string, args ...any) error {
	return fmt.Errorf("%w: %s", ErrTooLarge, fmt.Sprintf(format, args...))
}

// Error codes: the "code" of a JSON error answer and of a WebSocket
// "error" frame. A client branches on these, never on messages.
// rate_limited is both: a REST request past http.rate_limit (429), and a
// WebSocket message past websocket.rate_limit (not applied; the frame has
// retry_after_ms).
const (
	CodeNotFound         = "not_found"
	CodeConflict         = "conflict"
	CodeCompacted        = "compacted"
	CodeFutureRevision   = "future_revision"
	CodeTooLarge         = "too_large"
	CodeBadRequest       = "bad_request"
	CodeBadSnapshot      = "bad_snapshot"
	CodeUnavailable      = "unavailable"
	CodeOutcomeUnknown   = "outcome_unknown"
	CodeNotSupported     = "not_supported"
	CodeUnauthorized     = "unauthorized"
	CodeForbidden        = "forbidden"
	CodeRateLimited      = "rate_limited"
	CodeMethodNotAllowed = "method_not_allowed"
	CodeInternal         = "internal"

	// WebSocket only.

	// CodeLagged: the client fell too far behind; the frame's from_rev is
	// the revision to reconnect with. Sent last, before the server closes.
	CodeLagged = "lagged"
	// CodeUnknownType: the message's type is not one the server knows.
	CodeUnknownType = "unknown_type"
	// CodeTokenRevoked: the token the connection was opened with was
	// revoked by a reload of the tokens file. Sent last, before the server
	// closes the connection (1008, reason "token_revoked").
	CodeTokenRevoked = "token_revoked"
)

// errorClasses maps the data model's errors to an HTTP status and a code,
// tried in order with errors.Is. It is the one table of these errors: the
// HTTP API and the WebSocket hub both answer from it. Errors of a transport
// (a body too large, a missing token) are in that transport's table.
var errorClasses = [...]struct {
	err    error
	status int
	code   string
}{
	{ErrNotFound, http.StatusNotFound, CodeNotFound},
	{ErrConflict, http.StatusConflict, CodeConflict},
	{ErrCompacted, http.StatusGone, CodeCompacted},
	{ErrFutureRevision, http.StatusBadRequest, CodeFutureRevision},
	{ErrTooLarge, http.StatusRequestEntityTooLarge, CodeTooLarge},
	{ErrInvalid, http.StatusBadRequest, CodeBadRequest},
	{ErrBadSnapshot, http.StatusUnprocessableEntity, CodeBadSnapshot},
	{ErrNotSupported, http.StatusNotImplemented, CodeNotSupported},
	// Before the context errors: a write that may have applied wraps the
	// context's error too, and must not read as "refused".
	{ErrOutcomeUnknown, http.StatusServiceUnavailable, CodeOutcomeUnknown},
	{ErrUnavailable, http.StatusServiceUnavailable, CodeUnavailable},
	{ErrClosed, http.StatusServiceUnavailable, CodeUnavailable},
	{context.DeadlineExceeded, http.StatusServiceUnavailable, CodeUnavailable},
	{context.Canceled, http.StatusServiceUnavailable, CodeUnavailable},
}

// ErrorCodes returns the codes of the error table, each once, in table
// order: the codes the data model's errors are answered with (the OpenAPI
// document's enum of error codes is built from it and the transport's table).
func ErrorCodes() []string {
	codes := make([]string, 0, len(errorClasses))
	for i := range errorClasses {
		if !slices.Contains(codes, errorClasses[i].code) {
			codes = append(codes, errorClasses[i].code)
		}
	}
	return codes
}

// Classify returns the HTTP status and error code of err when it is one of
// the data model's errors (or wraps one), and ok false otherwise.
func Classify(err error) (status int, code string, ok bool) {
	for i := range errorClasses {
		if errors.Is(err, errorClasses[i].err) {
			return errorClasses[i].status, errorClasses[i].code, true
		}
	}
	return 0, "", false
}
