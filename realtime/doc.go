// Package realtime is ctxd's live change feed: a WebSocket hub, built on
// melody, that streams the store's committed changes to subscribers in
// revision order, with no gap and no duplicate, across reconnects and
// server restarts.
//
// # Basics
//
// [New] starts a [Hub] over a [Store]; mount [Hub.Serve] at GET /v1/watch.
// A client subscribes at connect time with query parameters (ns, prefix,
// from_rev, snapshot, batch) and later with subscribe and unsubscribe
// messages. Every frame is one JSON object with a "type" (see protocol.go
// and README.md for the list); with batch=true, several changes that are
// ready together may share one frame of type "batch".
//
// The hub follows the store's "committed up to revision R" mark and reads
// the change log: replay (from_rev), catch-up of a slow client and live
// delivery are one path. Each session has a position, the last revision it
// has been given; the hub reads the log once per commit into a ring of
// recent, already-encoded changes that every session at a recent position
// shares, and reads the log itself only for sessions older than the ring.
//
// # Caveats
//
// melody drops a message silently when a session's buffer is full. The hub
// therefore never relies on that buffer: it counts each session's frames in
// flight (given to melody, not yet written, learnt from melody's sent
// handler) and gives a session nothing more while its window is full. A
// session that stays further than Options.MaxLag changes behind for
// Options.LagGrace is closed with an "error" frame of code "lagged" that
// names the revision to resume from. The commit path never waits for a
// socket. See DESIGN.md.
//
// Every message a client sends goes through its session's rate limit
// (Options.RateLimit) first: past it the message is refused
// ("rate_limited") and the session's next message is read only after the
// wait it was told; a client that keeps sending past it is closed (1008),
// as is one whose token a reload revoked ([Hub.CloseRevoked]).
package realtime
