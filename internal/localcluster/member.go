package localcluster

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"net"
	"net/url"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	"go.etcd.io/etcd/server/v3/embed"

	"github.com/framework0/ctxd/internal/fsutil"
)

// Member is one etcd member of a local cluster.
type Member struct {
	Name      string // m1, m2, ...
	Dir       string // its data folder
	ClientURL string // http://127.0.0.1:port, what ctxd's etcd.endpoints lists
	PeerURL   string // http://127.0.0.1:port, what the members speak raft on
	// ListenPeerURL, when set, is where the member listens for its peers,
	// while they reach it at PeerURL: a test's proxy between them
	// (the partition test in robustness). Empty: it listens at PeerURL.
	ListenPeerURL string
	// UnsafeNoFsync makes the member acknowledge writes before they are
	// on its disk (etcd's --unsafe-no-fsync). Only the negative control
	// of the etcd power-loss test sets it, to prove that the test catches
	// a cluster that loses acknowledged writes; never a real cluster.
	UnsafeNoFsync bool
	// SnapshotCount, when set, is etcd's --snapshot-count: the member
	// takes a snapshot every that many applied entries (etcd's default,
	// 10,000, when 0). The etcd power-loss test lowers it, so that power
	// cuts land inside etcd's snapshots.
	SnapshotCount uint64
}

// Plan describes n members with data folders under dir (dir/m1, ...) and
// the given ports (n client ports, n peer ports).
func Plan(dir string, clientPorts, peerPorts []int) ([]Member, error) {
	if len(clientPorts) != len(peerPorts) || len(clientPorts) == 0 {
		return nil, fmt.Errorf("localcluster: %d client ports and %d peer ports", len(clientPorts), len(peerPorts))
	}
	ms := make([]Member, len(clientPorts))
	for i := range ms {
		name := fmt.Sprintf("m%d", i+1)
		ms[i] = Member{
			Name:      name,
			Dir:       filepath.Join(dir, name),
			ClientURL: fmt.Sprintf("http://127.0.0.1:%d", clientPorts[i]),
			PeerURL:   fmt.Sprintf("http://127.0.0.1:%d", peerPorts[i]),
		}
	}
	return ms, nil
}

// InitialCluster is etcd's --initial-cluster for ms: m1=peerURL,...
func InitialCluster(ms []Member) string {
	parts := make([]string, len(ms))
	for i, m := range ms {
		parts[i] = m.Name + "=" + m.PeerURL
	}
	return strings.Join(parts, ",")
}

// Endpoints are the members' client URLs.
func Endpoints(ms []Member) []string {
	eps := make([]string, len(ms))
	for i, m := range ms {
		eps[i] = m.ClientURL
	}
	return eps
}

// FreePorts returns n loopback ports that were free a moment ago (see
// the package's caveats). They are drawn below the kernel's ephemeral
// range when it is known (Linux: net.ipv4.ip_local_port_range): a port
// there is never handed to another process's outgoing connection or
// listen on port 0, which the tests running beside the cluster make by
// the thousand. Otherwise the kernel picks them (port 0).
func FreePorts(n int) ([]int, error) {
	ports := make([]int, 0, n)
	var lns []net.Listener
	defer func() {
		for _, ln := range lns {
			_ = ln.Close()
		}
	}()
	low, high := belowEphemeral()
	// All held open until the end, so that the n ports differ.
	for tries := 0; len(ports) < n; tries++ {
		port := 0
		if high > low && tries < 100*n {
			port = low + rand.IntN(high-low)
		}
		ln, err := net.Listen("tcp", net.JoinHostPort("127.0.0.1", strconv.Itoa(port)))
		if err != nil {
			if port != 0 {
				continue // taken: draw again
			}
			return nil, fmt.Errorf("find a free port: %w", err)
		}
		lns = append(lns, ln)
		ports = append(ports, ln.Addr().(*net.TCPAddr).Port)
	}
	return ports, nil
}

// FreePortTries is how many times in all [OnFreePorts] starts something
// on free ports when another process takes one of them first.
const FreePortTries = 3

// PortInUseError says a child could not listen on Addr (host:port): the
// port is another process's.
type PortInUseError struct{ Addr string }

func (e *PortInUseError) Error() string { return "port " + e.Port() + " is in use" }

// Port is the error's port.
func (e *PortInUseError) Port() string {
	_, port, _ := net.SplitHostPort(e.Addr)
	return port
}

// PortInUse returns a *PortInUseError when log, what a child wrote on its
// standard error, says it could not listen on one of addrs because the
// port is taken: Go's bind error, "listen tcp ADDR: bind: address already
// in use" (what an etcd member and `ctxd serve` write then). Any other
// failure, or a bind error on another address: nil.
func PortInUse(log string, addrs ...string) error {
	for _, addr := range addrs {
		if strings.Contains(log, "listen tcp "+addr+": bind: "+syscall.EADDRINUSE.Error()) {
			return &PortInUseError{Addr: addr}
		}
	}
	return nil
}

// OnFreePorts calls start with n ports from FreePorts. When start fails
// with a *PortInUseError (another process took a port between FreePorts
// and the child's bind: the package's caveat), having undone what it
// started, OnFreePorts calls retrying (if not nil) with that error, then
// start again with n new ports, FreePortTries times in all. Any other
// error of start is returned at once.
func OnFreePorts(n int, start func(ports []int) error, retrying func(error)) error {
	var err error
	for try := 1; try <= FreePortTries; try++ {
		var ports []int
		if ports, err = FreePorts(n); err != nil {
			return err
		}
		err = start(ports)
		var inUse *PortInUseError
		if !errors.As(err, &inUse) {
			return err
		}
		if try < FreePortTries && retrying != nil {
			retrying(err)
		}
	}
	return fmt.Errorf("%w (a port taken at each of %d starts on free ports)", err, FreePortTries)
}

// belowEphemeral is the range of ports [low, high) FreePorts draws from:
// from 10000 up to the start of the kernel's ephemeral range. Both are 0
// when that range is unknown or starts too low to leave room.
func belowEphemeral() (low, high int) {
	b, err := os.ReadFile("/proc/sys/net/ipv4/ip_local_port_range")
	if err != nil {
		return 0, 0
	}
	fields := strings.Fields(string(b))
	if len(fields) != 2 {
		return 0, 0
	}
	start, err := strconv.Atoi(fields[0])
	if err != nil || start < 11000 {
		return 0, 0
	}
	return 10000, start
}

// ReadyLine is what a member process writes on its standard output once
// it serves clients (StartMember waits for it).
const ReadyLine = "ready"

// startTimeout bounds a member's wait for its peers: a new cluster's
// member is ready only when a quorum has started.
const startTimeout = 2 * time.Minute

// MaxTxnOps and MaxRequestBytes are the members' --max-txn-ops and
// --max-request-bytes. An import into ctxd is one etcd transaction of
// one operation per key, and a ctxd transaction of n writes up to 2n (a
// delete also writes its tombstone): etcd's defaults (128 operations,
// 1.5 MiB) refuse an import of 128 keys and a transaction of 65 deletes
// (measured). These take any import of ctxd's largest
// request body (http.max_body_bytes, 2 MiB) and any ctxd transaction.
const (
	MaxTxnOps       = 16384
	MaxRequestBytes = 32 << 20
)

// RunMember runs member m of cluster until ctx ends, then stops it
// gracefully. ready is called once the member serves clients. A member
// whose data folder holds a write-ahead log restarts from it (and rejoins
// its cluster); otherwise it joins the new cluster described by cluster.
func RunMember(ctx context.Context, m Member, cluster []Member, logLevel string, ready func()) error {
	client, err := url.Parse(m.ClientURL)
	if err != nil {
		return fmt.Errorf("client URL: %w", err)
	}
	peer, err := url.Parse(m.PeerURL)
	if err != nil {
		return fmt.Errorf("peer URL: %w", err)
	}
	listenPeer := peer
	if m.ListenPeerURL != "" {
		if listenPeer, err = url.Parse(m.ListenPeerURL); err != nil {
			return fmt.Errorf("listen peer URL: %w", err)
		}
	}
	cfg := embed.NewConfig()
	cfg.Name = m.Name
	cfg.Dir = m.Dir
	cfg.LogLevel = logLevel
	cfg.LogOutputs = []string{"stderr"}
	cfg.UnsafeNoFsync = m.UnsafeNoFsync // false but in the power-loss control: every commit is fsynced
	cfg.MaxTxnOps, cfg.MaxRequestBytes = MaxTxnOps, MaxRequestBytes
	if m.SnapshotCount > 0 {
		cfg.SnapshotCount = m.SnapshotCount
	}
	cfg.ListenClientUrls, cfg.AdvertiseClientUrls = []url.URL{*client}, []url.URL{*client}
	cfg.ListenPeerUrls, cfg.AdvertisePeerUrls = []url.URL{*listenPeer}, []url.URL{*peer}
	cfg.InitialCluster = InitialCluster(cluster)
	cfg.InitialClusterToken = "ctxd-local-cluster"
	cfg.ClusterState = embed.ClusterStateFlagNew
	e, err := embed.StartEtcd(cfg)
	if err != nil {
		return fmt.Errorf("start etcd member %s: %w", m.Name, err)
	}
	defer e.Close()
	select {
	case <-e.Server.ReadyNotify():
		if err := syncDataFolders(m.Dir); err != nil {
			return fmt.Errorf("etcd member %s: %w", m.Name, err)
		}
		ready()
	case err := <-e.Err():
		return fmt.Errorf("etcd member %s: %w", m.Name, err)
	case <-ctx.Done():
		return nil
	case <-time.After(startTimeout):
		return fmt.Errorf("etcd member %s: not ready after %v (are the other members running?)", m.Name, startTimeout)
	}
	select {
	case err := <-e.Err():
		return fmt.Errorf("etcd member %s: %w", m.Name, err)
	case <-ctx.Done():
		return nil
	case <-e.Server.StopNotify():
		return errors.New("etcd member " + m.Name + " stopped")
	}
}

// syncDataFolders makes the names of a new member's files durable, from
// the folder above its data folder down to its log's. etcd syncs its
// log's folder when it adds a segment, but not when it creates the
// first: it writes that file in a temporary folder, renames the folder
// to member/wal and syncs member, never the folder itself, nor the data
// folder that holds member, nor the one above. After a power cut the
// member would come back with no log (TestEtcdPowerLoss found it, on a
// file system that keeps only what was synced; ext4's and XFS's journals
// usually commit those names with a later sync, but nothing promises
// it). Called before the member is reported ready, so before any client
// write; on a restart it costs a few syncs.
func syncDataFolders(dir string) error {
	dir = filepath.Clean(dir)
	for _, d := range []string{filepath.Dir(dir), dir, filepath.Join(dir, "member"),
		filepath.Join(dir, "member", "wal"), filepath.Join(dir, "member", "snap")} {
		if err := fsutil.SyncDir(d); err != nil {
			return fmt.Errorf("sync its data folders: %w", err)
		}
	}
	return nil
}
