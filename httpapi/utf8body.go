package httpapi

import (
	"errors"
	"io"
	"net/http"
	"unicode/utf8"

	"github.com/labstack/echo/v4"

	"github.com/framework0/ctxd"
)

// Request bodies are JSON text, which must be UTF-8 (RFC 8259), except a
// snapshot upload (a database file). encoding/json would quietly turn the
// invalid bytes of a string into U+FFFD, so that a key sent as "\xff" would
// be stored as "\uFFFD", a key the client never named: such a body is
// refused with 400 instead, before anything is decoded. So is a string
// that escapes a lone surrogate ("\ud800"), which encoding/json decodes
// the same way (ctxd.SurrogateCheck).

// errNotUTF8 is the read error of a body that is not valid UTF-8.
var errNotUTF8 = errors.New("the request body is not valid UTF-8 (JSON text must be UTF-8)")

// requireUTF8Body makes the request's body fail to read at its first
// byte that is not valid UTF-8.
func (s *Server) requireUTF8Body(c echo.Context) {
	req := c.Request()
	if req.Body == nil || req.Body == http.NoBody || c.Path() == uploadPath {
		return
	}
	size := int64(4 << 10)
	if req.ContentLength >= 0 {
		size = min(req.ContentLength+utf8.UTFMax, 32<<10)
	}
	req.Body = &utf8Reader{r: req.Body, size: int(size)}
}

// utf8Reader passes a stream through, and fails with errNotUTF8 at the
// first invalid sequence. A sequence cut by a read is held back until the
// next read completes it.
type utf8Reader struct {
	r       io.ReadCloser
	size    int
	buf     []byte // validated bytes; buf[off:] not returned yet
	off     int
	partial []byte // the start of a sequence cut by the last read
	err     error  // returned once buf is drained
	escapes ctxd.SurrogateCheck
}

func (u *utf8Reader) Read(p []byte) (int, error) {
	for u.off == len(u.buf) {
		if u.err != nil {
			return 0, u.err
		}
		u.fill()
	}
	n := copy(p, u.buf[u.off:])
	u.off += n
	return n, nil
}

// fill reads the next chunk and validates it.
func (u *utf8Reader) fill() {
	if u.buf == nil {
		u.buf = make([]byte, 0, max(u.size, 2*utf8.UTFMax))
	}
	chunk := u.buf[:cap(u.buf)]
	k := copy(chunk, u.partial)
	m, err := u.r.Read(chunk[k:])
	n := k + m
	end := n
	if err == nil {
		for i := n - 1; i >= 0 && i > n-utf8.UTFMax; i-- {
			if utf8.RuneStart(chunk[i]) {
				if !utf8.FullRune(chunk[i:n]) {
					end = i
				}
				break
			}
		}
	}
	u.buf, u.off = chunk[:0], 0
	if !utf8.Valid(chunk[:end]) {
		u.err = errNotUTF8
		return
	}
	if e := u.escapes.Write(chunk[:end]); e != nil {
		u.err = e
		return
	}
	u.partial = append(u.partial[:0], chunk[end:n]...)
	u.buf = chunk[:end]
	if err != nil {
		if len(u.partial) > 0 && errors.Is(err, io.EOF) {
			err = errNotUTF8
		} else if e := u.escapes.End(); e != nil && errors.Is(err, io.EOF) {
			err = e
		}
		u.err = err
	}
}

func (u *utf8Reader) Close() error { return u.r.Close() }
