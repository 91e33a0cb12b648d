package socketio_test

import (
	"context"
	"encoding/json"
	"strconv"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/framework0/ctxd"
	"github.com/framework0/ctxd/internal/testkit"
	"github.com/framework0/ctxd/internal/testkit/etcdkit"
)

// Issue #16 on the Socket.IO door: each context_updated of an etcd
// transaction's revision carries its place (index, count), and a client
// that handled the first k of them resumes with from_rev and from_index
// (auth payload or query), on the same or another instance, and gets
// exactly the rest. The negative control (from_rev alone) gets none of
// the rest.
func TestEtcdResumeInsideRevision(t *testing.T) {
	endpoint, prefix := etcdkit.Shared(t).Endpoint, etcdkit.Prefix(t.Name())
	a := testkit.StartServer(t, testkit.WithEtcd(endpoint, prefix))
	b := testkit.StartServer(t, testkit.WithEtcd(endpoint, prefix))
	ctx := context.Background()
	txn := []ctxd.Write{
		{Namespace: "default", Key: "t0", Op: ctxd.OpPut, Value: json.RawMessage(`0`), Who: "t"},
		{Namespace: "default", Key: "t1", Op: ctxd.OpPut, Value: json.RawMessage(`1`), Who: "t"},
		{Namespace: "default", Key: "t2", Op: ctxd.OpPut, Value: json.RawMessage(`2`), Who: "t"},
	}
	res, err := a.Backend().Txn(ctx, txn)
	require.NoError(t, err)
	rev := res.Revision
	next, err := b.Backend().Put(ctx, "default", "next", json.RawMessage(`1`), nil, "t")
	require.NoError(t, err)

	// keys connects with auth (and query) and returns the keys of the
	// context_updated events up to next, checking each one's place.
	keys := func(srv *testkit.Server, auth map[string]any, q map[string][]string) []string {
		c := dial(t, srv, sioOpts{websocket: true, query: q})
		require.Contains(t, c.connect(auth), `"sid"`)
		var out []string
		for {
			e := c.waitEvent(ctxd.TypeContextUpdated)
			out = append(out, e.Data["key"].(string))
			if uint64(e.Data["rev"].(float64)) == next.ModRev {
				assert.NotContains(t, e.Data, "index", "a revision of one change has no index")
				c.close()
				return out
			}
			i := len(out) - 1 + int(auth["from_index"].(int))
			assert.Equal(t, []any{float64(rev), float64(i), float64(len(txn))}, []any{e.Data["rev"], e.Data["index"], e.Data["count"]})
		}
	}
	for k := range len(txn) {
		want := []string{}
		for _, w := range txn[k:] {
			want = append(want, w.Key)
		}
		want = append(want, "next")
		at := map[string]any{"from_rev": rev, "from_index": k}
		assert.Equal(t, want, keys(a, at, nil), "k=%d, same instance", k)
		assert.Equal(t, want, keys(b, at, nil), "k=%d, other instance", k)
		// In the query, as strings.
		assert.Equal(t, want, keys(b, map[string]any{"from_index": k},
			map[string][]string{"from_rev": {strconv.FormatUint(rev, 10)}, "from_index": {strconv.Itoa(k)}}), "k=%d, query", k)
	}
	// Negative control: from_rev alone is the whole revision, the rest of
	// it is not sent.
	c := dial(t, b, sioOpts{websocket: true})
	require.Contains(t, c.connect(map[string]any{"from_rev": rev}), `"sid"`)
	e := c.waitEvent(ctxd.TypeContextUpdated)
	assert.Equal(t, "next", e.Data["key"], "from_rev alone skips the rest of revision %d", rev)
	c.close()

	// Bad input: a connect error, nothing else.
	for _, auth := range []map[string]any{{"from_index": 1}, {"from_rev": rev, "from_index": "x"}} {
		c := dial(t, a, sioOpts{websocket: true})
		assert.Contains(t, c.connect(auth), `"code":"bad_request"`, "%v", auth)
		c.close()
	}
}
