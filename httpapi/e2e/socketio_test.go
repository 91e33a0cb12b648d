package e2e

import (
	"testing"

	"github.com/chromedp/chromedp"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// The socket.io JavaScript client v4 (Framework0's dashboard's), in the
// browser, with its default transports: it connects, upgrades to
// WebSocket, gets context_snapshot, sees a change made over REST, and
// writes with context_set.
func TestSocketIOJavaScriptClient(t *testing.T) {
	s := newServer(t, serverOptions{})
	s.put("default", "app.seed", `1`, "alice")
	p := openPage(t, s, "/e2e-fixtures/socketio.html", pageOptions{noWait: true})
	p.waitJS(`window.events.some(e => e.name === "context_snapshot" && e.data.context["app.seed"] === 1 && !!e.data.client_id)`, "context_snapshot")
	p.waitJS(`window.socket.connected && window.socket.io.engine.transport.name === "websocket"`, "the upgrade to websocket")

	s.put("default", "app.live", `"x"`, "bob")
	p.waitJS(`window.events.some(e => e.name === "context_updated" && e.data.key === "app.live" && e.data.value === "x" && e.data.who === "bob" && !!e.data.timestamp)`, "context_updated")

	p.do(chromedp.Evaluate[chromedp.Void](`void window.socket.emit("context_set", {key: "from.js", value: {n: 2}, who: "js"})`))
	p.waitJS(`window.events.some(e => e.name === "context_set_confirmed" && e.data.key === "from.js" && e.data.status === "success")`, "context_set_confirmed")
	rec, ok := s.get("default", "from.js")
	require.True(t, ok)
	assert.JSONEq(t, `{"n":2}`, string(rec.Value))
	assert.Equal(t, "js", rec.Who)
	assert.Zero(t, eval[int](p, `window.events.filter(e => e.name === "error").length`), "no error event")
	p.do(chromedp.Evaluate[chromedp.Void](`void window.socket.disconnect()`))
}
