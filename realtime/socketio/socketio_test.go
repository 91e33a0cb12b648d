package socketio_test

import (
	"context"
	"encoding/json"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/gorilla/websocket"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/framework0/ctxd/configs"
	"github.com/framework0/ctxd/internal/testkit"
)

func put(t *testing.T, srv *testkit.Server, key, value string) uint64 {
	t.Helper()
	rec, err := srv.Backend().Put(context.Background(), "default", key, json.RawMessage(value), nil, "tester")
	require.NoError(t, err)
	return rec.ModRev
}

// restPut writes over the REST API, as a Framework0 user's other tools do.
func restPut(t *testing.T, srv *testkit.Server, key, value string) {
	t.Helper()
	req := testkit.NewRequest(t, http.MethodPut, srv.URL+"/v1/ns/default/keys/"+key+"?who=rest", value)
	resp, body := testkit.Send(t, http.DefaultClient, req)
	require.Equal(t, http.StatusOK, resp.StatusCode, string(body))
}

// connected checks the CONNECT answer and the context_snapshot after it.
func connected(t *testing.T, c *sio, auth any) event {
	t.Helper()
	ans := c.connect(auth)
	require.True(t, strings.HasPrefix(ans, `0{"sid":`), ans)
	snap := c.nextEvent()
	require.Equal(t, "context_snapshot", snap.Name, string(snap.Raw))
	for _, f := range []string{"context", "timestamp", "client_id"} {
		require.Contains(t, snap.Data, f)
	}
	return snap
}

func TestPollingSnapshotUpdateAndStats(t *testing.T) {
	srv := testkit.StartServer(t)
	put(t, srv, "a", `1`)
	put(t, srv, "b", `{"x":"y"}`)
	c := dial(t, srv, sioOpts{})
	assert.Equal(t, []any{"websocket"}, c.open["upgrades"])
	snap := connected(t, c, nil)
	assert.Equal(t, map[string]any{"a": 1.0, "b": map[string]any{"x": "y"}}, snap.Data["context"])
	stats := c.nextEvent()
	require.Equal(t, "client_stats", stats.Name)
	assert.Equal(t, 1.0, stats.Data["count"])

	restPut(t, srv, "c", `"hello"`)
	u := c.waitEvent("context_updated")
	for k, v := range map[string]any{"key": "c", "value": "hello", "who": "rest", "ns": "default", "op": "put", "version": 1.0} {
		assert.Equal(t, v, u.Data[k], k)
	}
	assert.Contains(t, u.Data, "timestamp")
	assert.Contains(t, u.Data, "rev")

	// /ctx/all and client_stats count both doors.
	ws, resp, err := websocketDial(srv)
	require.NoError(t, err)
	_ = resp.Body.Close()
	defer ws.Close()
	testkit.Eventually(t, func() bool { return srv.Hub().Clients() == 1 })
	_, body := testkit.Send(t, http.DefaultClient, testkit.NewRequest(t, http.MethodGet, srv.URL+"/ctx/all", ""))
	var all map[string]any
	require.NoError(t, json.Unmarshal(body, &all))
	assert.Equal(t, 2.0, all["connected_clients"])
	c.emit("client_stats", nil)
	assert.Equal(t, 2.0, c.waitEvent("client_stats").Data["count"])
}

func TestWebSocketContextSetAndRegister(t *testing.T) {
	srv := testkit.StartServer(t)
	writer := dial(t, srv, sioOpts{websocket: true})
	assert.Equal(t, []any{}, writer.open["upgrades"])
	connected(t, writer, nil)
	other := dial(t, srv, sioOpts{})
	connected(t, other, nil)

	writer.emit("client_register", map[string]any{"type": "agent", "name": "w1"})
	reg := writer.waitEvent("registration_confirmed")
	assert.Equal(t, "agent", reg.Data["type"])
	assert.Equal(t, "w1", reg.Data["name"])
	assert.Equal(t, "success", reg.Data["status"])
	assert.NotEmpty(t, reg.Data["client_id"])

	writer.emit("context_set", map[string]any{"key": "k", "value": map[string]any{"n": 1}, "who": "alice"})
	conf := writer.waitEvent("context_set_confirmed")
	assert.Equal(t, "k", conf.Data["key"])
	assert.Equal(t, map[string]any{"n": 1.0}, conf.Data["value"])
	assert.Equal(t, "success", conf.Data["status"])
	rec, err := srv.Backend().Get("default", "k")
	require.NoError(t, err)
	assert.JSONEq(t, `{"n":1}`, string(rec.Value))
	assert.Equal(t, "alice", rec.Who)

	u := other.waitEvent("context_updated")
	assert.Equal(t, "k", u.Data["key"])
	assert.Equal(t, "alice", u.Data["who"])

	// The sender does not get its own change as context_updated (as
	// Framework0): the next update it sees is the next write.
	restPut(t, srv, "after", `2`)
	assert.Equal(t, "after", writer.waitEvent("context_updated").Data["key"])

	// Without who, the registered name is the author.
	writer.emit("context_set", map[string]any{"key": "k2", "value": 3})
	writer.waitEvent("context_set_confirmed")
	rec, err = srv.Backend().Get("default", "k2")
	require.NoError(t, err)
	assert.Equal(t, "w1", rec.Who)

	// Bad messages get error {message, code}.
	writer.emit("context_set", map[string]any{"value": 1})
	e := writer.waitEvent("error")
	assert.Equal(t, "bad_request", e.Data["code"])
	assert.NotEmpty(t, e.Data["message"])
	writer.emit("nope", nil)
	assert.Equal(t, "unknown_type", writer.waitEvent("error").Data["code"])
}

func TestUpgradeFromPolling(t *testing.T) {
	srv := testkit.StartServer(t)
	c := dial(t, srv, sioOpts{})
	connected(t, c, nil)
	c.upgrade()
	<-c.pollDone // the pending poll ended with a noop
	restPut(t, srv, "k", `1`)
	assert.Equal(t, "k", c.waitEvent("context_updated").Data["key"])
	c.mu.Lock()
	viaWS := c.viaWS
	c.mu.Unlock()
	assert.Positive(t, viaWS, "the update came over the WebSocket")
	// Polling is over for this session.
	resp, err := http.Get(c.base + "EIO=4&transport=polling")
	require.NoError(t, err)
	_ = resp.Body.Close()
	assert.Equal(t, http.StatusBadRequest, resp.StatusCode)
}

func websocketDial(srv *testkit.Server) (*websocket.Conn, *http.Response, error) {
	return websocket.DefaultDialer.Dial(srv.WatchURL(nil), nil)
}

func TestOrderUnderConcurrentWriters(t *testing.T) {
	srv := testkit.StartServer(t)
	c := dial(t, srv, sioOpts{})
	connected(t, c, nil)
	const writers, each = 4, 50
	var wg sync.WaitGroup
	for w := range writers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range each {
				_, err := srv.Backend().Put(context.Background(), "default", "w"+strconv.Itoa(w)+"-"+strconv.Itoa(i), json.RawMessage(`1`), nil, "w")
				assert.NoError(t, err)
			}
		}()
	}
	wg.Wait()
	last := uint64(0)
	first := true
	for range writers * each {
		u := c.waitEvent("context_updated")
		rev := uint64(u.Data["rev"].(float64))
		if !first {
			require.Equal(t, last+1, rev, "every revision once, in order")
		}
		first, last = false, rev
	}
	assert.Equal(t, srv.Backend().Revision(), last)
}

func TestResumeFromRevAndLagged(t *testing.T) {
	const grace = 300 * time.Millisecond
	srv := testkit.StartServer(t, testkit.WithConfig(func(c *configs.Config) {
		c.WebSocket.MaxLag = 20
		c.WebSocket.LagGrace = grace
	}))
	start := put(t, srv, "x", `0`)
	// A polling client that stops polling falls behind and is cut once it
	// has been more than max_lag behind for lag_grace, though no change
	// comes after the 200 (negative control: without the feed's timer
	// for the grace, it is never cut and the Eventually fails).
	slow := dial(t, srv, sioOpts{noPoll: true})
	slow.sendPacket("40")
	wrote := time.Now()
	for range 200 {
		put(t, srv, "x", `1`)
	}
	testkit.Eventually(t, func() bool { return srv.Server().SocketIO().Lagged() == 1 })
	assert.GreaterOrEqual(t, time.Since(wrote), grace, "cut before its grace ran out")
	assert.Regexp(t, `"level":"warn".*Socket.IO client lagged: disconnected`, srv.Logs.String(),
		"a warning, as /v1/watch's: log.level warn must not hide it")
	updates, from := slow.untilLagged()
	var got []uint64
	for _, u := range updates {
		got = append(got, uint64(u.Data["rev"].(float64)))
	}
	// What it was sent before the cut runs from the change after start to
	// from, with no gap: from is where it must resume. It may be nothing
	// (from is then start): the hub may first reach the new client after
	// more than max_lag of the puts, on a busy machine.
	require.NotZero(t, from)
	var want []uint64
	for rev := start + 1; rev <= from; rev++ {
		want = append(want, rev)
	}
	assert.Equal(t, want, got)

	// Resuming with from_rev gets the rest, once each, and no snapshot.
	c := dial(t, srv, sioOpts{})
	ans := c.connect(map[string]any{"from_rev": from})
	require.True(t, strings.HasPrefix(ans, "0"), ans)
	next := from + 1
	for next <= srv.Backend().Revision() {
		u := c.waitEvent("context_updated")
		require.Equal(t, next, uint64(u.Data["rev"].(float64)))
		next++
	}

	// from_rev in the query works too.
	q := dial(t, srv, sioOpts{query: url.Values{"from_rev": {strconv.FormatUint(from, 10)}}})
	require.True(t, strings.HasPrefix(q.connect(nil), "0"))
	assert.Equal(t, from+1, uint64(q.waitEvent("context_updated").Data["rev"].(float64)))
}

func TestNamespaceOptionAndBadNamespace(t *testing.T) {
	srv := testkit.StartServer(t)
	_, err := srv.Backend().Put(context.Background(), "team", "p/1", json.RawMessage(`1`), nil, "t")
	require.NoError(t, err)
	_, err = srv.Backend().Put(context.Background(), "team", "q/1", json.RawMessage(`1`), nil, "t")
	require.NoError(t, err)
	c := dial(t, srv, sioOpts{})
	snap := connected(t, c, map[string]any{"ns": "team", "prefix": "p/"})
	assert.Equal(t, map[string]any{"p/1": 1.0}, snap.Data["context"])
	put(t, srv, "p/1", `9`) // another namespace: not seen
	_, err = srv.Backend().Put(context.Background(), "team", "q/2", json.RawMessage(`1`), nil, "t")
	require.NoError(t, err)
	_, err = srv.Backend().Put(context.Background(), "team", "p/2", json.RawMessage(`1`), nil, "t")
	require.NoError(t, err)
	u := c.waitEvent("context_updated")
	assert.Equal(t, "p/2", u.Data["key"])
	assert.Equal(t, "team", u.Data["ns"])

	bad := dial(t, srv, sioOpts{})
	assert.True(t, strings.HasPrefix(bad.connect(map[string]any{"ns": "no such/ns"}), "4"))
}

// An event sent with an ack id gets the answer's payload as the ack.
func TestAck(t *testing.T) {
	srv := testkit.StartServer(t)
	c := dial(t, srv, sioOpts{websocket: true})
	connected(t, c, nil)
	c.sendPacket(`4217["client_register",{"type":"t","name":"n"}]`)
	for {
		p := c.next()
		if !strings.HasPrefix(p, "317") {
			continue
		}
		var args []map[string]any
		require.NoError(t, json.Unmarshal([]byte(p[3:]), &args), p)
		require.Len(t, args, 1)
		assert.Equal(t, "success", args[0]["status"])
		assert.Equal(t, "n", args[0]["name"])
		break
	}
}

// With compat.namespace set, a client that names no namespace uses it, as
// /ctx does: Framework0's REST and Socket.IO clients share one context
// (they used "default" while /ctx wrote to compat.namespace). Its
// context_set lands there too; one that names ns still gets it.
func TestCompatNamespaceIsTheDefault(t *testing.T) {
	srv := testkit.StartServer(t, testkit.WithConfig(func(c *configs.Config) { c.Compat.Namespace = "fw0" }))
	_, err := srv.Backend().Put(context.Background(), "default", "other", json.RawMessage(`1`), nil, "t")
	require.NoError(t, err)
	req := testkit.NewRequest(t, http.MethodPost, srv.URL+"/ctx", `{"key":"k","value":"rest","who":"rest"}`, "Content-Type", "application/json")
	resp, body := testkit.Send(t, http.DefaultClient, req)
	require.Equal(t, http.StatusOK, resp.StatusCode, string(body))

	c := dial(t, srv, sioOpts{websocket: true})
	snap := connected(t, c, nil)
	assert.Equal(t, "fw0", snap.Data["ns"])
	assert.Equal(t, map[string]any{"k": "rest"}, snap.Data["context"], "/ctx's context, not default's")
	req = testkit.NewRequest(t, http.MethodPost, srv.URL+"/ctx", `{"key":"k2","value":2}`, "Content-Type", "application/json")
	resp, body = testkit.Send(t, http.DefaultClient, req)
	require.Equal(t, http.StatusOK, resp.StatusCode, string(body))
	u := c.waitEvent("context_updated")
	assert.Equal(t, "k2", u.Data["key"])
	assert.Equal(t, "fw0", u.Data["ns"])
	c.emit("context_set", map[string]any{"key": "from_sio", "value": 3})
	assert.Equal(t, "fw0", c.waitEvent("context_set_confirmed").Data["ns"])
	rec, err := srv.Backend().Get("fw0", "from_sio")
	require.NoError(t, err)
	assert.Equal(t, `3`, string(rec.Value))

	d := dial(t, srv, sioOpts{websocket: true})
	assert.Equal(t, "default", connected(t, d, map[string]any{"ns": "default"}).Data["ns"])
}
