package bolt_test

import (
	"encoding/json"
	"fmt"
	"os"
	"strconv"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/framework0/ctxd"
	"github.com/framework0/ctxd/store"
	"github.com/framework0/ctxd/store/bolt"
)

// benchSize reads a size from the environment, so that the long runs quoted
// in the README can be repeated (CTXD_BENCH_KEYS=100000 CTXD_BENCH_VERSIONS=10)
// while `make bench` stays quick.
func benchSize(name string, def int) int {
	if v, err := strconv.Atoi(os.Getenv(name)); err == nil && v > 0 {
		return v
	}
	return def
}

// BenchmarkRetentionFileSize writes keys x versions of 256-byte values,
// then applies keep_versions 1 and defragments, and reports the file size
// against the logical bytes (keys + values of the current state).
func BenchmarkRetentionFileSize(b *testing.B) {
	keys, versions := benchSize("CTXD_BENCH_KEYS", 10000), benchSize("CTXD_BENCH_VERSIONS", 10)
	for i := 0; i < b.N; i++ {
		s := openStore(b, bolt.Options{Limits: ctxd.Limits{MaxTxnOps: 1000}})
		var logical int64
		start := time.Now()
		for v := 0; v < versions; v++ {
			writes := make([]ctxd.Write, 0, 1000)
			for k := 0; k < keys; k++ {
				key := fmt.Sprintf("key/%08d", k)
				writes = append(writes, ctxd.Write{Namespace: "default", Key: key, Op: ctxd.OpPut, Value: value256})
				if v == versions-1 {
					logical += int64(len(key) + len(value256))
				}
				if len(writes) == cap(writes) {
					_, err := s.Txn(ctx, writes)
					require.NoError(b, err)
					writes = writes[:0]
				}
			}
			if len(writes) > 0 {
				_, err := s.Txn(ctx, writes)
				require.NoError(b, err)
			}
		}
		b.ReportMetric(time.Since(start).Seconds(), "fill-s")
		before := mustStatus(b, s).FileSizeBytes
		cstart := time.Now()
		_, err := s.ApplyRetention(ctx, store.RetentionPolicy{KeepVersions: 1})
		require.NoError(b, err)
		b.ReportMetric(time.Since(cstart).Seconds(), "compact-s")
		res, err := s.Defrag(ctx)
		require.NoError(b, err)
		b.ReportMetric(float64(before)/(1<<20), "file-before-MiB")
		b.ReportMetric(float64(res.SizeAfter)/(1<<20), "file-after-MiB")
		b.ReportMetric(float64(logical)/(1<<20), "logical-MiB")
		b.ReportMetric(float64(res.SizeAfter)/float64(logical), "after/logical")
		b.ReportMetric(float64(res.Pause.Microseconds())/1000, "defrag-pause-ms")
	}
}

// BenchmarkSnapshotRestoreDefrag measures snapshot, full restore and online
// defrag on a database of CTXD_BENCH_MB megabytes (default 100).
func BenchmarkSnapshotRestoreDefrag(b *testing.B) {
	mb := benchSize("CTXD_BENCH_MB", 100)
	value := json.RawMessage(`"` + fmt.Sprintf("%01000d", 0) + `"`)
	for i := 0; i < b.N; i++ {
		s := openStore(b, bolt.Options{Limits: ctxd.Limits{MaxTxnOps: 1000}})
		n := mb << 10 // ~1 KiB values
		writes := make([]ctxd.Write, 0, 1000)
		for k := 0; k < n; k++ {
			writes = append(writes, ctxd.Write{Namespace: "default", Key: fmt.Sprintf("key/%08d", k), Op: ctxd.OpPut, Value: value})
			if len(writes) == cap(writes) || k == n-1 {
				_, err := s.Txn(ctx, writes)
				require.NoError(b, err)
				writes = writes[:0]
			}
		}
		start := time.Now()
		path, info := writeSnapshot(b, s)
		b.ReportMetric(time.Since(start).Seconds(), "snapshot-s")
		b.ReportMetric(float64(info.Size)/(1<<20), "snapshot-MiB")

		start = time.Now()
		_, err := s.Restore(ctx, path, ctxd.RestoreOptions{})
		require.NoError(b, err)
		b.ReportMetric(time.Since(start).Seconds(), "restore-s")

		start = time.Now()
		res, err := s.Defrag(ctx)
		require.NoError(b, err)
		b.ReportMetric(time.Since(start).Seconds(), "defrag-s")
		b.ReportMetric(float64(res.Pause.Microseconds())/1000, "defrag-pause-ms")
	}
}
