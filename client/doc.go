// Package client is the Go client for ctxd's v1 REST API.
//
// # Basics
//
// [New] takes the server's base URL (such as http://127.0.0.1:8080). Every
// method takes a context and maps to one route:
//
//	Put, Get, Delete    PUT, GET, DELETE /v1/ns/{ns}/keys/{key}
//	Patch               PATCH /v1/ns/{ns}/keys/{key}
//	KeepAlive           POST /v1/ns/{ns}/keys/{key}/keepalive?ttl=
//	List, ListAll       GET  /v1/ns/{ns}/keys?prefix=&after=&limit=
//	Count               GET  /v1/ns/{ns}/keys?prefix=&count=true
//	History             GET  /v1/ns/{ns}/keys/{key}/history?limit=&before=
//	Namespaces          GET  /v1/ns
//	Txn                 POST /v1/txn
//	Status              GET  /v1/status
//	Health, Ready       GET  /healthz, /readyz
//	Export              GET  /v1/ns/{ns}/export (streamed; export.go)
//	Import              POST /v1/ns/{ns}/import
//	Dump, Dumps         POST /v1/ns/{ns}/dumps, GET /v1/dumps
//	DownloadDump        GET  /v1/dumps/{filename}
//	CreateSnapshot, Snapshots, DownloadSnapshot, DeleteSnapshot,
//	UploadSnapshot, ExportSnapshot, RestoreSnapshot
//	                    /v1/snapshots... (snapshots.go)
//	Compact, Defrag     POST /v1/compact, /v1/defrag
//	Watch               GET  /v1/watch (WebSocket; watch.go)
//
// Keys may hold any character the server accepts, "/" included: the client
// path-escapes them.
//
// A client that made a transport of its own (WithConnectTimeout, which a
// client of several instances has by default, or WithTLSConfig) keeps its
// idle connections until they time out: call CloseIdleConnections when
// done with it.
//
// # Several instances
//
// New also takes several instances of one deployment (ctxd instances on one
// etcd prefix), separated by commas. A request goes to the instance that
// took the last one, and moves to the next only when it provably had no
// effect: no connection was made (WithConnectTimeout bounds the attempt),
// it was a read (WithReadTryTimeout bounds its wait for an answer; a read
// answered 502, 503 or 504, or whose answer of success was cut off, moves
// too) or was not written in full, or the
// instance answered 503 unavailable. A write that was sent and not
// answered, or answered outcome_unknown or a proxy's 502, 503 or 504, is never
// sent again (outcome unknown, below); the next request goes to the next
// instance. Watch resumes on the next instance when its own cannot be
// reached or refuses (503, 429; a proxy's 502, 504). Servers lists them,
// the preferred one first (failover.go). A server error (5xx) names its
// instance (APIError.Instance). Health and Ready are nil when
// one instance is healthy or ready (the client can serve requests);
// Instances tells each instance's readiness.
//
// Expiring keys: PutOptions.TTL makes a key expire (a put without it makes
// the key permanent again), as TxnTTL does a transaction's put, KeepAlive
// moves its deadline without a new version, and a Record's ExpiresAt is
// its deadline (zero: never). An expiry comes on the feed as a delete
// with WatchEvent.Expired set. An export carries the deadlines, and
// Import gives each key the time left (ImportResult.SkippedExpired counts
// the keys whose deadline had passed).
//
// # Errors
//
// An error answer from the server is an [*APIError] carrying the HTTP status,
// the JSON error code and, for a version conflict, the key (a
// transaction's op that failed) and its current version;
// [IsNotFound] and [IsConflict] test for the common ones, and an *APIError
// also matches the store's sentinel errors (ctxd.ErrNotFound,
// ctxd.ErrConflict, ...) with errors.Is. A request that got no answer at all
// (connection refused, DNS failure, timeout) returns an error wrapping the
// *url.Error of net/http; [IsConnectionError] tells it apart.
//
// A write whose outcome is not known matches ctxd.ErrOutcomeUnknown
// ([IsOutcomeUnknown]): the server answered 503 outcome_unknown (it took the
// write but the request's time ran out before the commit was confirmed),
// or a Put, Delete, Txn or Import was sent in full and its answer never
// came, or came with a success status and was then cut off (it applied, but
// what it returned is lost), or came as a 503 cut off before its code
// (outcome_unknown as well as unavailable), or as a proxy's 502, 503 or
// 504 (the proxy may have forwarded it). It may or may not have been
// applied: read the key (its version or revision shows whether the write
// is there) before retrying. Such an error is also a connection error
// when no answer came: test IsOutcomeUnknown first. 503 unavailable, by
// contrast (ctxd's, its code unavailable), means nothing was applied.
package client
