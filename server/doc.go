// Package server puts ctxd's server together from a configuration: the
// storage backend, its snapshots and background maintenance, the metrics
// registry, the WebSocket hub and the HTTP API, behind one *http.Server
// with its timeouts, limits and TLS certificate. It owns the order in which
// these start and stop. `ctxd serve` runs one on a listener until a signal;
// `ctxd perf` runs several in-process; tests run one on 127.0.0.1:0
// (internal/testkit). It plays the part of etcd's embed package.
//
// # Basics
//
//	srv, err := server.New(cfg, log, server.Version(version))
//	ln, err := net.Listen("tcp", cfg.Addr)
//	go srv.Serve(ln)               // http.ErrServerClosed after Shutdown
//	...
//	err = srv.Shutdown(ctx)        // ctx bounds the requests in flight
//
// New opens everything or nothing: on error, what it opened is closed
// again. Shutdown stops in this order: the hub (its WebSocket connections
// are hijacked, so the HTTP server does not see them: each client gets a
// close frame naming where to resume), the HTTP server (requests in flight
// finish within ctx, then their connections are closed), the background
// maintenance, and last the store, once nothing can write to it.
//
// [Server.Access] and [Server.ReloadTLS] are what a reload (SIGHUP) needs:
// the tokens file and the TLS certificate are read again, and a file that
// does not load leaves the previous one in use. A reload that revokes
// tokens closes the /v1/watch and Socket.IO connections opened with them
// (close 1008, reason token_revoked).
//
// # Layout
//
// Inside cfg.DataDir: the database ([DBFile]), the snapshots folder
// ([SnapshotsDir], unless snapshots.dir names another, which several
// instances may share) and the dumps folder ([DumpsDir]).
//
// Dependencies go one way: cmd/ctxd -> server -> httpapi, realtime ->
// store <- store/bolt. Package client never imports server.
package server
