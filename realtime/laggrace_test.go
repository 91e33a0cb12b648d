package realtime_test

import (
	"context"
	"net/url"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/framework0/ctxd"
	"github.com/framework0/ctxd/internal/testkit"
	"github.com/framework0/ctxd/realtime"
	"github.com/framework0/ctxd/store/bolt"
)

// burstTxn writes n changes of value to the namespace default in one
// transaction: on bolt n revisions that commit, and reach the hub, at
// once.
func (ts *testServer) burstTxn(n int, value string) uint64 {
	ts.t.Helper()
	ops := make([]ctxd.Write, n)
	for i := range ops {
		ops[i] = ctxd.Write{Namespace: "default", Key: "burst/" + strconv.Itoa(i), Op: ctxd.OpPut, Value: []byte(value), Who: "test"}
	}
	res, err := ts.st.Txn(context.Background(), ops)
	require.NoError(ts.t, err)
	return res.Revision
}

// A transaction of 20 times max_lag changes puts every client more than
// max_lag behind at once. A client that reads at full speed drains it
// within lag_grace and is not cut: it gets every change, once, in order,
// and is still connected after. Without a grace (LagGrace 0, the control)
// the same burst cuts the same client "lagged": so the burst did put it
// past max_lag, and the grace is what kept it.
func TestBurstDoesNotCutAClientThatReads(t *testing.T) {
	const maxLag, burst = 100, 2000
	for _, batch := range []bool{false, true} {
		for _, grace := range []time.Duration{deadline, 0} {
			t.Run("batch="+strconv.FormatBool(batch)+",grace="+grace.String(), func(t *testing.T) {
				ts := startTestServer(&testServer{t: t, opts: realtime.Options{MaxLag: maxLag, LagGrace: grace},
					storeOpts: bolt.Options{Limits: ctxd.Limits{MaxTxnOps: burst}}})
				c := testkit.DialWatch(t, ts.wsURL(url.Values{"batch": {strconv.FormatBool(batch)}}), nil)
				start := c.Expect(ctxd.TypeSubscribed).Rev
				last := ts.burstTxn(burst, `1`)
				got, stop, err := changeRevs(c, last)
				require.NoError(t, err)
				if grace == 0 {
					require.NotNil(t, stop, "no grace: the burst cuts the client")
					assert.Equal(t, ctxd.CodeLagged, stop.Code, "%+v", stop)
					assert.Equal(t, uint64(1), ts.hub.Stats().Lagged)
					return
				}
				require.Nil(t, stop, "cut by a burst it was reading at full speed: %+v", stop)
				require.True(t, checkSeq(t, start+1, last, got, "the burst"))
				c.SendJSON(map[string]any{"type": "ping", "id": 1})
				assert.Equal(t, last, c.Expect(ctxd.TypePong).Rev, "still connected after the burst")
				assert.Zero(t, ts.hub.Stats().Lagged)
			})
		}
	}
}

// A client that cannot keep up (here: it reads nothing) and is more than
// max_lag behind is cut "lagged" once lag_grace has run out, though no
// change comes after the ones it is behind on: the hub looks again when
// the grace ends. Everything up to from_rev comes before the error, and
// a resume from there gets the rest. Negative control: without the wake
// at the end of the grace (wakeBy in cutLaggingLocked), no pass comes
// after the last write and the client is never cut (changeRevs fails at
// the deadline).
func TestClientBehindPastTheGraceIsCut(t *testing.T) {
	const (
		maxLag  = 50
		grace   = 300 * time.Millisecond
		sockBuf = 16 << 10
	)
	ts := startTestServer(&testServer{t: t, sndBuf: sockBuf, opts: realtime.Options{
		MaxLag: maxLag, LagGrace: grace, Window: 2,
		// Cut for its lag, not for reading nothing.
		WriteTimeout: 5 * time.Minute, PingInterval: 5 * time.Minute,
	}, storeOpts: bolt.Options{Limits: ctxd.Limits{MaxTxnOps: 4 * maxLag}}})
	// The kernel's receive buffer (not dialSmall's): the client reads
	// once cut, and 200 changes of 4 KiB are far more than it holds.
	slow := testkit.DialWatch(t, ts.wsURL(nil), nil)
	start := slow.Expect(ctxd.TypeSubscribed).Rev
	wrote := time.Now()
	// Values large enough to fill the kernel's buffers after a few.
	last := ts.burstTxn(4*maxLag, `"`+strings.Repeat("v", 4<<10)+`"`)

	testkit.Eventually(t, func() bool { return ts.hub.Stats().Lagged == 1 }, "the slow client was cut")
	assert.GreaterOrEqual(t, time.Since(wrote), grace, "cut before its grace ran out")
	got, stop, err := changeRevs(slow, last)
	require.NoError(t, err)
	require.NotNil(t, stop, "the slow client got every change: it was never behind")
	require.Equal(t, ctxd.CodeLagged, stop.Code, "%+v", stop)
	require.NotNil(t, stop.FromRev)
	from := *stop.FromRev
	require.Less(t, from, last, "closed while behind")
	require.True(t, checkSeq(t, start+1, from, got, "everything up to from_rev, before the error"))

	resumed := testkit.DialWatch(t, ts.wsURL(url.Values{"from_rev": {strconv.FormatUint(from, 10)}}), nil)
	resumed.Expect(ctxd.TypeSubscribed)
	rest, stop, err := changeRevs(resumed, last)
	require.NoError(t, err)
	require.Nil(t, stop)
	require.True(t, checkSeq(t, from+1, last, rest, "the resumed client"))
}
