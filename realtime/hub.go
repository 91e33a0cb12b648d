package realtime

import (
	"errors"
	"runtime"
	"sort"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/gorilla/websocket"
	"github.com/olahol/melody"
	"github.com/rs/zerolog"

	"github.com/framework0/ctxd"
	"github.com/framework0/ctxd/auth"
	"github.com/framework0/ctxd/internal/snapbudget"
	"github.com/framework0/ctxd/store"
)

// Options configure a Hub. Zero fields take the defaults below.
type Options struct {
	// PingInterval is how often the server pings each client; a client
	// that answers no ping for twice as long is disconnected. Default 30s.
	PingInterval time.Duration
	// WriteTimeout bounds one frame's write to a client (a client that
	// reads nothing for that long is disconnected) and a context_set's
	// write to the store. Default 10s.
	WriteTimeout time.Duration
	// MaxMessageBytes is the largest message a client may send: a larger
	// one is answered with an error frame of code too_large, and one over
	// twice the limit closes the connection (1009). Default 2 MiB.
	MaxMessageBytes int64
	// AllowedOrigins lists the browser origins ("https://host:port") that
	// may connect besides the server's own origin and localhost; "*"
	// allows any. Requests without an Origin header (not from a browser)
	// are always allowed.
	AllowedOrigins []string
	// MaxClients caps the connected clients, OtherClients' included; more
	// get 503. Default 10000.
	MaxClients int
	// OtherClients counts the clients of the other door (the Socket.IO
	// sessions), which share MaxClients. Default: none.
	OtherClients func() int
	// MaxLag is how many changes a client may fall behind before it is
	// closed with "lagged". Changes are counted one by one among those the
	// hub has read from the log (the ring, and the revisions of the last
	// MaxLag+1 changes it evicted), never as a distance in revisions: on
	// an etcd shared with other prefixes, their revisions are not lag, and
	// a transaction's changes share one revision. (On bolt, one change per
	// revision, it is the distance.) Up to 2^20 changes are counted
	// exactly; past that the distance stands in for the older ones.
	// Default 10000.
	MaxLag uint64
	// LagGrace is how long a client may stay more than MaxLag changes
	// behind before it is closed: one that reads at full speed drains a
	// burst larger than MaxLag (an import, a large transaction) within it
	// and is never cut, while one that cannot keep up stays behind and is
	// cut when it runs out. The clock restarts whenever the client is back
	// within MaxLag. 0, the default here, closes it at once (the server's
	// websocket.lag_grace is 10s by default).
	LagGrace time.Duration

	// Window is how many frames one client may have in flight (given to
	// melody, not yet written to its socket) in the default
	// one-change-per-frame mode. Default 64.
	Window int
	// BatchWindow is the same for batch=true clients, whose frames carry
	// every change ready at once: a small window makes frames larger when
	// the client or the machine is busy. Default 2.
	BatchWindow int
	// BatchInterval paces batch=true clients while changes keep coming:
	// a client's next frame waits until BatchInterval after its last one,
	// unless a full frame (MaxBatch changes) is ready. The first change
	// after a quiet spell (no frame for BatchInterval) goes at once.
	// Frames, not changes, are what fan-out costs on both sides (a write
	// system call each), and under load the window alone let each client
	// take a frame every few changes (DESIGN.md, "Pacing"). 0, the
	// default here, turns it off (the server's websocket.batch_interval
	// is 20 ms by default).
	BatchInterval time.Duration
	// MaxBatch and MaxBatchBytes bound one batch frame (a single change
	// larger than MaxBatchBytes still goes, alone). Defaults 256, 256 KiB.
	MaxBatch      int
	MaxBatchBytes int
	// RingSize and RingBytes bound the recent changes kept in memory,
	// encoded, for every session to share. Defaults 16384, 64 MiB.
	RingSize  int
	RingBytes int
	// CatchupRead is how many changes one log read takes for a client
	// older than the ring. Default 512.
	CatchupRead int
	// SnapshotChunk is how many keys one context_snapshot frame holds.
	// Default 1000. MaxSnapshotBytes bounds a whole snapshot (default
	// 64 MiB): a larger one is refused with too_large.
	SnapshotChunk    int
	MaxSnapshotBytes int
	// SnapshotBudget bounds the memory the snapshots in progress (built,
	// not yet written to their sockets) hold together: a client whose
	// snapshot does not fit waits for room (internal/snapbudget). The
	// server shares one with the Socket.IO door. nil: a budget of the
	// hub's own, of 4 x MaxSnapshotBytes.
	SnapshotBudget *snapbudget.Budget
	// Access, with access control on, is the server's tokens: a session
	// closed for a revoked token is told whether a reconnection with it
	// would be refused (Authorizer.Successor). nil: access control off.
	Access *auth.Authorizer

	// RateLimit is how many messages per second one client may send, in
	// bursts of up to RateBurst (0: RateLimit rounded up). A message past
	// it is not applied and is answered with an error frame of code
	// rate_limited and retry_after_ms; a client with more than MaxRefused
	// messages refused within 10 s is closed (1008, reason rate_limited;
	// MaxRefused 0: never). RateLimit 0, the default here, turns the limit
	// off (the server's websocket.rate_limit is on by default). See
	// internal/msglimit.
	RateLimit  float64
	RateBurst  int
	MaxRefused int
}

func (o Options) withDefaults() Options {
	def := func(v *int, d int) {
		if *v <= 0 {
			*v = d
		}
	}
	if o.PingInterval <= 0 {
		o.PingInterval = 30 * time.Second
	}
	if o.WriteTimeout <= 0 {
		o.WriteTimeout = 10 * time.Second
	}
	if o.MaxMessageBytes <= 0 {
		o.MaxMessageBytes = 2 << 20
	}
	if o.MaxLag == 0 {
		o.MaxLag = 10000
	}
	def(&o.MaxClients, 10000)
	if o.OtherClients == nil {
		o.OtherClients = func() int { return 0 }
	}
	def(&o.Window, 64)
	def(&o.BatchWindow, 2)
	def(&o.MaxBatch, 256)
	def(&o.MaxBatchBytes, 256<<10)
	def(&o.RingSize, 16384)
	def(&o.RingBytes, 64<<20)
	def(&o.CatchupRead, 512)
	def(&o.SnapshotChunk, 1000)
	def(&o.MaxSnapshotBytes, 64<<20)
	if o.SnapshotBudget == nil {
		o.SnapshotBudget = snapbudget.New(4 * int64(o.MaxSnapshotBytes))
	}
	return o
}

// reserveFrames is how many slots melody's buffer has beyond the window: a
// last error frame and close messages (ours and melody's own at shutdown).
const reserveFrames = 4

// sessionKey is the melody session key that holds the *session.
const sessionKey = "ctxd.session"

// Hub is the WebSocket change feed. Create it with New, mount Serve at
// GET /v1/watch, and Close it before closing the store.
type Hub struct {
	st   store.Backend
	opts Options
	log  zerolog.Logger
	m    *melody.Melody

	mu       sync.Mutex
	sessions map[*session]struct{}
	list     []*session // sessions as a slice, rebuilt when nil
	kicked   []*session
	closed   bool

	kick chan struct{} // a session asks for a pass; capacity 1
	stop chan struct{}
	done chan struct{}
	once sync.Once

	clients atomic.Int64 // reserved client slots: connected and connecting
	// closingSessions counts the sessions marked closing and not yet
	// unregistered (session.setClosingLocked).
	closingSessions atomic.Int64
	nextID          atomic.Uint64
	// served counts the connections being served, for Close to wait on.
	served sync.WaitGroup

	stats struct {
		lagged, bufferFull, frames, revoked atomic.Uint64
		rateLimited, rateLimitClosed        atomic.Uint64
		// wakes counts the loop's turns (the idle test's measure).
		wakes atomic.Uint64
	}

	// reads brings the loop the log reads it started for sessions older
	// than the ring (startReads); readers counts those still running.
	reads   chan logRead
	readers sync.WaitGroup

	// Owned by the loop goroutine.
	ring *ring
	gen  uint64
	// reading holds the positions a log read is running for.
	reading map[uint64]bool
	// wakeAt is when the loop must next pass over every session, whatever
	// else happens (zero: never): when the first batch session held back
	// by BatchInterval may have its next frame, or the first LagGrace of a
	// lagging session runs out.
	wakeAt time.Time
}

// New starts a hub over st. log receives connection, lag and error events.
func New(st store.Backend, opts Options, log zerolog.Logger) *Hub {
	opts = opts.withDefaults()
	h := &Hub{
		st:       st,
		opts:     opts,
		log:      log,
		sessions: make(map[*session]struct{}),
		kick:     make(chan struct{}, 1),
		stop:     make(chan struct{}),
		done:     make(chan struct{}),
		reads:    make(chan logRead),
		reading:  make(map[uint64]bool),
		// The ring counts lag: it remembers one change more than
		// MaxLag, enough to tell exactly a session more than MaxLag behind.
		ring: newRing(opts.RingSize, opts.RingBytes, int(min(opts.MaxLag, maxKeepEvicted))+1),
	}
	m := melody.New()
	m.Config.WriteWait = opts.WriteTimeout
	m.Config.PingPeriod = opts.PingInterval
	m.Config.PongWait = 2 * opts.PingInterval
	// Messages between MaxMessageBytes and twice that are read whole and
	// answered with too_large; larger ones close the connection.
	m.Config.MaxMessageSize = 2 * opts.MaxMessageBytes
	m.Config.MessageBufferSize = max(opts.Window, opts.BatchWindow) + reserveFrames
	m.Upgrader = &websocket.Upgrader{
		ReadBufferSize:  4096,
		WriteBufferSize: 32 << 10,
		// Write buffers are taken from the pool only while a frame is
		// written: idle clients hold none.
		WriteBufferPool: &sync.Pool{},
		CheckOrigin:     h.originAllowed,
	}
	m.HandleConnect(h.onConnect)
	m.HandleMessage(h.onMessage)
	m.HandleMessageBinary(func(ms *melody.Session, data []byte) {
		if s := sessionOf(ms); s != nil && h.admit(s, data) {
			s.send(encode(errorMsg{Type: ctxd.TypeError, Code: ctxd.CodeBadRequest, Message: "binary frames are not supported: send JSON text frames"}))
		}
	})
	m.HandleSentMessage(func(ms *melody.Session, _ []byte) {
		h.stats.frames.Add(1)
		if s := sessionOf(ms); s != nil {
			s.sent()
		}
	})
	m.HandleError(h.onError)
	h.m = m

	h.gen = st.Generation()
	rev, _ := st.Committed()
	h.ring.reset(rev)
	go h.run()
	return h
}

func sessionOf(ms *melody.Session) *session {
	v, ok := ms.Get(sessionKey)
	if !ok {
		return nil
	}
	s, _ := v.(*session)
	return s
}

// Clients returns the number of connected WebSocket clients. A client the
// hub has closed (lagged, revoked, rate limited) is not one any more,
// although its connection may last until it reads its close frame or
// WriteTimeout.
func (h *Hub) Clients() int {
	h.mu.Lock()
	defer h.mu.Unlock()
	// A session closed before it registered (refused at connect) counts
	// as closing until it unregisters, a moment later.
	return max(len(h.sessions)-int(h.closingSessions.Load()), 0)
}

// sessionCount is how many sessions the hub serves, closing ones too.
func (h *Hub) sessionCount() int {
	h.mu.Lock()
	defer h.mu.Unlock()
	return len(h.sessions)
}

// Stats are counters for tests and monitoring.
type Stats struct {
	Clients int
	// Behind counts the clients the hub is holding back right now because
	// their socket has not drained (they are caught up from the log later).
	Behind int
	// Lagged counts clients closed with "lagged".
	Lagged uint64
	// BufferFull counts frames melody dropped because a session's buffer
	// was full. The hub's window accounting keeps it at 0; anything else
	// is a bug.
	BufferFull uint64
	// Frames counts text frames written to clients.
	Frames uint64
	// Revoked counts clients closed because their token was revoked
	// (CloseRevoked).
	Revoked uint64
	// Stalled counts the clients whose next message waits, right now,
	// until the answers they have not read yet drain (backpressure:
	// session.awaitRoom); AnswerBytes is the size of the answers (and
	// notices, snapshots) queued for the clients or in flight, not yet
	// written to their sockets.
	Stalled     int
	AnswerBytes int
	// RateLimited counts client messages refused with rate_limited (not
	// applied); RateLimitClosed the clients closed for sending past their
	// limit (Options.MaxRefused).
	RateLimited     uint64
	RateLimitClosed uint64
}

// Stats returns the hub's counters.
func (h *Hub) Stats() Stats {
	behind, stalled, answerBytes := 0, 0, 0
	for _, s := range h.all() {
		s.mu.Lock()
		if s.wantKick {
			behind++
		}
		if s.awaiting {
			stalled++
		}
		answerBytes += s.answerBytes
		s.mu.Unlock()
	}
	return Stats{
		Clients:     h.Clients(),
		Behind:      behind,
		Stalled:     stalled,
		AnswerBytes: answerBytes,
		Lagged:      h.stats.lagged.Load(),
		BufferFull:  h.stats.bufferFull.Load(),
		Frames:      h.stats.frames.Load(),
		Revoked:     h.stats.revoked.Load(),

		RateLimited:     h.stats.rateLimited.Load(),
		RateLimitClosed: h.stats.rateLimitClosed.Load(),
	}
}

// NotifyDumped tells every connected client that a dump was written, with a
// "context_dumped" frame. It never blocks on a client.
func (h *Hub) NotifyDumped(info DumpInfo) {
	if info.Timestamp.IsZero() {
		info.Timestamp = time.Now().UTC()
	}
	frame := encode(dumpedMsg{Type: ctxd.TypeContextDumped, DumpInfo: info})
	for _, s := range h.all() {
		if s.access.CanReadPrefix(info.Namespace, "") { // access.go
			s.send(frame)
		}
	}
}

// closeWait bounds how long Close waits for clients to get their close
// frame before it cuts their connections.
const closeWait = 2 * time.Second

// Close stops the hub and closes every client's connection (1001, going
// away), waiting up to two seconds for the close frames to be written (a
// stuck client's connection is then cut). Call it before closing the
// store. Later calls do nothing.
func (h *Hub) Close() error {
	h.once.Do(func() {
		h.mu.Lock()
		h.closed = true
		h.mu.Unlock()
		close(h.stop)
		<-h.done
		h.readers.Wait() // each ends with its read (bounded by the store)
		sessions := h.all()
		for _, s := range sessions {
			s.mu.Lock()
			// The reason names where to resume: every change the
			// session matched up to there is queued before this close.
			s.closeLocked(nil, websocket.CloseGoingAway, "server shutting down; resume with "+resumeQuery(s.resumePointLocked()))
			s.mu.Unlock()
		}
		_ = h.m.Close()
		done := make(chan struct{})
		go func() { h.served.Wait(); close(done) }()
		select {
		case <-done:
		case <-time.After(closeWait):
			for _, s := range sessions {
				s.mu.Lock()
				if s.ms != nil {
					_ = s.ms.WebsocketConnection().Close()
				}
				s.mu.Unlock()
			}
			<-done
		}
	})
	return nil
}

// all returns the registered sessions. The slice is shared: do not modify.
func (h *Hub) all() []*session {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.list == nil {
		h.list = make([]*session, 0, len(h.sessions))
		for s := range h.sessions {
			h.list = append(h.list, s)
		}
	}
	return h.list
}

// register adds a connected session and asks for a pass. It reports false
// when the hub is closed.
func (h *Hub) register(s *session) bool {
	h.mu.Lock()
	if h.closed {
		h.mu.Unlock()
		return false
	}
	h.sessions[s] = struct{}{}
	h.list = nil
	h.mu.Unlock()
	h.kickSession(s)
	return true
}

func (h *Hub) unregister(s *session) {
	s.mu.Lock()
	counted := s.closing // in h.closingSessions
	s.closing = true
	s.stop()
	s.dropOutLocked()
	s.mu.Unlock()
	h.mu.Lock()
	if _, ok := h.sessions[s]; ok {
		delete(h.sessions, s)
		h.list = nil
	}
	if counted {
		h.closingSessions.Add(-1)
	}
	h.mu.Unlock()
}

// kickSession asks the loop to serve s at its next pass.
func (h *Hub) kickSession(s *session) {
	h.mu.Lock()
	if !s.kickQueued {
		s.kickQueued = true
		h.kicked = append(h.kicked, s)
	}
	h.mu.Unlock()
	select {
	case h.kick <- struct{}{}:
	default:
	}
}

// takeKicked returns and clears the sessions kicked since the last pass.
func (h *Hub) takeKicked() []*session {
	h.mu.Lock()
	defer h.mu.Unlock()
	k := h.kicked
	h.kicked = nil
	for _, s := range k {
		s.kickQueued = false
	}
	return k
}

// retryDelay is how long the loop waits before retrying a failed log read.
const retryDelay = 100 * time.Millisecond

// run is the hub's loop: it follows the committed mark, reads new changes
// into the ring, and serves the sessions.
//
// Whether a pass serves every session or only the kicked ones is decided
// by comparing revisions, never by which channel woke the loop: a commit
// whose wake-up lost the race against a kick is still seen, because the
// committed revision is above the last one every session was served at.
func (h *Hub) run() {
	defer close(h.done)
	var (
		served uint64 // the revision of the last pass over every session
		force  = true // serve every session regardless (start, retry)
		retry  <-chan time.Time
		idle   bool // no session at the last look: commits were not followed
		// due fires at h.wakeAt: the batch sessions held back get their
		// frames then, and lagging sessions out of grace are closed,
		// whether or not anything else happens.
		wakeTimer = time.NewTimer(time.Hour)
		due       <-chan time.Time
		armedAt   time.Time // when due fires (zero: it does not)
	)
	wakeTimer.Stop()
	defer wakeTimer.Stop()
	for {
		h.stats.wakes.Add(1)
		rev, changed := h.st.Committed()
		if idle {
			// Woken by a session's registration (or stop) after following
			// no commit: rather than read every change made meanwhile, the
			// ring starts over at the mark. A position before it reads
			// the log, as any position older than the ring does.
			idle, force = false, true
			if rev > h.ring.top {
				h.ring.reset(rev)
			}
		}
		if !force && rev != served {
			// A new commit: let the goroutines the last pass woke (the
			// sessions' melody writers, one per frame handed over) run
			// before serving every session again, so that the commits
			// made meanwhile go in the same frames. Without it the loop
			// runs ahead of the writers, one commit per pass: on etcd,
			// whose feed raises the mark once per revision, each batch
			// subscriber got a frame for every 3-5 changes against
			// bolt's ~15, whose mark rises once per group commit
			// (DESIGN.md, Batching). Idle, the yield returns at once.
			// Not a timer: nothing waits for a time or for a client.
			runtime.Gosched()
			rev, changed = h.st.Committed()
		}
		if g := h.st.Generation(); g != h.gen {
			// The mark again, taken after the generation: the one above
			// may be from before the restore (the loop woke for an
			// earlier change), and clients reset there would read the
			// log below the restore's floor ("compacted"). etcd moves
			// its generation with its mark to the restore's switch
			// (feed.switchTo), so this one is at or past it.
			rev, changed = h.st.Committed()
			h.gen = g
			h.reset(rev)
			force = true
		}
		ok := h.fill(rev)
		var targets []*session
		if force || rev != served {
			targets = h.all()
			h.takeKicked()
			served, force = rev, false
			h.wakeAt = time.Time{} // this pass sees every session
		} else {
			targets = h.takeKicked()
		}
		h.pass(targets, rev)
		if !ok {
			retry = time.After(retryDelay)
		}
		if !h.wakeAt.Equal(armedAt) {
			wakeTimer.Stop()
			due, armedAt = nil, h.wakeAt
			if !armedAt.IsZero() {
				wakeTimer.Reset(time.Until(armedAt))
				due = wakeTimer.C
			}
		}
		if retry == nil && h.sessionCount() == 0 {
			// No one to serve: do not follow commits. Each would wake this
			// loop, and the wake is on the path of every write (a lone
			// write closes the mark's channel before it returns): with no
			// subscriber, a lone PUT's p50 over HTTP was 442-554 µs
			// against 310-334 µs without it (realtime/DESIGN.md, "Idle").
			// A registration kicks the loop.
			idle, changed = true, nil
		}
		select {
		case <-changed:
		case <-h.kick:
		case <-retry:
			retry = nil
			force = true
		case <-due:
			due, armedAt = nil, time.Time{}
			force = true
		case r := <-h.reads:
			if !h.landRead(r) {
				retry = time.After(retryDelay)
			}
		case <-h.stop:
			return
		}
	}
}

// reset follows an online restore (the hub's generation is the new one):
// every client that was there before it gets "reset" and continues from
// the new revision. A client that came after it (while the loop slept,
// with no one to serve) had its position checked against the restored
// store, and goes on from it: a reset would skip the changes between
// its position and rev.
func (h *Hub) reset(rev uint64) {
	h.ring.reset(rev)
	frame := encode(resetMsg{Type: ctxd.TypeReset, Rev: rev,
		Message: "the database was replaced by a restore: re-read state; changes continue after revision " + uitoa(rev)})
	told := 0
	for _, s := range h.all() {
		s.mu.Lock()
		if s.gen == h.gen {
			s.mu.Unlock()
			continue
		}
		told++
		s.gen = h.gen
		s.pos, s.part, s.base = rev, 0, rev
		for i := range s.subs {
			s.subs[i].since = min(s.subs[i].since, rev)
			s.subs[i].skipRev, s.subs[i].skipN = 0, 0
		}
		s.setSubsLocked(s.subs)
		s.sendLocked(frame)
		s.mu.Unlock()
	}
	if told > 0 {
		// Only then: a hub with no client notices a restore when the
		// next one connects, and has no one to tell.
		h.log.Info().Uint64("revision", rev).Int("clients", told).Msg("database restored: clients told to reset")
	}
}

// fillRead is how many changes one log read of the loop asks for.
const fillRead = 1024

// fill reads the changes up to rev into the ring. Revisions
// with no change (etcd's other prefixes, a restore's floor) and revisions
// with several changes (an etcd transaction) are normal: the ring holds
// every change after its start, whatever their revisions.
func (h *Hub) fill(rev uint64) bool {
	r := h.ring
	if rev <= r.top {
		return true
	}
	// No skipping ahead by the distance in revisions: on etcd it says
	// nothing of how many changes there are. The ring keeps the newest.
	for r.top < rev {
		changes, err := h.st.ReadLog(r.top, fillRead)
		if err != nil {
			var ce *ctxd.CompactedError
			if errors.As(err, &ce) && ce.Compacted > 0 && ce.Compacted-1 > r.top {
				// Compacted right after the commit: the ring starts
				// after the hole; older positions read the log and get
				// "compacted" there.
				r.reset(ce.Compacted - 1)
				continue
			}
			h.log.Error().Err(err).Uint64("after", r.top).Msg("read change log")
			return false
		}
		for _, e := range newEntries(changes) {
			r.push(e)
		}
		if len(changes) < fillRead {
			// The read was not cut by its limit: the log holds nothing
			// more up to the committed mark, which was at least rev.
			r.advance(rev)
		}
	}
	return true
}

// frameKey identifies a batch frame that sessions with the same
// subscriptions at the same position share within one pass.
type frameKey struct {
	pos, hi uint64
	sig     string
}

type frameVal struct {
	frame []byte
	next  uint64 // the position after the frame, always between revisions
}

// pass serves targets: every session the ring can serve; for the older
// ones it starts log reads (startReads), which they are served from when
// they land.
func (h *Hub) pass(targets []*session, rev uint64) {
	cache := make(map[frameKey]frameVal)
	var behind []*session
	ring := h.ringSource()
	var now time.Time
	if h.opts.BatchInterval > 0 {
		now = time.Now()
	}
	for _, s := range targets {
		s.mu.Lock()
		if h.checkLagLocked(s) && s.pos < rev {
			switch {
			case s.pos < ring.lo:
				behind = append(behind, s)
			case h.pacedLocked(s, now):
			default:
				inflight := s.inflight
				h.feedLocked(s, ring, cache)
				if s.inflight > inflight {
					s.lastFrame = now
				}
			}
		}
		s.mu.Unlock()
	}
	if len(behind) > 0 {
		h.startReads(behind, rev)
	}
}

// pacedLocked reports whether batch session s waits for its next frame:
// its last one went less than BatchInterval ago and no full frame is
// ready (changes after its position, matching or not, count: on etcd,
// whose revisions a transaction's changes share, and with subscriptions,
// this errs towards sending). It moves h.wakeAt to when s may go.
func (h *Hub) pacedLocked(s *session, now time.Time) bool {
	if !s.batch || h.opts.BatchInterval <= 0 {
		return false
	}
	due := s.lastFrame.Add(h.opts.BatchInterval)
	if !now.Before(due) || h.ring.countAfter(s.pos) >= uint64(h.opts.MaxBatch) {
		return false
	}
	h.wakeBy(due)
	return true
}

// wakeBy makes the loop pass over every session at t at the latest.
func (h *Hub) wakeBy(t time.Time) {
	if h.wakeAt.IsZero() || t.Before(h.wakeAt) {
		h.wakeAt = t
	}
}

// checkLagLocked closes s if it lags too far, and reports whether it can
// be given changes now (not closing, nothing queued, window not full).
func (h *Hub) checkLagLocked(s *session) bool {
	if s.closing {
		return false
	}
	if h.cutLaggingLocked(s) {
		return false
	}
	if len(s.out) > 0 || s.inflight >= s.window {
		s.wantKick = true
		return false
	}
	return true
}

// cutLaggingLocked closes s, and reports whether it did, when it has been
// more than MaxLag changes behind for LagGrace. While it is within grace
// the loop is woken when the grace runs out, to look again even if
// nothing else happens then.
func (h *Hub) cutLaggingLocked(s *session) bool {
	lag := h.lagLocked(s)
	end, cut := s.lagClock.Check(lag > h.opts.MaxLag, time.Now(), h.opts.LagGrace)
	if !cut {
		if !end.IsZero() {
			h.wakeBy(end)
		}
		return false
	}
	if s.part > 0 {
		// Inside a revision it finishes it first: the from_rev of
		// "lagged" must be a revision it has every change of. The pass
		// after its window drains looks again.
		return false
	}
	why := uitoa(lag) + " changes behind, more than max_lag " + uitoa(h.opts.MaxLag)
	if h.opts.LagGrace > 0 {
		why += " for " + h.opts.LagGrace.String() + " (lag_grace)"
	}
	s.closeLaggedLocked(why)
	return true
}

// lagLocked is how many changes s is behind, counted from max(pos, base)
// among the changes the loop has read into the ring (ring.countAfter: one
// by one, also those evicted since). Changes committed but not read yet
// do not count: on etcd the committed mark is a revision of this prefix,
// but the revisions between it and the ring's top may all be other
// prefixes' (a busy neighbour on the cluster), and the loop reads up to
// the mark before every pass anyway.
func (h *Hub) lagLocked(s *session) uint64 {
	return h.ring.countAfter(max(s.pos, s.base))
}

// source holds every change of the log with a revision in (lo, hi]:
// next(pos, part) returns change number part of the first revision after
// pos, or nil if there is none up to hi. Revisions the log never had (a
// restore's floor, etcd's other prefixes) are simply absent.
type source struct {
	lo, hi uint64
	next   func(pos uint64, part int) *entry
}

func (h *Hub) ringSource() source {
	r := h.ring
	return source{lo: r.start(), hi: r.top, next: r.next}
}

// sliceSource is a source over changes read from the log, in order.
func sliceSource(lo, hi uint64, entries []entry) source {
	return source{lo: lo, hi: hi, next: func(pos uint64, part int) *entry {
		i := sort.Search(len(entries), func(i int) bool { return entries[i].rev > pos }) + part
		if i >= len(entries) || entries[i].rev > hi {
			return nil
		}
		return &entries[i]
	}}
}

// feedLocked hands s the matching changes of src after its position, as
// many frames as its window allows.
func (h *Hub) feedLocked(s *session, src source, cache map[frameKey]frameVal) {
	if s.pos < src.lo {
		return
	}
	for s.inflight < s.window && s.pos < src.hi && !s.closing {
		if !s.batch {
			for s.pos < src.hi {
				e := src.next(s.pos, s.part)
				if e == nil {
					s.pos, s.part = src.hi, 0
					break
				}
				s.stepLocked(e)
				if s.matches(e) {
					s.writeLocked(e.frame)
					break
				}
			}
			continue
		}
		var fv frameVal
		key := frameKey{pos: s.pos, hi: src.hi, sig: s.sig}
		shared := s.maxSince <= s.pos
		if v, ok := cache[key]; ok && shared {
			fv = v
		} else {
			fv = h.buildBatch(s, src)
			if shared {
				cache[key] = fv
			}
		}
		s.pos = fv.next
		if fv.frame != nil {
			s.writeLocked(fv.frame)
		}
	}
	if s.pos < src.hi {
		s.wantKick = true
	}
}

// buildBatch builds the next frame of a batch session from src: up to
// MaxBatch matching changes (and about MaxBatchBytes), one plain
// context_updated when only one matches, nil when none does. A frame ends
// only between revisions: it goes past both bounds to finish one, so that
// the changes of a revision always travel together.
func (h *Hub) buildBatch(s *session, src source) frameVal {
	var (
		frames [][]byte
		size   int
		pos    = s.pos
		part   = s.part
	)
	for pos < src.hi && (len(frames) < h.opts.MaxBatch || part > 0) {
		e := src.next(pos, part)
		if e == nil {
			pos, part = src.hi, 0
			break
		}
		if s.matches(e) {
			if len(frames) > 0 && part == 0 && size+len(e.frame) > h.opts.MaxBatchBytes {
				break
			}
			frames = append(frames, e.frame)
			size += len(e.frame) + 1
		}
		if e.last {
			pos, part = e.rev, 0
		} else {
			part++
		}
	}
	switch len(frames) {
	case 0:
		return frameVal{next: pos}
	case 1:
		return frameVal{frame: frames[0], next: pos}
	}
	b := make([]byte, 0, len(batchHead)+size+len(batchTail))
	b = append(b, batchHead...)
	for i, f := range frames {
		if i > 0 {
			b = append(b, ',')
		}
		b = append(b, f...)
	}
	b = append(b, batchTail...)
	return frameVal{frame: b, next: pos}
}

// logRead is a log read the loop started for the sessions at pos, older
// than the ring: the changes after pos, at most limit (whole revisions),
// read when the committed revision was rev and the generation gen.
type logRead struct {
	pos, rev, limit, gen uint64
	changes              []ctxd.Change
	err                  error
}

// startReads starts a log read for each position of behind (sessions
// older than the ring) that has none running. The reads run off the
// loop: on etcd one from history waits ~100 ms per response of etcd's,
// and every other session of the instance went without frames meanwhile.
// The loop serves the sessions at that position when the read lands
// (landRead); a session that arrives there meanwhile is served with them.
func (h *Hub) startReads(behind []*session, rev uint64) {
	for _, s := range behind {
		s.mu.Lock()
		pos := s.pos
		s.mu.Unlock()
		if h.reading[pos] {
			continue
		}
		h.reading[pos] = true
		limit := uint64(h.opts.CatchupRead)
		if start := h.ring.start(); start > pos {
			limit = min(limit, start-pos)
		}
		r := logRead{pos: pos, rev: rev, limit: limit, gen: h.gen}
		h.readers.Add(1)
		go func() {
			defer h.readers.Done()
			r.changes, r.err = h.st.ReadLog(r.pos, int(r.limit))
			select {
			case h.reads <- r:
			case <-h.stop:
			}
		}()
	}
}

// landRead serves the sessions at a landed read's position from it, then
// from the ring when they reach it. It reports false when the read failed
// or is stale: the loop then serves every session again shortly (retry).
func (h *Hub) landRead(r logRead) bool {
	delete(h.reading, r.pos)
	if r.gen != h.gen {
		// A restore moved every session since; one that reached pos
		// again waited for this read: the retry serves it.
		return false
	}
	rev := r.rev
	var group []*session
	for _, s := range h.all() {
		s.mu.Lock()
		if s.pos == r.pos {
			group = append(group, s)
		}
		s.mu.Unlock()
	}
	var ce *ctxd.CompactedError
	if errors.As(r.err, &ce) {
		h.compacted(group, r.pos, ce, rev)
		return true
	}
	if r.err != nil {
		h.log.Error().Err(r.err).Uint64("after", r.pos).Msg("read change log for a client catching up")
		return false
	}
	entries := newEntries(r.changes)
	// The read holds every change after pos up to its last one; if it
	// was not cut by the limit, also every change up to rev (there are
	// none between its last one and rev).
	hi := rev
	if len(entries) >= int(r.limit) {
		hi = entries[len(entries)-1].rev
	} else if len(entries) > 0 {
		hi = max(hi, entries[len(entries)-1].rev)
	}
	src := sliceSource(r.pos, hi, entries)
	cache := make(map[frameKey]frameVal)
	for _, s := range group {
		again := false
		s.mu.Lock()
		if s.pos == r.pos && h.checkLagLocked(s) {
			h.feedLocked(s, src, cache)
			if s.pos >= h.ring.start() && s.pos < h.ring.top {
				h.feedLocked(s, h.ringSource(), cache)
			}
			// A session with room left goes on at the next pass; one
			// whose window is full is kicked by sent.
			if s.pos < h.ring.top {
				s.wantKick = true
				again = !s.closing && s.inflight < s.window && len(s.out) == 0
			}
		}
		s.mu.Unlock()
		if again {
			h.kickSession(s)
		}
	}
	return true
}

// compacted closes the sessions at pos whose next changes were compacted
// away, with a "compacted" frame: they must re-read state.
func (h *Hub) compacted(group []*session, pos uint64, ce *ctxd.CompactedError, rev uint64) {
	frame := compactedFrame(nil, pos, ce, rev)
	for _, s := range group {
		s.mu.Lock()
		if s.pos == pos && !s.closing {
			s.closeLocked(frame, websocket.CloseNormalClosure, "compacted")
		}
		s.mu.Unlock()
	}
}

// compactedFrame tells a client that the changes after pos are no longer
// in history.
func compactedFrame(id []byte, pos uint64, ce *ctxd.CompactedError, rev uint64) []byte {
	return encode(compactedMsg{
		Type: ctxd.TypeCompacted, ID: id, FromRev: pos, CompactedRevision: ce.Compacted, Rev: rev,
		Message: "the changes after revision " + uitoa(pos) + " are not in history (" + ce.Error() +
			"): re-read the current state (e.g. reconnect with snapshot=true)",
	})
}

func uitoa(n uint64) string { return strconv.FormatUint(n, 10) }
