package socketio_test

import (
	"context"
	"encoding/json"
	"strconv"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/framework0/ctxd"
	"github.com/framework0/ctxd/configs"
	"github.com/framework0/ctxd/internal/testkit"
	"github.com/framework0/ctxd/internal/testkit/etcdkit"
	"github.com/framework0/ctxd/realtime/socketio"
	"github.com/framework0/ctxd/store/etcd"
)

// Issue #16 on the Socket.IO door: each context_updated of an etcd
// transaction's revision carries its place (index, count), and a client
// that handled the first k of them resumes with from_rev and from_index
// (auth payload or query), on the same or another instance, and gets
// exactly the rest. The negative control (from_rev alone) gets none of
// the rest.
func TestEtcdResumeInsideRevision(t *testing.T) {
	endpoint, prefix := etcdkit.Shared(t).Endpoint, etcdkit.Prefix(etcdkit.Name(t))
	a := testkit.StartServer(t, testkit.WithEtcd(endpoint, prefix))
	b := testkit.StartServer(t, testkit.WithEtcd(endpoint, prefix))
	ctx := context.Background()
	txn := []ctxd.Write{
		{Namespace: "default", Key: "t0", Op: ctxd.OpPut, Value: json.RawMessage(`0`), Who: "t"},
		{Namespace: "default", Key: "t1", Op: ctxd.OpPut, Value: json.RawMessage(`1`), Who: "t"},
		{Namespace: "default", Key: "t2", Op: ctxd.OpPut, Value: json.RawMessage(`2`), Who: "t"},
	}
	res, err := a.Backend().Txn(ctx, txn)
	require.NoError(t, err)
	rev := res.Revision
	next, err := b.Backend().Put(ctx, "default", "next", json.RawMessage(`1`), nil, "t")
	require.NoError(t, err)

	// keys connects with auth (and query) and returns the keys of the
	// context_updated events up to next, checking each one's place.
	keys := func(srv *testkit.Server, auth map[string]any, q map[string][]string) []string {
		c := dial(t, srv, sioOpts{websocket: true, query: q})
		require.Contains(t, c.connect(auth), `"sid"`)
		var out []string
		for {
			e := c.waitEvent(ctxd.TypeContextUpdated)
			out = append(out, e.Data["key"].(string))
			if uint64(e.Data["rev"].(float64)) == next.ModRev {
				assert.NotContains(t, e.Data, "index", "a revision of one change has no index")
				c.close()
				return out
			}
			i := len(out) - 1 + int(auth["from_index"].(int))
			assert.Equal(t, []any{float64(rev), float64(i), float64(len(txn))}, []any{e.Data["rev"], e.Data["index"], e.Data["count"]})
		}
	}
	for k := range len(txn) {
		want := []string{}
		for _, w := range txn[k:] {
			want = append(want, w.Key)
		}
		want = append(want, "next")
		at := map[string]any{"from_rev": rev, "from_index": k}
		assert.Equal(t, want, keys(a, at, nil), "k=%d, same instance", k)
		assert.Equal(t, want, keys(b, at, nil), "k=%d, other instance", k)
		// In the query, as strings.
		assert.Equal(t, want, keys(b, map[string]any{"from_index": k},
			map[string][]string{"from_rev": {strconv.FormatUint(rev, 10)}, "from_index": {strconv.Itoa(k)}}), "k=%d, query", k)
	}
	// Negative control: from_rev alone is the whole revision, the rest of
	// it is not sent.
	c := dial(t, b, sioOpts{websocket: true})
	require.Contains(t, c.connect(map[string]any{"from_rev": rev}), `"sid"`)
	e := c.waitEvent(ctxd.TypeContextUpdated)
	assert.Equal(t, "next", e.Data["key"], "from_rev alone skips the rest of revision %d", rev)
	c.close()

	// Bad input: a connect error, nothing else.
	for _, auth := range []map[string]any{{"from_index": 1}, {"from_rev": rev, "from_index": "x"}} {
		c := dial(t, a, sioOpts{websocket: true})
		assert.Contains(t, c.connect(auth), `"code":"bad_request"`, "%v", auth)
		c.close()
	}
}

// A Socket.IO client that stops reading, on an etcd where a neighbour
// deployment (another prefix) keeps etcd's revision more than max_lag
// past the client's position, has its lag checked at every change of its
// own prefix. Counting must read each of those changes once (going on
// from what it counted, and following the position when the client drains
// its window), not every change after the position at each check. The
// client is still cut exactly when more than max_lag changes of its prefix
// are after its position, having got every change up to the from_rev of
// the error, and a resume from there gets the rest, each once, in order.
//
// The test waits for each check (a counter) before the next write, so that
// every write is checked on its own: no timing. Negative control: with the
// old behind(), ReadLog(from, MaxLag+1) at every check, the lag counting
// read 8,161 changes for the 226 written (the sum of the lag at each
// check); the rest of the test passes with it. A count that does not
// follow the position (step's changes never leave it) cuts the client
// 37 changes behind instead of 101.
func TestEtcdSlowClientLagCountReadsEachChangeOnce(t *testing.T) {
	// An etcd of its own: the checks count etcd's revisions, which any
	// other test's write to a shared etcd (an expiring key's lease, say)
	// would move.
	e, err := etcdkit.Start()
	require.NoError(t, err)
	t.Cleanup(e.Close)
	endpoint := e.Endpoint
	const maxLag = 100
	srv := testkit.StartServer(t, testkit.WithEtcd(endpoint, etcdkit.Prefix(etcdkit.Name(t))), testkit.WithConfig(func(c *configs.Config) {
		c.WebSocket.MaxLag = maxLag
		c.WebSocket.LagGrace = 0                    // cut at the first check past max_lag
		c.WebSocket.PingInterval = 10 * time.Minute // cut for its lag, not for missing pings
		// One change per revision, as every write here is: the feed then
		// counts only past max_lag revisions (ChangesPerRevision), which
		// the checks below rely on.
		c.Limits.MaxTxnOps = 1
	}))
	sio := srv.Server().SocketIO()
	neighbour, err := etcd.Open(etcd.Options{Endpoints: []string{endpoint}, Prefix: etcdkit.Prefix(etcdkit.Name(t) + "/neighbour")})
	require.NoError(t, err)
	t.Cleanup(func() { require.NoError(t, neighbour.Close()) })
	noise := func(n int) {
		for i := range n {
			_, err := neighbour.Put(context.Background(), "default", "noise", json.RawMessage(strconv.Itoa(i)), nil, "neighbour")
			require.NoError(t, err)
		}
	}
	var want []written
	write := func() {
		key := "k" + strconv.Itoa(len(want))
		want = append(want, written{put(t, srv, key, `1`), key})
	}
	checks := func() uint64 {
		n, _ := socketio.LagCounting(sio)
		return n
	}
	// checked writes a change (and one of the neighbour's) and waits for
	// the client's feed to have checked its lag n times since.
	checked := func(n uint64) {
		before := checks()
		write()
		noise(1)
		testkit.Eventually(t, func() bool { return checks() >= before+n }, "%d lag checks after change %d", n, len(want))
	}

	slow := dial(t, srv, sioOpts{noPoll: true})
	slow.sendPacket("40")
	// Its window fills (64 packets) and its position stops, fewer than
	// max_lag revisions behind: no check yet.
	for range 80 {
		write()
	}
	testkit.Eventually(t, func() bool { return socketio.FullWindows(sio) == 1 }, "the slow client's window is full")
	require.Zero(t, checks())
	// From here etcd's revision is more than max_lag past its position:
	// every change of its prefix wakes its feed, which checks once.
	noise(2 * maxLag)
	for range 60 {
		checked(1)
	}
	noise(2 * maxLag)
	checked(1)
	require.Zero(t, sio.Lagged(), "fewer than max_lag changes behind")
	// It drains its window: the feed checks, queues a window of changes,
	// and checks again from its new position, which is still behind the
	// neighbour's last revisions (the count follows the position).
	before := checks()
	require.True(t, slow.pollOnce())
	testkit.Eventually(t, func() bool { return checks() >= before+2 }, "the checks around the step")
	for i := 0; sio.Lagged() == 0; i++ {
		require.Less(t, i, 2*maxLag, "cut once more than max_lag changes behind")
		checked(1)
	}
	_, read := socketio.LagCounting(sio)
	t.Logf("%d changes written, %d lag checks, %d changes read to count them", len(want), checks(), read)
	assert.LessOrEqual(t, read, uint64(len(want)), "each change is read at most once to count the lag")

	upTo, from := receivedUntilLagged(t, slow, want)
	assert.Equal(t, maxLag+1, len(want)-upTo, "cut at the first check with more than max_lag changes after its position")

	resumed := dial(t, srv, sioOpts{websocket: true})
	require.Contains(t, resumed.connect(map[string]any{"from_rev": from}), `"sid"`)
	write() // after the resume: the last one it gets
	for i, w := range want[upTo:] {
		u := resumed.waitEvent(ctxd.TypeContextUpdated)
		require.Equal(t, []any{float64(w.rev), w.key}, []any{u.Data["rev"], u.Data["key"]}, "resumed change %d", i)
	}
}

// On etcd a transaction's changes share its revision: a Socket.IO client
// that stops reading is cut once more than max_lag changes are after its
// position, though they fill far fewer than max_lag revisions, and it has
// every change up to the from_rev of the error; a resume from there gets
// the rest, each once, in order. Negative control: with the check by the
// distance in revisions alone (before store.Feed's ChangesPerRevision),
// it is never cut here (the Eventually below fails).
func TestEtcdTransactionChangesCountTowardLag(t *testing.T) {
	endpoint := etcdkit.Shared(t).Endpoint
	const maxLag, perTxn, txns = 50, 20, 6
	srv := testkit.StartServer(t, testkit.WithEtcd(endpoint, etcdkit.Prefix(etcdkit.Name(t))), testkit.WithConfig(func(c *configs.Config) {
		c.WebSocket.MaxLag = maxLag
		c.WebSocket.LagGrace = 0                    // cut at the first check past max_lag
		c.WebSocket.PingInterval = 10 * time.Minute // cut for its lag, not for missing pings
	}))
	sio := srv.Server().SocketIO()
	var want []written
	slow := dial(t, srv, sioOpts{noPoll: true})
	slow.sendPacket("40")
	for i := range 80 {
		key := "k" + strconv.Itoa(i)
		want = append(want, written{put(t, srv, key, `1`), key})
	}
	testkit.Eventually(t, func() bool { return socketio.FullWindows(sio) == 1 }, "the slow client's window is full")
	for n := range txns {
		writes := make([]ctxd.Write, perTxn)
		for i := range writes {
			writes[i] = ctxd.Write{Namespace: "default", Key: "t" + strconv.Itoa(n*perTxn+i), Op: ctxd.OpPut, Value: json.RawMessage(`1`), Who: "t"}
		}
		res, err := srv.Backend().Txn(context.Background(), writes)
		require.NoError(t, err)
		for _, w := range writes {
			want = append(want, written{res.Revision, w.Key})
		}
	}
	testkit.Eventually(t, func() bool { return sio.Lagged() == 1 },
		"cut: %d changes in %d revisions after a window of 64, max_lag %d", txns*perTxn+80-64, txns+80-64, maxLag)

	upTo, from := receivedUntilLagged(t, slow, want)
	assert.Greater(t, len(want)-upTo, maxLag, "cut with more than max_lag changes after its position")
	resumed := dial(t, srv, sioOpts{websocket: true})
	require.Contains(t, resumed.connect(map[string]any{"from_rev": from}), `"sid"`)
	for i, w := range want[upTo:] {
		u := resumed.waitEvent(ctxd.TypeContextUpdated)
		require.Equal(t, []any{float64(w.rev), w.key}, []any{u.Data["rev"], u.Data["key"]}, "resumed change %d", i)
	}
}

// written is a change a test made: its revision and key.
type written struct {
	rev uint64
	key string
}

// receivedUntilLagged reads what a client that was cut with "lagged" got
// before the error: every change of want up to the error's from_rev, in
// order. It returns how many of want that is, and from_rev.
func receivedUntilLagged(t *testing.T, c *sio, want []written) (upTo int, from uint64) {
	t.Helper()
	updates, from := c.untilLagged()
	for upTo < len(want) && want[upTo].rev <= from {
		upTo++
	}
	require.Len(t, updates, upTo, "every change up to from_rev %d, before the error", from)
	for i, u := range updates {
		require.Equal(t, []any{float64(want[i].rev), want[i].key}, []any{u.Data["rev"], u.Data["key"]}, "change %d", i)
	}
	return upTo, from
}

// A client cut lagged inside an etcd revision that its instance can no
// longer read gets no rest of that revision before the error (the cut's
// finishRevision fails), and the error names the place it stopped:
// from_rev that revision, from_index the changes of it the client got.
// Here its window in bytes (1 MiB) held it inside a transaction of 24
// changes of 64 KiB, and etcd was compacted past the revision meanwhile. A resume
// with both, on an instance that still has the revision (another one,
// whose feed holds it in memory), gets every later change exactly once;
// on the instance that cut it, the CONNECT is told compacted. Checked:
// with lagged naming the cursor (pos, no from_index) the error's from_rev
// is the revision before; with from_rev right and no from_index the
// resume gets the whole revision again.
func TestEtcdALaggedCutInARevisionItsInstanceCannotReadNamesFromIndex(t *testing.T) {
	const size, perTxn, after, maxLag = 64 << 10, 24, 31, 30
	// An etcd of its own: a compaction is the whole cluster's.
	endpoint, prefix := etcdkit.Own(t).Endpoint, etcdkit.Prefix(etcdkit.Name(t))
	a := testkit.StartServer(t, testkit.WithEtcd(endpoint, prefix), testkit.WithConfig(func(c *configs.Config) {
		smallMessages(c, 512<<10)
		c.WebSocket.MaxLag = maxLag
		c.WebSocket.LagGrace = 0
		c.WebSocket.PingInterval = 10 * time.Minute // cut for its lag, not for missing pings
	}))
	b := testkit.StartServer(t, testkit.WithEtcd(endpoint, prefix))
	door := a.Server().SocketIO()
	slow := dial(t, a, sioOpts{noPoll: true})
	slow.sendPacket("40")
	testkit.Eventually(t, func() bool { return door.Clients() == 1 }, "connected")
	ctx := context.Background()
	writes := make([]ctxd.Write, perTxn)
	for i := range writes {
		writes[i] = ctxd.Write{Namespace: "default", Key: "t" + strconv.Itoa(i), Op: ctxd.OpPut, Value: json.RawMessage(bigValue(size)), Who: "t"}
	}
	res, err := a.Backend().Txn(ctx, writes)
	require.NoError(t, err)
	var want []written
	for _, w := range writes {
		want = append(want, written{res.Revision, w.Key})
	}
	testkit.Eventually(t, func() bool { return door.Backlog().Held == 1 }, "the feed waits inside the revision")

	// etcd is compacted at a change after the revision, once both
	// instances have seen it (b's feed keeps the revision in memory).
	mark := put(t, a, "mark", `1`)
	want = append(want, written{mark, "mark"})
	testkit.Eventually(t, func() bool { return a.Backend().Revision() >= mark && b.Backend().Revision() >= mark }, "both instances saw the mark")
	_, err = a.Backend().CompactKeep(ctx, mark, 1)
	require.NoError(t, err)
	require.Zero(t, door.Lagged(), "fewer than max_lag changes behind before the compaction")
	for i := range after {
		key := "after" + strconv.Itoa(i)
		want = append(want, written{put(t, a, key, `1`), key})
	}
	testkit.Eventually(t, func() bool { return door.Lagged() == 1 }, "cut lagged")

	updates, from, index := slow.untilLaggedAt()
	require.Equal(t, res.Revision, from, "from_rev: the revision it was held inside")
	require.Equal(t, len(updates), index, "from_index: the changes of the revision it got, nothing after them")
	require.Less(t, index, perTxn, "held inside the revision")
	for i, u := range updates {
		require.Equal(t, []any{float64(res.Revision), writes[i].Key, float64(i)}, []any{u.Data["rev"], u.Data["key"], u.Data["index"]}, "change %d", i)
	}
	resume := map[string]any{"from_rev": from, "from_index": index}

	there := dial(t, a, sioOpts{websocket: true})
	require.Contains(t, there.connect(resume), `"sid"`)
	assert.Equal(t, ctxd.CodeCompacted, there.waitEvent(ctxd.TypeError).Data["code"], "its own instance can no longer read the revision")

	resumed := dial(t, b, sioOpts{websocket: true})
	require.Contains(t, resumed.connect(resume), `"sid"`)
	want = append(want, written{put(t, b, "last", `1`), "last"})
	for i, w := range want[index:] {
		u := resumed.waitEvent(ctxd.TypeContextUpdated)
		require.Equal(t, []any{float64(w.rev), w.key}, []any{u.Data["rev"], u.Data["key"]}, "resumed change %d", i)
	}
}
