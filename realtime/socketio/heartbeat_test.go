package socketio_test

import (
	"net/http"
	"strconv"
	"testing"
	"time"

	"github.com/gorilla/websocket"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/framework0/ctxd/configs"
	"github.com/framework0/ctxd/internal/testkit"
)

// The server pings every ping_interval: a client that answers stays, one
// that does not is dropped after pingTimeout (as long again), its session
// with it, as Engine.IO does. Before, the session was kept another
// pingTimeout for a poll that would not come, and held a shutdown for 2 s.
func TestPingTimeout(t *testing.T) {
	const interval = 100 * time.Millisecond
	srv := testkit.StartServer(t, testkit.WithConfig(func(c *configs.Config) { c.WebSocket.PingInterval = interval }))
	alive := dial(t, srv, sioOpts{})
	assert.Equal(t, float64(interval.Milliseconds()), alive.open["pingInterval"])
	assert.Equal(t, float64(interval.Milliseconds()), alive.open["pingTimeout"])
	connected(t, alive, nil)
	mute := dial(t, srv, sioOpts{noPoll: true}) // never polls: never answers a ping
	mute.sendPacket("40")                       // connected (its answer waits for a poll that never comes)

	testkit.Eventually(t, func() bool { return srv.Server().SocketIO().Clients() == 1 })
	assert.Equal(t, 1, srv.Server().SocketIO().Sessions(), "the mute client's session is gone with it")
	// The answering client has been pinged many times meanwhile, and is
	// still there: it answers ten more pings.
	alive.mu.Lock()
	polls := alive.polls
	alive.mu.Unlock()
	testkit.Eventually(t, func() bool {
		alive.mu.Lock()
		defer alive.mu.Unlock()
		return alive.polls >= polls+10
	})
	assert.Equal(t, 1, srv.Server().SocketIO().Clients())
	restPut(t, srv, "k", `1`)
	assert.Equal(t, "k", alive.waitEvent("context_updated").Data["key"])
}

// Browsers from origins not in websocket.allowed_origins are refused, on
// both transports; a wrong Engine.IO version or transport is a 400.
func TestHandshakeRefusals(t *testing.T) {
	srv := testkit.StartServer(t, testkit.WithConfig(func(c *configs.Config) {
		c.WebSocket.AllowedOrigins = []string{"https://dash.example"}
	}))
	get := func(query string, hdr ...string) int {
		resp, _ := testkit.Send(t, http.DefaultClient, testkit.NewRequest(t, http.MethodGet, srv.URL+"/socket.io/?"+query, "", hdr...))
		return resp.StatusCode
	}
	assert.Equal(t, http.StatusForbidden, get("EIO=4&transport=polling", "Origin", "https://evil.example"))
	assert.Equal(t, http.StatusOK, get("EIO=4&transport=polling", "Origin", "https://dash.example"))
	assert.Equal(t, http.StatusBadRequest, get("EIO=3&transport=polling"))
	assert.Equal(t, http.StatusBadRequest, get("EIO=4&transport=flash"))
	assert.Equal(t, http.StatusBadRequest, get("EIO=4&transport=polling&sid=nope"))
	_, resp, err := websocket.DefaultDialer.Dial("ws"+srv.URL[len("http"):]+"/socket.io/?EIO=4&transport=websocket",
		http.Header{"Origin": {"https://evil.example"}})
	require.Error(t, err)
	require.NotNil(t, resp)
	_ = resp.Body.Close()
	assert.Equal(t, http.StatusForbidden, resp.StatusCode, strconv.Itoa(resp.StatusCode))
	testkit.Eventually(t, func() bool { return srv.Server().SocketIO().Clients() == 0 })
}
