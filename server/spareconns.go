package server

import "sync"

// A browser opens connections before it needs them: Chromium, with the
// dashboard open, keeps a spare one that carries no request until the page
// makes one. net/http's Shutdown cannot tell such a connection from one
// whose first request is on its way, and takes it as busy until it is 5 s
// old: with a browser around, each graceful stop took 5 s.
//
// A connection the server has read no byte from is as idle as an idle
// keep-alive connection, which Shutdown closes at once: a request its
// client sends at that moment fails either way, the race every client of
// a stopping server has to handle (Server.drain). So a graceful stop
// closes at once the connections that never sent a byte. One that sent
// any byte keeps net/http's rule: a request partly received waits for the
// rest until the connection is 5 s old, a request in flight finishes
// within shutdown_timeout, and hijacked WebSockets are the hub's.
//
// The bytes are counted below TLS, which does not say where a handshake
// ends and a request begins: a TLS connection has sent bytes once its
// client began the handshake, so one that stops after it keeps net/http's
// rule (browsers speak HTTP/2 over TLS, which Shutdown ends with GOAWAY).

// openConns is the connections the server's listeners accepted that are
// not closed yet.
type openConns struct {
	mu       sync.Mutex
	conns    map[*limitedConn]struct{}
	stopping bool // closeUnused was called
}

func newOpenConns() *openConns {
	return &openConns{conns: map[*limitedConn]struct{}{}}
}

// add records c, a connection just accepted; false once the server stops
// (Shutdown closes the listeners before closeUnused runs, but an Accept
// under way may still return one): c, which has sent nothing yet, is then
// to be closed.
func (o *openConns) add(c *limitedConn) bool {
	o.mu.Lock()
	defer o.mu.Unlock()
	if o.stopping {
		return false
	}
	o.conns[c] = struct{}{}
	return true
}

func (o *openConns) remove(c *limitedConn) {
	o.mu.Lock()
	defer o.mu.Unlock()
	delete(o.conns, c)
}

// closeUnused closes the connections that never sent a byte, and from
// then on every connection accepted. http.Server.Shutdown calls it, once
// it has closed its listeners.
func (o *openConns) closeUnused() {
	o.mu.Lock()
	o.stopping = true
	var unused []*limitedConn
	for c := range o.conns {
		if !c.used.Load() {
			unused = append(unused, c)
		}
	}
	o.mu.Unlock()
	for _, c := range unused {
		_ = c.Close() // its Close removes it: outside the lock
	}
}
