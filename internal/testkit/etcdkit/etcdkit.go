// Package etcdkit is the test kit's embedded etcd: a real single-member
// etcd server (go.etcd.io/etcd/server/v3/embed) in the test process, on
// loopback ports the system picks, with its data in a temp folder, and a
// fresh key prefix per test so that tests share one server without
// seeing each other's data.
//
// Clients reach it through a TCP proxy of the kit's (package tcpproxy),
// which Stop closes first, with every connection through it: as the exit
// of etcd's process would. The embedded etcd's Close alone waits its
// request timeout (6 s, 5 s at the least) for the watch streams clients
// hold open, and the clients' reconnections back off meanwhile.
//
// It is a package of its own so that only the tests that need etcd link
// its server; the ctxd binary never does (the server is test-only).
//
// A package's tests share one server, started at the first [Shared] and
// stopped by [Stop], which the package's TestMain passes to
// testkit.VerifyNoLeaks as a teardown:
//
//	func TestMain(m *testing.M) { testkit.VerifyNoLeaks(m, etcdkit.Stop) }
package etcdkit

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/url"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/framework0/ctxd/internal/testkit/tcpproxy"
	"go.etcd.io/etcd/client/pkg/v3/logutil"
	"go.etcd.io/etcd/client/pkg/v3/transport"
	clientv3 "go.etcd.io/etcd/client/v3"
	"go.etcd.io/etcd/server/v3/embed"
	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
	"golang.org/x/crypto/bcrypt"
)

// Server is a running embedded etcd.
type Server struct {
	Endpoint string // its client URL: the proxy's
	e        *embed.Etcd
	dir      string
	options  []func(*embed.Config)
	// front is the proxy clients reach etcd through, on frontAddr (kept
	// by Stop for Start).
	front     *tcpproxy.Proxy
	frontAddr string
	// client and peer are the URLs of a server Stop stopped.
	client, peer url.URL
	// stopped: e is closed (Stop, or a Start after it that failed), so
	// Stop and Close leave it be (embed.Etcd panics on a second close:
	// a test failing while its etcd was stopped panicked in its cleanup).
	stopped bool
}

// MaxTxnOps is the etcd server's --max-txn-ops here: ctxd's own limit on
// a transaction is lower, and an import of a few hundred keys is one
// etcd transaction of twice as many operations.
const MaxTxnOps = 16384

// Start starts a single-member etcd with its data in a new temp folder.
// Its write-ahead log is fsynced at every commit, as in production. Each
// option changes the configuration before the start (a test of what
// depends on etcd's settings).
func Start(options ...func(*embed.Config)) (*Server, error) {
	dir, err := os.MkdirTemp("", "ctxd-etcd-")
	if err != nil {
		return nil, err
	}
	local := url.URL{Scheme: "http", Host: "127.0.0.1:0"}
	s, err := start(dir, "127.0.0.1:0", local, local, options...)
	if err != nil {
		_ = os.RemoveAll(dir)
		return nil, err
	}
	return s, nil
}

// Own starts a server of the test's own (Start), stopped when the test
// ends: for a test whose compactions, which are the cluster's, must not
// reach the tests sharing one.
func Own(t testing.TB) *Server {
	t.Helper()
	s, err := Start()
	if err != nil {
		t.Fatalf("etcd: %v", err)
	}
	t.Cleanup(s.Close)
	return s
}

// start starts the member whose data is in dir, on the client and peer
// URLs given (port 0: one the system picks), and its proxy on frontAddr,
// which clients are given and etcd advertises.
func start(dir, frontAddr string, client, peer url.URL, options ...func(*embed.Config)) (*Server, error) {
	ln, err := net.Listen("tcp", frontAddr)
	if err != nil {
		return nil, fmt.Errorf("etcd's proxy: %w", err)
	}
	s, err := startBehind(ln.Addr().String(), dir, client, peer, options...)
	if err != nil {
		ln.Close()
		return nil, err
	}
	s.front, s.frontAddr = tcpproxy.Serve(ln, s.e.Clients[0].Addr().String(), nil), ln.Addr().String()
	return s, nil
}

// startBehind starts the member of start, advertising frontAddr.
func startBehind(frontAddr, dir string, client, peer url.URL, options ...func(*embed.Config)) (*Server, error) {
	cfg := embed.NewConfig()
	cfg.Dir = dir
	cfg.LogLevel = "error"
	cfg.LogOutputs = []string{"stderr"}
	if lg, err := quietLogger(); err == nil {
		cfg.ZapLoggerBuilder = embed.NewZapLoggerBuilder(lg)
	}
	cfg.MaxTxnOps = MaxTxnOps
	cfg.MaxRequestBytes = 32 << 20
	// etcd's minimum lease TTL is 1.5 election timeouts rounded up to
	// whole seconds: 2 s with its default 1 s timeout. 500 ms (the least
	// its 100 ms heartbeat allows) makes it 1 s, so that expiring keys
	// are tested with 1-second TTLs, as on bolt. A single member never
	// holds an election after its first.
	cfg.ElectionMs = 500
	// etcd hashes a user's password with bcrypt at UserAdd and checks it
	// at every Authenticate, which a client does again each time its
	// token expires. At etcd's default cost (10) one check takes a second
	// of CPU under the race detector; the least cost (4) is 64 times
	// cheaper and checks the password all the same.
	cfg.BcryptCost = uint(bcrypt.MinCost)
	cfg.ListenClientUrls, cfg.AdvertiseClientUrls = []url.URL{client}, []url.URL{{Scheme: client.Scheme, Host: frontAddr}}
	cfg.ListenPeerUrls, cfg.AdvertisePeerUrls = []url.URL{peer}, []url.URL{peer}
	cfg.InitialCluster = cfg.InitialClusterFromName(cfg.Name)
	for _, o := range options {
		o(cfg)
	}
	e, err := embed.StartEtcd(cfg)
	if err != nil {
		return nil, fmt.Errorf("start etcd: %w", err)
	}
	select {
	case <-e.Server.ReadyNotify():
	case err := <-e.Err():
		e.Close()
		return nil, fmt.Errorf("etcd: %w", err)
	case <-time.After(time.Minute):
		e.Close()
		return nil, fmt.Errorf("etcd not ready after a minute")
	}
	scheme := cfg.ListenClientUrls[0].Scheme
	return &Server{Endpoint: scheme + "://" + frontAddr, e: e, dir: dir, options: options}, nil
}

// WithClientTLS serves etcd's clients over TLS with the certificate and
// key given, and takes only clients whose certificate the CA of caFile
// signed (etcd's --client-cert-auth).
func WithClientTLS(caFile, certFile, keyFile string) func(*embed.Config) {
	return func(cfg *embed.Config) {
		cfg.ClientTLSInfo = transport.TLSInfo{CertFile: certFile, KeyFile: keyFile, TrustedCAFile: caFile, ClientCertAuth: true}
		for _, urls := range [][]url.URL{cfg.ListenClientUrls, cfg.AdvertiseClientUrls} {
			for i := range urls {
				urls[i].Scheme = "https"
			}
		}
	}
}

// Restart stops the server, keeping its data, and starts it again on the
// same data and ports: a real restart, which clients connected to
// Endpoint ride through by reconnecting.
func (s *Server) Restart() error {
	s.Stop()
	return s.Start()
}

// Stop stops the server, keeping its data and its ports for Start: an
// outage, which lasts until Start. Its clients' connections are closed
// first and new ones refused, as when etcd's process ends.
func (s *Server) Stop() {
	if s.stopped {
		return
	}
	s.client = url.URL{Scheme: "http", Host: s.e.Clients[0].Addr().String()}
	s.peer = url.URL{Scheme: "http", Host: s.e.Peers[0].Listener.Addr().String()}
	s.close()
}

// close closes the proxy, then etcd, which has no client left to wait for.
func (s *Server) close() {
	s.front.Close()
	s.e.Close()
	s.stopped = true
}

// Start starts the server Stop stopped, on its data and ports.
func (s *Server) Start() error {
	restarted, err := start(s.dir, s.frontAddr, s.client, s.peer, s.options...)
	if err != nil {
		return err
	}
	s.e, s.front, s.stopped = restarted.e, restarted.front, false
	return nil
}

// Close stops the server (unless Stop did) and removes its data.
func (s *Server) Close() {
	if !s.stopped {
		s.close()
	}
	_ = os.RemoveAll(s.dir)
}

var (
	sharedMu sync.Mutex
	shared   *Server
)

// Shared returns the package's shared server, starting it the first time.
func Shared(t testing.TB) *Server {
	t.Helper()
	sharedMu.Lock()
	defer sharedMu.Unlock()
	if shared == nil {
		s, err := Start()
		if err != nil {
			t.Fatalf("etcdkit: %v", err)
		}
		shared = s
	}
	return shared
}

// Stop stops the shared server, if one was started.
func Stop() {
	sharedMu.Lock()
	defer sharedMu.Unlock()
	if shared != nil {
		shared.Close()
		shared = nil
	}
}

// Prefix is a key prefix of its own for name (a test's folder, say):
// the same name gives the same prefix, so that a reopened backend finds
// its data.
func Prefix(name string) string {
	sum := sha256.Sum256([]byte(name))
	return "/ctxd-test/" + hex.EncodeToString(sum[:8]) + "/"
}

var (
	runNames sync.Map // testing.TB -> its Name
	runs     atomic.Uint64
)

// Name is tb's name made unique to this run of the test, for Prefix
// (Prefix(Name(t)), Prefix(Name(t) + "/other")): go test -count=N runs a
// test N times in one process, on the one shared etcd, and each run must
// start on prefixes nothing wrote to. Within one run it is the same
// every time.
func Name(tb testing.TB) string {
	if n, ok := runNames.Load(tb); ok {
		return n.(string)
	}
	n, _ := runNames.LoadOrStore(tb, fmt.Sprintf("%s#%d", tb.Name(), runs.Add(1)))
	return n.(string)
}

// KeyCounter connects to endpoints and returns a function that counts the
// etcd keys under prefix+dir, with a count-only read: what a test checks
// of the keys ctxd leaves in etcd. The client closes when the test ends.
func KeyCounter(t testing.TB, endpoints []string, prefix string) func(dir string) int64 {
	t.Helper()
	cli, err := clientv3.New(clientv3.Config{Endpoints: endpoints, DialTimeout: 5 * time.Second, Logger: zap.NewNop()})
	if err != nil {
		t.Fatalf("etcdkit: %v", err)
	}
	t.Cleanup(func() { _ = cli.Close() })
	return func(dir string) int64 {
		t.Helper()
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		resp, err := cli.Get(ctx, prefix+dir, clientv3.WithPrefix(), clientv3.WithCountOnly())
		if err != nil {
			t.Fatalf("etcdkit: count %s%s: %v", prefix, dir, err)
		}
		return resp.Count
	}
}

// EnableAuth turns the authentication of the etcd that cfg reaches on,
// as an operator does: a root user of rootPassword, and a user of name
// and password whose role may read and write the keys under prefix and
// nothing else.
func EnableAuth(cfg clientv3.Config, rootPassword, name, password, prefix string) error {
	cli, err := clientv3.New(cfg)
	if err != nil {
		return err
	}
	defer cli.Close()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	steps := []func() error{
		func() error { _, err := cli.UserAdd(ctx, "root", rootPassword); return err },
		func() error { _, err := cli.UserGrantRole(ctx, "root", "root"); return err },
		func() error { _, err := cli.RoleAdd(ctx, name); return err },
		func() error {
			_, err := cli.RoleGrantPermission(ctx, name, prefix, clientv3.GetPrefixRangeEnd(prefix), clientv3.PermissionType(clientv3.PermReadWrite))
			return err
		},
		func() error { _, err := cli.UserAdd(ctx, name, password); return err },
		func() error { _, err := cli.UserGrantRole(ctx, name, name); return err },
		func() error { _, err := cli.AuthEnable(ctx); return err },
	}
	for _, step := range steps {
		if err := step(); err != nil {
			return fmt.Errorf("etcd auth: %w", err)
		}
	}
	return nil
}

// quietLogger is etcd's own logger (errors, to stderr) without the lines
// every stop writes: "setting up serving from embedded etcd failed." with
// "http: Server closed" and the like, one per listener; the same message
// with another error (a listener that could not serve) stays. A test's
// output keeps the errors that say something; CI shows only its end.
func quietLogger() (*zap.Logger, error) {
	cfg := logutil.DefaultZapLoggerConfig
	cfg.Level = zap.NewAtomicLevelAt(zap.ErrorLevel)
	cfg.OutputPaths, cfg.ErrorOutputPaths = []string{"stderr"}, []string{"stderr"}
	return cfg.Build(zap.WrapCore(func(c zapcore.Core) zapcore.Core { return withoutStopNoise{c} }))
}

// stopNoise is the message etcd logs when one of its listeners ends,
// which every stop does.
const stopNoise = "setting up serving from embedded etcd failed."

type withoutStopNoise struct{ zapcore.Core }

func (c withoutStopNoise) Check(e zapcore.Entry, ce *zapcore.CheckedEntry) *zapcore.CheckedEntry {
	if e.Message == stopNoise && c.Enabled(e.Level) {
		return ce.AddCore(e, c) // Write sees its error
	}
	return c.Core.Check(e, ce)
}

func (c withoutStopNoise) Write(e zapcore.Entry, fields []zapcore.Field) error {
	if e.Message == stopNoise {
		for _, f := range fields {
			if err, ok := f.Interface.(error); ok && f.Type == zapcore.ErrorType && closedOnStop(err) {
				return nil
			}
		}
	}
	return c.Core.Write(e, fields)
}

// closedOnStop reports whether err is how a listener ends when etcd stops.
func closedOnStop(err error) bool {
	msg := err.Error()
	return errors.Is(err, http.ErrServerClosed) || errors.Is(err, net.ErrClosed) ||
		strings.Contains(msg, "server closed") || strings.Contains(msg, "use of closed network connection")
}

func (c withoutStopNoise) With(fields []zapcore.Field) zapcore.Core {
	return withoutStopNoise{c.Core.With(fields)}
}
