package etcd_test

import (
	"context"
	"encoding/json"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/framework0/ctxd"
	"github.com/framework0/ctxd/internal/testkit"
	"github.com/framework0/ctxd/internal/testkit/etcdkit"
	"github.com/framework0/ctxd/store"
	"github.com/framework0/ctxd/store/etcd"
)

// A snapshot or a view (dumps, exports) taken through one instance holds
// every write another instance acknowledged before it, even while the
// first instance's watch is behind: it waits for its watch to reach
// etcd's current revision, not only for its own mark.
func TestSnapshotAndViewHoldWritesOfOtherInstances(t *testing.T) {
	prefix := etcdkit.Prefix(etcdkit.Name(t))
	a := open(t, etcd.Options{Prefix: prefix})
	b := open(t, etcd.Options{Prefix: prefix})
	// b's watch applies each response 50 ms late: its own mark lags.
	etcd.LagReadCache(b, 50*time.Millisecond)
	for i := range 3 {
		w, err := a.Put(context.Background(), "default", "k", json.RawMessage(`1`), nil, "a")
		require.NoError(t, err)

		_, info := testkit.WriteSnapshot(t, b)
		assert.GreaterOrEqual(t, info.Revision, w.ModRev, "round %d: the snapshot holds the write acknowledged before it", i)

		var got ctxd.Record
		require.NoError(t, b.View(func(v store.View) error {
			assert.GreaterOrEqual(t, v.Revision(), w.ModRev, "round %d: the view is at or after the write", i)
			return v.ForEach("default", "k", func(r ctxd.Record) error { got = r; return nil })
		}))
		assert.Equal(t, w.ModRev, got.ModRev, "round %d: the view reads the write", i)
		_, err = a.Delete(context.Background(), "default", "k", nil, "a")
		require.NoError(t, err)
	}
}

// A read through an instance whose watch has not delivered a full
// restore's switch yet (here 3 s behind) reads the restored data, once
// the restore was acknowledged through another instance: the read goes
// past its cache (which waits for the watch at most a second) to etcd,
// and sees there that the generation moved. Before, it read the replaced
// generation's keys: the value from before the restore, or nothing.
func TestAReadBehindARestoreSwitchReadsTheRestoredData(t *testing.T) {
	prefix := etcdkit.Prefix(etcdkit.Name(t))
	a := open(t, etcd.Options{Prefix: prefix})
	c := open(t, etcd.Options{Prefix: prefix})
	ctx := context.Background()
	_, err := a.Put(ctx, "default", "k", json.RawMessage(`"restored"`), nil, "a")
	require.NoError(t, err)
	path, _ := testkit.WriteSnapshot(t, a)
	_, err = a.Put(ctx, "default", "k", json.RawMessage(`"replaced"`), nil, "a")
	require.NoError(t, err)
	_, err = a.Put(ctx, "default", "other", json.RawMessage(`1`), nil, "a")
	require.NoError(t, err)
	testkit.Eventually(t, func() bool { _, err := c.Get("default", "other"); return err == nil }, "c has every write")

	etcd.LagReadCache(c, 3*time.Second)
	_, err = a.Restore(ctx, path, ctxd.RestoreOptions{})
	require.NoError(t, err)
	r, err := c.Get("default", "k")
	require.NoError(t, err)
	assert.JSONEq(t, `"restored"`, string(r.Value))
	page, err := c.List("default", ctxd.ListOptions{})
	require.NoError(t, err)
	require.Len(t, page.Records, 1, "other was written after the snapshot")
	assert.Equal(t, "k", page.Records[0].Key)
	n, err := c.Count("default", "")
	require.NoError(t, err)
	assert.Equal(t, uint64(1), n)
	etcd.LagReadCache(c, 0)
}

// A patch and a keepalive through instances whose watch has not
// delivered a full restore's switch yet (3 s behind) work on the restored
// keys, once the restore was acknowledged through another instance. Both
// read their key before they write it (the cache cannot serve them here:
// their If-Match names the restored version, not the cached one); that
// read went to the replaced generation's keys, which the restore had
// already deleted: the patch answered 409 (current version 0) and the
// keepalive 404 (409 now, as a patch) for keys the restore had brought back.
func TestWritesBehindARestoreSwitchReadTheRestoredData(t *testing.T) {
	prefix := etcdkit.Prefix(etcdkit.Name(t))
	a := open(t, etcd.Options{Prefix: prefix})
	c := open(t, etcd.Options{Prefix: prefix})
	d := open(t, etcd.Options{Prefix: prefix})
	ctx := context.Background()
	putValue(t, a, "doc", `{"n":1}`)
	putTTL(t, a, "hb", `1`, time.Hour)
	path, _ := testkit.WriteSnapshot(t, a)
	putValue(t, a, "doc", `{"n":2}`)
	putTTL(t, a, "hb", `2`, time.Hour)
	for _, s := range []*etcd.Store{c, d} {
		waitValue(t, s, "hb", `2`)
		etcd.LagReadCache(s, 3*time.Second)
		defer etcd.LagReadCache(s, 0)
	}
	_, err := a.Restore(ctx, path, ctxd.RestoreOptions{})
	require.NoError(t, err)
	p, err := c.Patch(ctx, "default", "doc", ctxd.Patch{Type: ctxd.MergePatch, Doc: json.RawMessage(`{"m":1}`)}, u64(1), "c")
	require.NoError(t, err, "the restored doc is at version 1")
	assert.JSONEq(t, `{"n":1,"m":1}`, string(p.Value))
	assert.Equal(t, uint64(2), p.Version)
	k, err := d.KeepAlive(ctx, "default", "hb", time.Hour, u64(1))
	require.NoError(t, err, "the restored hb is at version 1")
	assert.JSONEq(t, `1`, string(k.Value))
	assert.Equal(t, a.Generation(), c.Generation())
	assert.Equal(t, a.Generation(), d.Generation())
}

// A read served from the cache of an instance whose watch has received a
// full restore's switch, but not yet acted on it (held here between the
// cache's apply and the feed's switch), reads the restored data once a
// read elsewhere saw it. Before, the cache applied the response and
// raised its revision to the switch with the replaced generation's
// content still in it (it ignored the pointer key): a read whose barrier
// came before any later write (here the restorer's removal of the
// replaced keys, held back with its watch) answered the value from before
// the restore, after another instance's read had answered the restored one.
func TestACachedReadAtARestoreSwitchReadsTheRestoredData(t *testing.T) {
	prefix := etcdkit.Prefix(etcdkit.Name(t))
	a := open(t, etcd.Options{Prefix: prefix})
	c := open(t, etcd.Options{Prefix: prefix})
	d := open(t, etcd.Options{Prefix: prefix, DirectReads: true})
	ctx := context.Background()
	putValue(t, a, "k", `"restored"`)
	path, _ := testkit.WriteSnapshot(t, a)
	putValue(t, a, "k", `"replaced"`)
	waitValue(t, c, "k", `"replaced"`)

	// a's and c's watches stop right after their caches applied the
	// switch: a's restore waits there for its watch, before it removes
	// the replaced keys, so nothing is written after the switch.
	release := make(chan struct{})
	var wg sync.WaitGroup
	for _, s := range []*etcd.Store{a, c} {
		var once sync.Once
		wg.Add(1)
		atSwitch(s, func() { once.Do(func() { wg.Done(); <-release }) })
		defer etcd.AfterCacheApply(s, nil)
	}
	var restoreErr error
	restored := make(chan struct{})
	go func() {
		defer close(restored)
		_, restoreErr = a.Restore(ctx, path, ctxd.RestoreOptions{})
	}()
	var ended sync.Once
	end := func() { ended.Do(func() { close(release); <-restored }) }
	defer end()
	wg.Wait()

	r, err := d.Get("default", "k")
	require.NoError(t, err)
	require.JSONEq(t, `"restored"`, string(r.Value), "the switch is done")
	r, err = c.Get("default", "k")
	require.NoError(t, err)
	assert.JSONEq(t, `"restored"`, string(r.Value), "a read after another saw the restore")
	page, err := c.List("default", ctxd.ListOptions{})
	require.NoError(t, err)
	require.Len(t, page.Records, 1)
	assert.JSONEq(t, `"restored"`, string(page.Records[0].Value))
	end()
	require.NoError(t, restoreErr)
	assert.Equal(t, a.Generation(), c.Generation())
}

// Two full restores one after the other, through another instance, while
// an instance's watch is held at the first switch: a read through it
// moves it to the second restore's generation (getCurrent), and when its
// watch then delivers the first switch it stays there. Before, the watch
// moved the instance back to the first restore's generation, which the
// second had replaced and deleted, and refilled its cache from it; its
// watch, resuming after the second switch (the read had moved its mark
// there), never came back: its Generation went back (a reset to data no
// one holds) and its cached reads answered the deleted generation (here
// "not found") until a write of its own caught it up. (A fill now reads
// the pointer at its revision and catches the instance up: the test
// fails its reads of the pointer meanwhile, so that only the comparison
// keeps it on the second generation.)
func TestAnInstanceNeverMovesBackToAReplacedGeneration(t *testing.T) {
	a, c, release := restoresPastAHeldWatch(t)
	r, err := c.Get("default", "k")
	require.NoError(t, err)
	assert.JSONEq(t, `"second"`, string(r.Value))
	want := a.Generation()
	require.Equal(t, want, c.Generation(), "the read caught c up")

	fills := c.ReadCache().Fills
	// c's reads of the pointer fail meanwhile (etcd not answering just
	// then): a fill that finds the pointer moved cannot catch c up again.
	etcd.FailReloads(c, 3)
	defer etcd.FailReloads(c, 0)
	release() // c's watch delivers the first switch, and fills its cache again
	testkit.Eventually(t, func() bool { st := c.ReadCache(); return st.Ready && st.Fills > fills }, "c's cache is filled again")
	assert.Equal(t, want, c.Generation(), "c stays on the second restore's generation")
	r, err = c.Get("default", "k")
	require.NoError(t, err)
	assert.JSONEq(t, `"second"`, string(r.Value))
	putValue(t, c, "k", `"third"`)
	r, err = a.Get("default", "k")
	require.NoError(t, err)
	assert.JSONEq(t, `"third"`, string(r.Value))
}

// A transaction through an instance whose watch has not delivered a full
// restore's switch yet (1 s behind per response), sent once the restore was
// acknowledged through another instance: its If-Match compares, on keys
// the restore replaced, are checked against the restored versions, and
// its patch applies to the restored value; one naming a version of the
// replaced data is a conflict with the restored version. Nothing lands
// in the replaced generation.
func TestATxnBehindARestoreSwitchChecksTheRestoredKeys(t *testing.T) {
	prefix := etcdkit.Prefix(etcdkit.Name(t))
	a := open(t, etcd.Options{Prefix: prefix})
	c := open(t, etcd.Options{Prefix: prefix})
	ctx := context.Background()
	for _, k := range []string{"x", "y"} {
		putValue(t, a, k, `{"n":1}`)
	}
	path, _ := testkit.WriteSnapshot(t, a)
	for _, k := range []string{"x", "y"} {
		putValue(t, a, k, `{"n":2}`)
	}
	waitValue(t, c, "y", `{"n":2}`)
	etcd.LagReadCache(c, time.Second)
	defer etcd.LagReadCache(c, 0)
	_, err := a.Restore(ctx, path, ctxd.RestoreOptions{})
	require.NoError(t, err)
	require.NotEqual(t, a.Generation(), c.Generation(), "c's watch is behind the switch")

	_, err = c.Txn(ctx, []ctxd.Write{
		{Namespace: "default", Key: "x", Op: ctxd.OpPut, Value: json.RawMessage(`{"n":3}`), Expect: u64(2), Who: "c"},
		{Namespace: "default", Key: "y", Op: ctxd.OpDelete, Expect: u64(2), Who: "c"},
	})
	var conflict *ctxd.ConflictError
	require.ErrorAs(t, err, &conflict, "version 2 is the replaced data's")
	assert.Equal(t, uint64(1), conflict.Current)
	res, err := c.Txn(ctx, []ctxd.Write{
		{Namespace: "default", Key: "x", Op: ctxd.OpPatch, Patch: ctxd.Patch{Type: ctxd.MergePatch, Doc: json.RawMessage(`{"m":1}`)}, Expect: u64(1), Who: "c"},
		{Namespace: "default", Key: "y", Op: ctxd.OpDelete, Expect: u64(1), Who: "c"},
	})
	require.NoError(t, err)
	assert.JSONEq(t, `{"n":1,"m":1}`, string(res.Records[0].Value))
	r, err := a.Get("default", "x")
	require.NoError(t, err)
	assert.Equal(t, res.Revision, r.ModRev, "the transaction landed in the restored generation")
	_, err = a.Get("default", "y")
	assert.ErrorIs(t, err, ctxd.ErrNotFound)
}

// A key's history read through an instance whose watch has not delivered
// a full restore's switch yet (3 s behind), once the restore was
// acknowledged through another instance, is the restored key's: from the
// head (through c), and from the restore's revision down (before=, through
// d). Before, the walk read the replaced generation's keys: at the head,
// which the restore had deleted, the history of a key the restore brought
// back answered not found; at the restore's revision, where they still
// held the data from before the restore, it answered that data.
func TestHistoryBehindARestoreSwitchIsTheRestoredKeys(t *testing.T) {
	a, behind, res := restoreAhead(t, 3*time.Second, 3*time.Second)
	c, d := behind[0], behind[1]
	want, err := a.History("default", "k", ctxd.HistoryOptions{})
	require.NoError(t, err)
	require.Len(t, want.Changes, 1)
	assert.JSONEq(t, `"restored"`, string(want.Changes[0].Value))
	got, err := c.History("default", "k", ctxd.HistoryOptions{})
	require.NoError(t, err)
	assert.Equal(t, want, got)
	got, err = d.History("default", "k", ctxd.HistoryOptions{Before: res.Revision + 1})
	require.NoError(t, err)
	assert.Equal(t, want, got, "from the restore's revision down")
}

// A key's history where it reads no step at the head's generation
// alone, through an instance whose watch has not delivered a full
// restore's switch yet (3 s behind), is the restored key's, as through
// the restorer: from before=1 (whether the key is known, and whether
// its oldest change kept lost its predecessor), and from the restore's
// revision down once etcd compacted past it (the walk's first step reads
// the state kept at etcd's mark). Before, these read the instance's
// generation, the replaced one, which the restorer deleted: not found,
// and from the compacted bound no change of the restored key.
func TestHistoryBehindARestoreSwitchWhereItReadsNoHead(t *testing.T) {
	srv := etcdkit.Own(t) // a compaction is the cluster's
	a, behind, res := restoreAheadOn(t, []string{srv.Endpoint}, 3*time.Second, 3*time.Second)
	c, d := behind[0], behind[1]
	cli, err := clientv3.New(clientv3.Config{Endpoints: []string{srv.Endpoint}})
	require.NoError(t, err)
	t.Cleanup(func() { _ = cli.Close() })
	head, err := cli.Get(t.Context(), "compaction")
	require.NoError(t, err)
	_, err = cli.Compact(t.Context(), head.Header.Revision)
	require.NoError(t, err)
	require.Greater(t, uint64(head.Header.Revision), res.Revision, "compacted past the restore")

	for _, read := range []struct {
		through *etcd.Store
		before  uint64
	}{{c, 1}, {d, res.Revision + 1}} {
		require.NotEqual(t, a.Generation(), read.through.Generation(), "the instance's watch is behind the switch")
		want, err := a.History("default", "k", ctxd.HistoryOptions{Before: read.before})
		require.NoError(t, err)
		got, err := read.through.History("default", "k", ctxd.HistoryOptions{Before: read.before})
		if assert.NoError(t, err, "before=%d", read.before) {
			assert.Equal(t, want, got, "before=%d", read.before)
		}
	}
	want, err := a.History("default", "k", ctxd.HistoryOptions{Before: res.Revision + 1})
	require.NoError(t, err)
	require.Len(t, want.Changes, 1, "the restored put, kept at etcd's mark")
	assert.JSONEq(t, `"restored"`, string(want.Changes[0].Value))
}

// A read at the revision of a full restore (its answer's revision)
// through an instance whose watch has not delivered the switch yet is
// the restored data, as through the restorer: GetAt, and ViewAt (which
// waits for the instance's watch to reach etcd's revision, here held
// 300 ms per response). Before, both read the replaced generation's keys
// at that revision, where they still held the data from before the
// restore (the restorer deletes them after its switch).
func TestReadsAtARestoresRevisionBehindItsSwitch(t *testing.T) {
	_, behind, res := restoreAhead(t, 3*time.Second, 300*time.Millisecond)
	c, d := behind[0], behind[1]
	r, err := c.GetAt("default", "k", res.Revision)
	require.NoError(t, err)
	assert.JSONEq(t, `"restored"`, string(r.Value))
	var viewed []string
	require.NoError(t, d.ViewAt(res.Revision, func(v store.View) error {
		return v.ForEach("default", "", func(r ctxd.Record) error { viewed = append(viewed, string(r.Value)); return nil })
	}))
	assert.Equal(t, []string{`"restored"`}, viewed)
}

// An instance whose cache fill (after a full restore's switch) is met by
// a second switch, which a read moves the instance to, fills its cache
// again in the second restore's generation: when the read comes during
// the fill, and when it comes after the fill, before the watch takes the
// mark it starts after. Before, the fill gave up without an error (during)
// or was served as the new generation's (after: switchGeneration
// invalidated it), the watch went on after the second switch (where the
// read had moved the instance's mark) and never filled the cache again:
// every read went to etcd until the watch restarted for some other reason.
func TestACacheFillOvertakenByASwitchFillsAgain(t *testing.T) {
	for name, at := range map[string]func(*etcd.Store, func()){
		"during the fill": etcd.BeforeCacheFillEnds,
		"after the fill":  etcd.AfterCacheFill,
	} {
		t.Run(name, func(t *testing.T) {
			a, c, first, second := twoSnapshots(t)
			ctx := context.Background()

			hold, held, release := holdOnce(t)
			at(c, hold)
			defer at(c, nil)
			_, err := a.Restore(ctx, first, ctxd.RestoreOptions{})
			require.NoError(t, err)
			<-held // c's fill in the first restore's generation
			_, err = a.Restore(ctx, second, ctxd.RestoreOptions{})
			require.NoError(t, err)
			waitValue(t, c, "k", `"second"`) // from etcd: the read moves c to the second generation
			require.Equal(t, a.Generation(), c.Generation())
			fills := c.ReadCache().Fills
			release()
			testkit.Eventually(t, func() bool { st := c.ReadCache(); return st.Ready && st.Fills > fills }, "c's cache is filled again")
			hits := c.ReadCache().Hits
			waitValue(t, c, "k", `"second"`)
			assert.Greater(t, c.ReadCache().Hits, hits, "the read was served by the cache")
		})
	}
}

// An instance whose cache is filled (after a first full restore's
// switch) once a second restore has switched and deleted the first one's
// keys, its watch not yet at the second switch (here 3 s behind per
// response), fills it in the second restore's generation: the fill reads
// the pointer at its revision. Before, it filled the cache from the first
// generation's keys, deleted by then, and served it as current up to the
// fill's revision, past the second switch: a read answered "not found"
// for a key both restores hold until the watch delivered that switch.
func TestACacheFillPastASwitchFillsTheCurrentGeneration(t *testing.T) {
	a, c, release := restoresPastAHeldWatch(t)
	etcd.LagReadCache(c, 3*time.Second)
	defer etcd.LagReadCache(c, 0)
	fills := c.ReadCache().Fills
	release() // c switches to the first restore's generation and fills its cache
	testkit.Eventually(t, func() bool { st := c.ReadCache(); return st.Ready && st.Fills > fills }, "c's cache is filled again")
	assert.Equal(t, a.Generation(), c.Generation(), "the fill moved c to the second restore's generation")
	hits := c.ReadCache().Hits
	r, err := c.Get("default", "k")
	require.NoError(t, err)
	assert.JSONEq(t, `"second"`, string(r.Value))
	assert.Greater(t, c.ReadCache().Hits, hits, "the read was served by the cache")
}

// restoreAhead opens a and, for each lag, an instance whose watch
// applies each response that late (behind); it puts k at "restored"
// through a, snapshots, puts k at "replaced", and restores the snapshot
// through a once every instance behind reads "replaced": their watches
// have not delivered the switch when it returns.
func restoreAhead(t *testing.T, lags ...time.Duration) (a *etcd.Store, behind []*etcd.Store, res ctxd.RestoreResult) {
	t.Helper()
	return restoreAheadOn(t, nil, lags...)
}

// restoreAheadOn is restoreAhead on the etcd at endpoints (nil: the
// package's shared one).
func restoreAheadOn(t *testing.T, endpoints []string, lags ...time.Duration) (a *etcd.Store, behind []*etcd.Store, res ctxd.RestoreResult) {
	t.Helper()
	prefix := etcdkit.Prefix(etcdkit.Name(t))
	a = open(t, etcd.Options{Prefix: prefix, Endpoints: endpoints})
	for range lags {
		behind = append(behind, open(t, etcd.Options{Prefix: prefix, Endpoints: endpoints}))
	}
	putValue(t, a, "k", `"restored"`)
	path, _ := testkit.WriteSnapshot(t, a)
	putValue(t, a, "k", `"replaced"`)
	for i, s := range behind {
		waitValue(t, s, "k", `"replaced"`)
		etcd.LagReadCache(s, lags[i])
		t.Cleanup(func() { etcd.LagReadCache(s, 0) })
	}
	res, err := a.Restore(context.Background(), path, ctxd.RestoreOptions{})
	require.NoError(t, err)
	for i, s := range behind {
		require.NotEqual(t, a.Generation(), s.Generation(), "instance %d's watch is behind the switch", i)
	}
	return a, behind, res
}

// restoresPastAHeldWatch restores twoSnapshots' first snapshot, then
// its second, through a, while c's watch is held right after its cache
// applied the first switch: release lets the watch go on.
func restoresPastAHeldWatch(t *testing.T) (a, c *etcd.Store, release func()) {
	t.Helper()
	a, c, first, second := twoSnapshots(t)
	hold, held, release := holdOnce(t)
	atSwitch(c, hold)
	t.Cleanup(func() { etcd.AfterCacheApply(c, nil) })
	_, err := a.Restore(context.Background(), first, ctxd.RestoreOptions{})
	require.NoError(t, err)
	<-held
	_, err = a.Restore(context.Background(), second, ctxd.RestoreOptions{})
	require.NoError(t, err)
	return a, c, release
}

// holdOnce returns hold, which blocks its first call until release (the
// calls after it go through), and held, closed once that call came.
// release is also run when the test ends.
func holdOnce(t *testing.T) (hold func(), held <-chan struct{}, release func()) {
	h, next := make(chan struct{}), make(chan struct{})
	var once, released sync.Once
	release = func() { released.Do(func() { close(next) }) }
	t.Cleanup(release)
	return func() { once.Do(func() { close(h); <-next }) }, h, release
}

// atSwitch runs hold in s's watch after its cache applied a response
// holding a full restore's switch, before the feed takes it.
func atSwitch(s *etcd.Store, hold func()) { afterApplying(s, "meta/gen", hold) }

// atClaim runs hold in s's watch after its cache applied a response
// holding a full restore's claim: before the restore's staged history
// and its switch.
func atClaim(s *etcd.Store, hold func()) { afterApplying(s, "meta/restore", hold) }

func afterApplying(s *etcd.Store, keySuffix string, hold func()) {
	etcd.AfterCacheApply(s, func(resp clientv3.WatchResponse) {
		for _, ev := range resp.Events {
			if strings.HasSuffix(string(ev.Kv.Key), keySuffix) {
				hold()
			}
		}
	})
}

// restoreHeld restores path through a while c's watch is held by at
// (atSwitch, atClaim) once it has that response, and returns the
// restore's result and the release of c's watch.
func restoreHeld(t *testing.T, a, c *etcd.Store, path string, at func(*etcd.Store, func())) (ctxd.RestoreResult, func()) {
	t.Helper()
	hold, held, release := holdOnce(t)
	at(c, hold)
	t.Cleanup(func() { etcd.AfterCacheApply(c, nil) })
	res, err := a.Restore(context.Background(), path, ctxd.RestoreOptions{})
	require.NoError(t, err)
	<-held
	return res, release
}

// heldRead starts a read of key through c and holds it once it moved c
// to a newer generation (a restore's switch that c's watch has not
// delivered), before c's feed and cache follow; it returns when the read
// is held. release lets it go on; result waits for its answer.
func heldRead(t *testing.T, c *etcd.Store, key string) (release func(), result func() (ctxd.Record, error)) {
	t.Helper()
	hold, held, release := holdOnce(t)
	etcd.AfterGenerationSwap(c, hold)
	t.Cleanup(func() { etcd.AfterGenerationSwap(c, nil) })
	var got ctxd.Record
	var err error
	done := make(chan struct{})
	go func() { defer close(done); got, err = c.Get("default", key) }()
	<-held
	return release, func() (ctxd.Record, error) { <-done; return got, err }
}

// replacedSnapshot opens two instances a and c (c reading etcd directly
// with direct) on a prefix of the test's own and writes a snapshot
// through a where k is "restored", then k "replaced", which c reads
// when it returns.
func replacedSnapshot(t *testing.T, direct bool) (a, c *etcd.Store, path string) {
	t.Helper()
	prefix := etcdkit.Prefix(etcdkit.Name(t))
	a = open(t, etcd.Options{Prefix: prefix})
	c = open(t, etcd.Options{Prefix: prefix, DirectReads: direct})
	putValue(t, a, "k", `"restored"`)
	path, _ = testkit.WriteSnapshot(t, a)
	putValue(t, a, "k", `"replaced"`)
	waitValue(t, c, "k", `"replaced"`)
	return a, c, path
}

// twoSnapshots opens two instances a and c on a prefix of the test's
// own, and writes two snapshots through a: first holds k at "first",
// second at "second", which c reads when it returns.
func twoSnapshots(t *testing.T) (a, c *etcd.Store, first, second string) {
	t.Helper()
	prefix := etcdkit.Prefix(etcdkit.Name(t))
	a = open(t, etcd.Options{Prefix: prefix})
	c = open(t, etcd.Options{Prefix: prefix})
	putValue(t, a, "k", `"first"`)
	first, _ = testkit.WriteSnapshot(t, a)
	putValue(t, a, "k", `"second"`)
	second, _ = testkit.WriteSnapshot(t, a)
	waitValue(t, c, "k", `"second"`)
	return a, c, first, second
}

// putValue puts key (in "default") at value through s.
func putValue(t *testing.T, s *etcd.Store, key, value string) ctxd.Record {
	t.Helper()
	r, err := s.Put(context.Background(), "default", key, json.RawMessage(value), nil, "test")
	require.NoError(t, err)
	return r
}

// waitValue waits until s reads key (in "default") at value.
func waitValue(t *testing.T, s *etcd.Store, key, value string) {
	t.Helper()
	testkit.Eventually(t, func() bool {
		r, err := s.Get("default", key)
		return err == nil && string(r.Value) == value
	}, "the instance reads "+key+" at "+value)
}

// A full restore through an instance whose watch has not delivered an
// earlier restore's switch (held here at that switch, which comes
// between the restore's comparison with the snapshot and its claim)
// replaces the restored data: the restore reads the pointer before it
// claims. Before, its switch compared the pointer with the instance's
// generation, the replaced one, and answered 409 after writing the whole
// new generation, with no restore running beside it.
func TestARestoreBehindASwitchReplacesTheCurrentGeneration(t *testing.T) {
	a, c, first, second := twoSnapshots(t)
	ctx := context.Background()
	hold, held, release := holdOnce(t)
	atSwitch(c, hold)
	defer etcd.AfterCacheApply(c, nil)
	var firstGen atomic.Uint64
	var once sync.Once
	etcd.BeforeRestoreClaim(c, func() {
		once.Do(func() {
			_, err := a.Restore(ctx, first, ctxd.RestoreOptions{})
			assert.NoError(t, err)
			<-held // c's watch stops at a's switch
			firstGen.Store(a.Generation())
		})
	})
	defer etcd.BeforeRestoreClaim(c, nil)

	var err error
	done := make(chan struct{})
	go func() { defer close(done); _, err = c.Restore(ctx, second, ctxd.RestoreOptions{}) }()
	// c's restore waits for its own watch after its switch: the watch
	// goes on once the restore has caught c up (or the restore ended).
	testkit.Eventually(t, func() bool {
		select {
		case <-done:
			return true
		default:
			return firstGen.Load() != 0 && c.Generation() >= firstGen.Load()
		}
	}, "c's restore caught c up, or ended")
	release()
	<-done
	require.NoError(t, err, "no other restore switched after c's claim")
	assert.Greater(t, c.Generation(), firstGen.Load(), "c's restore replaced the first one's generation")
	waitValue(t, a, "k", `"second"`)
	assert.Equal(t, c.Generation(), a.Generation())
}

// The read cache parses the watch's events with the keys of the
// generation it was filled in. A read that finds a full restore's switch
// moves the instance to it and then invalidates the cache
// (switchGeneration); an event of the replaced generation that the cache
// applies in between (here a write the cache held back, applied while the
// switch is held between the two) is that generation's. Before, the cache
// parsed it with the instance's keys, the new generation's: the write was
// no key of the cache's, passed over while the cache's revision rose past
// it (a cache at the write's revision without the write).
func TestTheReadCacheParsesEventsInItsOwnGeneration(t *testing.T) {
	prefix := etcdkit.Prefix(etcdkit.Name(t))
	a := open(t, etcd.Options{Prefix: prefix})
	c := open(t, etcd.Options{Prefix: prefix})
	putValue(t, a, "k", `1`)
	path, _ := testkit.WriteSnapshot(t, a)
	waitValue(t, c, "k", `1`)
	testkit.Eventually(t, func() bool { return c.ReadCache().Ready }, "c's cache is filled")

	releaseCache := etcd.HoldReadCache(c)
	defer releaseCache()
	w := putValue(t, a, "k", `2`)
	// c's watch stops at the restore's claim, before its switch: only a
	// read moves c to the restored generation.
	_, releaseWatch := restoreHeld(t, a, c, path, atClaim)

	releaseSwap, readResult := heldRead(t, c, "k") // c is on the restored generation, its cache not invalidated yet
	releaseCache()
	value, rev := etcd.CachedValue(c, "default", "k")
	require.GreaterOrEqual(t, rev, w.ModRev, "the cache applied the write's revision")
	assert.Equal(t, `2`, value, "and the write")

	releaseSwap()
	releaseWatch()
	got, getErr := readResult()
	require.NoError(t, getErr)
	assert.JSONEq(t, `1`, string(got.Value), "the restored value")
}

// A read that moves an instance to a full restore's switch before its
// watch delivers it (getCurrent) races the watch: here the read is held
// once the instance is on the restored generation, before its feed
// restarts at the switch, while the watch delivers the switch and a
// write after it. The feed keeps that write for its followers. Before,
// the read's restart emptied the feed's recent changes and left its
// floor at the switch, below the mark: the feed answered "nothing" after
// the switch up to the mark, and a follower there (a client reset at the
// restore's revision, or resuming there) never got the write.
func TestAReadRacingTheWatchAtASwitchKeepsTheChangesAfterIt(t *testing.T) {
	a, c, path := replacedSnapshot(t, true)

	res, releaseWatch := restoreHeld(t, a, c, path, atSwitch) // c's watch has the switch, not acted on yet

	releaseSwap, readResult := heldRead(t, c, "k") // the read moved c to the restored generation; its feed not restarted yet
	releaseWatch()
	w := putValue(t, a, "after", `1`)
	testkit.Eventually(t, func() bool { mark, _ := c.Committed(); return mark >= w.ModRev }, "c's watch delivered the write after the switch")
	releaseSwap()
	got, getErr := readResult()
	require.NoError(t, getErr)
	assert.JSONEq(t, `"restored"`, string(got.Value))

	changes, err := c.ReadLog(res.Revision, 100)
	require.NoError(t, err)
	require.Len(t, changes, 1, "the write after the switch")
	assert.Equal(t, "after", changes[0].Key)
	assert.Equal(t, w.ModRev, changes[0].Revision)
}

// A read that moves an instance to a full restore's generation before its
// watch has delivered the restore's staged history (written under the new
// generation's keys before the switch) does not make that history
// changes of the feed: here the watch is held at the restore's claim, the
// read once the instance is on the new generation and before its feed
// restarts at the switch, and the watch then delivers the staged writes
// up to the switch. The feed's mark stays where it was. Before, the watch
// parsed them with the instance's keys, the new generation's, and pushed
// the restored history as new changes below the switch (older values of
// the restored keys), which followers woken then read, until the read's
// restart dropped them.
func TestAReadAheadOfTheWatchDoesNotMakeARestoresStagedHistoryChanges(t *testing.T) {
	prefix := etcdkit.Prefix(etcdkit.Name(t))
	a := open(t, etcd.Options{Prefix: prefix})
	c := open(t, etcd.Options{Prefix: prefix, DirectReads: true})
	putValue(t, a, "k", `1`)
	putValue(t, a, "k", `2`) // two changes of k in the snapshot's history
	path, _ := testkit.WriteSnapshot(t, a)
	replaced := putValue(t, a, "k", `"replaced"`)
	// c reads etcd directly: its feed may deliver the put after the
	// read sees it, so wait for the feed's mark, not the value.
	testkit.Eventually(t, func() bool { mark, _ := c.Committed(); return mark >= replaced.ModRev }, "c's watch delivered the put")
	before, _ := c.Committed()

	_, releaseClaim := restoreHeld(t, a, c, path, atClaim) // c's watch is at the claim, before the staged history

	releaseSwap, readResult := heldRead(t, c, "k") // c is on the restored generation; its feed not restarted yet

	holdSwitch, switchHeld, releaseSwitch := holdOnce(t)
	atSwitch(c, holdSwitch)
	releaseClaim()
	<-switchHeld // c's watch delivered everything up to the switch
	// The feed holds no change after before (its mark may still move: a
	// progress notice of the shared etcd's revision raises it).
	changes, err := c.ReadLog(before, 100)
	require.NoError(t, err)
	assert.Empty(t, changes, "the staged history is no change of the feed")

	releaseSwitch()
	releaseSwap()
	got, getErr := readResult()
	require.NoError(t, getErr)
	assert.JSONEq(t, `2`, string(got.Value))
}

// A follower of an instance's feed (the realtime hub: Committed,
// Generation, ReadLog) never sees a full restore's generation with the
// committed mark below its switch: here a read that moved the instance to
// the restored generation is held before the feed follows it, while the
// watch is held at the switch. Before, the feed's generation was the
// instance's, swapped first: a follower woken in between saw the new
// generation with the old mark, reset its clients below the switch and
// read the feed there, which answered "compacted" (restored) instead of
// the one "reset" a restore gives.
func TestAFollowerSeesARestoresGenerationWithItsSwitch(t *testing.T) {
	a, c, path := replacedSnapshot(t, true)
	replaced := c.Generation()

	res, releaseWatch := restoreHeld(t, a, c, path, atSwitch) // c's watch has the switch, not acted on yet

	// follow is what the hub does when woken: the generation, then the
	// mark, then the feed after the mark.
	follow := func(when string) {
		gen := c.Generation()
		mark, _ := c.Committed()
		if gen != replaced {
			assert.GreaterOrEqual(t, mark, res.Revision, "%s: the restored generation comes with the mark at its switch", when)
		}
		_, err := c.ReadLog(mark, 100)
		assert.NoError(t, err, "%s: the feed after the mark, in generation %d", when, gen)
	}
	releaseSwap, readResult := heldRead(t, c, "k") // the read moved c to the restored generation; its feed has not followed
	follow("the read held after its swap")
	releaseSwap()
	got, getErr := readResult()
	require.NoError(t, getErr)
	assert.JSONEq(t, `"restored"`, string(got.Value))
	assert.NotEqual(t, replaced, c.Generation(), "the feed followed the read")
	follow("after the read")
	releaseWatch()
}
