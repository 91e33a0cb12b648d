package socketio

import (
	"crypto/rand"
	"encoding/base64"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"
	"unicode/utf8"
	"unsafe"

	"github.com/gorilla/websocket"

	"github.com/framework0/ctxd/auth"
	"github.com/framework0/ctxd/internal/msglimit"
	"github.com/framework0/ctxd/internal/snapbudget"
)

// Engine.IO v4 packet types (the first character of a packet).
const (
	pOpen    = '0'
	pClose   = '1'
	pPing    = '2'
	pPong    = '3'
	pMessage = '4'
	pUpgrade = '5'
	pNoop    = '6'
)

// separator joins packets in one HTTP long-polling body.
const separator = "\x1e"

// conn is one Engine.IO session: a queue of packets for the client, written
// by whichever transport holds it (a pending polling GET, or the WebSocket
// writer once the client upgraded), and the packets the client sends.
type conn struct {
	srv    *Server
	sid    string
	remote string
	query  map[string][]string // the handshake request's query
	secret string              // the token of the handshake request (header or ?token=)
	limit  *msglimit.Limiter   // the rate limit of its Socket.IO packets (nil: none)

	mu    sync.Mutex
	queue []string
	// answerSize is, for each packet of queue, its size if it is not a
	// change of the feed (an answer, an ack, a notice, a snapshot), else
	// 0; answerBytes is their sum: the bytes awaitRoom bounds. The
	// feed's packets are bounded by Window and WindowBytes (it waits for
	// room).
	answerSize  []int
	answerBytes int
	// changeBytes is the size of the feed's packets (changes, and the
	// confirmations of the client's own writes among them) in queue, and
	// of those a writer took and has not written yet (wrote): what the
	// feed's WindowBytes bounds. Taken packets still count: a writer
	// blocked on the socket of a client that does not read holds them,
	// and the feed would otherwise queue another window beside them.
	changeBytes int
	// awaiting is set while a transport's reader waits in awaitRoom;
	// takeLocked then signals drained.
	awaiting bool
	drained  chan struct{} // cap 1
	// put and taken count the packets ever put in queue and taken from
	// it by a writer.
	put, taken int
	// held are the snapshot budget's grants of packets in queue, each
	// with the count put reaches at its last packet: the writer that
	// takes that packet takes the grant, and releases it once it has
	// written what it took (closeWith releases those left).
	held    []heldGrant
	polling bool            // a GET is waiting for packets
	posting bool            // a POST is being read and handled
	probing bool            // a WebSocket answered the upgrade probe: polls end with a noop
	ws      *websocket.Conn // set when the WebSocket transport took over
	closed  bool
	cl      *client // set by the Socket.IO CONNECT
	// token is the valid token its CONNECT gave, refused or not (nil:
	// none yet, or access control off), for the access log.
	token *auth.Token
	// closeCode and closeText, when closeCode is not 0, are the WebSocket
	// close frame's (closeWith); else 1001 (going away).
	closeCode int
	closeText string
	// comeBack marks a close the client should recover from by
	// reconnecting (shutdown, lagged, compacted: closeComeBack; a token
	// whose rights changed: client.revoke): the poll that takes the last
	// packets ends with a noop (the next poll's answer has it when they
	// fill one: maxPollPackets), not the Engine.IO close packet, and the
	// poll after the noop fails.
	// python-engineio takes a close packet, as a Socket.IO DISCONNECT,
	// for "the server does not want you back" and never reconnects; a
	// failed poll or a closed WebSocket it takes for a dropped transport,
	// and reconnects (as the JavaScript client does).
	comeBack bool
	// connectTimer closes the session if no CONNECT comes in time.
	connectTimer *time.Timer
	// waitingFrom is the address the session counts against until it
	// CONNECTs (Server.add; guarded by the Server's mu).
	waitingFrom string

	wake  chan struct{} // cap 1: the queue grew, or the transport or state changed
	space chan struct{} // cap 1: the writer took packets from the queue
	pong  chan struct{} // cap 1: a pong arrived
	done  chan struct{} // closed by close

	// handling is held while a transport handles the client's packets
	// (post, serveWebSocketTracked): one at a time, whichever transport
	// they came by. A POST still in flight when a WebSocket took over
	// would otherwise run beside its reader, two CONNECTs at once
	// connecting two clients (see post).
	handling sync.Mutex
}

func newSID() string {
	var b [15]byte
	_, _ = rand.Read(b[:])
	return base64.RawURLEncoding.EncodeToString(b[:])
}

func signal(ch chan struct{}) {
	select {
	case ch <- struct{}{}:
	default:
	}
}

// maxQueuedPackets bounds a session's queue. Changes take at most Window
// of it (the feed waits for room), a snapshot one packet; the rest is
// answers (acks, pongs) to a client that sends without reading them: past
// it the session is closed, or it would grow without end (a polling
// client that posts pings and never polls).
const maxQueuedPackets = 1024

// maxAnswerBytes bounds the bytes of the packets other than changes
// (answers, acks, notices, snapshots) queued for a session before the
// next packet the client sends is handled (awaitRoom): a client that
// sends and does not read stalls itself. One packet's answers may take
// it past the bound: a context_set's ack carries the value, of up to
// limits.max_value_bytes (1 MiB).
const maxAnswerBytes = 1 << 20

// send queues packets for the client (answers, notices); false when
// the session is closed.
func (c *conn) send(packets ...string) bool { return c.enqueue(true, packets) }

// sendChanges queues the feed's packets (changes, and the confirmations
// of the client's own writes among them).
func (c *conn) sendChanges(packets ...string) bool { return c.enqueue(false, packets) }

func (c *conn) enqueue(answers bool, packets []string) bool {
	c.mu.Lock()
	if c.closed {
		c.mu.Unlock()
		return false
	}
	if len(c.queue)+len(packets) > maxQueuedPackets {
		c.mu.Unlock()
		c.srv.log.Info().Str("sid", c.sid).Str("remote", c.remote).Int("queued", maxQueuedPackets).
			Msg("Socket.IO client does not read what it is sent: closed")
		c.close("the client does not read what it is sent")
		return false
	}
	c.appendLocked(answers, packets...)
	c.mu.Unlock()
	signal(c.wake)
	return true
}

// appendLocked puts packets at the end of the queue.
func (c *conn) appendLocked(answers bool, packets ...string) {
	c.queue = append(c.queue, packets...)
	c.put += len(packets)
	for _, p := range packets {
		n := 0
		if answers {
			n = len(p)
		} else {
			c.changeBytes += len(p)
		}
		c.answerSize = append(c.answerSize, n)
		c.answerBytes += n
	}
}

// awaitRoom holds the caller, the reader of the client's packets (a
// WebSocket's, or a polling POST), while the answers queued for the
// client hold more than maxAnswerBytes, or maxQueuedPackets/2 packets
// wait, until they drain or the session ends: backpressure. A client that
// sends and reads nothing stalls itself (TCP, or its POST that does not
// end, holds back what it sends); with the WebSocket it is cut by the
// write timeout, as any client that does not read, or by the ping timeout
// (its pongs are not read meanwhile). Before, its answers piled up to
// 1,024 packets, each context_set's value twice (its confirmation and its
// ack): 2 GB with values of 1 MB.
//
// It reports false when the session was closed meanwhile: the packet is
// then dropped, as one read after the close (handlePacket), not handled
// with nothing to answer it.
func (c *conn) awaitRoom() bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	for c.lacksRoomLocked() {
		c.awaiting = true
		c.mu.Unlock()
		select {
		case <-c.drained:
		case <-c.done:
		}
		c.mu.Lock()
	}
	c.awaiting = false
	return !c.closed
}

func (c *conn) lacksRoomLocked() bool {
	return !c.closed && (c.answerBytes > maxAnswerBytes || len(c.queue) >= maxQueuedPackets/2)
}

// heldGrant is a grant and the count of packets put at its last one.
type heldGrant struct {
	g     *snapbudget.Grant
	until int
}

// sendHeld is send for packets that hold g (a snapshot's grant): g is
// released once they are written, or the session closes.
func (c *conn) sendHeld(g *snapbudget.Grant, packets ...string) bool {
	c.mu.Lock()
	if c.closed {
		c.mu.Unlock()
		g.Release()
		return false
	}
	c.appendLocked(true, packets...)
	if g != nil {
		c.held = append(c.held, heldGrant{g: g, until: c.put})
		g.ReleaseAfter(c.srv.opts.WriteTimeout) // a client that does not read (or poll) holds no longer
	}
	c.mu.Unlock()
	signal(c.wake)
	return true
}

// release releases grants a writer took (takeLocked) once it has written
// their packets, or failed to.
func release(grants []heldGrant) {
	for _, h := range grants {
		h.g.Release()
	}
}

// queued is how many packets wait for the transport.
func (c *conn) queued() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return len(c.queue)
}

// room is how many more of the feed's packets, and how many more of
// their bytes, the client may be given now: the feed queues changes only
// while both are positive (its window, by count and by bytes).
func (c *conn) room() (packets, bytes int) {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.srv.opts.Window - len(c.queue), c.srv.opts.WindowBytes - c.changeBytes
}

// wrote tells that a writer has written (or failed to write) the feed's
// packets of feed bytes it took (takeLocked): they leave changeBytes, and
// the feed may queue more.
func (c *conn) wrote(feed int) {
	if feed == 0 {
		return
	}
	c.mu.Lock()
	c.changeBytes -= feed
	c.mu.Unlock()
	signal(c.space)
}

// close ends the session: what is queued still goes out, followed by an
// Engine.IO close packet (polling: in the answer to the next poll, when
// packets were queued; see poll) or a close frame (WebSocket, 1001).
func (c *conn) close(reason string) { c.closeWith(0, reason, nil) }

// closeWith ends the session as close does, after the packets last,
// queued in the same step (so that nothing is queued after them). A code
// other than 0 is the WebSocket close frame's, with reason as its text.
// It reports false, queuing nothing, when the session was closed already.
// counted, when not nil, is incremented when this call closes the session,
// before anything goes out: a client that sees the close sees it counted.
func (c *conn) closeWith(code int, reason string, counted *atomic.Uint64, last ...string) bool {
	return c.end(code, reason, counted, endForGood, last...)
}

// closeByClient ends the session as close does, at the client's word (its
// Engine.IO close packet, its Socket.IO DISCONNECT), or because it is gone
// (it answered no ping within PingTimeout: Engine.IO drops such a session
// at once): such a client polls no more, and its session is not kept for
// the close packet.
func (c *conn) closeByClient(reason string) { c.end(0, reason, nil, endClientGone) }

// closeComeBack ends the session as close does, after the packets last,
// and ends the transport without telling the client not to come back: no
// Socket.IO DISCONNECT (callers send none) and no Engine.IO close packet
// (comeBack). Clients with reconnection on (python-socketio's and the
// JavaScript client's default) reconnect and get a new snapshot.
func (c *conn) closeComeBack(reason string, last ...string) bool {
	return c.end(0, reason, nil, endComeBack, last...)
}

// ending is how a session ends, for what its polling client is told.
type ending int

const (
	endForGood    ending = iota // the server ends it: the client is told not to come back
	endComeBack                 // the transport ends, for the client to reconnect (comeBack)
	endClientGone               // the client ended it, or answered no ping
)

func (c *conn) end(code int, reason string, counted *atomic.Uint64, how ending, last ...string) bool {
	c.mu.Lock()
	if c.closed {
		c.mu.Unlock()
		return false
	}
	c.closed = true
	c.comeBack = how == endComeBack
	if counted != nil {
		counted.Add(1)
	}
	c.appendLocked(true, last...)
	if code != 0 {
		c.closeCode, c.closeText = code, reason
	}
	cl := c.cl
	held := c.held
	c.held = nil
	if c.connectTimer != nil {
		c.connectTimer.Stop()
	}
	// A polling client gets what is queued (a lagged error, say) at its
	// next polls: the session lingers until a poll has taken the last
	// packets (poll drops it then), or PingTimeout. So it does when a
	// poll is pending: that poll may take them all, but its request may
	// also have ended (the client gave up, its connection dropped) and
	// the poll be on its way out without them; dropping the session here
	// lost them, the error that says where to resume included, and the
	// next poll was refused. So it does when the server ends it for good
	// with nothing queued, for a poll to take the close packet, whether
	// one is pending (it may be on its way out) or not (the client is
	// between polls, or posting the packet that closed it): dropped here,
	// the next poll got 400 (unknown session), which clients take for a
	// lost transport, and they reconnected. One told to come back with
	// nothing queued has nothing to wait for: its next poll fails either
	// way; nor has one the client ended or that answered no ping,
	// whatever is queued: it polls no more (a poll of its that is
	// pending still answers with what it takes), and kept, it held a
	// shutdown for closeWait.
	linger := c.ws == nil && how != endClientGone && (len(c.queue) > 0 || how == endForGood)
	c.mu.Unlock()
	release(held) // what is left in the queue goes out, or is dropped, soon
	close(c.done)
	signal(c.wake)
	c.srv.remove(c, cl, !linger)
	if linger {
		time.AfterFunc(c.srv.opts.PingTimeout, func() { c.srv.forget(c) })
	}
	c.srv.log.Debug().Str("sid", c.sid).Str("reason", reason).Msg("Socket.IO client disconnected")
	return true
}

// takeLocked takes the queued packets for a writer: at most most of them
// (0: all), the rest stay for its next turn. With them it takes the
// grants whose last packet is among them, for the writer to release once
// it has written them, and the size of the feed's packets among them
// (feed), for the writer to hand to wrote once it has written them.
func (c *conn) takeLocked(most int) (packets []string, grants []heldGrant, feed int) {
	q, sizes := c.queue, c.answerSize
	c.queue, c.answerSize = nil, nil
	if most > 0 && len(q) > most {
		q, c.queue = q[:most:most], q[most:]
		sizes, c.answerSize = sizes[:most], sizes[most:]
	}
	for i, n := range sizes {
		c.answerBytes -= n
		if n == 0 { // a packet of the feed (an answer is never empty)
			feed += len(q[i])
		}
	}
	if len(q) > 0 {
		signal(c.space)
	}
	if c.awaiting && !c.lacksRoomLocked() {
		c.awaiting = false
		signal(c.drained)
	}
	c.taken += len(q)
	n := 0
	for n < len(c.held) && c.held[n].until <= c.taken {
		n++
	}
	held := c.held[:n:n]
	c.held = c.held[n:]
	return q, held, feed
}

// maxPollPackets bounds the packets of one polling answer: the Python
// Engine.IO client (python-engineio 4, which python-socketio's clients,
// Framework0's among them, run on) refuses a payload of more than 16
// ("Too many packets in payload"), drops the session and reconnects
// without the changes it held. A client that gets 16 polls again at once.
const maxPollPackets = 16

// heartbeat pings the client every PingInterval; a client that does not
// answer within PingTimeout is disconnected (the Engine.IO v4 rule).
func (c *conn) heartbeat() {
	defer c.srv.wg.Done()
	t := time.NewTimer(c.srv.opts.PingInterval)
	defer t.Stop()
	for {
		select {
		case <-t.C:
		case <-c.done:
			return
		}
		select { // a stale pong does not count
		case <-c.pong:
		default:
		}
		if !c.send(string(pPing)) {
			return
		}
		t.Reset(c.srv.opts.PingTimeout)
		select {
		case <-c.pong:
		case <-t.C:
			// Not kept for a poll (close would keep a polling session
			// another PingTimeout, and a shutdown waited for it).
			c.closeByClient("ping timeout")
			return
		case <-c.done:
			return
		}
		if !t.Stop() {
			select {
			case <-t.C:
			default:
			}
		}
		t.Reset(c.srv.opts.PingInterval)
	}
}

// handshake is the open packet's payload.
type handshake struct {
	SID          string   `json:"sid"`
	Upgrades     []string `json:"upgrades"`
	PingInterval int64    `json:"pingInterval"`
	PingTimeout  int64    `json:"pingTimeout"`
	MaxPayload   int64    `json:"maxPayload"`
}

func (c *conn) openPacket(upgrades []string) string {
	b, _ := json.Marshal(handshake{
		SID: c.sid, Upgrades: upgrades,
		PingInterval: c.srv.opts.PingInterval.Milliseconds(),
		PingTimeout:  c.srv.opts.PingTimeout.Milliseconds(),
		MaxPayload:   c.srv.opts.MaxPayload,
	})
	return string(pOpen) + string(b)
}

// engineError answers a refused Engine.IO request as the reference server
// does: {"code","message"} with 400 (403 for a refused origin).
func engineError(w http.ResponseWriter, status, code int, msg string) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	b, _ := json.Marshal(map[string]any{"code": code, "message": msg})
	_, _ = w.Write(b)
}

// Engine.IO error codes (engine.io's Server.errors).
const (
	errUnknownTransport = 0
	errUnknownSID       = 1
	errBadRequest       = 3
	errForbidden        = 4
	errUnsupportedEIO   = 5
)

// ServeHTTP serves /socket.io/: the Engine.IO handshake, long-polling GET
// and POST, and the WebSocket transport (direct or as an upgrade).
func (s *Server) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	if q.Get("EIO") != "4" {
		engineError(w, http.StatusBadRequest, errUnsupportedEIO, "Unsupported protocol version: ctxd speaks Engine.IO 4 (Socket.IO v3/v4 clients)")
		return
	}
	if s.opts.OriginAllowed != nil && r.Header.Get("Origin") != "" && !s.opts.OriginAllowed(r) {
		engineError(w, http.StatusForbidden, errForbidden, "origin "+strconv.Quote(r.Header.Get("Origin"))+" is not allowed: add it to websocket.allowed_origins")
		return
	}
	transport := q.Get("transport")
	if transport != "polling" && transport != "websocket" {
		engineError(w, http.StatusBadRequest, errUnknownTransport, "Transport unknown: use polling or websocket")
		return
	}
	if q.Get("j") != "" {
		engineError(w, http.StatusBadRequest, errBadRequest, "JSONP polling is not supported")
		return
	}
	sid := q.Get("sid")
	if sid == "" {
		if r.Method != http.MethodGet {
			engineError(w, http.StatusBadRequest, errBadRequest, "Bad handshake method")
			return
		}
		s.open(w, r, transport)
		return
	}
	s.mu.Lock()
	c := s.conns[sid]
	s.mu.Unlock()
	if c == nil {
		engineError(w, http.StatusBadRequest, errUnknownSID, "Session ID unknown")
		return
	}
	defer c.noteToken(r)
	switch {
	case transport == "websocket":
		s.upgrade(w, r, c)
	case r.Method == http.MethodGet:
		c.poll(w, r)
	case r.Method == http.MethodPost:
		c.post(w, r)
	default:
		engineError(w, http.StatusBadRequest, errBadRequest, "Bad request")
	}
}

// noteToken notes the session's token in r's context (auth.Note), for the
// access log line of r.
func (c *conn) noteToken(r *http.Request) {
	c.mu.Lock()
	t := c.token
	c.mu.Unlock()
	auth.Note(r.Context(), t)
}

// open starts a session (the handshake).
func (s *Server) open(w http.ResponseWriter, r *http.Request, transport string) {
	c := &conn{
		srv: s, sid: newSID(), remote: r.RemoteAddr, query: r.URL.Query(), secret: requestSecret(r),
		limit: msglimit.New(msglimit.Config{PerSecond: s.opts.RateLimit, Burst: s.opts.RateBurst, MaxRefused: s.opts.MaxRefused}),
		wake:  make(chan struct{}, 1), space: make(chan struct{}, 1), pong: make(chan struct{}, 1), drained: make(chan struct{}, 1),
		done: make(chan struct{}),
	}
	if err := s.add(c); err != nil {
		w.Header().Set("Retry-After", "5")
		engineError(w, http.StatusServiceUnavailable, errBadRequest, err.Error())
		return
	}
	if s.track() {
		go c.heartbeat()
	}
	// A session that never CONNECTs holds one of max_clients' places
	// (and a goroutine or three) for as long as it answers pings: it has
	// ConnectTimeout to connect, as the reference server's connectTimeout.
	c.mu.Lock()
	c.connectTimer = time.AfterFunc(s.opts.ConnectTimeout, func() {
		c.mu.Lock()
		idle := c.cl == nil
		c.mu.Unlock()
		if idle {
			c.close("no Socket.IO CONNECT within the connect timeout")
		}
	})
	c.mu.Unlock()
	defer c.noteToken(r)
	if transport == "polling" {
		c.send(c.openPacket([]string{"websocket"}))
		c.poll(w, r)
		return
	}
	// The headers set so far (the request's X-Request-Id) go with the 101.
	ws, err := s.upgrader.Upgrade(batchWriter{w, &s.socketWrites}, r, w.Header())
	if err != nil {
		c.close("websocket upgrade failed")
		s.forget(c) // no transport to linger for: nothing will take the close packet
		return
	}
	c.mu.Lock()
	open := c.openPacket([]string{})
	c.queue = append([]string{open}, c.queue...)
	c.answerSize = append([]int{len(open)}, c.answerSize...)
	c.answerBytes += len(open)
	c.put++
	for i := range c.held { // one packet more before each
		c.held[i].until++
	}
	c.ws = ws
	c.mu.Unlock()
	c.serveWebSocket(ws)
}

// requestSecret is the token of a request: Authorization: Bearer, or
// ?token= (browsers cannot set headers on a WebSocket).
func requestSecret(r *http.Request) string {
	if h := r.Header.Get("Authorization"); len(h) > 7 && strings.EqualFold(h[:7], "bearer ") {
		return strings.TrimSpace(h[7:])
	}
	return r.URL.Query().Get("token")
}

// poll is a long-polling GET: it answers once packets are queued (the
// heartbeat queues a ping every PingInterval, so it never waits longer).
func (c *conn) poll(w http.ResponseWriter, r *http.Request) {
	c.mu.Lock()
	if c.ws != nil {
		c.mu.Unlock()
		engineError(w, http.StatusBadRequest, errBadRequest, "Bad request: the session was upgraded to websocket")
		return
	}
	if c.polling {
		c.mu.Unlock()
		engineError(w, http.StatusBadRequest, errBadRequest, "Bad request: overlapping polling GET")
		c.close("overlapping poll")
		return
	}
	c.polling = true
	var (
		packets []string
		held    []heldGrant
		feed    int  // the bytes of the feed's packets among them
		last    bool // the session's last packets, without the close packet
	)
	defer func() { release(held); c.wrote(feed) }()
	for {
		if c.ws != nil { // upgraded while waiting: end this poll with a noop
			packets = []string{string(pNoop)}
			break
		}
		if len(c.queue) > 0 || c.closed {
			packets, held, feed = c.takeLocked(maxPollPackets)
			if c.closed && len(c.queue) == 0 {
				switch {
				case c.comeBack && len(packets) < maxPollPackets: // the next poll fails: see comeBack
					packets = append(packets, string(pNoop))
				case c.comeBack: // the noop in the next answer: one holds at most maxPollPackets
					last = true
				case len(packets) == 0:
					packets = append(packets, string(pClose))
				default:
					// The close packet comes in the next answer, not
					// after the last packets (an error event and a
					// DISCONNECT, say): the JavaScript client handles a
					// payload's close packet at once and its Socket.IO
					// packets a tick later, so it would end with a
					// disconnect "transport close" and keep the error
					// event unseen in its buffer. It handles a
					// DISCONNECT by closing the session itself.
					last = true
				}
			}
			break
		}
		if c.probing { // the client waits for this poll to end before it confirms the upgrade
			packets = []string{string(pNoop)}
			break
		}
		c.mu.Unlock()
		select {
		case <-c.wake:
		case <-r.Context().Done():
			if h := c.srv.pollGaveUp.Load(); h != nil {
				(*h)()
			}
			c.mu.Lock()
			c.polling = false
			c.mu.Unlock()
			return
		}
		c.mu.Lock()
	}
	c.polling = false
	closed := c.closed && len(c.queue) == 0 && !last // the close packet went in this answer
	c.mu.Unlock()
	if closed {
		c.srv.forget(c)
	}
	w.Header().Set("Content-Type", "text/plain; charset=UTF-8")
	w.Header().Set("Cache-Control", "no-store")
	if writePayload(w, packets) == nil {
		c.srv.sent.Add(uint64(len(packets)))
	}
	signal(c.wake) // another writer may be waiting for its turn
}

// writePayload writes packets as one long-polling body, joined by the
// separator, without joining them in memory first (a snapshot packet may
// be tens of megabytes).
func writePayload(w http.ResponseWriter, packets []string) error {
	size := len(separator) * max(len(packets)-1, 0)
	for _, p := range packets {
		size += len(p)
	}
	w.Header().Set("Content-Length", strconv.Itoa(size))
	for i, p := range packets {
		if i > 0 {
			if _, err := io.WriteString(w, separator); err != nil {
				return err
			}
		}
		if _, err := io.WriteString(w, p); err != nil {
			return err
		}
	}
	return nil
}

// decodePayload splits a long-polling body into its packets (writePayload
// joins them).
func decodePayload(body string) []string { return strings.Split(body, separator) }

// post reads the packets of a polling POST. A POST while another is in
// flight is refused, and the session closed, as the reference server
// refuses a "data request overlap" (a client waits for its POST's answer
// before it sends the next): two ran their CONNECTs at once and connected
// two clients, the first left in the server's clients for good; and each
// read a body of up to MaxPayload beside the others. So is one after the
// session moved to a WebSocket (as a poll then is).
func (c *conn) post(w http.ResponseWriter, r *http.Request) {
	c.mu.Lock()
	switch {
	case c.ws != nil:
		c.mu.Unlock()
		engineError(w, http.StatusBadRequest, errBadRequest, "Bad request: the session was upgraded to websocket")
		return
	case c.posting:
		c.mu.Unlock()
		engineError(w, http.StatusBadRequest, errBadRequest, "Bad request: overlapping polling POST")
		c.close("overlapping post")
		return
	}
	c.posting = true
	c.mu.Unlock()
	defer func() {
		c.mu.Lock()
		c.posting = false
		c.mu.Unlock()
	}()
	body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, c.srv.opts.MaxPayload))
	if err != nil {
		var mbe *http.MaxBytesError
		if errors.As(err, &mbe) {
			engineError(w, http.StatusRequestEntityTooLarge, errBadRequest, "payload larger than maxPayload ("+strconv.FormatInt(c.srv.opts.MaxPayload, 10)+" bytes)")
			c.close("payload too large")
			return
		}
		engineError(w, http.StatusBadRequest, errBadRequest, "could not read the body")
		return
	}
	c.handling.Lock()
	for _, p := range decodePayload(string(body)) {
		if !c.handlePacket(p) {
			break
		}
	}
	c.handling.Unlock()
	w.Header().Set("Content-Type", "text/html")
	_, _ = io.WriteString(w, "ok")
}

// handlePacket handles one packet from the client; false: the session ended.
func (c *conn) handlePacket(p string) bool {
	c.mu.Lock()
	closed := c.closed
	c.mu.Unlock()
	if closed { // nothing would answer it: a write would be applied unconfirmed
		return false
	}
	if p == "" {
		c.close("empty packet")
		return false
	}
	switch p[0] {
	case pClose:
		c.closeByClient("client closed")
		return false
	case pPing:
		if !c.awaitRoom() {
			return false
		}
		c.send(pong(p))
	case pPong:
		signal(c.pong)
	case pMessage:
		if !c.awaitRoom() {
			return false // closed while it waited: dropped, as above
		}
		switch c.srv.admit(c, p[1:]) {
		case msglimit.Accept:
			c.srv.handleMessage(c, p[1:])
		case msglimit.Disconnect:
			return false
		}
	case pUpgrade, pNoop:
	default:
		// b<base64>: a binary message; ctxd's events are JSON.
		c.srv.log.Debug().Str("sid", c.sid).Msg("Socket.IO client sent an unknown or binary packet: closed")
		c.close("bad packet")
		return false
	}
	return true
}

// pong answers ping p: clients ping only to probe; answer anyway, echoing
// no more than a probe's data, and none that is not UTF-8 (a WebSocket
// text frame must be: a browser fails the connection at one that is not).
func pong(p string) string {
	if len(p) > 1+len("probe") || !utf8.ValidString(p) {
		p = p[:1]
	}
	return string(pPong) + p[1:]
}

// upgrade takes a polling session over to a WebSocket: the client probes
// (2probe/3probe), the pending poll ends with a noop, the client confirms
// (5), and from then on every packet goes over the WebSocket.
func (s *Server) upgrade(w http.ResponseWriter, r *http.Request, c *conn) {
	c.mu.Lock()
	already := c.ws != nil
	c.mu.Unlock()
	if already {
		engineError(w, http.StatusBadRequest, errBadRequest, "Bad request: already upgraded")
		return
	}
	ws, err := s.upgrader.Upgrade(batchWriter{w, &s.socketWrites}, r, w.Header())
	if err != nil {
		return // answered by the upgrader
	}
	if !s.track() {
		_ = ws.Close()
		return
	}
	defer s.wg.Done()
	// Until the upgrade completes, the probing connection is the
	// session's to end: closing the session (Close, a ping timeout, a
	// revoked token) ends the probe too, closeLinger later. A client
	// takes the WebSocket for its transport once it sent 5: one that
	// sent it before the session closed, and whose 5 is read within
	// that time, gets the session's last packets over it (see below).
	stop := make(chan struct{})
	defer close(stop)
	s.wg.Add(1)
	go func() {
		defer s.wg.Done()
		select {
		case <-c.done:
			_ = ws.SetReadDeadline(time.Now().Add(closeLinger))
		case <-stop:
		}
	}()
	ws.SetReadLimit(s.opts.MaxPayload)
	_ = ws.SetReadDeadline(time.Now().Add(s.opts.PingTimeout))
	_, msg, err := ws.ReadMessage()
	if err != nil || string(msg) != "2probe" {
		_ = ws.Close()
		return
	}
	_ = ws.SetWriteDeadline(time.Now().Add(s.opts.WriteTimeout))
	if ws.WriteMessage(websocket.TextMessage, []byte("3probe")) != nil {
		_ = ws.Close()
		return
	}
	// The client confirms (5) once its polling transport is paused, which
	// waits for the pending poll: that poll ends with a noop (as the
	// reference server's upgrade check does).
	c.mu.Lock()
	c.probing = true
	c.mu.Unlock()
	signal(c.wake)
	defer func() {
		c.mu.Lock()
		c.probing = false
		c.mu.Unlock()
	}()
	for {
		_, msg, err = ws.ReadMessage()
		if err != nil {
			_ = ws.Close()
			return
		}
		if string(msg) == string(pUpgrade) {
			break
		}
		if string(msg) == "2probe" { // a second probe
			_ = ws.WriteMessage(websocket.TextMessage, []byte("3probe"))
			continue
		}
		_ = ws.Close()
		return
	}
	_ = ws.SetReadDeadline(time.Time{})
	c.mu.Lock()
	// Of two probes that both confirm, the second is closed: each became
	// the transport, with a reader and a writer, for as long as the
	// session lived (one session, counted once against MaxClients, held
	// any number of WebSockets).
	if c.ws != nil {
		c.mu.Unlock()
		_ = ws.Close()
		return
	}
	// A session closed meanwhile is still the WebSocket's: its writer
	// sends what the close left queued (a revoked token's error and
	// DISCONNECT, a lagged client's error) and the close frame. Closed
	// at once, the client saw only "transport close", and a client told
	// not to come back reconnected.
	c.ws = ws
	c.mu.Unlock()
	signal(c.wake) // a pending poll ends with a noop
	c.serveWebSocketTracked(ws)
}

// serveWebSocket runs the WebSocket transport of a session until it ends:
// a writer goroutine drains the queue, this goroutine reads.
func (c *conn) serveWebSocket(ws *websocket.Conn) {
	if !c.srv.track() {
		_ = ws.Close()
		c.close("server shutting down")
		return
	}
	defer c.srv.wg.Done()
	ws.SetReadLimit(c.srv.opts.MaxPayload)
	c.serveWebSocketTracked(ws)
}

func (c *conn) serveWebSocketTracked(ws *websocket.Conn) {
	readDone := make(chan struct{})
	defer close(readDone)
	c.srv.wg.Add(1)
	go c.writeLoop(ws, readDone)
	for {
		_, msg, err := ws.ReadMessage()
		if err != nil {
			c.close("websocket closed")
			_ = ws.Close()
			return
		}
		c.handling.Lock()
		ok := c.handlePacket(string(msg))
		c.handling.Unlock()
		if !ok {
			// The session is closed: read and drop what the client still
			// sends until its answering close frame, for closeLinger at
			// most (see writeLoop).
			_ = ws.SetReadDeadline(time.Now().Add(closeLinger))
			for {
				if _, _, err := ws.ReadMessage(); err != nil {
					return
				}
			}
		}
	}
}

// closeLinger bounds how long a WebSocket stays open after the server's
// close frame, for the client's answer. Closing the socket while the
// client's data is still unread (a client flooding, say) would have the
// kernel reset the connection, and the client might never read the frames
// that say why it was closed.
const closeLinger = time.Second

// writeLoop writes queued packets to the WebSocket, one frame each, those
// taken together in one write (batchConn); after
// the session closes it writes what is left and a close frame, and closes
// the socket once the reader has ended (readDone: the client answered the
// close, or went away) or closeLinger later.
func (c *conn) writeLoop(ws *websocket.Conn, readDone <-chan struct{}) {
	defer c.srv.wg.Done()
	defer ws.Close()
	bc, _ := ws.NetConn().(*batchConn)
	for {
		c.mu.Lock()
		packets, held, feed := c.takeLocked(0)
		closed := c.closed
		code, text := c.closeCode, c.closeText
		c.mu.Unlock()
		batched := bc != nil && len(packets) > 1
		if batched {
			bc.hold()
		}
		for _, p := range packets {
			_ = ws.SetWriteDeadline(time.Now().Add(c.srv.opts.WriteTimeout))
			// The packet's bytes, not a copy: a server's gorilla writer
			// only reads them (it masks only a client's frames), and a
			// snapshot packet may be tens of megabytes.
			if err := ws.WriteMessage(websocket.TextMessage, unsafe.Slice(unsafe.StringData(p), len(p))); err != nil {
				release(held)
				c.wrote(feed)
				c.close("write failed")
				return
			}
			c.srv.sent.Add(1)
		}
		release(held)
		var err error
		if batched {
			err = bc.release()
		}
		c.wrote(feed) // written into the socket (held until bc.release)
		if err != nil {
			c.close("write failed")
			return
		}
		if closed && len(packets) == 0 {
			c.srv.forget(c) // a session closed while it upgraded lingered for a transport: this one took what was left
			if code == 0 {
				code, text = websocket.CloseGoingAway, ""
			}
			if ws.WriteControl(websocket.CloseMessage, websocket.FormatCloseMessage(code, text), time.Now().Add(time.Second)) == nil {
				linger := time.NewTimer(closeLinger)
				select {
				case <-readDone:
				case <-linger.C:
				}
				linger.Stop()
			}
			return
		}
		if closed {
			continue
		}
		select {
		case <-c.wake:
		case <-c.done:
		}
	}
}
