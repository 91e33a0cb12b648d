package socketio

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"
	"unicode/utf8"

	"github.com/gorilla/websocket"

	"github.com/framework0/ctxd"
	"github.com/framework0/ctxd/auth"
	"github.com/framework0/ctxd/internal/jsontext"
	"github.com/framework0/ctxd/internal/laggrace"
	"github.com/framework0/ctxd/internal/msglimit"
	"github.com/framework0/ctxd/internal/snapbudget"
	"github.com/framework0/ctxd/store"
)

// Socket.IO v5 packets, as Engine.IO messages ("4" + the Socket.IO packet).
const (
	sioConnect      = "40"
	sioDisconnect   = "41"
	sioEvent        = "42"
	sioAck          = "43"
	sioConnectError = "44"
)

const (
	defaultWho   = "socketio"
	readChunk    = 512
	maxNameBytes = 256
	// maxAckDigits bounds an event's ack id (clients count them up from
	// 0; 20 digits hold any uint64). A longer one is refused and not
	// echoed: an ack that repeated it was as large as the packet, and a
	// client that never read its answers held 1,024 of them.
	maxAckDigits = 20
)

// client is a Socket.IO client connected to the main namespace "/": its
// options, its position in the log, and what it registered.
type client struct {
	c      *conn
	id     string
	ns     string
	prefix string
	token  *auth.Token // nil: access control off

	// feedMu is held while the feed reads the log and queues changes, and
	// while a context_set of this client writes: the feed therefore sees
	// the client's own change only after pending[rev] is set.
	feedMu sync.Mutex
	pos    uint64 // every matching change <= pos is queued
	// skip is how many changes of revision pos+1 the client had before
	// it connected (it resumed with from_index inside that revision).
	skip    int
	base    uint64 // committed revision when the current replay started
	gen     uint64
	pending map[uint64][]ownWrite // the client's own writes, by revision: what replaces their context_updated

	// lag counts the changes after max(pos, base) for behind, and
	// lagClock follows how long the client has been more than MaxLag of
	// them behind, for LagGrace. Only the feed goroutine uses them (feed,
	// lagging, behind, step, reset).
	lag      lagCount
	lagClock laggrace.Clock
	// held is set while the feed waits with changes after its position
	// because the client's window (Window packets or WindowBytes) is
	// full: Backlog's Held.
	held atomic.Bool

	mu         sync.Mutex
	clientType string
	name       string
}

// connectOptions are the handshake options, from the CONNECT auth payload
// or the handshake's query (the payload wins).
type connectOptions struct {
	// NS is nil when the payload does not name one (then the query's, or
	// compat.namespace); "" is a bad namespace, as on /v1/watch.
	NS      *string         `json:"ns"`
	Prefix  string          `json:"prefix"`
	FromRev json.RawMessage `json:"from_rev"`
	// FromIndex, with FromRev: how many changes of that revision the
	// client has (store.ResumeFrom).
	FromIndex json.RawMessage `json:"from_index"`
	Token     string          `json:"token"`
}

// resetEvent is the reset that goes before a context_snapshot: state read
// before it is stale, for the reason why, and the snapshot that follows,
// at rev, is the state.
func resetEvent(rev uint64, why string) string {
	return event(ctxd.TypeReset, map[string]any{"rev": rev, "message": why + ": the context_snapshot that follows is the new state"})
}

// event encodes a Socket.IO EVENT packet with one argument.
func event(name string, v any) string {
	b, err := json.Marshal([]any{name, v})
	if err != nil {
		b, _ = json.Marshal([]any{ctxd.TypeError, errorPayload{Message: "encode: " + err.Error(), Code: ctxd.CodeInternal}})
	}
	return sioEvent + string(b)
}

type errorPayload struct {
	Message           string  `json:"message"`
	Code              string  `json:"code"`
	FromRev           *uint64 `json:"from_rev,omitempty"`
	FromIndex         int     `json:"from_index,omitempty"`
	CompactedRevision uint64  `json:"compacted_revision,omitempty"`
	CurrentVersion    *uint64 `json:"current_version,omitempty"`
	RetryAfterMS      int64   `json:"retry_after_ms,omitempty"`
}

func (c *conn) sendError(code, msg string) {
	c.send(event(ctxd.TypeError, errorPayload{Message: ctxd.ClipMessage(msg), Code: code}))
}

// parsePacket splits a Socket.IO packet (not empty) into its type, its
// namespace ("/" when not given), its ack id ("" when none) and its data.
func parsePacket(p string) (typ byte, nsp, ack, data string) {
	typ, rest := p[0], p[1:]
	nsp = "/"
	if strings.HasPrefix(rest, "/") {
		i := strings.IndexByte(rest, ',')
		if i < 0 {
			nsp, rest = rest, ""
		} else {
			nsp, rest = rest[:i], rest[i+1:]
		}
	}
	ackEnd := 0
	for ackEnd < len(rest) && rest[ackEnd] >= '0' && rest[ackEnd] <= '9' {
		ackEnd++
	}
	return typ, nsp, rest[:ackEnd], rest[ackEnd:]
}

// admit applies the session's rate limit to a Socket.IO packet the client
// sent, before anything else is done with it. A packet past the limit is
// not applied: the client gets an error event of code rate_limited with
// retry_after_ms (and the same as the ack, when the event asked for one),
// and its next packet is read only after that wait.
// One from a client that kept sending past it ends the session: that
// error, a DISCONNECT, then close 1008 (rate_limited) on a WebSocket. It
// returns the verdict: handle the packet only when it is Accept.
func (s *Server) admit(c *conn, p string) msglimit.Verdict {
	v, wait := c.limit.Take(time.Now())
	if v == msglimit.Accept {
		return v
	}
	c.mu.Lock()
	closed := c.closed
	c.mu.Unlock()
	if closed { // what it sends while it is being closed does not count
		return msglimit.Disconnect
	}
	s.rateLimited.Add(1)
	e := errorPayload{Code: ctxd.CodeRateLimited, RetryAfterMS: msglimit.RetryAfterMillis(wait)}
	if v == msglimit.Disconnect {
		e.Message = c.limit.DisconnectMessage()
		if c.closeWith(websocket.ClosePolicyViolation, ctxd.CodeRateLimited, &s.rateLimitClosed, append(refusal(p, e), sioDisconnect)...) {
			s.log.Warn().Str("sid", c.sid).Str("remote", c.remote).Msg("Socket.IO client disconnected: it kept sending past its rate limit")
		}
		return v
	}
	e.Message = c.limit.RefusedMessage(wait)
	c.send(refusal(p, e)...)
	// This runs in the transport's reader (the WebSocket's, or the
	// polling POST's handler): the next packet is read once the bucket
	// holds one again.
	time.Sleep(msglimit.Pause(wait))
	return v
}

// refusal is what answers a Socket.IO packet p that is not applied: an
// error event of payload e, and e as the ack when p is an event that asked
// for one (its callback would otherwise wait forever).
func refusal(p string, e errorPayload) []string {
	e.Message = ctxd.ClipMessage(e.Message)
	out := []string{event(ctxd.TypeError, e)}
	if p != "" {
		if typ, _, ack, _ := parsePacket(p); typ == '2' && ack != "" && len(ack) <= maxAckDigits {
			out = append(out, ackPacket(ack, e))
		}
	}
	return out
}

// ackPacket is the ACK packet of id ack (an event's), its one argument reply.
func ackPacket(ack string, reply any) string {
	b, _ := json.Marshal([]any{reply})
	return sioAck + ack + string(b)
}

// namespaceRefusal answers a CONNECT to namespace nsp (not "/"): its
// CONNECT_ERROR, which names nsp; one longer than maxNameBytes gets an
// error event instead, which does not. Echoed whole, a namespace as long
// as a packet made each answer as large, and a client that sent them and
// never read held 1,024 of them before the session was closed.
func namespaceRefusal(nsp string) string {
	if len(nsp) > maxNameBytes {
		return event(ctxd.TypeError, errorPayload{Code: ctxd.CodeBadRequest, Message: "a CONNECT to a namespace of " + strconv.Itoa(len(nsp)) +
			" bytes: ctxd serves the main namespace \"/\" (choose ctxd namespaces with the ns option)"})
	}
	b, _ := json.Marshal(map[string]string{"message": "Invalid namespace: ctxd serves the main namespace \"/\" (choose ctxd namespaces with the ns option)"})
	return sioConnectError + nsp + "," + string(b)
}

// handleMessage handles one Socket.IO packet from the client.
func (s *Server) handleMessage(c *conn, p string) {
	if p == "" {
		return
	}
	if int64(len(p)) > s.opts.MaxMessageBytes {
		msg := "message is " + strconv.Itoa(len(p)) + " bytes, more than websocket.max_message_bytes (" +
			strconv.FormatInt(s.opts.MaxMessageBytes, 10) + ")"
		if p[0] == '0' {
			s.connectError(c, ctxd.CodeTooLarge, msg)
			return
		}
		c.send(refusal(p, errorPayload{Code: ctxd.CodeTooLarge, Message: msg})...)
		return
	}
	if !utf8.ValidString(p) {
		// encoding/json would decode a bad byte as U+FFFD: a key the
		// client never named.
		msg := "the packet is not valid UTF-8"
		if p[0] == '0' {
			s.connectError(c, ctxd.CodeBadRequest, msg)
			return
		}
		c.send(refusal(p, errorPayload{Code: ctxd.CodeBadRequest, Message: msg})...)
		return
	}
	typ, nsp, ack, data := parsePacket(p)
	if nsp != "/" {
		if typ == '0' {
			c.send(namespaceRefusal(nsp))
		}
		return
	}
	c.mu.Lock()
	cl := c.cl
	c.mu.Unlock()
	switch typ {
	case '0':
		if cl == nil {
			s.connect(c, data)
		}
	case '1':
		c.closeByClient("client disconnected")
	case '2':
		if cl == nil {
			return
		}
		if len(ack) > maxAckDigits {
			c.sendError(ctxd.CodeBadRequest, "an event's ack id is a number of at most "+strconv.Itoa(maxAckDigits)+" digits, not "+strconv.Itoa(len(ack)))
			return
		}
		refuse := func(msg string) { c.send(refusal(p, errorPayload{Code: ctxd.CodeBadRequest, Message: msg})...) }
		if err := ctxd.CheckSurrogates([]byte(data)); err != nil {
			refuse("the event: " + err.Error())
			return
		}
		var args []json.RawMessage
		if err := json.Unmarshal([]byte(data), &args); err != nil {
			refuse("an event is a JSON array [name, data]: " + ctxd.DecodeErrorMessage(err))
			return
		}
		if len(args) == 0 {
			refuse("an event is a JSON array [name, data]")
			return
		}
		var name string
		if err := json.Unmarshal(args[0], &name); err != nil {
			refuse("an event's name must be a string")
			return
		}
		var arg json.RawMessage
		if len(args) > 1 {
			arg = args[1]
		}
		reply := s.onEvent(cl, name, arg)
		if ack != "" && reply != nil {
			c.send(ackPacket(ack, reply))
		}
	case '3': // an ACK: the server sends no event that asks for one
	case '5', '6':
		c.sendError(ctxd.CodeBadRequest, "binary Socket.IO packets are not supported: send JSON")
	default:
		c.sendError(ctxd.CodeBadRequest, "unknown Socket.IO packet type "+strconv.Quote(string(typ))+
			": send CONNECT (0), DISCONNECT (1) or EVENT (2)")
	}
}

// connect answers a CONNECT to "/": the token is checked, the options
// read, and the client gets its snapshot (or its replay from from_rev) and
// follows the log from then on.
func (s *Server) connect(c *conn, data string) {
	var o connectOptions
	if strings.TrimSpace(data) != "" {
		if err := ctxd.CheckSurrogates([]byte(data)); err != nil {
			s.connectError(c, ctxd.CodeBadRequest, "the auth payload: "+err.Error())
			return
		}
		if err := json.Unmarshal([]byte(data), &o); err != nil {
			s.connectError(c, ctxd.CodeBadRequest, "the auth payload must be a JSON object: "+ctxd.DecodeErrorMessage(err))
			return
		}
	}
	q := func(name string, v *string) {
		if *v == "" {
			if vs := c.query[name]; len(vs) > 0 {
				*v = vs[0]
			}
		}
	}
	q("prefix", &o.Prefix)
	fromRev, fromIndex := c.option(o.FromRev, "from_rev"), c.option(o.FromIndex, "from_index")
	cl := &client{c: c, id: "s" + strconv.FormatUint(s.nextID.Add(1), 10), ns: s.opts.Namespace, prefix: o.Prefix, pending: map[uint64][]ownWrite{}}
	// Without ns the client sees compat.namespace (/ctx's); an empty one
	// is refused below, as /v1/watch refuses ns=.
	if o.NS != nil {
		cl.ns = *o.NS
	} else if vs := c.query["ns"]; len(vs) > 0 {
		cl.ns = vs[0]
	}
	if err := ctxd.ValidateNamespace(cl.ns); err != nil {
		s.connectError(c, ctxd.CodeBadRequest, "ns: "+err.Error())
		return
	}
	if err := ctxd.ValidatePrefix(cl.prefix); err != nil {
		s.connectError(c, ctxd.CodeBadRequest, err.Error())
		return
	}
	if s.opts.Access != nil {
		secret := o.Token
		if secret == "" {
			secret = c.secret
		}
		t := s.opts.Access.Authenticate(secret)
		if t != nil {
			c.mu.Lock()
			c.token = t
			c.mu.Unlock()
		}
		if t == nil && secret == "" {
			s.connectError(c, ctxd.CodeUnauthorized, "this server needs an access token: pass it as auth={'token': ...}, Authorization: Bearer, or ?token=")
			return
		}
		if code, msg := connectRefusal(t, cl.ns); code != "" {
			s.connectError(c, code, msg)
			return
		}
		cl.token = t
	}
	cl.gen = s.st.Generation()
	var (
		first []string
		grant *snapbudget.Grant // the snapshot's, until queued with it
	)
	defer func() { grant.Release() }()
	if fromIndex != "" && fromRev == "" {
		s.connectError(c, ctxd.CodeBadRequest, "from_index needs from_rev: it counts changes of that revision")
		return
	}
	var (
		n     uint64  // from_rev
		index *uint64 // from_index
	)
	if fromRev != "" {
		var err error
		if n, err = strconv.ParseUint(fromRev, 10, 64); err != nil {
			s.connectError(c, ctxd.CodeBadRequest, "from_rev must be a revision number; got "+strconv.Quote(fromRev))
			return
		}
		if fromIndex != "" {
			i, err := strconv.ParseUint(fromIndex, 10, 64)
			if err != nil {
				s.connectError(c, ctxd.CodeBadRequest, "from_index must be how many changes of revision from_rev you have (the index of the last one + 1); got "+strconv.Quote(fromIndex))
				return
			}
			index = &i
		}
	}
	// A database that never had from_rev: the client gets the state (its
	// context_snapshot), told why, as after a restore.
	ahead := fromRev != "" && store.Ahead(s.st, n, index)
	if ahead {
		fromRev = ""
	}
	if fromRev != "" {
		var err error
		// A from_rev after this instance's revision is accepted, as on
		// /v1/watch: on etcd another instance may have served it (the
		// changes after it come as they are committed).
		cl.pos, cl.skip, err = store.ResumeFrom(s.st, n, index)
		if err != nil {
			var ce *ctxd.CompactedError
			if !errors.As(err, &ce) {
				s.connectError(c, ctxd.CodeInternal, "from_rev: "+err.Error())
				return
			}
			// Connected, told, disconnected: as a lagged client.
			c.mu.Lock()
			c.cl = cl
			c.mu.Unlock()
			from := n
			// With the DISCONNECT (do not come back): a client that
			// reconnected with the same from_rev would be cut again, and
			// again, at its backoff's pace.
			c.send(sioConnect+`{"sid":"`+cl.id+`"}`, event(ctxd.TypeError, errorPayload{
				Code: ctxd.CodeCompacted, FromRev: &from, CompactedRevision: ce.Compacted,
				Message: "the changes after from_rev " + fromRev + " are no longer in history (compacted up to " +
					strconv.FormatUint(ce.Compacted, 10) + "): reconnect without from_rev to get the current state",
			}), sioDisconnect)
			c.close("compacted")
			return
		}
	} else {
		snap, rev, g, err := s.snapshot(cl)
		if err != nil {
			s.connectError(c, errorCode(err), "snapshot: "+err.Error())
			return
		}
		cl.pos, grant = rev, g
		if ahead {
			reason := store.AheadReason(n, rev)
			s.log.Warn().Str("client_id", cl.id).Str("remote", c.remote).Msg(reason + ": Socket.IO client told to reset")
			first = append(first, resetEvent(rev, reason))
		}
		first = append(first, snap)
	}
	cl.base, _ = s.st.Committed()
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		s.connectError(c, ctxd.CodeUnavailable, errShuttingDown.Error())
		return
	}
	s.clients[cl] = struct{}{}
	s.wg.Add(1) // the feed; s.closed is false, so Close has not started waiting
	s.mu.Unlock()
	c.mu.Lock()
	if c.closed { // gone meanwhile: close did not see cl
		c.mu.Unlock()
		s.mu.Lock()
		delete(s.clients, cl)
		s.mu.Unlock()
		s.wg.Done()
		return
	}
	c.cl = cl
	c.mu.Unlock()
	s.connected(c)
	c.sendHeld(grant, append([]string{sioConnect + `{"sid":"` + cl.id + `"}`}, first...)...)
	grant = nil
	pos := cl.pos
	go cl.feed()
	if cl.token.Revoked() { // revoked by a reload that did not see cl
		cl.revoke()
		return
	}
	s.broadcastStats()
	s.log.Debug().Str("client_id", cl.id).Str("remote", c.remote).Str("ns", cl.ns).Uint64("from_rev", pos).Msg("Socket.IO client connected")
}

// option is a handshake option that is a number: from the auth payload
// (a JSON number or string), else from the handshake's query; "" when
// neither gives it.
func (c *conn) option(raw json.RawMessage, name string) string {
	if v := strings.Trim(string(raw), `"`); v != "" && v != "null" {
		return v
	}
	if vs := c.query[name]; len(vs) > 0 {
		return vs[0]
	}
	return ""
}

// connectRefusal is the code and message of the CONNECT_ERROR that
// refuses a client of namespace ns with token t (nil: a secret no token
// has), "" when t may connect. A revoked token's clients are told to come
// back only when its successor would not be refused (revoke).
func connectRefusal(t *auth.Token, ns string) (code, msg string) {
	switch {
	case t == nil:
		return ctxd.CodeUnauthorized, "the access token is not valid (unknown or revoked)"
	case !t.Has(auth.RoleRead) || !t.SeesNamespace(ns):
		return ctxd.CodeForbidden, "namespace " + strconv.Quote(ns) + " may not be watched with " + t.Describe()
	}
	return "", ""
}

func (s *Server) connectError(c *conn, code, msg string) {
	b, _ := json.Marshal(map[string]any{"message": ctxd.ClipMessage(msg), "data": map[string]string{"code": code}})
	c.send(sioConnectError + string(b))
}

// errorCode is err's code in the one error table, internal when it is
// none of the data model's errors.
func errorCode(err error) string {
	if _, code, ok := ctxd.Classify(err); ok {
		return code
	}
	return ctxd.CodeInternal
}

// snapshot reads the client's namespace (and prefix) at one revision, as
// the context_snapshot event: Framework0's {context, timestamp,
// client_id}, plus ns, prefix (when given) and the revision it is at. It
// first waits (until the session ends) for room in the snapshot budget;
// the grant it returns holds the event's size, for the caller to queue
// with it (conn.sendHeld).
//
// The event is written straight into one buffer as the store gives the
// keys, in their order: a map of the values marshalled by encoding/json
// cost 8 to 11 times the context's size at its peak (the values, the
// map, the encoder's growing buffer, its copy, the string, the packet).
func (s *Server) snapshot(cl *client) (string, uint64, *snapbudget.Grant, error) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go func() {
		select {
		case <-cl.c.done:
			cancel()
		case <-ctx.Done():
		}
	}()
	g, err := s.opts.SnapshotBudget.Acquire(ctx, int64(s.opts.MaxSnapshotBytes))
	if err != nil {
		return "", 0, nil, fmt.Errorf("%w: the session ended while its snapshot waited for room: %w", ctxd.ErrUnavailable, err)
	}
	var (
		rev   uint64
		total int
		b     chunks
	)
	b.append(sioEvent + `["` + ctxd.TypeContextSnapshot + `",{"context":{`)
	first := true
	err = s.st.View(func(v store.View) error {
		rev = v.Revision()
		return v.ForEach(cl.ns, cl.prefix, func(r ctxd.Record) error {
			if !cl.token.CanRead(r.Namespace, r.Key) {
				return nil
			}
			if total += len(r.Key) + len(r.Value); total > s.opts.MaxSnapshotBytes {
				return ctxd.TooLargef("the context of namespace %s is more than websocket.max_snapshot_bytes (%d bytes): "+
					"connect with a prefix, or read the keys over REST and resume with from_rev", cl.ns, s.opts.MaxSnapshotBytes)
			}
			c := b.room(len(r.Key) + len(r.Value) + 16)
			if !first {
				c = append(c, ',')
			}
			first = false
			c = jsontext.AppendString(c, r.Key)
			c = append(c, ':')
			if len(r.Value) == 0 {
				c = append(c, "null"...)
			} else {
				c = append(c, r.Value...)
			}
			b.done(c)
			return nil
		})
	})
	if err != nil {
		g.Release()
		return "", 0, nil, err
	}
	c := b.room(256 + len(cl.id) + len(cl.ns) + len(cl.prefix))
	c = append(c, `},"timestamp":`...)
	c = jsontext.AppendTime(c, time.Now().UTC())
	c = append(c, `,"client_id":`...)
	c = jsontext.AppendString(c, cl.id)
	c = append(c, `,"ns":`...)
	c = jsontext.AppendString(c, cl.ns)
	if cl.prefix != "" {
		c = append(c, `,"prefix":`...)
		c = jsontext.AppendString(c, cl.prefix)
	}
	c = append(c, `,"rev":`...)
	c = strconv.AppendUint(c, rev, 10)
	c = append(c, "}]"...)
	b.done(c)
	p := b.String()
	g.Shrink(int64(len(p)))
	return p, rev, g, nil
}

// chunks builds a large string without regrowing it: a slice that grows
// by append reallocates and copies at every step (by a quarter, for large
// ones), in all about five times its final size; chunks of chunkBytes
// are filled in turn and copied once, into the string, at the end.
type chunks struct {
	full [][]byte
	cur  []byte
	n    int
}

const chunkBytes = 256 << 10

// room returns the current chunk with room for about n more bytes (an
// estimate: going past it only grows the chunk); the caller appends to it
// and hands it back to done.
func (b *chunks) room(n int) []byte {
	if cap(b.cur)-len(b.cur) < n {
		if len(b.cur) > 0 {
			b.full = append(b.full, b.cur)
		}
		b.cur = make([]byte, 0, max(chunkBytes, n))
	}
	return b.cur
}

func (b *chunks) done(c []byte) { b.n += len(c) - len(b.cur); b.cur = c }

func (b *chunks) append(s string) { b.done(append(b.room(len(s)), s...)) }

// String is everything appended, in one string.
func (b *chunks) String() string {
	var out strings.Builder
	out.Grow(b.n)
	for _, c := range b.full {
		out.Write(c)
	}
	out.Write(b.cur)
	return out.String()
}

// statsPayload is client_stats: Framework0's {count}, both doors together.
type statsPayload struct {
	Count          int       `json:"count"`
	SocketIO       int       `json:"socketio_clients"`
	Watch          int       `json:"watch_clients"`
	Timestamp      time.Time `json:"timestamp"`
	ConnectedTotal int       `json:"connected_clients"`
}

func (s *Server) stats() statsPayload {
	sio, watch := s.Clients(), s.opts.OtherClients()
	return statsPayload{Count: sio + watch, SocketIO: sio, Watch: watch, ConnectedTotal: sio + watch, Timestamp: time.Now().UTC()}
}

// broadcastStats sends client_stats to every client.
func (s *Server) broadcastStats() {
	p := event(ctxd.TypeClientStats, s.stats())
	for _, cl := range s.allClients() {
		cl.c.send(p)
	}
}

// NotifyDumped sends context_dumped to the clients whose token may read
// the dumped namespace whole.
func (s *Server) NotifyDumped(ns string, info any) {
	p := event(ctxd.TypeContextDumped, info)
	for _, cl := range s.allClients() {
		if cl.token.CanReadPrefix(ns, "") {
			cl.c.send(p)
		}
	}
}

// updateEvent encodes context_updated: Framework0's {key, value, who,
// timestamp}, plus ns, op, version and rev (and expires_at, expired for
// expiring keys; index and count, the change's place among the changes
// of its revision, when there are several, as on /v1/watch: a client
// resumes inside the revision with from_index). It is on every client's feed
// path, so it appends the JSON by hand with internal/jsontext (as the
// hub's appendChange does) instead of json.Marshal's reflection.
func updateEvent(ch *ctxd.Change, idx, count int) string {
	b := make([]byte, 0, 160+len(ch.Key)+len(ch.Value)+len(ch.Who)+len(ch.Namespace))
	b = append(b, sioEvent+`["`+ctxd.TypeContextUpdated+`",{"key":`...)
	b = jsontext.AppendString(b, ch.Key)
	b = append(b, `,"value":`...)
	if ch.Op == ctxd.OpDelete || len(ch.Value) == 0 {
		b = append(b, "null"...)
	} else {
		b = append(b, ch.Value...)
	}
	b = append(b, `,"who":`...)
	b = jsontext.AppendString(b, ch.Who)
	b = append(b, `,"timestamp":`...)
	b = jsontext.AppendTime(b, ch.Time.UTC())
	b = append(b, `,"ns":`...)
	b = jsontext.AppendString(b, ch.Namespace)
	b = append(b, `,"op":"`...)
	b = append(b, ch.Op.String()...)
	b = append(b, `","version":`...)
	b = strconv.AppendUint(b, ch.Version, 10)
	b = append(b, `,"rev":`...)
	b = strconv.AppendUint(b, ch.Revision, 10)
	if count > 1 {
		b = append(b, `,"index":`...)
		b = strconv.AppendInt(b, int64(idx), 10)
		b = append(b, `,"count":`...)
		b = strconv.AppendInt(b, int64(count), 10)
	}
	if !ch.ExpiresAt.IsZero() {
		b = append(b, `,"expires_at":`...)
		b = jsontext.AppendTime(b, ch.ExpiresAt.UTC())
	}
	if ch.Expired {
		b = append(b, `,"expired":true`...)
	}
	return string(append(b, "}]"...))
}

func (cl *client) matches(ch *ctxd.Change) bool {
	return ch.Namespace == cl.ns && strings.HasPrefix(ch.Key, cl.prefix) && cl.token.CanRead(ch.Namespace, ch.Key)
}

// feed follows the store's committed mark: it reads the changes after the
// client's position, in revision order, and queues those the client
// matches, at most Window packets and WindowBytes ahead of its
// transport. The one mechanism of /v1/watch (positions over the log),
// with one goroutine per client instead of the hub's shared loop and
// ring.
func (cl *client) feed() {
	s, c := cl.c.srv, cl.c
	defer s.wg.Done()
	// A feed that ended (lagged, compacted, the session closed) holds
	// nothing back, though its session may linger for a polling client
	// to take what is queued (Backlog's Held).
	defer cl.held.Store(false)
	// graceOver fires when a lagging client's LagGrace runs out: it is
	// looked at again then, even if nothing else happens.
	graceTimer := time.NewTimer(time.Hour)
	graceTimer.Stop()
	defer graceTimer.Stop()
	var graceOver <-chan time.Time
	for {
		rev, changed := s.st.Committed()
		if g := s.st.Generation(); g != cl.gen {
			if !cl.reset(g) {
				return
			}
			continue
		}
		if from := max(cl.pos, cl.base); rev > from && cl.mayLag(rev-from) {
			wasBehind := cl.lagClock.Behind()
			end, cut := cl.lagging(from, rev)
			if cut {
				return
			}
			if !wasBehind && !end.IsZero() {
				graceTimer.Reset(time.Until(end))
				graceOver = graceTimer.C
			}
		} else {
			cl.lagClock.Reset()
		}
		if !cl.lagClock.Behind() && graceOver != nil {
			graceTimer.Stop()
			graceOver = nil
		}
		room, roomBytes := c.room()
		if rev > cl.pos && room > 0 && roomBytes > 0 {
			cl.held.Store(false)
			if !cl.step(rev, min(room, readChunk), roomBytes) {
				return
			}
			continue
		}
		var space <-chan struct{}
		if rev > cl.pos {
			space = c.space
		}
		cl.held.Store(space != nil)
		select {
		case <-changed:
		case <-space:
		case <-graceOver:
			graceOver = nil
		case <-c.done:
			return
		}
	}
}

// mayLag reports whether revs revisions after the client's position may
// hold more than MaxLag changes, which only counting them tells: on
// bolt each change has its own revision, on etcd a transaction's share
// one (store.Feed's ChangesPerRevision). Closer than that, the client is
// not counted: most clients are a few revisions behind at any wake.
func (cl *client) mayLag(revs uint64) bool {
	s := cl.c.srv
	return revs > s.opts.MaxLag/max(s.st.ChangesPerRevision(), 1)
}

// lagging disconnects the client ("lagged") when more than MaxLag
// changes have been after its position for LagGrace, and reports whether
// it did; end is when the grace of a client behind ends (laggrace.Clock).
func (cl *client) lagging(from, rev uint64) (end time.Time, cut bool) {
	s := cl.c.srv
	end, cut = cl.lagClock.Check(cl.behind(from, rev) > s.opts.MaxLag, time.Now(), s.opts.LagGrace)
	if cut {
		cl.lagged(rev)
	}
	s.lagChecks.Add(1) // after lagged: a test that sees the check sees its verdict
	return end, cut
}

// lagCount is how many changes are after a client's position, counted
// one by one: on etcd revisions skip the numbers of other prefixes of the
// cluster and several changes share one, so the distance in revisions is
// not lag. The count is kept between the feed's wakes and follows the
// position as step moves it, so that each change is read for it at most
// once: a slow client that a busy neighbour keeps more than MaxLag
// revisions behind is checked at every wake, and re-reading the changes
// after its position each time was O(lag) log reads per change.
type lagCount struct {
	from uint64 // the position counted from: max(pos, base)
	to   uint64 // every change with a revision in (from, to] is counted
	n    uint64 // how many there are
}

// restart counts from position from, nothing counted yet.
func (l *lagCount) restart(from uint64) { *l = lagCount{from: from, to: from} }

// advance follows the position from l.from to from: read holds every
// change after the old position up to the new one (what step read), and
// those counted leave the count. Nothing is read again: a position past
// all that was counted starts afresh there.
func (l *lagCount) advance(from uint64, read []ctxd.Change) {
	switch {
	case from <= l.from: // still inside the replay before base
	case from >= l.to:
		l.restart(from)
	default:
		for i := range read {
			if r := read[i].Revision; r > l.from && r <= from {
				l.n--
			}
		}
		l.from = from
	}
}

// behind counts the changes after from (the committed revision is rev),
// up to MaxLag+1, reading only those after what it counted before. The
// changes of revision pos+1 the client had before it connected (skip)
// are not counted when from_rev was at most the committed revision at
// connect (then pos+1 <= base, so from is base); after it (another etcd
// instance served it), they are: at most from_index too many. A read that fails
// counts as too far behind (the client is cut and resumes).
func (cl *client) behind(from, rev uint64) uint64 {
	s, l := cl.c.srv, &cl.lag
	if l.from != from { // the first count, or after a reset
		l.restart(from)
	}
	for l.n <= s.opts.MaxLag && l.to < rev {
		limit := int(min(s.opts.MaxLag+1-l.n, 1<<20))
		changes, err := s.st.ReadLog(l.to, limit)
		if err != nil {
			return s.opts.MaxLag + 1
		}
		s.lagRead.Add(uint64(len(changes)))
		l.n += uint64(len(changes))
		if len(changes) > 0 {
			l.to = changes[len(changes)-1].Revision
		}
		if len(changes) < limit {
			// Not cut by its limit: the log has nothing more up to the
			// committed mark, which was at least rev (as in step).
			l.to = max(l.to, rev)
		}
	}
	return l.n
}

// step queues the changes after the position, up to n, and stops after
// the one that brings their packets to roomBytes (inside a revision, if
// need be: the cursor is then (revision-1, skip)); false: the client was
// disconnected.
func (cl *client) step(rev uint64, n, roomBytes int) bool {
	s, c := cl.c.srv, cl.c
	cl.feedMu.Lock()
	defer cl.feedMu.Unlock()
	changes, err := s.st.ReadLog(cl.pos, n)
	if err != nil {
		var ce *ctxd.CompactedError
		from := cl.pos
		p := errorPayload{Code: ctxd.CodeInternal, Message: "reading the log: " + err.Error(), FromRev: &from}
		if errors.As(err, &ce) {
			p.Code, p.CompactedRevision = ctxd.CodeCompacted, ce.Compacted
			p.Message = "the changes after revision " + strconv.FormatUint(from, 10) + " are no longer in history: reconnect without from_rev"
		}
		c.closeComeBack(p.Code, event(ctxd.TypeError, p))
		return false
	}
	out := packets{list: make([]string, 0, len(changes))}
	// A page holds whole revisions: each change's place and the size of
	// its revision are known.
	full := false // out reached roomBytes: the rest waits for room
	for first := 0; first < len(changes) && !full; {
		end := ctxd.RevisionEnd(changes, first)
		full = !cl.queueRevision(changes[first:end], &out, roomBytes)
		first = end
	}
	if !full && len(changes) < n && cl.pos < rev {
		cl.pos, cl.skip = rev, 0 // revisions the log never had (a restore's floor)
	}
	cl.lag.advance(max(cl.pos, cl.base), changes)
	if len(out.list) > 0 {
		return c.sendChanges(out.list...)
	}
	return true
}

// packets are what the feed queues for a client in one go, and their
// size in bytes.
type packets struct {
	list []string
	size int
}

func (p *packets) add(s string) { p.list, p.size = append(p.list, s), p.size+len(s) }

// queueRevision adds to out the packets of revision, every change of
// one revision (the next after the position), from the cursor on, and
// moves the cursor past them. It stops after the change that brings out
// to roomBytes (roomBytes < 0: never), and then reports false: the
// cursor is inside the revision, (revision-1, skip), unless that change
// was its last.
func (cl *client) queueRevision(revision []ctxd.Change, out *packets, roomBytes int) bool {
	count, r := len(revision), revision[0].Revision
	skip := 0
	if r == cl.pos+1 {
		// Had before it connected (from_index), or queued before the
		// window's bytes ran out inside this revision.
		skip = min(cl.skip, count)
	}
	for i := range skip {
		// Had before it connected, but its own write's confirmation is
		// still owed (it claimed a revision no instance had served, and
		// wrote into it).
		if confirm, ok := cl.takeOwn(&revision[i], i, count); ok {
			out.add(confirm)
		}
	}
	for i := skip; i < count; i++ {
		ch := &revision[i]
		if confirm, ok := cl.takeOwn(ch, i, count); ok {
			out.add(confirm)
		} else if cl.matches(ch) {
			out.add(updateEvent(ch, i, count))
		}
		if roomBytes >= 0 && out.size >= roomBytes {
			if i+1 < count {
				// Inside the revision: every change before it is queued
				// (the log has none between the last revision and it),
				// and the first i+1 of its own.
				cl.pos, cl.skip = r-1, i+1
			} else {
				cl.pos, cl.skip = r, 0
			}
			return false
		}
	}
	cl.pos, cl.skip = r, 0
	return true
}

// ownWrite is a context_set of the client that the feed has not reached:
// its confirmation takes the place of that key's change in its revision.
type ownWrite struct {
	ns, key string
	payload map[string]any // also the ack's: read only
}

// confirm is the context_set_confirmed event of w, the change at index idx
// of a revision of count changes (with index and count when count > 1,
// as context_updated).
func (w ownWrite) confirm(idx, count int) string {
	p := w.payload
	if count > 1 {
		p = maps.Clone(p)
		p["index"], p["count"] = idx, count
	}
	return event(ctxd.TypeContextSetConfirmed, p)
}

// takeOwn returns the confirmation that replaces ch, the change at index
// idx of its revision of count changes, when ch is the client's own
// write. Other changes of the same revision (other writers' context_set
// committed with it) are not: they go as context_updated.
func (cl *client) takeOwn(ch *ctxd.Change, idx, count int) (string, bool) {
	ws := cl.pending[ch.Revision]
	for i, w := range ws {
		if w.ns == ch.Namespace && w.key == ch.Key {
			if len(ws) == 1 {
				delete(cl.pending, ch.Revision)
			} else {
				cl.pending[ch.Revision] = slices.Delete(ws, i, i+1)
			}
			return w.confirm(idx, count), true
		}
	}
	return "", false
}

// lagged disconnects a client that fell more than MaxLag changes behind:
// everything it matched up to its position is queued before the error,
// then its transport ends. The position is a revision's end, as on
// /v1/watch, so that from_rev alone resumes the client exactly
// (Framework0's clients know nothing of from_index): a client inside a
// revision (its window in bytes ran out there, or it resumed there with
// from_index) gets the rest of that revision first, past its window
// (finishRevision).
func (cl *client) lagged(rev uint64) {
	s, c := cl.c.srv, cl.c
	cl.feedMu.Lock()
	defer cl.feedMu.Unlock()
	last := cl.finishRevision()
	from, index := cl.pos, 0
	if cl.skip > 0 { // finishRevision could not read the revision
		from, index = cl.pos+1, cl.skip
	}
	s.lagged.Add(1)
	s.log.Warn().Str("client_id", cl.id).Uint64("from_rev", from).Int("from_index", index).Int("finished", len(last)).Uint64("rev", rev).Msg("Socket.IO client lagged: disconnected")
	resume := "from_rev=" + strconv.FormatUint(from, 10)
	if index > 0 {
		resume += " and from_index=" + strconv.Itoa(index)
	}
	why := "this client fell more than websocket.max_lag (" + strconv.FormatUint(s.opts.MaxLag, 10) + ") changes behind"
	if s.opts.LagGrace > 0 {
		why += " for websocket.lag_grace (" + s.opts.LagGrace.String() + ")"
	}
	// No DISCONNECT: the transport ends (closeComeBack), so that a client
	// with reconnection on comes back by itself, with a new snapshot.
	last = append(last, event(ctxd.TypeError, errorPayload{Code: ctxd.CodeLagged, FromRev: &from, FromIndex: index,
		Message: why + ": reconnect with " + resume + " to resume without a gap"}))
	c.closeComeBack("lagged", last...)
}

// finishRevision returns the packets of the rest of the revision the
// cursor is inside, (pos, skip > 0), and moves the cursor to its end.
// They go with the lagged error, past the window: the session ends, and
// what they hold is at most the rest of one revision, which the
// transaction's bounds bound (realtime/DESIGN.md, "The Socket.IO door").
// When the log does not show that revision (an etcd instance that has not
// seen the revision a client resumed inside yet) or the read fails, the
// cursor stays, and lagged names it with from_index.
func (cl *client) finishRevision() []string {
	if cl.skip == 0 {
		return nil
	}
	changes, err := cl.c.srv.st.ReadLog(cl.pos, 1) // one revision: a page never ends inside one
	if err != nil || len(changes) == 0 {
		return nil
	}
	var out packets
	cl.queueRevision(changes[:ctxd.RevisionEnd(changes, 0)], &out, -1)
	return out.list
}

// revoke disconnects a client whose token was revoked by a reload: an
// error event of code token_revoked, then close 1008 on a WebSocket.
// Changes it may no longer read were not queued (matches).
//
// Whether the client should come back depends on what its CONNECT would
// get now. When the token's secret still opens a token that may watch
// the client's namespace (its rights changed), the transport just ends
// (comeBack, as for lagged): python-socketio and the JavaScript client
// reconnect by themselves, with the same auth, and get the new rights
// and a new snapshot. When it would be refused (the token was removed,
// or may no longer watch the namespace), a Socket.IO DISCONNECT comes
// before the close: it tells those clients not to come back, where
// python-socketio 5 would retry a refused CONNECT for good.
func (cl *client) revoke() {
	s, c := cl.c.srv, cl.c
	msg := "token " + strconv.Quote(cl.token.Name) + " was revoked by a reload of the tokens file: "
	code, refused := connectRefusal(s.opts.Access.Successor(cl.token), cl.ns)
	comeBack := code == ""
	switch {
	case comeBack:
		msg += "its rights changed; reconnect with it for its new rights (without from_rev, a new context_snapshot)"
	case code == ctxd.CodeUnauthorized:
		msg += "it was removed, and is refused from now on"
	default:
		msg += "its rights changed, and a reconnection is refused: " + refused
	}
	last := []string{event(ctxd.TypeError, errorPayload{Code: ctxd.CodeTokenRevoked, Message: msg})}
	if !comeBack {
		last = append(last, sioDisconnect)
	}
	how := endForGood
	if comeBack {
		how = endComeBack
	}
	if c.end(websocket.ClosePolicyViolation, ctxd.CodeTokenRevoked, &s.revoked, how, last...) {
		s.log.Info().Str("client_id", cl.id).Str("remote", c.remote).Str("token", cl.token.Name).Bool("come_back", comeBack).Msg("Socket.IO client disconnected: its token was revoked")
	}
}

// reset follows a restore: the client gets "reset" and a new snapshot,
// and follows the log from the snapshot's revision.
func (cl *client) reset(gen uint64) bool {
	s, c := cl.c.srv, cl.c
	cl.feedMu.Lock()
	defer cl.feedMu.Unlock()
	var own []string
	for _, ws := range cl.pending { // writes before the restore: confirmed now
		for _, w := range ws {
			own = append(own, w.confirm(0, 1))
		}
	}
	clear(cl.pending)
	snap, rev, g, err := s.snapshot(cl)
	if err != nil {
		// The restore is told all the same (a snapshot over
		// max_snapshot_bytes, say): the client must not take what it
		// holds for current. The error says why no snapshot follows.
		rev, _ = s.st.Committed()
		own = append(own,
			event(ctxd.TypeReset, map[string]any{"rev": rev, "message": "the data was restored from a snapshot: the error that follows says why no context_snapshot comes"}),
			event(ctxd.TypeError, errorPayload{Code: errorCode(err), Message: ctxd.ClipMessage("snapshot after a restore: " + err.Error())}))
		c.closeWith(0, "reset failed", nil, own...)
		return false
	}
	cl.gen, cl.pos, cl.skip, cl.base = gen, rev, 0, rev
	cl.lag.restart(rev) // the log before rev is another one now
	own = append(own, resetEvent(rev, "the data was restored from a snapshot"), snap)
	return c.sendHeld(g, own...)
}

// onEvent handles an event; its result (when not nil) answers an ack.
func (s *Server) onEvent(cl *client, name string, arg json.RawMessage) any {
	switch name {
	case ctxd.TypeContextSet:
		return s.contextSet(cl, arg)
	case ctxd.TypeClientRegister:
		var m struct {
			Type       string `json:"type"`
			ClientType string `json:"client_type"`
			Name       string `json:"name"`
		}
		if len(arg) > 0 {
			if err := json.Unmarshal(arg, &m); err != nil {
				return cl.fail(ctxd.CodeBadRequest, "client_register: the data must be an object {type, name}: "+ctxd.DecodeErrorMessage(err))
			}
		}
		if m.Type == "" {
			m.Type = m.ClientType
		}
		if m.Type == "" {
			m.Type = "unknown"
		}
		for _, err := range []error{ctxd.ValidateClientName("type", m.Type), ctxd.ValidateClientName("name", m.Name)} {
			if err != nil {
				return cl.fail(ctxd.CodeBadRequest, "client_register: "+err.Error())
			}
		}
		cl.mu.Lock()
		cl.clientType, cl.name = m.Type, m.Name
		cl.mu.Unlock()
		p := map[string]any{"client_id": cl.id, "type": m.Type, "name": m.Name, "status": "success", "timestamp": time.Now().UTC()}
		cl.c.send(event(ctxd.TypeRegistrationConfirmed, p))
		return p
	case ctxd.TypeClientStats:
		p := s.stats()
		cl.c.send(event(ctxd.TypeClientStats, p))
		return p
	default:
		return cl.fail(ctxd.CodeUnknownType, "unknown event "+strconv.Quote(name)+": use context_set, client_register or client_stats")
	}
}

func (cl *client) fail(code, msg string) any {
	p := errorPayload{Message: ctxd.ClipMessage(msg), Code: code}
	cl.c.send(event(ctxd.TypeError, p))
	return p
}

// contextSet writes {key, value, who} (ns: the client's namespace unless
// given; if_version: compare-and-swap) durably. The sender gets
// context_set_confirmed in place of its own change's context_updated, at
// that change's place in the revision order (as Framework0, which skips the
// sender); the others get context_updated.
func (s *Server) contextSet(cl *client, arg json.RawMessage) any {
	var m struct {
		NS        string          `json:"ns"`
		Key       string          `json:"key"`
		Value     json.RawMessage `json:"value"`
		Who       string          `json:"who"`
		IfVersion *uint64         `json:"if_version"`
	}
	if len(arg) == 0 {
		return cl.fail(ctxd.CodeBadRequest, "context_set: the data must be an object {key, value, who}")
	}
	// Unknown fields are refused, as on /v1/watch and in the REST API's
	// bodies: a misspelt "if_version" must not turn a compare-and-swap
	// into a plain write.
	if err := ctxd.DecodeStrict(arg, &m); err != nil {
		return cl.fail(ctxd.CodeBadRequest, "context_set: the data must be an object {key, value, who}: "+err.Error())
	}
	if err := ctxd.CheckDuplicateMembers(arg, "value"); err != nil {
		return cl.fail(ctxd.CodeBadRequest, "context_set: "+strings.TrimPrefix(err.Error(), ctxd.ErrInvalid.Error()+": "))
	}
	if m.NS == "" {
		m.NS = cl.ns
	}
	if m.Key == "" {
		return cl.fail(ctxd.CodeBadRequest, `context_set: "key" is missing or empty`)
	}
	if m.Value == nil {
		return cl.fail(ctxd.CodeBadRequest, `context_set: "value" is missing (use null for null)`)
	}
	if !cl.token.CanWrite(m.NS, m.Key) {
		return cl.fail(ctxd.CodeForbidden, "context_set: "+m.NS+"/"+strconv.Quote(m.Key)+" may not be written with "+cl.token.Describe())
	}
	if m.Who == "" {
		cl.mu.Lock()
		m.Who = cl.name
		cl.mu.Unlock()
	}
	m.Who = cl.token.Author(m.Who, defaultWho)
	ctx, cancel := context.WithTimeout(context.Background(), s.opts.WriteTimeout)
	defer cancel()
	cl.feedMu.Lock()
	defer cl.feedMu.Unlock()
	rec, err := s.st.Put(ctx, m.NS, m.Key, bytes.TrimSpace(m.Value), m.IfVersion, m.Who)
	if err != nil {
		_, code, known := ctxd.Classify(err)
		msg := err.Error()
		if !known {
			code, msg = ctxd.CodeInternal, "context_set: internal error"
			s.log.Error().Err(err).Msg("Socket.IO context_set failed")
		}
		p := errorPayload{Message: ctxd.ClipMessage(msg), Code: code}
		var ce *ctxd.ConflictError
		if errors.As(err, &ce) {
			cur := ce.Current
			p.CurrentVersion = &cur
		}
		cl.c.send(event(ctxd.TypeError, p))
		return p
	}
	p := map[string]any{"key": rec.Key, "value": rec.Value, "status": "success",
		"ns": rec.Namespace, "who": rec.Who, "version": rec.Version, "rev": rec.ModRev, "timestamp": rec.UpdatedAt.UTC()}
	own := ownWrite{ns: rec.Namespace, key: rec.Key, payload: p}
	if rec.ModRev > cl.pos {
		cl.pending[rec.ModRev] = append(cl.pending[rec.ModRev], own)
	} else {
		cl.c.send(own.confirm(0, 1))
	}
	return p
}
