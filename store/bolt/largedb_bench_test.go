package bolt

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"math/rand/v2"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/framework0/ctxd"
	"github.com/framework0/ctxd/perf"
	"github.com/framework0/ctxd/store"
)

// BenchmarkLargeDatabase is the measurement behind the freelist choice
// (DESIGN.md, "Open on a large database"): on a copy of one database
// filled as `ctxd perf --preload` fills it ("whole"), and of the same
// with one of its four namespaces deleted and compacted away, so that
// about a quarter of its pages are free ("fragmented"), for each
// freelist mode: the open with a cold page cache (as root; else warm, and
// said so), the file's pages the process mapped during it (RssFile),
// then, with the file in the page cache, b.N durable puts by 64 writers
// overwriting random keys of a deep namespace: the committer's batches
// (changes, pages written, time each), and the reopen after that, cold.
// Run it once per size:
//
//	CTXD_BENCH_LARGE_DB=/var/tmp/ctxd-large CTXD_BENCH_LARGE_BYTES=1073741824 \
//	  go test ./store/bolt/ -run '^$' -bench LargeDatabase -benchtime 20000x
//
// CTXD_BENCH_LARGE_DB keeps the built databases between runs (default: a
// temp folder, 64 MiB).
func BenchmarkLargeDatabase(b *testing.B) {
	whole, keys := largeDatabase(b)
	fragmented := filepath.Join(filepath.Dir(whole), "fragmented", "ctxd.db")
	buildFragmented(b, whole, fragmented)
	for _, layout := range []struct{ name, path string }{{"whole", whole}, {"fragmented", fragmented}} {
		for _, mode := range []struct {
			name string
			mode freelistMode
		}{
			{"persisted-map", freelistMode{}},
			{"persisted-array", freelistMode{array: true}},
			{"rebuilt-map", freelistMode{notPersisted: true}},
		} {
			b.Run(layout.name+"/"+mode.name, func(b *testing.B) {
				benchLargeDatabase(b, layout.path, keys, Options{freelist: mode.mode})
			})
		}
	}
}

func benchLargeDatabase(b *testing.B, src string, keys int64, opts Options) {
	path := filepath.Join(b.TempDir(), "ctxd.db")
	if err := copyFile(path, src); err != nil {
		b.Fatal(err)
	}
	s, openSecs, rss := timedOpen(b, path, opts)
	free := s.db.Stats().FreePageN
	if err := readFile(path); err != nil {
		b.Fatal(err)
	}
	before, txBefore := s.Stats(), s.db.Stats().TxStats
	b.ResetTimer()
	start := time.Now()
	overwriteRandom(b, s, keys, b.N, 64)
	acked := time.Since(start)
	if err := s.checkpoint(); err != nil {
		b.Fatal(err)
	}
	applied := time.Since(start)
	b.StopTimer()
	after, txAfter := s.Stats(), s.db.Stats().TxStats
	// After ResetTimer, which clears the metrics reported before it.
	b.ReportMetric(openSecs, "open-s")
	b.ReportMetric(float64(rss)/(1<<20), "open-rssfile-MiB")
	b.ReportMetric(float64(free), "free-pages")
	applies := float64(after.Applies - before.Applies)
	b.ReportMetric(float64(b.N)/acked.Seconds(), "acked-puts/s")
	b.ReportMetric(float64(b.N)/applied.Seconds(), "applied-puts/s")
	b.ReportMetric(float64(after.Applied-before.Applied)/applies, "changes/batch")
	b.ReportMetric(float64(txAfter.GetWrite()-txBefore.GetWrite())/applies, "pages/batch")
	b.ReportMetric(float64((after.Apply-before.Apply).Microseconds())/1000/applies, "ms/batch")
	// A lone writer: each put a group of its own, the committer's
	// batches small, so a freelist written in each is most of them.
	lat := make([]time.Duration, 0, 1000)
	for i := range cap(lat) {
		start := time.Now()
		if _, err := s.Put(context.Background(), perf.PreloadNamespaces[0], fmt.Sprintf("pre-%010d", (int64(i)*7919)%keys), value1k, nil, "bench"); err != nil {
			b.Fatal(err)
		}
		lat = append(lat, time.Since(start))
	}
	slices.Sort(lat)
	b.ReportMetric(float64(lat[len(lat)/2].Microseconds()), "lone-p50-µs")
	b.ReportMetric(float64(lat[len(lat)*99/100].Microseconds()), "lone-p99-µs")
	if err := s.Close(); err != nil {
		b.Fatal(err)
	}
	s, reopenSecs, _ := timedOpen(b, path, opts)
	b.ReportMetric(reopenSecs, "reopen-s")
	if err := s.Close(); err != nil {
		b.Fatal(err)
	}
}

// buildFragmented makes at path a copy of the database at src without
// the keys of its third namespace (deleted, then compacted away), unless
// it is there already.
func buildFragmented(b *testing.B, src, path string) {
	b.Helper()
	if _, err := os.Stat(path); err == nil {
		return
	}
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		b.Fatal(err)
	}
	if err := copyFile(path, src); err != nil {
		b.Fatal(err)
	}
	s, err := Open(path, Options{})
	if err != nil {
		b.Fatal(err)
	}
	ns := perf.PreloadNamespaces[2]
	var keys int64
	all, err := s.Namespaces()
	if err != nil {
		b.Fatal(err)
	}
	for _, n := range all {
		if n.Name == ns {
			keys = int64(n.Keys)
		}
	}
	writes := make([]ctxd.Write, 0, perf.PreloadBatch)
	for i := int64(0); i < keys; i++ {
		writes = append(writes, ctxd.Write{Namespace: ns, Key: fmt.Sprintf("pre-%010d", i), Op: ctxd.OpDelete, Who: "bench"})
		if len(writes) == cap(writes) || i == keys-1 {
			if _, err := s.Import(context.Background(), writes); err != nil {
				b.Fatal(err)
			}
			writes = writes[:0]
		}
	}
	if err := s.Compact(context.Background(), s.Revision()); err != nil {
		b.Fatal(err)
	}
	b.Logf("built %s: %d free pages", path, s.db.Stats().FreePageN)
	if err := s.Close(); err != nil {
		b.Fatal(err)
	}
}

// largeDatabase returns the path of the database of
// CTXD_BENCH_LARGE_BYTES bytes (64 MiB by default) in the folder
// CTXD_BENCH_LARGE_DB (a temp folder by default), built unless it is
// there already, and its keys per namespace.
func largeDatabase(b *testing.B) (path string, keys int64) {
	b.Helper()
	size := int64(64 << 20)
	if v := os.Getenv("CTXD_BENCH_LARGE_BYTES"); v != "" {
		n, err := strconv.ParseInt(v, 10, 64)
		if err != nil {
			b.Fatalf("CTXD_BENCH_LARGE_BYTES: %v", err)
		}
		size = n
	}
	base := os.Getenv("CTXD_BENCH_LARGE_DB")
	if base == "" {
		base = b.TempDir()
	}
	path = filepath.Join(base, "ctxd.db")
	return path, buildLargeDatabase(b, path, size)
}

// readFile reads the file at path once, so that the page cache holds it.
func readFile(path string) error {
	f, err := os.Open(path)
	if err != nil {
		return err
	}
	defer f.Close()
	_, err = io.Copy(io.Discard, f)
	return err
}

// buildLargeDatabase fills the database at path to size bytes as ctxd perf
// --preload does, unless it is there already, and returns its keys per
// namespace.
func buildLargeDatabase(b *testing.B, path string, size int64) int64 {
	b.Helper()
	if fi, err := os.Stat(path); err == nil && fi.Size() >= size {
		s, err := Open(path, Options{})
		if err != nil {
			b.Fatal(err)
		}
		defer s.Close()
		st, err := s.Status()
		if err != nil {
			b.Fatal(err)
		}
		return int64(st.Keys) / int64(len(perf.PreloadNamespaces))
	}
	s, err := Open(path, Options{})
	if err != nil {
		b.Fatal(err)
	}
	res, err := perf.Preload(context.Background(), s, size, func() (int64, error) { return fileSize(path), nil })
	if err != nil {
		b.Fatal(err)
	}
	if err := s.Close(); err != nil {
		b.Fatal(err)
	}
	b.Logf("built %s: %d keys, %d bytes, in %s", path, res.Keys, res.FileBytes, res.Took.Round(time.Millisecond))
	return res.Keys / int64(res.Namespaces)
}

// timedOpen drops the page cache (when it can), opens the store at path,
// and returns it, the time Open took and how much more of the file the
// process had mapped after.
func timedOpen(b *testing.B, path string, opts Options) (*Store, float64, int64) {
	b.Helper()
	dropCaches(b)
	rss0 := rssFileOf(b)
	start := time.Now()
	s, err := Open(path, opts)
	if err != nil {
		b.Fatal(err)
	}
	took := time.Since(start).Seconds()
	return s, took, rssFileOf(b) - rss0
}

// overwriteRandom puts n new values on random existing keys of the first
// preloaded namespace, from writers goroutines.
func overwriteRandom(b *testing.B, s *Store, keys int64, n, writers int) {
	b.Helper()
	var wg sync.WaitGroup
	errs := make(chan error, writers)
	for w := range writers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			rng := rand.New(rand.NewPCG(uint64(w), 1))
			for i := w; i < n; i += writers {
				key := fmt.Sprintf("pre-%010d", rng.Int64N(keys))
				if _, err := s.Put(context.Background(), perf.PreloadNamespaces[0], key, value1k, nil, "bench"); err != nil {
					errs <- err
					return
				}
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		b.Fatal(err)
	}
}

// value1k is a value of perf.PreloadValueSize bytes.
var value1k = json.RawMessage(`{"v":"` + strings.Repeat("y", perf.PreloadValueSize-8) + `"}`)

var dropOnce sync.Once

// dropCaches empties the page cache (root only) so that an open reads from
// the disk; it says once when it cannot.
func dropCaches(b *testing.B) {
	b.Helper()
	if err := perf.DropPageCache(); err != nil {
		dropOnce.Do(func() { b.Logf("page cache not dropped (%v): opens are warm", err) })
	}
}

// rssFileOf is the process's resident file-backed memory (Linux; 0
// elsewhere): the pages of mapped files it has read.
func rssFileOf(t testing.TB) int64 {
	t.Helper()
	f, err := os.Open("/proc/self/status")
	if err != nil {
		return 0
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if v, ok := strings.CutPrefix(sc.Text(), "RssFile:"); ok {
			kb, _ := strconv.ParseInt(strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(v), "kB")), 10, 64)
			return kb << 10
		}
	}
	return 0
}

// BenchmarkRetentionAtScale measures what a retention run reads on the
// large database (DESIGN.md, "Compaction"): on a copy, the first run
// after open (which examines the whole log: the cost every run had
// before meta/pruned), then, after a restart and b.N random overwrites,
// the next run: log entries examined, time, and the file's pages the
// process mapped during each run (RssFile), the page cache dropped first
// when root. Same environment variables as BenchmarkLargeDatabase:
//
//	CTXD_BENCH_LARGE_DB=/tmp/ctxd-layout-1g CTXD_BENCH_LARGE_BYTES=1073741824 \
//	  go test ./store/bolt/ -run '^$' -bench RetentionAtScale -benchtime 2000x
func BenchmarkRetentionAtScale(b *testing.B) {
	src, keys := largeDatabase(b)
	path := filepath.Join(b.TempDir(), "ctxd.db")
	if err := copyFile(path, src); err != nil {
		b.Fatal(err)
	}
	policy := store.RetentionPolicy{KeepVersions: 10, KeepRevisions: 10000}
	run := func(s *Store, name string) {
		dropCaches(b)
		rss0, examined0, start := rssFileOf(b), s.Stats().CompactExamined, time.Now()
		if _, err := s.ApplyRetention(context.Background(), policy); err != nil {
			b.Fatal(err)
		}
		b.ReportMetric(time.Since(start).Seconds(), name+"-s")
		b.ReportMetric(float64(rssFileOf(b)-rss0)/(1<<20), name+"-rssfile-MiB")
		b.ReportMetric(float64(s.Stats().CompactExamined-examined0), name+"-examined")
	}
	s, err := Open(path, Options{})
	if err != nil {
		b.Fatal(err)
	}
	b.ResetTimer()
	run(s, "first")
	if err := s.Close(); err != nil {
		b.Fatal(err)
	}
	if s, err = Open(path, Options{}); err != nil {
		b.Fatal(err)
	}
	overwriteRandom(b, s, keys, b.N, 64)
	run(s, "next")
	b.StopTimer()
	if err := s.Close(); err != nil {
		b.Fatal(err)
	}
}

// BenchmarkGetAtScale is the store's side of `ctxd perf`'s at-scale
// read-throughput (DESIGN.md, "Reads on a large database"): Gets of random
// keys among 10,000 of 256-byte values written after the preload, by 64
// goroutines, on a fresh database and on a copy of the large one. Compare
// the two in one run; profile one with -cpuprofile and -bench
// 'GetAtScale/large'. Same environment variables as
// BenchmarkLargeDatabase.
func BenchmarkGetAtScale(b *testing.B) {
	src, _ := largeDatabase(b)
	for _, name := range []string{"fresh", "large"} {
		b.Run(name, func(b *testing.B) {
			path := filepath.Join(b.TempDir(), "ctxd.db")
			if name == "large" {
				if err := copyFile(path, src); err != nil {
					b.Fatal(err)
				}
			}
			s, err := Open(path, Options{})
			if err != nil {
				b.Fatal(err)
			}
			defer s.Close()
			const keys = 10000
			value := json.RawMessage(`"` + strings.Repeat("r", 254) + `"`)
			writes := make([]ctxd.Write, 0, keys)
			for i := range keys {
				writes = append(writes, ctxd.Write{Namespace: "perf-read", Key: fmt.Sprintf("key-%06d", i), Op: ctxd.OpPut, Value: value, Who: "bench"})
			}
			if _, err := s.Import(context.Background(), writes); err != nil {
				b.Fatal(err)
			}
			if err := s.checkpoint(); err != nil {
				b.Fatal(err)
			}
			b.SetParallelism(32)
			b.ResetTimer()
			var seed atomic.Uint64
			b.RunParallel(func(pb *testing.PB) {
				rng := rand.New(rand.NewPCG(seed.Add(1), 3))
				for pb.Next() {
					if _, err := s.Get("perf-read", fmt.Sprintf("key-%06d", rng.IntN(keys))); err != nil {
						b.Error(err)
						return
					}
				}
			})
		})
	}
}
