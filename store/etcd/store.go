package etcd

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"go.etcd.io/etcd/api/v3/etcdserverpb"
	"go.etcd.io/etcd/api/v3/v3rpc/rpctypes"
	clientv3 "go.etcd.io/etcd/client/v3"
	"go.uber.org/zap"
	"google.golang.org/grpc"
	"google.golang.org/grpc/backoff"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/connectivity"
	"google.golang.org/grpc/status"

	"github.com/framework0/ctxd"
	"github.com/framework0/ctxd/internal/fsutil"
	"github.com/framework0/ctxd/store"
)

// DefaultPrefix is where ctxd keeps its data in etcd when not told.
const DefaultPrefix = "/ctxd/"

// Options configure Open.
type Options struct {
	// Endpoints are etcd's client URLs (at least one).
	Endpoints []string
	// Prefix is the etcd key prefix of this deployment (default
	// DefaultPrefix); several deployments can share a cluster.
	Prefix string
	// TLS, when set, is the client's TLS configuration (CA, certificate).
	TLS *tls.Config
	// Username and Password authenticate to etcd when set.
	Username, Password string
	// DialTimeout bounds connecting at Open (default 5s); RequestTimeout
	// bounds each read and each write's wait (default 5s).
	DialTimeout, RequestTimeout time.Duration
	Limits                      ctxd.Limits
	// Now returns the time recorded on changes (default time.Now).
	Now func() time.Time
	// OnCommit, when set, is told of each etcd transaction that
	// committed writes (or keepalives): the requests it carried, the
	// changes it made, how long it took. It must be quick (metrics).
	OnCommit func(store.CommitInfo)
	// OnConnection, when set, is told when the client loses its
	// connection to etcd (ok false: no endpoint answers, writes fail
	// fast, Ready fails) and when it has one again (ok true), once per
	// change; not at Open. It must be quick (a log line).
	OnConnection func(ok bool)
	// OnReadCacheDisabled, when set, is told once why the read cache
	// gave up (the prefix outgrew ReadCacheMaxBytes): reads go to etcd
	// from then on, until the instance restarts. It must be quick (a
	// log line).
	OnReadCacheDisabled func(reason string)
	// OnReadCacheFill, when set, is told once when the read cache could
	// not be filled (err, the last fill's error: reads go to etcd while
	// the instance tries again, backing off up to 30 s) and once when it
	// is filled again (nil). It must be quick (a log line).
	OnReadCacheFill func(err error)
	// RingChanges and RingBytes bound the recent changes the instance
	// keeps in memory for the change feed (default 8192 changes and
	// 64 MiB: a prefix of large values keeps fewer; older positions are
	// read from etcd's history).
	RingChanges, RingBytes int
	// DirectReads makes every read an etcd read. By default Get, List,
	// Count and Namespaces are served, linearizable, from the instance's
	// watch-fed read cache (cache.go, DESIGN.md).
	DirectReads bool
	// ReadCacheMaxBytes bounds the read cache (default
	// DefaultReadCacheMaxBytes): a prefix that needs more is read from
	// etcd directly.
	ReadCacheMaxBytes int64
	// MaxGroupWrites bounds how many concurrent single writes one etcd
	// transaction commits together (group.go; default the smaller of
	// limits.max_txn_ops and DefaultMaxGroupWrites; 1: each write in a
	// transaction of its own), and GroupsInFlight how
	// many such transactions may be out at once (default
	// DefaultGroupsInFlight).
	MaxGroupWrites, GroupsInFlight int
	// SnapshotScratchDir is where a snapshot is built before it is
	// written out (snapshot.go; default the system's temporary folder),
	// and SnapshotReserve what the scratch file leaves free on its file
	// system (0: not checked). The server builds it in the snapshots
	// folder, under storage.reserve_bytes, beside the file it becomes.
	SnapshotScratchDir string
	SnapshotReserve    fsutil.Reserve
	// onRequest, test only, is told of every unary etcd request the
	// client sends (CountRequests).
	onRequest func(method string)
	// failFill, test only, fails each fill of the read cache as when
	// etcd does not answer while it returns true (FailCacheFills).
	failFill func() bool
}

func (o Options) withDefaults() Options {
	if o.Prefix == "" {
		o.Prefix = DefaultPrefix
	}
	if o.DialTimeout <= 0 {
		o.DialTimeout = 5 * time.Second
	}
	if o.RequestTimeout <= 0 {
		o.RequestTimeout = 5 * time.Second
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	if o.RingChanges <= 0 {
		o.RingChanges = 8192
	}
	if o.RingBytes <= 0 {
		o.RingBytes = 64 << 20
	}
	o.Limits = o.Limits.WithDefaults()
	if o.MaxGroupWrites <= 0 {
		o.MaxGroupWrites = min(o.Limits.MaxTxnOps, DefaultMaxGroupWrites)
	}
	if o.GroupsInFlight <= 0 {
		o.GroupsInFlight = DefaultGroupsInFlight
	}
	return o
}

// keepAliveTime is how long a connection to an etcd member may stay silent
// before the client pings it: twice etcd's default
// --grpc-keepalive-min-time (5 s), below which etcd drops the connection
// of a client that pings.
const keepAliveTime = 10 * time.Second

// Store is a store.Backend on an etcd prefix.
type Store struct {
	cli   *clientv3.Client
	opts  Options
	keys  keys
	stats stats

	// closing is set by Close; writes in flight are counted by inflight.
	closeOnce sync.Once
	closing   atomic.Bool
	inflight  inFlight
	stop      context.CancelFunc
	watchDone chan struct{}
	// background holds the work Open and the watch start in the
	// background: the removals of stale generations (cleanup.go) and the
	// backfill of the recent changes (feed.go). Close waits for them.
	background sync.WaitGroup

	feed feed
	// replayed is the last page read from etcd's history (feed.go).
	replayed replayPage
	// groups commits concurrent single writes together (nil when
	// Options.MaxGroupWrites is 1).
	groups *grouper
	// cache serves reads (nil with Options.DirectReads).
	cache *readCache
	// patches lines up single patches of one key (patchline.go).
	patches patchLine
	// lastProgress is when a progress notification was last asked for
	// (monotonic nanoseconds, see requestProgress): at most one request
	// per progressEvery.
	lastProgress atomic.Int64
	// born is the revision the prefix was first opened at: it has no
	// change at or below it.
	born uint64
	// compacted is the lowest revision known readable (0: none known to
	// be compacted): compaction only moves it forward.
	compacted atomic.Uint64
	// minLeaseTTL is etcd's minimum lease TTL in seconds, learnt at Open:
	// a shorter TTL is refused (checkTTL).
	minLeaseTTL int64
	// serverVersion is the version a member gave at Open ("" when none
	// answered its status then): ServerVersion.
	serverVersion string
	// switching is the id of the generation this instance's full restore
	// is switching to (0: none). Its watch leaves the replaced generation
	// to the restore, which removes it itself right after the switch.
	switching atomic.Uint64
	// beforeCompact, test only, runs right before compact's etcd request.
	beforeCompact func()
	// beforeSnapshotRead, test only, runs when a snapshot has chosen the
	// revision it reads the state at, before it reads it.
	beforeSnapshotRead func()
	// afterCacheApply, test only, runs in the watch's goroutine after
	// the read cache applied a response, before the feed takes it.
	afterCacheApply atomic.Pointer[func(clientv3.WatchResponse)]
	// beforeFillEnds, test only, runs in each fill of the read cache
	// once it has read the prefix, before it takes the cache's lock.
	beforeFillEnds atomic.Pointer[func()]
	// afterFill, test only, runs in the watch's goroutine after a fill
	// of the read cache ended, before the watch takes the mark it starts
	// after.
	afterFill atomic.Pointer[func()]
	// afterGenerationSwap, test only, runs in switchGeneration once the
	// instance is on the new generation, before the cache is invalidated.
	afterGenerationSwap atomic.Pointer[func()]
	// beforeRestoreClaim, test only, runs in a full restore once it has
	// compared the data with the snapshot, before it claims its id.
	beforeRestoreClaim atomic.Pointer[func()]
	// failReloads, test only, is how many reloadGeneration calls still
	// fail as when etcd does not answer.
	failReloads atomic.Int32
}

var _ store.Backend = (*Store)(nil)

// Open connects to etcd and starts the instance's watch on the prefix.
// It fails when etcd does not answer within the dial timeout.
// reconnectMaxDelay bounds the wait between two attempts to reach an etcd
// member that could not be reached.
const reconnectMaxDelay = 2 * time.Second

func Open(opts Options) (*Store, error) {
	opts = opts.withDefaults()
	if len(opts.Endpoints) == 0 {
		return nil, errors.New("etcd: no endpoints")
	}
	if !strings.HasSuffix(opts.Prefix, "/") {
		return nil, fmt.Errorf("etcd: prefix %q must end with /", opts.Prefix)
	}
	interceptors := []grpc.UnaryClientInterceptor{requireLeader(len(opts.Endpoints))}
	if opts.onRequest != nil {
		interceptors = append(interceptors, func(ctx context.Context, method string, req, reply any, cc *grpc.ClientConn, invoker grpc.UnaryInvoker, callOpts ...grpc.CallOption) error {
			opts.onRequest(method)
			return invoker(ctx, method, req, reply, cc, callOpts...)
		})
	}
	cli, err := clientv3.New(clientv3.Config{
		Endpoints:   opts.Endpoints,
		DialTimeout: opts.DialTimeout,
		TLS:         opts.TLS,
		Username:    opts.Username,
		Password:    opts.Password,
		Logger:      zap.NewNop(),
		// etcd's --max-request-bytes, not the client, bounds a request.
		MaxCallSendMsgSize: 64 << 20,
		// A member that stops answering (paused, cut off) with its
		// connection open is noticed by gRPC's pings, and the client then
		// sends elsewhere; without them, a third of the requests go on
		// timing out on it for as long as it is away (TestClusterPausedProcesses).
		DialKeepAliveTime:    keepAliveTime,
		DialKeepAliveTimeout: opts.RequestTimeout,
		DialOptions: []grpc.DialOption{
			grpc.WithChainUnaryInterceptor(interceptors...),
			// gRPC's reconnect backoff grows to 120 s: after a 2-minute
			// outage of etcd an instance stayed unready about 80 s more.
			// Bounded, a member that comes back is found within
			// reconnectMaxDelay (the cost: a dial that often while it is
			// down).
			grpc.WithConnectParams(grpc.ConnectParams{
				Backoff:           backoff.Config{BaseDelay: 100 * time.Millisecond, Multiplier: 1.6, Jitter: 0.2, MaxDelay: reconnectMaxDelay},
				MinConnectTimeout: opts.DialTimeout,
			}),
		},
	})
	if err != nil {
		return nil, fmt.Errorf("etcd: connect to %v: %w%s", opts.Endpoints, err, connectHint(opts, err))
	}
	s := &Store{cli: cli, opts: opts, watchDone: make(chan struct{})}
	if opts.MaxGroupWrites > 1 {
		s.groups = &grouper{inFlight: opts.GroupsInFlight, maxWrites: opts.MaxGroupWrites, minLeft: opts.RequestTimeout / minSendFraction, commit: s.commitGroup}
	}
	ctx, cancel := context.WithTimeout(context.Background(), opts.DialTimeout)
	s.born, err = s.birth(ctx)
	var gen *generation
	if err == nil {
		gen, err = s.readGeneration(ctx)
	}
	var start uint64
	if err == nil {
		s.keys = newKeys(gen)
		start, err = s.lastChange(ctx)
		// The watch starts after the generation's switch: its data was
		// written before it, and is history, not news.
		start = max(start, uint64(gen.rev))
	}
	if err == nil {
		s.minLeaseTTL, err = s.probeMinLeaseTTL(ctx)
	}
	if err == nil {
		// For the start's log only: a member that does not answer its
		// status (one of several down) does not stop the start.
		if ms, serr := s.memberStatus(ctx); serr == nil {
			s.serverVersion = ms.Version
		}
	}
	cancel()
	if errors.Is(err, ErrPrefixOverlap) {
		_ = cli.Close()
		return nil, err
	}
	if err != nil {
		_ = cli.Close()
		return nil, fmt.Errorf("etcd: read %s at %v: %w%s", opts.Prefix, opts.Endpoints, err, connectHint(opts, err))
	}
	s.feed.init(start, opts.RingChanges, opts.RingBytes)
	s.feed.gen = gen
	if !opts.DirectReads {
		s.cache = newReadCache(s, opts.ReadCacheMaxBytes)
	}
	wctx, stop := context.WithCancel(context.Background())
	s.stop = stop
	// The watch starts at the birth at least: a new prefix on a cluster
	// compacted past its birth would otherwise watch from revision 1, be
	// told "compacted" and fill its read cache twice. Not after it: etcd
	// sends no progress notification to a watch that starts above its
	// revision, and currentMark needs one on a prefix with no change.
	go s.watch(wctx, max(start, s.born-1))
	s.background.Go(func() { s.backfill(wctx, start) })
	s.cleanLater(wctx)
	if opts.OnConnection != nil {
		s.background.Go(func() { s.followConnection(wctx) })
	}
	return s, nil
}

// followConnection tells Options.OnConnection when the client's
// connection goes to TransientFailure (every endpoint failed; between
// attempts gRPC goes back to Connecting, which is not news) and when it
// is Ready again.
func (s *Store) followConnection(ctx context.Context) {
	conn := s.cli.ActiveConnection()
	lost := false
	for {
		state := conn.GetState()
		switch {
		case state == connectivity.TransientFailure && !lost:
			lost = true
			s.opts.OnConnection(false)
		case state == connectivity.Ready && lost:
			lost = false
			s.opts.OnConnection(true)
		}
		if !conn.WaitForStateChange(ctx, state) {
			return
		}
	}
}

// birth returns the create revision of the prefix's birth key, writing it
// if this is the prefix's first Open. It refuses a prefix that contains
// another deployment's or lies inside one (ErrPrefixOverlap, overlap.go).
func (s *Store) birth(ctx context.Context) (uint64, error) {
	if err := s.refuseOuterDeployment(ctx); err != nil {
		return 0, err
	}
	p := s.opts.Prefix
	k := p + bornKey
	// etcd stops at the first compare that fails: on every Open but the
	// first, the birth key's, before the range compare reads the prefix.
	first := []clientv3.Cmp{
		clientv3.Compare(clientv3.CreateRevision(k), "=", 0),
		clientv3.Compare(clientv3.CreateRevision(p), "=", 0).WithPrefix(),
	}
	resp, err := s.cli.Txn(ctx).If(first...).
		Then(clientv3.OpPut(k, ""), clientv3.OpGet(k, clientv3.WithKeysOnly())).
		Else(clientv3.OpGet(k, clientv3.WithKeysOnly())).Commit()
	if err != nil {
		return 0, err
	}
	if resp.Succeeded {
		return uint64(resp.Responses[1].GetResponseRange().GetKvs()[0].CreateRevision), nil
	}
	born := firstKV(resp.Responses[0].GetResponseRange().GetKvs())
	if born == nil {
		// Keys under the prefix, and no birth key: name one. Not read in
		// the transaction's Else, which runs at every Open: etcd counts
		// every key of a range read (the limit bounds only what it
		// returns), and in a transaction that writes it does so in its
		// apply loop, holding up every write of the cluster.
		resp, err := s.cli.Get(ctx, p, clientv3.WithPrefix(), clientv3.WithKeysOnly(), clientv3.WithLimit(1))
		if err != nil {
			return 0, err
		}
		if kv := firstKV(resp.Kvs); kv != nil {
			return 0, s.holdsForeignKey(kv.Key)
		}
		return 0, fmt.Errorf("prefix %s: no birth key, and the keys under it are gone: open it again", p)
	}
	if err := s.refuseForeignKeys(ctx); err != nil {
		return 0, err
	}
	return uint64(born.CreateRevision), nil
}

// lastChange is the revision of the prefix's newest change (0 when it has
// none): every change leaves a live etcd key (the value or the tombstone)
// whose mod revision is the change's until a later change of that key.
// etcd sorts the keys of each directory to find it, once, at Open. An
// expiry leaves no key (etcd deleted it): when the newest changes are
// expiries the mark starts below them, and the watch, which starts from
// the mark, delivers them at once.
func (s *Store) lastChange(ctx context.Context) (uint64, error) {
	var last uint64
	for _, dir := range []string{liveDir, tombDir} {
		resp, err := s.cli.Get(ctx, s.keys.dir(dir), clientv3.WithPrefix(), clientv3.WithKeysOnly(), clientv3.WithLimit(1),
			clientv3.WithSort(clientv3.SortByModRevision, clientv3.SortDescend))
		if err != nil {
			return 0, err
		}
		if len(resp.Kvs) > 0 {
			last = max(last, uint64(resp.Kvs[0].ModRevision))
		}
	}
	return last, nil
}

// Close stops the watch after every write in flight has its answer.
// Later calls return nil.
func (s *Store) Close() error {
	var err error
	s.closeOnce.Do(func() {
		s.closing.Store(true)
		s.inflight.Wait()
		s.stop()
		<-s.watchDone
		s.background.Wait()
		s.feed.close()
		err = s.cli.Close()
		if isCanceled(err) {
			err = nil
		}
	})
	return err
}

// enter admits an operation, or refuses it once Close began; the caller
// calls s.inflight.Done when the operation ends.
func (s *Store) enter() error {
	s.inflight.Add(1)
	if s.closing.Load() {
		s.inflight.Done()
		return ctxd.ErrClosed
	}
	return nil
}

// read runs fn with a context bounded by the request timeout, refusing
// it once the store is closed, and while the client has no connection
// to etcd (unreachable).
func (s *Store) read(fn func(ctx context.Context) error) error {
	if err := s.enter(); err != nil {
		return err
	}
	defer s.inflight.Done()
	if err := s.unreachable(); err != nil {
		return err // at once, as writes: it would wait out the timeout
	}
	ctx, cancel := context.WithTimeout(context.Background(), s.opts.RequestTimeout)
	defer cancel()
	if err := fn(ctx); err != nil {
		return readError(err)
	}
	return nil
}

// readError turns an etcd client error of a read into ctxd's: an etcd
// that does not answer is unavailable.
func readError(err error) error {
	switch {
	case err == nil:
		return nil
	case errors.Is(err, ctxd.ErrNotFound), errors.Is(err, ctxd.ErrCompacted), errors.Is(err, ctxd.ErrFutureRevision),
		errors.Is(err, ctxd.ErrInvalid), errors.Is(err, ctxd.ErrClosed), errors.Is(err, ctxd.ErrUnavailable),
		errors.Is(err, ctxd.ErrNotSupported):
		return err
	case isTransport(err), refusedAccess(err), errors.Is(err, rpctypes.ErrTooManyRequests), notNow(err):
		return fmt.Errorf("%w: etcd: %v%s", ctxd.ErrUnavailable, err, accessHint(err))
	}
	return fmt.Errorf("etcd: %w", err)
}

// notNow reports an etcd error that says the cluster could not serve a
// request just then: an election ("leader changed" ends a linearizable
// read whose leader lost its place), a member stopping, behind, or
// unhealthy. A read so refused had no effect and may be sent again: 503,
// never an internal error. (A write's is writeError's: it may have
// applied.)
func notNow(err error) bool {
	for _, e := range []error{
		rpctypes.ErrLeaderChanged, rpctypes.ErrNotLeader, rpctypes.ErrNotCapable, rpctypes.ErrStopped,
		rpctypes.ErrTimeoutDueToLeaderFail, rpctypes.ErrTimeoutDueToConnectionLost, rpctypes.ErrTimeoutWaitAppliedIndex,
		rpctypes.ErrUnhealthy,
	} {
		if errors.Is(err, e) {
			return true
		}
	}
	return false
}

// refusedAccess reports etcd refusing ctxd's etcd user (etcd.username, or
// its client certificate's name) a request, before anything applied: the
// user's role lacks the permission. It is the operator's to fix, and
// nothing a client did: unavailable (503), never outcome_unknown.
func refusedAccess(err error) bool {
	return errors.Is(err, rpctypes.ErrPermissionDenied) || errors.Is(err, rpctypes.ErrUserEmpty) ||
		errors.Is(err, rpctypes.ErrAuthFailed) || errors.Is(err, rpctypes.ErrAuthOldRevision)
}

// accessHint says what to fix after an error that refusedAccess reports.
func accessHint(err error) string {
	switch {
	case errors.Is(err, rpctypes.ErrPermissionDenied):
		return " (ctxd's etcd user, etcd.username, needs a role with readwrite on etcd.prefix)"
	case errors.Is(err, rpctypes.ErrAuthFailed), errors.Is(err, rpctypes.ErrUserEmpty):
		return " (etcd has authentication on: check etcd.username and etcd.password)"
	}
	return ""
}

// requireLeader sends every request with etcd's require-leader mark (the
// instance's watch has it too: watchContext), and sends a request that a
// member refused for want of a leader to the next member, up to once per
// endpoint. A member cut off from the others by a partition is alive and
// answers the client's pings, so the client keeps sending it its share of
// the requests; without a leader it would hold each until the request
// timeout (a third of the writes, and of the /readyz probes, failing
// slowly on an instance that reaches the majority too:
// TestClusterPartitionedLeader). With the mark it refuses at once, before
// it handles the request (etcd's gRPC interceptor: nothing applied, so a
// write may go again), and the client's balancer picks another member for
// the next attempt. Without a quorum every member refuses: the request
// fails fast, unavailable. The key-value and lease requests carry the
// mark, and the alarm list (/v1/status and /readyz read it), which etcd
// answers through raft too (a CI run's log showed alarm lists held 2 s
// each by a cut-off member). The other maintenance requests (Status,
// Defragment) ask one member about itself, which it answers without a
// leader, and must not go to another.
func requireLeader(endpoints int) grpc.UnaryClientInterceptor {
	return func(ctx context.Context, method string, req, reply any, cc *grpc.ClientConn, invoker grpc.UnaryInvoker, opts ...grpc.CallOption) error {
		if !needsLeader(method) {
			return invoker(ctx, method, req, reply, cc, opts...)
		}
		ctx = clientv3.WithRequireLeader(ctx)
		var err error
		for range max(endpoints, 1) {
			err = invoker(ctx, method, req, reply, cc, opts...)
			if !errors.Is(rpctypes.Error(err), rpctypes.ErrNoLeader) {
				return err
			}
		}
		return err
	}
}

// needsLeader reports the etcd requests that a member answers through
// raft, or from state a member without a leader may hold stale: those
// requireLeader marks.
func needsLeader(method string) bool {
	return strings.HasPrefix(method, "/etcdserverpb.KV/") || strings.HasPrefix(method, "/etcdserverpb.Lease/") ||
		method == etcdserverpb.Maintenance_Alarm_FullMethodName
}

// readEveryMember sends a linearizable read (count only) to every member
// at once (firstMember): nil at the first member that answers it, else
// an error a member answered (no leader, access refused) rather than a
// member's silence. Sent through the client's connections, the read
// went where round robin sent it, and a member silent with its
// connection open (paused, overloaded) held it until the timeout while
// the others answered: /readyz said 503 until the client gave up on
// that member.
func (s *Store) readEveryMember(ctx context.Context) error {
	_, err := firstMember(ctx, s, func(ctx context.Context, conn *grpc.ClientConn) (struct{}, error) {
		_, err := etcdserverpb.NewKVClient(conn).Range(ctx, &etcdserverpb.RangeRequest{Key: []byte(s.opts.Prefix + "ready"), CountOnly: true})
		return struct{}{}, rpctypes.Error(err)
	})
	return err
}

// firstMember runs fn against every member at once, each on a connection
// of its own, as memberStatus asks for their status, and returns the
// first answer without an error; else an error a member answered (no
// leader, access refused) rather than a member's silence. The others
// are cancelled.
func firstMember[T any](ctx context.Context, s *Store, fn func(ctx context.Context, conn *grpc.ClientConn) (T, error)) (T, error) {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	type answer struct {
		v   T
		err error
	}
	eps := s.opts.Endpoints
	answers := make(chan answer, len(eps)) // room for all: the late ones end without a reader
	for _, ep := range eps {
		go func() {
			var a answer
			conn, err := s.cli.Dial(ep)
			if err == nil {
				defer conn.Close()
				a.v, err = fn(ctx, conn)
				err = clientv3.ContextError(ctx, err)
			}
			a.err = err
			answers <- a
		}()
	}
	var failed error
	for range eps {
		a := <-answers
		if a.err == nil {
			return a.v, nil
		}
		// What a member answered (a cut-off one: no leader) says more
		// than another's silence.
		if failed == nil || errors.Is(failed, context.DeadlineExceeded) {
			failed = a.err
		}
	}
	var zero T
	return zero, failed
}

// writeError turns an etcd client error of a write into ctxd's. A write
// etcd refused before applying it (no connection, no leader, a closed
// client) is unavailable: nothing changed. A write whose answer did not
// come in time, or whose connection broke after it was sent, may have
// applied: outcome unknown. gRPC says Unavailable for both; only the
// descriptions of a request never sent make it unavailable (the cluster
// linearizability test caught a put answered unavailable when the leader
// it was sent to was killed, and the put had been committed). sent is
// false for a step before the write itself (a lease grant, a restore's
// staging): whatever etcd answered, the write did not apply, so no error
// of such a step is an outcome unknown.
func writeError(err error, sent bool) error {
	switch {
	case errors.Is(err, rpctypes.ErrTooManyOps), errors.Is(err, rpctypes.ErrRequestTooLarge),
		strings.Contains(err.Error(), "trying to send message larger than max"),
		strings.Contains(err.Error(), "too many operations"), strings.Contains(err.Error(), "request is too large"):
		return ctxd.TooLargef("etcd refused the transaction: %v (etcd's --max-txn-ops and --max-request-bytes bound one transaction)", err)
	case errors.Is(err, rpctypes.ErrNoSpace): // checked before anything applied
		return fmt.Errorf("%w: %s", ctxd.ErrInsufficientStorage, spaceAlarm)
	case errors.Is(err, rpctypes.ErrNoLeader), errors.Is(err, rpctypes.ErrNotCapable),
		// Refused before it was proposed: etcd's apply is too far behind.
		errors.Is(err, rpctypes.ErrTooManyRequests),
		refusedAccess(err):
		return fmt.Errorf("%w: etcd: %v%s", ctxd.ErrUnavailable, err, accessHint(err))
	case !sent, status.Code(err) == codes.Unavailable && neverSent(err):
		// ErrStopped too: a member stopping answers it for proposals in
		// flight, which may have applied (sent: below).
		return fmt.Errorf("%w: etcd: %v", ctxd.ErrUnavailable, err)
	case isCanceled(err) || errors.Is(err, context.DeadlineExceeded) || errors.Is(err, rpctypes.ErrTimeout) ||
		errors.Is(err, rpctypes.ErrTimeoutDueToLeaderFail) || errors.Is(err, rpctypes.ErrTimeoutDueToConnectionLost) ||
		status.Code(err) == codes.DeadlineExceeded || status.Code(err) == codes.Canceled:
		return fmt.Errorf("%w: etcd did not answer in time: %v", ctxd.ErrOutcomeUnknown, err)
	}
	return fmt.Errorf("%w: etcd: %v", ctxd.ErrOutcomeUnknown, err)
}

// neverSent reports a gRPC Unavailable error that no request on the wire
// causes: no connection to send on (the etcd client retries these
// itself, and gives up with them), or a connection that could not be
// dialed. "error reading from server: EOF" or "transport is closing",
// by contrast, come after the request may have reached etcd.
func neverSent(err error) bool {
	desc := rpctypes.ErrorDesc(err)
	return desc == "there is no address available" || desc == "there is no connection available" ||
		strings.Contains(desc, "Error while dialing")
}

func isCanceled(err error) bool {
	return errors.Is(err, context.Canceled) || status.Code(err) == codes.Canceled
}

// isTransport reports an error of the connection to etcd rather than of
// the request.
func isTransport(err error) bool {
	switch status.Code(err) {
	case codes.Unavailable, codes.DeadlineExceeded, codes.Canceled:
		return true
	}
	return errors.Is(err, context.DeadlineExceeded) || errors.Is(err, context.Canceled) ||
		errors.Is(err, rpctypes.ErrNoLeader) || errors.Is(err, rpctypes.ErrTimeout)
}

// Ready is nil while etcd answers a linearizable read within the request
// timeout; otherwise an error matching ctxd.ErrUnavailable says why.
func (s *Store) Ready() error {
	if err := s.unreachable(); err != nil {
		return err // at once, as writes
	}
	return s.read(func(ctx context.Context) error {
		err := s.readEveryMember(ctx)
		if refusedAccess(err) { // it answered: no
			return fmt.Errorf("%w: etcd at %v refuses ctxd's etcd user: %v%s", ctxd.ErrUnavailable, s.opts.Endpoints, err, accessHint(err))
		}
		if err != nil {
			return fmt.Errorf("%w: etcd at %v does not answer: %v", ctxd.ErrUnavailable, s.opts.Endpoints, err)
		}
		return nil
	})
}

// Stats counts the instance's writes since Open.
func (s *Store) Stats() store.Stats { return s.stats.get() }

// stats are the counters behind Stats.
type stats struct {
	// historyReads counts the watches of etcd's history that ReadLog
	// started (replay).
	historyReads               atomic.Uint64
	commits, requests, changes atomic.Uint64
	transactions               atomic.Uint64 // write transactions sent to etcd, failed ones included
	patchRetries               atomic.Uint64 // patches applied again after losing a race
	commit                     atomic.Int64
	compactions, compacted     atomic.Uint64
	// quotaRefused counts the write requests etcd refused for its space
	// quota (its NOSPACE alarm): 507, as bolt's storage quota.
	quotaRefused atomic.Uint64
}

// committed counts a transaction of changes writes, sent at started,
// that etcd applied.
// committed counts an etcd transaction, begun at started, that
// committed the writes (or keepalives) of requests requests, which made
// changes changes, and tells Options.OnCommit.
func (s *Store) committed(requests, changes int, started time.Time) {
	took := time.Since(started)
	s.stats.commits.Add(1)
	s.stats.changes.Add(uint64(changes))
	s.stats.commit.Add(int64(took))
	if s.opts.OnCommit != nil {
		s.opts.OnCommit(store.CommitInfo{Requests: requests, Changes: changes, Duration: took})
	}
}

func (st *stats) get() store.Stats {
	return store.Stats{
		Commits: st.commits.Load(), Requests: st.requests.Load(), Changes: st.changes.Load(),
		Transactions: st.transactions.Load(), PatchRetries: st.patchRetries.Load(),
		Commit:      time.Duration(st.commit.Load()),
		Compactions: st.compactions.Load(), Compacted: st.compacted.Load(),
		QuotaRefused: st.quotaRefused.Load(),
	}
}

// inFlight counts the operations in progress, for Close to wait on. A
// sync.WaitGroup does not allow it: an operation that starts (and is then
// refused) while Close waits adds to a group whose Wait is running.
type inFlight struct {
	mu   sync.Mutex
	n    int
	zero sync.Cond // signalled when n drops to 0; its L is mu
}

// Add adds d (1: an operation starts; -1: it ended).
func (f *inFlight) Add(d int) {
	f.mu.Lock()
	f.n += d
	if f.n == 0 && f.zero.L != nil {
		f.zero.Broadcast()
	}
	f.mu.Unlock()
}

// Done ends an operation.
func (f *inFlight) Done() { f.Add(-1) }

// Wait returns once no operation is in progress.
func (f *inFlight) Wait() {
	f.mu.Lock()
	if f.zero.L == nil {
		f.zero.L = &f.mu
	}
	for f.n > 0 {
		f.zero.Wait()
	}
	f.mu.Unlock()
}
