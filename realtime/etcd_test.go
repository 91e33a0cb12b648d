package realtime_test

import (
	"context"
	"encoding/json"
	"net/http/httptest"
	"net/url"
	"strconv"
	"strings"
	"testing"

	"github.com/labstack/echo/v4"
	"github.com/rs/zerolog"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/framework0/ctxd"
	"github.com/framework0/ctxd/internal/testkit"
	"github.com/framework0/ctxd/internal/testkit/etcdkit"
	"github.com/framework0/ctxd/realtime"
	"github.com/framework0/ctxd/store"
	"github.com/framework0/ctxd/store/etcd"
)

// openEtcd opens the etcd backend on the package's shared embedded etcd,
// under a prefix of its own, closed when the test ends.
func openEtcd(t *testing.T, name string) *etcd.Store {
	t.Helper()
	st, err := etcd.Open(etcd.Options{Endpoints: []string{etcdkit.Shared(t).Endpoint}, Prefix: etcdkit.Prefix(name)})
	require.NoError(t, err)
	t.Cleanup(func() { require.NoError(t, st.Close()) })
	return st
}

// watchServer serves /v1/watch of a hub with the default options on st
// and returns its ws:// URL maker.
func watchServer(t *testing.T, st *etcd.Store) func(q url.Values) string {
	t.Helper()
	_, wsURL := etcdHub(t, st, realtime.Options{}, 0)
	return wsURL
}

// etcdHub serves /v1/watch of a hub with opts on st and returns the hub
// and its ws:// URL maker. sndBuf, when > 0, is the kernel send buffer of
// accepted connections (testkit.SmallSendBuffers).
func etcdHub(t *testing.T, st store.Backend, opts realtime.Options, sndBuf int) (*realtime.Hub, func(q url.Values) string) {
	t.Helper()
	hub := realtime.New(st, opts, zerolog.Nop())
	e := echo.New()
	e.GET("/v1/watch", hub.Serve)
	srv := httptest.NewUnstartedServer(e)
	if sndBuf > 0 {
		srv.Listener = testkit.SmallSendBuffers{Listener: srv.Listener, Size: sndBuf}
	}
	srv.Start()
	t.Cleanup(func() {
		assert.Zero(t, hub.Stats().BufferFull, "melody dropped frames")
		assert.NoError(t, hub.Close())
		srv.Close()
	})
	return hub, func(q url.Values) string {
		return "ws" + strings.TrimPrefix(srv.URL, "http") + "/v1/watch?" + q.Encode()
	}
}

// On etcd every change of a transaction has the transaction's revision,
// and revisions skip the numbers other prefixes of the cluster take. The
// hub carries whole revisions: a txn of several writes reaches a
// subscriber complete and in order (a batch frame never splits it), a
// subscriber resuming from the revision before it gets all of it once,
// and revisions of another prefix cause neither a gap nor "lagged". The
// window of one frame stops a one-change-per-frame session inside the
// revision, and a ring of 4 changes sends it to the log mid-revision.
func TestEtcdRevisionOfSeveralChanges(t *testing.T) {
	for _, batch := range []bool{false, true} {
		t.Run("batch="+strconv.FormatBool(batch), func(t *testing.T) {
			st := openEtcd(t, etcdkit.Name(t))
			other := openEtcd(t, etcdkit.Name(t)+"/other")
			hub, hubURL := etcdHub(t, st, realtime.Options{Window: 1, BatchWindow: 1, MaxBatch: 2, RingSize: 4, MaxLag: 10}, 0)
			t.Cleanup(func() { assert.Zero(t, hub.Stats().Lagged, "no client lagged") })
			wsURL := func(q url.Values) string {
				q.Set("batch", strconv.FormatBool(batch))
				return hubURL(q)
			}
			ctx := context.Background()
			otherWrites := func() {
				for i := range 30 {
					_, err := other.Put(ctx, "default", "noise", json.RawMessage(strconv.Itoa(i)), nil, "t")
					require.NoError(t, err)
				}
			}

			live := testkit.DialWatch(t, wsURL(url.Values{}), nil)
			live.Expect(ctxd.TypeSubscribed)
			otherWrites()
			before, err := st.Put(ctx, "default", "before", json.RawMessage(`0`), nil, "t")
			require.NoError(t, err)
			var writes []ctxd.Write
			for i := range 6 {
				writes = append(writes, ctxd.Write{Namespace: "default", Key: "k" + strconv.Itoa(i), Op: ctxd.OpPut, Value: json.RawMessage(strconv.Itoa(i)), Who: "t"})
			}
			writes = append(writes, ctxd.Write{Namespace: "default", Key: "before", Op: ctxd.OpDelete, Who: "t"})
			res, err := st.Txn(ctx, writes)
			require.NoError(t, err)
			txnRev := res.Revision
			otherWrites()
			after, err := st.Put(ctx, "default", "after", json.RawMessage(`1`), nil, "t")
			require.NoError(t, err)
			require.Greater(t, after.ModRev, txnRev+30, "the other prefix's writes left a gap")

			// want is the txn's changes, in the order of its writes.
			checkTxn := func(got []frameOf) {
				t.Helper()
				require.Len(t, got, len(writes))
				for i, w := range writes {
					assert.Equal(t, txnRev, got[i].change.Rev, "change %d", i)
					assert.Equal(t, w.Key, got[i].change.Key, "change %d", i)
					assert.Equal(t, w.Op.String(), got[i].change.Op, "change %d", i)
					if batch {
						assert.Equal(t, got[0].frame, got[i].frame, "change %d travels in the frame of the first", i)
					}
				}
			}
			got := readChanges(t, live, 1+len(writes)+1)
			assert.Equal(t, "before", got[0].change.Key)
			assert.Equal(t, before.ModRev, got[0].change.Rev)
			checkTxn(got[1 : 1+len(writes)])
			assert.Equal(t, "after", got[len(got)-1].change.Key)

			tail := []uint64{after.ModRev} // what follows the txn, markers included
			for _, from := range []uint64{txnRev - 1, before.ModRev} {
				resumed := testkit.DialWatch(t, wsURL(url.Values{"from_rev": {strconv.FormatUint(from, 10)}}), nil)
				resumed.Expect(ctxd.TypeSubscribed)
				got := readChanges(t, resumed, len(writes)+len(tail))
				checkTxn(got[:len(writes)])
				for i, rev := range tail {
					assert.Equal(t, rev, got[len(writes)+i].change.Rev)
				}
				marker, err := st.Put(ctx, "default", "marker", json.RawMessage(strconv.FormatUint(from, 10)), nil, "t")
				require.NoError(t, err)
				next := readChanges(t, resumed, 1)[0].change
				assert.Equal(t, marker.ModRev, next.Rev, "nothing between the resumed changes and the next write: no duplicate")
				tail = append(tail, marker.ModRev)
				require.NoError(t, resumed.Conn.Close())
			}
		})
	}
}

// frameOf is one change and the frame (its sequence number) it came in.
type frameOf struct {
	change testkit.Frame
	frame  int
}

// readChanges reads n context_updated messages frame by frame, noting
// which frame each came in.
func readChanges(t *testing.T, w *testkit.WS, n int) []frameOf {
	t.Helper()
	var out []frameOf
	for frame := 0; len(out) < n; frame++ {
		_, data, err := w.Conn.ReadMessage()
		require.NoError(t, err)
		var f testkit.Frame
		require.NoError(t, json.Unmarshal(data, &f))
		msgs := []testkit.Frame{f}
		if f.Type == ctxd.TypeBatch {
			msgs = msgs[:0]
			for _, raw := range f.Messages {
				var m testkit.Frame
				require.NoError(t, json.Unmarshal(raw, &m))
				msgs = append(msgs, m)
			}
		}
		for _, m := range msgs {
			require.Equal(t, ctxd.TypeContextUpdated, m.Type, "message: %s", data)
			out = append(out, frameOf{change: m, frame: frame})
		}
	}
	require.Len(t, out, n, "no more changes than asked in the last frame")
	return out
}
