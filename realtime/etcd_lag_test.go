package realtime_test

import (
	"context"
	"encoding/json"
	"fmt"
	"net/url"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/framework0/ctxd"
	"github.com/framework0/ctxd/internal/testkit"
	"github.com/framework0/ctxd/internal/testkit/etcdkit"
	"github.com/framework0/ctxd/realtime"
	"github.com/framework0/ctxd/store/etcd"
)

// neighbourPuts writes n puts on st, another prefix of the hub's etcd,
// from 8 writers: etcd's revision moves on by n, and the hub's prefix has
// no change in it.
func neighbourPuts(t *testing.T, st *etcd.Store, n int) {
	t.Helper()
	var wg sync.WaitGroup
	for w := range 8 {
		wg.Go(func() {
			for i := w; i < n; i += 8 {
				if _, err := st.Put(context.Background(), "default", "noise"+strconv.Itoa(w), json.RawMessage(strconv.Itoa(i)), nil, "neighbour"); err != nil {
					t.Error(err)
					return
				}
			}
		})
	}
	wg.Wait()
}

// written is a change the test wrote to the hub's prefix: what a
// subscriber must get, in order, once each.
type written struct {
	rev uint64
	key string
}

// checkGot reports the first difference between the changes a subscriber
// got and want.
func checkGot(got []testkit.Frame, want []written) error {
	for i, f := range got {
		if i >= len(want) {
			return fmt.Errorf("change %d (rev %d %s) is one too many: want %d changes", i, f.Rev, f.Key, len(want))
		}
		if f.Rev != want[i].rev || f.Key != want[i].key {
			return fmt.Errorf("change %d: got rev %d %s, want rev %d %s", i, f.Rev, f.Key, want[i].rev, want[i].key)
		}
	}
	if len(got) != len(want) {
		return fmt.Errorf("got %d changes, want %d", len(got), len(want))
	}
	return nil
}

// A neighbour deployment on the same etcd (another prefix) moves etcd's
// revision by ten times max_lag while this prefix has no change: its
// subscribers are not behind, and are not closed "lagged". The first
// change after that is a transaction larger than the ring, so that the
// subscribers, fully caught up, are behind the ring's start and a few
// changes behind (the path that counted the distance in revisions, i.e.
// the neighbour's revisions, as changes); then single puts interleave
// with more of the neighbour's. Every subscriber gets every change once,
// in order. Run against the counting before the fix, both cases fail:
// the subscribers get error "lagged" ("505 changes behind, more than
// max_lag 50" with max_lag 50 then) where the transaction should be.
// The prefix's changes after the subscription (20) are fewer than
// max_lag: no subscriber can lag by them, however slow the machine.
func TestEtcdNeighbourRevisionsAreNotLag(t *testing.T) {
	big := `"` + strings.Repeat("v", 4<<10) + `"`
	for _, c := range []struct {
		name  string
		opts  realtime.Options
		value string
	}{
		{"ring of 4 changes", realtime.Options{RingSize: 4}, `1`},
		{"ring of 16 KiB, 4 KiB values", realtime.Options{RingBytes: 16 << 10}, big},
	} {
		t.Run(c.name, func(t *testing.T) {
			ctx := context.Background()
			st := openEtcd(t, etcdkit.Name(t))
			// The neighbour's writes each take a revision of their own
			// (grouped, 8 writers would move etcd's revision less).
			neighbour, err := etcd.Open(etcd.Options{Endpoints: []string{etcdkit.Shared(t).Endpoint}, Prefix: etcdkit.Prefix(etcdkit.Name(t) + "/neighbour"), MaxGroupWrites: 1})
			require.NoError(t, err)
			t.Cleanup(func() { require.NoError(t, neighbour.Close()) })
			const maxLag = 25
			c.opts.MaxLag = maxLag
			hub, wsURL := etcdHub(t, st, c.opts, 0)

			var want []written
			put := func(key string) {
				rec, err := st.Put(ctx, "default", key, json.RawMessage(c.value), nil, "t")
				require.NoError(t, err)
				want = append(want, written{rec.ModRev, key})
			}
			put("first")
			first := want[0].rev
			want = nil
			var subs []*testkit.WS
			for _, batch := range []bool{false, true} {
				ws := testkit.DialWatch(t, wsURL(url.Values{"batch": {strconv.FormatBool(batch)}}), nil)
				sub := ws.Expect(ctxd.TypeSubscribed)
				require.GreaterOrEqual(t, sub.Rev, first, "subscribed after the first change: caught up")
				subs = append(subs, ws)
			}

			neighbourPuts(t, neighbour, 10*maxLag)
			var txn []ctxd.Write
			for i := range 10 {
				txn = append(txn, ctxd.Write{Namespace: "default", Key: "txn" + strconv.Itoa(i), Op: ctxd.OpPut, Value: json.RawMessage(c.value), Who: "t"})
			}
			res, err := st.Txn(ctx, txn)
			require.NoError(t, err)
			require.Greater(t, res.Revision, first+10*maxLag, "the neighbour moved etcd's revision")
			for _, w := range txn {
				want = append(want, written{res.Revision, w.Key})
			}
			for i := range 10 {
				put("k" + strconv.Itoa(i))
				neighbourPuts(t, neighbour, 2*maxLag/10)
			}
			last := want[len(want)-1].rev
			require.Greater(t, last-first, uint64(10*maxLag+len(want)), "the revision moved by far more than max_lag, and than the changes")

			for i, ws := range subs {
				assert.NoError(t, checkGot(ws.Changes(last), want), "subscriber %d", i)
			}
			assert.Zero(t, hub.Stats().Lagged, "no subscriber was closed lagged")
		})
	}
}

// lagCount is the number of changes the message of a "lagged" error
// says the client was behind.
var lagCount = regexp.MustCompile(`\((\d+) changes behind`)

// A subscriber of the prefix that does not read, while its prefix gets
// three times max_lag changes with the neighbour's revisions between
// them, is still closed "lagged" when it is more than max_lag changes of
// its prefix behind (and says how many: no more than there were). It has
// got every change up to the from_rev of the error, and a resume from
// there gets the rest: each change once, in order.
func TestEtcdSlowSubscriberLagged(t *testing.T) {
	ctx := context.Background()
	st, neighbour := openEtcd(t, etcdkit.Name(t)), openEtcd(t, etcdkit.Name(t)+"/neighbour")
	const (
		maxLag  = 50
		changes = 3 * maxLag
		sockBuf = 16 << 10 // the server's send buffer: the slow client's socket fills after a few changes
	)
	hub, wsURL := etcdHub(t, st, realtime.Options{
		MaxLag: maxLag, RingSize: 4, Window: 2,
		// The slow client must not be cut for not reading.
		WriteTimeout: 5 * time.Minute, PingInterval: 5 * time.Minute,
	}, sockBuf)
	// The kernel's receive buffer (not dialSmall's): the client reads
	// until cut, and 150 changes of 4 KiB are far more than it holds.
	slow := testkit.DialWatch(t, wsURL(url.Values{}), nil)
	slow.Expect(ctxd.TypeSubscribed)

	value := json.RawMessage(`"` + strings.Repeat("v", 4<<10) + `"`)
	var want []written
	for i := range changes {
		rec, err := st.Put(ctx, "default", "k"+strconv.Itoa(i), value, nil, "t")
		require.NoError(t, err)
		want = append(want, written{rec.ModRev, "k" + strconv.Itoa(i)})
		neighbourPuts(t, neighbour, 5)
	}
	last := want[len(want)-1].rev

	got, lagged, from, upTo := readUntilLagged(t, slow, want)
	assert.Zero(t, lagged.FromIndex, "one change per revision: whole revisions")
	require.Less(t, from, last, "closed while behind")
	require.NoError(t, checkGot(got, want[:upTo]), "every change up to from_rev, before the error")
	m := lagCount.FindStringSubmatch(lagged.Message)
	require.NotNil(t, m, "the message says how far behind: %q", lagged.Message)
	n, err := strconv.Atoi(m[1])
	require.NoError(t, err)
	t.Logf("lagged at from_rev %d after %d of %d changes: %q", from, upTo, len(want), lagged.Message)
	assert.Greater(t, n, maxLag)
	assert.LessOrEqual(t, n, len(want)-upTo, "no more changes behind than the prefix had after from_rev")
	closedThenResumes(t, slow, hub, wsURL, from, want[upTo:])
}

// A subscriber replaying from before a transaction of 50 changes (one
// etcd revision) that stops reading inside it, while more than max_lag
// changes come after it, is closed "lagged" only once it has the whole
// revision: with lag_grace 0 the check runs on every pass, and a cut
// between two changes of the transaction would name a position inside it
// (from_index), where "lagged" names whole revisions (README, "The change
// feed"). Its from_index is absent, the subscriber has each change up to
// from_rev once before the error, and a resume from from_rev alone gets
// the rest: no gap, no duplicate. The replay does not count as lag (the
// session's base is the committed mark when it connected), so the
// session enters the transaction; the puts after it make it lag while it
// is inside. Run without the guard in cutLaggingLocked, it is cut inside
// the transaction and the error carries from_index.
func TestEtcdLaggedInsideRevisionFinishesIt(t *testing.T) {
	ctx := context.Background()
	st := openEtcd(t, etcdkit.Name(t))
	const (
		maxLag  = 2
		window  = 2
		txnSize = 50
		// After the transaction, more than max_lag changes even when the
		// session is fed a window of them before the next check.
		after   = 5 * maxLag
		sockBuf = 16 << 10 // kernel buffers: the socket fills a few changes into the transaction
	)
	hub, wsURL := etcdHub(t, st, realtime.Options{
		MaxLag: maxLag, LagGrace: 0, Window: window,
		// The slow client must not be cut for not reading.
		WriteTimeout: 5 * time.Minute, PingInterval: 5 * time.Minute,
	}, sockBuf)

	value := json.RawMessage(`"` + strings.Repeat("v", 4<<10) + `"`)
	var txn []ctxd.Write
	for i := range txnSize {
		txn = append(txn, ctxd.Write{Namespace: "default", Key: "t" + strconv.Itoa(i), Op: ctxd.OpPut, Value: value, Who: "t"})
	}
	res, err := st.Txn(ctx, txn)
	require.NoError(t, err)
	rev := res.Revision
	var want []written
	for _, w := range txn {
		want = append(want, written{rev, w.Key})
	}

	// dialSmall: the kernel's own receive buffer, with the server's send
	// buffer, would hold most of the transaction's 200 KiB.
	slow := dialSmall(t, wsURL(url.Values{"from_rev": {strconv.FormatUint(rev-1, 10)}}), sockBuf)
	slow.Expect(ctxd.TypeSubscribed)
	// Held back with its window full: it is inside the transaction (its
	// 200 KiB do not fit in the socket's buffers) and stays there until it
	// reads.
	testkit.Eventually(t, func() bool { return hub.Stats().Behind == 1 },
		"the slow subscriber is held back inside the transaction")
	for i := range after {
		rec, err := st.Put(ctx, "default", "k"+strconv.Itoa(i), json.RawMessage(`1`), nil, "t")
		require.NoError(t, err)
		want = append(want, written{rec.ModRev, "k" + strconv.Itoa(i)})
	}

	got, lagged, from, upTo := readUntilLagged(t, slow, want)
	t.Logf("lagged at from_rev %d (transaction at %d) from_index %d after %d changes: %q", from, rev, lagged.FromIndex, len(got), lagged.Message)
	assert.Zero(t, lagged.FromIndex, "lagged names a whole revision")
	assert.GreaterOrEqual(t, from, rev, "the transaction was finished before the cut")
	require.NoError(t, checkGot(got, want[:upTo]), "every change up to from_rev, once, before the error")
	closedThenResumes(t, slow, hub, wsURL, from, want[upTo:])
}

// readUntilLagged reads the slow client's changes until its lagged error,
// and returns them, the error, its from_rev and how many of want are at
// or before it. Every change it got is before the last of want: the
// client was cut while behind.
func readUntilLagged(t *testing.T, slow *wsClient, want []written) (got []testkit.Frame, lagged testkit.Frame, from uint64, upTo int) {
	t.Helper()
	last := want[len(want)-1].rev
	for {
		f := slow.Next()
		if f.Type != ctxd.TypeContextUpdated {
			lagged = f
			break
		}
		got = append(got, f)
		require.Less(t, f.Rev, last, "the slow client got every change: it was never cut")
	}
	require.Equal(t, ctxd.CodeLagged, lagged.Code, "%+v", lagged)
	require.NotNil(t, lagged.FromRev)
	from = *lagged.FromRev
	for upTo < len(want) && want[upTo].rev <= from {
		upTo++
	}
	return got, lagged, from, upTo
}

// closedThenResumes checks that the lagged client's connection closes, the
// hub counts it, and a client resuming from from gets rest, each once.
func closedThenResumes(t *testing.T, slow *wsClient, hub *realtime.Hub, wsURL func(url.Values) string, from uint64, rest []written) {
	t.Helper()
	_, err := slow.NextErr()
	assert.True(t, isClose(err), "closed after the error: %v", err)
	assert.Equal(t, uint64(1), hub.Stats().Lagged)
	require.NotEmpty(t, rest, "cut while behind: changes after from_rev")
	resumed := testkit.DialWatch(t, wsURL(url.Values{"from_rev": {strconv.FormatUint(from, 10)}}), nil)
	resumed.Expect(ctxd.TypeSubscribed)
	assert.NoError(t, checkGot(resumed.Changes(rest[len(rest)-1].rev), rest), "the resumed client gets the rest, once")
}
