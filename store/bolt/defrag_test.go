package bolt_test

import (
	"encoding/json"
	"fmt"
	"strings"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/framework0/ctxd"
	"github.com/framework0/ctxd/store/bolt"
)

var bigValue = json.RawMessage(`"` + strings.Repeat("x", 1000) + `"`)

func TestDefragWhileWritingShrinksAndKeepsEverything(t *testing.T) {
	s := openStore(t, bolt.Options{})
	fillBig(t, s, 3000)
	require.NoError(t, s.Compact(ctx, s.Revision()))

	var stop atomic.Bool
	var wg sync.WaitGroup
	acked := make(chan string, 100000)
	for w := 0; w < 4; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; !stop.Load(); i++ {
				key := fmt.Sprintf("live/%d/%d", w, i)
				if _, err := s.Put(ctx, "default", key, json.RawMessage(fmt.Sprint(i)), nil, "w"); !assert.NoError(t, err) {
					return
				}
				acked <- key
			}
		}()
	}
	res, err := s.Defrag(ctx)
	stop.Store(true)
	wg.Wait()
	close(acked)
	require.NoError(t, err)
	t.Logf("defrag: %d -> %d bytes, pause %v", res.SizeBefore, res.SizeAfter, res.Pause)
	assert.Less(t, res.SizeAfter, res.SizeBefore)
	require.NoError(t, s.Check())
	n := 0
	for key := range acked {
		_, err := s.Get("default", key)
		require.NoError(t, err, "acknowledged write %s survived the swap", key)
		n++
	}
	assert.Positive(t, n)
	v, err := s.Get("default", "big/0002999")
	require.NoError(t, err)
	assert.Equal(t, string(bigValue), string(v.Value))
	st, err := s.Status()
	require.NoError(t, err)
	assert.Equal(t, uint64(3000+n), st.Keys)

	s.reopen()
	assert.Equal(t, uint64(3000+n), mustStatus(t, s).Keys)
}

func TestCompactFileOffline(t *testing.T) {
	s := openStore(t, bolt.Options{})
	fillBig(t, s, 2000)
	require.NoError(t, s.Compact(ctx, s.Revision()))
	rev := s.Revision()
	require.NoError(t, s.Close())

	before, after, err := bolt.CompactFile(s.path)
	require.NoError(t, err)
	t.Logf("compact: %d -> %d bytes", before, after)
	assert.Less(t, after, before)
	s.open()
	assert.Equal(t, rev, s.Revision())
	v, err := s.Get("default", "big/0001999")
	require.NoError(t, err)
	assert.Equal(t, string(bigValue), string(v.Value))
}

func TestCompactFileRefusesAnOpenDatabase(t *testing.T) {
	s := openStore(t, bolt.Options{})
	_, _, err := bolt.CompactFile(s.path)
	assert.ErrorIs(t, err, bolt.ErrLocked)
}

// fillBig writes n keys with 1 KB values, each overwritten three times, so
// that compaction frees most pages.
func fillBig(t *testing.T, s *testStore, n int) {
	t.Helper()
	for round := 0; round < 3; round++ {
		var writes []ctxd.Write
		for i := 0; i < n; i++ {
			writes = append(writes, ctxd.Write{Namespace: "default", Key: fmt.Sprintf("big/%07d", i), Op: ctxd.OpPut, Value: bigValue})
			if len(writes) == 100 {
				_, err := s.Txn(ctx, writes)
				require.NoError(t, err)
				writes = nil
			}
		}
	}
}

func mustStatus(t testing.TB, s *testStore) ctxd.Status {
	t.Helper()
	st, err := s.Status()
	require.NoError(t, err)
	return st
}
