package socketio

import (
	"errors"
	"net/http"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/gorilla/websocket"
	"github.com/rs/zerolog"

	"github.com/framework0/ctxd"
	"github.com/framework0/ctxd/auth"
	"github.com/framework0/ctxd/internal/clientaddr"
	"github.com/framework0/ctxd/internal/snapbudget"
	"github.com/framework0/ctxd/store"
)

// Options configure a Server. Zero fields take the defaults below.
type Options struct {
	// PingInterval and PingTimeout are Engine.IO's: the server pings every
	// PingInterval, and a client that does not answer within PingTimeout
	// is disconnected. Defaults 25s and 20s (the reference server's).
	PingInterval time.Duration
	PingTimeout  time.Duration
	// MaxPayload bounds what a client sends at once (a polling POST, a
	// WebSocket frame): past it the session is closed (413 to the POST,
	// 1009 on the WebSocket), as the reference server does. Default 1 MB.
	MaxPayload int64
	// MaxMessageBytes bounds one Socket.IO packet (an event, a CONNECT): a
	// larger one within MaxPayload is not applied and is answered with an
	// error of code too_large (and its ack), the session staying up, as
	// /v1/watch answers a message over websocket.max_message_bytes (ctxd
	// gives MaxPayload twice this). Default (0): MaxPayload.
	MaxMessageBytes int64
	// WriteTimeout bounds one WebSocket frame's write and a context_set's
	// write to the store. Default 10s.
	WriteTimeout time.Duration
	// MaxLag is how many changes a client may fall behind before it gets
	// an error event of code lagged and is disconnected. Changes are
	// counted one by one once the distance in revisions passes MaxLag (on
	// etcd, revisions skip the numbers of other prefixes of the cluster).
	// Default 10000.
	MaxLag uint64
	// LagGrace is how long a client may stay more than MaxLag changes
	// behind before it is disconnected: one that reads at full speed
	// drains a burst larger than MaxLag within it. 0, the default here,
	// disconnects it at once (as realtime.Options.LagGrace).
	LagGrace time.Duration
	// MaxSnapshotBytes bounds the values of a context_snapshot: a larger
	// one is refused (a CONNECT error, or an error event after a reset) of
	// code too_large, rather than built whole in memory for each client.
	// Default 64 MiB, as /v1/watch's.
	MaxSnapshotBytes int
	// SnapshotBudget bounds the memory the snapshots in progress (built,
	// not yet written to their transports) hold together; the server
	// shares /v1/watch's (realtime.Options.SnapshotBudget). nil: one of
	// the door's own, of 4 x MaxSnapshotBytes.
	SnapshotBudget *snapbudget.Budget
	// ConnectTimeout is how long an Engine.IO session may stay without a
	// Socket.IO CONNECT before it is closed (it holds a place of
	// MaxClients meanwhile). Default 45s, as the reference server's.
	ConnectTimeout time.Duration
	// MaxClients caps the sessions, counted together with OtherClients.
	// Default 10000.
	MaxClients int
	// Window is how many packets may wait for a client's transport before
	// its feed stops reading the log (it resumes from its position when
	// they drain). Default 64.
	Window int
	// WindowBytes is the same bound in bytes: the feed stops reading the
	// log while the changes queued for the client, or taken by its
	// transport and not yet written, hold WindowBytes (one change may
	// take them past it). Without it a client behind a busy namespace
	// of large values held Window of them (64 MiB of 1 MiB values).
	// Default (0): MaxPayload (ctxd gives twice websocket.max_message_bytes,
	// so that the largest change fits twice).
	WindowBytes int
	// OriginAllowed decides a browser's Origin (nil: any).
	OriginAllowed func(*http.Request) bool
	// Access turns access control on (nil: off): the token comes from the
	// CONNECT auth payload ("token"), Authorization: Bearer, or ?token=.
	Access *auth.Authorizer
	// OtherClients counts the clients of the other door (/v1/watch), for
	// client_stats and MaxClients.
	OtherClients func() int
	// RateLimit is how many Socket.IO packets (events, CONNECT, ...) per
	// second one session may send, in bursts of up to RateBurst (0:
	// RateLimit rounded up); Engine.IO pings and pongs are not counted. A
	// packet past it is not applied and is answered with an error event
	// of code rate_limited and retry_after_ms; a session with more than
	// MaxRefused packets refused within 10 s is disconnected (1008,
	// rate_limited; MaxRefused 0: never). RateLimit 0, the default here,
	// turns the limit off. See internal/msglimit.
	RateLimit  float64
	RateBurst  int
	MaxRefused int
	// Namespace is a client's namespace when its CONNECT names none (no
	// "ns"): compat.namespace, the /ctx API's, so that Framework0's REST
	// and Socket.IO clients share one context. Default ctxd.DefaultNamespace.
	Namespace string
}

func (o Options) withDefaults() Options {
	if o.PingInterval <= 0 {
		o.PingInterval = 25 * time.Second
	}
	if o.PingTimeout <= 0 {
		o.PingTimeout = 20 * time.Second
	}
	if o.MaxPayload <= 0 {
		o.MaxPayload = 1_000_000
	}
	if o.MaxMessageBytes <= 0 || o.MaxMessageBytes > o.MaxPayload {
		o.MaxMessageBytes = o.MaxPayload
	}
	if o.WriteTimeout <= 0 {
		o.WriteTimeout = 10 * time.Second
	}
	if o.MaxLag == 0 {
		o.MaxLag = 10000
	}
	if o.MaxClients <= 0 {
		o.MaxClients = 10000
	}
	if o.ConnectTimeout <= 0 {
		o.ConnectTimeout = 45 * time.Second
	}
	if o.MaxSnapshotBytes <= 0 {
		o.MaxSnapshotBytes = 64 << 20
	}
	if o.SnapshotBudget == nil {
		o.SnapshotBudget = snapbudget.New(4 * int64(o.MaxSnapshotBytes))
	}
	if o.Window <= 0 {
		o.Window = 64
	}
	if o.WindowBytes <= 0 {
		o.WindowBytes = int(o.MaxPayload)
	}
	if o.OtherClients == nil {
		o.OtherClients = func() int { return 0 }
	}
	if o.Namespace == "" {
		o.Namespace = ctxd.DefaultNamespace
	}
	return o
}

// Server is the Socket.IO door to the change feed, mounted at /socket.io/.
// Close it before closing the store.
type Server struct {
	st       store.Backend
	opts     Options
	log      zerolog.Logger
	upgrader websocket.Upgrader

	mu      sync.Mutex
	conns   map[string]*conn
	clients map[*client]struct{}
	// waiting counts, per client address, the sessions that have not
	// CONNECTed yet (add, connected).
	waiting map[string]int
	closed  bool
	// wg counts the goroutines of every session (heartbeat, feed,
	// WebSocket reader and writer), for Close to wait on.
	wg sync.WaitGroup

	nextID  atomic.Uint64
	lagged  atomic.Uint64
	revoked atomic.Uint64
	// rateLimited counts packets refused by the rate limit,
	// rateLimitClosed the sessions closed for sending past it.
	rateLimited, rateLimitClosed atomic.Uint64
	sent                         atomic.Uint64 // Engine.IO packets written to clients
	socketWrites                 atomic.Uint64 // write system calls of the WebSocket transport (batchConn)
	// lagChecks counts the feeds' lag checks (behind), lagRead the
	// changes they read to count: for the tests (export_test.go).
	lagChecks, lagRead atomic.Uint64
	forgotten          chan struct{} // cap 1: a lingering session was dropped
	// pollGaveUp, set by the tests only (export_test.go), runs when a
	// waiting poll's request has ended, before the poll lets go of its
	// session: a session may end meanwhile.
	pollGaveUp atomic.Pointer[func()]
}

// New returns a Socket.IO server over st.
func New(st store.Backend, opts Options, log zerolog.Logger) *Server {
	opts = opts.withDefaults()
	s := &Server{
		st: st, opts: opts, log: log,
		conns: map[string]*conn{}, waiting: map[string]int{},
		clients:   map[*client]struct{}{},
		forgotten: make(chan struct{}, 1),
	}
	s.upgrader = websocket.Upgrader{
		ReadBufferSize: 4096, WriteBufferSize: 16 << 10, WriteBufferPool: &sync.Pool{},
		// ServeHTTP has already applied OriginAllowed to every request,
		// the upgrade included: the upgrader does not check it again.
		CheckOrigin: func(*http.Request) bool { return true },
		// A handshake the upgrader refuses (a WebSocket version other
		// than 13, no key) is answered in Engine.IO's JSON, as every
		// other refusal, not in gorilla's plain text.
		Error: func(w http.ResponseWriter, _ *http.Request, status int, reason error) {
			engineError(w, status, errBadRequest, reason.Error())
		},
	}
	return s
}

var errShuttingDown = errors.New("the server is shutting down")

// add registers a new session, within MaxClients, and within a tenth of
// them (at least 32) waiting to CONNECT from one address: a session holds
// its place for ConnectTimeout (45 s) before it must CONNECT, and a client
// with no token that opened 10,000 of them in two seconds kept every
// other one out (admins included) for over a minute.
func (s *Server) add(c *conn) error {
	n := s.opts.OtherClients()
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return errShuttingDown
	}
	if n+len(s.conns) >= s.opts.MaxClients {
		return errors.New("the server already has max_clients (" + strconv.Itoa(s.opts.MaxClients) + ") clients: try again later")
	}
	from := clientaddr.Of(c.remote)
	if most := max(32, s.opts.MaxClients/10); s.waiting[from] >= most {
		return errors.New(strconv.Itoa(most) + " sessions from this address are waiting to CONNECT (a tenth of max_clients): try again later")
	}
	s.waiting[from]++
	c.waitingFrom = from
	s.conns[c.sid] = c
	return nil
}

// connected notes that c CONNECTed or ended: it no longer counts as
// waiting. It may be called more than once.
func (s *Server) connected(c *conn) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if c.waitingFrom == "" {
		return
	}
	if s.waiting[c.waitingFrom]--; s.waiting[c.waitingFrom] <= 0 {
		delete(s.waiting, c.waitingFrom)
	}
	c.waitingFrom = ""
}

// track counts one more goroutine unless the server is closing.
func (s *Server) track() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return false
	}
	s.wg.Add(1)
	return true
}

// remove forgets a closed session and tells the others the new count.
// One kept for its last packets (not forget) holds a place of max_clients
// until forget drops it, and so, if it never CONNECTed, one of its
// address's places: else a client with no token that opened sessions
// and ended each at once filled max_clients for PingTimeout.
func (s *Server) remove(c *conn, cl *client, forget bool) {
	if forget {
		s.connected(c)
	}
	s.mu.Lock()
	if forget {
		delete(s.conns, c.sid)
	}
	if cl != nil {
		delete(s.clients, cl)
	}
	closed := s.closed
	s.mu.Unlock()
	if cl != nil && !closed {
		s.broadcastStats()
	}
}

// forget drops a closed session's id.
func (s *Server) forget(c *conn) {
	s.connected(c)
	s.mu.Lock()
	if s.conns[c.sid] == c {
		delete(s.conns, c.sid)
	}
	s.mu.Unlock()
	signal(s.forgotten)
}

// CloseRevoked disconnects every client whose token was revoked by a
// reload of the tokens file (auth.Authorizer.OnRevoke): an error event of
// code token_revoked, then the transport closes (WebSocket: close 1008,
// reason token_revoked). A client whose reconnection would be refused
// (its token removed, or no longer allowed its namespace) gets a
// Socket.IO DISCONNECT before the close, which tells it not to come
// back; the others reconnect by themselves with the token's new rights
// (client.revoke). It never blocks on a client.
func (s *Server) CloseRevoked() {
	for _, cl := range s.allClients() {
		if cl.token.Revoked() {
			cl.revoke()
		}
	}
}

// closeWait bounds how long Close waits for clients to get their last
// packets (polling clients poll once more, or until they have taken
// them, maxPollPackets an answer) before it cuts connections.
const closeWait = 2 * time.Second

// Clients is the number of connected Socket.IO clients (past CONNECT).
func (s *Server) Clients() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.clients)
}

// Sessions is the number of Engine.IO sessions, from their handshake on
// (those that linger for their last packets included): what counts
// against MaxClients, for /v1/watch too.
func (s *Server) Sessions() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.conns)
}

// Backlog is what the sessions hold for their clients now.
type Backlog struct {
	// Stalled counts the sessions whose reader waits until the answers
	// their client has not read drain (backpressure: conn.awaitRoom).
	Stalled int
	// Packets counts the packets queued for the clients, changes
	// included; AnswerBytes is the size of those that are not changes
	// (answers, acks, notices, snapshots).
	Packets, AnswerBytes int
	// ChangeBytes is the size of the changes queued for the clients, or
	// taken by their transports and not yet written (each client's at
	// most about Options.WindowBytes); Held counts the clients whose
	// feed waits right now, with changes to send, for their window (by
	// count or by bytes) to drain.
	ChangeBytes, Held int
}

// Backlog sums what every session holds for its client now.
func (s *Server) Backlog() Backlog {
	s.mu.Lock()
	conns := make([]*conn, 0, len(s.conns))
	for _, c := range s.conns {
		conns = append(conns, c)
	}
	s.mu.Unlock()
	var b Backlog
	for _, c := range conns {
		c.mu.Lock()
		if c.awaiting {
			b.Stalled++
		}
		b.Packets += len(c.queue)
		b.AnswerBytes += c.answerBytes
		b.ChangeBytes += c.changeBytes
		if c.cl != nil && c.cl.held.Load() {
			b.Held++
		}
		c.mu.Unlock()
	}
	return b
}

// Lagged counts the clients disconnected with "lagged".
func (s *Server) Lagged() uint64 { return s.lagged.Load() }

// Revoked counts the clients disconnected because their token was
// revoked (CloseRevoked).
func (s *Server) Revoked() uint64 { return s.revoked.Load() }

// RateLimited counts the packets refused with rate_limited (not applied).
func (s *Server) RateLimited() uint64 { return s.rateLimited.Load() }

// RateLimitClosed counts the sessions disconnected for sending past their
// rate limit (Options.MaxRefused).
func (s *Server) RateLimitClosed() uint64 { return s.rateLimitClosed.Load() }

// Sent counts the Engine.IO packets written to clients: one WebSocket
// frame each, or one packet of a polling response (pings and noops
// included).
func (s *Server) Sent() uint64 { return s.sent.Load() }

// allClients returns the connected clients.
func (s *Server) allClients() []*client {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make([]*client, 0, len(s.clients))
	for cl := range s.clients {
		out = append(out, cl)
	}
	return out
}

// Close disconnects every client (it ends the transport: WebSocket close
// 1001, or a last poll answered with a noop, after which the session is
// unknown; no Socket.IO DISCONNECT, which clients take for "do not come
// back": see conn.comeBack), lets polling clients poll for what is
// queued, and waits for the sessions' goroutines: up to two seconds in
// all before it cuts WebSocket connections. Clients reconnect, to this
// server once restarted, and get a new snapshot. Call it before the HTTP
// server's Shutdown. Later calls do nothing.
func (s *Server) Close() error {
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return nil
	}
	s.closed = true
	conns := make([]*conn, 0, len(s.conns))
	for _, c := range s.conns {
		conns = append(conns, c)
	}
	s.mu.Unlock()
	for _, c := range conns {
		if !c.closeComeBack("server shutting down") && c.queued() == 0 {
			// Ended before, kept for its close packet alone: not worth
			// holding the shutdown for (the client is going to find
			// the server gone either way).
			s.forget(c)
		}
	}
	// A polling client whose poll was not pending gets what was queued
	// for it at its next poll: the HTTP server still serves until Close
	// returns.
	deadline := time.NewTimer(closeWait)
	defer deadline.Stop()
	for waiting := true; waiting; {
		s.mu.Lock()
		n := len(s.conns)
		s.mu.Unlock()
		if n == 0 {
			break
		}
		select {
		case <-s.forgotten:
		case <-deadline.C:
			waiting = false
		}
	}
	done := make(chan struct{})
	go func() { s.wg.Wait(); close(done) }()
	select {
	case <-done:
	case <-deadline.C:
		for _, c := range conns {
			c.mu.Lock()
			if c.ws != nil {
				_ = c.ws.Close()
			}
			c.mu.Unlock()
		}
		<-done
	}
	return nil
}
