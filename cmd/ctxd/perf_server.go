package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/signal"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/spf13/cobra"

	"github.com/framework0/ctxd/configs"
	"github.com/framework0/ctxd/perf"
	"github.com/framework0/ctxd/server"
)

// perfServers starts the servers of `ctxd perf`: each is what `ctxd serve`
// runs (server.New), on a new temporary data folder, listening on a free
// loopback port, over plain HTTP; in this process (start), or alone in a
// child process, `ctxd perf serve` (startIsolated), whose memory is then
// the server's own. Their logs go to one server.log in the results folder.
type perfServers struct {
	cfg      configs.Config
	pf       perfFlags // for the child processes' flags
	environ  []string
	parent   string // where the data folders are created ("" = temp folder)
	log      io.Writer
	closeLog func() error

	mu   sync.Mutex
	open []*perf.Server
}

func (a *app) inProcessServers(pf perfFlags, outDir string) (*perfServers, error) {
	logFile, err := os.OpenFile(filepath.Join(outDir, "server.log"), os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return nil, fmt.Errorf("server log: %w", err)
	}
	p, err := a.newPerfServers(pf, logFile)
	if err != nil {
		return nil, errors.Join(err, logFile.Close())
	}
	p.closeLog = logFile.Close
	return p, nil
}

// newPerfServers prepares servers that log to log.
func (a *app) newPerfServers(pf perfFlags, log io.Writer) (*perfServers, error) {
	cfg, err := configs.Load(pf.configPath, a.environ, map[string]string{"addr": "127.0.0.1:0"})
	if err != nil {
		return nil, err
	}
	cfg.Log = configs.Log{Level: pf.serverLogLevel, Format: "json"}
	cfg.TLS = configs.TLS{} // perf talks plain HTTP to its own servers
	return &perfServers{cfg: cfg, pf: pf, environ: a.environ, parent: pf.dataParent, log: log}, nil
}

// start runs a server on an empty data folder; its Close stops it and
// removes the folder.
func (p *perfServers) start() (*perf.Server, error) {
	dir, err := os.MkdirTemp(p.parent, isolatedPrefix+"*")
	if err != nil {
		return nil, fmt.Errorf("create data folder: %w", err)
	}
	cfg := p.cfg
	cfg.DataDir = dir
	log, logw := newLogger(p.log, cfg.Log)
	log = log.With().Str("data_dir", dir).Logger()
	srv, err := server.New(cfg, log, server.Version(version), server.LogDropped(logw.Dropped))
	if err != nil {
		return nil, errors.Join(err, logw.Close(), os.RemoveAll(dir))
	}
	ln, err := net.Listen("tcp", cfg.Addr)
	if err != nil {
		return nil, errors.Join(fmt.Errorf("listen: %w", err), srv.Close(), logw.Close(), os.RemoveAll(dir))
	}
	served := make(chan error, 1)
	go func() { served <- srv.Serve(ln) }()
	var once sync.Once
	var closeErr error
	ps := &perf.Server{URL: "http://" + ln.Addr().String(), DataDir: dir}
	ps.Close = func() error {
		once.Do(func() {
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			err := srv.Shutdown(ctx)
			<-served
			closeErr = errors.Join(err, logw.Close(), os.RemoveAll(dir))
		})
		return closeErr
	}
	p.mu.Lock()
	p.open = append(p.open, ps)
	p.mu.Unlock()
	return ps, nil
}

// isolatedPrefix starts the name of the data folders of the servers in
// their own process (os.MkdirTemp's pattern in start).
const isolatedPrefix = "ctxd-perf-"

// startIsolated runs `ctxd perf serve` (this binary) in a child process:
// the same server as start, alone in its process. Its Memory is read in
// that process after collecting its garbage.
func (p *perfServers) startIsolated() (*perf.Server, error) {
	exe, err := os.Executable()
	if err != nil {
		return nil, fmt.Errorf("find the ctxd binary: %w", err)
	}
	args := []string{"perf", "serve", "--server-log-level", p.pf.serverLogLevel}
	if p.pf.configPath != "" {
		args = append(args, "--config", p.pf.configPath)
	}
	if p.parent != "" {
		args = append(args, "--data-parent", p.parent)
	}
	child, err := perf.StartPeerProcess(context.Background(), exe, args, p.environ, p.log)
	if err != nil {
		return nil, err
	}
	info := child.Info()
	ps := &perf.Server{URL: info.URL, DataDir: info.DataDir, Memory: child.Memory}
	ps.Close = func() error {
		err := child.Close()
		// The child removes its folder when it stops; not when killed.
		if dir := info.DataDir; strings.HasPrefix(filepath.Base(dir), isolatedPrefix) {
			err = errors.Join(err, os.RemoveAll(dir))
		}
		return err
	}
	p.mu.Lock()
	p.open = append(p.open, ps)
	p.mu.Unlock()
	return ps, nil
}

// close stops every server still running and closes the log.
func (p *perfServers) close() {
	p.mu.Lock()
	open := p.open
	p.mu.Unlock()
	for _, s := range open {
		_ = s.Close()
	}
	if p.closeLog != nil {
		_ = p.closeLog()
	}
}

// perfServeCmd is `ctxd perf serve`, hidden: the server of start alone in
// this process, for `ctxd perf`, which starts it and speaks to it over its
// standard input and output (perf.ServePeer); its log goes to standard
// error. It stops when its input ends.
func (a *app) perfServeCmd() *cobra.Command {
	var pf perfFlags
	cmd := &cobra.Command{
		Use:    "serve",
		Short:  "Run a server for ctxd perf in this process (started by ctxd perf)",
		Hidden: true,
		Args:   cobra.NoArgs,
	}
	f := cmd.Flags()
	f.StringVar(&pf.configPath, "config", "", "YAML configuration `file`")
	f.StringVar(&pf.serverLogLevel, "server-log-level", "warn", "log level")
	f.StringVar(&pf.dataParent, "data-parent", "", "create the temporary data folder in `DIR`")
	cmd.RunE = a.action(func(cmd *cobra.Command, _ []string) error {
		if _, err := parseLevel(pf.serverLogLevel); err != nil {
			return usagef("--server-log-level: %v", err)
		}
		// The parent stops this process by closing its input; a Ctrl-C
		// in the terminal reaches the parent, which does so.
		signal.Ignore(os.Interrupt, syscall.SIGTERM)
		servers, err := a.newPerfServers(pf, a.stderr)
		if err != nil {
			return err
		}
		defer servers.close()
		srv, err := servers.start()
		if err != nil {
			return err
		}
		return perf.ServePeer(cmd.Context(), a.stdin, a.stdout, perf.PeerInfo{
			Name: "ctxd", About: "ctxd alone in a process of its own", Version: version, Durable: true,
			Process: "own", URL: srv.URL, DataDir: srv.DataDir,
		}, nil)
	})
	return cmd
}
