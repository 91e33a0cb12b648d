// Package auth is ctxd's access control: bearer tokens, what each may do
// (roles), and the namespaces and key prefixes it is limited to.
//
// # Basics
//
// A token is a random secret, "ctxd_" followed by 43 characters (32 random
// bytes, base64url), made by [NewSecret] (`ctxd token new`). The server
// never stores it: the tokens file ([LoadTokens]) holds its SHA-256
// ([HashSecret], "sha256:<hex>"), a name, roles and optional limits. A
// request's secret is hashed and compared with every configured hash in
// constant time ([Tokens.Lookup]).
//
// Roles: read (get, list, history, export, watch, status), write (read,
// plus put, delete, transactions, import, WebSocket context_set), admin
// (everything: snapshots, restore, compaction, defrag, dump files on the
// server's disk, metrics) and metrics (GET /metrics only, for a
// Prometheus scraper). Every token may ask what it may do ([Token.Info],
// GET /v1/auth/self). A read or write token may be limited to namespaces
// and/or key prefixes; an admin or metrics token may not (what they reach
// is server-wide).
//
// An [Authorizer] holds the tokens of a file and reloads them (SIGHUP):
// a token that was removed, or whose rights changed, is revoked, and
// checks on the old one fail from then on; [Authorizer.OnRevoke] tells
// the realtime doors, which close the WebSocket connections opened with
// it.
//
// # Caveats
//
// A nil *Token stands for a server without access control and may do
// everything: callers that require a token must check for nil first.
//
// The hash is a plain, fast SHA-256, on purpose: tokens carry 256 random
// bits, so neither a dictionary nor a brute-force search of the hash can
// find one, and a salt or a slow hash (bcrypt, argon2) would only add
// per-request cost. Secrets chosen by people are refused when they are
// shorter than [MinSecretLen].
package auth
