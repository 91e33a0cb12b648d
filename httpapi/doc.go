// Package httpapi is ctxd's HTTP front end: the native v1 REST API over a
// [Store], with the middleware every request goes through.
//
// # Basics
//
// [New] builds a [Server] from a Store, a [Config] and a zerolog logger;
// [Server.Handler] is the http.Handler to serve. Routes:
//
//	PUT    /v1/ns/{ns}/keys/{key}           put a JSON value (If-Match: version)
//	GET    /v1/ns/{ns}/keys/{key}[?rev=R]   read a key, now or at revision R
//	DELETE /v1/ns/{ns}/keys/{key}           delete a key (If-Match: version)
//	GET    /v1/ns/{ns}/keys/{key}/history   a key's changes, newest first
//	GET    /v1/ns/{ns}/keys                 list keys (prefix, after, limit)
//	GET    /v1/ns                           namespaces with key counts
//	POST   /v1/txn                          several writes, all or nothing
//	GET    /v1/status, /healthz, /readyz
//	GET    /v1/ns/{ns}/export               a dump sent to the client (export.go)
//	POST   /v1/ns/{ns}/import               a JSON dump applied in one transaction
//	POST   /v1/ns/{ns}/dumps, GET /v1/dumps[/{file}]   dumps in Config.Dumps
//	/ctx, /ctx/...                          the Framework0-compatible API (compat.go)
//	GET /, /ui/{version}/{file}             the web dashboard, embedded (dashboard.go)
//
// Keys may contain "/": clients send them path-escaped ("/" as %2F), and raw
// slashes are accepted too. On GET, a raw path ending in "/history" (not
// "%2Fhistory") is the history route.
//
// Every error, including the router's own 404 and 405, is answered as
// {"error":{"code":"...","message":"..."}}. Store errors become HTTP statuses
// through one table in errors.go; a version conflict also carries
// "current_version" and a read below the compacted revision carries
// "compacted_revision".
//
// Middleware, outermost first: request id (X-Request-Id, echoed back and
// generated when missing), a zerolog access log (one line per request), panic
// recovery (500, stack logged) and the request body limit
// (Config.MaxBodyBytes, 413). The access log line goes to the logger given to
// New; ctxd serve's copies it into a buffer that a goroutine of its own writes
// (internal/asynclog), so a request does not wait for the write. The request
// metrics of each route, method and status are looked up once and kept
// (metrics.go).
//
// # Caveats
//
// The package depends on the store only through the [Store] interface; it
// never imports bbolt. The store is the authority on validation (key, namespace
// and value rules, size limits); handlers check only what HTTP itself carries
// (paths, headers, query parameters). Responses on the hot paths are encoded
// by hand (encode.go) rather than through reflection; their output is tested
// against encoding/json.
//
// [Server.Echo] exposes the Echo instance so that other packages can add
// routes (the Framework0-compatible API, the WebSocket); they inherit the
// middleware and the error format.
package httpapi
