// Package socketio is ctxd's Socket.IO door (/socket.io/), for Framework0's
// live clients (python-socketio's AsyncClient, the socket.io JavaScript
// client v4): Engine.IO v4 (HTTP long-polling, WebSocket, and the upgrade
// between them; ping/pong from the server) and Socket.IO v5 on the main
// namespace "/", written on gorilla/websocket.
//
// Each client follows the store's committed mark with its own position in
// the log, as /v1/watch's sessions do (realtime/DESIGN.md): every change it
// matches, in revision order, no gap and no duplicate; a client more than
// max_lag changes behind for lag_grace gets an "error" event of code
// "lagged" with the from_rev to resume from, and is disconnected. Phase 1 runs one goroutine
// per client reading the log (the hub shares one read and a ring between
// its sessions); see README.md "Framework0 clients".
//
// As on /v1/watch, every Socket.IO packet a session sends goes through its
// rate limit first (Options.RateLimit: refused with "rate_limited", the
// session's next packet read only after the wait it was told; closed with
// 1008 when it keeps sending past it), and a client whose token a reload
// revoked is disconnected ([Server.CloseRevoked]).
package socketio
