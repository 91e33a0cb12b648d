package ctxd

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"slices"
	"strings"
	"unicode/utf8"
)

var (
	// ErrNotFound is returned when a key (or a key at the requested revision)
	// does not exist.
	ErrNotFound = errors.New("not found")
	// ErrConflict is returned when a write carried an expected version that
	// differs from the key's current version. A store returns a *ConflictError; the
	// Go client a *client.APIError (CurrentVersion).
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
	// ErrInsufficientStorage is returned when a write that adds data would
	// take the database past its storage quota. Nothing was applied; reads,
	// deletes, compaction, defrag and snapshots still work. The error is a
	// *QuotaError. (The API answers a full disk under a snapshot, a dump,
	// a defrag or a restore's copy with its code too.)
	ErrInsufficientStorage = errors.New("insufficient storage")
	// ErrPatchTestFailed is returned when a JSON Patch "test" operation
	// found another value at its path than the one it names: the patch
	// was conditional and its condition does not hold now. Nothing was
	// written. The error is a *PatchError.
	ErrPatchTestFailed = errors.New("patch test failed")
	// ErrPatchFailed is returned when a patch cannot be applied to the
	// key's current value: a path that does not exist, an array index out
	// of range, an object member on an array, or a member the value names
	// twice in one object that the patch would change (package patch).
	// Nothing was written. The error is a *PatchError.
	ErrPatchFailed = errors.New("patch cannot be applied")
)

// PatchError reports a patch that did not apply to the value current when
// it was tried. It matches ErrPatchTestFailed (a failed "test" operation)
// or ErrPatchFailed with errors.Is.
type PatchError struct {
	// Index is the position of the failing operation in a JSON Patch
	// (from 0); Op its name ("add", "test", ...).
	Index int
	Op    string
	// Pointer is the JSON pointer (RFC 6901) that failed: the operation's
	// "path", or its "from" when that is what does not exist.
	Pointer string
	// Test is set for a failed "test" operation.
	Test bool
	// Reason says what is wrong at Pointer.
	Reason string
}

func (e *PatchError) Error() string {
	what := "cannot be applied"
	if e.Test {
		what = "test failed"
	}
	return fmt.Sprintf("patch %s: operation %d (%s) at %q: %s", what, e.Index, e.Op, e.Pointer, e.Reason)
}

// Is makes errors.Is(err, ErrPatchTestFailed) true for a failed test, and
// errors.Is(err, ErrPatchFailed) otherwise.
func (e *PatchError) Is(target error) bool {
	if e.Test {
		return target == ErrPatchTestFailed
	}
	return target == ErrPatchFailed
}

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

// FutureRevision is the error of a read, a view or a compaction at rev,
// above the current revision cur: one message on every backend.
func FutureRevision(rev, cur uint64) error {
	return fmt.Errorf("%w: revision %d, current revision is %d", ErrFutureRevision, rev, cur)
}

// QuotaError reports a write refused because of the storage quota; its
// message, which says what to do, is also /v1/status's alarm_message. It
// matches ErrInsufficientStorage with errors.Is.
type QuotaError struct {
	Used  int64 // bytes the database uses now (see Status.UsedBytes)
	Quota int64 // the quota, storage.quota_bytes
	Need  int64 // about what the refused write would add (0: not known)
}

func (e *QuotaError) Error() string {
	var b strings.Builder
	if e.Used >= e.Quota || e.Need == 0 {
		fmt.Fprintf(&b, "storage quota exceeded: the database uses %s of its %s quota (storage.quota_bytes)",
			FormatBytes(e.Used), FormatBytes(e.Quota))
	} else {
		fmt.Fprintf(&b, "storage quota exceeded: a write adding about %s would pass it, the database uses %s of its %s quota (storage.quota_bytes)",
			FormatBytes(e.Need), FormatBytes(e.Used), FormatBytes(e.Quota))
	}
	b.WriteString("; writes that add data are refused, while reads, deletes, compaction, defrag and snapshots work. " +
		"To write again, free space: delete keys you no longer need and compact history (POST /v1/compact?keep_versions=1 or ctxd compaction --keep-versions 1, " +
		"or a lower history.keep_versions): writes resume as soon as the space in use is under the quota, " +
		"and POST /v1/defrag (ctxd defrag) then gives the freed pages back to the disk. Or raise storage.quota_bytes and restart")
	return b.String()
}

// Is makes errors.Is(err, ErrInsufficientStorage) true.
func (e *QuotaError) Is(target error) bool { return target == ErrInsufficientStorage }

// FormatBytes writes a byte count for people: 512 B, 1.5 KiB, 10.0 MiB, 2.0 GiB.
func FormatBytes(n int64) string {
	switch {
	case n >= 1<<30:
		return fmt.Sprintf("%.1f GiB", float64(n)/(1<<30))
	case n >= 1<<20:
		return fmt.Sprintf("%.1f MiB", float64(n)/(1<<20))
	case n >= 1<<10:
		return fmt.Sprintf("%.1f KiB", float64(n)/(1<<10))
	}
	return fmt.Sprintf("%d B", n)
}

// Invalidf returns an error matching ErrInvalid with a message a person can act on.
func Invalidf(format string, args ...any) error {
	return fmt.Errorf("%w: %s", ErrInvalid, fmt.Sprintf(format, args...))
}

// TooLargef returns an error matching ErrTooLarge.
func TooLargef(format string, args ...any) error {
	return fmt.Errorf("%w: %s", ErrTooLarge, fmt.Sprintf(format, args...))
}

// MaxMessageText bounds the message of an error the WebSocket doors
// (/v1/watch and Socket.IO) send: ClipMessage cuts a longer one.
const MaxMessageText = 1024

// ClipMessage cuts msg to MaxMessageText bytes (at a character's start),
// marking the cut with "...". A message may quote what the client sent
// (an unknown message type or event name, a member it does not know, a
// from_rev that is not a number): quoted whole, the answer was as large
// as the message, up to five times larger once strconv.Quote and JSON had
// escaped it (2 MB of DEL characters were answered with 10 MB), and a
// client that never read its answers had hundreds of them queued.
func ClipMessage(msg string) string { return ClipText(msg, MaxMessageText) }

// ClipText cuts s to n bytes (at a character's start), marking the cut
// with "...": ClipMessage's cut, for a bound of the caller's.
func ClipText(s string, n int) string {
	if len(s) <= n {
		return s
	}
	cut := n
	for cut > 0 && !utf8.RuneStart(s[cut]) {
		cut--
	}
	return s[:cut] + "..."
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
	// CodeInsufficientStorage: a write that adds data, past the storage
	// quota (507); the message says how to free space.
	CodeInsufficientStorage = "insufficient_storage"
	// CodePatchTestFailed: a JSON Patch "test" operation did not hold
	// (409); the answer names the operation and its pointer.
	CodePatchTestFailed = "patch_test_failed"
	// CodePatchFailed: the patch cannot be applied to the key's current
	// value (422); the answer names the operation and its pointer.
	CodePatchFailed = "patch_failed"
	// CodeUnsupportedMediaType: a PATCH whose Content-Type is neither
	// application/merge-patch+json nor application/json-patch+json (415).
	CodeUnsupportedMediaType = "unsupported_media_type"
	// CodePreconditionFailed: a file download's If-Match or
	// If-Unmodified-Since does not hold (412).
	CodePreconditionFailed = "precondition_failed"
	// CodeRangeNotSatisfiable: a file download's Range lies outside the
	// file (416; Content-Range gives its size).
	CodeRangeNotSatisfiable = "range_not_satisfiable"

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
	{ErrPatchTestFailed, http.StatusConflict, CodePatchTestFailed},
	{ErrPatchFailed, http.StatusUnprocessableEntity, CodePatchFailed},
	{ErrCompacted, http.StatusGone, CodeCompacted},
	{ErrFutureRevision, http.StatusBadRequest, CodeFutureRevision},
	{ErrTooLarge, http.StatusRequestEntityTooLarge, CodeTooLarge},
	{ErrInvalid, http.StatusBadRequest, CodeBadRequest},
	{ErrBadSnapshot, http.StatusUnprocessableEntity, CodeBadSnapshot},
	{ErrNotSupported, http.StatusNotImplemented, CodeNotSupported},
	{ErrInsufficientStorage, http.StatusInsufficientStorage, CodeInsufficientStorage},
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

// KeyNotFound is the error of a read of a key that does not exist (at
// revision rev, when it is not 0), worded alike on every backend.
func KeyNotFound(ns, key string, rev uint64) error {
	if rev == 0 {
		return fmt.Errorf("get %s/%s: %w", ns, key, ErrNotFound)
	}
	return fmt.Errorf("get %s/%s at revision %d: %w", ns, key, rev, ErrNotFound)
}

// ErrorsOf returns the data model's errors that code answers, the reverse
// of Classify: what a client may match an answer of that code against.
// The context's errors, which the table answers as unavailable, are not
// among them: a server's answer is not the client's own cancellation.
func ErrorsOf(code string) []error {
	var errs []error
	for _, c := range errorClasses {
		if c.code == code && c.err != context.Canceled && c.err != context.DeadlineExceeded {
			errs = append(errs, c.err)
		}
	}
	return errs
}

// StatusOf returns the HTTP status the table answers code with, 0 for a
// code that is not in it (a transport's own).
func StatusOf(code string) int {
	for _, c := range errorClasses {
		if c.code == code {
			return c.status
		}
	}
	return 0
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
