package server

import (
	"net"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/rs/zerolog"
)

// Connections are capped below the process's open-file limit: every
// connection holds a file descriptor, and one client that opened
// thousands of idle keep-alive connections (no token needed) took them
// all, so that the write-ahead log could not open its next segment and
// the store refused writes until a restart. At the cap, Accept waits for
// a connection to close; new clients wait in the kernel's listen queue.

// connectionLimit is http.max_connections, or when 0, three quarters of
// the open-file limit (Go raises the soft limit to the hard one at start),
// at least 64.
func connectionLimit(configured int) int {
	if configured > 0 {
		return configured
	}
	var lim syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_NOFILE, &lim); err != nil || lim.Cur > 1<<30 {
		return 1 << 20
	}
	return max(64, int(lim.Cur/4*3))
}

// limitListener is a net.Listener that holds at most cap connections open
// at once (golang.org/x/net/netutil's LimitListener, with a log line when
// the cap is reached: an operator needs to know why clients wait). It
// records the connections it accepted in conns, for a graceful stop to
// close those that never sent a byte (spareconns.go).
type limitListener struct {
	net.Listener
	conns *openConns
	slots chan struct{}
	// done is closed by Close: an Accept waiting for a slot returns, so
	// that a shutdown at the cap does not wait for idle connections to
	// time out (http.Server waits for Serve to return before it closes
	// them).
	done      chan struct{}
	closeOnce sync.Once
	log       zerolog.Logger
	// warned is when the last "connection limit reached" was logged:
	// at most one line a minute.
	mu     sync.Mutex
	warned time.Time
}

func newLimitListener(ln net.Listener, n int, conns *openConns, log zerolog.Logger) *limitListener {
	return &limitListener{Listener: ln, conns: conns, slots: make(chan struct{}, n), done: make(chan struct{}), log: log}
}

func (l *limitListener) Accept() (net.Conn, error) {
	select {
	case l.slots <- struct{}{}:
	default:
		l.warnFull()
		select {
		case l.slots <- struct{}{}:
		case <-l.done:
			return nil, net.ErrClosed
		}
	}
	c, err := l.Listener.Accept()
	if err != nil {
		<-l.slots
		return nil, err
	}
	lc := &limitedConn{Conn: c, l: l}
	if !l.conns.add(lc) {
		_ = lc.Close() // accepted as the server stops: it has sent nothing yet
		return nil, net.ErrClosed
	}
	return lc, nil
}

// Close closes the listener and ends an Accept waiting for a slot.
func (l *limitListener) Close() error {
	err := l.Listener.Close()
	l.closeOnce.Do(func() { close(l.done) })
	return err
}

func (l *limitListener) warnFull() {
	l.mu.Lock()
	defer l.mu.Unlock()
	if time.Since(l.warned) < time.Minute {
		return
	}
	l.warned = time.Now()
	l.log.Warn().Int("max_connections", cap(l.slots)).
		Msg("connection limit reached: new clients wait until a connection closes (http.max_connections)")
}

// limitedConn gives its slot back, and leaves the open connections, once,
// on its first Close (a WebSocket's connection is closed by the hub after
// the HTTP server hijacked it).
type limitedConn struct {
	net.Conn
	l    *limitListener
	once sync.Once
	// used is set once a Read returned bytes: the client sent something
	// (over TLS, its handshake counts), so a graceful stop leaves the
	// connection to net/http (openConns.closeUnused).
	used atomic.Bool
}

func (c *limitedConn) Read(p []byte) (int, error) {
	n, err := c.Conn.Read(p)
	if n > 0 {
		c.used.Store(true)
	}
	return n, err
}

// CloseWrite half-closes a TCP connection, as net/http does after it
// refused a request body (the wrapper would hide it).
func (c *limitedConn) CloseWrite() error {
	if cw, ok := c.Conn.(interface{ CloseWrite() error }); ok {
		return cw.CloseWrite()
	}
	return nil
}

func (c *limitedConn) Close() error {
	err := c.Conn.Close()
	c.once.Do(func() {
		c.l.conns.remove(c)
		<-c.l.slots
	})
	return err
}
