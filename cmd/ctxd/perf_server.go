package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"math"
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
	"github.com/framework0/ctxd/store/bolt"
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
	return p.serve(dir, true, false)
}

// serve runs a server in this process on the data folder dir; its Close
// stops it, and removes the folder when remove is set. With hold, the
// store's committer applies nothing until its overlay is full: the writes
// stay in the write-ahead log alone (a crash then leaves them to replay).
func (p *perfServers) serve(dir string, remove, hold bool) (*perf.Server, error) {
	removeDir := func() error {
		if remove {
			return os.RemoveAll(dir)
		}
		return nil
	}
	cfg := p.cfg
	cfg.DataDir = dir
	log, logw := newLogger(p.log, cfg.Log)
	log = log.With().Str("data_dir", dir).Logger()
	opts := []server.Option{server.Version(version), server.LogDropped(logw.Dropped)}
	if hold {
		opts = append(opts, server.StoreOptions(func(o *bolt.Options) {
			o.CommitInterval, o.CommitChanges = 24*time.Hour, math.MaxInt32
		}))
	}
	srv, err := server.New(cfg, log, opts...)
	if err != nil {
		return nil, errors.Join(err, logw.Close(), removeDir())
	}
	ln, err := net.Listen("tcp", cfg.Addr)
	if err != nil {
		return nil, errors.Join(fmt.Errorf("listen: %w", err), srv.Close(), logw.Close(), removeDir())
	}
	served := make(chan error, 1)
	go func() { served <- srv.Serve(ln) }()
	var once sync.Once
	var closeErr error
	rec := srv.Recovery()
	ps := &perf.Server{URL: "http://" + ln.Addr().String(), DataDir: dir,
		Opened: &perf.Opened{ReplayedChanges: int64(rec.Changes), ReplaySeconds: rec.Took.Seconds()}}
	ps.Close = func() error {
		once.Do(func() {
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			err := srv.Shutdown(ctx)
			<-served
			closeErr = errors.Join(err, logw.Close(), removeDir())
		})
		return closeErr
	}
	p.mu.Lock()
	p.open = append(p.open, ps)
	p.mu.Unlock()
	return ps, nil
}

// onFolder is perf.Target.OnFolder: a server on dir, which it keeps.
func (p *perfServers) onFolder(dir string, isolated, hold bool) (*perf.Server, error) {
	if !isolated {
		return p.serve(dir, false, hold)
	}
	args := []string{"--data-dir", dir}
	if hold {
		args = append(args, "--hold-commits")
	}
	return p.startChild(args, false)
}

// preload is perf.Target.Preload: a new data folder with a database
// filled to size bytes through the store's bulk import (perf.Preload),
// stopped.
func (p *perfServers) preload(ctx context.Context, size int64) (string, perf.PreloadResult, error) {
	dir, err := os.MkdirTemp(p.parent, isolatedPrefix+"large-*")
	if err != nil {
		return "", perf.PreloadResult{}, fmt.Errorf("create data folder: %w", err)
	}
	path := filepath.Join(dir, server.DBFile)
	st, err := bolt.Open(path, bolt.Options{Limits: p.cfg.Limits})
	if err != nil {
		return dir, perf.PreloadResult{}, err
	}
	res, err := perf.Preload(ctx, st, size, func() (int64, error) {
		fi, err := os.Stat(path)
		if err != nil {
			return 0, err
		}
		return fi.Size(), nil
	})
	return dir, res, errors.Join(err, st.Close())
}

// isolatedPrefix starts the name of the data folders of the servers in
// their own process (os.MkdirTemp's pattern in start).
const isolatedPrefix = "ctxd-perf-"

// startIsolated runs `ctxd perf serve` (this binary) in a child process:
// the same server as start, alone in its process. Its Memory is read in
// that process after collecting its garbage.
func (p *perfServers) startIsolated() (*perf.Server, error) {
	var args []string
	if p.parent != "" {
		args = append(args, "--data-parent", p.parent)
	}
	return p.startChild(args, true)
}

// startChild runs `ctxd perf serve` with extra args; remove: its Close
// removes the data folder (a temporary one the child made).
func (p *perfServers) startChild(extra []string, remove bool) (*perf.Server, error) {
	exe, err := os.Executable()
	if err != nil {
		return nil, fmt.Errorf("find the ctxd binary: %w", err)
	}
	args := []string{"perf", "serve", "--server-log-level", p.pf.serverLogLevel}
	if p.pf.configPath != "" {
		args = append(args, "--config", p.pf.configPath)
	}
	args = append(args, extra...)
	child, err := perf.StartPeerProcess(context.Background(), exe, args, p.environ, p.log)
	if err != nil {
		return nil, err
	}
	info := child.Info()
	ps := &perf.Server{URL: info.URL, DataDir: info.DataDir, Memory: child.Memory, Kill: child.Kill,
		Opened: &perf.Opened{ReplayedChanges: info.ReplayedChanges, ReplaySeconds: info.ReplaySeconds}}
	ps.Close = func() error {
		err := child.Close()
		// The child removes its folder when it stops; not when killed.
		if dir := info.DataDir; remove && strings.HasPrefix(filepath.Base(dir), isolatedPrefix) {
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
	f.StringVar(&pf.dataDir, "data-dir", "", "serve the data folder `DIR` (kept when the server stops) instead of a temporary one")
	f.BoolVar(&pf.holdCommits, "hold-commits", false, "hold the store's committer back: writes stay in the write-ahead log alone until it is full")
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
		dir, remove := pf.dataDir, false
		if dir == "" {
			if dir, err = os.MkdirTemp(pf.dataParent, isolatedPrefix+"*"); err != nil {
				return fmt.Errorf("create data folder: %w", err)
			}
			remove = true
		}
		srv, err := servers.serve(dir, remove, pf.holdCommits)
		if err != nil {
			return err
		}
		return perf.ServePeer(cmd.Context(), a.stdin, a.stdout, perf.PeerInfo{
			Name: "ctxd", About: "ctxd alone in a process of its own", Version: version, Durable: true,
			Process: "own", URL: srv.URL, DataDir: srv.DataDir,
			ReplayedChanges: srv.Opened.ReplayedChanges, ReplaySeconds: srv.Opened.ReplaySeconds,
		}, nil)
	})
	return cmd
}
