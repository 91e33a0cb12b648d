package testkit

import (
	"bufio"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

// NewRequest builds a request to url with body (none when "") and the
// headers hdr, given as name, value pairs.
func NewRequest(t testing.TB, method, url, body string, hdr ...string) *http.Request {
	t.Helper()
	var rd io.Reader
	if body != "" {
		rd = strings.NewReader(body)
	}
	req, err := http.NewRequest(method, url, rd)
	require.NoError(t, err)
	for i := 0; i+1 < len(hdr); i += 2 {
		req.Header.Set(hdr[i], hdr[i+1])
	}
	return req
}

// Send sends req with hc and returns the answer and its whole body (read
// and closed).
func Send(t testing.TB, hc *http.Client, req *http.Request) (*http.Response, []byte) {
	t.Helper()
	res, err := hc.Do(req)
	require.NoError(t, err)
	defer res.Body.Close()
	b, err := io.ReadAll(res.Body)
	require.NoError(t, err)
	return res, b
}

// FreeAddr returns a loopback address with a port that was free a moment
// ago: where nothing listens (a server that is down), or where a server
// can be restarted on a known address.
func FreeAddr(t testing.TB) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	addr := ln.Addr().String()
	require.NoError(t, ln.Close())
	return addr
}

// NoAnswerAddr is an address that takes no connection: a listener with
// no room in its queue, which the kernel fills with one connection that
// is never accepted. Later connection attempts get no answer (they wait
// out their timeout), as to a machine that is gone.
func NoAnswerAddr(t testing.TB) string {
	t.Helper()
	fd, err := syscall.Socket(syscall.AF_INET, syscall.SOCK_STREAM, 0)
	require.NoError(t, err)
	t.Cleanup(func() { _ = syscall.Close(fd) })
	require.NoError(t, syscall.Bind(fd, &syscall.SockaddrInet4{Addr: [4]byte{127, 0, 0, 1}}))
	require.NoError(t, syscall.Listen(fd, 0))
	sa, err := syscall.Getsockname(fd)
	require.NoError(t, err)
	addr := fmt.Sprintf("127.0.0.1:%d", sa.(*syscall.SockaddrInet4).Port)
	filler, err := net.Dial("tcp", addr)
	require.NoError(t, err)
	t.Cleanup(func() { _ = filler.Close() })
	// The queue is full once a further attempt times out.
	_, err = net.DialTimeout("tcp", addr, 100*time.Millisecond)
	require.Error(t, err, "the listener still takes connections")
	return addr
}

// SilentAfterRequest serves a listener that reads each request in full and
// never answers, as a hung or paused server does (its kernel still takes
// connections): it then closes the connection, or holds it until the test
// ends (hold). It returns the server's URL and the count of requests read.
func SilentAfterRequest(t testing.TB, hold bool) (string, *atomic.Int64) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	done := make(chan struct{})
	t.Cleanup(func() {
		close(done)
		ln.Close()
	})
	var requests atomic.Int64
	go func() {
		for {
			conn, err := ln.Accept()
			if err != nil {
				return
			}
			go func() {
				defer conn.Close()
				req, err := http.ReadRequest(bufio.NewReader(conn))
				if err != nil {
					return
				}
				_, _ = io.Copy(io.Discard, req.Body)
				requests.Add(1)
				if hold {
					<-done
				}
			}()
		}
	}()
	return "http://" + ln.Addr().String(), &requests
}
