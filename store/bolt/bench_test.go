package bolt_test

import (
	"encoding/json"
	"fmt"
	"sort"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/framework0/ctxd"
	"github.com/framework0/ctxd/internal/testkit"
	"github.com/framework0/ctxd/store"
	"github.com/framework0/ctxd/store/bolt"
)

var value256 = json.RawMessage(`"` + string(make256()) + `"`)

func make256() []byte {
	b := make([]byte, 254)
	for i := range b {
		b[i] = 'a' + byte(i%26)
	}
	return b
}

// BenchmarkPutSequential is one writer: every put is its own durable
// commit (one write-ahead log append). It reports the p50 and p99 latency
// of a lone durable put.
func BenchmarkPutSequential(b *testing.B) { benchPutSequential(b, bolt.Options{}) }

func benchPutSequential(b *testing.B, opts bolt.Options) {
	s := openStore(b, opts)
	lat := make([]time.Duration, 0, b.N)
	b.ResetTimer()
	// CPU per put (the caller's, the writer's, the syncer's and the
	// committer's): a lone write's overheads, apart from its waits.
	stopCPU := testkit.CPUPerOp(b)
	for i := 0; i < b.N; i++ {
		start := time.Now()
		_, err := s.Put(ctx, "default", fmt.Sprintf("key/%08d", i), value256, nil, "bench")
		lat = append(lat, time.Since(start))
		if err != nil {
			b.Fatal(err)
		}
	}
	b.StopTimer()
	stopCPU()
	reportPercentiles(b, lat)
	reportCommits(b, s)
}

// BenchmarkPutParallel64 is 64 concurrent writers on distinct keys: the
// writer groups them so that one fsync serves many puts. It reports the
// throughput and the p50, p99 and p99.9 latency of a put.
func BenchmarkPutParallel64(b *testing.B) { benchPutParallel64(b, bolt.Options{}) }

// BenchmarkPutParallel64Quota is BenchmarkPutParallel64 with a storage
// quota it never reaches: the cost of checking it and of measuring the
// file after each committer batch (DESIGN.md, "The storage quota").
func BenchmarkPutParallel64Quota(b *testing.B) {
	benchPutParallel64(b, bolt.Options{QuotaBytes: 1 << 40})
}

// BenchmarkPutParallel64NoCommitter is BenchmarkPutParallel64 with the
// committer held off (nothing reaches bbolt while it runs, up to 1<<20
// changes): the write-ahead log alone, to tell how much of the tail the
// committer's bbolt commits (their CPU, their fsyncs on the same disk,
// the overlay's drop after each) cost. Not a configuration to run.
func BenchmarkPutParallel64NoCommitter(b *testing.B) {
	benchPutParallel64(b, bolt.Options{CommitInterval: time.Hour, CommitChanges: 1 << 20, MaxPending: 1 << 22, MaxPendingBytes: 1 << 40})
}

func benchPutParallel64(b *testing.B, opts bolt.Options) {
	s := openStore(b, opts)
	var n atomic.Int64
	var mu sync.Mutex
	var lat []time.Duration
	b.SetParallelism(64 / max(1, runtimeProcs()))
	b.ResetTimer()
	// CPU per put (the writer's, the syncer's, the committer's and the
	// callers'): on shared cores it varies less than puts/s.
	stopCPU := testkit.CPUPerOp(b)
	b.RunParallel(func(pb *testing.PB) {
		mine := make([]time.Duration, 0, b.N/64+1)
		defer func() {
			mu.Lock()
			lat = append(lat, mine...)
			mu.Unlock()
		}()
		for pb.Next() {
			i := n.Add(1)
			start := time.Now()
			if _, err := s.Put(ctx, "default", fmt.Sprintf("key/%08d", i), value256, nil, "bench"); err != nil {
				b.Error(err)
				return
			}
			mine = append(mine, time.Since(start))
		}
	})
	b.StopTimer()
	stopCPU()
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "puts/s")
	reportPercentiles(b, lat)
	reportCommits(b, s)
}

// BenchmarkCommitInterval is BenchmarkPutSequential and
// BenchmarkPutParallel64 with the committer applying to bbolt at each
// interval (1µs: as soon as it finds changes), to choose the default: its
// bbolt commits (two fdatasyncs each) share the disk with the log's.
func BenchmarkCommitInterval(b *testing.B) {
	for _, iv := range []time.Duration{time.Microsecond, 2 * time.Millisecond, 10 * time.Millisecond, 50 * time.Millisecond, 100 * time.Millisecond} {
		opts := bolt.Options{CommitInterval: iv}
		b.Run("interval="+iv.String()+"/sequential", func(b *testing.B) { benchPutSequential(b, opts) })
		b.Run("interval="+iv.String()+"/parallel64", func(b *testing.B) { benchPutParallel64(b, opts) })
	}
}

// BenchmarkGet reads 10,000 keys round robin: with the Get cache (the
// default, every key fits) and without it (DESIGN.md, "The Get cache").
func BenchmarkGet(b *testing.B) { benchGet(b, bolt.Options{}) }

func BenchmarkGetNoCache(b *testing.B) { benchGet(b, bolt.Options{GetCacheBytes: -1}) }

// BenchmarkGetParallel64 is BenchmarkGet by 64 goroutines: the cache's
// shard locks under the HTTP benchmark's concurrency.
func BenchmarkGetParallel64(b *testing.B) { benchGetParallel64(b, bolt.Options{}) }

func BenchmarkGetParallel64NoCache(b *testing.B) {
	benchGetParallel64(b, bolt.Options{GetCacheBytes: -1})
}

func benchGet(b *testing.B, opts bolt.Options) {
	s := openStore(b, opts)
	fill(b, s, 10000)
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		if _, err := s.Get("default", fmt.Sprintf("key/%08d", i%10000)); err != nil {
			b.Fatal(err)
		}
	}
}

func benchGetParallel64(b *testing.B, opts bolt.Options) {
	s := openStore(b, opts)
	fill(b, s, 10000)
	b.SetParallelism(32) // 64 goroutines on 2 cores
	b.ResetTimer()
	var next atomic.Int64
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			if _, err := s.Get("default", fmt.Sprintf("key/%08d", next.Add(1)%10000)); err != nil {
				b.Error(err)
				return
			}
		}
	})
}

func BenchmarkListPage100(b *testing.B) {
	s := openStore(b, bolt.Options{})
	fill(b, s, 10000)
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		p, err := s.List("default", ctxd.ListOptions{After: fmt.Sprintf("key/%08d", (i*100)%9900), Limit: 100})
		if err != nil || len(p.Records) != 100 {
			b.Fatal(err, len(p.Records))
		}
	}
}

// BenchmarkListPage100Pending is BenchmarkListPage100 with updates of
// random keys waiting in the overlay (the committer held off), as many as
// the committer's interval lets wait under load: a page merges the
// overlay's keys from where it starts (overlay.keysFrom).
func BenchmarkListPage100Pending(b *testing.B) {
	for _, pending := range []int{0, 400, 2000} {
		b.Run(fmt.Sprintf("pending=%d", pending), func(b *testing.B) {
			s := openStore(b, bolt.Options{CommitInterval: time.Hour, CommitChanges: 1 << 20})
			fill(b, s, 10000)
			require.NoError(b, s.View(func(store.View) error { return nil })) // bbolt holds the keys
			writes := make([]ctxd.Write, 0, 100)
			for i := range pending {
				writes = append(writes, ctxd.Write{Namespace: "default", Key: fmt.Sprintf("key/%08d", (i*7919)%10000), Op: ctxd.OpPut, Value: value256})
				if len(writes) == cap(writes) || i == pending-1 {
					_, err := s.Txn(ctx, writes)
					require.NoError(b, err)
					writes = writes[:0]
				}
			}
			require.Equal(b, uint64(pending), s.Stats().Pending)
			b.ResetTimer()
			for i := 0; i < b.N; i++ {
				p, err := s.List("default", ctxd.ListOptions{After: fmt.Sprintf("key/%08d", (i*100)%9900), Limit: 100})
				if err != nil || len(p.Records) != 100 {
					b.Fatal(err, len(p.Records))
				}
			}
		})
	}
}

func BenchmarkHistory100(b *testing.B) {
	s := openStore(b, bolt.Options{})
	writes := make([]ctxd.Write, 0, 100)
	for v := 0; v < 200; v++ {
		// Two keys, interleaved, 200 versions each, written in batches.
		for _, k := range []string{"hot", "other"} {
			writes = append(writes, ctxd.Write{Namespace: "default", Key: k, Op: ctxd.OpPut, Value: value256})
		}
		if len(writes) == 2 {
			_, err := s.Txn(ctx, writes)
			require.NoError(b, err)
			writes = writes[:0]
		}
	}
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		p, err := s.History("default", "hot", ctxd.HistoryOptions{Limit: 100})
		if err != nil || len(p.Changes) != 100 {
			b.Fatal(err)
		}
	}
}

func fill(b *testing.B, s *testStore, n int) { fillWith(b, s, n, value256) }

// fillWith puts n keys key/00000000... holding value, 100 to a
// transaction.
func fillWith(tb testing.TB, s *testStore, n int, value json.RawMessage) {
	tb.Helper()
	writes := make([]ctxd.Write, 0, 100)
	for i := 0; i < n; i++ {
		writes = append(writes, ctxd.Write{Namespace: "default", Key: fmt.Sprintf("key/%08d", i), Op: ctxd.OpPut, Value: value})
		if len(writes) == cap(writes) || i == n-1 {
			_, err := s.Txn(ctx, writes)
			require.NoError(tb, err)
			writes = writes[:0]
		}
	}
}

func reportPercentiles(b *testing.B, lat []time.Duration) {
	if len(lat) == 0 {
		return
	}
	sort.Slice(lat, func(i, j int) bool { return lat[i] < lat[j] })
	b.ReportMetric(float64(lat[len(lat)/2].Microseconds()), "p50-µs")
	b.ReportMetric(float64(lat[len(lat)*99/100].Microseconds()), "p99-µs")
	b.ReportMetric(float64(lat[len(lat)*999/1000].Microseconds()), "p99.9-µs")
}

func reportCommits(b *testing.B, s *testStore) {
	ws := s.Stats()
	if ws.Commits == 0 {
		return
	}
	b.ReportMetric(float64(ws.Requests)/float64(ws.Commits), "puts/commit")
	b.ReportMetric(float64(ws.Commit.Microseconds())/float64(ws.Commits), "µs/commit")
	if ws.Applies > 0 {
		b.ReportMetric(float64(ws.Applied)/float64(ws.Applies), "changes/apply")
	}
}
