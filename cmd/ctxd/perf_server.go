package main

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"sync"
	"time"

	"github.com/framework0/ctxd/configs"
	"github.com/framework0/ctxd/perf"
	"github.com/framework0/ctxd/server"
)

// perfServers starts the in-process servers of `ctxd perf`: each is what
// `ctxd serve` runs (server.New), on a new temporary data folder, listening
// on a free loopback port, over plain HTTP. Their logs go to one server.log
// in the results folder.
type perfServers struct {
	cfg     configs.Config
	parent  string // where the data folders are created ("" = temp folder)
	logFile *os.File

	mu   sync.Mutex
	open []*perf.Server
}

func (a *app) inProcessServers(pf perfFlags, outDir string) (*perfServers, error) {
	cfg, err := configs.Load(pf.configPath, a.environ, map[string]string{"addr": "127.0.0.1:0"})
	if err != nil {
		return nil, err
	}
	cfg.Log = configs.Log{Level: pf.serverLogLevel, Format: "json"}
	cfg.TLS = configs.TLS{} // perf talks plain HTTP to its own servers
	logFile, err := os.OpenFile(filepath.Join(outDir, "server.log"), os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return nil, fmt.Errorf("server log: %w", err)
	}
	return &perfServers{cfg: cfg, parent: pf.dataParent, logFile: logFile}, nil
}

// start runs a server on an empty data folder; its Close stops it and
// removes the folder.
func (p *perfServers) start() (*perf.Server, error) {
	dir, err := os.MkdirTemp(p.parent, "ctxd-perf-")
	if err != nil {
		return nil, fmt.Errorf("create data folder: %w", err)
	}
	cfg := p.cfg
	cfg.DataDir = dir
	log, logw := newLogger(p.logFile, cfg.Log)
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

// close stops every server still running and closes the log.
func (p *perfServers) close() {
	p.mu.Lock()
	open := p.open
	p.mu.Unlock()
	for _, s := range open {
		_ = s.Close()
	}
	_ = p.logFile.Close()
}
