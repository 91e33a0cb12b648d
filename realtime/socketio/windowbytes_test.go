package socketio_test

import (
	"context"
	"encoding/json"
	"net"
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
)

// bigValue is a JSON string value of n bytes.
func bigValue(n int) string { return `"` + strings.Repeat("v", n-2) + `"` }

// windowBytes is the Socket.IO door's bound on the bytes of changes
// queued for one client on the default configuration: twice
// websocket.max_message_bytes.
const windowBytes = 2 * (2 << 20)

// A Socket.IO client that does not read, behind a namespace of large
// values, holds about twice websocket.max_message_bytes of changes (its
// window in bytes), not 64 of them: its feed waits, and the changes stay
// in the log. Once it reads, it gets every change, in order, and is not
// cut. Before, its feed queued 64 packets whatever their size (32 MiB of
// 512 KiB values, with those its transport had taken beside them), and
// every such client held as much (checked: without the byte bound in
// feed, both transports fail the bound).
func TestAClientThatDoesNotReadHoldsAWindowOfBytes(t *testing.T) {
	const size = 512 << 10
	for _, transport := range []string{"websocket", "polling"} {
		t.Run(transport, func(t *testing.T) {
			srv := testkit.StartServer(t)
			door := srv.Server().SocketIO()
			var c *sio
			if transport == "websocket" {
				c = dial(t, srv, sioOpts{websocket: true, noRead: true})
				// A small receive buffer, so that the kernel's buffers
				// take little of what the server writes before it waits.
				tc, ok := c.ws.NetConn().(*net.TCPConn)
				require.True(t, ok)
				require.NoError(t, tc.SetReadBuffer(16<<10))
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
			assert.LessOrEqual(t, most, windowBytes+packet, "bytes of changes held for a client that does not read")
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
// up to, and a resume from there gets the rest. 30 changes of 512 KiB
// with max_lag 10: without the byte bound the window of 64 took them all
// and the client was never behind (checked: the Eventually fails).
func TestAClientHeldByBytesIsCutLaggedAndResumes(t *testing.T) {
	const size, writes, maxLag = 512 << 10, 30, 10
	srv := testkit.StartServer(t, testkit.WithConfig(func(c *configs.Config) {
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

	resumed := dial(t, srv, sioOpts{websocket: true})
	require.Contains(t, resumed.connect(map[string]any{"from_rev": from}), `"sid"`)
	for rev := from + 1; rev <= start+writes; rev++ {
		u := resumed.waitEvent(ctxd.TypeContextUpdated)
		require.Equal(t, rev, uint64(u.Data["rev"].(float64)), "the rest after from_rev")
	}
}

// A burst of large values (a transaction of 48 values of 1 MB, a dozen
// windows of bytes) does not cut clients that read: one at full speed
// over WebSocket, and one that polls with a pause after each answer (it
// keeps up, slowly), both get every change, in order, though the burst
// put them more than max_lag (20) changes behind, and are not cut: the
// byte bound holds changes back, it does not cut, and lag_grace lets
// them drain as it does a burst of small values.
func TestABurstOfLargeValuesPassesClientsThatRead(t *testing.T) {
	const size, burst = 1_000_000, 48
	srv := testkit.StartServer(t, testkit.WithConfig(func(c *configs.Config) {
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
// each change once and in order, once it reads; one cut there meanwhile
// (more than max_lag behind, lag_grace 0) is told from_rev and
// from_index, and a resume from them gets exactly the rest. 24 changes
// of 256 KiB, 6 MiB, in one revision.
func TestEtcdAWindowOfBytesEndsInsideARevision(t *testing.T) {
	const size, perTxn, after, maxLag = 256 << 10, 24, 10, 30
	endpoint := etcdkit.Shared(t).Endpoint
	for _, cut := range []bool{false, true} {
		t.Run("cut="+strconv.FormatBool(cut), func(t *testing.T) {
			srv := testkit.StartServer(t, testkit.WithEtcd(endpoint, etcdkit.Prefix(etcdkit.Name(t))), testkit.WithConfig(func(c *configs.Config) {
				if cut {
					c.WebSocket.MaxLag = maxLag
					c.WebSocket.LagGrace = 0
				}
				c.WebSocket.PingInterval = 10 * time.Minute // cut for its lag, if at all
			}))
			door := srv.Server().SocketIO()
			slow := dial(t, srv, sioOpts{noPoll: true})
			slow.sendPacket("40")
			testkit.Eventually(t, func() bool { return door.Clients() == 1 }, "connected")
			writes := make([]ctxd.Write, perTxn)
			var want []written
			for i := range writes {
				writes[i] = ctxd.Write{Namespace: "default", Key: "t" + strconv.Itoa(i), Op: ctxd.OpPut, Value: json.RawMessage(bigValue(size)), Who: "t"}
			}
			res, err := srv.Backend().Txn(context.Background(), writes)
			require.NoError(t, err)
			for _, w := range writes {
				want = append(want, written{res.Revision, w.Key})
			}
			testkit.Eventually(t, func() bool { return door.Backlog().Held == 1 }, "the feed waits inside the revision")
			b := door.Backlog()
			assert.LessOrEqual(t, b.ChangeBytes, windowBytes+size+512)
			assert.Less(t, b.Packets, 1+perTxn, "packets queued: the snapshot's, and part of the revision")
			for i := range after {
				key := "after" + strconv.Itoa(i)
				want = append(want, written{put(t, srv, key, `1`), key})
			}
			if !cut {
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
			updates, from := slow.untilLagged()
			require.Equal(t, res.Revision, from, "cut inside the revision")
			index := len(updates)
			require.Positive(t, index)
			require.Less(t, index, perTxn)
			for i, u := range updates {
				require.Equal(t, []any{float64(res.Revision), want[i].key, float64(i)}, []any{u.Data["rev"], u.Data["key"], u.Data["index"]})
			}
			resumed := dial(t, srv, sioOpts{websocket: true})
			require.Contains(t, resumed.connect(map[string]any{"from_rev": from, "from_index": index}), `"sid"`)
			for i, w := range want[index:] {
				u := resumed.waitEvent(ctxd.TypeContextUpdated)
				require.Equal(t, []any{float64(w.rev), w.key}, []any{u.Data["rev"], u.Data["key"]}, "resumed change %d", i)
			}
		})
	}
}
