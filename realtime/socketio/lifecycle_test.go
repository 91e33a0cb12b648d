package socketio_test

import (
	"context"
	"encoding/json"
	"net/http"
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
)

// An online restore: every client gets "reset" and then a context_snapshot
// of the restored data, and follows the log from there.
func TestResetOnRestore(t *testing.T) {
	srv := testkit.StartServer(t)
	put(t, srv, "a", `"before"`)
	meta, err := srv.Server().Snapshots().Create(context.Background(), "test")
	require.NoError(t, err)
	put(t, srv, "a", `"after"`)
	put(t, srv, "b", `1`)
	c := dial(t, srv, sioOpts{})
	snap := connected(t, c, nil)
	assert.Equal(t, map[string]any{"a": "after", "b": 1.0}, snap.Data["context"])

	_, err = srv.Server().Snapshots().Restore(context.Background(), meta.ID, ctxd.RestoreOptions{})
	require.NoError(t, err)
	reset := c.waitEvent("reset")
	assert.Contains(t, reset.Data, "rev")
	snap = c.waitEvent("context_snapshot")
	assert.Equal(t, map[string]any{"a": "before"}, snap.Data["context"])
	restPut(t, srv, "c", `2`)
	u := c.waitEvent("context_updated")
	assert.Equal(t, "c", u.Data["key"])
	assert.Greater(t, u.Data["rev"].(float64), snap.Data["rev"].(float64))
}

// A restore whose state is over websocket.max_snapshot_bytes is still
// told: reset, then an error of code too_large (no context_snapshot can
// follow), then the session ends. Before, the client got the error alone
// and could take what it held for current.
func TestRestoreTooLargeForASnapshotStillResets(t *testing.T) {
	srv := testkit.StartServer(t, testkit.WithConfig(func(c *configs.Config) { c.WebSocket.MaxSnapshotBytes = 4 << 10 }))
	big := `"` + strings.Repeat("v", 1<<10) + `"`
	for i := range 10 {
		put(t, srv, "big/"+strconv.Itoa(i), big)
	}
	meta, err := srv.Server().Snapshots().Create(context.Background(), "test")
	require.NoError(t, err)
	for i := range 10 {
		_, err := srv.Backend().Delete(context.Background(), "default", "big/"+strconv.Itoa(i), nil, "t")
		require.NoError(t, err)
	}
	polling := dial(t, srv, sioOpts{})
	connected(t, polling, nil)
	ws := dial(t, srv, sioOpts{websocket: true})
	connected(t, ws, nil)

	_, err = srv.Server().Snapshots().Restore(context.Background(), meta.ID, ctxd.RestoreOptions{})
	require.NoError(t, err)
	for _, c := range []*sio{polling, ws} {
		reset := c.waitEvent(ctxd.TypeReset)
		assert.Contains(t, reset.Data, "rev")
		e := c.waitEvent(ctxd.TypeError)
		assert.Equal(t, ctxd.CodeTooLarge, e.Data["code"], "%s", e.Raw)
	}
	testkit.Eventually(t, func() bool { return srv.Server().SocketIO().Clients() == 0 })
}

// A dump file written through the API is announced with context_dumped.
func TestContextDumped(t *testing.T) {
	srv := testkit.StartServer(t)
	put(t, srv, "a", `1`)
	c := dial(t, srv, sioOpts{websocket: true})
	connected(t, c, nil)
	resp, body := testkit.Send(t, http.DefaultClient, testkit.NewRequest(t, http.MethodPost, srv.URL+"/ctx/dump",
		`{"format":"json","filename":"d.json","who":"cron"}`, "Content-Type", "application/json"))
	require.Equal(t, http.StatusOK, resp.StatusCode, string(body))
	d := c.waitEvent("context_dumped")
	assert.Equal(t, "d.json", d.Data["filename"])
	assert.Equal(t, "json", d.Data["format"])
}

// Shutdown ends every client's transport, without a Socket.IO DISCONNECT
// or an Engine.IO close packet (either tells python-socketio not to
// reconnect: TestPythonReconnects), and leaves no goroutine behind
// (TestMain checks).
func TestShutdownDisconnectsClients(t *testing.T) {
	srv := testkit.StartServer(t)
	polling := dial(t, srv, sioOpts{})
	connected(t, polling, nil)
	ws := dial(t, srv, sioOpts{websocket: true})
	connected(t, ws, nil)
	upgraded := dial(t, srv, sioOpts{})
	connected(t, upgraded, nil)
	upgraded.upgrade()
	<-upgraded.pollDone
	upgraded.emit("client_stats", nil) // answered over the WebSocket: the upgrade is done
	testkit.Eventually(t, func() bool {
		upgraded.mu.Lock()
		defer upgraded.mu.Unlock()
		return upgraded.viaWS > 0
	})
	testkit.Eventually(t, func() bool { return srv.Server().SocketIO().Clients() == 3 })

	srv.Stop()
	for _, c := range []*sio{polling, ws, upgraded} {
		c.noDisconnect() // waits for the transport's end
	}
	<-polling.pollDone
	for _, c := range []*sio{ws, upgraded} {
		assert.Equal(t, websocket.CloseGoingAway, c.closeError().Code)
	}
}

// At shutdown /v1/watch and Socket.IO close their clients at once. A
// /v1/watch client that does not read holds the hub's Close for its 2 s
// (its close frame waits behind changes its socket cannot take), and
// meanwhile the Socket.IO clients are closed: then the stuck client reads
// and still gets its close frame. One door after the other, stuck clients
// of both held a stop for 4 s; here the Socket.IO client was closed only
// after the /v1/watch client was cut, without its close frame.
func TestShutdownClosesBothFeedsAtOnce(t *testing.T) {
	srv := testkit.StartServer(t, testkit.WithSendBuffer(64<<10))
	sc := dial(t, srv, sioOpts{websocket: true})
	connected(t, sc, nil)
	watch := testkit.DialWatch(t, srv.WatchURL(nil), nil)
	watch.Expect(ctxd.TypeSubscribed)
	value := `"` + strings.Repeat("v", 32<<10) + `"`
	for i := range 40 { // ~1.3 MB: more than the sockets' buffers hold
		put(t, srv, "k"+strconv.Itoa(i), value)
	}
	for range 40 {
		sc.waitEvent(ctxd.TypeContextUpdated)
	}

	stopped := make(chan struct{})
	go func() { defer close(stopped); srv.Stop() }()
	sc.wg.Wait() // its WebSocket's reads ended
	assert.Equal(t, websocket.CloseGoingAway, sc.closeError().Code)
	require.NoError(t, watch.Conn.SetReadDeadline(time.Now().Add(testkit.Deadline)))
	var err error
	for err == nil {
		_, _, err = watch.Conn.ReadMessage()
	}
	var ce *websocket.CloseError
	require.ErrorAs(t, err, &ce)
	assert.Equal(t, websocket.CloseGoingAway, ce.Code, "the /v1/watch client's close frame, not a cut")
	<-stopped
}

// A from_rev below the compacted revision at connect: an error event of
// code compacted, then a Socket.IO DISCONNECT (do not come back): a client
// that reconnected by itself with the same from_rev would be cut again and
// again. (Cut later, as lagged into compaction, it is let back: the
// transport ends without one, TestPythonReconnects.)
func TestResumeCompacted(t *testing.T) {
	srv := testkit.StartServer(t)
	for range 5 {
		put(t, srv, "a", `1`)
	}
	rev := put(t, srv, "b", `1`)
	_, err := srv.Backend().CompactKeep(context.Background(), rev, 1)
	require.NoError(t, err)
	c := dial(t, srv, sioOpts{})
	ans := c.connect(map[string]any{"from_rev": 1})
	require.Equal(t, "0", ans[:1], ans)
	e := c.waitEvent("error")
	assert.Equal(t, "compacted", e.Data["code"])
	assert.Equal(t, 1.0, e.Data["from_rev"])
	assert.Equal(t, "1", c.next(), "then a Socket.IO disconnect")
	testkit.Eventually(t, func() bool { return srv.Server().SocketIO().Clients() == 0 })
}

// A key that expires reaches Socket.IO clients as a context_updated of a
// delete by ctxd:ttl marked expired, with its own revision, like every
// other feed; the put before it carried the deadline.
func TestExpiryReachesSocketIOClients(t *testing.T) {
	srv := testkit.StartServer(t)
	c := dial(t, srv, sioOpts{websocket: true})
	connected(t, c, nil)
	res, err := srv.Backend().Txn(context.Background(), []ctxd.Write{{Namespace: "default", Key: "lock", Op: ctxd.OpPut,
		Value: json.RawMessage(`"held"`), Who: "t", TTL: time.Second}})
	require.NoError(t, err)
	u := c.waitEvent("context_updated")
	assert.Equal(t, "lock", u.Data["key"])
	assert.Contains(t, u.Data, "expires_at", "the put carries its deadline")

	exp := c.waitEvent("context_updated") // the deadline passes: about a second
	assert.Equal(t, "lock", exp.Data["key"])
	assert.Equal(t, "delete", exp.Data["op"])
	assert.Equal(t, ctxd.WhoTTL, exp.Data["who"])
	assert.Equal(t, true, exp.Data["expired"])
	assert.Greater(t, exp.Data["rev"].(float64), float64(res.Revision))
}

// A client that connects with a from_rev past every revision of the
// database (it was replaced by an older backup, or lost, or the client
// followed another deployment) gets reset and the state (a
// context_snapshot), then every change; one whose from_rev the database
// has gets the replay and no snapshot, as ever. Before, the first waited
// in silence until the revisions passed its from_rev.
func TestConnectFromARevisionTheDatabaseNeverHad(t *testing.T) {
	srv := testkit.StartServer(t)
	ctx := context.Background()
	rec, err := srv.Backend().Put(ctx, "default", "k", json.RawMessage(`1`), nil, "t")
	require.NoError(t, err)

	ahead := dial(t, srv, sioOpts{websocket: true})
	require.Contains(t, ahead.connect(map[string]any{"from_rev": 99}), `"sid"`)
	reset := ahead.waitEvent(ctxd.TypeReset)
	assert.Equal(t, float64(rec.ModRev), reset.Data["rev"])
	assert.Contains(t, reset.Data["message"], "from_rev 99 is past this database's last revision (1)")
	snap := ahead.waitEvent(ctxd.TypeContextSnapshot)
	assert.Equal(t, map[string]any{"k": float64(1)}, snap.Data["context"])

	current := dial(t, srv, sioOpts{websocket: true})
	require.Contains(t, current.connect(map[string]any{"from_rev": rec.ModRev}), `"sid"`)
	next, err := srv.Backend().Put(ctx, "default", "next", json.RawMessage(`2`), nil, "t")
	require.NoError(t, err)
	for _, c := range []*sio{ahead, current} {
		e := c.waitEvent(ctxd.TypeContextUpdated) // for current: no reset or snapshot first
		assert.Equal(t, []any{float64(next.ModRev), "next"}, []any{e.Data["rev"], e.Data["key"]})
	}

	// One that claims part of the next revision (from_index) is reset
	// too, and its own write into that revision is confirmed.
	c := dial(t, srv, sioOpts{websocket: true})
	require.Contains(t, c.connect(map[string]any{"from_rev": next.ModRev + 1, "from_index": 1}), `"sid"`)
	c.waitEvent(ctxd.TypeReset)
	c.waitEvent(ctxd.TypeContextSnapshot)
	c.emit("context_set", map[string]any{"key": "own", "value": 1})
	conf := c.waitEvent("context_set_confirmed")
	assert.Equal(t, []any{"own", float64(next.ModRev + 1)}, []any{conf.Data["key"], conf.Data["rev"]})
}
