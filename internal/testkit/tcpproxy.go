package testkit

import (
	"bufio"
	"bytes"
	"io"
	"net"
	"net/http"
	"sync"
	"testing"

	"github.com/stretchr/testify/require"
)

// TCPProxy forwards the TCP connections it accepts to a target address:
// a network between a process and a server that a test can break.
// Blackhole stops forwarding in both directions without closing anything
// (what it reads is held, as the network holds the packets it will
// retransmit: a partition); Cut closes every connection and refuses new
// ones (a reset link); Heal lets everything through again.
//
// A proxy started with a labeller (StartLabellingTCPProxy) tells its
// connections apart by their first bytes, so that BlackholeFrom can hold
// the connections of one sender alone: one link of a partition between
// several peers that all dial the same address.
type TCPProxy struct {
	ln     net.Listener
	target string
	label  func(io.Reader) string // nil: every connection's label is ""

	mu         sync.Mutex
	changed    chan struct{} // closed and replaced when what is held changes
	blackholed bool
	from       map[string]bool // labels whose connections are held
	cut        bool
	conns      []net.Conn
	wg         sync.WaitGroup
}

// StartTCPProxy starts a proxy to target on a loopback port; it closes
// when the test ends.
func StartTCPProxy(t testing.TB, target string) *TCPProxy {
	return StartLabellingTCPProxy(t, target, nil)
}

// StartLabellingTCPProxy is StartTCPProxy whose connections are labelled
// by label, which reads the start of what the connecting side sends
// (those bytes are forwarded all the same). label must return once it
// has read what it needs; a connection it cannot name gets "".
func StartLabellingTCPProxy(t testing.TB, target string, label func(io.Reader) string) *TCPProxy {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	p := &TCPProxy{ln: ln, target: target, label: label, changed: make(chan struct{}), from: map[string]bool{}}
	p.wg.Go(p.accept)
	t.Cleanup(p.close)
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

// Addr is the proxy's host:port.
func (p *TCPProxy) Addr() string { return p.ln.Addr().String() }

func (p *TCPProxy) accept() {
	for {
		in, err := p.ln.Accept()
		if err != nil {
			return
		}
		p.mu.Lock()
		cut := p.cut
		p.mu.Unlock()
		if cut {
			in.Close()
			continue
		}
		out, err := net.Dial("tcp", p.target)
		if err != nil {
			in.Close()
			continue
		}
		p.mu.Lock()
		p.conns = append(p.conns, in, out)
		p.mu.Unlock()
		p.wg.Go(func() {
			label, src := "", io.Reader(in)
			if p.label != nil {
				// What the labeller reads is kept and sent first.
				var head bytes.Buffer
				label = p.label(io.TeeReader(in, &head))
				src = io.MultiReader(&head, in)
			}
			p.wg.Go(func() { p.pipe(in, out, label) })
			p.pipe(out, src, label)
		})
	}
}

// pipe copies from src to dst, each chunk only while the proxy holds no
// connection labelled label.
func (p *TCPProxy) pipe(dst net.Conn, src io.Reader, label string) {
	defer dst.Close()
	buf := make([]byte, 32<<10)
	for {
		n, err := src.Read(buf)
		if n > 0 {
			p.waitOpen(label)
			if _, werr := dst.Write(buf[:n]); werr != nil {
				return
			}
		}
		if err != nil {
			return
		}
	}
}

// waitOpen returns once connections labelled label may forward.
func (p *TCPProxy) waitOpen(label string) {
	for {
		p.mu.Lock()
		held, changed := p.blackholed || p.from[label], p.changed
		p.mu.Unlock()
		if !held {
			return
		}
		<-changed
	}
}

// changeLocked wakes every pipe waiting in waitOpen to look again.
func (p *TCPProxy) changeLocked() {
	close(p.changed)
	p.changed = make(chan struct{})
}

// Blackhole stops forwarding; connections stay open.
func (p *TCPProxy) Blackhole() {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.blackholed = true
	p.changeLocked()
}

// BlackholeFrom stops forwarding the connections labelled label (both
// ways), the present ones and those to come; others go on.
func (p *TCPProxy) BlackholeFrom(label string) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.from[label] = true
	p.changeLocked()
}

// Cut closes every connection and refuses new ones until Heal.
func (p *TCPProxy) Cut() {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.cut = true
	for _, c := range p.conns {
		c.Close()
	}
	p.conns = nil
}

// Heal forwards again every connection, and accepts new ones.
func (p *TCPProxy) Heal() {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.cut, p.blackholed = false, false
	clear(p.from)
	p.changeLocked()
}

func (p *TCPProxy) close() {
	p.Heal()
	p.ln.Close()
	p.Cut()
	p.wg.Wait()
}
