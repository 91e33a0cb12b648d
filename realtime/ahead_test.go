package realtime_test

import (
	"context"
	"encoding/json"
	"net/url"
	"strconv"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/framework0/ctxd"
	"github.com/framework0/ctxd/internal/testkit"
	"github.com/framework0/ctxd/internal/testkit/etcdkit"
	"github.com/framework0/ctxd/realtime"
)

// A client that resumes with a from_rev this database never had (it was
// replaced by an older backup, or lost and started empty, or the client
// followed another deployment) is told to re-read the state (reset at the
// database's revision) and then gets every change. Before, it waited in
// silence until the revisions passed its from_rev, and the changes before
// that never came. A from_rev the database has is resumed as ever.
func TestResumeFromARevisionTheDatabaseNeverHad(t *testing.T) {
	ts := startServer(t, realtime.Options{})
	for i := range 3 {
		ts.put("default", "k"+strconv.Itoa(i), `1`)
	}
	ahead := testkit.DialWatch(t, ts.wsURL(url.Values{"from_rev": {"50"}}), nil)
	require.Equal(t, uint64(3), ahead.Expect(ctxd.TypeSubscribed).Rev)
	reset := ahead.Expect(ctxd.TypeReset)
	assert.Equal(t, uint64(3), reset.Rev)
	assert.Contains(t, reset.Message, "from_rev 50 is past this database's last revision (3)")

	current := testkit.DialWatch(t, ts.wsURL(url.Values{"from_rev": {"3"}}), nil)
	current.Expect(ctxd.TypeSubscribed)
	// None of revision 4 (from_index=0) is from_rev=3: resumed, not reset
	// (before, revision 4 was taken for a resume point past the database).
	noneOfNext := testkit.DialWatch(t, ts.wsURL(url.Values{"from_rev": {"4"}, "from_index": {"0"}}), nil)
	require.Equal(t, uint64(3), noneOfNext.Expect(ctxd.TypeSubscribed).Rev)

	// A subscribe with such a from_rev, in a session that connected
	// without one: subscribed, then a reset answering it.
	later := testkit.DialWatch(t, ts.wsURL(url.Values{"ns": {"other"}}), nil)
	later.Expect(ctxd.TypeSubscribed)
	later.SendJSON(map[string]any{"type": "subscribe", "id": 7, "ns": "default", "from_rev": 60})
	require.Equal(t, `7`, string(later.Expect(ctxd.TypeSubscribed).ID))
	reset = later.Expect(ctxd.TypeReset)
	assert.Equal(t, [2]any{`7`, uint64(3)}, [2]any{string(reset.ID), reset.Rev})
	assert.Contains(t, reset.Message, "from_rev 60 is past this database's last revision (3)")

	rev := ts.put("default", "after", `2`)
	for _, w := range []*wsClient{ahead, current, noneOfNext, later} {
		f := w.Expect(ctxd.TypeContextUpdated) // for current and noneOfNext: no reset first
		assert.Equal(t, [2]any{rev, "after"}, [2]any{f.Rev, f.Key})
	}
}

// On etcd the question goes to the cluster, not to the instance's own
// view: a from_rev written through another instance is resumed (never
// reset), one past etcd's revision is reset.
func TestEtcdResumeFromARevisionTheClusterNeverHad(t *testing.T) {
	ctx := context.Background()
	name := etcdkit.Name(t)
	a, b := openEtcd(t, name), openEtcd(t, name)
	urlB := watchServer(t, b)
	written, err := a.Put(ctx, "default", "k", json.RawMessage(`1`), nil, "t")
	require.NoError(t, err)

	resumed := testkit.DialWatch(t, urlB(url.Values{"from_rev": {strconv.FormatUint(written.ModRev, 10)}}), nil)
	resumed.Expect(ctxd.TypeSubscribed)
	ahead := testkit.DialWatch(t, urlB(url.Values{"from_rev": {strconv.FormatUint(written.ModRev+1000, 10)}}), nil)
	ahead.Expect(ctxd.TypeSubscribed)
	reset := ahead.Expect(ctxd.TypeReset)
	assert.Contains(t, reset.Message, "from_rev "+strconv.FormatUint(written.ModRev+1000, 10)+" is past this database's last revision")

	next, err := a.Put(ctx, "default", "next", json.RawMessage(`2`), nil, "t")
	require.NoError(t, err)
	f := resumed.Expect(ctxd.TypeContextUpdated)
	assert.Equal(t, [2]any{next.ModRev, "next"}, [2]any{f.Rev, f.Key}, "resumed after k, never reset")
	// The reset is at b's own mark, which may trail the cluster: every
	// change after it follows (k too, when b had not seen it yet).
	want := [][2]any{{next.ModRev, "next"}}
	if reset.Rev < written.ModRev {
		want = append([][2]any{{written.ModRev, "k"}}, want...)
	}
	for _, w := range want {
		f := ahead.Expect(ctxd.TypeContextUpdated)
		assert.Equal(t, w, [2]any{f.Rev, f.Key}, "after the reset at %d", reset.Rev)
	}
}
