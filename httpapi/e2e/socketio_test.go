package e2e

import (
	"context"
	"encoding/json"
	"net/url"
	"testing"

	"github.com/chromedp/chromedp"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/framework0/ctxd/auth"
	"github.com/framework0/ctxd/internal/testkit"
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

// TestSocketIOJavaScriptRevokedToken: the JavaScript client, with its
// default options (reconnection on), connected to namespace x with a
// token (read, x, prefix a/) given in its auth payload, which a reload of
// the tokens file (SIGHUP) revokes. changed: the token is given namespace
// y and prefix b/ besides a/; the client must come back by itself, get a
// new context_snapshot with b/ in it, and the next change under b/
// (were the Socket.IO DISCONNECT sent, it would not come back). removed,
// and cut (the token no longer allowed namespace x): the client must see
// the error event, then end for good by the server's DISCONNECT (reason
// "io server disconnect", the socket no longer active: no reconnection
// pending); a mere transport close ("transport close") it would answer
// with a reconnection. On polling, the Engine.IO close packet in the same
// answer as the DISCONNECT failed this: the client disconnected with
// "transport close" first and never emitted the error event.
func TestSocketIOJavaScriptRevokedToken(t *testing.T) {
	entry := testkit.ReaderEntry
	for _, change := range []string{"changed", "removed", "cut"} {
		for _, transports := range []string{"default", "websocket", "polling"} {
			t.Run(change+"/"+transports, func(t *testing.T) {
				secret := auth.NewSecret()
				s, tokens := newTokensServer(t, entry("f0", secret, "x", "a/"))
				put := func(key string) { // the API wants a token: straight to the store
					t.Helper()
					_, err := s.ks.Backend().Put(context.Background(), "x", key, json.RawMessage(`1`), nil, "t")
					require.NoError(t, err)
				}
				put("a/seed")
				put("b/seed")
				path := "/e2e-fixtures/socketio.html"
				if transports != "default" {
					path += "?transports=" + transports
				}
				path += "#" + url.Values{"token": {secret}, "ns": {"x"}}.Encode()
				// Timers ten times faster: the client's reconnection
				// delay (1 s, randomized) is 0.1 s.
				p := openPage(t, s, path, pageOptions{noWait: true, fastTimers: 10})
				p.waitJS(`window.events.some(e => e.name === "context_snapshot")`, "context_snapshot")
				assert.Equal(t, "a/seed", eval[string](p, snapshotKeys), "the snapshot: what the token may read")
				want := map[string]string{"default": "websocket", "websocket": "websocket", "polling": "polling"}[transports]
				p.waitJS(`window.socket.connected && window.socket.io.engine.transport.name === `+jsString(want), "the "+want+" transport")

				next := map[string]string{
					"changed": entry("f0", secret, "x, y", "a/, b/"),
					"removed": entry("ops", auth.NewSecret(), "x", "a/"),
					"cut":     entry("f0", secret, "y", "a/"),
				}[change]
				writeTokens(t, tokens, next)
				require.Equal(t, 1, s.reloadTokens())

				p.waitJS(`window.events.some(e => e.name === "disconnect")`, "the disconnection")
				assert.Equal(t, "token_revoked", eval[string](p,
					`window.events.slice(0, window.events.findIndex(e => e.name === "disconnect")).findLast(e => e.name === "error")?.data.code ?? ""`),
					"an error event before the disconnection")
				reason := eval[string](p, `window.events.find(e => e.name === "disconnect").data.reason`)
				if change == "changed" {
					assert.NotEqual(t, "io server disconnect", reason, "no Socket.IO DISCONNECT: the client may come back")
					p.waitJS(`window.socket.connected && window.events.findLast(e => e.name === "context_snapshot") !== window.events.find(e => e.name === "context_snapshot")`,
						"a reconnection by itself, and its context_snapshot")
					assert.Equal(t, "a/seed,b/seed", eval[string](p, snapshotKeys), "the new snapshot: the new rights")
					put("b/after")
					p.waitJS(`window.events.some(e => e.name === "context_updated" && e.data.key === "b/after")`, "the change under b/")
					assert.Equal(t, 2, eval[int](p, `window.events.filter(e => e.name === "connect").length`), "connected twice")
					assert.Zero(t, eval[int](p, `window.events.filter(e => e.name === "connect_error").length`), "no refused CONNECT")
					p.do(chromedp.Evaluate[chromedp.Void](`void window.socket.disconnect()`))
				} else {
					assert.Equal(t, "io server disconnect", reason, "the server's DISCONNECT: the client must not come back")
					assert.True(t, eval[bool](p, `window.socket.connected === false && window.socket.active === false`),
						"the socket is neither connected nor active (no reconnection pending)")
					assert.Zero(t, eval[int](p, `window.events.filter(e => e.name === "reconnect_attempt" || e.name === "connect_error").length`),
						"no reconnection attempt")
				}
				testkit.Eventually(t, func() bool { return s.ks.Server().SocketIO().Clients() == 0 }, "the server's clients gone")
				assert.Equal(t, uint64(1), s.ks.Server().SocketIO().Revoked(), "one session revoked: none came back to be revoked again")
			})
		}
	}
}

// snapshotKeys is the keys of the page's last context_snapshot, sorted
// and comma-separated.
const snapshotKeys = `Object.keys(window.events.findLast(e => e.name === "context_snapshot").data.context).sort().join(",")`
