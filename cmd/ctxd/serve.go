package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	stdlog "log"
	"net"
	"net/http"
	"os"
	"os/signal"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/rs/zerolog"
	"github.com/spf13/cobra"

	"github.com/framework0/ctxd/auth"
	"github.com/framework0/ctxd/configs"
	"github.com/framework0/ctxd/httpapi"
	"github.com/framework0/ctxd/realtime"
	"github.com/framework0/ctxd/store/bolt"
	"github.com/framework0/ctxd/store/snapshots"
)

// dbFile is the database's name inside the data folder.
const dbFile = "ctxd.db"

// HTTP server timeouts (ctxd serve takes the read timeouts and the header
// limit from http.*; these are the defaults ctxd perf uses). There is no
// WriteTimeout: it would cut off long downloads and the WebSocket watch; a
// slow reader is bounded by TCP.
const (
	readHeaderTimeout = 10 * time.Second
	readTimeout       = 60 * time.Second
	idleTimeout       = 2 * time.Minute
	maxHeaderBytes    = 64 << 10
)

// serveFlag maps a serve flag to the configuration setting it overrides.
type serveFlag struct {
	name, setting, usage string
}

var serveFlags = []serveFlag{
	{"addr", "addr", "address to listen on, host:port (port 0 picks a free one)"},
	{"data", "data_dir", "data folder; the database is DIR/" + dbFile},
	{"log-format", "log.format", "log format: json or console"},
	{"log-level", "log.level", "log level: trace, debug, info, warn or error"},
}

func (a *app) serveCmd() *cobra.Command {
	var configPath string
	cmd := &cobra.Command{
		Use:   "serve",
		Short: "Run the ctxd server",
		Long: `Run the ctxd server until SIGINT or SIGTERM.

Settings come from, each overriding the one before: defaults, the YAML file
given with --config (see configs/ctxd.example.yaml), CTXD_* environment
variables, and these flags. Logs go to stderr as JSON lines by default.
On SIGINT or SIGTERM the server stops accepting connections, lets requests in
flight finish within shutdown_timeout, closes the store and exits 0.
On SIGHUP it reloads the TLS certificate (tls.*) and the tokens file
(auth.tokens_file), keeping the previous ones if the new ones do not load.`,
		Args: cobra.NoArgs,
	}
	cmd.Flags().StringVar(&configPath, "config", "", "YAML configuration `file`")
	for _, f := range serveFlags {
		cmd.Flags().String(f.name, "", f.usage+" (default from config)")
	}
	cmd.RunE = a.action(func(cmd *cobra.Command, _ []string) error {
		overrides := map[string]string{}
		for _, f := range serveFlags {
			if cmd.Flags().Changed(f.name) {
				overrides[f.setting], _ = cmd.Flags().GetString(f.name)
			}
		}
		cfg, err := configs.Load(configPath, a.environ, overrides)
		if err != nil {
			return err
		}
		return serve(cmd.Context(), cfg, newLogger(a.stderr, cfg.Log))
	})
	return cmd
}

// newLogger returns the server's logger, writing to w.
func newLogger(w io.Writer, cfg configs.Log) zerolog.Logger {
	level, err := zerolog.ParseLevel(cfg.Level)
	if err != nil {
		level = zerolog.InfoLevel // configs has checked it already
	}
	if cfg.Format == "console" {
		w = zerolog.ConsoleWriter{Out: w, TimeFormat: time.RFC3339}
	}
	return zerolog.New(w).Level(level).With().Timestamp().Logger()
}

// serve runs the server described by cfg until ctx is canceled or the
// process gets SIGINT or SIGTERM, then shuts it down gracefully.
func serve(ctx context.Context, cfg configs.Config, log zerolog.Logger) error {
	ctx, stop := signal.NotifyContext(ctx, os.Interrupt, syscall.SIGTERM)
	defer stop()

	certs, err := newCertReloader(cfg.TLS) // secure.go
	if err != nil {
		return err
	}
	srv, err := newServer(cfg, log)
	if err != nil {
		return err
	}
	ln, err := net.Listen("tcp", cfg.Addr)
	if err != nil {
		return errors.Join(fmt.Errorf("listen: %w", err), srv.close())
	}
	hs := &http.Server{
		Handler:           srv.handler,
		ReadHeaderTimeout: cfg.HTTP.ReadHeaderTimeout,
		ReadTimeout:       cfg.HTTP.ReadTimeout,
		IdleTimeout:       idleTimeout,
		MaxHeaderBytes:    int(cfg.HTTP.MaxHeaderBytes),
		ErrorLog:          stdlog.New(logWriter{log.With().Str("component", "http").Logger()}, "", 0),
	}
	served := make(chan error, 1)
	go func() { served <- serveHTTP(hs, ln, certs) }()
	stopReload := reloadOnSIGHUP(srv.access, certs, log) // TLS certificate and tokens
	defer stopReload()
	log.Info().Str("addr", ln.Addr().String()).Str("data_dir", cfg.DataDir).Str("version", version).
		Bool("tls", certs != nil).Bool("auth", srv.access != nil).Msg("listening")

	select {
	case err := <-served:
		return errors.Join(fmt.Errorf("serve: %w", err), srv.close())
	case <-ctx.Done():
	}
	stop() // a second signal ends the process at once
	log.Info().Str("timeout", cfg.ShutdownTimeout.String()).Msg("shutting down")
	sctx, cancel := context.WithTimeout(context.Background(), cfg.ShutdownTimeout)
	defer cancel()
	// WebSocket connections are hijacked: Shutdown does not see them. The
	// hub closes them (1001, going away); clients resume after a restart.
	_ = srv.hub.Close()
	if err := hs.Shutdown(sctx); err != nil {
		log.Warn().Err(err).Msg("requests still running at shutdown_timeout: closing their connections")
		_ = hs.Close()
	}
	if err := srv.close(); err != nil {
		return fmt.Errorf("close store: %w", err)
	}
	log.Info().Msg("stopped")
	return nil
}

// ctxdServer is ctxd's server put together from a configuration: the store,
// its snapshots and background maintenance, the WebSocket hub and the HTTP
// API, ready to serve. serve runs one on a listener; ctxd perf runs one
// in-process.
type ctxdServer struct {
	st              *bolt.Store
	hub             *realtime.Hub
	handler         http.Handler
	stopMaintenance func() // stops the background work and waits for it

	access *auth.Authorizer // the tokens (secure.go); nil: access control off
}

// newServer opens the store in cfg.DataDir and builds the server around it.
func newServer(cfg configs.Config, log zerolog.Logger) (*ctxdServer, error) {
	access, err := newAccess(cfg, log) // secure.go
	if err != nil {
		return nil, err
	}
	if err := os.MkdirAll(cfg.DataDir, 0o750); err != nil {
		return nil, fmt.Errorf("create data folder: %w", err)
	}
	path := filepath.Join(cfg.DataDir, dbFile)
	metrics := newServerMetrics()
	st, err := bolt.Open(path, bolt.Options{Limits: cfg.Limits, OnCommit: metrics.onCommit})
	if err != nil {
		return nil, err
	}
	log.Info().Str("path", path).Uint64("revision", st.Revision()).Msg("store opened")
	snaps, err := snapshots.Open(filepath.Join(cfg.DataDir, snapshotsDir), st)
	if err != nil {
		return nil, errors.Join(err, st.Close())
	}
	snaps.OnCreate = metrics.onSnapshot
	metrics.register(st, snaps)
	maint, stopMaint := context.WithCancel(context.Background())
	var background sync.WaitGroup
	startMaintenance(maint, &background, cfg, st, snaps, log)

	hub := realtime.New(st, realtimeOptions(cfg.WebSocket), log.With().Str("component", "realtime").Logger())
	api := httpapi.New(st, httpapi.Config{
		Version: version, MaxBodyBytes: cfg.HTTP.MaxBodyBytes, Clients: hub.Clients, OnDump: notifyDumped(hub),
		CompatNamespace: cfg.Compat.Namespace, DumpDir: filepath.Join(cfg.DataDir, dumpsDir),
		Snapshots: snaps, KeepVersions: cfg.History.KeepVersions,
		MaxUploadBytes: cfg.Snapshots.MaxUploadBytes,
		Metrics:        metrics.reg, Gatherer: metrics.reg,
		Access: access, CORSOrigins: cfg.HTTP.CORSOrigins, RateLimit: cfg.HTTP.RateLimit, RateBurst: cfg.HTTP.RateBurst,
	}, log)
	api.Echo().GET("/v1/watch", hub.Serve)
	metrics.reg.MustRegister(hubCollector{stats: hub.Stats})
	return &ctxdServer{
		st: st, hub: hub, handler: api.Handler(), access: access,
		stopMaintenance: func() { stopMaint(); background.Wait() },
	}, nil
}

// close stops the hub (closing its connections), then the background
// work, then closes the store.
func (s *ctxdServer) close() error {
	_ = s.hub.Close() // always nil
	s.stopMaintenance()
	return s.st.Close()
}

// logWriter turns the HTTP server's own messages (TLS handshake errors and
// the like) into warn-level log events.
type logWriter struct{ log zerolog.Logger }

func (w logWriter) Write(p []byte) (int, error) {
	w.log.Warn().Msg(strings.TrimSpace(string(p)))
	return len(p), nil
}
