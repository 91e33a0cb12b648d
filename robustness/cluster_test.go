package robustness_test

import (
	"bufio"
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/anishathalye/porcupine"
	"github.com/stretchr/testify/require"

	"github.com/framework0/ctxd"
	"github.com/framework0/ctxd/internal/linearize"
	"github.com/framework0/ctxd/internal/localcluster"
	"github.com/framework0/ctxd/internal/testkit"
)

// longCluster (CTXD_LONG_CLUSTER=1, make cluster-test) runs the cluster
// tests with more operations and more kills than make test does.
var longCluster = os.Getenv("CTXD_LONG_CLUSTER") != ""

var (
	clusterBinOnce sync.Once
	clusterBin     string // cmd/ctxd-cluster, built on first use
	clusterBinErr  error
)

// testCluster is a local cluster as `make cluster` runs it: etcd members,
// each a `ctxd-cluster member` process that the test can SIGKILL, and
// `ctxd serve` instances on one prefix of them.
type testCluster struct {
	t         *testing.T
	members   []localcluster.Member
	procs     []*localcluster.Process // nil: killed
	logs      []*testkit.SyncBuffer   // each member's log, across restarts
	instances []*testkit.Process
	env       []string
	// peerProxies, when the cluster was started with them, stand in
	// front of each member's peer port (startPartitionableCluster).
	peerProxies []*testkit.TCPProxy
}

// startCluster starts a 3-member etcd cluster and n ctxd instances on it,
// each with etcd.request_timeout clusterRequestTimeout.
func startCluster(t *testing.T, n int) *testCluster { return startClusterOf(t, n, clusterOptions{}) }

// startPartitionableCluster is startCluster with the members' peer
// traffic through proxies (c.peerProxies), so that isolateMember can cut
// one member off from the others.
func startPartitionableCluster(t *testing.T, n int) *testCluster {
	return startClusterOf(t, n, clusterOptions{peerProxies: true})
}

// clusterOptions change the cluster startClusterOf starts.
type clusterOptions struct {
	peerProxies bool   // the members' peer traffic through proxies (startPartitionableCluster)
	dir         string // the folder of the members' data folders (dir/m1, ...); "": a temp folder
	// unsafeNoFsync starts the members with etcd's --unsafe-no-fsync (the
	// etcd power-loss test's negative control).
	unsafeNoFsync bool
	// snapshotCount is the members' etcd --snapshot-count (0: etcd's).
	snapshotCount uint64
}

func startClusterOf(t *testing.T, n int, o clusterOptions) *testCluster {
	t.Helper()
	clusterBinOnce.Do(func() { clusterBin, clusterBinErr = testkit.BuildCommand(buildDir, "ctxd-cluster", "cmd/ctxd-cluster") })
	require.NoError(t, clusterBinErr)
	if o.dir == "" {
		o.dir = filepath.Join(t.TempDir(), "etcd")
	}
	c := &testCluster{t: t}
	t.Cleanup(func() {
		for i, p := range c.procs {
			if p != nil {
				p.Kill()
			}
			testkit.LogOnFailure(t, "etcd member "+c.members[i].Name+" log", c.logs[i].String())
		}
	})
	// A port picked free that another process took before the member
	// bound it: the cluster starts again on new free ports.
	err := localcluster.OnFreePorts(6, func(ports []int) error {
		return c.startNewMembers(o, ports[:3], ports[3:])
	}, func(err error) { t.Logf("%v: the cluster starts again on other free ports", err) })
	require.NoError(t, err)
	c.env = testkit.CleanEnv("CTXD_STORE_BACKEND=etcd", "CTXD_ETCD_PREFIX=/ctxd-cluster-test/",
		"CTXD_ETCD_ENDPOINTS="+strings.Join(localcluster.Endpoints(c.members), ","), "CTXD_ETCD_REQUEST_TIMEOUT="+clusterRequestTimeout.String())
	for range n {
		c.instances = append(c.instances, testkit.StartServe(t, ctxdBin, t.TempDir(), testkit.ServeOptions{Env: c.env}))
	}
	return c
}

// startNewMembers starts the members of a new cluster on the given
// ports and waits until each is ready. When one could not listen on its
// ports (a *localcluster.PortInUseError), it kills them all and removes
// their data folders: members born with these URLs must not come back
// with others.
func (c *testCluster) startNewMembers(o clusterOptions, clientPorts, peerPorts []int) error {
	c.t.Helper()
	ms, err := localcluster.Plan(o.dir, clientPorts, peerPorts)
	if err != nil {
		return err
	}
	for i := range ms {
		ms[i].UnsafeNoFsync = o.unsafeNoFsync
		ms[i].SnapshotCount = o.snapshotCount
	}
	c.peerProxies = nil
	if o.peerProxies {
		// Each member listens on its planned port and is reached by its
		// peers through a proxy that names the sender of each connection
		// by the peer URL etcd's raft transport sends with every request.
		for i := range ms {
			ms[i].ListenPeerURL = ms[i].PeerURL
			p := testkit.StartLabellingTCPProxy(c.t, strings.TrimPrefix(ms[i].PeerURL, "http://"), testkit.HTTPHeaderLabel("X-PeerURLs"))
			ms[i].PeerURL = "http://" + p.Addr()
			c.peerProxies = append(c.peerProxies, p)
		}
	}
	c.members, c.procs, c.logs = ms, make([]*localcluster.Process, len(ms)), make([]*testkit.SyncBuffer, len(ms))
	for i := range ms {
		c.logs[i] = &testkit.SyncBuffer{}
		c.startMember(i)
	}
	i, err := localcluster.WaitAllReady(context.Background(), c.procs, testkit.Deadline)
	if err == nil {
		return nil
	}
	m := ms[i]
	listenPeer := cmp.Or(m.ListenPeerURL, m.PeerURL)
	inUse := localcluster.PortInUse(c.logs[i].String(), strings.TrimPrefix(m.ClientURL, "http://"), strings.TrimPrefix(listenPeer, "http://"))
	if inUse == nil {
		return fmt.Errorf("etcd member %s: %w", m.Name, err)
	}
	for j, p := range c.procs {
		p.Kill()
		c.procs[j] = nil
		testkit.LogOnFailure(c.t, "etcd member "+ms[j].Name+" log (a start on a port taken)", c.logs[j].String())
		if err := os.RemoveAll(ms[j].Dir); err != nil {
			return errors.Join(inUse, err)
		}
	}
	return fmt.Errorf("etcd member %s: %w", m.Name, inUse)
}

func (c *testCluster) startMember(i int) {
	c.t.Helper()
	cmd := localcluster.MemberCommand(clusterBin, c.members[i], c.members, "warn")
	cmd.Stderr = c.logs[i]
	p, err := localcluster.Start(cmd)
	require.NoError(c.t, err)
	c.procs[i] = p
}

func (c *testCluster) waitMember(i int) {
	c.t.Helper()
	require.NoError(c.t, c.procs[i].WaitReady(testkit.Deadline), "etcd member %s", c.members[i].Name)
}

// leader is the index of the raft leader, once there is one.
func (c *testCluster) leader() int {
	c.t.Helper()
	leader := -1
	testkit.Eventually(c.t, func() bool {
		var err error
		leader, err = localcluster.Leader(context.Background(), localcluster.Endpoints(c.members), 2*time.Second)
		return err == nil
	}, "a leader")
	return leader
}

// makeLeader hands the raft leadership to member i (etcd's MoveLeader),
// unless it leads already.
func (c *testCluster) makeLeader(i int) {
	c.t.Helper()
	testkit.Eventually(c.t, func() bool {
		err := localcluster.MoveLeader(context.Background(), localcluster.Endpoints(c.members), i, 5*time.Second)
		return err == nil && c.leader() == i
	}, "member %s leading", c.members[i].Name)
}

// killLeader kills the raft leader with SIGKILL and returns its index.
func (c *testCluster) killLeader() int {
	c.t.Helper()
	leader := c.leader()
	c.procs[leader].Kill()
	c.procs[leader] = nil
	return leader
}

// isolateMember cuts member i off from the other members (a network
// partition, connections left open: nothing goes through, nothing is
// refused) and returns the heal. The members' peers are reached
// through c.peerProxies: every connection into i's peer port is held,
// and those it opened to the others' (each names its sender); the others
// go on talking to each other. Requests without a sender's name (etcd's
// version probes) still reach i; raft's never lack one.
func (c *testCluster) isolateMember(i int) (heal func()) {
	c.t.Helper()
	require.Len(c.t, c.peerProxies, len(c.members), "a cluster started without peer proxies")
	for j, p := range c.peerProxies {
		if j == i {
			p.Blackhole()
		} else {
			p.BlackholeFrom(c.members[i].PeerURL)
		}
	}
	return func() {
		for _, p := range c.peerProxies {
			p.Heal()
		}
	}
}

// startInstanceOn starts one more ctxd instance, which knows member i
// alone (its etcd.endpoints), and returns its index.
func (c *testCluster) startInstanceOn(i int) int {
	c.t.Helper()
	env := append(append([]string(nil), c.env...), "CTXD_ETCD_ENDPOINTS="+c.members[i].ClientURL)
	c.instances = append(c.instances, testkit.StartServe(c.t, ctxdBin, c.t.TempDir(), testkit.ServeOptions{Env: env}))
	return len(c.instances) - 1
}

// restartMember starts a killed member again from its data folder.
func (c *testCluster) restartMember(i int) {
	c.t.Helper()
	c.startMember(i)
	c.waitMember(i)
}

// restartInstance starts instance i again (killed before) on its address.
func (c *testCluster) restartInstance(i int) {
	c.t.Helper()
	old := c.instances[i]
	c.instances[i] = testkit.StartServe(c.t, ctxdBin, c.t.TempDir(), testkit.ServeOptions{Env: c.env, Addr: old.Addr})
}

func (c *testCluster) urls() []string {
	var us []string
	for _, p := range c.instances {
		us = append(us, p.URL)
	}
	return us
}

// clusterChange is one change as a watcher saw it; Index and Count are
// its place among the changes of its revision when there are several (a
// transaction's).
type clusterChange struct {
	Rev          uint64
	Index, Count int
	Key          string
	Op           string
	Value        string
}

// ackedWrite is a put the cluster acknowledged.
type ackedWrite struct {
	Key, Value string
	Rev        uint64
}

// TestClusterWatchersAcrossFaults: writers on every ctxd instance,
// watchers (/v1/watch) on every instance, on a 3-member etcd cluster.
// Mid-load the etcd leader is killed with SIGKILL and brought back, then
// a ctxd instance is killed with SIGKILL: its writers go on on another
// instance, and its watchers reconnect to another instance with from_rev.
// Every other write is a transaction of 3 puts (one revision, 3 frames),
// and half the watchers also drop their connection on purpose after the
// first change of each such revision and resume on the next instance
// with from_rev and from_index (issue #16): the rest of the revision
// must come, once.
// Every watcher must see every change exactly once, in revision order,
// all watchers the same sequence; every acknowledged write must be in it
// and readable afterwards, with the revision it was acknowledged with.
func TestClusterWatchersAcrossFaults(t *testing.T) {
	rounds, perStep := 1, 15 // acknowledged writes per writer between faults
	if longCluster {
		rounds, perStep = 3, 150
	}
	t0 := time.Now()
	c := startCluster(t, 3)
	t.Logf("cluster started in %v", time.Since(t0).Round(time.Millisecond))
	l := startClusterLoad(t, c, perStep)
	killed := 0 // the instance killed last
	hc := &http.Client{Timeout: clusterClientTimeout}
	for r := range rounds {
		l.progress("before the leader kill")
		// The first endpoint of every instance: its death must not make
		// an instance unready while the other two members serve.
		c.makeLeader(0)
		leader := c.killLeader()
		t.Logf("round %d: killed etcd member %s, the leader and every instance's first endpoint", r+1, c.members[leader].Name)
		for i := range c.instances {
			testkit.Eventually(t, func() bool { return readyStatus(t, hc, c.urls()[i]) == http.StatusOK }, "instance %d ready with its first endpoint's member dead", i+1)
		}
		l.progress("with the leader killed")
		c.restartMember(leader)
		l.progress("with the member back")
		if r == 0 {
			// The etcd leader's death is the instances' business:
			// their watchers never noticed it.
			require.Equal(t, make([]int, len(l.watchers)), reconnections(l.watchers), "watchers reconnected with every ctxd instance up")
		}
		killed = r % len(c.instances)
		c.instances[killed].Kill()
		t.Logf("round %d: killed ctxd instance %d (%s)", r+1, killed+1, c.instances[killed].URL)
		l.progress("with a ctxd instance killed")
		if r+1 < rounds {
			c.restartInstance(killed) // on its address: the load's URLs stay right
		}
	}
	l.finish(c.urls()[(killed+1)%len(c.instances)])
	resumed, cuts := 0, 0
	for _, w := range l.watchers {
		resumed += w.reconnects
		cuts += w.cuts
	}
	require.Positive(t, resumed, "no watcher reconnected: the instance kill proved nothing")
	require.Positive(t, cuts, "no watcher resumed inside a revision")
	t.Logf("%d resumes inside a revision (from_index)", cuts)
}

// checkClusterFeed checks a watcher's changes after revision from, up to the
// end write: positions only grow (a revision, then the place inside it),
// no key twice, every acknowledged write present with its revision,
// nothing else but unknown-outcome writes of the writers. A revision's
// changes need not all come: writes of other namespaces (the fresh-read
// key) may share it, grouped with the writers' by the instance.
func checkClusterFeed(seen []clusterChange, acked []ackedWrite, from uint64, end clusterChange) error {
	last, lastIndex := from, -1 // the position of the change before (index -1: none yet in revision last)
	keys := map[string]clusterChange{}
	for _, ch := range seen {
		if ch.Rev < last || ch.Rev == last && ch.Index <= lastIndex {
			return fmt.Errorf("change %+v after (%d, %d): a duplicate or out of order", ch, last, lastIndex)
		}
		last, lastIndex = ch.Rev, ch.Index
		if _, dup := keys[ch.Key]; dup {
			return fmt.Errorf("key %s seen twice", ch.Key)
		}
		keys[ch.Key] = ch
		if ch.Op != ctxd.OpPut.String() || (!strings.HasPrefix(ch.Key, "w") && ch.Key != "end") {
			return fmt.Errorf("unexpected change %+v", ch)
		}
	}
	if len(seen) == 0 || seen[len(seen)-1] != end {
		return fmt.Errorf("the feed does not end with the last write %+v", end)
	}
	for _, a := range acked {
		ch, ok := keys[a.Key]
		if !ok {
			return fmt.Errorf("acknowledged write %+v missing from the feed", a)
		}
		if ch.Rev != a.Rev || ch.Value != a.Value {
			return fmt.Errorf("acknowledged write %+v seen as %+v", a, ch)
		}
	}
	return nil
}

// The feed check can fail: a gap, a duplicate, a reordering and a lost
// acknowledged write are each refused.
func TestClusterFeedCheckFindsFaults(t *testing.T) {
	acked := []ackedWrite{{"w0/0", "0", 5}, {"w1/0", "0", 6}, {"w0/1", "1", 8}}
	end := clusterChange{Rev: 9, Key: "end", Op: "put", Value: "0"}
	good := []clusterChange{{5, 0, 0, "w0/0", "put", "0"}, {6, 0, 0, "w1/0", "put", "0"}, {7, 0, 0, "w2/0", "put", "0"}, {8, 0, 0, "w0/1", "put", "1"}, end}
	require.NoError(t, checkClusterFeed(good, acked, 4, end))
	// A transaction's revision: 3 changes.
	txn := []clusterChange{{7, 0, 3, "w2/0/a", "put", "0"}, {7, 1, 3, "w2/0/b", "put", "0"}, {7, 2, 3, "w2/0/c", "put", "0"}}
	ackedTxn := append(slices.Clone(acked), ackedWrite{"w2/0/a", "0", 7}, ackedWrite{"w2/0/b", "0", 7}, ackedWrite{"w2/0/c", "0", 7})
	withTxn := []clusterChange{good[0], good[1], txn[0], txn[1], txn[2], good[3], end}
	require.NoError(t, checkClusterFeed(withTxn, ackedTxn, 4, end))
	// A revision shared with a write the watcher does not match (another
	// namespace's, grouped with w1/0): its index 0 never comes.
	shared := []clusterChange{good[0], {6, 1, 2, "w1/0", "put", "0"}, good[2], good[3], end}
	require.NoError(t, checkClusterFeed(shared, acked, 4, end))
	for name, bad := range map[string][]clusterChange{
		"gap":       {good[0], good[2], good[3], end},
		"duplicate": {good[0], good[1], good[1], good[2], good[3], end},
		"reordered": {good[1], good[0], good[2], good[3], end},
		"lost":      {good[0], good[1], good[2], end},
		"cut short": good[:4],
		// A resume from the revision alone after its first change.
		"rest of a revision lost":  {good[0], good[1], txn[0], good[3], end},
		"start of a revision lost": {good[0], good[1], txn[1], txn[2], good[3], end},
		"inside a revision twice":  {good[0], good[1], txn[0], txn[1], txn[1], txn[2], good[3], end},
		"inside a revision back":   {good[0], good[1], txn[0], txn[2], txn[1], good[3], end},
	} {
		require.Error(t, checkClusterFeed(bad, ackedTxn, 4, end), name)
	}
}

// clusterWatcher is one /v1/watch client (one change per frame) that
// follows the cluster: when its connection ends it reconnects to the next
// instance with from_rev, the revision of the last change it got, and
// from_index, when that change was not the last of its revision.
type clusterWatcher struct {
	mu   sync.Mutex
	urls []string
	cur  int

	ns   string
	last uint64
	// index is how many changes of revision last it got, when not all.
	index      int
	seen       []clusterChange
	reconnects int
	// cutInside: drop the connection after the first change of each
	// writer's transaction (its revision holds its three changes, key/a
	// first), and resume on the next instance (cuts counts those resumes,
	// apart from reconnects). Not after every revision of several: the
	// instances group concurrent single puts, and a resume (~300 ms on a
	// loaded machine) per revision would never catch up.
	cutInside bool
	cuts      int
	// lastEnd is what ended the last session (a failure's message says).
	lastEnd error
	err     error
	done    chan struct{} // closed once "end" was seen, or on a fatal error
}

func (w *clusterWatcher) position() uint64 {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.last
}

func (w *clusterWatcher) watchURL() string {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.watchURLAtLocked(w.cur)
}

// watchURLAtLocked is the URL that resumes the watcher on instance i.
func (w *clusterWatcher) watchURLAtLocked(i int) string {
	q := url.Values{"ns": {w.ns}, "from_rev": {strconv.FormatUint(w.last, 10)}}
	if w.index > 0 {
		q.Set("from_index", strconv.Itoa(w.index))
	}
	return "ws" + strings.TrimPrefix(w.urls[i%len(w.urls)], "http") + "/v1/watch?" + q.Encode()
}

func (w *clusterWatcher) run() {
	defer close(w.done)
	deadline := time.Now().Add(testkit.Deadline) // without progress
	for {
		before := w.position()
		err := w.session()
		if err == nil {
			return // saw the end
		}
		if w.position() != before {
			deadline = time.Now().Add(testkit.Deadline)
		}
		w.mu.Lock()
		w.lastEnd = err
		w.mu.Unlock()
		if errors.Is(err, errCut) {
			w.mu.Lock()
			w.cur++
			w.cuts++
			w.mu.Unlock()
			continue
		}
		var fatal *fatalFeedError
		if errors.As(err, &fatal) || time.Now().After(deadline) {
			w.err = err
			return
		}
		w.mu.Lock()
		w.cur++
		w.reconnects++
		w.mu.Unlock()
		time.Sleep(20 * time.Millisecond) // not a synchronisation: a pause between attempts on a dead instance
	}
}

// errCut ends a session on purpose inside a revision.
var errCut = errors.New("cut inside a revision")

// fatalFeedError is a frame no reconnection mends.
type fatalFeedError struct{ frame testkit.Frame }

func (e *fatalFeedError) Error() string { return fmt.Sprintf("unexpected frame %+v", e.frame) }

// session reads one connection until "end" (nil) or its end (an error).
func (w *clusterWatcher) session() error {
	conn, resp, err := testkit.DialWatchErr(w.watchURL(), nil)
	if resp != nil && resp.Body != nil {
		resp.Body.Close()
	}
	if err != nil {
		return err
	}
	defer conn.Close()
	ws := &testkit.WS{Conn: conn}
	for {
		f, err := ws.NextErr()
		if err != nil {
			return err
		}
		switch {
		case f.Type == ctxd.TypeSubscribed:
		case f.Type == ctxd.TypeError && f.Code == "lagged":
			return fmt.Errorf("lagged at %d", w.position()) // resume
		case f.Type != ctxd.TypeContextUpdated:
			return &fatalFeedError{f}
		default:
			w.mu.Lock()
			w.seen = append(w.seen, clusterChange{Rev: f.Rev, Index: f.Index, Count: f.Count, Key: f.Key, Op: f.Op, Value: string(f.Value)})
			w.last, w.index = f.Rev, 0
			if f.Index+1 < f.Count {
				w.index = f.Index + 1
			}
			w.mu.Unlock()
			if f.Key == "end" {
				return nil
			}
			if w.cutInside && f.Count > 1 && f.Index == 0 && strings.HasSuffix(f.Key, "/a") {
				return errCut
			}
		}
	}
}

func reconnections(ws []*clusterWatcher) []int {
	var n []int
	for _, w := range ws {
		w.mu.Lock()
		n = append(n, w.reconnects)
		w.mu.Unlock()
	}
	return n
}

// wireRecord is what the tests read of a record.
type wireRecord struct {
	Value json.RawMessage `json:"value"`
	Rev   uint64          `json:"revision"`
}

// tryPuts puts value at keys: one key with a PUT, several in one
// transaction (POST /v1/txn; its record's Rev is the transaction's).
func tryPuts(hc *http.Client, base, ns string, keys []string, value string) (wireRecord, error) {
	if len(keys) == 1 {
		return tryPut(hc, base, ns, keys[0], value)
	}
	type op struct {
		Op    string          `json:"op"`
		NS    string          `json:"ns"`
		Key   string          `json:"key"`
		Value json.RawMessage `json:"value"`
	}
	var ops []op
	for _, k := range keys {
		ops = append(ops, op{Op: "put", NS: ns, Key: k, Value: json.RawMessage(value)})
	}
	body, err := json.Marshal(map[string]any{"ops": ops})
	if err != nil {
		return wireRecord{}, err
	}
	req, err := http.NewRequest(http.MethodPost, base+"/v1/txn", strings.NewReader(string(body)))
	if err != nil {
		return wireRecord{}, err
	}
	return doRecord(hc, req)
}

func tryPut(hc *http.Client, base, ns, key, value string) (wireRecord, error) {
	req, err := http.NewRequest(http.MethodPut, base+"/v1/ns/"+ns+"/keys/"+url.PathEscape(key), strings.NewReader(value))
	if err != nil {
		return wireRecord{}, err
	}
	return doRecord(hc, req)
}

func tryGet(hc *http.Client, base, ns, key string) (wireRecord, error) {
	req, err := http.NewRequest(http.MethodGet, base+"/v1/ns/"+ns+"/keys/"+url.PathEscape(key), nil)
	if err != nil {
		return wireRecord{}, err
	}
	return doRecord(hc, req)
}

func doRecord(hc *http.Client, req *http.Request) (wireRecord, error) {
	resp, err := hc.Do(req)
	if err != nil {
		return wireRecord{}, err
	}
	defer resp.Body.Close()
	var rec wireRecord
	if resp.StatusCode != http.StatusOK {
		e := &answerError{what: req.Method + " " + req.URL.String(), Status: resp.StatusCode}
		var body struct {
			Error struct {
				Code string `json:"code"`
			} `json:"error"`
		}
		_ = json.NewDecoder(resp.Body).Decode(&body)
		e.Code = body.Error.Code
		return rec, e
	}
	return rec, json.NewDecoder(resp.Body).Decode(&rec)
}

// answerError is a request the server answered with an error: its HTTP
// status and the error's code.
type answerError struct {
	what   string
	Status int
	Code   string
}

func (e *answerError) Error() string { return fmt.Sprintf("%s: %d %s", e.what, e.Status, e.Code) }

// putValue puts value, failing the test if it is not acknowledged, and
// returns the change it made.
func putValue(t *testing.T, hc *http.Client, base, ns, key, value string) clusterChange {
	t.Helper()
	rec, err := untilAvailable(func() (wireRecord, error) { return tryPut(hc, base, ns, key, value) })
	require.NoError(t, err)
	return clusterChange{Rev: rec.Rev, Key: key, Op: ctxd.OpPut.String(), Value: value}
}

// untilAvailable repeats req while it is answered 503 unavailable (etcd
// without a leader for longer than the request timeout, as a loaded
// machine may see outside any fault: nothing was applied, so a write
// may go again), for up to testkit.Deadline, and returns its last
// answer. Any other answer, outcome_unknown included, ends it.
func untilAvailable(req func() (wireRecord, error)) (wireRecord, error) {
	deadline := time.Now().Add(testkit.Deadline)
	for {
		rec, err := req()
		if err == nil || failedAnswer(err) != "503 unavailable" || time.Now().After(deadline) {
			return rec, err
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// TestClusterLinearizable: concurrent clients spread over 3 ctxd
// instances (gets, puts, CAS puts, deletes, two-key transactions on hot
// keys), with the etcd leader killed with SIGKILL mid-run and brought
// back. Porcupine must accept the whole history: reads through any
// instance see every write acknowledged before them, by any instance.
func TestClusterLinearizable(t *testing.T) {
	c := startCluster(t, 3)
	checkClusterLinearizable(t, c, func() (string, func()) {
		leader := c.killLeader()
		return "killed etcd member " + c.members[leader].Name + ", the leader", func() { c.restartMember(leader) }
	})
}

// TestClusterLinearizableAcrossPartition: the same workload and check,
// with the etcd leader cut off from the two other members (isolateMember)
// mid-run and healed, over the instances of TestClusterPartitionedLeader:
// instance 3 knows the cut-off member alone, so its clients' operations
// fail (unavailable, or of unknown outcome) during the cut, and must
// never have read anything stale.
func TestClusterLinearizableAcrossPartition(t *testing.T) {
	c := startPartitionableCluster(t, 2)
	minority := c.leader()
	c.startInstanceOn(minority)
	checkClusterLinearizable(t, c, func() (string, func()) {
		c.makeLeader(minority) // back from the previous cut, it follows
		return "cut etcd member " + c.members[minority].Name + ", the leader, off from the others", c.isolateMember(minority)
	})
}

// TestClusterLinearizableAcrossPauses: the same workload and check, with
// ctxd instance 1 and the etcd leader paused with SIGSTOP at once mid-run
// and let go on with SIGCONT (a scheduler stall or a VM freeze: sockets
// stay open, nothing answers). The instance's clients time out
// (operations of unknown outcome) while the others go on writing once
// the other members elected a leader; when the instance goes on, its
// watch of etcd is behind every change made meanwhile, and it answers the
// requests that waited in its sockets: no read may come from that stale
// copy; when the old leader goes on, it must step down without serving
// anything stale either. The many writes of unknown outcome are resolved
// from the change feed (linearize.Resolve): unresolved, porcupine stayed
// undecided after 8 minutes on 31 of them.
func TestClusterLinearizableAcrossPauses(t *testing.T) {
	c := startCluster(t, 3)
	checkClusterLinearizable(t, c, func() (string, func()) {
		leader := c.leader()
		instance := pauseProcess(t, c.instances[0].Cmd.Process.Pid)
		member := pauseProcess(t, c.procs[leader].Cmd.Process.Pid)
		return "paused ctxd instance 1 and etcd member " + c.members[leader].Name + ", the leader", func() {
			member()
			instance()
		}
	})
}

// checkClusterLinearizable runs the linearizability workload over c's
// instances (gets, puts, CAS puts, deletes, two-key transactions on hot
// keys) with fault applied after each segment of operations and undone
// after the next (once; 3 times in make cluster-test); porcupine must
// accept the whole history.
func checkClusterLinearizable(t *testing.T, c *testCluster, fault func() (what string, undo func())) {
	t.Helper()
	faults, segment := 1, 200 // operations between faults, and after the last
	if longCluster {
		faults, segment = 3, 1000
	}
	totalOps := (2*faults + 1) * segment
	rec := linearize.NewRecorder()
	w := linearize.Workload{URLs: c.urls(), Clients: 6, Keys: linearize.DefaultKeys(4), Ops: totalOps}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	// The change feed tells which writes of unknown outcome took effect:
	// without it porcupine tries both ways for each, and a pause of the
	// etcd leader leaves too many of them to decide.
	feed, err := linearize.StartFeed(ctx, w)
	require.NoError(t, err)
	done := startWorkload(ctx, w, rec)
	for i := range faults {
		testkit.Eventually(t, func() bool { return rec.Len() >= (2*i+1)*segment }, "%d operations", (2*i+1)*segment)
		what, undo := fault()
		t.Logf("%s, after %d operations", what, rec.Len())
		testkit.Eventually(t, func() bool { return rec.Len() >= (2*i+2)*segment }, "%d operations", (2*i+2)*segment)
		undo()
	}
	res := <-done
	require.NoError(t, res.err)
	t.Logf("workload: %v over %d instances, %d faults", res.stats, len(c.instances), faults)
	require.Positive(t, res.stats.OK, "nothing succeeded")
	sctx, stop := context.WithTimeout(ctx, testkit.Deadline)
	defer stop()
	changes, resumes, err := feed.Stop(sctx)
	require.NoError(t, err)
	h, resolution := linearize.Resolve(rec.History(), changes)
	t.Logf("feed: %d changes, %d resumes; %v", len(changes), resumes, resolution)
	linearize.Check(t, h, linearize.DefaultTimeout)
}

// TestClusterCommand runs `ctxd-cluster` (make cluster) as a user does,
// on free ports: it prints the members and instances, a write on one
// instance is read on another, the CLI with the CTXD_SERVER it prints
// goes on when the first instance is killed, and SIGINT stops every
// process it started and exits 0.
func TestClusterCommand(t *testing.T) {
	clusterBinOnce.Do(func() { clusterBin, clusterBinErr = testkit.BuildCommand(buildDir, "ctxd-cluster", "cmd/ctxd-cluster") })
	require.NoError(t, clusterBinErr)
	data := filepath.Join(t.TempDir(), "cluster")
	cmd := exec.Command(clusterBin, "--data", data, "--ctxd", ctxdBin, "--ctxd-port", "0", "--etcd-port", "0")
	cmd.Env = testkit.CleanEnv()
	var stderr testkit.SyncBuffer
	cmd.Stderr = &stderr
	out, err := cmd.StdoutPipe()
	require.NoError(t, err)
	require.NoError(t, cmd.Start())
	exited := make(chan error, 1)
	t.Cleanup(func() {
		_ = cmd.Process.Kill() // its children get SIGTERM (Linux) when it dies
		testkit.LogOnFailure(t, "ctxd-cluster stderr", stderr.String())
		// The members' and instances' own logs say why one exited (a
		// free port taken meanwhile, say): kept, since the folder goes.
		logs, _ := filepath.Glob(filepath.Join(data, "*.log"))
		for _, l := range logs {
			b, _ := os.ReadFile(l)
			testkit.LogOnFailure(t, filepath.Base(l), string(b))
		}
	})

	// "  m1  http://...  pid N  log ..." and "  ctxd1  http://...  pid N  log ..."
	var urls []string
	var pids []int
	var cliEnv string // "CTXD_SERVER=..."
	lines := bufio.NewScanner(out)
	for lines.Scan() && lines.Text() != "Ctrl-C stops them all." {
		t.Log(lines.Text())
		if env, ok := strings.CutPrefix(lines.Text(), "CLI:       export "); ok {
			cliEnv = env
		}
		f := strings.Fields(lines.Text())
		if len(f) >= 4 && f[2] == "pid" {
			pid, err := strconv.Atoi(f[3])
			require.NoError(t, err)
			pids = append(pids, pid)
			if strings.HasPrefix(f[0], "ctxd") {
				urls = append(urls, f[1])
			}
		}
	}
	require.Len(t, urls, 3, "three instances printed")
	require.Len(t, pids, 6, "three members and three instances printed")
	go func() {
		_, _ = io.Copy(io.Discard, out)
		exited <- cmd.Wait()
	}()

	hc := &http.Client{Timeout: 10 * time.Second}
	put := putValue(t, hc, urls[0], "default", "hello", `"cluster"`)
	got, err := tryGet(hc, urls[2], "default", "hello")
	require.NoError(t, err)
	require.Equal(t, `"cluster"`, string(got.Value))
	require.Equal(t, put.Rev, got.Rev)

	// The printed CTXD_SERVER lists every instance: the CLI goes on with
	// the first one killed.
	require.Equal(t, "CTXD_SERVER="+strings.Join(urls, ","), cliEnv)
	require.NoError(t, syscall.Kill(pids[3], syscall.SIGKILL)) // ctxd1
	cli := exec.Command(ctxdBin, "put", "after", `"kill"`)
	cli.Env = testkit.CleanEnv(cliEnv, "XDG_CACHE_HOME="+t.TempDir()) // not the user's cache of the instance it used
	outPut, err := cli.CombinedOutput()
	require.NoError(t, err, "ctxd put with ctxd1 killed: %s", outPut)
	got, err = tryGet(hc, urls[1], "default", "after")
	require.NoError(t, err)
	require.Equal(t, `"kill"`, string(got.Value))

	// An import of 2,000 keys is one etcd transaction of 2,000 operations:
	// the members take it (etcd's default --max-txn-ops, 128, would not).
	var dump strings.Builder
	dump.WriteString(`{"context":{`)
	for i := range 2000 {
		if i > 0 {
			dump.WriteByte(',')
		}
		fmt.Fprintf(&dump, `"bulk/%04d":%d`, i, i)
	}
	dump.WriteString(`}}`)
	resp, err := hc.Post(urls[1]+"/v1/ns/imported/import", "application/json", strings.NewReader(dump.String()))
	require.NoError(t, err)
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	require.Equal(t, http.StatusOK, resp.StatusCode, "import of 2,000 keys: %s", body)
	got, err = tryGet(hc, urls[2], "imported", "bulk/1999")
	require.NoError(t, err)
	require.Equal(t, `1999`, string(got.Value))

	require.NoError(t, cmd.Process.Signal(os.Interrupt))
	select {
	case err := <-exited:
		require.NoError(t, err, "ctxd-cluster's exit after SIGINT")
	case <-time.After(testkit.Deadline):
		t.Fatalf("ctxd-cluster still runs %v after SIGINT", testkit.Deadline)
	}
	for _, pid := range pids {
		// Signal 0 tests for the process: it must be gone (reaped by
		// ctxd-cluster, so not even a zombie).
		require.Error(t, syscall.Kill(pid, 0), "process %d still runs after ctxd-cluster exited", pid)
	}
	require.FileExists(t, filepath.Join(data, "m1.log"))
	require.FileExists(t, filepath.Join(data, "ctxd1.log"))
	require.DirExists(t, filepath.Join(data, "etcd", "m1"))
	// Its instances drain before they stop (shutdown_drain: a rolling
	// restart leaves no write outcome unknown).
	log2, err := os.ReadFile(filepath.Join(data, "ctxd2.log"))
	require.NoError(t, err)
	require.Contains(t, string(log2), `"drain":"1.5s"`)
	require.Contains(t, string(log2), `"message":"draining: /readyz answers 503`)
}

// TestClusterLinearizeFindsStaleInstance is the cluster test's negative
// control: one of the three instances is reached through the test's
// stale-read proxy (TestLinearizeFindsFaultyServer's), as an instance
// that answered reads from an out-of-date copy would be; the same
// workload spread over the instances must give a history porcupine
// refuses.
func TestClusterLinearizeFindsStaleInstance(t *testing.T) {
	c := startCluster(t, 3)
	proxy := newFaultyProxy(t, c.urls()[1], staleReads)
	defer proxy.transport.CloseIdleConnections()
	front := httptest.NewServer(proxy)
	defer front.Close()

	rec := linearize.NewRecorder()
	w := linearize.Workload{URLs: []string{c.urls()[0], front.URL, c.urls()[2]}, Clients: 4, Keys: linearize.DefaultKeys(2), Ops: 600, Seed: 7}
	stats, err := w.Run(context.Background(), rec)
	require.NoError(t, err)
	faults := proxy.count()
	t.Logf("workload: %v; %d stale reads served", stats, faults)
	require.Positive(t, faults, "the proxy served no stale read: the control proves nothing")
	r := linearize.Verify(rec.History(), linearize.DefaultTimeout)
	t.Logf("linearizability: %v", r)
	require.Equal(t, porcupine.Illegal, r.Verdict, "the checker missed a stale read from one instance")
}
