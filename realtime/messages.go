package realtime

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/gorilla/websocket"
	"github.com/olahol/melody"

	"github.com/framework0/ctxd"
	"github.com/framework0/ctxd/internal/msglimit"
	"github.com/framework0/ctxd/internal/snapbudget"
	"github.com/framework0/ctxd/store"
)

// defaultWho is recorded for a context_set that names no author, from a
// client that did not register a name.
const defaultWho = "websocket"

// onMessage handles one message from a client. Whatever is wrong with it
// is answered with an "error" frame to that client alone.
func (h *Hub) onMessage(ms *melody.Session, data []byte) {
	s := sessionOf(ms)
	if s == nil || !h.admit(s, data) {
		return
	}
	if int64(len(data)) > h.opts.MaxMessageBytes {
		s.send(errorFrame(nil, ctxd.CodeTooLarge, "message is "+strconv.Itoa(len(data))+
			" bytes, more than websocket.max_message_bytes ("+strconv.FormatInt(h.opts.MaxMessageBytes, 10)+")"))
		return
	}
	if !utf8.Valid(data) {
		// encoding/json would decode a bad byte as U+FFFD: a key (or a
		// who) the client never named.
		s.send(errorFrame(recoverID(data), ctxd.CodeBadRequest, "message is not valid UTF-8"))
		return
	}
	if err := ctxd.CheckSurrogates(data); err != nil {
		// encoding/json would decode it as U+FFFD: a key the client never
		// named.
		s.send(errorFrame(recoverID(data), ctxd.CodeBadRequest, "message: "+err.Error()))
		return
	}
	var m inMessage
	// Unknown fields are refused, as the REST API's bodies: a misspelt
	// "if_version" must not turn a compare-and-swap into a plain write.
	if err := ctxd.DecodeStrict(data, &m); err != nil {
		s.send(errorFrame(recoverID(data), ctxd.CodeBadRequest, "message is not a valid JSON object: "+err.Error()))
		return
	}
	if err := ctxd.CheckDuplicateMembers(data, "value", "patch"); err != nil {
		s.send(errorFrame(m.ID, ctxd.CodeBadRequest, "message: "+strings.TrimPrefix(err.Error(), ctxd.ErrInvalid.Error()+": ")))
		return
	}
	if !validID(m.ID) {
		s.send(errorFrame(nil, ctxd.CodeBadRequest, `"id" must be a string or a number, of at most `+strconv.Itoa(maxIDBytes)+" bytes"))
		return
	}
	switch m.Type {
	case ctxd.TypeSubscribe:
		h.subscribe(s, &m)
	case ctxd.TypeUnsubscribe:
		h.unsubscribe(s, &m)
	case ctxd.TypeContextSet:
		h.contextSet(s, &m)
	case ctxd.TypeContextPatch:
		h.contextPatch(s, &m)
	case ctxd.TypeClientRegister:
		h.clientRegister(s, &m)
	case ctxd.TypeClientStats:
		s.send(encode(h.clientStats(s, m.ID)))
	case ctxd.TypePing:
		rev, _ := h.st.Committed()
		s.send(encode(pongMsg{Type: ctxd.TypePong, ID: m.ID, Rev: rev}))
	case "":
		s.send(errorFrame(m.ID, ctxd.CodeBadRequest, `message has no "type"`))
	default:
		s.send(errorFrame(m.ID, ctxd.CodeUnknownType, "unknown message type "+strconv.Quote(m.Type)+
			": use subscribe, unsubscribe, context_set, context_patch, client_register, client_stats or ping"))
	}
}

// admit waits until the answers the session has not read yet leave room
// (session.awaitRoom), then applies its rate limit to a message it sent,
// before anything else is done with it. A message past the limit is answered
// with rate_limited and retry_after_ms (and its id, when it has one) and
// not applied, and the session's next message is read only after that
// wait (internal/msglimit); one from a client that kept sending past it
// closes the session (1008, rate_limited). It reports whether to handle
// the message.
func (h *Hub) admit(s *session, data []byte) bool {
	s.awaitRoom()
	s.mu.Lock()
	// Stopped without closing: its connection failed (onError), during
	// awaitRoom's wait or before; melody still reads what the client had
	// sent. Nothing could answer it: dropped, not applied unconfirmed.
	closing := s.closing || s.ctx.Err() != nil
	s.mu.Unlock()
	if closing { // read while the session closes (closePolicyLocked): dropped
		return false
	}
	v, wait := s.limit.Take(time.Now())
	if v == msglimit.Accept {
		return true
	}
	msg := errorMsg{Type: ctxd.TypeError, Code: ctxd.CodeRateLimited, RetryAfterMS: msglimit.RetryAfterMillis(wait)}
	if v == msglimit.Refuse {
		msg.Message = s.limit.RefusedMessage(wait)
		if int64(len(data)) <= h.opts.MaxMessageBytes {
			msg.ID = recoverID(data)
		}
	} else {
		msg.Message = s.limit.DisconnectMessage()
	}
	s.mu.Lock()
	if s.closing {
		s.mu.Unlock()
		return false
	}
	h.stats.rateLimited.Add(1)
	if v == msglimit.Refuse {
		s.sendLocked(encode(msg))
		s.mu.Unlock()
		// This runs in the session's reader (melody's readPump): its next
		// message is read once the bucket holds one again.
		time.Sleep(msglimit.Pause(wait))
		return false
	}
	h.stats.rateLimitClosed.Add(1)
	h.log.Warn().Str("client_id", s.id).Str("remote", s.remote).Msg("closing WebSocket client: it kept sending past its rate limit")
	closeNow := s.closePolicyLocked(encode(msg), websocket.ClosePolicyViolation, ctxd.CodeRateLimited)
	s.mu.Unlock()
	if closeNow != nil {
		closeNow()
	}
	return false
}

// errorFrame is an error frame; its message is cut to
// ctxd.MaxMessageText bytes (it may quote what the client sent).
func errorFrame(id json.RawMessage, code, msg string) []byte {
	return encode(errorMsg{Type: ctxd.TypeError, ID: id, Code: code, Message: ctxd.ClipMessage(msg)})
}

// maxIDBytes bounds a message's id (its JSON text), which every answer
// to the message repeats: an id as long as the message made each answer
// as large, and a client that did not read had up to maxQueued of them
// queued.
const maxIDBytes = 256

// validID accepts no id, a string or a number, of at most maxIDBytes.
func validID(id json.RawMessage) bool {
	if len(id) == 0 {
		return true
	}
	if len(id) > maxIDBytes {
		return false
	}
	var v any
	if json.Unmarshal(id, &v) != nil {
		return false
	}
	switch v.(type) {
	case string, float64:
		return true
	}
	return false
}

// recoverID finds the "id" of a message that failed to decode as a whole
// (a field of the wrong type), so that the error can still name it.
func recoverID(data []byte) json.RawMessage {
	var m struct {
		ID json.RawMessage `json:"id"`
	}
	if json.Unmarshal(data, &m) != nil || !validID(m.ID) {
		return nil
	}
	return m.ID
}

// subscribe adds subscriptions: after the current position, after
// from_rev, or after a snapshot of them that is sent first.
func (h *Hub) subscribe(s *session, m *inMessage) {
	subs, err := makeSubs(m.NS, m.Prefix)
	if err != nil {
		s.send(errorFrame(m.ID, ctxd.CodeBadRequest, "subscribe: "+err.Error()))
		return
	}
	if ns := forbiddenNamespace(subs, s.access); ns != "" {
		s.send(errorFrame(m.ID, CodeForbidden, "subscribe: "+forbiddenMessage(ns, s.access)))
		return
	}
	if m.Snapshot && m.FromRev != nil {
		s.send(errorFrame(m.ID, ctxd.CodeBadRequest, "subscribe: give from_rev or snapshot, not both"))
		return
	}
	var (
		snap    [][]byte
		snapRev uint64
		grant   *snapbudget.Grant
	)
	if m.FromIndex != nil && m.FromRev == nil {
		s.send(errorFrame(m.ID, ctxd.CodeBadRequest, "subscribe: from_index needs from_rev: it counts changes of that revision"))
		return
	}
	var (
		after uint64
		skip  int
		reset []byte // the subscribe's from_rev is past the database
	)
	switch {
	case m.FromRev != nil && store.Ahead(h.st, *m.FromRev, m.FromIndex):
		after, _ = h.st.Committed()
		reset = h.aheadReset(s, m.ID, *m.FromRev, after)
	case m.FromRev != nil:
		var ce *ctxd.CompactedError
		after, skip, ce, err = h.resumeFrom(*m.FromRev, m.FromIndex)
		if err != nil {
			s.send(h.storeError(m.ID, "subscribe", err))
			return
		}
		if ce != nil {
			rev, _ := h.st.Committed()
			s.send(compactedFrame(m.ID, *m.FromRev, ce, rev))
			return
		}
	}
	tooMany := func() bool { return len(s.subs)+len(subs) > maxSubscriptions }
	tooManyFrame := errorFrame(m.ID, ctxd.CodeBadRequest, "subscribe: at most "+strconv.Itoa(maxSubscriptions)+" subscriptions per client")
	var committed uint64
	for attempt := 1; ; attempt++ {
		gen := h.st.Generation()
		if m.Snapshot {
			s.mu.Lock()
			full := tooMany()
			s.mu.Unlock()
			if full { // before the snapshot is built: none is for nothing
				s.send(tooManyFrame)
				return
			}
			// The session's reader waits here for room in the budget
			// (until the session closes): its next messages come after
			// the snapshot, as they would anyway.
			snap, snapRev, grant, err = h.snapshot(s.ctx, subs, m.ID, s.access)
			if err != nil {
				s.send(h.storeError(m.ID, "subscribe", err))
				return
			}
		}
		committed, _ = h.st.Committed()
		s.mu.Lock()
		if !m.Snapshot || h.st.Generation() == gen || attempt == 3 {
			break // with s.mu held
		}
		// A restore replaced the data while the snapshot was read: it
		// may be the replaced data's, and the session may have been
		// told "reset" already, after which it must not come. Again.
		s.mu.Unlock()
		grant.Release()
	}
	if tooMany() {
		s.sendLocked(tooManyFrame)
		s.mu.Unlock()
		grant.Release()
		return
	}
	var since uint64
	switch {
	case m.FromRev != nil:
		since = after
	case m.Snapshot:
		since = snapRev
	default:
		since, skip = s.frontierLocked()
	}
	s.addSubsLocked(subs, since, skip, committed)
	rev, index := s.resumePointLocked()
	if m.FromRev != nil || m.Snapshot {
		rev, index = since, 0
		if skip > 0 {
			rev, index = since+1, skip
		}
	}
	s.sendLocked(encode(subscribedMsg{Type: ctxd.TypeSubscribed, ID: m.ID, ClientID: s.id, Rev: rev, Index: index,
		Subscriptions: s.subscriptionsLocked(), Batch: s.batch}))
	if reset != nil {
		s.sendLocked(reset)
	}
	if !s.closing {
		s.queueSnapshotLocked(snap)
	}
	s.holdLocked(grant)
	s.pumpLocked()
	s.mu.Unlock()
	h.kickSession(s)
}

// unsubscribe removes the given (namespace, prefix) subscriptions.
func (h *Hub) unsubscribe(s *session, m *inMessage) {
	subs, err := makeSubs(m.NS, m.Prefix)
	if err != nil {
		s.send(errorFrame(m.ID, ctxd.CodeBadRequest, "unsubscribe: "+err.Error()))
		return
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	kept := make([]sub, 0, len(s.subs))
	removed := 0
	for _, u := range s.subs {
		if containsSub(subs, u.Subscription) {
			removed++
			continue
		}
		kept = append(kept, u)
	}
	if removed == 0 {
		s.sendLocked(errorFrame(m.ID, ctxd.CodeBadRequest, "unsubscribe: no such subscription (ns and prefix must match a subscription exactly)"))
		return
	}
	s.setSubsLocked(kept)
	rev, index := s.resumePointLocked()
	s.sendLocked(encode(subscribedMsg{Type: ctxd.TypeSubscribed, ID: m.ID, ClientID: s.id, Rev: rev, Index: index,
		Subscriptions: s.subscriptionsLocked(), Batch: s.batch}))
}

// contextSet writes a value through the store, with the REST API's checks
// and compare-and-swap (if_version), and answers context_set_confirmed.
func (h *Hub) contextSet(s *session, m *inMessage) {
	ns, who, ok := h.writeTarget(s, m, "context_set")
	if !ok {
		return
	}
	if m.Value == nil {
		s.send(errorFrame(m.ID, ctxd.CodeBadRequest, `context_set: "value" is missing (use null for null)`))
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), h.opts.WriteTimeout)
	defer cancel()
	rec, err := h.st.Put(ctx, ns, m.Key, bytes.TrimSpace(m.Value), m.IfVersion, who)
	if err != nil {
		s.send(h.storeError(m.ID, "context_set", err))
		return
	}
	s.send(encode(setConfirmedMsg{Type: ctxd.TypeContextSetConfirmed, ID: m.ID, NS: rec.Namespace, Key: rec.Key,
		Version: rec.Version, Rev: rec.ModRev, Who: rec.Who, Timestamp: rec.UpdatedAt.UTC()}))
}

// contextPatch applies a patch through the store, as PATCH does (the
// store applies it to the value current when it commits; if_version
// works), and answers context_patch_confirmed with the value it left.
func (h *Hub) contextPatch(s *session, m *inMessage) {
	ns, who, ok := h.writeTarget(s, m, "context_patch")
	if !ok {
		return
	}
	doc := bytes.TrimSpace(m.Patch)
	if len(doc) == 0 {
		s.send(errorFrame(m.ID, ctxd.CodeBadRequest, `context_patch: "patch" is missing: a JSON Patch array or a merge patch`))
		return
	}
	typ, err := ctxd.ParsePatchType(m.PatchType, doc)
	if err != nil {
		s.send(errorFrame(m.ID, ctxd.CodeBadRequest, "context_patch: "+err.Error()))
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), h.opts.WriteTimeout)
	defer cancel()
	rec, err := h.st.Patch(ctx, ns, m.Key, ctxd.Patch{Type: typ, Doc: doc}, m.IfVersion, who)
	if err != nil {
		s.send(h.storeError(m.ID, "context_patch", err))
		return
	}
	s.send(encode(patchConfirmedMsg{Type: ctxd.TypeContextPatchConfirmed, ID: m.ID, NS: rec.Namespace, Key: rec.Key,
		Value: rec.Value, Version: rec.Version, Rev: rec.ModRev, Who: rec.Who, Timestamp: rec.UpdatedAt.UTC()}))
}

// writeTarget checks what a context_set or context_patch (op) writes: one
// namespace, a key, the session's right to write it; and who the change is
// recorded as. A refusal is answered here, and ok is false.
func (h *Hub) writeTarget(s *session, m *inMessage, op string) (ns, who string, ok bool) {
	ns = ctxd.DefaultNamespace
	switch len(m.NS) {
	case 0:
	case 1:
		ns = m.NS[0]
	default:
		s.send(errorFrame(m.ID, ctxd.CodeBadRequest, op+": give one ns"))
		return "", "", false
	}
	if m.Key == "" {
		s.send(errorFrame(m.ID, ctxd.CodeBadRequest, op+`: "key" is missing or empty`))
		return "", "", false
	}
	if !s.access.CanWrite(ns, m.Key) {
		s.send(errorFrame(m.ID, CodeForbidden, op+": "+ns+"/"+strconv.Quote(m.Key)+" may not be written with "+s.access.Describe()))
		return "", "", false
	}
	who = m.Who
	if who == "" {
		s.mu.Lock()
		who = s.name
		s.mu.Unlock()
	}
	return ns, s.access.Author(who, defaultWho), true
}

// storeError turns a store error into an "error" frame with the REST API's
// code and details.
func (h *Hub) storeError(id json.RawMessage, op string, err error) []byte {
	_, code, known := ctxd.Classify(err)
	msg := errorMsg{Type: ctxd.TypeError, ID: id, Code: code, Message: ctxd.ClipMessage(err.Error())}
	if !known {
		msg.Code = ctxd.CodeInternal
		h.log.Error().Err(err).Str("op", op).Msg("WebSocket request failed")
		msg.Message = op + ": internal error"
	}
	var ce *ctxd.ConflictError
	if errors.As(err, &ce) {
		cur := ce.Current
		msg.NS, msg.Key, msg.CurrentVersion = ce.Namespace, ce.Key, &cur
	}
	var cpe *ctxd.CompactedError
	if errors.As(err, &cpe) {
		msg.CompactedRevision = cpe.Compacted
	}
	var pe *ctxd.PatchError
	if errors.As(err, &pe) {
		idx, ptr := pe.Index, pe.Pointer
		msg.OpIndex, msg.Op, msg.Pointer = &idx, pe.Op, &ptr
	}
	return encode(msg)
}

func (h *Hub) clientRegister(s *session, m *inMessage) {
	for _, err := range []error{ctxd.ValidateClientName("client_type", m.ClientType), ctxd.ValidateClientName("name", m.Name)} {
		if err != nil {
			s.send(errorFrame(m.ID, ctxd.CodeBadRequest, "client_register: "+err.Error()))
			return
		}
	}
	ct := m.ClientType
	if ct == "" {
		ct = "unknown"
	}
	s.mu.Lock()
	s.clientType, s.name = ct, m.Name
	s.sendLocked(encode(registeredMsg{Type: ctxd.TypeRegistrationConfirmed, ID: m.ID, ClientID: s.id,
		ClientType: ct, Name: m.Name, Timestamp: time.Now().UTC()}))
	s.mu.Unlock()
}

// clientStats counts the connected clients, by registered type
// ("unregistered" for the others), for the client asking: one whose token
// is limited to namespaces or prefixes is told the types of its own
// token's clients only (a type names what another token's client is, and
// a limited token is told only of what it may read, README "Access
// control"); connected_clients counts every client, as /v1/status does.
func (h *Hub) clientStats(asking *session, id json.RawMessage) statsMsg {
	byType := map[string]int{}
	sessions := h.all()
	own := asking.access
	for _, s := range sessions {
		if !own.Unlimited() && (s.access == nil || s.access.Name != own.Name) {
			continue
		}
		s.mu.Lock()
		t := s.clientType
		s.mu.Unlock()
		if t == "" {
			t = "unregistered"
		}
		byType[t]++
	}
	rev, _ := h.st.Committed()
	return statsMsg{Type: ctxd.TypeClientStats, ID: id, ConnectedClients: len(sessions), ClientsByType: byType,
		Rev: rev, Timestamp: time.Now().UTC()}
}
