package socketio

// LagCounting returns how many lag checks the clients' feeds made and how
// many changes they read from the log to count lag (client.behind), for
// the external tests.
func LagCounting(s *Server) (checks, read uint64) { return s.lagChecks.Load(), s.lagRead.Load() }

// SocketWrites is how many write system calls the WebSocket transport
// made (each write of a batchConn).
func SocketWrites(s *Server) uint64 { return s.socketWrites.Load() }

// FullWindows is how many clients have Window packets waiting for their
// transport: their feed reads no more until the client drains them.
func FullWindows(s *Server) int {
	n := 0
	for _, cl := range s.allClients() {
		if cl.c.queued() >= s.opts.Window {
			n++
		}
	}
	return n
}

// BuildSnapshot builds the context_snapshot packet a client of namespace
// ns would get at connect (its budget grant released at once).
func BuildSnapshot(s *Server, ns string) (string, error) {
	cl := &client{c: &conn{done: make(chan struct{})}, id: "test", ns: ns}
	p, _, g, err := s.snapshot(cl)
	g.Release()
	close(cl.c.done)
	return p, err
}

// The wire's decoders and the encoders of what answers them, for
// FuzzDecode.
var (
	ParsePacket      = parsePacket
	DecodePayload    = decodePayload
	WritePayload     = writePayload
	NamespaceRefusal = namespaceRefusal
	Pong             = pong
)

// MaxAckDigits bounds the ack ids the server answers.
const MaxAckDigits = maxAckDigits

// Refusal is what answers Socket.IO packet p when it is refused with an
// error of code and msg.
func Refusal(p, code, msg string) []string {
	return refusal(p, errorPayload{Code: code, Message: msg})
}

// WaitingPolls is how many sessions have a polling GET waiting for
// packets.
func WaitingPolls(s *Server) int {
	n := 0
	for _, cl := range s.allClients() {
		cl.c.mu.Lock()
		if cl.c.polling {
			n++
		}
		cl.c.mu.Unlock()
	}
	return n
}

// OnPollGaveUp has f run when a waiting poll's request ends (the client
// gave up, or its connection dropped), before the poll lets go of its
// session.
func OnPollGaveUp(s *Server, f func()) { s.pollGaveUp.Store(&f) }
