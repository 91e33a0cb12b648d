package realtime

import (
	"strconv"

	"github.com/gorilla/websocket"

	"github.com/framework0/ctxd"
	"github.com/framework0/ctxd/auth"
)

// Access control on the WebSocket. The API's gate (httpapi, access.go)
// checks the token at the upgrade (header, or ?token= for browsers) and
// hands it to Serve; a session keeps it (nil: access control off) and:
//
//   - receives only the changes and snapshot keys the token may read
//     (session.matches, Hub.snapshot), and context_dumped only for the
//     namespaces it may read whole;
//   - may write with context_set only what the token may write;
//   - may not subscribe to a namespace the token cannot read at all
//     (403 at connect, an error frame for subscribe); "*" is allowed and
//     filtered.
//
// Sessions share batch frames only with sessions of the same token object
// (the token's Key is part of the session's sig).
//
// A token revoked by a reload of the tokens file reads nothing more from
// then on, and the server (auth.Authorizer.OnRevoke) calls CloseRevoked,
// which closes the sessions opened with it: an error frame of code
// token_revoked, then close 1008 with reason "token_revoked". A session
// that registers while the reload runs checks its token itself once
// registered (onConnect): the token is marked revoked before CloseRevoked
// lists the sessions, so one of the two sees it.

// CodeForbidden: the token may not do what the message asks.
const CodeForbidden = ctxd.CodeForbidden

// CloseRevoked closes every session whose token was revoked by a reload
// of the tokens file. It never blocks on a client.
func (h *Hub) CloseRevoked() {
	for _, s := range h.all() {
		if s.access.Revoked() {
			s.closeRevoked()
		}
	}
}

// closeRevoked closes a session whose token was revoked, saying whether a
// reconnection with it would be refused: the token its secret opens now
// (Options.Access's Successor) is nil when it was removed, and may no
// longer read what the session watches.
func (s *session) closeRevoked() {
	var now *auth.Token
	if s.h.opts.Access != nil {
		now = s.h.opts.Access.Successor(s.access)
	}
	s.mu.Lock()
	if s.closing {
		s.mu.Unlock()
		return
	}
	s.h.stats.revoked.Add(1)
	s.h.log.Info().Str("client_id", s.id).Str("remote", s.remote).Str("token", s.access.Name).Msg("closing WebSocket client: its token was revoked")
	msg := "token " + strconv.Quote(s.access.Name)
	if now == nil {
		msg += " was removed by a reload of the tokens file: a connection with it is refused (401)"
	} else if ns := forbiddenNamespace(s.subscriptionsLocked(), now); ns != "" {
		msg += "'s rights were changed by a reload of the tokens file: it may no longer watch namespace " + strconv.Quote(ns) +
			" (a connection asking for it is refused, 403)"
	} else {
		msg += "'s rights were changed by a reload of the tokens file: reconnect with it for its new rights"
	}
	closeNow := s.closePolicyLocked(errorFrame(nil, ctxd.CodeTokenRevoked, msg), websocket.ClosePolicyViolation, ctxd.CodeTokenRevoked)
	s.mu.Unlock()
	if closeNow != nil {
		closeNow()
	}
}

// forbiddenNamespace returns the first namespace of subs that t may not
// read at all, or "" when there is none.
func forbiddenNamespace(subs []ctxd.Subscription, t *auth.Token) string {
	for _, u := range subs {
		if u.Namespace != ctxd.AllNamespaces && !t.SeesNamespace(u.Namespace) {
			return u.Namespace
		}
	}
	return ""
}

func forbiddenMessage(ns string, t *auth.Token) string {
	return "namespace " + strconv.Quote(ns) + " may not be watched with " + t.Describe()
}
