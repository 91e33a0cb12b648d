// Package tcpproxy is the test kit's TCP proxy: a network between a
// process and a server that a test can break. Tests start one with
// testkit.StartTCPProxy. It is a package of its own so that the embedded
// etcd's kit (etcdkit) puts one in front of its etcd too: etcdkit cannot
// import testkit, which imports the packages whose internal tests use
// etcdkit.
package tcpproxy

import (
	"bytes"
	"io"
	"net"
	"sync"
)

// Proxy forwards the TCP connections it accepts to a target address:
// a network between a process and a server that a test can break.
// Blackhole stops forwarding in both directions without closing anything
// (what it reads is held, as the network holds the packets it will
// retransmit: a partition); Cut closes every connection and refuses new
// ones (a reset link); Heal lets everything through again.
//
// A proxy given a labeller tells its connections apart by their first
// bytes, so that BlackholeFrom can hold the connections of one sender
// alone: one link of a partition between several peers that all dial the
// same address.
type Proxy struct {
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

// Serve forwards the connections ln accepts to target, until Close
// (which closes ln). Each is labelled by label, which reads the start of
// what the connecting side sends (those bytes are forwarded all the
// same); label must return once it has read what it needs, and a
// connection it cannot name gets "". label nil: every label is "".
func Serve(ln net.Listener, target string, label func(io.Reader) string) *Proxy {
	p := &Proxy{ln: ln, target: target, label: label, changed: make(chan struct{}), from: map[string]bool{}}
	p.wg.Go(p.accept)
	return p
}

// Addr is the proxy's host:port.
func (p *Proxy) Addr() string { return p.ln.Addr().String() }

func (p *Proxy) accept() {
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
		if p.cut { // Cut (or Close) while this one was dialled
			p.mu.Unlock()
			in.Close()
			out.Close()
			continue
		}
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
func (p *Proxy) pipe(dst net.Conn, src io.Reader, label string) {
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
func (p *Proxy) waitOpen(label string) {
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
func (p *Proxy) changeLocked() {
	close(p.changed)
	p.changed = make(chan struct{})
}

// Blackhole stops forwarding; connections stay open.
func (p *Proxy) Blackhole() {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.blackholed = true
	p.changeLocked()
}

// BlackholeFrom stops forwarding the connections labelled label (both
// ways), the present ones and those to come; others go on.
func (p *Proxy) BlackholeFrom(label string) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.from[label] = true
	p.changeLocked()
}

// Cut closes every connection and refuses new ones until Heal.
func (p *Proxy) Cut() {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.cut = true
	for _, c := range p.conns {
		c.Close()
	}
	p.conns = nil
}

// Heal forwards again every connection, and accepts new ones.
func (p *Proxy) Heal() {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.cut, p.blackholed = false, false
	clear(p.from)
	p.changeLocked()
}

// Close stops accepting (ln is closed: new connections are refused),
// closes every connection and returns once none is forwarded any more.
func (p *Proxy) Close() {
	p.Heal()
	p.ln.Close()
	p.Cut()
	p.wg.Wait()
}
