package etcd_test

import (
	"encoding/json"
	"fmt"
	"runtime"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/framework0/ctxd"
	"github.com/framework0/ctxd/internal/testkit"
	"github.com/framework0/ctxd/internal/testkit/etcdkit"
	"github.com/framework0/ctxd/store"
	"github.com/framework0/ctxd/store/etcd"
)

// Two instances on one prefix, one reading through its cache and one
// reading etcd directly: after every write on either, each read of the
// cached instance answers what the direct one does (a write acknowledged
// by the other instance is seen at once: the revision wait), and the
// cache, not etcd, served them.
func TestReadCacheAnswersAsEtcd(t *testing.T) {
	prefix := etcdkit.Prefix(etcdkit.Name(t))
	cached := open(t, etcd.Options{Prefix: prefix})
	direct := open(t, etcd.Options{Prefix: prefix, DirectReads: true})
	assert.False(t, direct.ReadCache().Enabled)
	testkit.Eventually(t, func() bool { return cached.ReadCache().Ready }, "the cache filled")

	same := func(step string) {
		t.Helper()
		for _, ns := range []string{"default", "apps"} {
			for _, k := range []string{"a", "a/b", "a/c", "b", "missing"} {
				want, werr := direct.Get(ns, k)
				got, gerr := cached.Get(ns, k)
				require.Equal(t, werr == nil, gerr == nil, "%s: get %s/%s: %v vs %v", step, ns, k, werr, gerr)
				if werr != nil {
					require.ErrorIs(t, gerr, ctxd.ErrNotFound)
				}
				require.Equal(t, want, got, "%s: get %s/%s", step, ns, k)
			}
			for _, opts := range []ctxd.ListOptions{{}, {Prefix: "a/"}, {Limit: 1}, {After: "a", Limit: 2}, {NoValues: true}, {Prefix: "a", After: "a/b"}} {
				want, err := direct.List(ns, opts)
				require.NoError(t, err)
				got, err := cached.List(ns, opts)
				require.NoError(t, err)
				require.Equal(t, want, got, "%s: list %s %+v", step, ns, opts)
			}
			for _, p := range []string{"", "a", "a/", "zz"} {
				want, err := direct.Count(ns, p)
				require.NoError(t, err)
				got, err := cached.Count(ns, p)
				require.NoError(t, err)
				require.Equal(t, want, got, "%s: count %s %q", step, ns, p)
			}
		}
		want, err := direct.Namespaces()
		require.NoError(t, err)
		got, err := cached.Namespaces()
		require.NoError(t, err)
		require.Equal(t, want, got, "%s: namespaces", step)
	}
	same("empty")
	ctx := t.Context()
	for i, w := range []*etcd.Store{direct, cached, direct} {
		for _, k := range []string{"a", "a/b", "a/c", "b"} {
			_, err := w.Put(ctx, "default", k, json.RawMessage(fmt.Sprint(i)), nil, "t")
			require.NoError(t, err)
			same(fmt.Sprintf("put %d default/%s", i, k))
		}
		_, err := w.Put(ctx, "apps", "a/b", json.RawMessage(`{"n":1}`), nil, "t")
		require.NoError(t, err)
		same("put apps")
		_, err = w.Delete(ctx, "default", "a/b", nil, "t")
		require.NoError(t, err)
		same("delete")
		_, err = w.Delete(ctx, "apps", "a/b", nil, "t")
		require.NoError(t, err)
		same("delete the namespace's last key")
	}
	st := cached.ReadCache()
	t.Logf("cache: %+v", st)
	assert.True(t, st.Enabled && st.Ready)
	assert.Zero(t, st.Misses, "a read went to etcd")
	assert.Positive(t, st.Hits)
	assert.Equal(t, int64(3), st.Keys, "default/a, a/c and b")
}

// A quiet prefix on a busy cluster: other prefixes' writes raise etcd's
// revision, and the instance's watch has no event of its own up to it.
// The cache still serves, having learnt from etcd's progress
// notification that it is current: its revision passes the other
// prefix's writes although none of them reached it.
func TestReadCacheCatchesUpOnProgress(t *testing.T) {
	s := open(t, etcd.Options{Prefix: etcdkit.Prefix(etcdkit.Name(t))})
	_, err := s.Put(t.Context(), "default", "k", json.RawMessage(`1`), nil, "t")
	require.NoError(t, err)
	cli, err := clientv3.New(clientv3.Config{Endpoints: []string{etcdkit.Shared(t).Endpoint}})
	require.NoError(t, err)
	defer cli.Close()
	var other int64
	for i := range 20 {
		resp, err := cli.Put(t.Context(), etcdkit.Prefix(etcdkit.Name(t)+"/other")+fmt.Sprint(i), "x")
		require.NoError(t, err)
		other = resp.Header.Revision
	}
	require.Less(t, s.ReadCache().Revision, uint64(other), "the cache knew of the other prefix before reading")
	r, err := s.Get("default", "k")
	require.NoError(t, err)
	assert.JSONEq(t, `1`, string(r.Value))
	st := s.ReadCache()
	assert.GreaterOrEqual(t, st.Revision, uint64(other), "the read did not wait for the cluster's revision")
	assert.Equal(t, uint64(1), st.Hits)
	assert.Zero(t, st.Misses, "the read went to etcd: no progress notification came")
}

// A prefix larger than etcd.read_cache_max_bytes: the cache gives up,
// says why, and every read goes to etcd, still right. Both ways to get
// there: an instance whose fill finds too much, and one whose cache
// grows past the bound as writes come.
func TestReadCacheGivesUpOverItsBound(t *testing.T) {
	prefix := etcdkit.Prefix(etcdkit.Name(t))
	const bound = 4096
	growing := open(t, etcd.Options{Prefix: prefix, ReadCacheMaxBytes: bound})
	value := json.RawMessage(`"` + strings.Repeat("x", 200) + `"`)
	for i := range 20 {
		_, err := growing.Put(t.Context(), "default", fmt.Sprint("k", i), value, nil, "t")
		require.NoError(t, err)
	}
	filled := open(t, etcd.Options{Prefix: prefix, ReadCacheMaxBytes: bound})
	for _, s := range []*etcd.Store{growing, filled} {
		r, err := s.Get("default", "k19")
		require.NoError(t, err)
		assert.Equal(t, string(value), string(r.Value))
		n, err := s.Count("default", "")
		require.NoError(t, err)
		assert.Equal(t, uint64(20), n)
		testkit.Eventually(t, func() bool { return !s.ReadCache().Enabled }, "the cache gave up")
		st := s.ReadCache()
		assert.Contains(t, st.Disabled, "read_cache_max_bytes")
		assert.Zero(t, st.Keys)
		assert.Zero(t, st.Bytes)
	}
	// The control: the same prefix under a bound it fits in is cached.
	fits := open(t, etcd.Options{Prefix: prefix})
	testkit.Eventually(t, func() bool { return fits.ReadCache().Ready }, "the cache filled")
	_, err := fits.Get("default", "k0")
	require.NoError(t, err)
	st := fits.ReadCache()
	assert.True(t, st.Enabled && st.Ready, "%+v", st)
	assert.Equal(t, int64(20), st.Keys)
	assert.Greater(t, st.Bytes, int64(bound))
}

// What the cache costs in memory per key, against what it counts
// (ReadCacheStats.Bytes, the figure its bound applies to): a fill of
// 20,000 keys with 100-byte envelopes, the Go heap measured before and
// after.
//
//	go test ./store/etcd -run '^$' -bench ReadCacheMemory -benchtime 1x
func BenchmarkReadCacheMemory(b *testing.B) {
	const n, batch = 20000, 1000
	prefix := etcdkit.Prefix(etcdkit.Name(b))
	cli, err := clientv3.New(clientv3.Config{Endpoints: []string{etcdkit.Shared(b).Endpoint}})
	require.NoError(b, err)
	defer cli.Close()
	envelope := string(append([]byte{1, 1, 'b'}, make([]byte, 97)...))
	for i := 0; i < n; i += batch {
		var ops []clientv3.Op
		for j := i; j < i+batch; j++ {
			ops = append(ops, clientv3.OpPut(fmt.Sprintf("%sk/default/key-%08d", prefix, j), envelope))
		}
		_, err := cli.Txn(b.Context()).Then(ops...).Commit()
		require.NoError(b, err)
	}
	for b.Loop() {
		var before, after runtime.MemStats
		runtime.GC()
		runtime.ReadMemStats(&before)
		s, err := etcd.Open(etcd.Options{Endpoints: []string{etcdkit.Shared(b).Endpoint}, Prefix: prefix})
		require.NoError(b, err)
		// The fill runs in the watch's goroutine.
		testkit.Eventually(b, func() bool { return s.ReadCache().Keys == n }, "the cache filled")
		runtime.GC()
		runtime.ReadMemStats(&after)
		st := s.ReadCache()
		b.ReportMetric(float64(after.HeapAlloc-before.HeapAlloc)/n, "heap-B/key")
		b.ReportMetric(float64(st.Bytes)/n, "counted-B/key")
		require.NoError(b, s.Close())
	}
}

// A new prefix on a cluster compacted past its birth watches from its
// birth: it is not told "compacted" for history it never had, and fills
// its read cache once.
func TestNewPrefixOnACompactedClusterFillsOnce(t *testing.T) {
	old := open(t, etcd.Options{Prefix: etcdkit.Prefix(etcdkit.Name(t) + "-old")})
	rec, err := old.Put(t.Context(), "default", "k", json.RawMessage(`1`), nil, "t")
	require.NoError(t, err)
	_, err = old.CompactKeep(t.Context(), rec.ModRev, 1)
	require.NoError(t, err)

	s := open(t, etcd.Options{Prefix: etcdkit.Prefix(etcdkit.Name(t))})
	testkit.Eventually(t, func() bool { return s.ReadCache().Ready }, "the cache filled")
	// The write's answer waits for the instance's watch to deliver it:
	// the watch's first answers (a "compacted" one among them, if it
	// started below the compaction) came before.
	_, err = s.Put(t.Context(), "default", "k", json.RawMessage(`1`), nil, "t")
	require.NoError(t, err)
	_, err = s.Get("default", "k")
	require.NoError(t, err)
	st := s.ReadCache()
	assert.Equal(t, uint64(1), st.Fills, "%+v", st)
	assert.Zero(t, st.Misses, "%+v", st)
}

// A new prefix with no change yet reads at a linearizable point (a view,
// as dumps and snapshots take): the instance's watch, started at the
// birth, gets etcd's progress notification (one starting above etcd's
// revision gets none, and the view waited out the request timeout).
func TestNewPrefixWithoutChangesReadsAtOnce(t *testing.T) {
	s := open(t, etcd.Options{Prefix: etcdkit.Prefix(etcdkit.Name(t))})
	var rev uint64
	require.NoError(t, s.View(func(v store.View) error {
		rev = v.Revision()
		return nil
	}))
	assert.Zero(t, rev, "no change yet")
}
