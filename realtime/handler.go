package realtime

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/gorilla/websocket"
	"github.com/labstack/echo/v4"
	"github.com/olahol/melody"

	"github.com/framework0/ctxd"
	"github.com/framework0/ctxd/auth"
	"github.com/framework0/ctxd/internal/msglimit"
	"github.com/framework0/ctxd/internal/query"
	"github.com/framework0/ctxd/internal/snapbudget"
	"github.com/framework0/ctxd/store"
)

// maxSubscriptions bounds one session's subscriptions.
const maxSubscriptions = 64

// connectParams are the query parameters of GET /v1/watch.
type connectParams struct {
	subs    []ctxd.Subscription
	fromRev *uint64
	// fromIndex, with fromRev, is how many changes of revision fromRev
	// the client has (nil: all of them).
	fromIndex *uint64
	snapshot  bool
	batch     bool
	access    *auth.Token // access.go; nil: access control off
}

// Serve is the Echo handler of GET /v1/watch: it checks the request,
// upgrades it to a WebSocket and serves the client until it disconnects.
// Refusals are Echo HTTP errors, rendered by the API's error handler:
// 400 (not a WebSocket request, bad parameters), 403 (origin not allowed),
// 413 (snapshot too large), 503 (max_clients reached, or shutting down).
func (h *Hub) Serve(c echo.Context) error {
	r := c.Request()
	if !websocket.IsWebSocketUpgrade(r) {
		return echo.NewHTTPError(http.StatusBadRequest,
			"GET /v1/watch is a WebSocket endpoint: connect with a WebSocket client (Connection: Upgrade, Upgrade: websocket)")
	}
	// What the upgrader would refuse in plain text, refused here in the
	// API's JSON, as every other refusal before the upgrade.
	if r.Header.Get("Sec-Websocket-Version") != "13" {
		c.Response().Header().Set("Sec-Websocket-Version", "13")
		return echo.NewHTTPError(http.StatusBadRequest, ctxd.ClipMessage("unsupported WebSocket version "+
			strconv.Quote(r.Header.Get("Sec-Websocket-Version"))+": send Sec-WebSocket-Version: 13"))
	}
	if k, err := base64.StdEncoding.DecodeString(r.Header.Get("Sec-Websocket-Key")); err != nil || len(k) != 16 {
		return echo.NewHTTPError(http.StatusBadRequest, "Sec-WebSocket-Key must be 16 bytes in base64")
	}
	if !h.originAllowed(r) {
		return echo.NewHTTPError(http.StatusForbidden, ctxd.ClipMessage(
			"origin "+strconv.Quote(r.Header.Get("Origin"))+" is not allowed: add it to websocket.allowed_origins"))
	}
	// The API refuses a query string that does not parse before this;
	// parsed again here, a served hub never takes part of one.
	q, err := url.ParseQuery(r.URL.RawQuery)
	if err != nil {
		return echo.NewHTTPError(http.StatusBadRequest, "malformed query string: "+err.Error())
	}
	p, err := parseConnect(q)
	if err != nil { // it may quote a parameter: cut, as the error frames are
		return echo.NewHTTPError(http.StatusBadRequest, ctxd.ClipMessage(err.Error()))
	}
	p.access = auth.FromContext(r.Context()) // checked by the API's gate
	if ns := forbiddenNamespace(p.subs, p.access); ns != "" {
		c.Response().Header().Set(echo.HeaderWWWAuthenticate, auth.ChallengeScope)
		return echo.NewHTTPError(http.StatusForbidden, forbiddenMessage(ns, p.access))
	}
	if n := h.clients.Add(1); n+int64(h.opts.OtherClients()) > int64(h.opts.MaxClients) {
		h.clients.Add(-1)
		c.Response().Header().Set("Retry-After", "5")
		return echo.NewHTTPError(http.StatusServiceUnavailable,
			"the server already has max_clients ("+strconv.Itoa(h.opts.MaxClients)+") clients, of /v1/watch and Socket.IO together: try again later")
	}
	defer h.clients.Add(-1)

	s, err := h.newSession(r, p)
	if err != nil {
		if errors.Is(err, ctxd.ErrTooLarge) {
			return echo.NewHTTPError(http.StatusRequestEntityTooLarge, err.Error())
		}
		if errors.Is(err, context.Canceled) { // gone while its snapshot waited for room
			c.Response().Header().Set("Retry-After", "1")
			return echo.NewHTTPError(http.StatusServiceUnavailable, err.Error())
		}
		return err
	}
	defer s.releaseHeld() // its snapshot, if not written by the end
	// The access log shows 101 for a connection that was upgraded; a failed
	// upgrade writes its own status over it.
	c.Response().Status = http.StatusSwitchingProtocols
	h.mu.Lock()
	if h.closed {
		h.mu.Unlock()
		return echo.NewHTTPError(http.StatusServiceUnavailable, "the server is shutting down")
	}
	h.served.Add(1) // under h.mu: never after Close started waiting
	h.mu.Unlock()
	err = h.m.HandleRequestWithKeys(c.Response(), r, map[string]any{sessionKey: s})
	h.unregister(s)
	h.served.Done()
	if errors.Is(err, melody.ErrClosed) {
		c.Response().Status = http.StatusServiceUnavailable
		return echo.NewHTTPError(http.StatusServiceUnavailable, "the server is shutting down")
	}
	// Any other error is a failed handshake, already answered by the
	// upgrader.
	h.log.Debug().Str("client_id", s.id).Str("remote", s.remote).Msg("WebSocket client disconnected")
	return nil
}

// newSession builds a session from the connect parameters: its position is
// from_rev, or the revision of the snapshot it gets first, or the current
// revision. Everything it must receive first is queued before the hub
// knows it.
func (h *Hub) newSession(r *http.Request, p connectParams) (*session, error) {
	s := &session{
		h:           h,
		id:          "c" + uitoa(h.nextID.Add(1)),
		batch:       p.batch,
		window:      h.opts.Window,
		remote:      r.RemoteAddr,
		connectedAt: time.Now().UTC(),
		access:      p.access,
		drained:     make(chan struct{}, 1),
		limit:       msglimit.New(msglimit.Config{PerSecond: h.opts.RateLimit, Burst: h.opts.RateBurst, MaxRefused: h.opts.MaxRefused}),
		// Before the position is taken: a restore between the two
		// resets the session (conservative), one before it does not.
		gen: h.st.Generation(),
	}
	s.ctx, s.stop = context.WithCancel(context.Background())
	if p.batch {
		s.window = h.opts.BatchWindow
	}
	var (
		snap  [][]byte
		skip  int
		grant *snapbudget.Grant
		reset []byte
	)
	switch {
	case p.fromRev != nil && store.Ahead(h.st, *p.fromRev, p.fromIndex):
		s.pos, _ = h.st.Committed()
		reset = h.aheadReset(s, nil, *p.fromRev, s.pos)
	case p.fromRev != nil:
		after, n, ce, err := h.resumeFrom(*p.fromRev, p.fromIndex)
		if err != nil {
			return nil, err
		}
		if ce != nil {
			// The only frame it gets: onConnect closes after it.
			rev, _ := h.st.Committed()
			s.refuse = compactedFrame(nil, *p.fromRev, ce, rev)
			return s, nil
		}
		s.pos, skip = after, n
	case p.snapshot:
		frames, rev, g, err := h.snapshot(r.Context(), p.subs, nil, p.access)
		if err != nil {
			return nil, err
		}
		snap, s.pos, grant = frames, rev, g
	default:
		s.pos, _ = h.st.Committed()
	}
	s.base, _ = h.st.Committed()
	subs := make([]sub, len(p.subs))
	for i, u := range p.subs {
		subs[i] = sub{Subscription: u}
	}
	if skip > 0 {
		// Inside a revision: its first changes were handled before.
		for i := range subs {
			subs[i].skipRev, subs[i].skipN = s.pos+1, skip
		}
	}
	s.setSubsLocked(subs)
	rev, index := s.resumePointLocked()
	s.queueLocked(encode(subscribedMsg{
		Type: ctxd.TypeSubscribed, ClientID: s.id, Rev: rev, Index: index, Subscriptions: p.subs, Batch: p.batch,
	}))
	s.queueSnapshotLocked(snap)
	if reset != nil {
		s.queueLocked(reset)
	}
	s.holdLocked(grant)
	return s, nil
}

// onConnect runs once the connection is upgraded, before melody starts
// writing: the queued frames go out and the hub starts serving changes.
func (h *Hub) onConnect(ms *melody.Session) {
	s := sessionOf(ms)
	if s == nil {
		_ = ms.Close()
		return
	}
	s.mu.Lock()
	s.ms = ms
	if s.refuse != nil {
		s.closeLocked(s.refuse, websocket.CloseNormalClosure, "compacted")
		s.mu.Unlock()
		return
	}
	s.pumpLocked()
	pos := s.pos
	s.mu.Unlock()
	if !h.register(s) {
		s.mu.Lock()
		s.closeLocked(nil, websocket.CloseGoingAway, "server shutting down")
		s.mu.Unlock()
		return
	}
	if s.access.Revoked() { // revoked by a reload that did not see s (access.go)
		s.closeRevoked()
		return
	}
	h.log.Debug().Str("client_id", s.id).Str("remote", s.remote).Uint64("from_rev", pos).Bool("batch", s.batch).Msg("WebSocket client connected")
}

// aheadReset is the reset frame of a session that asked for the changes
// after fromRev, past every revision of the database (store.Ahead), and
// now follows them after rev; id is its subscribe's, if any. It logs it:
// an operator should know that a client saw a database this one is not.
func (h *Hub) aheadReset(s *session, id json.RawMessage, fromRev, rev uint64) []byte {
	reason := store.AheadReason(fromRev, rev)
	h.log.Warn().Str("client_id", s.id).Str("remote", s.remote).Msg(reason + ": client told to reset")
	return encode(resetMsg{Type: ctxd.TypeReset, ID: id, Rev: rev, Message: reason + ": re-read state; changes continue after revision " + uitoa(rev)})
}

// resumeFrom turns a resume point (from_rev, from_index) into a position
// in the log and how many changes of the revision after it to leave out
// (store.ResumeFrom). It asks the store, so that a from_rev below the
// compacted revision (or in the revisions a restore discarded) is
// answered with "compacted" (ce) even when the ring still holds those
// changes.
func (h *Hub) resumeFrom(rev uint64, index *uint64) (after uint64, skip int, ce *ctxd.CompactedError, err error) {
	after, skip, err = store.ResumeFrom(h.st, rev, index)
	if errors.As(err, &ce) {
		return 0, 0, ce, nil
	}
	return after, skip, nil, err
}

// onError is melody's error handler. A full buffer cannot happen with the
// window accounting; it is counted and logged as the bug it would be.
func (h *Hub) onError(ms *melody.Session, err error) {
	s := sessionOf(ms)
	id := ""
	if s != nil {
		id = s.id
		s.stop() // the connection is failing: a wait of its reader ends
	}
	switch {
	case errors.Is(err, melody.ErrMessageBufferFull):
		h.stats.bufferFull.Add(1)
		h.log.Error().Str("client_id", id).Msg("bug: melody dropped a frame (session buffer full)")
	case errors.Is(err, websocket.ErrReadLimit):
		h.log.Info().Str("client_id", id).Int64("limit", 2*h.opts.MaxMessageBytes).Msg("WebSocket client sent an oversized message: closed (1009)")
	case websocket.IsCloseError(err, websocket.CloseNormalClosure, websocket.CloseGoingAway, websocket.CloseNoStatusReceived,
		websocket.ClosePolicyViolation), // the answer to closePolicyLocked's close
		errors.Is(err, melody.ErrWriteClosed), errors.Is(err, net.ErrClosed):
	default:
		h.log.Debug().Err(err).Str("client_id", id).Msg("WebSocket connection error")
	}
}

// watchParams are the handshake's query parameters (token is the access
// token, read by the access check); ns alone may be given more than once.
var watchParams = []string{"batch", "from_index", "from_rev", "ns", "prefix", "snapshot", "token"}

// parseConnect reads ns (repeatable, or comma-separated; default
// "default"; "*" for all), prefix, from_rev, from_index, snapshot and
// batch. Any other parameter, or one of them given twice, is refused, as
// on the v1 routes: ?from_ref=5000 (a typo) gave a feed from now, a gap
// where the client asked for none.
func parseConnect(q url.Values) (connectParams, error) {
	var p connectParams
	for name, values := range q {
		switch {
		case !slices.Contains(watchParams, name):
			return p, fmt.Errorf("unknown query parameter %q: /v1/watch takes %s", name, strings.Join(watchParams, ", "))
		case len(values) > 1 && name != "ns":
			return p, fmt.Errorf("query parameter %q given more than once: /v1/watch takes one", name)
		}
	}
	var nss []string
	for _, v := range q["ns"] {
		nss = append(nss, strings.Split(v, ",")...)
	}
	subs, err := makeSubs(nss, q.Get("prefix"))
	if err != nil {
		return p, err
	}
	p.subs = subs
	if v, ok := q["from_rev"]; ok && len(v) > 0 {
		n, err := strconv.ParseUint(v[0], 10, 64)
		if err != nil {
			return p, errors.New("from_rev must be a revision number (0 to replay from the start); got " + strconv.Quote(v[0]))
		}
		p.fromRev = &n
	}
	if v, ok := q["from_index"]; ok && len(v) > 0 {
		n, err := strconv.ParseUint(v[0], 10, 64)
		if err != nil {
			return p, errors.New("from_index must be how many changes of revision from_rev you have (the index of the last one + 1); got " + strconv.Quote(v[0]))
		}
		if p.fromRev == nil {
			return p, errors.New("from_index needs from_rev: it counts changes of that revision")
		}
		p.fromIndex = &n
	}
	if p.snapshot, err = boolParam(q, "snapshot"); err != nil {
		return p, err
	}
	if p.batch, err = boolParam(q, "batch"); err != nil {
		return p, err
	}
	if p.snapshot && p.fromRev != nil {
		return p, errors.New("give from_rev (replay changes after it) or snapshot=true (current state first), not both")
	}
	return p, nil
}

func boolParam(q url.Values, name string) (bool, error) {
	v := q.Get(name)
	if v == "" {
		return false, nil
	}
	return query.BoolParam(name, v)
}

// makeSubs checks namespaces and a prefix and makes one subscription per
// namespace (default: "default").
func makeSubs(nss []string, prefix string) ([]ctxd.Subscription, error) {
	if len(nss) == 0 {
		nss = []string{ctxd.DefaultNamespace}
	}
	if len(nss) > maxSubscriptions {
		return nil, errors.New("too many namespaces: at most " + strconv.Itoa(maxSubscriptions))
	}
	if err := ctxd.ValidatePrefix(prefix); err != nil {
		return nil, errors.New(strings.TrimPrefix(err.Error(), ctxd.ErrInvalid.Error()+": "))
	}
	subs := make([]ctxd.Subscription, 0, len(nss))
	for _, ns := range nss {
		ns = strings.TrimSpace(ns)
		if ns != ctxd.AllNamespaces {
			if err := ctxd.ValidateNamespace(ns); err != nil {
				return nil, errors.New("ns: " + strings.TrimPrefix(err.Error(), ctxd.ErrInvalid.Error()+": ") + ` (or "*" for every namespace)`)
			}
		}
		u := ctxd.Subscription{Namespace: ns, Prefix: prefix}
		if !containsSub(subs, u) {
			subs = append(subs, u)
		}
	}
	return subs, nil
}

// originAllowed accepts requests without an Origin (not from a browser),
// from the server's own origin, from localhost, and from the configured
// origins ("*": any).
func (h *Hub) originAllowed(r *http.Request) bool {
	origin := r.Header.Get("Origin")
	if origin == "" {
		return true
	}
	for _, o := range h.opts.AllowedOrigins {
		if o == "*" || strings.EqualFold(strings.TrimRight(o, "/"), origin) {
			return true
		}
	}
	u, err := url.Parse(origin)
	if err != nil || u.Host == "" {
		return false
	}
	if strings.EqualFold(u.Host, r.Host) {
		return true
	}
	switch strings.ToLower(u.Hostname()) {
	case "localhost", "127.0.0.1", "::1":
		return true
	}
	return false
}

// snapshot reads the current state of subs at one revision, as
// context_snapshot frames of SnapshotChunk keys, the last one complete.
// Overlapping subscriptions give each key once; keys access may not read
// are left out. It first waits (until ctx ends) for room in the snapshot
// budget; the grant it returns holds the frames' size, for the caller to
// release once they are written (session.holdLocked).
func (h *Hub) snapshot(ctx context.Context, subs []ctxd.Subscription, id []byte, access *auth.Token) ([][]byte, uint64, *snapbudget.Grant, error) {
	g, err := h.opts.SnapshotBudget.Acquire(ctx, int64(h.opts.MaxSnapshotBytes))
	if err != nil {
		return nil, 0, nil, fmt.Errorf("waiting for room to build the snapshot: %w", err)
	}
	var (
		frames [][]byte
		rev    uint64
		size   int
	)
	err = h.st.View(func(v store.View) error {
		rev = v.Revision()
		var (
			recs  []ctxd.Record
			total int
		)
		flush := func(complete bool) {
			if recs == nil {
				recs = []ctxd.Record{}
			}
			f := encode(snapshotMsg{Type: ctxd.TypeContextSnapshot, ID: id, Rev: rev, Keys: recs, Complete: complete})
			frames = append(frames, f)
			size += len(f)
			recs = nil
		}
		for _, u := range snapshotRanges(subs, v) {
			err := v.ForEach(u.Namespace, u.Prefix, func(r ctxd.Record) error {
				if !access.CanRead(r.Namespace, r.Key) {
					return nil
				}
				total += len(r.Key) + len(r.Value) + len(r.Who) + 160
				if total > h.opts.MaxSnapshotBytes {
					return ctxd.TooLargef("the snapshot is larger than %d bytes: list the keys over REST and watch with from_rev instead", h.opts.MaxSnapshotBytes)
				}
				recs = append(recs, r)
				if len(recs) >= h.opts.SnapshotChunk {
					flush(false)
				}
				return nil
			})
			if err != nil {
				return err
			}
		}
		flush(true)
		return nil
	})
	if err != nil {
		g.Release()
		return nil, 0, nil, err
	}
	g.Shrink(int64(size))
	return frames, rev, g, nil
}

// snapshotRanges turns subscriptions into disjoint (namespace, prefix)
// ranges: "*" becomes every namespace, and a prefix covered by a shorter
// one of the same namespace is dropped.
func snapshotRanges(subs []ctxd.Subscription, v store.View) []ctxd.Subscription {
	byNS := map[string][]string{}
	var order []string
	add := func(ns, prefix string) {
		if _, ok := byNS[ns]; !ok {
			order = append(order, ns)
		}
		byNS[ns] = append(byNS[ns], prefix)
	}
	for _, u := range subs {
		if u.Namespace != ctxd.AllNamespaces {
			add(u.Namespace, u.Prefix)
			continue
		}
		for _, n := range v.Namespaces() {
			add(n.Name, u.Prefix)
		}
	}
	var out []ctxd.Subscription
	for _, ns := range order {
		prefixes := byNS[ns]
		for i, p := range prefixes {
			covered := false
			for j, q := range prefixes {
				if j != i && strings.HasPrefix(p, q) && (len(q) < len(p) || j < i) {
					covered = true
					break
				}
			}
			if !covered {
				out = append(out, ctxd.Subscription{Namespace: ns, Prefix: p})
			}
		}
	}
	return out
}

// OriginAllowed applies the hub's origin rules (websocket.allowed_origins,
// the server's own origin, localhost) to r: the Socket.IO door uses them too.
func (h *Hub) OriginAllowed(r *http.Request) bool { return h.originAllowed(r) }
