package socketio_test

import (
	"context"
	"strconv"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/framework0/ctxd"
	"github.com/framework0/ctxd/configs"
	"github.com/framework0/ctxd/internal/testkit"
)

// A transaction of 20 times max_lag changes puts a Framework0 client more
// than max_lag behind at once. One that reads at full speed drains it
// within websocket.lag_grace and is not cut, which matters most here:
// Framework0's clients do not resume with from_rev, so a cut is a gap for
// them. It gets every change, in order, and then the next one. Without a
// grace (lag_grace 0, the control) the same burst cuts the same client:
// so the burst did put it past max_lag, and the grace is what kept it.
func TestBurstDoesNotCutAClientThatReads(t *testing.T) {
	const maxLag, burst = 100, 2000
	for _, grace := range []time.Duration{testkit.Deadline, 0} {
		t.Run("grace="+grace.String(), func(t *testing.T) {
			srv := testkit.StartServer(t, testkit.WithConfig(func(c *configs.Config) {
				c.WebSocket.MaxLag = maxLag
				c.WebSocket.LagGrace = grace
				c.Limits.MaxTxnOps = burst
			}))
			sio := srv.Server().SocketIO()
			c := dial(t, srv, sioOpts{websocket: true})
			connected(t, c, nil)
			ops := make([]ctxd.Write, burst)
			for i := range ops {
				ops[i] = ctxd.Write{Namespace: "default", Key: "burst/" + strconv.Itoa(i), Op: ctxd.OpPut, Value: []byte(strconv.Itoa(i)), Who: "t"}
			}
			res, err := srv.Backend().Txn(context.Background(), ops)
			require.NoError(t, err)
			first := res.Revision - burst + 1
			if grace == 0 {
				testkit.Eventually(t, func() bool { return sio.Lagged() == 1 }, "no grace: the burst cuts the client")
				return
			}
			for i := range burst {
				u := c.waitEvent(ctxd.TypeContextUpdated)
				require.Equal(t, first+uint64(i), uint64(u.Data["rev"].(float64)), "change %d of the burst", i)
			}
			after := put(t, srv, "after", `1`)
			assert.Equal(t, after, uint64(c.waitEvent(ctxd.TypeContextUpdated).Data["rev"].(float64)), "still connected after the burst")
			assert.Zero(t, sio.Lagged())
		})
	}
}
