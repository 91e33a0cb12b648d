package realtime_test

import (
	"context"
	"fmt"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/gorilla/websocket"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/framework0/ctxd"
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

// A subscribe refused for having too many subscriptions builds no
// snapshot, and holds nothing of the budget. Before, it built one and
// never gave its bytes back: any client could fill the budget for good.
func TestARefusedSubscribeHoldsNothing(t *testing.T) {
	budget := snapbudget.New(1 << 20)
	ts := startServer(t, realtime.Options{MaxSnapshotBytes: 1 << 20, SnapshotBudget: budget})
	ts.put("x", "a", `1`)
	var nss []string
	for i := range 64 {
		nss = append(nss, fmt.Sprintf("n%d", i))
	}
	w := testkit.DialWatch(t, ts.wsURL(url.Values{"ns": nss}), nil)
	w.Expect("subscribed")
	w.SendJSON(map[string]any{"type": "subscribe", "id": 1, "ns": "x", "snapshot": true})
	assert.Contains(t, w.Expect("error").Message, "at most 64 subscriptions")
	assert.Zero(t, budget.Stats().Held)
	assert.Zero(t, budget.Stats().Waited+uint64(budget.Stats().Waiting))
}

// A subscribe's snapshot that waits for room stops waiting when its
// session ends: here the session's own connect snapshot, unread, holds
// the budget, and the client goes away. Before, the reader waited forever
// (the grant it waited for could only be released after it returned),
// and Hub.Close with it.
func TestASubscribesWaitEndsWithItsSession(t *testing.T) {
	const most = 1 << 20
	budget := snapbudget.New(most)
	ts := startServerBuf(t, realtime.Options{MaxSnapshotBytes: most, SnapshotBudget: budget, WriteTimeout: 5 * time.Minute}, 8<<10)
	ts.putMany(600, func(i int) (string, string) { return fmt.Sprintf("k%04d", i), `"` + strings.Repeat("v", 1000) + `"` })
	w := testkit.DialWatch(t, ts.wsURL(url.Values{"snapshot": {"true"}}), nil) // its 600 KB snapshot stays in the hub
	w.SendJSON(map[string]any{"type": "subscribe", "id": 1, "ns": "other", "snapshot": true})
	testkit.Eventually(t, func() bool { return budget.Stats().Waiting == 1 }, "the subscribe waits")
	// The client goes away: Hub.Close need not wait its closeWait (2 s)
	// for a close handshake the client would never answer.
	require.NoError(t, w.Conn.Close())
	closed := make(chan struct{})
	go func() { _ = ts.hub.Close(); close(closed) }()
	select {
	case <-closed:
	case <-time.After(testkit.Deadline):
		t.Fatalf("Hub.Close waits for the subscribe's wait; budget %+v", budget.Stats())
	}
	assert.Zero(t, budget.Stats().Waiting)
	testkit.Eventually(t, func() bool { return budget.Stats().Held == 0 }, "every grant given back")
}

// Snapshot frames do not count against the answers a client may leave
// unread: a client that reads everything and sends a ping right after
// connecting with snapshot=true (here 2,000 frames of one key) gets its
// pong. Before, the ping's answer found more than 256 frames queued and
// closed it as lagged, dropping the rest of the snapshot.
func TestSnapshotFramesAreNotUnreadAnswers(t *testing.T) {
	ts := startServer(t, realtime.Options{SnapshotChunk: 1})
	ts.putMany(2000, func(i int) (string, string) { return fmt.Sprintf("k%04d", i), "1" })
	w := testkit.DialWatch(t, ts.wsURL(url.Values{"snapshot": {"true"}}), nil)
	w.SendJSON(map[string]any{"type": "ping", "id": 1})
	keys := 0
	for {
		m := w.Next()
		require.NotEqual(t, ctxd.TypeError, m.Type, "%+v", m)
		keys += len(m.Keys)
		if m.Type == ctxd.TypePong {
			break
		}
	}
	assert.Equal(t, 2000, keys, "the whole snapshot, then the pong")
}
