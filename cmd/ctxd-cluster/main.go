// Command ctxd-cluster runs a local ctxd cluster with one command (`make
// cluster`): a 3-member etcd cluster, each member in a process of its own
// (the etcd server embedded from go.etcd.io/etcd/server/v3/embed, package
// internal/localcluster), and 3 `ctxd serve` instances on it, all on one
// etcd prefix, as child processes of bin/ctxd. It prints the URLs and
// stops everything, ctxd instances first, on Ctrl-C (SIGINT) or SIGTERM.
//
// It is a module of its own so that the ctxd binary and module do not
// link etcd's server: `make build` builds it into bin/ beside ctxd.
//
// Usage:
//
//	ctxd-cluster [--data ./data/cluster] [--ctxd bin/ctxd] [--members 3] [--instances 3]
//	             [--ctxd-port 8081] [--etcd-port 2379] [--prefix /ctxd/] [--log-level warn]
//	ctxd-cluster member --name m1 --data DIR --client-url URL --peer-url URL --initial-cluster m1=URL,...
//
// The second form is one etcd member, which the first starts; the cluster
// tests start members with it too, so that they can kill one with SIGKILL.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"go.uber.org/zap/zapcore"

	"github.com/framework0/ctxd/internal/localcluster"
)

const (
	// readyTimeout bounds the start of each member and instance.
	readyTimeout = 2 * time.Minute
	// stopTimeout bounds each child's graceful stop before it is killed.
	stopTimeout = 30 * time.Second
)

func main() {
	var err error
	if len(os.Args) > 1 && os.Args[1] == "member" {
		err = runMember(os.Args[2:])
	} else {
		ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
		err = run(ctx, os.Args[1:], os.Stdout)
		stop()
	}
	if code := exitCode(err); code != 0 {
		fmt.Fprintf(os.Stderr, "ctxd-cluster: %v\n", err)
		os.Exit(code)
	}
}

// usageError is a bad flag, or flags that do not fit the data folder:
// exit code 2, as ctxd's.
type usageError struct{ error }

func (e usageError) Unwrap() error { return e.error }

// exitCode is the process's exit code for run's error: 0 for none and for
// --help (the usage is printed), 2 for a usageError, else 1.
func exitCode(err error) int {
	switch {
	case err == nil, errors.Is(err, flag.ErrHelp):
		return 0
	case errors.As(err, new(usageError)):
		return 2
	}
	return 1
}

// runMember runs one etcd member until SIGINT or SIGTERM, and writes
// localcluster.ReadyLine to standard output once it serves clients.
func runMember(args []string) error {
	fs := flag.NewFlagSet("member", flag.ContinueOnError)
	var m localcluster.Member
	fs.StringVar(&m.Name, "name", "", "the member's `name`")
	fs.StringVar(&m.Dir, "data", "", "its data `folder`")
	fs.StringVar(&m.ClientURL, "client-url", "", "its client `URL`")
	fs.StringVar(&m.PeerURL, "peer-url", "", "its peer `URL`")
	fs.StringVar(&m.ListenPeerURL, "listen-peer-url", "", "where it listens for its peers, when not at --peer-url (a `URL`: a proxy forwards from there)")
	fs.BoolVar(&m.UnsafeNoFsync, "unsafe-no-fsync", false, "tests only: acknowledge writes before they are on disk (the negative control of the etcd power-loss test)")
	fs.Uint64Var(&m.SnapshotCount, "snapshot-count", 0, "etcd's --snapshot-count: a snapshot every this many applied entries (0: etcd's default)")
	initial := fs.String("initial-cluster", "", "every member: `name=peerURL,...`")
	logLevel := fs.String("log-level", "warn", "etcd's log `level`")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if m.Name == "" || m.Dir == "" || m.ClientURL == "" || m.PeerURL == "" || *initial == "" || fs.NArg() > 0 {
		return errors.New("usage: ctxd-cluster member --name N --data DIR --client-url URL --peer-url URL --initial-cluster N=URL[,N=URL]")
	}
	cluster, err := localcluster.ParseInitialCluster(*initial)
	if err != nil {
		return err
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	return localcluster.RunMember(ctx, m, cluster, *logLevel, func() { fmt.Println(localcluster.ReadyLine) })
}

// options are the flags of the cluster command.
type options struct {
	data, ctxd, prefix, logLevel string
	members, instances           int
	ctxdPort, etcdPort           int
}

func parse(args []string) (options, error) {
	fs := flag.NewFlagSet("ctxd-cluster", flag.ContinueOnError)
	var o options
	fs.StringVar(&o.data, "data", filepath.Join("data", "cluster"), "the `folder` of the members' data and of every log; kept across runs (remove it to start afresh)")
	fs.StringVar(&o.ctxd, "ctxd", "", "the ctxd `binary` (default: ctxd beside this command)")
	fs.IntVar(&o.members, "members", 3, "etcd members (1, 3 or 5)")
	fs.IntVar(&o.instances, "instances", 3, "ctxd instances")
	fs.IntVar(&o.ctxdPort, "ctxd-port", 8081, "the first instance's `port`; the next ones follow it (0: free ports)")
	fs.IntVar(&o.etcdPort, "etcd-port", 2379, "the first member's client `port`; member i's is port+10000*(i-1), its peer port the next one (0: free ports)")
	fs.StringVar(&o.prefix, "prefix", "/ctxd/", "the etcd `prefix` every instance shares (etcd.prefix)")
	fs.StringVar(&o.logLevel, "log-level", "warn", "etcd's log `level` (the members' logs)")
	if err := fs.Parse(args); err != nil {
		return o, err
	}
	switch {
	case fs.NArg() > 0:
		return o, fmt.Errorf("unexpected argument %q", fs.Arg(0))
	case o.members != 1 && o.members != 3 && o.members != 5:
		return o, fmt.Errorf("--members %d: give 1, 3 or 5 (an odd number tolerates as many failures as the next even one)", o.members)
	case o.instances < 1:
		return o, fmt.Errorf("--instances %d: give at least 1", o.instances)
	case o.ctxdPort < 0 || o.ctxdPort+o.instances > 65535:
		return o, fmt.Errorf("--ctxd-port %d: out of range for %d instances", o.ctxdPort, o.instances)
	case o.etcdPort < 0 || o.etcdPort+10000*(o.members-1)+1 > 65535:
		return o, fmt.Errorf("--etcd-port %d: out of range for %d members", o.etcdPort, o.members)
	}
	// etcd's own parse of it panics in each member.
	if _, err := zapcore.ParseLevel(o.logLevel); err != nil {
		return o, fmt.Errorf("--log-level %s: give debug, info, warn or error", o.logLevel)
	}
	if o.ctxd == "" {
		self, err := os.Executable()
		if err != nil {
			return o, fmt.Errorf("find ctxd beside this command: %w (give --ctxd)", err)
		}
		o.ctxd = filepath.Join(filepath.Dir(self), "ctxd")
	}
	if _, err := os.Stat(o.ctxd); err != nil {
		return o, fmt.Errorf("the ctxd binary: %w (run make build, or give --ctxd)", err)
	}
	// Members keep the URLs they were born with: on other ports they
	// would never find each other again (the members waited 2 minutes
	// for a quorum, then failed).
	etcdDir := filepath.Join(o.data, "etcd")
	born, err := os.ReadFile(filepath.Join(etcdDir, bornPortFile))
	switch {
	case err == nil && strings.TrimSpace(string(born)) == "0":
		return o, fmt.Errorf("%s holds members born on free ports (--etcd-port 0), which no run can give them again: remove it (rm -rf %s)", etcdDir, etcdDir)
	case err == nil && strings.TrimSpace(string(born)) != strconv.Itoa(o.etcdPort):
		return o, fmt.Errorf("%s holds members born with --etcd-port %s: give that, or remove it (rm -rf %s) for new members", etcdDir, strings.TrimSpace(string(born)), etcdDir)
	case o.etcdPort == 0:
		// A folder of an older ctxd-cluster, which did not record its
		// members' ports.
		if entries, err := os.ReadDir(etcdDir); err == nil && len(entries) > 0 {
			return o, fmt.Errorf("--etcd-port 0 picks new ports at each run, but %s holds members born on other ports: remove it (rm -rf %s) or give the ports they were born with", etcdDir, etcdDir)
		}
	}
	// A member keeps the cluster it was born in: with another count, the
	// old members wait for a quorum of their own cluster (the whole
	// start bound) while the new ones form another.
	if n := bornMembers(etcdDir); n > 0 && n != o.members {
		return o, fmt.Errorf("--members %d: %s holds a cluster made with --members %d: give that, or remove it (rm -rf %s) for a new cluster", o.members, etcdDir, n, etcdDir)
	}
	return o, nil
}

// bornMembers counts the members' data folders in etcdDir (m1, m2, ...,
// as localcluster.Plan names them): the --members the folder was made
// with, 0 when there are none.
func bornMembers(etcdDir string) int {
	for n := 0; ; n++ {
		if info, err := os.Stat(filepath.Join(etcdDir, fmt.Sprintf("m%d", n+1))); err != nil || !info.IsDir() {
			return n
		}
	}
}

// bornPortFile, in the members' folder, records the --etcd-port they
// were born with.
const bornPortFile = "born-etcd-port"

// cluster is what run started.
type cluster struct {
	members   []*localcluster.Process
	instances []*localcluster.Process
}

// stop stops the ctxd instances, all at once, then the members one by
// one: stopped together, a leader whose followers are gone waits for a
// leadership transfer that cannot happen (seconds); one by one, each
// leader hands over to a member still running.
func (c *cluster) stop(out io.Writer) {
	var wg sync.WaitGroup
	for _, p := range c.instances {
		wg.Go(func() { stopChild(out, p) })
	}
	wg.Wait()
	for _, p := range c.members {
		stopChild(out, p)
	}
	c.instances, c.members = nil, nil
}

func stopChild(out io.Writer, p *localcluster.Process) {
	if err := p.Stop(stopTimeout); err != nil {
		fmt.Fprintf(out, "stop %s: %v\n", childName(p.Cmd.Args), err)
	}
}

// childName names a child by its command and its --name (a member's).
func childName(args []string) string {
	name := filepath.Base(args[0])
	if len(args) > 1 {
		name += " " + args[1]
	}
	if i := slices.Index(args, "--name"); i >= 0 && i+1 < len(args) {
		name += " " + args[i+1]
	}
	return name
}

// beforeStart, when set (a test's seam), is called with the ports of
// each start on free ports, before the children are started: "etcd"
// (the members' client ports, then their peer ports) or "ctxd1", ...
var beforeStart func(what string, ports []int)

// run starts the cluster, prints where it is and runs until ctx ends.
func run(ctx context.Context, args []string, out io.Writer) error {
	o, err := parse(args)
	if err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return err
		}
		return usageError{err}
	}
	if err := os.MkdirAll(o.data, 0o755); err != nil {
		return err
	}
	if born := filepath.Join(o.data, "etcd", bornPortFile); !exists(born) {
		if err := os.MkdirAll(filepath.Dir(born), 0o755); err != nil {
			return err
		}
		if err := os.WriteFile(born, []byte(strconv.Itoa(o.etcdPort)+"\n"), 0o644); err != nil {
			return err
		}
	}
	var c cluster
	defer c.stop(out)
	// A start that failed because Ctrl-C ended it is no failure: stop
	// what had started and end as Ctrl-C after the start does (exit 0).
	startFailed := func(err error) error {
		if ctx.Err() == nil {
			return err
		}
		fmt.Fprintln(out, "interrupted while starting: stopping what had started")
		c.stop(out)
		fmt.Fprintln(out, "stopped")
		return nil
	}
	// A port picked free that another process took before the child
	// bound it: new free ports (the members all new ones, since each
	// knows the others' peer URLs).
	retrying := func(err error) {
		fmt.Fprintf(out, "%v (taken since it was picked): starting again on other free ports\n", err)
	}
	var ms []localcluster.Member
	if o.etcdPort == 0 {
		err = localcluster.OnFreePorts(2*o.members, func(ports []int) error {
			if beforeStart != nil {
				beforeStart("etcd", ports)
			}
			var startErr error
			ms, startErr = c.startMembers(ctx, o, ports[:o.members], ports[o.members:])
			var inUse *localcluster.PortInUseError
			if errors.As(startErr, &inUse) {
				if err := c.discardMembers(ms); err != nil {
					return errors.Join(startErr, err)
				}
			}
			return startErr
		}, retrying)
	} else {
		clientPorts, peerPorts := make([]int, o.members), make([]int, o.members)
		for i := range clientPorts {
			clientPorts[i] = o.etcdPort + 10000*i
			peerPorts[i] = clientPorts[i] + 1
		}
		ms, err = c.startMembers(ctx, o, clientPorts, peerPorts)
		err = fixedPortInUse(err, "--etcd-port")
	}
	if err != nil {
		return startFailed(err)
	}

	urls := make([]string, o.instances)
	for i := range urls {
		name := fmt.Sprintf("ctxd%d", i+1)
		if o.ctxdPort == 0 {
			err = localcluster.OnFreePorts(1, func(ports []int) error {
				if beforeStart != nil {
					beforeStart(name, ports)
				}
				var startErr error
				urls[i], startErr = c.startInstance(ctx, o, ms, name, ports[0])
				return startErr
			}, retrying)
		} else {
			urls[i], err = c.startInstance(ctx, o, ms, name, o.ctxdPort+i)
			err = fixedPortInUse(err, "--ctxd-port")
		}
		if err != nil {
			return startFailed(err)
		}
	}

	fmt.Fprintf(out, "etcd members (prefix %s), data in %s:\n", o.prefix, filepath.Join(o.data, "etcd"))
	for i, m := range ms {
		fmt.Fprintf(out, "  %s  %s  pid %d  log %s\n", m.Name, m.ClientURL, c.members[i].Cmd.Process.Pid, filepath.Join(o.data, m.Name+".log"))
	}
	fmt.Fprintln(out, "ctxd instances:")
	for i, u := range urls {
		fmt.Fprintf(out, "  ctxd%d  %s  pid %d  log %s\n", i+1, u, c.instances[i].Cmd.Process.Pid, filepath.Join(o.data, fmt.Sprintf("ctxd%d.log", i+1)))
	}
	fmt.Fprintf(out, "dashboard: %s/\n", urls[0])
	// Every instance: the CLI moves to the next when one dies.
	fmt.Fprintf(out, "CLI:       export CTXD_SERVER=%s\n", strings.Join(urls, ","))
	fmt.Fprintf(out, "etcdctl:   etcdctl --endpoints %s get --prefix %s\n", strings.Join(localcluster.Endpoints(ms), ","), o.prefix)
	fmt.Fprintln(out, "Ctrl-C stops them all.")

	<-ctx.Done()
	fmt.Fprintln(out, "stopping: ctxd instances, then etcd members")
	c.stop(out)
	fmt.Fprintln(out, "stopped")
	return nil
}

// fixedPortInUse turns a port given with flag and found in use into the
// advice to give another.
func fixedPortInUse(err error, flag string) error {
	var inUse *localcluster.PortInUseError
	if !errors.As(err, &inUse) {
		return err
	}
	holder := "another process listens on it: a ctxd-cluster still running?"
	if port, convErr := strconv.Atoi(inUse.Port()); convErr == nil && portHolder(port) != "" {
		holder = "held by " + portHolder(port)
	}
	return fmt.Errorf("%v (%s): pass %s with other ports, or %s 0 for free ones", err, holder, flag, flag)
}

// startMembers starts the members on the given ports, every one at once
// (a new cluster's member is ready only when a quorum has started), and
// waits until each is ready or one fails: a member that could not
// listen on its ports fails with a *localcluster.PortInUseError.
func (c *cluster) startMembers(ctx context.Context, o options, clientPorts, peerPorts []int) ([]localcluster.Member, error) {
	ms, err := localcluster.Plan(filepath.Join(o.data, "etcd"), clientPorts, peerPorts)
	if err != nil {
		return nil, err
	}
	self, err := os.Executable() // runs the members: `ctxd-cluster member`
	if err != nil {
		return nil, err
	}
	logs := make([]childLog, len(ms))
	for i, m := range ms {
		logs[i] = newChildLog(filepath.Join(o.data, m.Name+".log"))
		p, err := startLogged(localcluster.MemberCommand(self, m, ms, o.logLevel), logs[i].path)
		if err != nil {
			return nil, fmt.Errorf("start etcd member %s: %w", m.Name, err)
		}
		c.members = append(c.members, p)
	}
	if i, err := localcluster.WaitAllReady(ctx, c.members, readyTimeout); err != nil {
		if i < 0 {
			return nil, err
		}
		m := ms[i]
		if inUse := localcluster.PortInUse(logs[i].since(), hostPort(m.ClientURL), hostPort(m.PeerURL)); inUse != nil {
			return ms, fmt.Errorf("etcd member %s: %w", m.Name, inUse)
		}
		return ms, fmt.Errorf("etcd member %s %v (its log: %s)", m.Name, err, logs[i].path)
	}
	return ms, nil
}

// discardMembers kills the members of a new cluster that could not
// start and removes their data folders: members born with these URLs
// must not come back with others. Never for members that may hold data
// of earlier runs (fixed ports).
func (c *cluster) discardMembers(ms []localcluster.Member) error {
	for _, p := range c.members {
		p.Kill()
	}
	c.members = nil
	for _, m := range ms {
		if err := os.RemoveAll(m.Dir); err != nil {
			return err
		}
	}
	return nil
}

// startInstance starts ctxd instance name on port and waits until it
// serves; it returns its URL. An instance that could not listen on its
// port fails with a *localcluster.PortInUseError.
func (c *cluster) startInstance(ctx context.Context, o options, ms []localcluster.Member, name string, port int) (string, error) {
	addr := fmt.Sprintf("127.0.0.1:%d", port)
	cmd := exec.Command(o.ctxd, "serve", "--addr", addr, "--data", filepath.Join(o.data, name))
	// A rolling restart (SIGTERM, then start it again) leaves no
	// write outcome unknown: shutdown_drain, unless set already.
	cmd.Env = append(append([]string{"CTXD_SHUTDOWN_DRAIN=1500ms"}, os.Environ()...), "CTXD_STORE_BACKEND=etcd",
		"CTXD_ETCD_ENDPOINTS="+strings.Join(localcluster.Endpoints(ms), ","), "CTXD_ETCD_PREFIX="+o.prefix)
	log := newChildLog(filepath.Join(o.data, name+".log"))
	p, err := startLogged(cmd, log.path)
	if err != nil {
		return "", fmt.Errorf("start %s: %w", name, err)
	}
	c.instances = append(c.instances, p)
	url := "http://" + addr
	if err := waitServing(ctx, p, url); err != nil {
		select {
		case <-p.Done():
			if inUse := localcluster.PortInUse(log.since(), addr); inUse != nil {
				c.instances = c.instances[:len(c.instances)-1]
				return "", fmt.Errorf("%s: %w", name, inUse)
			}
			// It said why on its last line (a configuration error:
			// --prefix, say): said here, rather than in its log alone.
			if why := lastLine(log.since()); why != "" {
				return "", fmt.Errorf("%s: %w: %s (its log: %s)", name, err, why, log.path)
			}
		default:
		}
		return "", fmt.Errorf("%s: %w (its log: %s)", name, err, log.path)
	}
	return url, nil
}

// lastLine is the last line of text that is not blank, trimmed.
func lastLine(text string) string {
	lines := strings.Split(strings.TrimSpace(text), "\n")
	return strings.TrimSpace(lines[len(lines)-1])
}

// childLog is a child's log file, appended to across runs, and its size
// before this start: what the child wrote is after it.
type childLog struct {
	path   string
	offset int64
}

func newChildLog(path string) childLog {
	l := childLog{path: path}
	if fi, err := os.Stat(path); err == nil {
		l.offset = fi.Size()
	}
	return l
}

// since is what was written to the log since newChildLog.
func (l childLog) since() string {
	f, err := os.Open(l.path)
	if err != nil {
		return ""
	}
	defer f.Close()
	b, _ := io.ReadAll(io.NewSectionReader(f, l.offset, 1<<62))
	return string(b)
}

// hostPort is a URL's host:port.
func hostPort(u string) string { return strings.TrimPrefix(u, "http://") }

// startLogged starts cmd with its standard error appended to logPath.
func startLogged(cmd *exec.Cmd, logPath string) (*localcluster.Process, error) {
	f, err := os.OpenFile(logPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return nil, err
	}
	defer f.Close() // the child holds its own descriptor
	cmd.Stderr = f
	return localcluster.Start(cmd)
}

// waitServing polls url's /readyz until it answers 200, the process
// exits, ctx ends or readyTimeout passes.
func waitServing(ctx context.Context, p *localcluster.Process, url string) error {
	deadline := time.Now().Add(readyTimeout)
	hc := &http.Client{Timeout: 5 * time.Second}
	for {
		resp, err := hc.Get(url + "/readyz")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return nil
			}
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("%s/readyz not 200 after %v", url, readyTimeout)
		}
		select {
		case <-p.Done():
			return fmt.Errorf("exited: %v", p.Err())
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(100 * time.Millisecond):
		}
	}
}

func exists(path string) bool {
	_, err := os.Stat(path)
	return err == nil
}
