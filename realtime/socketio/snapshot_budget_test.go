package socketio_test

import (
	"encoding/json"
	"net/url"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/gorilla/websocket"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/framework0/ctxd"
	"github.com/framework0/ctxd/configs"
	"github.com/framework0/ctxd/internal/testkit"
	"github.com/framework0/ctxd/realtime/socketio"
)

// Both feeds share websocket.snapshot_memory_bytes: a snapshot not yet
// written to its client holds its bytes, and a snapshot that does not fit
// waits for room. Here the budget holds one snapshot: a Socket.IO client
// that does not poll keeps its context_snapshot queued, and a /v1/watch
// client asking for a snapshot waits until that one is written.
func TestSnapshotsShareOneMemoryBudget(t *testing.T) {
	srv := testkit.StartServer(t, testkit.WithConfig(func(c *configs.Config) {
		c.WebSocket.MaxSnapshotBytes = 1 << 20
		c.WebSocket.SnapshotMemoryBytes = 1 << 20
		c.WebSocket.WriteTimeout = 5 * time.Minute // the idle client holds its snapshot until it polls
	}))
	restPut(t, srv, "quote", `"<a & b>"`)
	restPut(t, srv, `k"\é`, `{"n":[1,2]}`)
	held := func() float64 { return testkit.Scrape(t, srv.URL)["ctxd_ws_snapshot_bytes"] }
	waiting := func() float64 { return testkit.Scrape(t, srv.URL)["ctxd_ws_snapshots_waiting"] }

	// A polling client that sends CONNECT and does not poll: its
	// snapshot is built and queued, not written.
	idle := dial(t, srv, sioOpts{noPoll: true})
	idle.sendPacket("40")
	testkit.Eventually(t, func() bool { return held() > 0 }, "the queued snapshot holds its bytes")

	type dialed struct {
		ws  *websocket.Conn
		err error
	}
	watched := make(chan dialed, 1)
	go func() {
		ws, res, err := testkit.DialWatchErr(srv.WatchURL(url.Values{"snapshot": {"true"}}), nil)
		if res != nil {
			_ = res.Body.Close()
		}
		watched <- dialed{ws, err}
	}()
	testkit.Eventually(t, func() bool { return waiting() == 1 }, "the /v1/watch snapshot waits for room")
	select {
	case <-watched:
		t.Fatal("a snapshot was built past the budget")
	default:
	}

	// The idle client polls: its snapshot is written, and the waiting
	// one goes ahead.
	require.True(t, idle.pollOnce())
	require.True(t, strings.HasPrefix(idle.next(), "0"), "the CONNECT's answer")
	var snap struct {
		Context map[string]json.RawMessage `json:"context"`
		NS      string                     `json:"ns"`
		Rev     uint64                     `json:"rev"`
	}
	require.NoError(t, json.Unmarshal(idle.waitEvent("context_snapshot").Raw, &snap))
	assert.Equal(t, map[string]json.RawMessage{"quote": json.RawMessage(`"<a & b>"`), `k"\é`: json.RawMessage(`{"n":[1,2]}`)}, snap.Context,
		"the snapshot event, written by hand, decodes as the keys and values stored")
	assert.Equal(t, "default", snap.NS)
	assert.NotZero(t, snap.Rev)

	d := <-watched
	require.NoError(t, d.err)
	defer d.ws.Close()
	for {
		var f struct {
			Type string            `json:"type"`
			Keys []json.RawMessage `json:"keys"`
		}
		require.NoError(t, d.ws.ReadJSON(&f))
		if f.Type == "context_snapshot" {
			assert.Len(t, f.Keys, 2)
			break
		}
	}
	testkit.Eventually(t, func() bool { return held() == 0 && waiting() == 0 }, "every snapshot written gave its bytes back")
	assert.Equal(t, 1.0, testkit.Scrape(t, srv.URL)["ctxd_ws_snapshot_waits_total"])
}

// A client that does not read its snapshot holds the budget no longer
// than websocket.write_timeout: then others may go, though its connection
// (and its memory) may last until the server closes it.
func TestAClientThatDoesNotReadHoldsTheBudgetAtMostTheWriteTimeout(t *testing.T) {
	srv := testkit.StartServer(t, testkit.WithConfig(func(c *configs.Config) {
		c.WebSocket.SnapshotMemoryBytes = 1 << 20
		c.WebSocket.WriteTimeout = 300 * time.Millisecond
		c.WebSocket.PingInterval = 5 * time.Minute // no heartbeat ends the idle session meanwhile
	}))
	restPut(t, srv, "k", `1`)
	idle := dial(t, srv, sioOpts{noPoll: true})
	idle.sendPacket("40")
	testkit.Eventually(t, func() bool {
		return testkit.Scrape(t, srv.URL)["ctxd_ws_snapshot_bytes"] == 0 && testkit.Scrape(t, srv.URL)["ctxd_ws_clients{protocol=\"socketio\"}"] == 1
	}, "the unread snapshot gave its bytes back after the write timeout, the client still connected")
	// It polls at last, and gets its snapshot all the same. (Left
	// queued, the packets held the server's Close for closeWait, 2 s.)
	require.True(t, idle.pollOnce())
	require.True(t, strings.HasPrefix(idle.next(), "0"), "the CONNECT's answer")
	idle.waitEvent("context_snapshot")
}

// A polling client behind by many changes gets its snapshot in its first
// poll, whose writer gives the snapshot's bytes back although the queue
// stays full of changes. Before, a grant went back only with a poll that
// emptied the queue: under a steady load, never.
func TestAPolledSnapshotGivesItsBytesBackWithABacklog(t *testing.T) {
	srv := testkit.StartServer(t, testkit.WithConfig(func(c *configs.Config) {
		c.WebSocket.SnapshotMemoryBytes = 1 << 20
		c.WebSocket.WriteTimeout = 5 * time.Minute // no release by the clock here
		c.WebSocket.PingInterval = 5 * time.Minute // nor by the heartbeat ending the session
	}))
	restPut(t, srv, "a", `1`)
	held := func() float64 { return testkit.Scrape(t, srv.URL)["ctxd_ws_snapshot_bytes"] }
	c := dial(t, srv, sioOpts{noPoll: true})
	c.sendPacket("40")
	testkit.Eventually(t, func() bool { return held() > 0 }, "the queued snapshot holds its bytes")
	var writes []ctxd.Write
	for i := range 2000 {
		writes = append(writes, ctxd.Write{Namespace: "default", Key: "k" + strconv.Itoa(i), Op: ctxd.OpPut, Value: []byte(`1`), Who: "t"})
		if len(writes) == 50 {
			_, err := srv.Backend().Txn(t.Context(), writes)
			require.NoError(t, err)
			writes = nil
		}
	}
	testkit.Eventually(t, func() bool { return socketio.FullWindows(srv.Server().SocketIO()) == 1 }, "the feed filled the client's window")
	require.True(t, c.pollOnce())
	require.True(t, strings.HasPrefix(c.next(), "0"))
	c.waitEvent("context_snapshot")
	// One poll takes 16 packets: the changes fill the window again.
	testkit.Eventually(t, func() bool { return held() == 0 }, "the written snapshot gave its bytes back")
	// Then it takes every change, in order. (Left queued, they held the
	// server's Close for closeWait, 2 s, for a poll that never came.)
	c.pollInBackground(0)
	for i := range 2000 {
		require.Equal(t, "k"+strconv.Itoa(i), c.waitEvent(ctxd.TypeContextUpdated).Data["key"], "change %d", i)
	}
}
