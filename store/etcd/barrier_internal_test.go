package etcd

import (
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// Every confirmation a read gets comes from a request sent after the read
// began, with barrierRounds requests in flight: many readers, each noting
// the number of requests sent before it called confirm, must get a
// request numbered above it. Requests are held a little so that readers
// arrive while the rounds are out.
func TestReadBarrierNeverAnswersWithAnEarlierRequest(t *testing.T) {
	var (
		b        readBarrier
		sent     atomic.Uint64 // requests sent so far; a request's number
		inflight atomic.Int64
		most     atomic.Int64
	)
	current := func() (uint64, error) {
		n := sent.Add(1)
		if f := inflight.Add(1); f > most.Load() {
			most.Store(f)
		}
		time.Sleep(time.Millisecond)
		inflight.Add(-1)
		return n, nil
	}
	var wg sync.WaitGroup
	for range 64 {
		wg.Go(func() {
			for range 50 {
				before := sent.Load()
				got, err := b.confirm(current)
				if !assert.NoError(t, err) || !assert.Greater(t, got, before, "answered by a request sent before the read") {
					return
				}
			}
		})
	}
	wg.Wait()
	require.LessOrEqual(t, most.Load(), int64(barrierRounds), "requests in flight at once")
	assert.Less(t, sent.Load(), uint64(64*50), "reads share requests")
	assert.Equal(t, sent.Load(), b.sent.Load(), "the barrier counts the requests it sent (ctxd_read_cache_confirmations_total)")
	t.Logf("%d reads, %d requests, at most %d in flight", 64*50, sent.Load(), most.Load())
}
