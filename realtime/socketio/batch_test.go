package socketio_test

import (
	"context"
	"encoding/json"
	"strconv"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/framework0/ctxd"
	"github.com/framework0/ctxd/internal/testkit"
	"github.com/framework0/ctxd/realtime/socketio"
)

// The packets waiting for a WebSocket client leave in one write system
// call, each still its own frame (Engine.IO: one packet per message):
// a transaction of 50 puts reaches a connected client as 50
// context_updated events, in order, in a few writes instead of 50.
// Negative control: without the writer's hold (batchConn), 50 writes.
func TestWebSocketPacketsLeaveTogether(t *testing.T) {
	srv := testkit.StartServer(t)
	sio := srv.Server().SocketIO()
	c := dial(t, srv, sioOpts{websocket: true})
	connected(t, c, nil)
	const n = 50
	writes := make([]ctxd.Write, n)
	for i := range writes {
		writes[i] = ctxd.Write{Namespace: "default", Key: "k" + strconv.Itoa(i), Op: ctxd.OpPut, Value: json.RawMessage(`1`), Who: "t"}
	}
	before := socketio.SocketWrites(sio)
	res, err := srv.Backend().Txn(context.Background(), writes)
	require.NoError(t, err)
	for i := range n {
		u := c.waitEvent(ctxd.TypeContextUpdated)
		require.Equal(t, []any{"k" + strconv.Itoa(i), float64(res.Records[i].ModRev)}, []any{u.Data["key"], u.Data["rev"]}, "event %d", i)
	}
	writesMade := socketio.SocketWrites(sio) - before
	t.Logf("%d events in %d writes", n, writesMade)
	assert.LessOrEqual(t, writesMade, uint64(5), "the events of one commit leave together")
}
