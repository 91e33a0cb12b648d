package realtime

import (
	"context"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/gorilla/websocket"
	"github.com/olahol/melody"

	"github.com/framework0/ctxd"
	"github.com/framework0/ctxd/auth"
	"github.com/framework0/ctxd/internal/laggrace"
	"github.com/framework0/ctxd/internal/msglimit"
	"github.com/framework0/ctxd/internal/snapbudget"
)

// maxQueued bounds the frames other than changes (answers, notices) queued
// for a session whose window is full. A client's messages wait before
// maxQueued/2 of them (awaitRoom), so only the hub's own notices could
// reach it: the session is then closed with "lagged".
const maxQueued = 256

// maxAnswerBytes bounds the bytes of the frames other than changes
// (answers, notices, snapshots) a session holds, queued or in flight, not
// yet written to its socket, before its next message is read: a client
// that sends and does not read stalls itself (awaitRoom). One message's
// answers may take it past the bound: a context_patch_confirmed carries
// a value of up to limits.max_value_bytes (1 MiB), a snapshot up to
// max_snapshot_bytes (bounded together by the snapshot budget).
const maxAnswerBytes = 1 << 20

// session is one WebSocket client: its subscriptions, its position in the
// change log, and the frames it has in flight.
//
// Frames go to melody only through writeLocked, which counts them in inflight;
// melody's sent handler counts them out (sent). The hub gives a session
// changes only while inflight < window, and melody's buffer holds window +
// reserveFrames, so melody never has to drop one. Other frames (answers,
// snapshots, notices) wait in out while the window is full and go first
// when it drains: a session gets no change while out is not empty.
type session struct {
	h           *Hub
	id          string
	batch       bool
	window      int
	remote      string
	connectedAt time.Time
	// access is the client's token (access.go): it sees only what the
	// token may read. nil: access control off.
	access *auth.Token
	// limit is the rate limit of the messages it sends (nil: none).
	limit *msglimit.Limiter
	// gen is the store's generation when the session's position was
	// taken (newSession), then the hub's after each reset: a restore
	// made before the session came needs no reset for it (its position
	// was checked against the restored store).
	gen uint64

	ms *melody.Session // set once by the connect handler, before any write

	// ctx ends when the session closes (stop): a subscribe's snapshot
	// waiting for room in the budget stops waiting. Its reader waits
	// there, so nothing else would end the wait: not the end of the
	// connection, nor Hub.Close, which would wait for it forever.
	ctx  context.Context
	stop context.CancelFunc

	mu sync.Mutex
	// subs are the subscriptions; a change matches if any of them matches.
	subs []sub
	// pos is the session's position: every matching change with a revision
	// <= pos has been handed to melody (or was before a reset).
	pos uint64
	// part is how many changes of the first revision after pos the session
	// has been through (each handed to melody or not matching): a session
	// in one-change-per-frame mode whose window fills inside a revision of
	// several changes (an etcd transaction) goes on from there. Batch
	// frames end only between revisions, so part is 0 outside feedLocked.
	part int
	// partRev is the revision part counts in (when part > 0).
	partRev uint64
	// base is the committed revision when the current replay started
	// (connect, or a subscribe that moved pos back): lag is counted from
	// max(pos, base), so that a replay from an old revision is not taken
	// for a slow client.
	base     uint64
	inflight int
	// lagClock follows how long the session has been more than MaxLag
	// changes behind, for Options.LagGrace.
	lagClock laggrace.Clock
	// lastFrame is when the loop last handed a batch session a frame of
	// changes from the ring (Options.BatchInterval).
	lastFrame time.Time
	out       [][]byte
	// queued and popped count the frames ever put in out and taken from
	// it; snapBlocks are the snapshot frames' places in that count
	// ([from, to)): they do not count against maxQueued, which bounds
	// the answers of a client that does not read them (MaxSnapshotBytes
	// bounds a snapshot).
	queued, popped int
	snapBlocks     [][2]int
	// answerBytes is the size of the frames put in out and not yet
	// written to the socket: those in out, and those in flight, whose
	// places among the frames handed to melody are in outFlight (handed
	// and written count the frames handed to melody and written by it).
	answerBytes     int
	outFlight       []flightMark
	handed, written uint64
	// awaiting is set while the session's reader waits for answerBytes
	// to drain (awaitRoom); sent then signals drained.
	awaiting bool
	drained  chan struct{}
	closing  bool
	// wantKick is set when the hub left the session behind for lack of
	// window; sent asks the hub to come back once the window drains.
	wantKick bool
	// sig identifies the subscriptions (not their since), so that sessions
	// with the same subscriptions at the same position share batch frames;
	// maxSince is the largest since: sharing needs maxSince <= pos.
	sig      string
	maxSince uint64

	clientType, name string

	// refuse, when set at connect, is the only frame the session gets
	// (compacted) before it is closed.
	refuse []byte
	// closeMsg is the close frame of a policy close (closePolicyLocked),
	// sent once the frames in flight are written.
	closeMsg []byte

	// held are the snapshot budget's grants of snapshots queued for the
	// client, each released once the frames up to its last are written.
	held []heldGrant

	// kickQueued is guarded by h.mu: the session is in h.kicked.
	kickQueued bool
}

// flightMark is a frame of out handed to melody: handed reached at when
// it was, and its size.
type flightMark struct {
	at   uint64
	size int
}

// heldGrant is a snapshot's grant and how many frames are still to be
// written before its last one is.
type heldGrant struct {
	g    *snapbudget.Grant
	left int
}

// setClosingLocked marks the session closing: the hub gives it nothing
// more, and counts it out of its clients at once (Hub.Clients), although
// its connection may last until the client reads its close frame.
func (s *session) setClosingLocked() {
	if !s.closing {
		s.closing = true
		s.h.closingSessions.Add(1)
	}
}

// queueLocked puts frames at the end of out.
func (s *session) queueLocked(frames ...[]byte) {
	s.out = append(s.out, frames...)
	s.queued += len(frames)
	for _, f := range frames {
		s.answerBytes += len(f)
	}
}

// queueSnapshotLocked puts a snapshot's frames at the end of out.
func (s *session) queueSnapshotLocked(frames [][]byte) {
	s.snapBlocks = append(s.snapBlocks, [2]int{s.queued, s.queued + len(frames)})
	s.queueLocked(frames...)
}

// answersQueuedLocked is how many frames in out are not a snapshot's.
func (s *session) answersQueuedLocked() int {
	n := len(s.out)
	for _, b := range s.snapBlocks {
		n -= b[1] - max(b[0], s.popped)
	}
	return n
}

// dropOutLocked empties out: the session is closing.
func (s *session) dropOutLocked() {
	for _, f := range s.out {
		s.answerBytes -= len(f)
	}
	s.out, s.popped, s.snapBlocks = nil, s.queued, nil
}

// awaitRoom holds the session's reader (melody's readPump, which calls
// it before handling a message) while the answers not yet written to
// the client hold more than maxAnswerBytes, or maxQueued/2 of them wait
// beyond the window, until they drain or the session ends: backpressure.
// A client that sends requests and does not read their answers stalls
// itself (TCP holds back what it sends), as the rate limit does; it is
// cut by the write timeout, as any client that does not read. Before, it was closed with "lagged" after 256 answers,
// and held them all: 256 context_patch_confirmed of 1 MiB values were
// 256 MiB.
//
// The client's pongs come behind the messages held back, and melody's
// read deadline (the pong wait) runs meanwhile: after a wait it starts
// again, as at a pong. The client read what drained the answers: it is
// there (one that does not read is cut by the write timeout).
func (s *session) awaitRoom() {
	s.mu.Lock()
	waited := false
	for s.lacksRoomLocked() {
		waited = true
		s.awaiting = true
		s.mu.Unlock()
		select {
		case <-s.drained:
		case <-s.ctx.Done():
		}
		s.mu.Lock()
	}
	s.awaiting = false
	s.mu.Unlock()
	if waited {
		_ = s.ms.WebsocketConnection().SetReadDeadline(time.Now().Add(s.h.m.Config.PongWait))
	}
}

func (s *session) lacksRoomLocked() bool {
	return !s.closing && s.ctx.Err() == nil &&
		(s.answerBytes > maxAnswerBytes || s.answersQueuedLocked() >= maxQueued/2)
}

// holdLocked keeps g until every frame queued or in flight now is
// written: call it right after queuing a snapshot's frames.
func (s *session) holdLocked(g *snapbudget.Grant) {
	if g == nil {
		return
	}
	if s.closing {
		g.Release()
		return
	}
	s.held = append(s.held, heldGrant{g: g, left: s.inflight + len(s.out)})
	g.ReleaseAfter(s.h.opts.WriteTimeout) // a client that does not read holds no longer
}

// releaseHeld releases every grant the session holds: it is closed.
func (s *session) releaseHeld() {
	s.mu.Lock()
	held := s.held
	s.held = nil
	s.mu.Unlock()
	for _, h := range held {
		h.g.Release()
	}
}

// sub is a subscription and the revision after which it applies. When it
// was left inside a revision (the session moved back while in the middle
// of revision skipRev), it also leaves out the first skipN changes of
// skipRev, which it had matched already.
type sub struct {
	ctxd.Subscription
	since   uint64
	skipRev uint64
	skipN   int
}

func (s *session) matches(e *entry) bool {
	if !s.access.CanRead(e.ns, e.key) {
		return false
	}
	for i := range s.subs {
		u := &s.subs[i]
		if e.rev > u.since && (e.rev != u.skipRev || e.idx >= u.skipN) &&
			(u.Namespace == ctxd.AllNamespaces || u.Namespace == e.ns) && strings.HasPrefix(e.key, u.Prefix) {
			return true
		}
	}
	return false
}

// resumePointLocked is where a client that got every frame handed to
// melody so far resumes: (rev, index) is from_rev and from_index, index 0
// meaning the whole revision rev (no from_index). Inside a revision the
// cursor names it. A session that resumed inside the next revision has
// subscriptions that leave out its first changes: it names that place,
// the fewest any subscription leaves out (when a subscribe with from_rev
// added one with a smaller skip, the others get a few again on resume,
// never a gap; one added without from_rev starts at the frontier, with
// the skip).
func (s *session) resumePointLocked() (rev uint64, index int) {
	if s.part > 0 {
		return s.partRev, s.part
	}
	skip := -1
	for _, u := range s.subs {
		n := 0
		if u.skipRev == s.pos+1 {
			n = u.skipN
		}
		if u.since <= s.pos && (skip < 0 || n < skip) {
			skip = n
		}
	}
	if skip > 0 {
		return s.pos + 1, skip
	}
	return s.pos, 0
}

// resumeQuery renders the resume point as the query that resumes there.
func resumeQuery(rev uint64, index int) string {
	q := "from_rev=" + uitoa(rev)
	if index > 0 {
		q += "&from_index=" + strconv.Itoa(index)
	}
	return q
}

// stepLocked moves the cursor past e, the next change after it.
func (s *session) stepLocked(e *entry) {
	if e.last {
		s.pos, s.part = e.rev, 0
	} else {
		s.part, s.partRev = e.idx+1, e.rev
	}
}

// subscriptionsLocked returns the subscriptions, without their since.
func (s *session) subscriptionsLocked() []ctxd.Subscription {
	out := make([]ctxd.Subscription, len(s.subs))
	for i := range s.subs {
		out[i] = s.subs[i].Subscription
	}
	return out
}

// setSubsLocked replaces the subscriptions and recomputes sig.
func (s *session) setSubsLocked(subs []sub) {
	sort.Slice(subs, func(i, j int) bool {
		if subs[i].Namespace != subs[j].Namespace {
			return subs[i].Namespace < subs[j].Namespace
		}
		return subs[i].Prefix < subs[j].Prefix
	})
	s.subs = subs
	var b strings.Builder
	b.WriteString(s.access.Key()) // frames are shared only within one token's rights
	b.WriteByte(0)
	s.maxSince = 0
	for _, u := range subs {
		b.WriteString(u.Namespace)
		b.WriteByte(0)
		b.WriteString(u.Prefix)
		b.WriteByte(0)
		s.maxSince = max(s.maxSince, u.since, u.skipRev)
	}
	s.sig = b.String()
}

// point is a place in the change log: after every change of the
// revisions below rev, and the first n changes of rev. Its order is the
// log's: "after revision r" is point{r + 1, 0}, which comes after any
// point inside r; on etcd a revision with no change of ours between two
// points changes nothing.
type point struct {
	rev uint64
	n   int
}

func (p point) before(q point) bool { return p.rev < q.rev || (p.rev == q.rev && p.n < q.n) }

// hereLocked is the session's position as a point.
func (s *session) hereLocked() point {
	if s.part > 0 {
		return point{s.partRev, s.part}
	}
	return point{s.pos + 1, 0}
}

// start is where u starts. Its skip, when it has one, is in the first
// revision after since that has changes (on etcd not always since+1).
func (u *sub) start() point {
	if u.skipN > 0 && u.skipRev > u.since {
		return point{u.skipRev, u.skipN}
	}
	return point{u.since + 1, 0}
}

// frontierLocked is where a subscription added without from_rev starts,
// "after the last change already sent", as since and the changes of
// revision since+1 to leave out: the furthest of the session's position
// and the starts of its subscriptions. A session that resumed inside a
// revision (from_index) has not sent its first changes, but its client
// has them: the subscriptions' skip says so. One that moved back for a
// from_rev has sent its other subscriptions' changes up to their since.
// Starting any earlier would send again a change that matches the new
// subscription and one of these.
func (s *session) frontierLocked() (since uint64, skip int) {
	f := s.hereLocked()
	for i := range s.subs {
		if p := s.subs[i].start(); f.before(p) {
			f = p
		}
	}
	return f.rev - 1, f.n
}

// addSubsLocked adds subscriptions that apply to changes after since
// (and, with skip > 0, not to the first skip changes of revision
// since+1: the client resumed inside it). If that is before the
// position, the position moves back to it; the existing subscriptions
// then start where the session was, so that nothing they matched is sent
// twice. An existing subscription with the same namespace and prefix is
// replaced.
func (s *session) addSubsLocked(add []ctxd.Subscription, since uint64, skip int, committed uint64) {
	subs := make([]sub, 0, len(s.subs)+len(add))
	for _, u := range s.subs {
		if !containsSub(add, u.Subscription) {
			subs = append(subs, u)
		}
	}
	if here := s.hereLocked(); (point{since + 1, skip}).before(here) {
		// The existing subscriptions go on from here: inside a revision,
		// its first s.part changes are gone already. One that starts
		// later keeps its start (its skip, if any, is of its own since).
		for i := range subs {
			u := &subs[i]
			if u.start().before(here) {
				u.since = s.pos
				u.skipRev, u.skipN = here.rev, here.n
			}
		}
		s.pos, s.part = since, 0
		s.base = committed
	}
	for _, a := range add {
		u := sub{Subscription: a, since: since}
		if skip > 0 {
			u.skipRev, u.skipN = since+1, skip
		}
		subs = append(subs, u)
	}
	s.setSubsLocked(subs)
}

func containsSub(list []ctxd.Subscription, x ctxd.Subscription) bool {
	for _, y := range list {
		if x == y {
			return true
		}
	}
	return false
}

// writeLocked hands a frame to melody and counts it in flight. It is the
// only way frames reach melody.
func (s *session) writeLocked(frame []byte) {
	if err := s.ms.Write(frame); err != nil {
		s.setClosingLocked() // melody has closed the session already
		s.stop()
		return
	}
	s.inflight++
	s.handed++
}

// pumpLocked moves queued frames to melody while the window allows.
func (s *session) pumpLocked() {
	for len(s.out) > 0 && s.inflight < s.window && !s.closing {
		s.writeLocked(s.out[0])
		if !s.closing {
			s.outFlight = append(s.outFlight, flightMark{at: s.handed, size: len(s.out[0])})
		}
		s.out[0] = nil
		s.out = s.out[1:]
		s.popped++
	}
	for len(s.snapBlocks) > 0 && s.snapBlocks[0][1] <= s.popped {
		s.snapBlocks = s.snapBlocks[1:]
	}
	if len(s.out) == 0 {
		s.out = nil
	}
}

// sendLocked queues a frame that is not a change (an answer, a notice) and
// sends it as soon as the window allows.
func (s *session) sendLocked(frame []byte) {
	if s.closing {
		return
	}
	if s.answersQueuedLocked() >= maxQueued {
		s.closeLaggedLocked("the client does not read its answers")
		return
	}
	s.queueLocked(frame)
	s.pumpLocked()
}

// send is sendLocked with the lock taken.
func (s *session) send(frame []byte) {
	s.mu.Lock()
	s.sendLocked(frame)
	s.mu.Unlock()
}

// sent is called by melody after each text frame is written to the socket.
func (s *session) sent() {
	s.mu.Lock()
	s.inflight--
	s.written++
	for len(s.outFlight) > 0 && s.outFlight[0].at <= s.written {
		s.answerBytes -= s.outFlight[0].size
		s.outFlight = s.outFlight[1:]
	}
	if len(s.outFlight) == 0 {
		s.outFlight = nil
	}
	s.countWrittenLocked()
	s.pumpLocked()
	if s.awaiting && !s.lacksRoomLocked() {
		s.awaiting = false
		select {
		case s.drained <- struct{}{}:
		default:
		}
	}
	kick := s.wantKick && len(s.out) == 0 && s.inflight <= s.window/2 && !s.closing
	if kick {
		s.wantKick = false
	}
	closeNow := s.takeCloseLocked()
	s.mu.Unlock()
	if kick {
		s.h.kickSession(s)
	}
	if closeNow != nil {
		closeNow()
	}
}

// countWrittenLocked counts a written frame against the held grants and
// releases those whose snapshot is now written.
func (s *session) countWrittenLocked() {
	kept := s.held[:0]
	for _, h := range s.held {
		if h.left--; h.left <= 0 {
			h.g.Release()
			continue
		}
		kept = append(kept, h)
	}
	clear(s.held[len(kept):])
	s.held = kept
}

// closeLocked closes the session after a last frame (if any). The frame and
// the close message use melody's reserved slots, beyond the window.
func (s *session) closeLocked(last []byte, code int, reason string) {
	if s.closing {
		return
	}
	if last != nil {
		s.writeLocked(last)
	}
	s.setClosingLocked()
	s.stop()
	s.dropOutLocked()
	_ = s.ms.CloseWithMsg(melody.FormatCloseMessage(code, reason))
}

// closeLinger bounds how long a connection closed by closePolicyLocked
// stays open for the client's answering close frame.
const closeLinger = time.Second

// closePolicyLocked closes the session with the WebSocket closing
// handshake, after a last frame (if any): once every frame in flight is
// written, the close frame (code, reason) is sent, and the connection stays
// open until the client answers it, or for closeLinger. Meanwhile what the
// client sends is read and dropped (admit). closeLocked instead has melody
// close the socket right after its close frame: a client still sending
// (a flood) then has unread data at the server, the kernel resets the
// connection, and the client may never read the frame that says why.
// The caller runs the function returned, if any, after unlocking s.mu.
func (s *session) closePolicyLocked(last []byte, code int, reason string) func() {
	if s.closing {
		return nil
	}
	if last != nil {
		s.writeLocked(last)
	}
	s.setClosingLocked()
	s.stop()
	s.dropOutLocked()
	s.closeMsg = websocket.FormatCloseMessage(code, reason)
	return s.takeCloseLocked()
}

// takeCloseLocked returns the function that sends the pending close frame
// of closePolicyLocked once nothing is in flight, or nil. It writes the
// frame itself (gorilla's WriteControl may be called concurrently with
// melody's writer) and closes the socket closeLinger later, unless the
// client's answer ended the connection first.
func (s *session) takeCloseLocked() func() {
	if s.closeMsg == nil || s.inflight > 0 || s.ms == nil {
		return nil
	}
	msg, conn, wait := s.closeMsg, s.ms.WebsocketConnection(), s.h.opts.WriteTimeout
	s.closeMsg = nil
	return func() {
		if conn.WriteControl(websocket.CloseMessage, msg, time.Now().Add(wait)) != nil {
			_ = conn.Close()
			return
		}
		time.AfterFunc(closeLinger, func() { _ = conn.Close() })
	}
}

// closeLaggedLocked closes a session that fell behind, with an "error"
// frame of code lagged that names where to resume: every matching change
// up to there is in melody's buffer before that frame. The hub closes
// only between revisions (checkLagLocked), so from_index is there only
// for a session that resumed inside a revision and has not finished it.
func (s *session) closeLaggedLocked(why string) {
	from, index := s.resumePointLocked()
	s.h.stats.lagged.Add(1)
	s.h.log.Warn().Str("client_id", s.id).Str("remote", s.remote).Uint64("from_rev", from).Int("from_index", index).Str("why", why).Msg("closing lagging WebSocket client")
	s.closeLocked(encode(errorMsg{
		Type: ctxd.TypeError, Code: ctxd.CodeLagged, FromRev: &from, FromIndex: index,
		Message: "the client fell too far behind (" + why + "); reconnect with " + resumeQuery(from, index) + " to resume",
	}), melody.CloseTryAgainLater, "lagged")
}
