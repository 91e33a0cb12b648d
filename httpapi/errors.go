package httpapi

import (
	"errors"
	"io/fs"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"

	"github.com/framework0/ctxd"
	"github.com/framework0/ctxd/internal/fsutil"
	"github.com/framework0/ctxd/internal/jsontext"

	"github.com/labstack/echo/v4"

	"github.com/framework0/ctxd/export"
	"github.com/framework0/ctxd/store"
	"github.com/framework0/ctxd/store/snapshots"
)

// Errors raised by httpapi itself, for what the store never sees.
var (
	// errBadRequest matches every malformed request detected here: a bad
	// path, header, query parameter or request body.
	errBadRequest = errors.New("bad request")
	// errBodyTooLarge is returned when a request body exceeds
	// Config.MaxBodyBytes.
	errBodyTooLarge = errors.New("request body too large")
	// errNotReady is returned by /readyz when the store does not answer.
	errNotReady = errors.New("not ready")
	// errShuttingDown is why /readyz is not ready while the server drains.
	errShuttingDown = errors.New("shutting down (shutdown_drain): send requests to another instance")
	// errUnsupportedMediaType is a body of a type the route does not take
	// (a PATCH that is not a merge patch or a JSON Patch).
	errUnsupportedMediaType = errors.New("unsupported media type")
	// errPreconditionFailed and errRangeNotSatisfiable are a file
	// download's conditions that do not hold (serveFile).
	errPreconditionFailed  = errors.New("the download's precondition (If-Match or If-Unmodified-Since) does not hold")
	errRangeNotSatisfiable = errors.New("the download's Range lies outside the file (Content-Range gives its size)")
	// errConnect is a CONNECT host:port: a tunnel, which a proxy makes
	// and ctxd is not (notAPath).
	errConnect = errors.New("method CONNECT is not allowed: it asks for a tunnel to host:port, and ctxd is not a proxy")
	// errFolderDenied matches a maintenance operation (a defrag, a
	// snapshot) that may not write in a folder of the server's
	// (folderDenied).
	errFolderDenied = errors.New("folder not writable")
)

// errorMapping is one row of the error table.
type errorMapping struct {
	err    error
	status int
	code   string
}

// errorTable maps the API's own errors to an HTTP status and a JSON error
// code; the data model's errors (store errors) are in ctxd's table
// (ctxd.Classify), tried first. These two tables are the only places where
// errors become statuses; rows are tried in order with errors.Is.
var errorTable = [...]errorMapping{
	{errBodyTooLarge, http.StatusRequestEntityTooLarge, ctxd.CodeTooLarge},
	{errBadRequest, http.StatusBadRequest, ctxd.CodeBadRequest},
	{errUnsupportedMediaType, http.StatusUnsupportedMediaType, ctxd.CodeUnsupportedMediaType},
	{errPreconditionFailed, http.StatusPreconditionFailed, ctxd.CodePreconditionFailed},
	{errRangeNotSatisfiable, http.StatusRequestedRangeNotSatisfiable, ctxd.CodeRangeNotSatisfiable},
	{errConnect, http.StatusMethodNotAllowed, ctxd.CodeMethodNotAllowed},
	{errNotReady, http.StatusServiceUnavailable, ctxd.CodeUnavailable},
	{errPanic, http.StatusInternalServerError, ctxd.CodeInternal},
	{export.ErrUnknownFormat, http.StatusBadRequest, ctxd.CodeBadRequest},
	{export.ErrSpreadsheetSafe, http.StatusBadRequest, ctxd.CodeBadRequest},
	{export.ErrBadName, http.StatusBadRequest, ctxd.CodeBadRequest},
	{export.ErrBadDump, http.StatusBadRequest, ctxd.CodeBadRequest},
	{export.ErrNoDump, http.StatusNotFound, ctxd.CodeNotFound},
	{errNoDumpDir, http.StatusServiceUnavailable, ctxd.CodeUnavailable},
	{snapshots.ErrNotFound, http.StatusNotFound, ctxd.CodeNotFound},
	{snapshots.ErrInvalidID, http.StatusNotFound, ctxd.CodeNotFound},
	{errUnauthorized, http.StatusUnauthorized, ctxd.CodeUnauthorized},
	{errForbidden, http.StatusForbidden, ctxd.CodeForbidden},
	{errRateLimited, http.StatusTooManyRequests, ctxd.CodeRateLimited},
	// A full disk, or a user's disk quota spent, under a file written here
	// beside the store: a snapshot, a dump, a defrag's or a restore's copy
	// (the store's own writes fail it first: unavailable). Its text names
	// the file.
	{syscall.ENOSPC, http.StatusInsufficientStorage, ctxd.CodeInsufficientStorage},
	{syscall.EDQUOT, http.StatusInsufficientStorage, ctxd.CodeInsufficientStorage},
	// Such a file would have left less free than storage.reserve_bytes.
	{fsutil.ErrReserve, http.StatusInsufficientStorage, ctxd.CodeInsufficientStorage},
	// A defrag or a snapshot that may not write in its folder: an
	// operator's to fix, not a bug (it was 500 internal, its cause in the
	// log only).
	{errFolderDenied, http.StatusServiceUnavailable, ctxd.CodeUnavailable},
}

// echoErrorCodes are the codes of the errors Echo itself raises (its
// router's 404 and 405, its middleware's), by status; another 4xx gets a
// code derived from its status text (statusCode).
var echoErrorCodes = map[int]string{
	http.StatusNotFound:              ctxd.CodeNotFound,
	http.StatusMethodNotAllowed:      ctxd.CodeMethodNotAllowed,
	http.StatusRequestEntityTooLarge: ctxd.CodeTooLarge,
	http.StatusBadRequest:            ctxd.CodeBadRequest,
	http.StatusUnsupportedMediaType:  "unsupported_media_type",
	http.StatusServiceUnavailable:    ctxd.CodeUnavailable,
}

// errorCodes returns every code an error answer may carry, each once: the
// data model's table, this package's table and Echo's codes (the OpenAPI
// document's enum, openapi.go).
func errorCodes() []string {
	codes := ctxd.ErrorCodes()
	add := func(code string) {
		if !slices.Contains(codes, code) {
			codes = append(codes, code)
		}
	}
	for i := range errorTable {
		add(errorTable[i].code)
	}
	for _, code := range echoErrorCodes {
		add(code)
	}
	add(ctxd.CodeInternal)
	slices.Sort(codes)
	return codes
}

// classify returns the status and code of err from the two tables.
func classify(err error) (status int, code string, known bool) {
	if status, code, ok := ctxd.Classify(err); ok {
		return status, code, true
	}
	for i := range errorTable {
		if errors.Is(err, errorTable[i].err) {
			return errorTable[i].status, errorTable[i].code, true
		}
	}
	return http.StatusInternalServerError, ctxd.CodeInternal, false
}

// folderDeniedError is a maintenance operation that may not write in
// dir: a permission error (EACCES, EPERM) or a read-only file system
// (EROFS). Its message names the folder and the cause, nothing else of
// the error (a temporary file's name). It matches errFolderDenied.
type folderDeniedError struct {
	op, dir string
	cause   syscall.Errno
}

func (e *folderDeniedError) Error() string {
	return e.op + ": the server may not write in the folder " + e.dir + " (" + e.cause.Error() +
		"): give the server's user write access to it, on a writable file system"
}
func (e *folderDeniedError) Is(target error) bool { return target == errFolderDenied }

// folderDenied returns err, met by the maintenance operation op, as a
// folderDeniedError when it is a permission or read-only file system
// error on a file it names; other errors as they are.
func folderDenied(op string, err error) error {
	var errno syscall.Errno
	if !errors.As(err, &errno) || (errno != syscall.EACCES && errno != syscall.EPERM && errno != syscall.EROFS) {
		return err
	}
	var path string
	var pathErr *fs.PathError
	var linkErr *os.LinkError
	switch {
	case errors.As(err, &linkErr):
		path = linkErr.New
	case errors.As(err, &pathErr):
		path = pathErr.Path
	default:
		return err
	}
	return &folderDeniedError{op: op, dir: filepath.Dir(path), cause: errno}
}

// inputError is a bad request with a message for the client. It matches
// errBadRequest.
type inputError struct{ msg string }

func (e *inputError) Error() string        { return e.msg }
func (e *inputError) Is(target error) bool { return target == errBadRequest }

// tooLargeError is a request body over the limit. It matches errBodyTooLarge.
type tooLargeError struct{ limit int64 }

func (e *tooLargeError) Error() string {
	return "request body is larger than the limit of " + strconv.FormatInt(e.limit, 10) + " bytes"
}
func (e *tooLargeError) Is(target error) bool { return target == errBodyTooLarge }

// bodyTooLarge returns an error answered with 413 too_large.
func bodyTooLarge(limit int64) error { return &tooLargeError{limit: limit} }

// notReadyError is a failed readiness check. It matches errNotReady only,
// whatever the store said: readiness fails with 503 on any store error.
type notReadyError struct{ err error }

func (e *notReadyError) Error() string        { return "not ready: " + e.err.Error() }
func (e *notReadyError) Is(target error) bool { return target == errNotReady }

// badRequest returns an error answered with 400 bad_request and msg.
func badRequest(msg string) error { return &inputError{msg: msg} }

// mediaTypeError is a body of the wrong type; it matches errUnsupportedMediaType.
type mediaTypeError struct{ msg string }

func (e *mediaTypeError) Error() string        { return e.msg }
func (e *mediaTypeError) Is(target error) bool { return target == errUnsupportedMediaType }

// unsupportedMediaType returns an error answered with 415 and msg.
func unsupportedMediaType(msg string) error { return &mediaTypeError{msg: msg} }

// apiError is an error ready to be sent: status, code, message and the extra
// fields of conflict and compacted errors.
type apiError struct {
	status  int
	code    string
	message string

	conflict  *ctxd.ConflictError
	compacted *ctxd.CompactedError
	patch     *ctxd.PatchError
}

// toAPIError classifies err. Errors in no row of the table, and 5xx errors
// from Echo, are internal: their text is logged, not sent.
func toAPIError(err error, c echo.Context) (apiError, bool) {
	var he *echo.HTTPError
	if errors.As(err, &he) {
		return fromHTTPError(he, c)
	}
	status, code, known := classify(err)
	if !known {
		return apiError{status: status, code: code, message: "internal server error"}, false
	}
	ae := apiError{status: status, code: code, message: err.Error()}
	errors.As(err, &ae.conflict)
	errors.As(err, &ae.compacted)
	errors.As(err, &ae.patch)
	return ae, true
}

// fromHTTPError renders Echo's own errors (router 404/405, middleware errors)
// in our format.
func fromHTTPError(he *echo.HTTPError, c echo.Context) (apiError, bool) {
	req := c.Request()
	ae := apiError{status: he.Code}
	code, named := echoErrorCodes[he.Code]
	switch {
	case he.Code == http.StatusNotFound:
		ae.code = code
		ae.message = "no route for " + req.Method + " " + req.URL.EscapedPath()
		return ae, true
	case he.Code == http.StatusMethodNotAllowed:
		ae.code = code
		ae.message = "method " + req.Method + " is not allowed on " + req.URL.EscapedPath()
		if msg, ok := he.Message.(string); ok && msg != http.StatusText(he.Code) {
			ae.message += " (" + msg + ")" // a handler's, saying what to send instead
		}
		return ae, true
	case named:
		ae.code = code
	case he.Code >= 500 || he.Code < 400:
		return apiError{status: http.StatusInternalServerError, code: ctxd.CodeInternal, message: "internal server error"}, false
	default:
		ae.code = statusCode(he.Code)
	}
	if msg, ok := he.Message.(string); ok && msg != "" {
		ae.message = msg
	} else {
		ae.message = http.StatusText(he.Code)
	}
	return ae, true
}

// appendError appends {"error":{"code","message",...}}. A conflict adds "ns",
// "key" and "current_version"; a compacted read adds "compacted_revision";
// a patch that failed "op_index", "op" and "pointer" (the JSON pointer
// that failed).
func appendError(b []byte, ae *apiError) []byte {
	b = append(b, `{"error":{"code":`...)
	b = jsontext.AppendString(b, ae.code)
	b = append(b, `,"message":`...)
	b = jsontext.AppendString(b, ae.message)
	if ce := ae.conflict; ce != nil {
		b = append(b, `,"ns":`...)
		b = jsontext.AppendString(b, ce.Namespace)
		b = append(b, `,"key":`...)
		b = jsontext.AppendString(b, ce.Key)
		b = append(b, `,"current_version":`...)
		b = strconv.AppendUint(b, ce.Current, 10)
	}
	if ce := ae.compacted; ce != nil {
		b = append(b, `,"compacted_revision":`...)
		b = strconv.AppendUint(b, ce.Compacted, 10)
	}
	if pe := ae.patch; pe != nil {
		b = append(b, `,"op_index":`...)
		b = strconv.AppendInt(b, int64(pe.Index), 10)
		b = append(b, `,"op":`...)
		b = jsontext.AppendString(b, pe.Op)
		b = append(b, `,"pointer":`...)
		b = jsontext.AppendString(b, pe.Pointer)
	}
	return append(b, "}}"...)
}

// handleError is the Echo HTTPErrorHandler: every error, from a handler,
// middleware or the router, is answered in the JSON error format, with
// Framework0's "status":"error" beside it on the /ctx routes.
func (s *Server) handleError(err error, c echo.Context) {
	res := c.Response()
	ae, known := toAPIError(err, c)
	if !known {
		s.log.Error().Err(err).
			Str("request_id", res.Header().Get(echo.HeaderXRequestID)).
			Str("method", c.Request().Method).
			Str("path", c.Request().URL.EscapedPath()).
			Msg("request failed")
	}
	// The access log names what went wrong: the code, and for a 5xx
	// (etcd unreachable, an outcome unknown) the message too.
	c.Set(errorCodeKey, ae.code)
	if ae.status >= http.StatusInternalServerError {
		c.Set(errorMessageKey, ae.message)
		if errors.Is(err, errNotReady) || errors.Is(err, store.ErrFailed) {
			// Logged once where it happens (readinessLog, the failed
			// store's line): one error line per refused write or per
			// probe, until a restart, would bury that line.
			c.Set(loggedOnceKey, true)
		}
	}
	if res.Committed {
		return
	}
	compat := isCompat(c)
	if err := respond(c, ae.status, func(b []byte) []byte {
		b = appendError(b, &ae)
		if compat {
			b = append(b[:len(b)-1], `,"status":"error"}`...)
		}
		return b
	}); err != nil {
		s.log.Debug().Err(err).Msg("write error response")
	}
}

// The keys under which handleError leaves, for the access log, the code
// and (5xx) the message of the error it answered, and whether that 5xx
// is logged once elsewhere (its access line is then at info).
const (
	errorCodeKey    = "ctxd.error_code"
	errorMessageKey = "ctxd.error_message"
	loggedOnceKey   = "ctxd.logged_once"
)

// statusCode derives a snake_case error code from an HTTP status text, for
// the statuses the table does not name ("Too Many Requests" ->
// "too_many_requests").
func statusCode(status int) string {
	text := http.StatusText(status)
	if text == "" {
		return "error_" + strconv.Itoa(status)
	}
	var b strings.Builder
	for _, r := range strings.ToLower(text) {
		switch {
		case r >= 'a' && r <= 'z', r >= '0' && r <= '9':
			b.WriteRune(r)
		case r == ' ' || r == '-':
			b.WriteByte('_')
		}
	}
	return b.String()
}
