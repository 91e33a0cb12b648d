package realtime_test

import (
	"context"
	"net/url"
	"testing"
	"time"

	"github.com/gorilla/websocket"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/framework0/ctxd/internal/snapbudget"
	"github.com/framework0/ctxd/internal/testkit"
	"github.com/framework0/ctxd/realtime"
)

// A snapshot waits for room in the hub's snapshot budget: at connect (a
// client that gives up waiting takes nothing), and in a subscribe, whose
// snapshot gives its bytes back once written.
func TestSnapshotsWaitForRoomInTheBudget(t *testing.T) {
	budget := snapbudget.New(1 << 20)
	ts := startServer(t, realtime.Options{MaxSnapshotBytes: 1 << 20, SnapshotBudget: budget})
	ts.put("default", "a", `1`)
	full, err := budget.Acquire(context.Background(), 1<<20)
	require.NoError(t, err)

	ctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
	defer cancel()
	ws, res, err := websocket.DefaultDialer.DialContext(ctx, ts.wsURL(url.Values{"snapshot": {"true"}}), nil)
	if ws != nil {
		_ = ws.Close()
	}
	if res != nil {
		_ = res.Body.Close()
	}
	require.Error(t, err, "connected with a snapshot while the budget was full")
	testkit.Eventually(t, func() bool { return budget.Stats().Waiting == 0 }, "the client that gave up waits no more")

	w := testkit.DialWatch(t, ts.wsURL(nil), nil) // no snapshot: no wait
	w.Expect("subscribed")
	w.SendJSON(map[string]any{"type": "subscribe", "id": 7, "ns": "default", "snapshot": true})
	testkit.Eventually(t, func() bool { return budget.Stats().Waiting == 1 }, "the subscribe's snapshot waits")
	full.Release()
	assert.Equal(t, "subscribed", w.Expect("subscribed").Type)
	snap := w.Expect("context_snapshot")
	assert.Equal(t, uint64(1), snap.Rev)
	testkit.Eventually(t, func() bool { return budget.Stats().Held == 0 }, "the written snapshot gave its bytes back")
	assert.Equal(t, uint64(2), budget.Stats().Waited)
}
