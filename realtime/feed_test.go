package realtime_test

import (
	"context"
	"fmt"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/framework0/ctxd"
	"github.com/framework0/ctxd/internal/testkit"
	"github.com/framework0/ctxd/realtime"
	"github.com/framework0/ctxd/store"
)

// filter is what a test subscriber watches, as query parameters and as a
// predicate over the log.
type filter struct {
	ns     []string
	prefix string
	batch  bool
}

func (f filter) query() url.Values {
	q := url.Values{}
	for _, ns := range f.ns {
		q.Add("ns", ns)
	}
	if f.prefix != "" {
		q.Set("prefix", f.prefix)
	}
	if f.batch {
		q.Set("batch", "true")
	}
	return q
}

func (f filter) match(c ctxd.Change) bool {
	nss := f.ns
	if len(nss) == 0 {
		nss = []string{"default"}
	}
	for _, ns := range nss {
		if (ns == "*" || ns == c.Namespace) && strings.HasPrefix(c.Key, f.prefix) {
			return true
		}
	}
	return false
}

// fullLog reads the whole change log.
func fullLog(t *testing.T, st store.Backend) []ctxd.Change {
	t.Helper()
	var all []ctxd.Change
	for {
		cs, err := st.ReadLog(uint64(len(all)), 1000)
		require.NoError(t, err)
		if len(cs) == 0 {
			return all
		}
		all = append(all, cs...)
	}
}

// writeLoad runs writers concurrent REST writers that together make n
// changes, spread over the namespaces and key prefixes.
func writeLoad(t *testing.T, ts *testServer, writers, n int, nss, prefixes []string) {
	t.Helper()
	var wg sync.WaitGroup
	for w := range writers {
		wg.Go(func() {
			for i := w; i < n; i += writers {
				ns := nss[i%len(nss)]
				key := fmt.Sprintf("%sw%d/k%d", prefixes[(i/len(nss))%len(prefixes)], w, i%7)
				// Straight to the store, each put durable and concurrent with
				// the others: the hub sees only the log, and thousands of HTTP
				// requests under -race would take most of the test's time.
				if _, err := ts.st.Put(context.Background(), ns, key, []byte(fmt.Sprintf(`{"w":%d,"i":%d}`, w, i)), nil, fmt.Sprintf("w%d", w)); err != nil {
					t.Error(err)
					return
				}
			}
		})
	}
	wg.Wait()
}

// Every subscriber gets exactly the changes of its namespaces and prefix, in
// increasing revision order, none missing, none twice, whichever mode.
func TestFeedExactness(t *testing.T) {
	const (
		// Two subscribers of each filter in each mode (7 filters, batch
		// or not): two sessions with the same subscriptions share the
		// frames the hub builds for a position. 50, as before, added
		// only more of the same, at about 0.1 s of CPU each under -race.
		subscribers = 28
		writers     = 8
		changes     = 2000
		// window is scaled down with the changes (the default 64 against
		// 5,000 first): the "*" subscriber's frames still fill its window
		// some 80 times, so that subscribers are held back and caught up
		// as often as with more changes.
		window = 25
	)
	ts := startServer(t, realtime.Options{Window: window})
	nss := []string{"default", "a", "b"}
	prefixes := []string{"x/", "y/"}
	filters := []filter{
		{},
		{ns: []string{"a"}},
		{ns: []string{"b"}, prefix: "x/"},
		{ns: []string{"a", "b"}, prefix: "y/"},
		{ns: []string{"*"}},
		{ns: []string{"default", "a"}, prefix: "x/w3"},
		{ns: []string{"none"}},
	}
	type result struct {
		f    filter
		got  []msg
		from uint64
	}
	results := make([]*result, subscribers)
	clients := make([]*wsClient, subscribers)
	for i := range subscribers {
		f := filters[i%len(filters)]
		f.batch = i%2 == 0
		clients[i] = testkit.DialWatch(t, ts.wsURL(f.query()), nil)
		sub := clients[i].Expect(ctxd.TypeSubscribed)
		assert.Equal(t, f.batch, sub.Batch)
		results[i] = &result{f: f, from: sub.Rev}
	}

	var readers sync.WaitGroup
	for i := range subscribers {
		readers.Go(func() {
			r := results[i]
			for {
				m, err := clients[i].NextErr()
				if err != nil {
					t.Errorf("subscriber %d: %v", i, err)
					return
				}
				if m.Type != ctxd.TypeContextUpdated {
					t.Errorf("subscriber %d: unexpected %+v", i, m)
					return
				}
				if strings.HasSuffix(m.Key, "~end") {
					return
				}
				r.got = append(r.got, m)
			}
		})
	}
	writeLoad(t, ts, writers, changes, nss, prefixes)
	// One last change that every filter matches ends each reader.
	for _, ns := range append(nss, "none") {
		for _, p := range append(prefixes, "x/w3") {
			ts.put(ns, p+"~end", "0")
		}
	}
	readers.Wait()

	log := fullLog(t, ts.st)
	require.Len(t, log, changes+len(nss)*3+3)
	for i, r := range results {
		var want []ctxd.Change
		for _, c := range log {
			if c.Revision > r.from && !strings.HasSuffix(c.Key, "~end") && r.f.match(c) {
				want = append(want, c)
			}
		}
		require.Len(t, r.got, len(want), "subscriber %d (%+v)", i, r.f)
		for j, c := range want {
			m := r.got[j]
			require.Equal(t, c.Revision, m.Rev, "subscriber %d, change %d", i, j)
			require.Equal(t, c.Namespace, m.NS)
			require.Equal(t, c.Key, m.Key)
			require.Equal(t, c.Op.String(), m.Op)
			require.JSONEq(t, string(c.Value), string(m.Value))
			require.Equal(t, c.Version, m.Version)
			require.Equal(t, c.Who, m.Who)
			require.True(t, c.Time.Equal(m.Timestamp))
		}
	}
	st := ts.hub.Stats()
	assert.Zero(t, st.Lagged)
	assert.Zero(t, st.BufferFull)
}

// A client that disconnects and comes back with from_rev gets exactly the
// changes it missed, also across a real server restart (store closed and
// reopened).
func TestResume(t *testing.T) {
	for _, batch := range []bool{false, true} {
		t.Run(fmt.Sprintf("batch=%v", batch), func(t *testing.T) {
			ts := startServer(t, realtime.Options{})
			q := filter{batch: batch}.query()
			c := testkit.DialWatch(t, ts.wsURL(q), nil)
			c.Expect(ctxd.TypeSubscribed)
			for i := range 10 {
				ts.put("default", fmt.Sprintf("k%d", i), fmt.Sprint(i))
			}
			got := c.Changes(10)
			require.Equal(t, seq(1, 10), revs(got))
			last := got[len(got)-1].Rev
			require.NoError(t, c.Conn.Close())

			ts.putMany(1000, func(i int) (string, string) { return fmt.Sprintf("k%d", i%50), fmt.Sprint(i) })
			q.Set("from_rev", fmt.Sprint(last))
			c = testkit.DialWatch(t, ts.wsURL(q), nil)
			assert.Equal(t, last, c.Expect(ctxd.TypeSubscribed).Rev)
			got = c.Changes(1010)
			require.True(t, checkSeq(t, 11, 1010, revs(got), "replay"))
			assert.Equal(t, "k0", got[0].Key)
			assert.JSONEq(t, "0", string(got[0].Value))
			require.NoError(t, c.Conn.Close())

			// Across a restart: 500 changes before it, 500 after.
			ts.putMany(500, func(i int) (string, string) { return fmt.Sprintf("r%d", i), fmt.Sprint(i) })
			ts.restart()
			ts.putMany(500, func(i int) (string, string) { return fmt.Sprintf("s%d", i), fmt.Sprint(i) })
			q.Set("from_rev", "1010")
			c = testkit.DialWatch(t, ts.wsURL(q), nil)
			c.Expect(ctxd.TypeSubscribed)
			got = c.Changes(2010)
			require.True(t, checkSeq(t, 1011, 2010, revs(got), "replay across a restart"))
			assert.Equal(t, "r0", got[0].Key)
			assert.Equal(t, "s499", got[999].Key)

			// Live changes follow the replay on the same connection.
			ts.put("default", "live", "true")
			assert.Equal(t, []uint64{2011}, revs(c.Changes(2011)))
		})
	}
}

// A from_rev below the compacted revision gets "compacted" with the oldest
// available revision, then the server closes; from the compacted revision
// on, replay works, and from_rev=0 starts there.
func TestCompactedFromRev(t *testing.T) {
	ts := startServer(t, realtime.Options{}) // the ring holds the old changes: the store's answer wins
	for i := range 100 {
		ts.put("default", "k", fmt.Sprint(i))
	}
	ts.put("default", "other", "1") // rev 101
	require.NoError(t, ts.st.Compact(context.Background(), 60))

	c := testkit.DialWatch(t, ts.wsURL(url.Values{"from_rev": {"10"}}), nil)
	m := c.Expect(ctxd.TypeCompacted) // the only message: the client is not subscribed
	require.NotNil(t, m.FromRev)
	assert.Equal(t, uint64(10), *m.FromRev)
	assert.Equal(t, uint64(60), m.CompactedRevision)
	assert.Equal(t, uint64(101), m.Rev)
	assert.NotEmpty(t, m.Message)
	_, err := c.NextErr()
	require.Error(t, err)
	assert.True(t, isClose(err), "%v", err)

	c = testkit.DialWatch(t, ts.wsURL(url.Values{"from_rev": {"59"}}), nil)
	c.Expect(ctxd.TypeSubscribed)
	got := c.Changes(101)
	assert.Equal(t, seq(60, 101), revs(got))

	// from_index=0 has none of revision 59: the same as from_rev=58,
	// compacted (before, the feed went on after 59, whose change the
	// client never got).
	none := testkit.DialWatch(t, ts.wsURL(url.Values{"from_rev": {"59"}, "from_index": {"0"}}), nil)
	assert.Equal(t, uint64(60), none.Expect(ctxd.TypeCompacted).CompactedRevision)

	// from_rev=0 is every change history still holds: from the mark.
	c0 := testkit.DialWatch(t, ts.wsURL(url.Values{"from_rev": {"0"}}), nil)
	sub := c0.Expect(ctxd.TypeSubscribed)
	assert.Equal(t, uint64(59), sub.Rev, "the changes after the one below the mark follow")
	assert.Equal(t, seq(60, 101), revs(c0.Changes(101)))

	// The same from_rev in a subscribe: refused with "compacted", and the
	// connection goes on.
	c.SendJSON(map[string]any{"type": "subscribe", "id": "s", "ns": "other", "from_rev": 5})
	m = c.Expect(ctxd.TypeCompacted)
	assert.JSONEq(t, `"s"`, string(m.ID))
	assert.Equal(t, uint64(60), m.CompactedRevision)
	ts.put("default", "k", `"last"`)
	assert.Equal(t, []uint64{102}, revs(c.Changes(102)))
}

// One client stops reading while 5,000 changes are written: the writers
// and the other clients are not held up, and the slow client, when it reads
// again, gets every change in order, or "lagged" with the revision to
// resume from, after which a resume gives the rest with no gap.
func TestSlowClient(t *testing.T) {
	const (
		changes = 5000
		others  = 4
		writers = 8
		txnOps  = 5
		// The ring and max_lag scaled down with the changes, in the
		// same order as the defaults against 20,000 changes (16,384 and
		// 10,000): the slow client, whose socket holds ~900 changes, is
		// cut for lag while the ring still holds its position, and falls
		// out of the ring when it is not cut, so that it and the resumed
		// client are caught up from the log.
		ringSize, maxLag = 2048, 2000
	)
	// The server's kernel send buffers are shrunk to 16 KiB, so that the
	// slow client's socket is full long before the 5,000 changes (~750 KB)
	// are written. The slow client keeps its kernel's receive buffer (not
	// dialSmall's): it reads everything once the writers are done.
	const sockBuf = 16 << 10
	value := `"` + strings.Repeat("v", 40) + `"`

	// allBatch makes the other clients batch clients, which keep up with
	// the writers even under -race, where a one-change-per-frame client
	// may fall thousands of revisions behind.
	run := func(t *testing.T, opts realtime.Options, slow, allBatch bool) (ts *testServer, slowClient *wsClient) {
		opts.WriteTimeout = 5 * time.Minute // the slow client must not be cut off for not reading
		opts.PingInterval = 5 * time.Minute
		opts.RingSize = ringSize
		ts = startServerBuf(t, opts, sockBuf)
		var fast []*wsClient
		for i := range others {
			c := testkit.DialWatch(t, ts.wsURL(filter{batch: allBatch || i%2 == 0}.query()), nil)
			c.Expect(ctxd.TypeSubscribed)
			fast = append(fast, c)
		}
		if slow {
			slowClient = testkit.DialWatch(t, ts.wsURL(nil), nil)
			slowClient.Expect(ctxd.TypeSubscribed)
		}
		var wg sync.WaitGroup
		for _, c := range fast {
			wg.Go(func() {
				got, stop, err := changeRevs(c, changes)
				if assert.NoError(t, err) && assert.Nil(t, stop) {
					checkSeq(t, 1, changes, got, "a client that reads")
				}
			})
		}
		start := time.Now()
		var ww sync.WaitGroup
		for w := range writers {
			ww.Go(func() {
				// Straight to the store, in transactions of txnOps
				// changes: the commit path is what must not wait for a
				// socket (and thousands of HTTP requests under -race are slow).
				for i := w * txnOps; i < changes; i += writers * txnOps {
					ops := make([]ctxd.Write, txnOps)
					for j := range ops {
						ops[j] = ctxd.Write{Namespace: "default", Key: fmt.Sprintf("k%d", i+j), Op: ctxd.OpPut, Value: []byte(value), Who: "w"}
					}
					if _, err := ts.st.Txn(context.Background(), ops); err != nil {
						t.Error(err)
						return
					}
				}
			})
		}
		ww.Wait()
		written := time.Since(start)
		wg.Wait()
		t.Logf("slow client present: %v; writers finished in %v, the %d other clients had everything after %v",
			slow, written.Round(time.Millisecond), others, time.Since(start).Round(time.Millisecond))
		return ts, slowClient
	}

	t.Run("baseline without the slow client", func(t *testing.T) {
		run(t, realtime.Options{MaxLag: 1 << 30}, false, false)
	})

	t.Run("slow client gets everything", func(t *testing.T) {
		_, c := run(t, realtime.Options{MaxLag: 1 << 30}, true, false)
		got, stop, err := changeRevs(c, changes)
		require.NoError(t, err)
		require.Nil(t, stop)
		require.True(t, checkSeq(t, 1, changes, got, "the slow client"))
	})

	t.Run("slow client lagged then resumes", func(t *testing.T) {
		ts, c := run(t, realtime.Options{MaxLag: maxLag}, true, true)
		// Cut while its socket is full: its connection lasts until it
		// reads (or WriteTimeout), but it is no longer a client.
		testkit.Eventually(t, func() bool { return ts.hub.Stats().Clients == others }, "the cut client is not counted")
		got, lagged, err := changeRevs(c, changes)
		require.NoError(t, err)
		require.NotNil(t, lagged, "the slow client got every change: it was never behind")
		require.Equal(t, ctxd.TypeError, lagged.Type)
		require.Equal(t, ctxd.CodeLagged, lagged.Code, "%+v", lagged)
		require.NotNil(t, lagged.FromRev)
		from := *lagged.FromRev
		require.Less(t, from, uint64(changes), "the client was closed while behind")
		require.True(t, checkSeq(t, 1, from, got, "everything up to from_rev before the lagged error"))
		_, err = c.NextErr()
		require.True(t, isClose(err), "%v", err)
		assert.Equal(t, uint64(1), ts.hub.Stats().Lagged)

		c = testkit.DialWatch(t, ts.wsURL(url.Values{"from_rev": {fmt.Sprint(from)}}), nil)
		c.Expect(ctxd.TypeSubscribed)
		rest, stop, err := changeRevs(c, changes)
		require.NoError(t, err)
		require.Nil(t, stop)
		require.True(t, checkSeq(t, from+1, changes, rest, "the resumed slow client"))
	})
}

// The snapshot comes first, at one revision, then the changes after it.
func TestSnapshotAtConnect(t *testing.T) {
	ts := startServer(t, realtime.Options{SnapshotChunk: 3})
	for i := range 7 {
		ts.put("default", fmt.Sprintf("app/k%d", i), fmt.Sprint(i))
	}
	ts.put("default", "other", "1")
	ts.put("team", "app/t", "1")

	c := testkit.DialWatch(t, ts.wsURL(url.Values{"snapshot": {"true"}, "prefix": {"app/"}, "ns": {"default", "team"}}), nil)
	sub := c.Expect(ctxd.TypeSubscribed)
	assert.Equal(t, uint64(9), sub.Rev)
	var keys []string
	for {
		m := c.Expect(ctxd.TypeContextSnapshot)
		assert.Equal(t, uint64(9), m.Rev)
		for _, r := range m.Keys {
			keys = append(keys, r.Namespace+"/"+r.Key)
		}
		if m.Complete {
			break
		}
		assert.Len(t, m.Keys, 3)
	}
	assert.Equal(t, []string{"default/app/k0", "default/app/k1", "default/app/k2", "default/app/k3",
		"default/app/k4", "default/app/k5", "default/app/k6", "team/app/t"}, keys)

	ts.put("default", "other", "2")
	ts.put("default", "app/k0", "10")
	got := c.Changes(11)
	require.Len(t, got, 1)
	assert.Equal(t, "app/k0", got[0].Key)

	// from_rev and snapshot together are refused before the upgrade.
	_, resp, err := testkit.DialWatchErr(ts.wsURL(url.Values{"snapshot": {"true"}, "from_rev": {"1"}}), nil)
	require.Error(t, err)
	require.NotNil(t, resp)
	assert.Equal(t, http.StatusBadRequest, resp.StatusCode)
	// So is a query string that does not parse: "from_rev=1;" must not
	// subscribe from now, as if no from_rev had been given.
	_, resp, err = testkit.DialWatchErr(ts.wsURL(nil)+"?from_rev=1;&ns=default", nil)
	require.Error(t, err)
	require.NotNil(t, resp)
	assert.Equal(t, http.StatusBadRequest, resp.StatusCode)
}
