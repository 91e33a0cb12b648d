package socketio_test

import (
	"context"
	"encoding/json"
	"io"
	"net/http"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/framework0/ctxd"
	"github.com/framework0/ctxd/configs"
	"github.com/framework0/ctxd/internal/testkit"
	"github.com/framework0/ctxd/internal/testkit/etcdkit"
	"github.com/framework0/ctxd/realtime/socketio"
)

// bigValue is a JSON string value of n bytes.
func bigValue(n int) string { return `"` + strings.Repeat("v", n-2) + `"` }

// smallMessages sets websocket.max_message_bytes to n (and
// limits.max_value_bytes with it, which may not exceed it), and returns
// the window of bytes that gives a client: 2n. The tests of large values
// scale their values down with it, crossing as many windows and packets
// with a fraction of the bytes: moving tens of MB JSON-encoded took them
// minutes under -race.
func smallMessages(c *configs.Config, n int) (window int) {
	c.WebSocket.MaxMessageBytes = int64(n)
	c.Limits.MaxValueBytes = n
	return 2 * n
}

// A Socket.IO client that does not read, behind a namespace of large
// values, holds about twice websocket.max_message_bytes of changes (its
// window in bytes), not 64 of them: its feed waits, and the changes stay
// in the log. Once it reads, it gets every change, in order, and is not
// cut. Before, its feed queued 64 packets whatever their size (8 MiB of
// the 128 KiB values here, 8 windows of 1 MiB, with those its transport
// had taken beside them), and every such client held as much (checked:
// without the byte bound in feed, both transports fail the bound).
func TestAClientThatDoesNotReadHoldsAWindowOfBytes(t *testing.T) {
	const size = 128 << 10
	for _, transport := range []string{"websocket", "polling"} {
		t.Run(transport, func(t *testing.T) {
			var window int
			// The server's send buffers locked small: the kernel's own
			// take about 4 MB of writes before the feed waits.
			srv := testkit.StartServer(t, testkit.WithSendBuffer(64<<10), testkit.WithConfig(func(c *configs.Config) {
				window = smallMessages(c, 512<<10)
			}))
			door := srv.Server().SocketIO()
			var c *sio
			if transport == "websocket" {
				// The kernel's receive buffer, not a small one locked
				// (SO_RCVBUF): the client reads everything once the feed
				// waits, and Linux may drop for good what a locked buffer
				// advertised room for (see dialSmall in realtime's
				// tests). The kernel's buffers take a few MiB more
				// writes before the feed waits (the server's send buffer,
				// locked small above, less); the bound is on what the door
				// holds, not on them.
				c = dial(t, srv, sioOpts{websocket: true, noRead: true})
			} else {
				c = dial(t, srv, sioOpts{noPoll: true})
			}
			c.sendPacket("40")
			testkit.Eventually(t, func() bool { return door.Clients() == 1 }, "connected")
			start := srv.Backend().Revision()

			// Large values until its feed waits for room, the most it held
			// measured after each.
			packet := len(bigValue(size)) + 512 // a context_updated of one
			most, writes := 0, 0
			for ; door.Backlog().Held == 0; writes++ {
				require.Less(t, writes, 300, "the feed of a client that does not read waits for room")
				put(t, srv, "big/"+strconv.Itoa(writes), bigValue(size))
				most = max(most, door.Backlog().ChangeBytes)
			}
			for range 4 { // more, while it waits: they stay in the log
				put(t, srv, "big/"+strconv.Itoa(writes), bigValue(size))
				writes++
				most = max(most, door.Backlog().ChangeBytes)
			}
			t.Logf("%d writes of %d bytes; at most %d bytes of changes held for the client", writes, size, most)
			assert.LessOrEqual(t, most, window+packet, "bytes of changes held for a client that does not read")
			assert.Equal(t, 1, door.Backlog().Held, "its feed waits for room")

			// It reads: every change, in order, then one more; not cut.
			if transport == "websocket" {
				c.read()
			} else {
				c.pollInBackground(0)
			}
			require.True(t, strings.HasPrefix(c.next(), `0{"sid"`))
			c.waitEvent(ctxd.TypeContextSnapshot)
			last := put(t, srv, "after", `1`)
			for rev := start + 1; rev <= last; rev++ {
				u := c.waitEvent(ctxd.TypeContextUpdated)
				require.Equal(t, rev, uint64(u.Data["rev"].(float64)), "the changes in order, none missed")
			}
			assert.Zero(t, door.Lagged())
			testkit.Eventually(t, func() bool { return door.Backlog().ChangeBytes == 0 }, "every change written")
		})
	}
}

// A client held back by the bytes of its window falls behind as one
// whose window is full: past websocket.max_lag changes (here at once,
// lag_grace 0) it is cut with lagged and the from_rev it has every change
// up to, and a resume from there gets the rest. 30 changes of 128 KiB
// (a window of 1 MiB holds 8) with max_lag 10: without the byte bound the window of 64 took them all
// and the client was never behind (checked: the Eventually fails). On
// bolt, where each change is its own revision, the cut finishes no
// revision: what came before the error is the window's.
func TestAClientHeldByBytesIsCutLaggedAndResumes(t *testing.T) {
	const size, writes, maxLag = 128 << 10, 30, 10
	var window int
	srv := testkit.StartServer(t, testkit.WithConfig(func(c *configs.Config) {
		window = smallMessages(c, 512<<10)
		c.WebSocket.MaxLag = maxLag
		c.WebSocket.LagGrace = 0
	}))
	door := srv.Server().SocketIO()
	slow := dial(t, srv, sioOpts{noPoll: true})
	slow.sendPacket("40")
	testkit.Eventually(t, func() bool { return door.Clients() == 1 }, "connected")
	start := srv.Backend().Revision()
	for i := range writes {
		put(t, srv, "big/"+strconv.Itoa(i), bigValue(size))
	}
	testkit.Eventually(t, func() bool { return door.Lagged() == 1 }, "cut lagged, more than max_lag changes behind")
	// Its feed has ended: the session lingers with the error for the
	// client's next poll, and is no longer counted as held back by its
	// window (ctxd_ws_lagging_clients). It was, until the session was
	// dropped.
	testkit.Eventually(t, func() bool { b := door.Backlog(); return b.Packets > 0 && b.Held == 0 }, "lingering, not held")
	updates, from := slow.untilLagged()
	var got, want []uint64
	for _, u := range updates {
		got = append(got, uint64(u.Data["rev"].(float64)))
	}
	for rev := start + 1; rev <= from; rev++ {
		want = append(want, rev)
	}
	assert.Equal(t, want, got, "every change up to from_rev, none after")
	assert.Less(t, from, start+writes, "held back by bytes")
	held := 0 // before the change that reached the window
	for _, u := range updates[:len(updates)-1] {
		held += len(u.Raw)
	}
	assert.Less(t, held, window, "on bolt each change is a revision: the cut queues nothing past the window")

	resumed := dial(t, srv, sioOpts{websocket: true})
	require.Contains(t, resumed.connect(map[string]any{"from_rev": from}), `"sid"`)
	for rev := from + 1; rev <= start+writes; rev++ {
		u := resumed.waitEvent(ctxd.TypeContextUpdated)
		require.Equal(t, rev, uint64(u.Data["rev"].(float64)), "the rest after from_rev")
	}
}

// A burst of large values (a transaction of 48 values of 125 KB, a dozen
// windows of bytes of 512 KiB) does not cut clients that read: one at full speed
// over WebSocket, and one that polls with a pause after each answer (it
// keeps up, slowly), both get every change, in order, though the burst
// put them more than max_lag (20) changes behind, and are not cut: the
// byte bound holds changes back, it does not cut, and lag_grace lets
// them drain as it does a burst of small values.
func TestABurstOfLargeValuesPassesClientsThatRead(t *testing.T) {
	const size, burst = 125_000, 48
	srv := testkit.StartServer(t, testkit.WithConfig(func(c *configs.Config) {
		smallMessages(c, 256<<10)
		c.WebSocket.MaxLag = 20
		c.WebSocket.LagGrace = testkit.Deadline
		c.Limits.MaxTxnOps = burst
	}))
	door := srv.Server().SocketIO()
	fast := dial(t, srv, sioOpts{websocket: true})
	connected(t, fast, nil)
	slow := dial(t, srv, sioOpts{noPoll: true})
	slow.pollInBackground(10 * time.Millisecond) // reads slowly
	connected(t, slow, nil)
	testkit.Eventually(t, func() bool { return door.Clients() == 2 }, "connected")
	ops := make([]ctxd.Write, burst)
	for i := range ops {
		ops[i] = ctxd.Write{Namespace: "default", Key: "burst/" + strconv.Itoa(i), Op: ctxd.OpPut, Value: []byte(bigValue(size)), Who: "t"}
	}
	res, err := srv.Backend().Txn(t.Context(), ops)
	require.NoError(t, err)
	after := put(t, srv, "after", `1`)
	first := res.Revision - burst + 1
	for _, c := range []*sio{fast, slow} {
		for rev := first; rev <= after; rev++ {
			u := c.waitEvent(ctxd.TypeContextUpdated)
			require.Equal(t, rev, uint64(u.Data["rev"].(float64)))
		}
	}
	assert.Zero(t, door.Lagged())
}

// On etcd a transaction's changes share one revision, and one of large
// values may hold several windows of bytes: the feed stops inside it, at
// (revision, index). A client held there gets the rest of the revision,
// each change once and in order, once it reads. One cut there meanwhile
// (more than max_lag behind, lag_grace 0) gets the rest of the revision
// before the lagged error, past its window, and a from_rev at the
// revision's end, without from_index: a resume with that from_rev alone
// (as Framework0's clients, which know nothing of from_index) gets every
// later change exactly once. So does a client that resumed inside the
// revision with from_index and is cut there again. 24 changes of 64 KiB,
// 1.5 MiB, in one revision, with a window of 1 MiB. Before, both cuts named (revision, index) and a
// resume with from_rev alone lost the rest of the revision (checked: the
// cut cases fail with lagged's from_index, and without it lose changes).
func TestEtcdAWindowOfBytesEndsInsideARevision(t *testing.T) {
	const size, perTxn, after, maxLag, had = 64 << 10, 24, 40, 30, 3
	endpoint := etcdkit.Shared(t).Endpoint
	for _, tc := range []struct {
		name         string
		cut, resumed bool // cut lagged; connected with from_rev and from_index inside the revision
	}{{"read", false, false}, {"cut", true, false}, {"resumedAndCut", true, true}} {
		t.Run(tc.name, func(t *testing.T) {
			var window int
			srv := testkit.StartServer(t, testkit.WithEtcd(endpoint, etcdkit.Prefix(etcdkit.Name(t))), testkit.WithConfig(func(c *configs.Config) {
				window = smallMessages(c, 512<<10)
				if tc.cut {
					c.WebSocket.MaxLag = maxLag
					c.WebSocket.LagGrace = 0
				}
				c.WebSocket.PingInterval = 10 * time.Minute // cut for its lag, if at all
			}))
			door := srv.Server().SocketIO()
			slow := dial(t, srv, sioOpts{noPoll: true})
			writes := make([]ctxd.Write, perTxn)
			for i := range writes {
				writes[i] = ctxd.Write{Namespace: "default", Key: "t" + strconv.Itoa(i), Op: ctxd.OpPut, Value: json.RawMessage(bigValue(size)), Who: "t"}
			}
			txn := func() uint64 {
				res, err := srv.Backend().Txn(context.Background(), writes)
				require.NoError(t, err)
				return res.Revision
			}
			var rev uint64 // the transaction's
			first := 0     // the first change of it the client is sent
			if tc.resumed {
				rev, first = txn(), had
				b, err := json.Marshal(map[string]any{"from_rev": rev, "from_index": had})
				require.NoError(t, err)
				slow.sendPacket("40" + string(b))
				testkit.Eventually(t, func() bool { return door.Clients() == 1 }, "connected")
			} else {
				slow.sendPacket("40")
				testkit.Eventually(t, func() bool { return door.Clients() == 1 }, "connected")
				rev = txn()
			}
			var want []written
			for _, w := range writes[first:] {
				want = append(want, written{rev, w.Key})
			}
			testkit.Eventually(t, func() bool { return door.Backlog().Held == 1 }, "the feed waits inside the revision")
			b := door.Backlog()
			assert.LessOrEqual(t, b.ChangeBytes, window+size+512)
			assert.Less(t, b.Packets, 1+perTxn-first, "packets queued: the CONNECT's answer, the snapshot's, and part of the revision")
			for i := range after {
				key := "after" + strconv.Itoa(i)
				want = append(want, written{put(t, srv, key, `1`), key})
			}
			if !tc.cut {
				slow.pollInBackground(0)
				require.True(t, strings.HasPrefix(slow.next(), `0{"sid"`))
				slow.waitEvent(ctxd.TypeContextSnapshot)
				for i, w := range want {
					u := slow.waitEvent(ctxd.TypeContextUpdated)
					require.Equal(t, []any{float64(w.rev), w.key}, []any{u.Data["rev"], u.Data["key"]}, "change %d", i)
					if i < perTxn {
						assert.Equal(t, float64(i), u.Data["index"])
					}
				}
				assert.Zero(t, door.Lagged())
				return
			}
			testkit.Eventually(t, func() bool { return door.Lagged() == 1 }, "cut, more than max_lag behind")
			upTo, from := receivedUntilLagged(t, slow, want)
			require.Equal(t, rev, from, "cut at the end of the revision it was held inside")
			require.Equal(t, perTxn-first, upTo, "the rest of the revision, before the error")

			// From from_rev alone: every later change, once, and nothing else.
			resumed := dial(t, srv, sioOpts{websocket: true})
			require.Contains(t, resumed.connect(map[string]any{"from_rev": from}), `"sid"`)
			want = append(want, written{put(t, srv, "last", `1`), "last"})
			for i, w := range want[upTo:] {
				u := resumed.waitEvent(ctxd.TypeContextUpdated)
				require.Equal(t, []any{float64(w.rev), w.key}, []any{u.Data["rev"], u.Data["key"]}, "resumed change %d", i)
			}
		})
	}
}

// A polling client cut lagged while one of its polls waits for packets
// gets everything queued with the error over its next polls, though it
// is more than that poll's answer holds: here the rest of an etcd
// revision held back by its window (values of 125 KB, a window of 1 MiB:
// 9 of them), past the 16 packets a poll answers. The first poll's
// answer is not read until the cut (its 1.1 MB are four times what the
// kernel's buffers hold, about 280 KB: the server's send buffers are
// locked at 64 KiB, where the kernel's own would grow to take about
// 4 MB), so that its 9 changes hold the window while the second poll
// waits with nothing queued.
// Before, the session was dropped at the cut as if the waiting poll
// would take all of it: that poll got 16 packets and the next one 400
// (unknown session), the rest of the revision and the error lost
// (checked: 30 changes, untilLagged sees no error). With 24, the waiting
// poll's answer is 15 changes and the error: the noop that ends the
// session goes in the next one, not as a 17th packet (checked:
// payload's bound fails with it there).
func TestEtcdALaggedPollingClientGetsTheRestOverSeveralPolls(t *testing.T) {
	const size, maxLag = 125_000, 35
	endpoint := etcdkit.Shared(t).Endpoint
	for _, perTxn := range []int{30, 24} {
		t.Run(strconv.Itoa(perTxn), func(t *testing.T) {
			srv := testkit.StartServer(t, testkit.WithEtcd(endpoint, etcdkit.Prefix(etcdkit.Name(t))), testkit.WithSendBuffer(64<<10), testkit.WithConfig(func(c *configs.Config) {
				c.WebSocket.MaxLag = maxLag
				c.WebSocket.LagGrace = 0
				smallMessages(c, 512<<10) // a window of 1 MiB: one poll's answer holds it
				c.WebSocket.PingInterval = 10 * time.Minute
				c.Limits.MaxTxnOps = perTxn
				// Its transaction, of 30 MB once, took etcd more than
				// the default 5 s once, in make test beside other
				// packages (outcome unknown): what is tested is the door's.
				c.Etcd.RequestTimeout = time.Minute
			}))
			door := srv.Server().SocketIO()
			slow := dial(t, srv, sioOpts{noPoll: true})
			slow.sendPacket("40")
			testkit.Eventually(t, func() bool { return door.Clients() == 1 }, "connected")
			writes := make([]ctxd.Write, perTxn)
			for i := range writes {
				writes[i] = ctxd.Write{Namespace: "default", Key: "t" + strconv.Itoa(i), Op: ctxd.OpPut, Value: json.RawMessage(bigValue(size)), Who: "t"}
			}
			res, err := srv.Backend().Txn(context.Background(), writes)
			require.NoError(t, err)
			testkit.Eventually(t, func() bool { return door.Backlog().Held == 1 }, "the feed waits inside the revision")

			// The first poll takes every packet queued and is not read,
			// over a connection of its own (the second poll's is
			// slow.hc's). Its receive buffer is the kernel's: the body is
			// read after the cut (see the websocket case above).
			unread := &http.Client{Transport: &http.Transport{}}
			t.Cleanup(unread.CloseIdleConnections)
			first, err := unread.Get(slow.base + "EIO=4&transport=polling")
			require.NoError(t, err)
			defer first.Body.Close()
			testkit.Eventually(t, func() bool { b := door.Backlog(); return b.Packets == 0 && b.Held == 1 }, "the first poll took the queue")
			// The second waits for packets.
			second := make(chan string, 1)
			go func() {
				body := ""
				if resp, err := slow.hc.Get(slow.base + "EIO=4&transport=polling"); err == nil {
					b, _ := io.ReadAll(resp.Body)
					_ = resp.Body.Close()
					body = string(b)
				}
				second <- body
			}()
			testkit.Eventually(t, func() bool { return socketio.WaitingPolls(door) == 1 }, "the second poll waits")

			for i := range maxLag + 1 - perTxn { // then more than max_lag changes after its position
				put(t, srv, "after"+strconv.Itoa(i), `1`)
			}
			testkit.Eventually(t, func() bool { return door.Lagged() == 1 }, "cut lagged")
			b, err := io.ReadAll(first.Body)
			require.NoError(t, err)
			answered := <-second
			// Answered at the cut, the second poll got a full answer: the
			// rest of the revision was queued at once. Had the kernel's
			// buffers taken the first poll's answer, it would have been
			// answered before, with the few changes the window let in.
			require.Equal(t, 16, strings.Count(answered, "\x1e")+1, "packets in the second poll's answer, at the cut")
			for _, body := range []string{string(b), answered} {
				for _, p := range slow.payload(body) {
					slow.handle(p)
				}
			}
			updates, from := slow.untilLagged()
			require.Equal(t, res.Revision, from)
			require.Len(t, updates, perTxn, "the whole revision before the error")
			for i, u := range updates {
				require.Equal(t, []any{float64(res.Revision), writes[i].Key}, []any{u.Data["rev"], u.Data["key"]}, "change %d", i)
			}
		})
	}
}
