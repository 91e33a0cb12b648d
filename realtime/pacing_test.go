package realtime_test

import (
	"context"
	"encoding/json"
	"net/url"
	"strconv"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/framework0/ctxd"
	"github.com/framework0/ctxd/configs"
	"github.com/framework0/ctxd/internal/testkit"
	"github.com/framework0/ctxd/realtime"
)

// dialSubscribed connects a client of the namespace default (batch or
// not) and reads its subscribed message.
func dialSubscribed(t *testing.T, ts *testServer, batch bool) *wsClient {
	t.Helper()
	c := testkit.DialWatch(t, ts.wsURL(filter{batch: batch}.query()), nil)
	c.Expect(ctxd.TypeSubscribed)
	return c
}

// readFrames reads the changes up to revision upTo from a batch client and
// returns them with the number of frames they came in.
func readFrames(t *testing.T, c *wsClient, upTo uint64) (revs []uint64, frames int) {
	t.Helper()
	for {
		m := c.Next()
		require.Equal(t, ctxd.TypeContextUpdated, m.Type, "message: %+v", m)
		revs = append(revs, m.Rev)
		if c.Pending() == 0 {
			frames++
		}
		if m.Rev >= upTo {
			require.Zero(t, c.Pending(), "a frame went past revision %d", upTo)
			return revs, frames
		}
	}
}

// TestBatchIntervalPacesBatchClients: a batch client's first change after a
// quiet spell goes alone; the changes of ten writes made one after another
// just after it share a frame or two (BatchInterval after the first), and
// the last of them arrives with no write after it (the loop's timer, not a
// commit, sends it). With pacing off, the same ten writes take a frame
// each on an idle machine: the count of frames is what tells them apart.
func TestBatchIntervalPacesBatchClients(t *testing.T) {
	ts := startServer(t, realtime.Options{BatchInterval: time.Second})
	c := dialSubscribed(t, ts, true)

	first := ts.put("default", "k0", `0`)
	revs, frames := readFrames(t, c, first)
	assert.Equal(t, []uint64{first}, revs)
	assert.Equal(t, 1, frames)

	var last uint64
	for i := 1; i <= 10; i++ {
		last = ts.put("default", "k"+strconv.Itoa(i), strconv.Itoa(i))
	}
	revs, frames = readFrames(t, c, last)
	checkSeq(t, first+1, last, revs, "changes after the first")
	// Ten writes take far less than 1 s; should the machine stall, they
	// may straddle one interval.
	assert.LessOrEqual(t, frames, 2, "10 writes in %d frames: not paced", frames)
}

// TestBatchIntervalNeverHoldsAFullFrame: a full frame (MaxBatch changes)
// goes at once even within the interval, so that pacing never caps how
// many changes a second a batch client can take. The interval here is an
// hour: the test ends only if nothing waits for it.
func TestBatchIntervalNeverHoldsAFullFrame(t *testing.T) {
	ts := startServer(t, realtime.Options{BatchInterval: time.Hour, MaxBatch: 4})
	c := dialSubscribed(t, ts, true)

	first := ts.put("default", "k0", `0`)
	revs, _ := readFrames(t, c, first)
	require.Equal(t, []uint64{first}, revs, "the first change after a quiet spell goes at once")

	// One commit of 8 changes (8 revisions on bolt): two full frames.
	ts.putMany(8, func(i int) (string, string) { return "t" + strconv.Itoa(i), strconv.Itoa(i) })
	rev, _ := ts.st.Committed()
	revs, frames := readFrames(t, c, rev)
	checkSeq(t, first+1, rev, revs, "the full frames")
	assert.Equal(t, 2, frames)

	// A client without batch is never paced: its second change, within
	// the hour of its first, arrives too (the first after a quiet spell
	// would go at once even if it were paced).
	plain := dialSubscribed(t, ts, false)
	for i := range 2 {
		next := ts.put("default", "k1", strconv.Itoa(i))
		got := plain.Changes(next)
		require.Len(t, got, 1)
		assert.Equal(t, next, got[0].Rev)
	}
}

// The whole server paces batch clients by websocket.batch_interval (here
// 1 s, so that ten writes cannot straddle more than one interval): the
// setting reaches the hub. With it not passed on, the ten writes take ten
// frames.
func TestServerPacesByBatchInterval(t *testing.T) {
	ts := testkit.StartServer(t, testkit.WithConfig(func(c *configs.Config) { c.WebSocket.BatchInterval = time.Second }))
	c := testkit.DialWatch(t, ts.WatchURL(url.Values{"batch": {"true"}}), nil)
	c.Expect(ctxd.TypeSubscribed)
	put := func(i int) uint64 {
		rec, err := ts.Backend().Put(context.Background(), "default", "k"+strconv.Itoa(i), json.RawMessage(strconv.Itoa(i)), nil, "test")
		require.NoError(t, err)
		return rec.ModRev
	}
	first := put(0)
	_, frames := readFrames(t, c, first)
	require.Equal(t, 1, frames)
	var last uint64
	for i := 1; i <= 10; i++ {
		last = put(i)
	}
	revs, frames := readFrames(t, c, last)
	checkSeq(t, first+1, last, revs, "changes after the first")
	assert.LessOrEqual(t, frames, 2, "10 writes in %d frames: websocket.batch_interval did not reach the hub", frames)
}
