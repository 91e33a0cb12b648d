package main

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

	"github.com/framework0/ctxd/client"
	"github.com/framework0/ctxd/internal/testkit"
)

func TestMetrics(t *testing.T) {
	t.Parallel()
	srv := startServer(t, t.TempDir())
	cl, err := client.New(srv.URL)
	require.NoError(t, err)
	ctx := context.Background()
	for i := 0; i < 5; i++ {
		_, err := cl.Put(ctx, "default", "k", json.RawMessage(strconv.Itoa(i)), client.PutOptions{})
		require.NoError(t, err)
	}
	_, err = cl.Get(ctx, "default", "missing", client.GetOptions{})
	require.Error(t, err)
	_, err = cl.CreateSnapshot(ctx)
	require.NoError(t, err)

	// A method HTTP does not define is "other": a client could add
	// series without bound otherwise.
	for _, method := range []string{"FOO1", "BAR2"} {
		req, err := http.NewRequest(method, srv.URL+"/v1/status", nil)
		require.NoError(t, err)
		res, err := http.DefaultClient.Do(req)
		require.NoError(t, err)
		res.Body.Close()
	}

	// A request is counted after its answer is sent (httpapi's
	// sendWhole), and the last one came on a connection of its own.
	var m map[string]float64
	testkit.Eventually(t, func() bool {
		m = testkit.Scrape(t, srv.URL)
		return m[`ctxd_http_requests_total{code="405",method="other",route="/v1/status"}`] >= 2
	}, "both 405s counted")
	assert.Equal(t, 1.0, m["ctxd_store_up"])
	assert.Equal(t, 2.0, m[`ctxd_http_requests_total{code="405",method="other",route="/v1/status"}`])
	for name := range m {
		assert.NotContains(t, name, "FOO1", "a method no one defines is not a label value")
	}
	assert.Equal(t, 5.0, m[`ctxd_http_requests_total{code="200",method="PUT",route="/v1/ns/:ns/keys/*"}`])
	assert.Equal(t, 1.0, m[`ctxd_http_requests_total{code="404",method="GET",route="/v1/ns/:ns/keys/*"}`])
	assert.Equal(t, 5.0, m[`ctxd_http_request_duration_seconds_count{method="PUT",route="/v1/ns/:ns/keys/*"}`])
	assert.Equal(t, 5.0, m["ctxd_store_revision"])
	assert.Equal(t, 1.0, m["ctxd_store_keys"])
	assert.GreaterOrEqual(t, m["ctxd_store_commits_total"], 5.0)
	assert.Equal(t, m["ctxd_store_commits_total"], m["ctxd_store_writes_per_commit_count"])
	assert.Positive(t, m["ctxd_store_commit_duration_seconds_sum"])
	assert.Positive(t, m["ctxd_store_fsync_write_seconds_total"])
	assert.Positive(t, m["ctxd_store_page_writes_total"], "pages bbolt wrote (README, Metrics)")
	for _, name := range []string{"ctxd_store_applies_total", "ctxd_store_applied_changes_total", "ctxd_store_apply_seconds_total", "ctxd_store_pending_changes"} {
		assert.Contains(t, m, name, "the committer's metrics (README, Metrics)")
	}
	assert.Positive(t, m["ctxd_store_file_size_bytes"])
	assert.Equal(t, 1.0, m[`ctxd_snapshots_total{result="ok"}`])
	assert.Equal(t, 1.0, m["ctxd_snapshots_stored"])
	both := []string{"ctxd_ws_clients", "ctxd_ws_lagging_clients", "ctxd_ws_stalled_clients", "ctxd_ws_answer_bytes", "ctxd_ws_lagged_clients_total", "ctxd_ws_events_sent_total",
		"ctxd_ws_rate_limited_messages_total", "ctxd_ws_rate_limited_clients_total", "ctxd_ws_revoked_clients_total"}
	for _, name := range append([]string{"ctxd_ws_frames_dropped_total"}, both...) {
		assert.Contains(t, m, name+`{protocol="watch"}`)
		assert.NotContains(t, m, name, "the ctxd_ws_* series carry a protocol label")
	}
	for _, name := range append([]string{"ctxd_ws_change_bytes"}, both...) {
		assert.Contains(t, m, name+`{protocol="socketio"}`)
	}
	assert.NotContains(t, m, `ctxd_ws_frames_dropped_total{protocol="socketio"}`, "exists for watch only (README, Metrics)")
	assert.NotContains(t, m, `ctxd_ws_change_bytes{protocol="watch"}`, "exists for socketio only (README, Metrics)")
	assert.Contains(t, m, "ctxd_compactions_total")
	for name := range m {
		base := name
		if i := strings.IndexByte(name, '{'); i >= 0 {
			base = name[:i]
		}
		if strings.HasPrefix(base, "go_") || strings.HasPrefix(base, "process_") || strings.HasPrefix(base, "promhttp_") {
			continue
		}
		assert.True(t, strings.HasPrefix(base, "ctxd_"), "metric %s does not start with ctxd_", base)
	}
}

// A connected Socket.IO client (WebSocket transport) shows in
// ctxd_ws_clients{protocol="socketio"}, and what it is sent in
// ctxd_ws_events_sent_total{protocol="socketio"}; it is gone once it
// disconnects. /v1/watch's series stay apart.
func TestMetricsSocketIO(t *testing.T) {
	t.Parallel()
	srv := startServer(t, t.TempDir())
	m := testkit.Scrape(t, srv.URL)
	require.Equal(t, 0.0, m[`ctxd_ws_clients{protocol="socketio"}`])

	url := "ws" + strings.TrimPrefix(srv.URL, "http") + "/socket.io/?EIO=4&transport=websocket"
	ws, resp, err := websocket.DefaultDialer.Dial(url, nil)
	require.NoError(t, err)
	defer ws.Close()
	assert.NotEmpty(t, resp.Header.Get("X-Request-Id"), "the 101 carries the request's id, as every answer")
	read := func() string {
		t.Helper()
		require.NoError(t, ws.SetReadDeadline(time.Now().Add(10*time.Second)))
		_, p, err := ws.ReadMessage()
		require.NoError(t, err)
		return string(p)
	}
	require.True(t, strings.HasPrefix(read(), "0{"), "the Engine.IO open packet")
	require.NoError(t, ws.WriteMessage(websocket.TextMessage, []byte("40")))
	require.True(t, strings.HasPrefix(read(), "40{"), "the Socket.IO CONNECT answer")
	require.Contains(t, read(), "context_snapshot")

	// A packet is counted once written; the client may read it first.
	testkit.Eventually(t, func() bool {
		m = testkit.Scrape(t, srv.URL)
		return m[`ctxd_ws_events_sent_total{protocol="socketio"}`] >= 3
	}, "open, connect and context_snapshot counted as sent")
	assert.Equal(t, 1.0, m[`ctxd_ws_clients{protocol="socketio"}`])
	assert.Equal(t, 0.0, m[`ctxd_ws_lagged_clients_total{protocol="socketio"}`])
	assert.Equal(t, 0.0, m[`ctxd_ws_clients{protocol="watch"}`])

	require.NoError(t, ws.WriteMessage(websocket.TextMessage, []byte("41")))
	testkit.Eventually(t, func() bool {
		return testkit.Scrape(t, srv.URL)[`ctxd_ws_clients{protocol="socketio"}`] == 0
	}, "the client is no longer counted after it disconnects")
	testkit.Eventually(t, func() bool {
		return testkit.Scrape(t, srv.URL)[`ctxd_http_requests_total{code="101",method="GET",route="/socket.io/"}`] == 1
	}, "the upgraded request is counted (and logged) as 101, not 200")
}

// A Socket.IO client that does not read, behind large values, shows in
// ctxd_ws_lagging_clients{protocol="socketio"} once its feed waits for
// its window, and the changes held for it in ctxd_ws_change_bytes: at
// most twice websocket.max_message_bytes (4 MiB) and one change.
func TestMetricsSocketIOClientHeldBack(t *testing.T) {
	t.Parallel()
	srv := startServer(t, t.TempDir())
	cl, err := client.New(srv.URL)
	require.NoError(t, err)
	ws, resp, err := websocket.DefaultDialer.Dial("ws"+strings.TrimPrefix(srv.URL, "http")+"/socket.io/?EIO=4&transport=websocket", nil)
	require.NoError(t, err)
	defer ws.Close()
	_ = resp.Body.Close()
	require.NoError(t, ws.NetConn().(interface{ SetReadBuffer(int) error }).SetReadBuffer(16<<10))
	_, open, err := ws.ReadMessage()
	require.NoError(t, err)
	require.True(t, strings.HasPrefix(string(open), "0{"), "the Engine.IO open packet")
	require.NoError(t, ws.WriteMessage(websocket.TextMessage, []byte("40")))
	testkit.Eventually(t, func() bool { return testkit.Scrape(t, srv.URL)[`ctxd_ws_clients{protocol="socketio"}`] == 1 }, "connected")

	value := json.RawMessage(`"` + strings.Repeat("v", 512<<10) + `"`)
	var m map[string]float64
	for i := 0; ; i++ {
		require.Less(t, i, 300, "the client that does not read is held back")
		_, err := cl.Put(context.Background(), "default", "big"+strconv.Itoa(i), value, client.PutOptions{})
		require.NoError(t, err)
		if m = testkit.Scrape(t, srv.URL); m[`ctxd_ws_lagging_clients{protocol="socketio"}`] == 1 {
			break
		}
	}
	assert.Positive(t, m[`ctxd_ws_change_bytes{protocol="socketio"}`])
	assert.LessOrEqual(t, m[`ctxd_ws_change_bytes{protocol="socketio"}`], float64(4<<20+len(value)+512))
}
