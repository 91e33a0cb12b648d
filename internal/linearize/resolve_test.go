package linearize_test

import (
	"encoding/json"
	"os"
	"testing"
	"time"

	"github.com/anishathalye/porcupine"
	"github.com/stretchr/testify/require"

	"github.com/framework0/ctxd/client"
	lin "github.com/framework0/ctxd/internal/linearize"
)

// Changes of a feed, by hand: fput(rev, key, value, version), fdel(rev,
// key, deleted version).

func fput(rev uint64, key, value string, version uint64) client.WatchEvent {
	v, _ := json.Marshal(value)
	return client.WatchEvent{Type: client.EventChange, Rev: rev, Key: key, Op: "put", Value: v, Version: version}
}

func fdel(rev uint64, key string, version uint64) client.WatchEvent {
	return client.WatchEvent{Type: client.EventChange, Rev: rev, Key: key, Op: "delete", Value: json.RawMessage("null"), Version: version}
}

// inTxn marks changes as the index-th of count of one revision.
func inTxn(ev client.WatchEvent, index, count int) client.WatchEvent {
	ev.Index, ev.Count = index, count
	return ev
}

// TestResolve: histories and feeds by hand, the verdicts before and after
// resolution, and what resolution did. Resolution only picks among the
// orders porcupine tried already, so no illegal history becomes legal;
// where the feed tells more than the answers, a legal-looking history
// becomes illegal.
func TestResolve(t *testing.T) {
	for _, c := range []struct {
		name          string
		history       lin.History
		feed          []client.WatchEvent
		before, after porcupine.CheckResult
		want          lin.Resolution
	}{
		{
			name: "a stale read stays caught",
			history: lin.History{
				op(0, 1, 2, put("a", "x"), rec("x", 1, 1, 1)),
				unknown(1, 3, put("a", "y")),
				op(2, 4, 5, get("a"), rec("y", 2, 1, 2)),
				op(2, 6, 7, get("a"), rec("x", 1, 1, 1)),
			},
			feed:   []client.WatchEvent{fput(1, "a", "x", 1), fput(2, "a", "y", 2)},
			before: porcupine.Illegal, after: porcupine.Illegal,
			want: lin.Resolution{Unknown: 1, Applied: 1, Bounded: 1},
		},
		{
			name: "an acknowledged write lost stays caught",
			history: lin.History{
				unknown(0, 1, put("a", "x")),
				op(1, 2, 3, put("a", "y"), rec("y", 1, 2, 2)),
				op(1, 4, 5, get("a"), rec("x", 1, 1, 1)),
			},
			feed:   []client.WatchEvent{fput(1, "a", "x", 1)},
			before: porcupine.Illegal, after: porcupine.Illegal,
			want: lin.Resolution{Unknown: 1, Applied: 1, Bounded: 1},
		},
		{
			name: "a write in the feed whose revision a read contradicts",
			history: lin.History{
				unknown(0, 1, put("a", "x")),
				op(1, 5, 6, get("a"), rec("x", 1, 7, 7)),
			},
			feed:   []client.WatchEvent{fput(3, "a", "x", 1)},
			before: porcupine.Ok, after: porcupine.Illegal,
			want: lin.Resolution{Unknown: 1, Applied: 1, Bounded: 1},
		},
		{
			name: "a write in the feed that a later acknowledged write lost",
			history: lin.History{
				unknown(0, 1, put("a", "x")),
				op(1, 5, 6, put("a", "y"), rec("y", 1, 2, 2)),
			},
			feed:   []client.WatchEvent{fput(1, "a", "x", 1), fput(2, "a", "y", 1)},
			before: porcupine.Ok, after: porcupine.Illegal,
			want: lin.Resolution{Unknown: 1, Applied: 1, Bounded: 1},
		},
		{
			name: "a value a read saw that the feed never showed",
			history: lin.History{
				unknown(0, 1, put("a", "x")),
				op(1, 5, 6, get("a"), rec("x", 1, 3, 3)),
			},
			before: porcupine.Ok, after: porcupine.Illegal,
			want: lin.Resolution{Unknown: 1, Dropped: 1},
		},
		{
			name: "a delete the feed shows that a read contradicts",
			history: lin.History{
				op(0, 1, 2, put("a", "x"), rec("x", 1, 1, 1)),
				unknown(1, 3, del("a")),
				op(0, 4, 5, put("b", "y"), rec("y", 1, 3, 3)),
				op(0, 6, 7, txn(lin.Write{Key: "a", Value: "z"}, lin.Write{Key: "b", Value: "w"}), txnOK(
					lin.Record{Value: "z", Version: 2, CreateRev: 1, ModRev: 4}, lin.Record{Value: "w", Version: 2, CreateRev: 3, ModRev: 4})),
			},
			feed: []client.WatchEvent{fput(1, "a", "x", 1), fdel(2, "a", 1), fput(3, "b", "y", 1),
				inTxn(fput(4, "a", "z", 1), 0, 2), inTxn(fput(4, "b", "w", 2), 1, 2)},
			before: porcupine.Ok, after: porcupine.Illegal,
			want: lin.Resolution{Unknown: 1, Applied: 1, Bounded: 1},
		},
		{
			name: "a correct server's unknown writes, each way",
			history: lin.History{
				unknown(0, 1, put("a", "x")),    // took effect
				unknown(1, 2, put("a", "lost")), // did not
				op(2, 3, 4, get("a"), rec("x", 1, 1, 1)),
				unknown(2, 5, txn(lin.Write{Key: "a", Value: "t1"}, lin.Write{Key: "b", Delete: true})), // did not (b is absent)
				unknown(3, 6, txn(lin.Write{Key: "a", Value: "t2"}, lin.Write{Key: "b", Value: "t2"})),  // took effect
				unknown(4, 7, del("b")),      // took effect
				unknown(5, 8, delIf("a", 9)), // did not
				op(0, 9, 10, get("b"), notFound),
				op(0, 11, 12, get("a"), rec("t2", 2, 1, 2)),
			},
			feed:   []client.WatchEvent{fput(1, "a", "x", 1), inTxn(fput(2, "a", "t2", 2), 0, 2), inTxn(fput(2, "b", "t2", 1), 1, 2), fdel(3, "b", 1)},
			before: porcupine.Ok, after: porcupine.Ok,
			want: lin.Resolution{Unknown: 6, Applied: 3, Bounded: 2, Dropped: 3},
		},
		{
			name: "two unknown deletes, one delete in the feed: which is not known",
			history: lin.History{
				op(0, 1, 2, put("a", "x"), rec("x", 1, 1, 1)),
				unknown(1, 3, del("a")),
				unknown(2, 4, del("a")),
				op(0, 5, 6, get("a"), notFound),
			},
			feed:   []client.WatchEvent{fput(1, "a", "x", 1), fdel(2, "a", 1)},
			before: porcupine.Ok, after: porcupine.Ok,
			want: lin.Resolution{Unknown: 2, Left: 2},
		},
		{
			name: "a value twice in the feed is left unknown",
			history: lin.History{
				unknown(0, 1, put("a", "x")),
				op(1, 5, 6, get("a"), rec("x", 2, 1, 2)),
			},
			feed:   []client.WatchEvent{fput(1, "a", "x", 1), fput(2, "a", "x", 2)},
			before: porcupine.Illegal, after: porcupine.Illegal,
			want: lin.Resolution{Unknown: 1, Left: 1},
		},
	} {
		t.Run(c.name, func(t *testing.T) {
			require.Equal(t, c.before, lin.Verify(c.history, 0).Verdict, "before resolution")
			resolved, res := lin.Resolve(c.history, c.feed)
			require.Equal(t, c.want, res)
			require.Equal(t, c.after, lin.Verify(resolved, 0).Verdict, "after resolution: %v", res)
		})
	}
}

// A resolved write returns when the first operation that reports its
// revision or a later one returns (it must come before it), not earlier:
// here the get at 5-6 (the put at 3-4 reports an earlier revision).
func TestResolveBoundsReturn(t *testing.T) {
	h := lin.History{
		unknown(0, 1, put("a", "x")),
		op(1, 3, 4, put("b", "y"), rec("y", 1, 1, 1)),
		op(1, 5, 6, get("a"), rec("x", 1, 2, 2)),
		op(1, 7, 8, get("a"), rec("x", 1, 2, 2)),
	}
	h[1].Input = txn(lin.Write{Key: "a", Delete: true, IfVersion: ver(5)}, lin.Write{Key: "b", Value: "y"}) // links a and b: one partition
	h[1].Output = lin.Output{Status: lin.Conflict, CurrentVersion: 0, Key: "a"}
	resolved, res := lin.Resolve(h, []client.WatchEvent{fput(2, "a", "x", 1)})
	require.Equal(t, lin.Resolution{Unknown: 1, Applied: 1, Bounded: 1}, res)
	require.Equal(t, int64(6), resolved[0].Return)
	require.Equal(t, rec("x", 1, 0, 2), resolved[0].Output)
	require.Equal(t, porcupine.Ok, lin.Verify(resolved, 0).Verdict)
}

// TestResolveDecidesWhatPorcupineCannot: a simulated correct server's
// history with many writes of unknown outcome on one group of keys, as a
// paused etcd leader leaves, and one stale read in the middle. To refuse
// it porcupine must try every way the unknown writes may have gone:
// before resolution it gets CTXD_LINEARIZE_BEFORE (a duration; default
// 1s), and its verdict is only logged (Unknown after 20s, by hand);
// after resolution it must decide, and refuse the history.
func TestResolveDecidesWhatPorcupineCannot(t *testing.T) {
	budget := time.Second
	if s := os.Getenv("CTXD_LINEARIZE_BEFORE"); s != "" {
		var err error
		budget, err = time.ParseDuration(s)
		require.NoError(t, err)
	}
	sim := simulation{clients: 8, ops: 80, unknown: 0.05, seed: 0, keys: []string{"a", "b"}}
	h, feed := sim.run()
	require.Equal(t, porcupine.Ok, lin.Verify(h, lin.DefaultTimeout).Verdict, "the correct server's history")
	h = withStaleRead(h)
	before := lin.Verify(h, budget)
	t.Logf("before resolution, with %v: %v", budget, before)
	resolved, res := lin.Resolve(h, feed)
	t.Logf("resolution: %v", res)
	after := lin.Verify(resolved, lin.DefaultTimeout)
	t.Logf("after resolution: %v", after)
	require.Equal(t, porcupine.Illegal, after.Verdict, "the stale read")
	require.Zero(t, res.Left)
}

// Simulated correct histories pass before and after resolution, every
// put and transaction with a put is resolved, and resolution never
// leaves more unknown outcomes than deletes.
func TestResolveSimulated(t *testing.T) {
	for seed := range uint64(20) {
		sim := simulation{clients: 4, ops: 40, unknown: 0.1, seed: seed, keys: []string{"a", "b"}}
		h, feed := sim.run()
		require.Equal(t, porcupine.Ok, lin.Verify(h, lin.DefaultTimeout).Verdict, "seed %d before", seed)
		resolved, res := lin.Resolve(h, feed)
		require.Equal(t, porcupine.Ok, lin.Verify(resolved, lin.DefaultTimeout).Verdict, "seed %d after: %v", seed, res)
		deletes := 0
		for _, op := range resolved {
			if op.Output.(lin.Output).Status == lin.Unknown {
				in := op.Input.(lin.Input)
				require.True(t, in.Kind == lin.Delete || in.Kind == lin.Txn, "seed %d: %+v left unknown", seed, in)
				for _, w := range in.Ops {
					require.True(t, w.Delete, "seed %d: transaction with a put left unknown: %+v", seed, in)
				}
				deletes++
			}
		}
		require.Equal(t, deletes, res.Left)
	}
}
