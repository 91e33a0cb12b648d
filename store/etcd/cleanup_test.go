package etcd_test

import (
	"context"
	"encoding/json"
	"errors"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/framework0/ctxd"
	"github.com/framework0/ctxd/internal/testkit"
	"github.com/framework0/ctxd/internal/testkit/etcdkit"
	"github.com/framework0/ctxd/store/etcd"
)

// TestStaleGenerationsRemoved: the keys a restorer that died leaves
// behind — the replaced generation (it died between its switch and its
// cleanup), generation 0's data, a half-written generation whose restore
// never switched — are removed by the next instance that opens; a
// generation whose restore is still in flight (its mark is held) is kept
// until its mark is gone, and the current generation always.
func TestStaleGenerationsRemoved(t *testing.T) {
	ctx := context.Background()
	prefix := etcdkit.Prefix(etcdkit.Name(t))
	st := open(t, etcd.Options{Prefix: prefix})
	_, err := st.Put(ctx, "default", "kept", json.RawMessage(`1`), nil, "t")
	require.NoError(t, err)
	path, _ := testkit.WriteSnapshot(t, st)
	_, err = st.Put(ctx, "default", "replaced", json.RawMessage(`2`), nil, "t")
	require.NoError(t, err)
	res, err := st.Restore(ctx, path, ctxd.RestoreOptions{})
	require.NoError(t, err)
	cur := st.Generation()
	require.NotZero(t, cur)

	cli, err := clientv3.New(clientv3.Config{Endpoints: []string{etcdkit.Shared(t).Endpoint}})
	require.NoError(t, err)
	defer cli.Close()
	count := etcdkit.KeyCounter(t, []string{etcdkit.Shared(t).Endpoint}, prefix)
	gen := func(id uint64) string { return "g/" + strconv.FormatUint(id, 10) + "/" }
	restored := count(gen(cur))
	require.Positive(t, restored)
	require.Zero(t, count("k/"), "the restore removed generation 0's keys")

	// What dead restorers leave: generation 0's data, a generation older
	// than the switch, one younger that never switched, and one younger
	// still in flight (marked).
	inFlight := uint64(res.Revision) + 1_000_000
	for _, k := range []string{"k/default/old", gen(cur-1) + "k/default/old", gen(res.Revision+1) + "k/default/half", gen(inFlight) + "k/default/half"} {
		_, err := cli.Put(ctx, prefix+k, "x")
		require.NoError(t, err)
	}
	unmark, err := etcd.MarkRestore(st, inFlight)
	require.NoError(t, err)
	// The control: the garbage is there until someone removes it.
	require.EqualValues(t, 1, count("k/"))
	require.EqualValues(t, 1, count(gen(cur-1)))

	// The next instance to open removes all but the marked generation.
	other := open(t, etcd.Options{Prefix: prefix})
	testkit.Eventually(t, func() bool { return count("k/")+count(gen(cur-1))+count(gen(res.Revision+1)) == 0 }, "stale generations removed at Open")
	require.EqualValues(t, 1, count(gen(inFlight)), "a restore in flight keeps its generation")
	require.Equal(t, restored, count(gen(cur)), "the current generation untouched")
	rec, err := other.Get("default", "kept")
	require.NoError(t, err)
	require.JSONEq(t, `1`, string(rec.Value))

	unmark()
	require.Equal(t, 1, etcd.RemoveStaleGenerations(other), "the abandoned generation, once its mark is gone")
	require.Zero(t, count(gen(inFlight)))
	require.Equal(t, restored, count(gen(cur)))
	require.Zero(t, etcd.RemoveStaleGenerations(other), "nothing left to remove")
}

// TestMissedSwitchCatchesUp: an instance cut off from etcd (its
// connections closed and refused by a proxy) while another instance
// restores the prefix, writes and compacts etcd past the switch, cannot
// see the switch on its watch: it resumes below the compaction. It must
// notice (reloadGeneration), move to the restored generation, serve its
// data and write there.
func TestMissedSwitchCatchesUp(t *testing.T) { missedSwitch(t, 0) }

// TestMissedSwitchCatchesUpWhenEtcdFailsTheFirstReload: as
// TestMissedSwitchCatchesUp, and the instance's first reads of the
// pointer after its watch was compacted fail (as when etcd does not
// answer just then, right after a partition heals): four, more than the
// cache's fill tries before the watch goes on without it (a fill reads
// the pointer too, and catches the instance up when it can). Before, the watch went on
// without it: the instance stayed on the replaced generation, filled its
// cache from its deleted keys and read the restored generation's events
// with the replaced one's keys (none was a change): its reads answered
// not found and its watchers got nothing, until a write or an uncached
// read through it caught it up. Now the watch reads the pointer again
// until it has it, before it fills its cache or watches again.
func TestMissedSwitchCatchesUpWhenEtcdFailsTheFirstReload(t *testing.T) { missedSwitch(t, 4) }

// missedSwitch is TestMissedSwitchCatchesUp with the cut-off instance's
// first failedReloads reads of the pointer failing.
func missedSwitch(t *testing.T, failedReloads int) {
	ctx := context.Background()
	srv := etcdkit.Own(t)
	proxy := testkit.StartTCPProxy(t, strings.TrimPrefix(srv.Endpoint, "http://"))
	a := openOn(t, srv.Endpoint, "/missed/")
	b := openOn(t, "http://"+proxy.Addr(), "/missed/")
	put := func(st *etcd.Store, key, value string) {
		_, err := st.Put(ctx, "default", key, json.RawMessage(value), nil, "t")
		require.NoError(t, err)
	}
	value := func(st *etcd.Store, key string) string {
		rec, err := st.Get("default", key)
		if errors.Is(err, ctxd.ErrNotFound) {
			return ""
		}
		require.NoError(t, err)
		return string(rec.Value)
	}
	put(a, "x", "1")
	path, _ := testkit.WriteSnapshot(t, a)
	put(a, "x", "2")
	testkit.Eventually(t, func() bool { return value(b, "x") == "2" }, "b reads a's write")

	proxy.Cut()
	_, err := a.Restore(ctx, path, ctxd.RestoreOptions{})
	require.NoError(t, err)
	put(a, "y", "3")
	_, err = a.CompactKeep(ctx, a.Revision(), 1)
	require.NoError(t, err)
	require.Zero(t, b.Generation(), "b cut off before the switch") // the control: b is behind
	etcd.FailReloads(b, failedReloads)
	proxy.Heal()

	testkit.Eventually(t, func() bool { return b.Generation() == a.Generation() }, "b moves to the restored generation")
	require.Equal(t, "1", value(b, "x"))
	require.Equal(t, "3", value(b, "y"))
	put(b, "z", "4")
	require.Equal(t, "4", value(a, "z"), "b writes in the restored generation")
}

// A full restore that fails before its switch did not apply, whatever
// became of its staging writes: it answers unavailable (safe to retry),
// never outcome_unknown, and the data is as it was. Its context ended
// before it began, so each of its etcd requests fails; before, the first
// (its claim) answered outcome_unknown.
func TestRestoreFailingBeforeItsSwitchIsUnavailable(t *testing.T) {
	ctx := context.Background()
	st := open(t, etcd.Options{Prefix: etcdkit.Prefix(etcdkit.Name(t))})
	_, err := st.Put(ctx, "default", "kept", json.RawMessage(`1`), nil, "t")
	require.NoError(t, err)
	path, _ := testkit.WriteSnapshot(t, st)
	_, err = st.Put(ctx, "default", "kept", json.RawMessage(`2`), nil, "t")
	require.NoError(t, err)
	gen := st.Generation()

	ended, cancel := context.WithDeadline(ctx, time.Now().Add(-time.Second))
	defer cancel()
	_, err = st.Restore(ended, path, ctxd.RestoreOptions{})
	require.ErrorIs(t, err, ctxd.ErrUnavailable)
	require.NotErrorIs(t, err, ctxd.ErrOutcomeUnknown)
	require.Equal(t, gen, st.Generation(), "no switch")
	rec, err := st.Get("default", "kept")
	require.NoError(t, err)
	require.Equal(t, "2", string(rec.Value), "the data as it was")

	// The control: the same restore, its context alive, applies.
	_, err = st.Restore(ctx, path, ctxd.RestoreOptions{})
	require.NoError(t, err)
	rec, err = st.Get("default", "kept")
	require.NoError(t, err)
	require.Equal(t, "1", string(rec.Value))
}

// openOn opens a store on endpoint and prefix, closed when the test ends.
func openOn(t *testing.T, endpoint, prefix string) *etcd.Store {
	t.Helper()
	st, err := etcd.Open(etcd.Options{Endpoints: []string{endpoint}, Prefix: prefix, RequestTimeout: 2 * time.Second})
	require.NoError(t, err)
	t.Cleanup(func() { require.NoError(t, st.Close()) })
	return st
}
