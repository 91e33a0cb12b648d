package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/rs/zerolog"
	"github.com/spf13/cobra"

	"github.com/framework0/ctxd/configs"
	"github.com/framework0/ctxd/internal/asynclog"
	"github.com/framework0/ctxd/internal/failpoint"
	"github.com/framework0/ctxd/server"
)

// dbFile is the database's name inside the data folder.
const dbFile = server.DBFile

// serveFlag maps a serve flag to the configuration setting it overrides.
type serveFlag struct {
	name, setting, usage string
}

var serveFlags = []serveFlag{
	{"addr", "addr", "address to listen on, host:port (port 0 picks a free one)"},
	{"data", "data_dir", "data folder; the database is DIR/" + dbFile},
	{"log-format", "log.format", "log format: json or console"},
	{"log-level", "log.level", "log level: trace, debug, info, warn or error"},
	{"storage-quota", "storage.quota_bytes", "storage quota: a size (2GiB), auto (a quarter of the disk, at most 8 GiB) or 0 (none)"},
	{"lock-timeout", "storage.lock_timeout", "wait this long at start for the database file's lock while another process (a stopping server) holds it, then fail (0: do not wait)"},
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
On SIGINT or SIGTERM the server drains for shutdown_drain when it is set
(/readyz answers 503, clients are told to go to another instance), then stops
accepting connections, lets requests in flight finish within shutdown_timeout,
closes the store and exits 0.
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
		log, logw := newLogger(a.stderr, cfg.Log)
		defer logw.Close() // every line logged is written before ctxd exits
		for _, v := range configs.UnknownEnv(a.environ, envServer, envToken, envCACert, failpoint.EnvVar) {
			// A misspelled setting would otherwise stay at its default unseen.
			ev := log.Warn().Str("variable", v.Name)
			if v.Nearest != "" {
				ev = ev.Str("did_you_mean", v.Nearest)
			}
			ev.Msg("environment variable names no setting: ignored")
		}
		for _, w := range cfg.Warnings {
			log.Warn().Msg("config: " + w)
		}
		err = serve(cmd.Context(), cfg, log, server.LogDropped(logw.Dropped))
		if ce := (*configs.Error)(nil); err != nil && !errors.As(err, &ce) {
			// In the log too, not only on stderr as plain text (exitCode):
			// a pipeline that reads JSON lines would drop that one. A
			// configuration error, found before the server started, is
			// the plain line alone, as one found while reading the config.
			log.Error().Err(err).Msg("ctxd serve failed")
		}
		return err
	})
	return cmd
}

// newLogger returns the server's logger, writing to w through the buffer
// that keeps the write system calls off the requests (internal/asynclog):
// close it last, after the server has stopped, to write every line. A
// line dropped because w did not keep up is counted, and a warning line
// says how many.
func newLogger(w io.Writer, cfg configs.Log) (zerolog.Logger, *asynclog.Writer) {
	level, err := zerolog.ParseLevel(cfg.Level)
	if err != nil {
		level = zerolog.InfoLevel // configs has checked it already
	}
	var log zerolog.Logger
	logw := asynclog.New(w, asynclog.Options{OnDrop: func(n uint64) {
		// log is set before the first line can be dropped.
		log.Warn().Uint64("lines", n).Msg("log lines dropped: the log's output did not keep up (ctxd_log_dropped_lines_total)")
	}})
	out := io.Writer(logw)
	if cfg.Format == "console" {
		// Colours only on a terminal: in a file or the journal they are
		// escape sequences on every line.
		out = zerolog.ConsoleWriter{Out: logw, TimeFormat: time.RFC3339, NoColor: !isTerminal(w)}
	}
	log = zerolog.New(out).Level(level).With().Timestamp().Logger()
	return log, logw
}

// isTerminal reports whether w is a terminal (a character device).
func isTerminal(w io.Writer) bool {
	f, ok := w.(*os.File)
	if !ok {
		return false
	}
	fi, err := f.Stat()
	return err == nil && fi.Mode()&os.ModeCharDevice != 0
}

// serve runs the server described by cfg until ctx is canceled or the
// process gets SIGINT or SIGTERM, then shuts it down gracefully. SIGHUP
// reloads the TLS certificate and the tokens file.
func serve(ctx context.Context, cfg configs.Config, log zerolog.Logger, opts ...server.Option) error {
	ctx, stop := signal.NotifyContext(ctx, os.Interrupt, syscall.SIGTERM)
	defer stop()
	// SIGHUP is caught from the start: its default action ends the
	// process, and a reload (systemctl reload) while the store opens
	// (a log replay, the wait for a lock) must not stop the service, which
	// systemd would not restart. One that comes then is served once the
	// server is up.
	hup := make(chan os.Signal, 1)
	signal.Notify(hup, syscall.SIGHUP)
	defer signal.Stop(hup)

	// Debug: a configuration error found while the store opens is the
	// stderr line alone.
	log.Debug().Str("backend", cfg.Store.Backend).Msg("opening the store")
	srv, err := openServer(ctx, stop, cfg, log, opts...)
	if srv == nil || err != nil {
		return err
	}
	ln, err := net.Listen("tcp", cfg.Addr)
	if err != nil {
		return errors.Join(fmt.Errorf("listen: %w", err), srv.Close())
	}
	served := make(chan error, 1)
	go func() { served <- srv.Serve(ln) }()
	stopReload := reloadOnSIGHUP(hup, srv, cfg, log)
	defer stopReload()
	log.Info().Str("addr", ln.Addr().String()).Str("data_dir", cfg.DataDir).Str("version", version).
		Bool("tls", srv.TLS()).Bool("auth", srv.Access() != nil).Msg("listening")

	select {
	case err := <-served:
		return errors.Join(fmt.Errorf("serve: %w", err), srv.Close())
	case <-ctx.Done():
	}
	stop() // a second signal ends the process at once
	log.Info().Str("timeout", cfg.ShutdownTimeout.String()).Str("drain", cfg.ShutdownDrain.String()).Msg("shutting down")
	sctx, cancel := context.WithTimeout(context.Background(), cfg.ShutdownDrain+cfg.ShutdownTimeout)
	defer cancel()
	if err := srv.Shutdown(sctx); err != nil {
		return err
	}
	log.Info().Msg("stopped")
	return nil
}

// openServer is server.New, which opens the store: a log replay, the
// wait for the folder's lock, or for etcd (etcd.dial_timeout) may take a
// while. A signal meanwhile (ctx) is not held until it ends: the server
// is closed as soon as it is open (nil, nil: nothing to serve), and stop
// lets a second signal end the process at once, as after the start.
func openServer(ctx context.Context, stop func(), cfg configs.Config, log zerolog.Logger, opts ...server.Option) (*server.Server, error) {
	type opened struct {
		srv *server.Server
		err error
	}
	open := make(chan opened, 1)
	go func() {
		srv, err := server.New(cfg, log, append(opts, server.Version(version))...)
		open <- opened{srv, err}
	}()
	select {
	case o := <-open:
		return o.srv, o.err
	case <-ctx.Done():
	}
	stop()
	log.Info().Msg("signal while the store opens: stopping once it has opened (a second signal exits at once)")
	o := <-open
	if o.err != nil {
		return nil, o.err
	}
	if err := o.srv.Close(); err != nil {
		return nil, err
	}
	log.Info().Msg("stopped")
	return nil, nil
}

// reloadOnSIGHUP reloads the TLS certificate and the tokens file on each
// SIGHUP that hup delivers, logging the outcome; a failed reload keeps
// what was loaded. It returns the function that stops it.
func reloadOnSIGHUP(hup <-chan os.Signal, srv *server.Server, cfg configs.Config, log zerolog.Logger) (stop func()) {
	done := make(chan struct{})
	go func() {
		for {
			select {
			case <-hup:
				reloadAll(srv, cfg, log)
			case <-done:
				return
			}
		}
	}()
	return func() { close(done) }
}

// reloadAll reloads the certificate and the tokens.
func reloadAll(srv *server.Server, cfg configs.Config, log zerolog.Logger) {
	if srv.TLS() {
		if err := srv.ReloadTLS(); err != nil {
			log.Error().Err(err).Msg("SIGHUP: TLS certificate not reloaded: the previous one stays in use")
		} else {
			log.Info().Str("cert_file", cfg.TLS.CertFile).Msg("SIGHUP: TLS certificate reloaded")
		}
	}
	access := srv.Access()
	if access != nil {
		loaded, revoked, err := srv.ReloadAccess()
		if err != nil {
			log.Error().Err(err).Msg("SIGHUP: tokens file not reloaded: the previous tokens stay in use")
		} else {
			log.Info().Str("tokens_file", access.Path()).Int("tokens", loaded).Int("revoked", revoked).Msg("SIGHUP: tokens reloaded")
		}
	}
	if !srv.TLS() && access == nil {
		log.Info().Msg("SIGHUP: nothing to reload (no TLS certificate, no tokens file)")
	}
	// An operator who edited the config file and reloaded must learn
	// that it was not read again.
	log.Info().Msg("SIGHUP: the config file and environment were not read again: other settings change at a restart")
}
