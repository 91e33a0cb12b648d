package bolt_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/framework0/ctxd"
	"github.com/framework0/ctxd/internal/testkit"
	"github.com/framework0/ctxd/store"
	"github.com/framework0/ctxd/store/bolt"
)

// want is the state a Get must answer after a change: absent (found
// false), or value with the deadline expiresAt (zero: not checked).
type want struct {
	found     bool
	value     string
	expiresAt time.Time
}

// cacheCase is a change of a key whose state the Get cache holds, by one
// of the paths that change bbolt: each must make the cache forget it.
type cacheCase struct {
	name string
	opts bolt.Options
	// ttl is the first put's.
	ttl time.Duration
	// before runs after the first put, before the cache is warmed.
	before func(t *testing.T, s *testStore) string
	// change changes the key (arg: what before returned) and returns the
	// state a Get must see now, with the change out of the overlay.
	change func(t *testing.T, s *testStore, arg string) want
	// noStaleState: the change leaves the key's state as it was (defrag):
	// the negative control cannot tell.
	noStaleState bool
}

const cacheNS, cacheKey = "default", "cached"

var cacheCases = []cacheCase{
	{name: "put", change: func(t *testing.T, s *testStore, _ string) want {
		s.put(cacheNS, cacheKey, `"v2"`)
		checkpoint(t, s)
		return want{found: true, value: `"v2"`}
	}},
	{name: "delete", change: func(t *testing.T, s *testStore, _ string) want {
		_, err := s.Delete(context.Background(), cacheNS, cacheKey, nil, "test")
		require.NoError(t, err)
		checkpoint(t, s)
		return want{}
	}},
	{name: "keepalive", ttl: time.Hour, change: func(t *testing.T, s *testStore, _ string) want {
		rec, err := s.KeepAlive(context.Background(), cacheNS, cacheKey, 2*time.Hour, nil)
		require.NoError(t, err)
		checkpoint(t, s)
		return want{found: true, value: `"v1"`, expiresAt: rec.ExpiresAt}
	}},
	{name: "expiry", ttl: time.Second, opts: bolt.Options{Limits: ctxd.Limits{MinTTL: time.Second}},
		change: func(t *testing.T, s *testStore, _ string) want {
			// List does not use the cache: it shows the expirer's delete.
			testkit.Eventually(t, func() bool {
				p, err := s.List(cacheNS, ctxd.ListOptions{Prefix: cacheKey})
				require.NoError(t, err)
				return len(p.Records) == 0
			}, "the key expired")
			checkpoint(t, s)
			return want{}
		}},
	{name: "direct", opts: bolt.Options{DirectBytes: 4 << 10}, change: func(t *testing.T, s *testStore, _ string) want {
		big := `"` + strings.Repeat("x", 8<<10) + `"`
		before := s.Stats().Applied
		s.put(cacheNS, cacheKey, big)
		require.Equal(t, before, s.Stats().Applied, "the large put went through the committer, not the direct path")
		return want{found: true, value: big}
	}},
	{name: "restore", before: func(t *testing.T, s *testStore) string {
		path, _ := testkit.WriteSnapshot(t, s)
		s.put(cacheNS, cacheKey, `"v2"`)
		return path
	}, change: func(t *testing.T, s *testStore, path string) want {
		_, err := s.Restore(context.Background(), path, ctxd.RestoreOptions{})
		require.NoError(t, err)
		return want{found: true, value: `"v1"`}
	}},
	{name: "defrag", noStaleState: true, change: func(t *testing.T, s *testStore, _ string) want {
		_, err := s.Defrag(context.Background())
		require.NoError(t, err)
		st, err := s.Status()
		require.NoError(t, err)
		require.Zero(t, st.ReadCache.Keys, "the swap kept the old file's entries")
		return want{found: true, value: `"v1"`}
	}},
}

// Each way bbolt's state of a key changes, with the key's state in the
// Get cache (a Get served from it first): the next Get answers the new
// state. The negative control: with the cache's invalidations and holds
// turned off, the same Get answers the old state, for every path but
// defrag's (whose state is the same).
func TestGetCacheForgetsEveryChange(t *testing.T) {
	t.Parallel()
	for _, c := range cacheCases {
		t.Run(c.name, func(t *testing.T) {
			t.Parallel()
			got, w := runCacheCase(t, c, c.opts)
			requireState(t, w, got)
		})
		if c.noStaleState {
			continue
		}
		t.Run(c.name+"/without-invalidation", func(t *testing.T) {
			t.Parallel()
			got, w := runCacheCase(t, c, bolt.WithoutCacheInvalidation(c.opts))
			require.False(t, sameState(w, got), "a cache that forgets nothing still answered the new state %+v", got)
		})
	}
}

type getResult struct {
	rec ctxd.Record
	err error
}

func runCacheCase(t *testing.T, c cacheCase, opts bolt.Options) (getResult, want) {
	s := openStore(t, opts)
	_, err := s.Txn(context.Background(), []ctxd.Write{{Namespace: cacheNS, Key: cacheKey, Op: ctxd.OpPut,
		Value: json.RawMessage(`"v1"`), TTL: c.ttl, Who: "test"}})
	require.NoError(t, err)
	var arg string
	if c.before != nil {
		arg = c.before(t, s)
	}
	warm(t, s)
	w := c.change(t, s, arg)
	rec, err := s.Get(cacheNS, cacheKey)
	return getResult{rec, err}, w
}

// warm makes the cache hold the key's state: out of the overlay, read
// once from bbolt, then served from the cache.
func warm(t *testing.T, s *testStore) {
	t.Helper()
	checkpoint(t, s)
	_, err := s.Get(cacheNS, cacheKey)
	require.NoError(t, err)
	hits := cacheStatus(t, s).Hits
	_, err = s.Get(cacheNS, cacheKey)
	require.NoError(t, err)
	require.Equal(t, hits+1, cacheStatus(t, s).Hits, "the second Get was not served from the cache")
}

// checkpoint lets the committer apply every acknowledged change: they
// leave the overlay, so Get reads the cache or bbolt again.
func checkpoint(t testing.TB, s interface {
	View(func(store.View) error) error
}) {
	t.Helper()
	require.NoError(t, s.View(func(store.View) error { return nil }))
}

func cacheStatus(t testing.TB, s *testStore) ctxd.ReadCacheStatus {
	t.Helper()
	st, err := s.Status()
	require.NoError(t, err)
	require.NotNil(t, st.ReadCache)
	return *st.ReadCache
}

func sameState(w want, got getResult) bool {
	if !w.found {
		return errors.Is(got.err, ctxd.ErrNotFound)
	}
	return got.err == nil && string(got.rec.Value) == w.value &&
		(w.expiresAt.IsZero() || got.rec.ExpiresAt.Equal(w.expiresAt))
}

func requireState(t *testing.T, w want, got getResult) {
	t.Helper()
	if !w.found {
		require.ErrorIs(t, got.err, ctxd.ErrNotFound)
		return
	}
	require.NoError(t, got.err)
	require.Equal(t, w.value, string(got.rec.Value))
	if !w.expiresAt.IsZero() {
		require.True(t, got.rec.ExpiresAt.Equal(w.expiresAt), "deadline %v, want %v", got.rec.ExpiresAt, w.expiresAt)
	}
}

// After Close a Get answers ErrClosed, as without the cache, not the
// state the cache held.
func TestGetCacheClosed(t *testing.T) {
	t.Parallel()
	s := openStore(t, bolt.Options{})
	s.put(cacheNS, cacheKey, `"v1"`)
	warm(t, s)
	st := s.Store
	s.CloseChecked()
	_, err := st.Get(cacheNS, cacheKey)
	require.ErrorIs(t, err, ctxd.ErrClosed)
}

// The cache stays within its bound, evicting, and still answers each
// key's state; turned off it serves nothing and says so.
func TestGetCacheBounded(t *testing.T) {
	t.Parallel()
	const max = 256 << 10
	s := openStore(t, bolt.Options{GetCacheBytes: max})
	writes := make([]ctxd.Write, 0, 100)
	for i := range 1000 {
		writes = append(writes, ctxd.Write{Namespace: cacheNS, Key: keyName(i), Op: ctxd.OpPut, Value: value256})
		if len(writes) == cap(writes) {
			_, err := s.Txn(context.Background(), writes)
			require.NoError(t, err)
			writes = writes[:0]
		}
	}
	checkpoint(t, s)
	for range 2 {
		for i := range 1000 {
			rec, err := s.Get(cacheNS, keyName(i))
			require.NoError(t, err)
			require.Equal(t, string(value256), string(rec.Value))
		}
	}
	st := cacheStatus(t, s)
	t.Logf("cache: %+v", st)
	require.Equal(t, ctxd.ReadCacheReady, st.State)
	require.LessOrEqual(t, st.Bytes, int64(max))
	require.Positive(t, st.Keys)
	require.Less(t, st.Keys, int64(1000), "1,000 keys of 256 bytes do not fit in 256 KiB")
	require.Positive(t, st.Hits)
	require.Equal(t, uint64(2000), st.Hits+st.Fallbacks)

	off := openStore(t, bolt.Options{GetCacheBytes: -1})
	off.put(cacheNS, cacheKey, `"v1"`)
	checkpoint(t, off)
	for range 2 {
		_, err := off.Get(cacheNS, cacheKey)
		require.NoError(t, err)
	}
	require.Equal(t, ctxd.ReadCacheStatus{State: ctxd.ReadCacheOff}, cacheStatus(t, off))
}

func keyName(i int) string { return fmt.Sprintf("key/%08d", i) }
