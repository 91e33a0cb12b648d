package socketio

import (
	"bufio"
	"net"
	"net/http"
	"sync"
	"sync/atomic"
)

// maxHeldBytes bounds what a batchConn holds before it writes anyway.
const maxHeldBytes = 256 << 10

// batchConn is a WebSocket's network connection whose writes can be held
// and sent together. Engine.IO sends each packet as a WebSocket message of
// its own, so a client behind by n changes costs n frames; the transport's
// writer holds the connection while it writes every packet waiting
// (writeLoop), and the frames leave in one write system call instead of
// one each: on loopback and small machines that call, not the framing, is
// what a frame costs (the /v1/watch hub batches changes into frames for
// the same reason). Writes outside a hold (the handshake, the upgrade's
// probe, gorilla's answers to a ping or a close from the reader) go
// straight through.
type batchConn struct {
	net.Conn
	mu     sync.Mutex
	held   bool
	buf    []byte
	writes *atomic.Uint64 // the server's count of write system calls
}

func (b *batchConn) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if !b.held {
		return b.writeLocked(p)
	}
	if len(b.buf)+len(p) < maxHeldBytes {
		b.buf = append(b.buf, p...)
		return len(p), nil
	}
	// Full: what is held goes, then p, straight (not copied: a snapshot
	// packet may be tens of megabytes).
	if err := b.flushLocked(); err != nil {
		return 0, err
	}
	return b.writeLocked(p)
}

func (b *batchConn) writeLocked(p []byte) (int, error) {
	b.writes.Add(1)
	return b.Conn.Write(p)
}

func (b *batchConn) flushLocked() error {
	if len(b.buf) == 0 {
		return nil
	}
	_, err := b.writeLocked(b.buf)
	b.buf = b.buf[:0]
	return err
}

// heldBuffers are the buffers of the holds in progress: a thousand idle
// clients keep none.
var heldBuffers = sync.Pool{New: func() any { return new([]byte) }}

// hold starts holding writes.
func (b *batchConn) hold() {
	b.mu.Lock()
	b.held = true
	b.buf = (*heldBuffers.Get().(*[]byte))[:0]
	b.mu.Unlock()
}

// release writes what was held, at once, and stops holding. A failed
// write is the connection's: the caller closes it.
func (b *batchConn) release() error {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.held = false
	err := b.flushLocked()
	if buf := b.buf; cap(buf) <= maxHeldBytes { // a burst's larger buffer is not kept
		heldBuffers.Put(&buf)
	}
	b.buf = nil
	return err
}

// batchWriter hands the WebSocket upgrader a batchConn for the connection
// it takes over.
type batchWriter struct {
	http.ResponseWriter
	writes *atomic.Uint64
}

func (w batchWriter) Hijack() (net.Conn, *bufio.ReadWriter, error) {
	c, brw, err := http.NewResponseController(w.ResponseWriter).Hijack()
	if err != nil {
		return nil, nil, err
	}
	return &batchConn{Conn: c, writes: w.writes}, brw, nil
}
