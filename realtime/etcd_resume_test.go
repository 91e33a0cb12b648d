package realtime_test

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/framework0/ctxd"
	"github.com/framework0/ctxd/internal/testkit"
	"github.com/framework0/ctxd/internal/testkit/etcdkit"
	"github.com/framework0/ctxd/realtime"
)

// checkRest says whether got is exactly the changes of txn (a
// transaction's writes, all at revision rev) from index k on, each with
// its place and the revision's size, then one change at next: no gap, no
// duplicate.
func checkRest(got []testkit.Frame, txn []ctxd.Write, rev uint64, k int, next uint64) error {
	want := len(txn) - k + 1
	if len(got) != want {
		return fmt.Errorf("got %d changes, want %d (the %d after index %d of revision %d, then %d): %+v", len(got), want, len(txn)-k, k, rev, next, got)
	}
	for i, w := range txn[k:] {
		g := got[i]
		if g.Rev != rev || g.Key != w.Key || g.Op != w.Op.String() || g.Index != k+i || g.Count != len(txn) {
			return fmt.Errorf("change %d: got rev %d %s %s index %d/%d, want rev %d %s %s index %d/%d",
				i, g.Rev, g.Key, g.Op, g.Index, g.Count, rev, w.Key, w.Op, k+i, len(txn))
		}
	}
	if last := got[len(got)-1]; last.Rev != next || last.Count != 0 {
		return fmt.Errorf("last change: rev %d count %d, want %d alone in its revision", last.Rev, last.Count, next)
	}
	return nil
}

// Issue #16: on etcd the changes of one transaction share its revision,
// and the one-change-per-frame feed sends them as several frames. A
// client that handled the first k of them and lost its connection
// resumes with from_rev=R&from_index=k (on the same instance, or on
// another one on the same etcd) and gets exactly the rest: no gap, no
// duplicate. Each frame of such a revision says its place (index,
// count). The negative control resumes with from_rev=R alone, the rule
// before index: the check fails, as the rest of R is lost.
func TestEtcdResumeInsideRevision(t *testing.T) {
	ctx := context.Background()
	a, b := openEtcd(t, etcdkit.Name(t)), openEtcd(t, etcdkit.Name(t))
	urlA, urlB := watchServer(t, a), watchServer(t, b)

	live := testkit.DialWatch(t, urlA(url.Values{}), nil)
	live.Expect(ctxd.TypeSubscribed)
	_, err := a.Put(ctx, "default", "gone", json.RawMessage(`0`), nil, "t")
	require.NoError(t, err)
	require.Equal(t, "gone", live.Expect(ctxd.TypeContextUpdated).Key)
	txn := []ctxd.Write{
		{Namespace: "default", Key: "t0", Op: ctxd.OpPut, Value: json.RawMessage(`0`), Who: "t"},
		{Namespace: "default", Key: "t1", Op: ctxd.OpPut, Value: json.RawMessage(`1`), Who: "t"},
		{Namespace: "default", Key: "gone", Op: ctxd.OpDelete, Who: "t"},
		{Namespace: "default", Key: "t3", Op: ctxd.OpPut, Value: json.RawMessage(`3`), Who: "t"},
	}
	res, err := a.Txn(ctx, txn)
	require.NoError(t, err)
	rev := res.Revision
	// The live watcher sees every change of the txn, one per frame, each
	// with its place in the revision.
	for i, w := range txn {
		f := live.Expect(ctxd.TypeContextUpdated)
		require.Equal(t, [4]any{rev, w.Key, i, len(txn)}, [4]any{f.Rev, f.Key, f.Index, f.Count})
	}

	nextWrite := func() uint64 {
		r, err := b.Put(ctx, "default", "next", json.RawMessage(`1`), nil, "t")
		require.NoError(t, err)
		return r.ModRev
	}
	next := nextWrite()
	// resume connects with q and reads the changes up to next.
	resume := func(wsURL func(url.Values) string, q url.Values) []testkit.Frame {
		ws := testkit.DialWatch(t, wsURL(q), nil)
		sub := ws.Expect(ctxd.TypeSubscribed)
		if v := q.Get("from_index"); v != "" {
			assert.Equal(t, v, strconv.Itoa(sub.Index), "subscribed names the position inside the revision")
		}
		return ws.Changes(next)
	}
	for k := 1; k < len(txn); k++ {
		// A client handles the first k changes of the txn and drops the
		// connection: the rest, already sent, is lost with it.
		first := testkit.DialWatch(t, urlA(url.Values{"from_rev": {strconv.FormatUint(rev-1, 10)}}), nil)
		first.Expect(ctxd.TypeSubscribed)
		for i := range k {
			f := first.Expect(ctxd.TypeContextUpdated)
			require.Equal(t, txn[i].Key, f.Key)
		}
		require.NoError(t, first.Conn.Close())
		at := url.Values{"from_rev": {strconv.FormatUint(rev, 10)}, "from_index": {strconv.Itoa(k)}}
		for name, u := range map[string]func(url.Values) string{"same instance": urlA, "other instance": urlB} {
			assert.NoError(t, checkRest(resume(u, at), txn, rev, k, next), "k=%d, %s", k, name)
		}
		// The subscribe message takes the same position.
		ws := testkit.DialWatch(t, urlB(url.Values{"ns": {"nothing"}}), nil)
		ws.Expect(ctxd.TypeSubscribed)
		ws.SendJSON(map[string]any{"type": "subscribe", "id": 1, "ns": "default", "from_rev": rev, "from_index": k})
		sub := ws.Expect(ctxd.TypeSubscribed)
		assert.Equal(t, [2]any{rev, k}, [2]any{sub.Rev, sub.Index}, "subscribed names the position")
		assert.NoError(t, checkRest(ws.Changes(next), txn, rev, k, next), "subscribe, k=%d", k)

		// Negative control: the resume point without the index loses the
		// rest of the revision.
		old := resume(urlB, url.Values{"from_rev": {strconv.FormatUint(rev, 10)}})
		assert.Error(t, checkRest(old, txn, rev, k, next), "from_rev alone must skip the rest of revision %d", rev)
		assert.Len(t, old, 1, "from_rev alone: only the change after the revision")
	}

	// A from_index of the whole revision or more, or with a revision of
	// one change, is the whole revision.
	for _, q := range []url.Values{
		{"from_rev": {strconv.FormatUint(rev, 10)}, "from_index": {strconv.Itoa(len(txn))}},
		{"from_rev": {strconv.FormatUint(rev, 10)}, "from_index": {"99"}},
		{"from_rev": {strconv.FormatUint(next, 10)}, "from_index": {"1"}},
	} {
		ws := testkit.DialWatch(t, urlB(q), nil)
		sub := ws.Expect(ctxd.TypeSubscribed)
		assert.Zero(t, sub.Index, "%v: a whole revision", q)
		assert.Equal(t, q.Get("from_rev"), strconv.FormatUint(sub.Rev, 10))
		if sub.Rev < next {
			assert.Equal(t, []uint64{next}, frameRevs(ws.Changes(next)), "%v", q)
		}
	}
	// from_index=0: none of the revision yet.
	zero := resume(urlB, url.Values{"from_rev": {strconv.FormatUint(rev, 10)}, "from_index": {"0"}})
	assert.NoError(t, checkRest(zero, txn, rev, 0, next))

	// Bad input: 400, nothing else.
	for _, q := range []url.Values{
		{"from_index": {"1"}},
		{"from_rev": {"1"}, "from_index": {"-1"}},
		{"from_rev": {"1"}, "from_index": {"x"}},
	} {
		c, resp, err := testkit.DialWatchErr(urlA(q), nil)
		require.Error(t, err, "%v", q)
		if c != nil {
			c.Close()
		}
		require.NotNil(t, resp, "%v", q)
		assert.Equal(t, http.StatusBadRequest, resp.StatusCode, "%v", q)
		resp.Body.Close()
	}
	ws := testkit.DialWatch(t, urlA(url.Values{}), nil)
	ws.Expect(ctxd.TypeSubscribed)
	ws.SendJSON(map[string]any{"type": "subscribe", "id": 2, "ns": "default", "from_index": 1})
	e := ws.Expect(ctxd.TypeError)
	assert.Equal(t, ctxd.CodeBadRequest, e.Code)
}

func frameRevs(fs []testkit.Frame) []uint64 {
	out := make([]uint64, len(fs))
	for i, f := range fs {
		out[i] = f.Rev
	}
	return out
}

// On bolt every revision has one change: frames carry no index or count,
// and a from_index (a client written for etcd) is accepted: 1 or more is
// the whole revision, as from_rev alone; 0 is none of it.
func TestBoltFromIndexIsWholeRevision(t *testing.T) {
	ts := startServer(t, realtime.Options{})
	ts.put("default", "a", "1")
	r2, r3 := ts.put("default", "b", "2"), ts.put("default", "c", "3")
	for _, c := range []struct {
		index string
		want  []uint64
	}{{"", []uint64{r3}}, {"1", []uint64{r3}}, {"5", []uint64{r3}}, {"0", []uint64{r2, r3}}} {
		q := url.Values{"from_rev": {strconv.FormatUint(r2, 10)}}
		if c.index != "" {
			q.Set("from_index", c.index)
		}
		ws := testkit.DialWatch(t, ts.wsURL(q), nil)
		sub := ws.Expect(ctxd.TypeSubscribed)
		assert.Zero(t, sub.Index, "from_index=%s", c.index)
		got := ws.Changes(r3)
		assert.Equal(t, c.want, frameRevs(got), "from_index=%s", c.index)
		for _, f := range got {
			assert.Zero(t, f.Count, "a bolt frame has no count")
		}
	}
}

// A subscription added without from_rev starts after the last change
// already sent, also when that is inside a revision of several changes:
// a client that resumed inside a transaction's revision (or is being
// sent one) and subscribes to a prefix whose keys the revision holds gets
// each change once, in order. The client stops reading after a few
// changes of the revision; its small buffers and a window of one frame
// hold the hub there, inside the revision, when the subscribe arrives.
func TestEtcdSubscribeInsideRevision(t *testing.T) {
	ctx := context.Background()
	st := openEtcd(t, etcdkit.Name(t))
	const buf = 4 << 10
	_, wsURL := etcdHub(t, st, realtime.Options{Window: 1}, buf)
	big := json.RawMessage(`"` + strings.Repeat("x", buf) + `"`)
	var txn []ctxd.Write
	for i := range 24 {
		txn = append(txn, ctxd.Write{Namespace: "default", Key: fmt.Sprintf("a/%02d", i), Op: ctxd.OpPut, Value: big, Who: "t"})
	}
	res, err := st.Txn(ctx, txn)
	require.NoError(t, err)
	rev := res.Revision
	r, err := st.Put(ctx, "default", "a/next", json.RawMessage(`1`), nil, "t")
	require.NoError(t, err)
	next := r.ModRev

	for _, k := range []int{0, 3} {
		q := url.Values{"ns": {"default"}, "prefix": {"a/"}, "from_rev": {strconv.FormatUint(rev-1, 10)}}
		if k > 0 {
			q = url.Values{"ns": {"default"}, "prefix": {"a/"}, "from_rev": {strconv.FormatUint(rev, 10)}, "from_index": {strconv.Itoa(k)}}
		}
		ws := dialSmall(t, wsURL(q), buf) // the kernel's own would hold the whole revision (96 KiB)
		ws.Expect(ctxd.TypeSubscribed)
		// Read two changes: the hub is past them when the subscribe comes.
		var got []testkit.Frame
		for range 2 {
			got = append(got, ws.Expect(ctxd.TypeContextUpdated))
		}
		// a/0 matches a/00..a/09, some of them sent already.
		ws.SendJSON(map[string]any{"type": "subscribe", "id": 1, "ns": "default", "prefix": "a/0"})
		var sub testkit.Frame
		for {
			f := ws.Next()
			if f.Type == ctxd.TypeSubscribed {
				sub = f
				break
			}
			require.Equal(t, ctxd.TypeContextUpdated, f.Type, "message: %+v", f)
			got = append(got, f)
		}
		assert.Equal(t, rev, sub.Rev, "k=%d: subscribed names the revision it is inside", k)
		assert.GreaterOrEqual(t, sub.Index, k+2, "k=%d: subscribed names the place inside the revision", k)
		got = append(got, ws.Changes(next)...)
		var want, places []string
		for i := k; i < len(txn); i++ {
			want = append(want, fmt.Sprintf("%d/%d %s", rev, i, txn[i].Key))
		}
		want = append(want, fmt.Sprintf("%d/0 a/next", next))
		for _, f := range got {
			places = append(places, fmt.Sprintf("%d/%d %s", f.Rev, f.Index, f.Key))
		}
		assert.Equal(t, want, places, "k=%d: each change once, in order", k)
	}
}
