package testkit

import (
	"bufio"
	"io"
	"net"
	"net/http"
	"testing"

	"github.com/framework0/ctxd/internal/testkit/tcpproxy"
	"github.com/stretchr/testify/require"
)

// TCPProxy forwards the TCP connections it accepts to a target address:
// a network between a process and a server that a test can break
// (package tcpproxy: Blackhole, BlackholeFrom, Cut, Heal).
type TCPProxy = tcpproxy.Proxy

// StartTCPProxy starts a proxy to target on a loopback port; it closes
// when the test ends.
func StartTCPProxy(t testing.TB, target string) *TCPProxy {
	return StartLabellingTCPProxy(t, target, nil)
}

// StartLabellingTCPProxy is StartTCPProxy whose connections are labelled
// by label (tcpproxy.Serve), so that BlackholeFrom can hold the
// connections of one sender alone: one link of a partition between
// several peers that all dial the same address.
func StartLabellingTCPProxy(t testing.TB, target string, label func(io.Reader) string) *TCPProxy {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	p := tcpproxy.Serve(ln, target, label)
	t.Cleanup(p.Close)
	return p
}

// HTTPHeaderLabel is a labeller for StartLabellingTCPProxy: the value of
// header name in the connection's first HTTP request ("" when the
// connection does not begin with one). An HTTP client reuses a
// connection for requests of the same sender only, so the first names
// them all.
func HTTPHeaderLabel(name string) func(io.Reader) string {
	return func(r io.Reader) string {
		req, err := http.ReadRequest(bufio.NewReader(r))
		if err != nil {
			return ""
		}
		return req.Header.Get(name)
	}
}
