package client

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/framework0/ctxd"
)

// Error codes the server puts in its JSON errors: ctxd's own constants, so
// that client and server cannot disagree.
const (
	CodeNotFound       = ctxd.CodeNotFound
	CodeConflict       = ctxd.CodeConflict
	CodeCompacted      = ctxd.CodeCompacted
	CodeTooLarge       = ctxd.CodeTooLarge
	CodeBadRequest     = ctxd.CodeBadRequest
	CodeFutureRevision = ctxd.CodeFutureRevision
	// CodeUnavailable: the server refused the request (closing, not
	// answering, or the request's time ran out before its write was handed
	// to the store). A write answered so was not applied: retrying is safe.
	CodeUnavailable = ctxd.CodeUnavailable
	// CodeOutcomeUnknown: the server took the write but stopped waiting for
	// it (the request timed out or was cancelled) before it was told the
	// outcome. It may or may not have applied: read the key (or look for
	// the change at a revision) to learn which before retrying.
	CodeOutcomeUnknown = ctxd.CodeOutcomeUnknown
	// CodeInsufficientStorage: the server is at its storage quota (507)
	// and refused a write that adds data; nothing was applied. Deletes
	// still work; the message says how to free space. Also a full disk
	// under a snapshot, a server-side dump, a defrag or a restore's copy
	// (the message names the file; nothing changed).
	CodeInsufficientStorage = ctxd.CodeInsufficientStorage
	CodeInternal            = ctxd.CodeInternal
	// CodePatchTestFailed: a JSON Patch "test" did not hold (409);
	// CodePatchFailed: the patch cannot apply to the value (422). Nothing
	// was written; APIError.OpIndex and Pointer say where.
	CodePatchTestFailed = ctxd.CodePatchTestFailed
	CodePatchFailed     = ctxd.CodePatchFailed
	// CodeBadSnapshot: a snapshot failed verification (422); CodeNotSupported:
	// the server's backend cannot do this (501, e.g. defrag on etcd).
	CodeBadSnapshot  = ctxd.CodeBadSnapshot
	CodeNotSupported = ctxd.CodeNotSupported
	// CodeUnauthorized: no token, or an unknown one (401);
	// CodeForbidden: the token may not do this (403); CodeRateLimited:
	// past the server's rate limit (429; APIError.RetryAfter says when to
	// try again). CodeTokenRevoked: a reload of the tokens file removed or
	// changed the token of a Watch, which then reconnects at once (and
	// ends with 401 if it was removed).
	CodeUnauthorized = ctxd.CodeUnauthorized
	CodeForbidden    = ctxd.CodeForbidden
	CodeRateLimited  = ctxd.CodeRateLimited
	CodeTokenRevoked = ctxd.CodeTokenRevoked
	// CodeMethodNotAllowed (405), CodeUnsupportedMediaType (415),
	// CodePreconditionFailed (412) and CodeRangeNotSatisfiable (416):
	// requests this client does not send, for callers of other routes.
	CodeMethodNotAllowed     = ctxd.CodeMethodNotAllowed
	CodeUnsupportedMediaType = ctxd.CodeUnsupportedMediaType
	CodePreconditionFailed   = ctxd.CodePreconditionFailed
	CodeRangeNotSatisfiable  = ctxd.CodeRangeNotSatisfiable
	// CodeLagged and CodeUnknownType are the WebSocket feed's: a watcher
	// that fell too far behind (Watch reconnects by itself), a message
	// type the server does not know.
	CodeLagged      = ctxd.CodeLagged
	CodeUnknownType = ctxd.CodeUnknownType
)

// APIError is an error answer from the server: any status outside 2xx.
// It is the one error type of a server's answer: the store's own types
// (*ctxd.ConflictError, *ctxd.CompactedError, *ctxd.PatchError) do not
// travel, so errors.As with them fails; errors.Is(err, ctxd.ErrConflict)
// and the like work, and the fields below carry what those types hold.
type APIError struct {
	// Status is the HTTP status code.
	Status int
	// Code is the JSON error code (CodeNotFound, CodeConflict, ...); empty if
	// the answer was not a ctxd JSON error (a proxy's error page, say).
	Code string
	// Message is the server's explanation.
	Message string
	// Namespace and Key are, for a conflict, the key whose version was
	// not the one expected: in a transaction, the op that failed.
	Namespace string
	Key       string
	// CurrentVersion is, for a conflict, the key's version now (0: it does
	// not exist).
	CurrentVersion uint64
	// CompactedRevision is, for CodeCompacted, the oldest revision history
	// still answers for.
	CompactedRevision uint64
	// OpIndex, Op and Pointer are, for a patch that failed
	// (CodePatchTestFailed, CodePatchFailed), the failing operation of the
	// JSON Patch (from 0), its name, and the JSON pointer that failed. An
	// OpIndex of 0 names the first operation only when Op is set: for
	// another error it says nothing. (In a transaction it is the place
	// inside that op's patch, not the op's place in the transaction: the
	// Message names the key.)
	OpIndex int
	Op      string
	Pointer string
	// RetryAfter is, for a 429 (too many requests: http.rate_limit) or a
	// 503, the wait the server asked for before trying again: its
	// Retry-After header, whole seconds (ctxd's) or an HTTP date (a
	// proxy's, counted from the answer's Date header when it has one);
	// 0 when it named none, or a date passed.
	RetryAfter time.Duration
	// Instance is, for a client of several instances (New), the base URL
	// of the instance whose answer a server error (5xx) is: the one whose
	// log says more. The message then starts with it. Empty for a client
	// of one, and for other answers.
	Instance string

	// bodiless is an answer to HEAD, which has no body to say its code:
	// its status alone is the server's.
	bodiless bool
	// uncertain marks a proxy's 502, 503 or 504 to a write, or a 503 to
	// a write whose body was cut off (answerError).
	uncertain bool
	// cutOff is why the body could not be read in full (the connection
	// broke mid-body): nil when it was.
	cutOff error
}

func (e *APIError) Error() string {
	if e.Instance != "" {
		return e.Instance + ": " + e.message()
	}
	return e.message()
}

func (e *APIError) message() string {
	code := e.Code
	if code == "" {
		code = strings.ToLower(http.StatusText(e.Status))
		if e.cutOff != nil {
			// Whose answer it was, and what it said, went with the rest.
			return fmt.Sprintf("HTTP %d %s, its answer cut off (%v): %s", e.Status, http.StatusText(e.Status), e.cutOff, e.Message)
		}
		if e.Message != "" {
			// Another server's page (a wrong port, a proxy's): say so
			// before its text, instead of printing it as if ctxd said it.
			return fmt.Sprintf("HTTP %d %s, not a ctxd answer: %s", e.Status, http.StatusText(e.Status), e.Message)
		}
	}
	if e.Message == "" {
		return fmt.Sprintf("%s (%d)", code, e.Status)
	}
	return fmt.Sprintf("%s (%d %s)", e.Message, e.Status, code)
}

// Is lets errors.Is match an *APIError against the store's errors, such as
// ctxd.ErrNotFound or ctxd.ErrConflict: those its code answers, from the
// server's one error table (ctxd.ErrorsOf), so that client and server
// cannot disagree (unavailable matches ctxd.ErrUnavailable and
// ctxd.ErrClosed; outcome_unknown ctxd.ErrOutcomeUnknown only).
func (e *APIError) Is(target error) bool {
	return e.uncertain && target == ctxd.ErrOutcomeUnknown || slices.Contains(ctxd.ErrorsOf(e.Code), target)
}

// answerError is decodeError for the answer to a request; for a write, a
// 502, 503 or 504 that is not ctxd's own error (a proxy's: the write may
// have reached ctxd, and its answer have been lost behind it; Envoy
// answers 503 when the instance's connection broke after the request
// went out) also matches ctxd.ErrOutcomeUnknown, as an answer that never
// came does; so does a 503 whose body was cut off before its code
// (ctxd's outcome_unknown as well as its unavailable: no telling which).
// ctxd's own 503 always has its code: unavailable, nothing applied.
// A server error's names its instance, for a client of several
// (APIError.Instance).
func (c *Client) answerError(resp *http.Response, write bool) error {
	err := decodeError(resp)
	var ae *APIError
	if !errors.As(err, &ae) {
		return err
	}
	if write && ae.Code == "" && couldNotAnswer(resp.StatusCode) {
		ae.uncertain = true
	}
	if len(c.servers) > 1 && resp.StatusCode >= 500 && resp.Request != nil {
		u := resp.Request.URL.String()
		for _, base := range c.servers {
			if strings.HasPrefix(u, base+"/") {
				ae.Instance = base
			}
		}
	}
	return err
}

// IsNotFound reports whether err is the server saying the key (or the key
// at the asked revision) does not exist.
func IsNotFound(err error) bool {
	var ae *APIError
	return errors.As(err, &ae) && (ae.Code == CodeNotFound || ae.bodiless && ae.Status == http.StatusNotFound)
}

// IsConflict reports whether err is a failed compare-and-swap: the key's
// version was not the one given in IfVersion. The *APIError's
// CurrentVersion holds the version now.
func IsConflict(err error) bool {
	var ae *APIError
	return errors.As(err, &ae) && (ae.Code == CodeConflict || ae.bodiless && ae.Status == http.StatusConflict)
}

// IsOutcomeUnknown reports whether err is a write whose outcome is not
// known: it may or may not have been applied. Either the server said so
// (an *APIError with CodeOutcomeUnknown: it took the write, then the
// request's time ran out), or the client sent the whole request and then
// got no answer (the connection broke, ctx ended; see Put), or an answer
// of success that was cut off (the write applied; what it returned is
// lost). Read the key
// to learn whether the write applied before deciding to retry it. The
// server's other changes (a snapshot taken or removed, a restore, a dump
// written, a compaction or defrag) are writes too: list them, or read the
// status, before sending one again (a restore sent again discards what
// was written since the first).
func IsOutcomeUnknown(err error) bool { return errors.Is(err, ctxd.ErrOutcomeUnknown) }

// errorBody is the JSON of an error answer. The extra fields are read both
// inside "error" and beside it.
type errorBody struct {
	Error *struct {
		Code              string `json:"code"`
		Message           string `json:"message"`
		Namespace         string `json:"ns"`
		Key               string `json:"key"`
		CurrentVersion    uint64 `json:"current_version"`
		CompactedRevision uint64 `json:"compacted_revision"`
		OpIndex           int    `json:"op_index"`
		Op                string `json:"op"`
		Pointer           string `json:"pointer"`
	} `json:"error"`
	CurrentVersion    uint64 `json:"current_version"`
	CompactedRevision uint64 `json:"compacted_revision"`
}

// retryAfter is the Retry-After of a 429 or 503 answer; 0 for another
// status, none, or one that is neither of RFC 9110's forms. ctxd sends
// whole seconds; a proxy in front of it may send an HTTP date, whose
// wait is counted from the answer's Date when it has one (the clock that
// wrote both: a client whose clock is off by minutes would otherwise
// wait that much more or less), else from now; a date passed is 0.
func retryAfter(resp *http.Response) time.Duration {
	if resp.StatusCode != http.StatusTooManyRequests && resp.StatusCode != http.StatusServiceUnavailable {
		return 0
	}
	v := strings.TrimSpace(resp.Header.Get("Retry-After"))
	if secs, err := strconv.ParseUint(v, 10, 64); err == nil {
		// Far beyond any wait a caller takes, and no overflow to a
		// negative wait.
		return time.Duration(min(secs, uint64(math.MaxInt64/time.Second))) * time.Second
	}
	at, err := http.ParseTime(v)
	if err != nil {
		return 0
	}
	from := time.Now()
	if date, err := http.ParseTime(resp.Header.Get("Date")); err == nil {
		from = date
	}
	return max(at.Sub(from), 0)
}

// decodeError reads an error answer. One that is not ctxd's JSON error (a
// proxy's page, another server at that address) has no Code, and does not
// match IsNotFound or IsConflict whatever its status: a 404 from the wrong
// port is not "no such key". An answer to HEAD, which has no body, is
// judged by its status. One whose body was cut off before a whole JSON
// error came has no Code either, and says so (APIError.cutOff).
func decodeError(resp *http.Response) error {
	ae := &APIError{Status: resp.StatusCode, RetryAfter: retryAfter(resp),
		bodiless: resp.Request != nil && resp.Request.Method == http.MethodHead}
	data, readErr := io.ReadAll(io.LimitReader(resp.Body, 64<<10))
	var b errorBody
	if err := json.Unmarshal(data, &b); err == nil && b.Error != nil {
		ae.Code = b.Error.Code
		ae.Message = b.Error.Message
		ae.Namespace, ae.Key = b.Error.Namespace, b.Error.Key
		ae.CurrentVersion = max(b.Error.CurrentVersion, b.CurrentVersion)
		ae.CompactedRevision = max(b.Error.CompactedRevision, b.CompactedRevision)
		ae.OpIndex, ae.Op, ae.Pointer = b.Error.OpIndex, b.Error.Op, b.Error.Pointer
		return ae
	}
	// Not a ctxd error, or cut off: keep the start of whatever came back.
	ae.cutOff = readErr
	msg := strings.TrimSpace(string(data))
	if len(msg) > 200 {
		msg = msg[:200] + "..."
	}
	ae.Message = msg
	return ae
}
