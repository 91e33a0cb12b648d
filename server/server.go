package server

import (
	"cmp"
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io/fs"
	stdlog "log"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/gorilla/websocket"
	"github.com/labstack/echo/v4"
	"github.com/rs/zerolog"

	"github.com/framework0/ctxd"
	"github.com/framework0/ctxd/auth"
	"github.com/framework0/ctxd/configs"
	"github.com/framework0/ctxd/export"
	"github.com/framework0/ctxd/httpapi"
	"github.com/framework0/ctxd/internal/fsutil"
	"github.com/framework0/ctxd/internal/snapbudget"
	"github.com/framework0/ctxd/migrations"
	"github.com/framework0/ctxd/realtime"
	"github.com/framework0/ctxd/realtime/socketio"
	"github.com/framework0/ctxd/store"
	"github.com/framework0/ctxd/store/bolt"
	"github.com/framework0/ctxd/store/etcd"
	"github.com/framework0/ctxd/store/snapshots"
)

// Names inside the data folder.
const (
	DBFile       = "ctxd.db"               // the database
	SnapshotsDir = configs.SnapshotsSubdir // snapshots (store/snapshots)
	DumpsDir     = configs.DumpsSubdir     // dump files written through the API
)

// idleTimeout is how long a keep-alive connection may wait for its next
// request. There is no WriteTimeout: it would cut off long downloads and
// the WebSocket watch; a slow reader is bounded by TCP.
const idleTimeout = 2 * time.Minute

// Server is ctxd's server put together from a configuration, ready to
// serve on a listener.
type Server struct {
	cfg     configs.Config
	log     zerolog.Logger
	st      store.Backend
	api     *httpapi.Server
	snaps   *snapshots.Manager
	hub     *realtime.Hub
	sio     *socketio.Server
	handler http.Handler
	hs      *http.Server
	access  *auth.Authorizer // nil: access control off
	certs   *certReloader    // nil: plain HTTP
	conns   *openConns       // the connections Serve accepted

	recovery        bolt.Recovery // what the store replayed at open
	stopMaintenance func()        // stops the background work and waits for it
	stopOnce        sync.Once
	stopErr         error
}

// Option changes how New builds the server.
type Option func(*options)

type options struct {
	version    string
	wrap       func(http.Handler) http.Handler
	onCommit   func(store.CommitInfo)
	logDropped func() uint64
	storeOpts  func(*bolt.Options)
}

// StoreOptions has f change the options the bbolt store is opened with
// (ctxd perf holds its committer back to measure a crash restart's replay).
func StoreOptions(f func(*bolt.Options)) Option { return func(o *options) { o.storeOpts = f } }

// Version is the version /v1/status reports (the binary's).
func Version(v string) Option { return func(o *options) { o.version = v } }

// OnCommit has f told of every commit of the store's writer, after the
// metrics are, in the writer's goroutine: it must be quick (a program
// embedding the server observes its commits; tests hold the writer to
// decide when a caller sees its answer).
func OnCommit(f func(store.CommitInfo)) Option { return func(o *options) { o.onCommit = f } }

// LogDropped has /metrics report f's count as
// ctxd_log_dropped_lines_total: the log lines that the logger given to New
// dropped because its output did not keep up (ctxd serve's logger buffers
// lines for a goroutine of its own to write: internal/asynclog).
func LogDropped(f func() uint64) Option { return func(o *options) { o.logDropped = f } }

// WrapHandler puts wrap's handler in front of the API, WebSocket included
// (tests use it to cut connections as a network failure would).
func WrapHandler(wrap func(http.Handler) http.Handler) Option {
	return func(o *options) { o.wrap = wrap }
}

// New opens the store in cfg.DataDir and builds the server around it.
// Configuration mistakes found here (a TLS certificate or a tokens file
// that does not load) are *configs.Error.
func New(cfg configs.Config, log zerolog.Logger, opts ...Option) (*Server, error) {
	var o options
	for _, opt := range opts {
		opt(&o)
	}
	certs, err := newCertReloader(cfg) // tls.go
	if err != nil {
		return nil, err
	}
	access, err := newAccess(cfg, log) // tls.go
	if err != nil {
		return nil, err
	}
	metrics := newMetrics() // metrics.go
	if o.logDropped != nil {
		metrics.registerLogDropped(o.logDropped)
	}
	onCommit := metrics.onCommit
	if o.onCommit != nil {
		onCommit = func(c store.CommitInfo) { metrics.onCommit(c); o.onCommit(c) }
	}
	st, recovery, err := openBackend(cfg, onCommit, o.storeOpts, log)
	if errors.Is(err, syscall.EROFS) {
		// As for the snapshots folder below: no restart makes the file
		// system writable (exit 2, not 1, which systemd restarts).
		err = &configs.Error{Field: "data_dir", Source: cfg.Source("data_dir"), Err: err}
	}
	if err != nil {
		return nil, err
	}
	snapDir, dumpDir := cfg.SnapshotsFolder(), cfg.DumpsFolder()
	warnOfSpoolRoom(cfg, dumpDir, log)
	snaps, err := snapshots.Open(snapDir, st)
	if errors.Is(err, fs.ErrPermission) || errors.Is(err, syscall.EROFS) {
		// The folder the settings name cannot be used (not the user's, or
		// on a read-only file system: systemd's ProtectSystem=strict
		// makes every path outside ReadWritePaths one): a configuration
		// error (exit 2), which restarting will not fix.
		err = &configs.Error{Field: "snapshots.dir", Source: cfg.FolderSource("snapshots.dir"), Err: fmt.Errorf("%s: %w (the server's user must be able to write it)", snapDir, err)}
	}
	if err != nil {
		return nil, errors.Join(err, st.Close())
	}
	snaps.OnCreate = metrics.onSnapshot
	snaps.Reserve = cfg.Storage.ReserveBytes
	dumps, err := export.OpenDir(dumpDir)
	if errors.Is(err, fs.ErrPermission) || errors.Is(err, syscall.EROFS) {
		// As for the snapshots folder: a configuration error (exit 2).
		// A server that started without it answered every dump 503.
		err = &configs.Error{Field: "dumps.dir", Source: cfg.FolderSource("dumps.dir"), Err: fmt.Errorf("%s: %w (the server's user must be able to write it)", dumpDir, err)}
	}
	if err != nil {
		return nil, errors.Join(err, st.Close())
	}
	dumps.Reserve = cfg.Storage.ReserveBytes
	metrics.registerStore(st, snaps)
	stopMaintenance := startMaintenance(cfg, st, snaps, log) // maintenance.go

	snapshotBudget := snapbudget.New(cfg.WebSocket.SnapshotMemoryBytes)
	// The doors share websocket.max_clients, each counting the other's
	// clients: sio is set before either serves.
	var sio *socketio.Server
	hub := realtime.New(st, realtimeOptions(cfg.WebSocket, access, snapshotBudget, func() int { return sio.Sessions() }), log.With().Str("component", "realtime").Logger()) // watch.go
	sio = socketio.New(st, socketioOptions(cfg.WebSocket, cfg.Compat.Namespace, hub, access, snapshotBudget), log.With().Str("component", "socketio").Logger())
	if access != nil {
		// A reload (SIGHUP) that revokes tokens closes the realtime
		// connections opened with them (1008, token_revoked).
		access.OnRevoke(func() { hub.CloseRevoked(); sio.CloseRevoked() })
	}
	api := httpapi.New(st, httpapi.Config{
		Version: o.version, MaxBodyBytes: cfg.HTTP.MaxBodyBytes, OnDump: notifyDumped(hub, sio),
		Clients:         func() int { return hub.Clients() + sio.Clients() },
		CompatNamespace: cfg.Compat.Namespace, Dumps: dumps,
		DumpRetention: export.Retention{Keep: cfg.Dumps.Keep, MaxBytes: cfg.Dumps.MaxBytes},
		Snapshots:     snaps, KeepVersions: cfg.History.KeepVersions,
		MaxUploadBytes: cfg.Snapshots.MaxUploadBytes, MaxSpoolBytes: cfg.HTTP.MaxSpoolBytes,
		Metrics: metrics.reg, Gatherer: metrics.reg,
		Access: access, CORSOrigins: cfg.HTTP.CORSOrigins, RateLimit: cfg.HTTP.RateLimit, RateBurst: cfg.HTTP.RateBurst,
		// Off by auto on loopback: nothing guards the data but the address.
		LocalHostsOnly: cfg.Auth.Mode == configs.AuthAuto && !cfg.AuthEnabled(),
	}, log)
	api.Echo().GET("/v1/watch", hub.Serve)
	serveSocketIO := func(c echo.Context) error {
		// A Socket.IO client's token comes in its CONNECT packet: the
		// server notes it, for the access log.
		c.SetRequest(c.Request().WithContext(auth.WithNote(c.Request().Context())))
		sio.ServeHTTP(c.Response(), c.Request())
		if !c.Response().Committed && websocket.IsWebSocketUpgrade(c.Request()) {
			// Upgraded (a refusal writes its status): the access log
			// and the metrics show 101, as for /v1/watch.
			c.Response().Status = http.StatusSwitchingProtocols
		}
		return nil
	}
	api.Echo().GET("/socket.io/", serveSocketIO)
	api.Echo().POST("/socket.io/", serveSocketIO)
	if cfg.HTTP.Pprof {
		api.Echo().Any("/debug/pprof/*", echo.WrapHandler(pprofHandler())) // pprof.go
	}
	metrics.registerHub(hub, sio, snapshotBudget)
	handler := api.Handler()
	if o.wrap != nil {
		handler = o.wrap(handler)
	}

	hs := &http.Server{
		Handler:           handler,
		ReadHeaderTimeout: cfg.HTTP.ReadHeaderTimeout,
		ReadTimeout:       cfg.HTTP.ReadTimeout,
		IdleTimeout:       idleTimeout,
		MaxHeaderBytes:    int(cfg.HTTP.MaxHeaderBytes),
		// OPTIONS * reaches the handler, which answers it as any
		// request (a JSON 400, the access log), not net/http's bare 200.
		DisableGeneralOptionsHandler: true,
		ErrorLog:                     stdlog.New(logWriter{log.With().Str("component", "http").Logger()}, "", 0),
	}
	if certs != nil { // TLS 1.2 or later; HTTP/2 is offered, WebSockets use HTTP/1.1
		hs.TLSConfig = &tls.Config{MinVersion: tls.VersionTLS12, GetCertificate: certs.getCertificate}
	}
	conns := newOpenConns()
	hs.RegisterOnShutdown(conns.closeUnused) // spareconns.go
	return &Server{
		cfg: cfg, log: log, st: st, api: api, snaps: snaps, hub: hub, sio: sio, handler: handler, hs: hs,
		access: access, certs: certs, conns: conns, stopMaintenance: stopMaintenance, recovery: recovery,
	}, nil
}

// openBackend opens the storage backend the configuration names:
// bbolt in DataDir/ctxd.db (store.backend bolt), or the etcd cluster of
// etcd.* (store.backend etcd). tune, when set, adjusts bbolt's options
// (ctxd perf's measurements); the recovery is bbolt's (none on etcd).
func openBackend(cfg configs.Config, onCommit func(store.CommitInfo), tune func(*bolt.Options), log zerolog.Logger) (store.Backend, bolt.Recovery, error) {
	if cfg.Store.Backend == configs.BackendEtcd {
		st, err := openEtcd(cfg, onCommit, log)
		return st, bolt.Recovery{}, err
	}
	if err := fsutil.MkdirAll(cfg.DataDir, 0o750); err != nil {
		return nil, bolt.Recovery{}, fmt.Errorf("create data folder: %w", err)
	}
	path := filepath.Join(cfg.DataDir, DBFile)
	quota := storageQuota(cfg, log)
	opts := bolt.Options{
		Limits: cfg.Limits, OnCommit: onCommit, QuotaBytes: quota, Reserve: cfg.Storage.ReserveBytes,
		WALSegmentSize: cfg.WAL.SegmentBytes, CommitInterval: cfg.WAL.CommitInterval,
		CommitChanges: cfg.WAL.CommitChanges, DirectBytes: cfg.WAL.DirectBytes,
		GetCacheBytes: cmp.Or(cfg.Store.ReadCacheBytes, -1), // 0 in the config: off
		OpenTimeout:   migrations.GivenLockWait(cfg.Storage.LockTimeout),
	}
	opts.OnSchemaUpgrade = func(from, to int) {
		log.Info().Str("path", path).Int("from", from).Int("to", to).
			Msg("upgrading the database file to this version's schema: one transaction over the whole file, which a large one takes a while to make")
	}
	opts.OnClockStep = func(step time.Duration, moved int) {
		log.Warn().Str("step", step.String()).Int("deadlines_moved", moved).
			Msg("the system clock stepped: each expiring key keeps the time it had left (its deadline moved by the step)")
	}
	opts.OnFail = func(err error) {
		// The one line at error: the writes and /readyz probes refused
		// from now on log theirs below it.
		log.Error().Err(err).Str("path", path).
			Msg("the store failed: writes answer 503 unavailable, and /readyz 503, until the server is restarted")
	}
	if tune != nil {
		tune(&opts)
	}
	st, err := bolt.Open(path, opts)
	if err != nil {
		return nil, bolt.Recovery{}, err
	}
	rec := st.Recovery()
	if rec.Log.CutFile != "" {
		log.Warn().Str("file", rec.Log.CutFile).Int64("offset", rec.Log.CutOffset).Str("reason", rec.Log.CutReason).
			Int64("zeroed_bytes", rec.Log.ZeroedBytes).
			Msg("write-ahead log: cut a torn record at its end (a write that was never acknowledged)")
	}
	ev := log.Info().Str("path", path).Uint64("revision", st.Revision()).
		Uint64("wal_replayed_records", rec.Records).Uint64("wal_replayed_changes", rec.Changes).
		Float64("wal_replay_ms", float64(rec.Took.Microseconds())/1000)
	if rec.Changes > 0 && rec.Took > 0 {
		ev = ev.Float64("wal_replay_changes_per_second", float64(rec.Changes)/rec.Took.Seconds())
	}
	if rec.SchemaFrom != 0 {
		ev = ev.Int("schema_upgraded_from", rec.SchemaFrom).Float64("schema_upgrade_ms", float64(rec.SchemaUpgradeTook.Microseconds())/1000)
	}
	ev.Msg("store opened")
	return st, rec, nil
}

// storageQuota is storage.quota_bytes in bytes (0: none), "auto" decided
// from the data folder's file system (configs.DefaultQuota), and logged so
// that an operator sees which quota a server runs with.
func storageQuota(cfg configs.Config, log zerolog.Logger) int64 {
	quota := cfg.Storage.QuotaBytes
	ev := log.Info()
	if quota == configs.QuotaAuto {
		size, _, err := fsutil.StatFS(cfg.DataDir)
		if err != nil {
			ev = log.Warn().AnErr("file_system_error", err)
		}
		quota = configs.DefaultQuota(size)
		ev = ev.Int64("file_system_bytes", size).Str("chosen", "auto: a quarter of the file system, at most 8 GiB")
	}
	if quota == 0 {
		ev.Msg("storage quota off (storage.quota_bytes: 0)")
		return 0
	}
	ev.Int64("quota_bytes", quota).Str("quota", ctxd.FormatBytes(quota)).Msg("storage quota")
	return quota
}

// warnOfSpoolRoom logs a warning when the answers' temp files, which may
// take up to twice http.max_spool_bytes (see httpapi's spool), would not
// fit in the free space of the file system that holds them, the dumps
// folder (or the nearest folder above it that exists yet): on the data
// disk, the default, they could take the room the store needs to go on
// writing.
func warnOfSpoolRoom(cfg configs.Config, dumpDir string, log zerolog.Logger) {
	spool := cfg.HTTP.MaxSpoolBytes
	if spool <= 0 {
		return
	}
	dir := dumpDir
	for {
		if _, err := os.Stat(dir); err == nil || filepath.Dir(dir) == dir {
			break
		}
		dir = filepath.Dir(dir)
	}
	_, free, err := fsutil.StatFS(dir)
	if err != nil || free >= 2*spool {
		return
	}
	log.Warn().Str("folder", dir).Int64("free_bytes", free).Int64("max_spool_bytes", spool).
		Msgf("http.max_spool_bytes lets answers' temp files take up to %s, and the file system of %s has %s free: lower it (or move dumps.dir), or a few slow clients of large exports can fill the disk",
			ctxd.FormatBytes(2*spool), dir, ctxd.FormatBytes(free))
}

// Serve serves on ln, over TLS when tls.cert_file is set, until Shutdown
// or Close; it then returns http.ErrServerClosed.
func (s *Server) Serve(ln net.Listener) error {
	ln = newLimitListener(ln, connectionLimit(s.cfg.HTTP.MaxConnections), s.conns, s.log)
	if s.certs != nil {
		return s.hs.ServeTLS(ln, "", "")
	}
	return s.hs.Serve(ln)
}

// Shutdown stops the server gracefully: the hub closes its WebSocket
// connections (1001, going away), the HTTP server stops accepting, closes
// at once the connections that are idle or never sent a byte, and lets
// requests in flight finish until ctx ends (then closes their
// connections), the background work stops, and the store is closed. Later
// calls return the first call's result.
func (s *Server) Shutdown(ctx context.Context) error {
	return s.stop(ctx, true)
}

// Close stops the server at once: connections are closed without waiting
// for requests in flight. Then as Shutdown.
func (s *Server) Close() error {
	return s.stop(context.Background(), false)
}

func (s *Server) stop(ctx context.Context, graceful bool) error {
	s.stopOnce.Do(func() {
		if graceful && s.cfg.ShutdownDrain > 0 {
			s.drain(ctx)
		}
		// WebSocket connections are hijacked: Shutdown does not see them.
		// The hub closes them; clients resume after a restart. Both
		// feeds close at once: each waits up to 2 s for its stuck
		// clients, and one after the other they held a stop for 4.
		var feeds sync.WaitGroup
		feeds.Go(func() { _ = s.hub.Close() }) // always nil
		feeds.Go(func() { _ = s.sio.Close() }) // always nil; its long polls end too
		feeds.Wait()
		if !graceful {
			_ = s.hs.Close()
		} else if err := s.hs.Shutdown(ctx); err != nil {
			s.log.Warn().Err(err).Msg("requests still running at shutdown_timeout: closing their connections")
			_ = s.hs.Close()
		}
		s.stopMaintenance()
		if err := s.st.Close(); err != nil {
			s.stopErr = fmt.Errorf("close store: %w", err)
		}
	})
	return s.stopErr
}

// drain serves on for shutdown_drain (or until ctx ends) with /readyz
// answering 503, and every answer closing its connection and saying
// ctxd.HeaderDraining (httpapi.Server.Drain). When the server stops, a connection it closes
// while idle may be taken by a client for its next request at that very
// moment, and one still in the listener's backlog is reset after the
// client sent its request: either way the client cannot tell whether
// its request was applied (a write is outcome unknown). So clients leave
// first: ctxd's client of several instances sends its next requests to
// another instance once an answer says the server drains, and closes
// its own idle connections after 1 s; a load balancer sees /readyz and
// stops sending new ones. WebSocket clients stay until the hub closes
// them, and resume elsewhere.
func (s *Server) drain(ctx context.Context) {
	s.api.Drain()
	s.log.Info().Str("drain", s.cfg.ShutdownDrain.String()).Msg("draining: /readyz answers 503, every answer closes its connection")
	t := time.NewTimer(s.cfg.ShutdownDrain)
	defer t.Stop()
	select {
	case <-t.C:
	case <-ctx.Done():
	}
}

// Recovery is what the store found in its write-ahead log at open and
// replayed into the database (the server log's "store opened" line).
func (s *Server) Recovery() bolt.Recovery { return s.recovery }

// Handler is the HTTP handler: the API with the hub at /v1/watch.
func (s *Server) Handler() http.Handler { return s.handler }

// API is the HTTP API (its Echo router serves /v1/watch too).
func (s *Server) API() *httpapi.Server { return s.api }

// Backend is the store the server serves.
func (s *Server) Backend() store.Backend { return s.st }

// Hub is the WebSocket hub mounted at /v1/watch.
func (s *Server) Hub() *realtime.Hub { return s.hub }

// SocketIO is the Socket.IO server mounted at /socket.io/.
func (s *Server) SocketIO() *socketio.Server { return s.sio }

// Snapshots is the snapshot manager of the data folder's snapshots.
func (s *Server) Snapshots() *snapshots.Manager { return s.snaps }

// Access is the access control's tokens, or nil when access control is
// off. Its Reload reads the tokens file again.
func (s *Server) Access() *auth.Authorizer { return s.access }

// TLS reports whether the server serves HTTPS.
func (s *Server) TLS() bool { return s.certs != nil }

// ReloadTLS loads the TLS certificate and key again: handshakes after it
// use the new certificate, connections already open go on. When they do
// not load, the previous certificate stays in use, and the error names
// where tls.cert_file and tls.key_file were set, as at the start. Without
// TLS it does nothing.
func (s *Server) ReloadTLS() error {
	if s.certs == nil {
		return nil
	}
	if err := s.certs.reload(); err != nil {
		return certFileError(s.cfg, err)
	}
	return nil
}

// ReloadAccess reads the tokens file again (auth.Authorizer.Reload): it
// returns how many tokens are loaded and how many were revoked. When the
// file does not load, the previous tokens stay in use, and the error names
// the file and where auth.tokens_file was set, as at the start. Without
// access control it does nothing.
func (s *Server) ReloadAccess() (loaded, revoked int, err error) {
	if s.access == nil {
		return 0, 0, nil
	}
	loaded, revoked, err = s.access.Reload()
	if err != nil {
		err = tokensFileError(s.cfg, err)
	}
	return loaded, revoked, err
}

// logWriter turns the HTTP server's own messages (TLS handshake errors and
// the like) into warn-level log events.
type logWriter struct{ log zerolog.Logger }

func (w logWriter) Write(p []byte) (int, error) {
	w.log.Warn().Msg(strings.TrimSpace(string(p)))
	return len(p), nil
}

// openEtcd connects to the etcd cluster of cfg.Etcd.
func openEtcd(cfg configs.Config, onCommit func(store.CommitInfo), log zerolog.Logger) (store.Backend, error) {
	st, err := openEtcdWith(cfg, etcd.Options{
		OnCommit:     onCommit,
		OnConnection: connectionLog(cfg.Etcd.Endpoints, log),
		OnReadCacheDisabled: func(reason string) {
			log.Warn().Str("reason", reason).Msg("the read cache gave up: reads go to etcd until the instance restarts (raise etcd.read_cache_max_bytes)")
		},
		OnReadCacheFill: func(err error) {
			if err != nil {
				log.Warn().Err(err).Msg("the read cache could not be filled: reads go to etcd while the instance tries again (at least every 30 s)")
				return
			}
			log.Info().Msg("the read cache is filled again: reads are served from it")
		},
	})
	if err != nil {
		return nil, err
	}
	e := cfg.Etcd
	log.Info().Strs("endpoints", e.Endpoints).Str("prefix", e.Prefix).Uint64("revision", st.Revision()).
		Str("etcd_version", st.ServerVersion()).Msg("store opened on etcd")
	if v := st.ServerVersion(); etcd.VersionBefore(v, etcd.MinServerVersion) {
		// Not refused: nothing was seen to fail on one (3.4), but nothing
		// is tested there either.
		log.Warn().Str("etcd_version", v).Str("supported", etcd.MinServerVersion+" or later").
			Msg("etcd is older than ctxd supports: upgrade it; meanwhile /v1/status's quota_bytes is 0 (etcd reports its quota from 3.6 on), and what else differs is untested")
	}
	if limits := cfg.Limits.WithDefaults(); limits.MinTTL < st.MinTTL() {
		// Not an error: ttls from limits.min_ttl up to etcd's minimum are
		// refused (400) one by one, and everything else works. A warning
		// only when min_ttl was set: the default (1s) is below etcd's
		// default minimum (2s), and would warn at every start.
		ev := log.Warn()
		if limits.MinTTL == ctxd.DefaultLimits.MinTTL {
			ev = log.Info()
		}
		ev.Str("min_ttl", limits.MinTTL.String()).Str("etcd_min_lease_ttl", st.MinTTL().String()).
			Msg("limits.min_ttl is below etcd's minimum lease TTL: shorter ttls are refused; set limits.min_ttl to etcd's minimum")
	}
	return st, nil
}

// OpenEtcd opens the etcd backend of cfg.Etcd as `ctxd serve` opens it
// (endpoints, prefix, TLS, user, timeouts, limits): also for the commands
// that work on an etcd prefix without serving it (ctxd restore).
func OpenEtcd(cfg configs.Config) (*etcd.Store, error) { return openEtcdWith(cfg, etcd.Options{}) }

// connectionLog is the etcd store's OnConnection of a server: a line when
// the instance loses etcd (error: it serves nothing until etcd is back)
// and when it finds it again, with how long it was without.
func connectionLog(endpoints []string, log zerolog.Logger) func(ok bool) {
	var lost time.Time
	return func(ok bool) {
		if !ok {
			lost = time.Now()
			log.Error().Strs("endpoints", endpoints).
				Msg("etcd is unreachable: writes answer 503 unavailable, and /readyz 503, until it is back")
			return
		}
		log.Info().Strs("endpoints", endpoints).Str("unreachable_for", time.Since(lost).Round(time.Millisecond).String()).Msg("etcd is reachable again")
	}
}

// openEtcdWith is OpenEtcd, with the callbacks of on (its On* fields:
// commits for the metrics, the connection's losses and returns and the
// read cache's state for the log) told.
func openEtcdWith(cfg configs.Config, on etcd.Options) (*etcd.Store, error) {
	e := cfg.Etcd
	var tlsConfig *tls.Config
	if e.CAFile != "" || e.CertFile != "" {
		var err error
		if tlsConfig, err = etcdTLS(cfg); err != nil {
			return nil, err
		}
	}
	st, err := etcd.Open(etcd.Options{
		Endpoints: e.Endpoints, Prefix: e.Prefix, TLS: tlsConfig, Username: e.Username, Password: e.Password.Reveal(),
		DialTimeout: e.DialTimeout, RequestTimeout: e.RequestTimeout, Limits: cfg.Limits,
		DirectReads: !e.ReadCache, ReadCacheMaxBytes: e.ReadCacheMaxBytes, OnCommit: on.OnCommit, OnConnection: on.OnConnection,
		OnReadCacheDisabled: on.OnReadCacheDisabled, OnReadCacheFill: on.OnReadCacheFill,
		// A snapshot is built beside the file it becomes, under the
		// same reserve (not in the system's temporary folder: often a
		// small tmpfs, and not bound by the reserve).
		SnapshotScratchDir: cfg.SnapshotsFolder(), SnapshotReserve: cfg.Storage.ReserveBytes,
	})
	if errors.Is(err, etcd.ErrPrefixOverlap) { // the prefix to change: exit 2
		return nil, &configs.Error{Field: "etcd.prefix", Source: cfg.Source("etcd.prefix"), Err: err}
	}
	return st, err
}

// etcdTLS is the client TLS configuration of etcd.ca_file, cert_file and
// key_file. A file it cannot use is a configuration error (exit 2), as
// tls.cert_file's is, saying where the setting came from.
func etcdTLS(cfg configs.Config) (*tls.Config, error) {
	e := cfg.Etcd
	c := &tls.Config{MinVersion: tls.VersionTLS12}
	if e.CAFile != "" {
		pem, err := os.ReadFile(e.CAFile)
		if err != nil {
			return nil, &configs.Error{Field: "etcd.ca_file", Source: cfg.Source("etcd.ca_file"), Err: fsutil.ReadDenied(err)}
		}
		c.RootCAs = x509.NewCertPool()
		if !c.RootCAs.AppendCertsFromPEM(pem) {
			return nil, &configs.Error{Field: "etcd.ca_file", Source: cfg.Source("etcd.ca_file"), Err: fmt.Errorf("%s: no PEM certificate in it", e.CAFile)}
		}
	}
	if e.CertFile != "" {
		cert, err := tls.LoadX509KeyPair(e.CertFile, e.KeyFile)
		if err != nil {
			key := "etcd.key_file"
			if src := cfg.Source(key); src != "" {
				key += " (" + src + ")"
			}
			return nil, &configs.Error{Field: "etcd.cert_file", Source: cfg.Source("etcd.cert_file"), Err: fmt.Errorf("with %s: %w", key, fsutil.ReadDenied(err))}
		}
		// Read again at each handshake with etcd (a connection, a
		// reconnection): a certificate renewed in place (cert-manager,
		// Vault, a cron job) is used from the next connection on, before
		// the old one expires, without a restart. Files that do not load
		// (caught between the two writes of a renewal) leave the last
		// pair that did.
		r := &certReloader{certFile: e.CertFile, keyFile: e.KeyFile}
		r.cert.Store(&cert)
		c.GetClientCertificate = func(*tls.CertificateRequestInfo) (*tls.Certificate, error) {
			_ = r.reload()
			return r.cert.Load(), nil
		}
	}
	return c, nil
}
