package bolt_test

import (
	"context"
	"encoding/json"
	"fmt"
	"path/filepath"
	"sync"
	"syscall"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/framework0/ctxd"
	"github.com/framework0/ctxd/internal/testkit"
	"github.com/framework0/ctxd/store/bolt"
)

// What every backend promises is tested by the conformance suite
// (conformance_test.go, store/storetest); the tests here are about how
// bbolt's writer groups requests into commits.

var ctx = context.Background()

// A conflicting request grouped into the same commit as valid ones fails
// alone. Requests are queued before the writer can take any, by holding
// bbolt's write lock through a slow compaction-free path: we simply fire
// many goroutines at once and check every outcome individually.
func TestOneBadRequestDoesNotFailItsGroup(t *testing.T) {
	s := openStore(t, bolt.Options{})
	s.put("default", "cas", `0`)
	const n = 64
	var wg sync.WaitGroup
	errs := make([]error, n)
	start := make(chan struct{})
	for i := 0; i < n; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			<-start
			if i%2 == 0 {
				_, errs[i] = s.Put(ctx, "default", "cas", json.RawMessage(`1`), u64(99), "t") // always conflicts
			} else {
				_, errs[i] = s.Put(ctx, "default", fmt.Sprintf("ok%d", i), json.RawMessage(`1`), nil, "t")
			}
		}()
	}
	close(start)
	wg.Wait()
	for i, err := range errs {
		if i%2 == 0 {
			assert.ErrorIs(t, err, ctxd.ErrConflict)
		} else {
			assert.NoError(t, err)
		}
	}
	assert.Equal(t, uint64(1+n/2), s.Revision())
}

// A disk without room for the write-ahead log's next segment, at start:
// the error says so and what to do, not that acknowledged writes could be
// missing (a fresh folder on a small disk said that); the smaller segment
// it advises then opens.
func TestNoRoomForTheLogAtOpenSaysSo(t *testing.T) {
	dir := testkit.SmallDisk(t, 24<<20) // the 64 MiB segment does not fit
	path := filepath.Join(dir, "ctxd.db")
	_, err := bolt.Open(path, bolt.Options{WALSegmentSize: 64 << 20}) // the default outside tests
	require.Error(t, err)
	assert.ErrorIs(t, err, syscall.ENOSPC)
	assert.Contains(t, err.Error(), "no space on the disk for the write-ahead log's next segment (64.0 MiB, wal.segment_bytes")
	assert.NotContains(t, err.Error(), "could be missing")
	st, err := bolt.Open(path, bolt.Options{WALSegmentSize: 1 << 20})
	require.NoError(t, err)
	require.NoError(t, st.Close())
}
