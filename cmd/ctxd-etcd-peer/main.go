// Command ctxd-etcd-peer is the etcd peer of `ctxd perf --compare etcd`: an
// embedded single-member etcd (go.etcd.io/etcd/server/v3/embed) with its
// default settings (its write-ahead log fsynced at every commit, as ctxd's
// writes are), and the load generator that measures it through etcd's own
// Go client (go.etcd.io/etcd/client/v3). `ctxd perf` starts it as a child
// process and speaks to it over its standard input and output
// (perf.ServePeer); etcd's log goes to standard error.
//
// It is a module of its own so that the ctxd binary and module do not
// link or require etcd: `make build` builds it into bin/ beside ctxd.
//
// Usage:
//
//	ctxd-etcd-peer --data DIR
//	ctxd-etcd-peer --endpoints URL[,URL...]
//	ctxd-etcd-peer --data DIR --serve
//
// DIR is a fresh folder (ctxd perf makes it beside ctxd's data folder, on
// the same file system); the process stops when its input ends. With
// --endpoints the load goes to an existing etcd instead of an embedded one
// (`ctxd perf --etcd-endpoints`: the etcd a ctxd-on-etcd target uses, so
// that both are measured against the same cluster). --serve only runs
// the embedded etcd, prints its client URL and waits for Ctrl-C: an etcd
// to run ctxd instances and `ctxd perf --etcd-endpoints` on.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"net/url"
	"os"
	"os/signal"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"go.etcd.io/etcd/api/v3/version"
	clientv3 "go.etcd.io/etcd/client/v3"
	"go.etcd.io/etcd/server/v3/embed"
	"go.uber.org/zap"

	"github.com/framework0/ctxd/perf"
)

// clientsPerConn is how many workers share one client (one gRPC
// connection, which multiplexes their requests), as etcd's benchmark tool
// is run with several clients per connection.
const clientsPerConn = 8

// startTimeout bounds etcd's start.
const startTimeout = time.Minute

func main() {
	if err := run(); err != nil {
		fmt.Fprintf(os.Stderr, "ctxd-etcd-peer: %v\n", err)
		os.Exit(1)
	}
}

func run() error {
	dataDir := flag.String("data", "", "the data `folder` (fresh, created by the caller)")
	endpoints := flag.String("endpoints", "", "load an existing etcd at these client `URLs` (comma-separated) instead of an embedded one")
	serve := flag.Bool("serve", false, "only run the embedded etcd: print its client URL and wait for Ctrl-C")
	logLevel := flag.String("log-level", "warn", "etcd's log `level` (debug, info, warn, error)")
	flag.Parse()
	if (*dataDir == "") == (*endpoints == "") || flag.NArg() > 0 || (*serve && *dataDir == "") {
		return errors.New("usage: ctxd-etcd-peer --data DIR [--serve] | --endpoints URL[,URL...]")
	}
	if *endpoints != "" {
		return runOn(strings.Split(*endpoints, ","))
	}
	if !*serve {
		// The parent stops this process by closing its input; a Ctrl-C in
		// the terminal reaches the parent, which does so.
		signal.Ignore(os.Interrupt, syscall.SIGTERM)
	}

	cfg := embed.NewConfig()
	cfg.Dir = *dataDir
	cfg.LogLevel = *logLevel
	cfg.LogOutputs = []string{"stderr"}
	cfg.UnsafeNoFsync = false // the default, said out loud: every commit is fsynced
	local := func(port string) []url.URL { return []url.URL{{Scheme: "http", Host: "127.0.0.1:" + port}} }
	// Port 0: the system picks free ports; a single member never dials
	// its own peer URL.
	cfg.ListenClientUrls, cfg.AdvertiseClientUrls = local("0"), local("0")
	cfg.ListenPeerUrls, cfg.AdvertisePeerUrls = local("0"), local("0")
	cfg.InitialCluster = cfg.InitialClusterFromName(cfg.Name)
	if *serve {
		// ctxd's imports (perf's read keys) are one transaction of two
		// etcd operations per key: above etcd's default of 128.
		cfg.MaxTxnOps = 16384
		cfg.MaxRequestBytes = 32 << 20
	}
	e, err := embed.StartEtcd(cfg)
	if err != nil {
		return fmt.Errorf("start etcd: %w", err)
	}
	defer e.Close()
	select {
	case <-e.Server.ReadyNotify():
	case err := <-e.Err():
		return fmt.Errorf("etcd: %w", err)
	case <-time.After(startTimeout):
		return fmt.Errorf("etcd not ready after %s", startTimeout)
	}
	endpoint := "http://" + e.Clients[0].Addr().String()
	if *serve {
		fmt.Println(endpoint)
		ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
		defer stop()
		<-ctx.Done()
		return nil
	}
	c := &client{endpoints: []string{endpoint}}
	defer c.close()
	hello := perf.PeerInfo{
		Name:    perf.PeerEtcd,
		About:   "etcd, embedded single member (server/v3/embed), default settings: its log fsynced at every commit",
		Version: version.Version,
		Durable: true,
		Process: "own",
		Client: fmt.Sprintf("etcd's Go client (client/v3, gRPC) in the peer's process, one connection per %d clients; "+
			"gets are linearizable (the client's default)", clientsPerConn),
		URL: endpoint,
	}
	return perf.ServePeer(context.Background(), os.Stdin, os.Stdout, hello, c)
}

// runOn serves the load against an existing etcd.
func runOn(endpoints []string) error {
	signal.Ignore(os.Interrupt, syscall.SIGTERM)
	c := &client{endpoints: endpoints}
	defer c.close()
	if err := c.Connect(1); err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	st, err := c.conn(0).Status(ctx, endpoints[0])
	cancel()
	if err != nil {
		return fmt.Errorf("etcd at %s: %w", endpoints[0], err)
	}
	hello := perf.PeerInfo{
		Name:    perf.PeerEtcd,
		About:   "an existing etcd (--etcd-endpoints), shared with the ctxd target",
		Version: st.Version,
		Durable: true,
		Process: "remote",
		Client: fmt.Sprintf("etcd's Go client (client/v3, gRPC) in the peer's process, one connection per %d clients; "+
			"gets are linearizable (the client's default)", clientsPerConn),
		URL: strings.Join(endpoints, ","),
	}
	return perf.ServePeer(context.Background(), os.Stdin, os.Stdout, hello, c)
}

// client is the load's etcd clients: worker w uses conns[w/clientsPerConn].
type client struct {
	endpoints []string
	mu        sync.Mutex // over Connect and close
	conns     []*clientv3.Client
	// snapshot is conns as the workers read it, without the lock.
	snapshot atomic.Pointer[[]*clientv3.Client]
}

// Connect opens the connections n workers need.
func (c *client) Connect(n int) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	defer func() {
		conns := slices.Clone(c.conns)
		c.snapshot.Store(&conns)
	}()
	for len(c.conns) < (n+clientsPerConn-1)/clientsPerConn {
		cli, err := clientv3.New(clientv3.Config{
			Endpoints:   c.endpoints,
			DialTimeout: 10 * time.Second,
			Logger:      zap.NewNop(),
		})
		if err != nil {
			return fmt.Errorf("connect to etcd: %w", err)
		}
		// The connection is made before the clock starts.
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		_, err = cli.Status(ctx, c.endpoints[0])
		cancel()
		if err != nil {
			return errors.Join(fmt.Errorf("connect to etcd: %w", err), cli.Close())
		}
		c.conns = append(c.conns, cli)
	}
	return nil
}

func (c *client) conn(worker int) *clientv3.Client {
	conns := *c.snapshot.Load()
	return conns[(worker/clientsPerConn)%len(conns)]
}

func (c *client) Put(ctx context.Context, worker int, key string, value []byte) error {
	_, err := c.conn(worker).Put(ctx, key, string(value))
	return err
}

func (c *client) Get(ctx context.Context, worker int, key string) error {
	resp, err := c.conn(worker).Get(ctx, key)
	if err != nil {
		return err
	}
	if len(resp.Kvs) != 1 {
		return fmt.Errorf("get %s: %d keys", key, len(resp.Kvs))
	}
	return nil
}

func (c *client) close() {
	c.mu.Lock()
	defer c.mu.Unlock()
	for _, cli := range c.conns {
		_ = cli.Close()
	}
	c.conns = nil
}

// The fan-out comparison's feed.
var _ perf.PeerWatcher = (*client)(nil)

// watchParallel is how many subscribers Watch connects at once.
const watchParallel = 16

// Watch opens n subscribers of the keys under prefix for the fan-out
// comparison, each an etcd client of its own (a gRPC connection, as each
// of ctxd's subscribers has its own WebSocket) holding one watch, and
// returns once etcd has created every watch.
func (c *client) Watch(ctx context.Context, n int, prefix string) ([]perf.FanoutSubscriber, error) {
	return perf.ConnectSubscribers(ctx, n, watchParallel, func(ctx context.Context, _ int) (perf.FanoutSubscriber, error) {
		w, err := c.watch(ctx, prefix)
		if err != nil {
			return nil, err
		}
		return w, nil
	})
}

func (c *client) watch(ctx context.Context, prefix string) (*watcher, error) {
	cli, err := clientv3.New(clientv3.Config{Endpoints: c.endpoints, DialTimeout: 10 * time.Second, Logger: zap.NewNop()})
	if err != nil {
		return nil, err
	}
	wctx, cancel := context.WithCancel(context.Background())
	w := &watcher{cli: cli, cancel: cancel}
	w.ch = cli.Watch(wctx, prefix, clientv3.WithPrefix(), clientv3.WithCreatedNotify())
	wait, stop := context.WithTimeout(ctx, 10*time.Second)
	defer stop()
	select {
	case resp, ok := <-w.ch:
		switch {
		case !ok:
			err = errors.New("watch ended before it was created")
		case resp.Err() != nil:
			err = resp.Err()
		case !resp.Created:
			err = errors.New("the watch's first answer is not its creation")
		}
	case <-wait.Done():
		err = fmt.Errorf("watch not created: %w", wait.Err())
	}
	if err != nil {
		return nil, errors.Join(err, w.Close())
	}
	return w, nil
}

// watcher is one subscriber of the fan-out comparison: an etcd watch.
type watcher struct {
	cli    *clientv3.Client
	ch     clientv3.WatchChan
	cancel context.CancelFunc
	closed atomic.Bool
}

// Receive takes the watch's next response: each put it carries is a change.
func (w *watcher) Receive(change func(rev uint64, key []byte)) error {
	resp, ok := <-w.ch
	if w.closed.Load() {
		return perf.ErrSubscriberClosed
	}
	if !ok {
		return errors.New("etcd ended the watch")
	}
	if err := resp.Err(); err != nil {
		return err
	}
	for _, ev := range resp.Events {
		if ev.Type == clientv3.EventTypePut {
			change(uint64(ev.Kv.ModRevision), ev.Kv.Key)
		}
	}
	return nil
}

func (w *watcher) Close() error {
	w.closed.Store(true)
	w.cancel()
	return w.cli.Close()
}
