package httpapi

import (
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"net/http"
	"runtime/debug"
	"strconv"
	"strings"
	"sync/atomic"
	"time"

	"github.com/labstack/echo/v4"

	"github.com/framework0/ctxd"
	"github.com/framework0/ctxd/auth"
)

// errPanic is what a recovered panic answers (500 internal); the panic
// itself is logged with its stack.
var errPanic = errors.New("internal server error")

// maxRequestIDLen bounds a client-supplied X-Request-Id.
const maxRequestIDLen = 128

// requestIDs generates request ids: a random per-process prefix and a
// sequence number, unique without a random read per request.
type requestIDs struct {
	prefix string
	seq    atomic.Uint64
}

func newRequestIDs() *requestIDs {
	var b [6]byte
	_, _ = rand.Read(b[:]) // crypto/rand.Read never fails on supported platforms.
	return &requestIDs{prefix: hex.EncodeToString(b[:]) + "-"}
}

func (g *requestIDs) next() string {
	var b [40]byte
	id := append(b[:0], g.prefix...)
	id = strconv.AppendUint(id, g.seq.Add(1), 10)
	return string(id)
}

// validRequestID accepts 1..maxRequestIDLen printable ASCII characters, so a
// client id can go into logs and headers as is.
func validRequestID(id string) bool {
	if id == "" || len(id) > maxRequestIDLen {
		return false
	}
	for i := 0; i < len(id); i++ {
		if id[i] <= ' ' || id[i] > '~' {
			return false
		}
	}
	return true
}

// middleware is every request's path around the handler, outermost first:
// request id, access log, the gate (CORS, access control, rate limit),
// panic recovery, body limit. It is one Echo
// middleware rather than four because Echo builds the middleware chain anew
// for each request: one closure instead of four.
func (s *Server) middleware(next echo.HandlerFunc) echo.HandlerFunc {
	return func(c echo.Context) error {
		start := time.Now()
		id := s.setRequestID(c)
		var chunked *countingBody
		if req := c.Request(); req.ContentLength < 0 && req.Body != nil && req.Body != http.NoBody {
			// A body of unknown length (chunked): the access log counts
			// what was read of it.
			chunked = &countingBody{ReadCloser: req.Body}
			req.Body = chunked
		}
		if s.draining.Load() && c.Request().Header.Get("Upgrade") == "" {
			// Drain: the answer closes its connection and tells the
			// client to go to another instance (a WebSocket upgrade
			// stays until the hub closes it).
			h := c.Response().Header()
			h.Set("Connection", "close")
			h.Set(ctxd.HeaderDraining, "1")
		}
		if done, err := s.gate.check(c); done {
			// Answered or refused before the handler (gate.go).
			if err != nil {
				c.Error(err)
			}
		} else if err := notAPath(c); err != nil {
			c.Error(err)
		} else if err := s.callSafely(s.keyPathMethods(c, next), c); err != nil {
			// Render the error here, so that the status logged is the one sent.
			c.Error(err)
		}
		took := time.Since(start)
		sendWhole(c)
		s.logAccess(c, id, took, chunked)
		if s.metrics != nil {
			s.metrics.observe(c, took)
		}
		return nil
	}
}

// notAPath refuses a request whose target is not a path, which no route
// serves (the router answered 404 "no route for CONNECT " with an empty
// path): CONNECT host:port asks for a tunnel, and ctxd is not a proxy (405,
// with an empty Allow: that target takes no method); the asterisk of
// OPTIONS * names the server as a whole, not a resource (400). net/http
// answered OPTIONS * itself, with an empty 200, until the server set
// http.Server.DisableGeneralOptionsHandler (server.go).
func notAPath(c echo.Context) error {
	req := c.Request()
	switch {
	case req.Method == http.MethodConnect && !strings.HasPrefix(req.URL.Path, "/"):
		c.Response().Header()[echo.HeaderAllow] = []string{""}
		return errConnect
	case req.URL.Path == "*":
		return badRequest("the request target * names no resource: send " + req.Method + " to a path (OPTIONS /v1/status answers its methods in Allow)")
	}
	return nil
}

// sendWhole sends an answer whose body is complete (as long as its
// Content-Length) to the client now, rather than after the access log and
// the metrics: they then run while the client reads, off the request's
// latency. Answers of unknown length are left to net/http, which would
// otherwise turn a flushed answer into chunked encoding.
func sendWhole(c echo.Context) {
	res := c.Response()
	if !res.Committed {
		return
	}
	cl := res.Header()["Content-Length"]
	if len(cl) != 1 {
		return
	}
	if n, err := strconv.ParseInt(cl[0], 10, 64); err != nil || n != res.Size {
		return
	}
	// An error here is the connection's: net/http sees it again when it
	// finishes the request.
	_ = http.NewResponseController(res.Writer).Flush()
}

// setRequestID keeps the client's X-Request-Id (or makes one), echoes it
// in the response and returns it.
func (s *Server) setRequestID(c echo.Context) string {
	id := c.Request().Header.Get(echo.HeaderXRequestID)
	if !validRequestID(id) {
		id = s.ids.next()
	}
	c.Response().Header()[echo.HeaderXRequestID] = []string{id}
	return id
}

// countingBody counts the bytes read of a request body.
type countingBody struct {
	io.ReadCloser
	n int64
}

func (b *countingBody) Read(p []byte) (int, error) {
	n, err := b.ReadCloser.Read(p)
	b.n += int64(n)
	return n, err
}

// logAccess writes one line per request: method, path, status, latency,
// request id, bytes in (the Content-Length, or what was read of a body of
// unknown length: chunked) and out, and the name of the token it passed
// access control with. 5xx answers are logged at error level, but those
// whose cause is logged once elsewhere (loggedOnceKey: a failed store, a
// server not ready) at info.
func (s *Server) logAccess(c echo.Context, id string, took time.Duration, chunked *countingBody) {
	res := c.Response()
	ev := s.log.Info()
	if res.Status >= http.StatusInternalServerError && c.Get(loggedOnceKey) == nil {
		ev = s.log.Error()
	}
	if ev == nil {
		return
	}
	req := c.Request()
	bytesIn := max(req.ContentLength, 0)
	if chunked != nil {
		bytesIn = chunked.n
	}
	var ms [24]byte
	ev.Str("method", req.Method).
		Str("path", loggedPath(req)).
		Int("status", res.Status).
		RawJSON("latency_ms", appendMillis(ms[:0], took)).
		Str("request_id", id).
		Int64("bytes_in", bytesIn).
		Int64("bytes", res.Size).
		Str("remote", req.RemoteAddr)
	if t := auth.FromContext(req.Context()); t != nil {
		ev.Str("token", t.Name)
	} else if t := auth.Noted(req.Context()); t != nil {
		ev.Str("token", t.Name)
	}
	if code, ok := c.Get(errorCodeKey).(string); ok {
		ev.Str("error", code)
	}
	if msg, ok := c.Get(errorMessageKey).(string); ok {
		ev.Str("error_message", msg)
	}
	ev.Msg("request")
}

// loggedPath is the request's path as the client sent it: the request
// target up to its query, which is what URL.EscapedPath gives for any
// path a client can send in origin form, without its check and unescape
// (an allocation and about a third of the access log line's CPU when the
// path holds an escape such as %2F). Other forms (a proxy's absolute URL)
// go through EscapedPath.
func loggedPath(req *http.Request) string {
	if p, _, _ := strings.Cut(req.RequestURI, "?"); strings.HasPrefix(p, "/") {
		return p
	}
	return req.URL.EscapedPath()
}

// appendMillis appends d in milliseconds with microsecond precision, as
// zerolog's Float64 writes float64(d.Microseconds())/1000 (12, 0.5,
// 1.234; the same for any d below 31 years), without the cost of
// formatting a float.
func appendMillis(b []byte, d time.Duration) []byte {
	us := d.Microseconds()
	if us < 0 {
		b = append(b, '-')
		us = -us
	}
	b = strconv.AppendInt(b, us/1000, 10)
	frac := us % 1000
	if frac == 0 {
		return b
	}
	digits := [4]byte{'.', byte('0' + frac/100), byte('0' + frac/10%10), byte('0' + frac%10)}
	n := len(digits)
	for digits[n-1] == '0' {
		n--
	}
	return append(b, digits[:n]...)
}

// callSafely applies the body limit and calls next, turning a panic into
// errPanic (500) after logging it with its stack. http.ErrAbortHandler is
// re-raised: it is how a handler asks net/http to abort the response.
func (s *Server) callSafely(next echo.HandlerFunc, c echo.Context) (err error) {
	defer func() {
		r := recover()
		if r == nil {
			return
		}
		if r == http.ErrAbortHandler { //nolint:errorlint // sentinel panic value, compared as net/http does
			panic(r)
		}
		req := c.Request()
		s.log.Error().
			Str("panic", fmt.Sprint(r)).
			Str("stack", string(debug.Stack())).
			Str("request_id", c.Response().Header().Get(echo.HeaderXRequestID)).
			Str("method", req.Method).
			Str("path", req.URL.EscapedPath()).
			Msg("panic in handler")
		err = errPanic
	}()
	if err := s.limitBody(c); err != nil {
		return err
	}
	if err := refuseEncodedBody(c.Request()); err != nil {
		return err
	}
	if err := refuseUnknownQuery(c); err != nil {
		return err
	}
	if err := refuseBadWho(c); err != nil {
		return err
	}
	return next(c)
}

// refuseEncodedBody refuses a body with a Content-Encoding (but identity):
// it would be taken as it came, a gzip body refused as "not valid UTF-8",
// a br one whose bytes happened to be JSON stored as sent. A request
// without a body is left alone, whatever its headers.
func refuseEncodedBody(req *http.Request) error {
	enc := req.Header.Get(echo.HeaderContentEncoding)
	if enc == "" || strings.EqualFold(enc, "identity") || req.Body == nil || req.Body == http.NoBody {
		return nil
	}
	return &mediaTypeError{msg: "Content-Encoding " + strconv.Quote(enc) + " is not supported: send the body uncompressed"}
}

// limitBody refuses a body announced larger than Config.MaxBodyBytes and caps
// the others while they are read. A Socket.IO polling POST is left to the
// Engine.IO server, which bounds it at its own maxPayload (twice
// websocket.max_message_bytes, advertised in its handshake): a packet
// between the two limits gets too_large from it, as over WebSocket, and
// the session goes on, where a 413 from here left the client no answer.
func (s *Server) limitBody(c echo.Context) error {
	req := c.Request()
	if req.Method == http.MethodPost && c.Path() == "/socket.io/" {
		return nil
	}
	max := s.cfg.MaxBodyBytes
	if req.Method == http.MethodPost && req.URL.Path == uploadPath {
		// A snapshot upload is a database file, streamed to disk.
		max = s.cfg.MaxUploadBytes
		if max <= 0 {
			max = DefaultMaxUploadBytes
		}
	}
	if req.ContentLength > max {
		return bodyTooLarge(max)
	}
	if req.Body != nil && req.Body != http.NoBody {
		// The writer given is net/http's own, so that it closes the
		// connection instead of draining an oversized body.
		req.Body = http.MaxBytesReader(c.Response().Writer, req.Body, max)
	}
	return nil
}
