package perf

import (
	"bufio"
	"bytes"
	"context"
	"crypto/tls"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http/httputil"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/framework0/ctxd"
)

// endpoint is where the load goes: a ctxd server's base URL.
type endpoint struct {
	base   string // scheme://host:port[/prefix], no trailing slash
	addr   string // host:port to dial
	host   string // Host header
	prefix string // path prefix, "" or "/something"
	tls    bool
	// tlsConfig, when set, verifies an https server (a private CA).
	tlsConfig *tls.Config
	// authorization, when set, is sent as the Authorization header.
	authorization string
}

// CheckURL reports whether raw is a server URL the suite can load
// (http or https, a host, no query): the command checks --target and
// --more-targets with it before anything runs.
func CheckURL(raw string) error {
	_, err := parseEndpoint(raw)
	return err
}

func parseEndpoint(raw string) (endpoint, error) {
	u, err := url.Parse(raw)
	if err != nil {
		return endpoint{}, fmt.Errorf("bad server URL %q: %w", raw, err)
	}
	if (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" || u.RawQuery != "" {
		return endpoint{}, fmt.Errorf("bad server URL %q: want http://host:port", raw)
	}
	addr := u.Host
	if u.Port() == "" {
		port := "80"
		if u.Scheme == "https" {
			port = "443"
		}
		addr = net.JoinHostPort(u.Hostname(), port)
	}
	prefix := u.EscapedPath()
	for len(prefix) > 0 && prefix[len(prefix)-1] == '/' {
		prefix = prefix[:len(prefix)-1]
	}
	return endpoint{
		base: u.Scheme + "://" + u.Host + prefix, addr: addr, host: u.Host,
		prefix: prefix, tls: u.Scheme == "https",
	}, nil
}

// httpConn is one keep-alive HTTP/1.1 connection that sends one request at
// a time and reads the whole answer into a reused buffer. It is what every
// load-generating client uses: cheaper than net/http's Transport (no
// goroutines per connection, no header maps on the way out), so that more
// of the machine is left to the server. It is not safe for concurrent use.
type httpConn struct {
	ep   endpoint
	c    net.Conn
	br   *bufio.Reader
	bw   *bufio.Writer
	body bytes.Buffer // the last answer's body
	// dialFailures counts the connection attempts that failed in a row.
	dialFailures int
	// ctx, when set, ends a connection attempt under way, and a request
	// under way: a stopped run (Ctrl-C) does not wait out dialTimeout on
	// a server that does not answer, nor ioTimeout on one that takes the
	// request and answers nothing (hung, or stopped with SIGSTOP).
	ctx context.Context
	// unwatch ends the watch of ctx on the connection (see connect).
	unwatch func() bool
}

// dialTimeout bounds a connection attempt; ioTimeout one request.
const (
	dialTimeout = 10 * time.Second
	ioTimeout   = 60 * time.Second
)

// After a connection attempt failed (refused: the server stopped, or is
// restarting), the next waits redialMin, then twice as long after each
// further failure, up to redialMax: a client whose every request fails
// at once no longer spins on the refusals (tens of thousands a second,
// each an error, all of a core the server shares). The first connection
// made ends the waits.
const (
	redialMin = time.Millisecond
	redialMax = 100 * time.Millisecond
)

// redialWait is the wait before a connection attempt after failures
// failed ones in a row.
func redialWait(failures int) time.Duration {
	if failures <= 0 {
		return 0
	}
	return min(redialMin<<min(failures-1, 20), redialMax)
}

func newHTTPConn(ep endpoint) *httpConn { return &httpConn{ep: ep} }

func (h *httpConn) connect() error {
	time.Sleep(redialWait(h.dialFailures))
	var c net.Conn
	var err error
	ctx := h.ctx
	if ctx == nil {
		ctx = context.Background()
	}
	d := &net.Dialer{Timeout: dialTimeout}
	if h.ep.tls {
		cfg := h.ep.tlsConfig
		if cfg == nil {
			cfg = &tls.Config{MinVersion: tls.VersionTLS12}
		}
		c, err = (&tls.Dialer{NetDialer: d, Config: cfg}).DialContext(ctx, "tcp", h.ep.addr)
	} else {
		c, err = d.DialContext(ctx, "tcp", h.ep.addr)
	}
	if err != nil {
		h.dialFailures++
		return fmt.Errorf("connect to %s: %w", h.ep.addr, err)
	}
	h.dialFailures = 0
	h.c = c
	if h.ctx != nil {
		// A deadline in the past ends the read or write under way.
		h.unwatch = context.AfterFunc(h.ctx, func() { _ = c.SetDeadline(time.Unix(1, 0)) })
	}
	if h.br == nil {
		h.br = bufio.NewReaderSize(c, 32<<10)
		h.bw = bufio.NewWriterSize(c, 8<<10)
	} else {
		h.br.Reset(c)
		h.bw.Reset(c)
	}
	return nil
}

// Close closes the connection; the next request opens a new one.
func (h *httpConn) Close() error {
	if h.c == nil {
		return nil
	}
	if h.unwatch != nil {
		h.unwatch()
		h.unwatch = nil
	}
	err := h.c.Close()
	h.c = nil
	return err
}

// header is one extra request header.
type header struct{ name, value string }

// do sends a request and reads the answer. path is escaped and starts with
// "/" (the endpoint's prefix is added). The body of the answer is in
// h.body until the next call. A failed request closes the connection.
func (h *httpConn) do(method, path string, body []byte, headers ...header) (status int, err error) {
	if h.c == nil {
		if err := h.connect(); err != nil {
			return 0, err
		}
	}
	status, err = h.roundTrip(method, path, body, headers)
	if err != nil {
		_ = h.Close()
		if h.ctx != nil && h.ctx.Err() != nil {
			err = h.ctx.Err() // the stop ended it, not the server
		}
		return 0, fmt.Errorf("%s %s: %w", method, path, err)
	}
	return status, nil
}

func (h *httpConn) roundTrip(method, path string, body []byte, headers []header) (int, error) {
	_ = h.c.SetDeadline(time.Now().Add(ioTimeout))
	if h.ctx != nil && h.ctx.Err() != nil {
		// Stopped before the deadline above replaced the stop's.
		return 0, h.ctx.Err()
	}
	w := h.bw
	w.WriteString(method)
	w.WriteByte(' ')
	w.WriteString(h.ep.prefix)
	w.WriteString(path)
	w.WriteString(" HTTP/1.1\r\nHost: ")
	w.WriteString(h.ep.host)
	w.WriteString("\r\nUser-Agent: ctxd-perf\r\nAccept: application/json\r\n")
	if h.ep.authorization != "" {
		w.WriteString("Authorization: ")
		w.WriteString(h.ep.authorization)
		w.WriteString("\r\n")
	}
	if body != nil {
		w.WriteString("Content-Type: application/json\r\nContent-Length: ")
		var n [20]byte
		w.Write(strconv.AppendInt(n[:0], int64(len(body)), 10))
		w.WriteString("\r\n")
	}
	for _, hd := range headers {
		w.WriteString(hd.name)
		w.WriteString(": ")
		w.WriteString(hd.value)
		w.WriteString("\r\n")
	}
	w.WriteString("\r\n")
	w.Write(body)
	if err := w.Flush(); err != nil {
		return 0, err
	}
	return h.readResponse(method == "HEAD")
}

var errBadResponse = errors.New("malformed HTTP response")

// readResponse reads a status line, headers and a body delimited by
// Content-Length, chunked encoding, or the end of the connection.
func (h *httpConn) readResponse(head bool) (int, error) {
	line, err := h.readLine()
	if err != nil {
		return 0, err
	}
	// "HTTP/1.1 200 OK"
	if len(line) < 12 || !bytes.HasPrefix(line, []byte("HTTP/1.")) || line[8] != ' ' {
		return 0, fmt.Errorf("%w: status line %q", errBadResponse, line)
	}
	status, err := strconv.Atoi(string(line[9:12]))
	if err != nil {
		return 0, fmt.Errorf("%w: status line %q", errBadResponse, line)
	}
	length := int64(-1)
	chunked, closing := false, false
	err = h.readFields(func(line []byte) error {
		name, value, ok := bytes.Cut(line, []byte(":"))
		if !ok {
			return fmt.Errorf("%w: header %q", errBadResponse, line)
		}
		value = bytes.TrimSpace(value)
		switch {
		case asciiEqualFold(name, "Content-Length"):
			var err error
			if length, err = strconv.ParseInt(string(value), 10, 64); err != nil || length < 0 {
				return fmt.Errorf("%w: Content-Length %q", errBadResponse, value)
			}
		case asciiEqualFold(name, "Transfer-Encoding"):
			chunked = asciiEqualFold(value, "chunked")
		case asciiEqualFold(name, "Connection"):
			closing = asciiEqualFold(value, "close")
		}
		return nil
	})
	if err != nil {
		return 0, err
	}
	h.body.Reset()
	switch {
	case head || status == 204 || status == 304 || (status >= 100 && status < 200):
	case chunked:
		if _, err := h.body.ReadFrom(httputil.NewChunkedReader(h.br)); err != nil {
			return 0, fmt.Errorf("read chunked body: %w", err)
		}
		// Trailers, if any, end with an empty line.
		if err := h.readFields(nil); err != nil {
			return 0, err
		}
	case length >= 0:
		if _, err := io.CopyN(&h.body, h.br, length); err != nil {
			return 0, fmt.Errorf("read body: %w", err)
		}
	default:
		if _, err := h.body.ReadFrom(h.br); err != nil {
			return 0, fmt.Errorf("read body: %w", err)
		}
		closing = true
	}
	if closing {
		_ = h.Close()
	}
	return status, nil
}

// readLine reads one CRLF-terminated line, without the CRLF.
// readFields reads header (or trailer) lines up to the empty line that
// ends them, and passes each to fn; a nil fn skips them.
func (h *httpConn) readFields(fn func(line []byte) error) error {
	for {
		line, err := h.readLine()
		if err != nil {
			return err
		}
		if len(line) == 0 {
			return nil
		}
		if fn != nil {
			if err := fn(line); err != nil {
				return err
			}
		}
	}
}

func (h *httpConn) readLine() ([]byte, error) {
	line, err := h.br.ReadSlice('\n')
	if err != nil {
		if errors.Is(err, bufio.ErrBufferFull) {
			return nil, fmt.Errorf("%w: header line too long", errBadResponse)
		}
		return nil, err
	}
	line = line[:len(line)-1]
	if n := len(line); n > 0 && line[n-1] == '\r' {
		line = line[:n-1]
	}
	return line, nil
}

func asciiEqualFold(b []byte, s string) bool {
	if len(b) != len(s) {
		return false
	}
	for i := range len(b) {
		x, y := b[i], s[i]
		if 'A' <= x && x <= 'Z' {
			x += 'a' - 'A'
		}
		if 'A' <= y && y <= 'Z' {
			y += 'a' - 'A'
		}
		if x != y {
			return false
		}
	}
	return true
}

// statusError is an answer with an unexpected status.
type statusError struct {
	method, path string
	status       int
	body         string
	// notCtxd: the body is not ctxd's JSON error (another server at
	// that address, a proxy's page): body is an excerpt of it.
	notCtxd bool
}

func (e *statusError) Error() string {
	if e.notCtxd {
		return fmt.Sprintf("%s %s: status %d, not a ctxd answer: %s", e.method, e.path, e.status, e.body)
	}
	return fmt.Sprintf("%s %s: status %d: %s", e.method, e.path, e.status, e.body)
}

// newStatusError is the error of an answer with an unexpected status and
// body b. ctxd's JSON error is kept (its first 300 bytes); another
// server's page (a --target that is not ctxd) is said to be one, on one
// line, in a short excerpt: it was printed whole, up to 300 bytes of
// HTML over a dozen lines.
func newStatusError(method, path string, status int, b string) *statusError {
	var answer struct {
		Error *struct {
			Code string `json:"code"`
		} `json:"error"`
	}
	if json.Unmarshal([]byte(b), &answer) == nil && answer.Error != nil && answer.Error.Code != "" {
		return &statusError{method: method, path: path, status: status, body: ctxd.ClipText(b, 300)}
	}
	return &statusError{method: method, path: path, status: status, body: ctxd.ClipText(strings.Join(strings.Fields(b), " "), 120), notCtxd: true}
}

// expect sends a request and fails unless the status is want.
func (h *httpConn) expect(want int, method, path string, body []byte, headers ...header) error {
	status, err := h.do(method, path, body, headers...)
	if err != nil {
		return err
	}
	if status != want {
		return newStatusError(method, path, status, h.body.String())
	}
	return nil
}

// jsonUint finds `"name":N` in a JSON object and returns N. It is for the
// hot loops, which read one or two numbers from an answer they know the
// shape of; it finds the first occurrence at any depth.
func jsonUint(b []byte, name string) (uint64, bool) {
	var pat [64]byte
	p := append(append(append(pat[:0], '"'), name...), '"', ':')
	i := bytes.Index(b, p)
	if i < 0 {
		return 0, false
	}
	rest := b[i+len(p):]
	for len(rest) > 0 && rest[0] == ' ' {
		rest = rest[1:]
	}
	var n uint64
	digits := 0
	for _, c := range rest {
		if c < '0' || c > '9' {
			break
		}
		n = n*10 + uint64(c-'0')
		digits++
	}
	return n, digits > 0
}
