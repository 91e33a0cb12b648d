package wal_test

import (
	"os"
	"path/filepath"
	"slices"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"golang.org/x/sys/unix"
)

// BenchmarkFdatasync is the floor under BenchmarkAppend: a bare 256-byte
// write and fdatasync, into a 64 MiB file preallocated with fallocate,
// into one preallocated by writing zeros, and at the end of a file that
// grows with each write (so that each fdatasync also commits a size
// change). It reports the p50 too: the floor of a lone durable write,
// which the store's BenchmarkPutSequential is compared with.
func BenchmarkFdatasync(b *testing.B) {
	const size = 64 << 20
	for _, how := range []string{"fallocated", "zerofilled", "extending"} {
		b.Run(how, func(b *testing.B) {
			f, err := os.Create(filepath.Join(b.TempDir(), "f"))
			require.NoError(b, err)
			defer f.Close()
			switch how {
			case "fallocated":
				require.NoError(b, unix.Fallocate(int(f.Fd()), 0, 0, size))
			case "zerofilled":
				zeros := make([]byte, 1<<20)
				for off := int64(0); off < size; off += int64(len(zeros)) {
					_, err := f.WriteAt(zeros, off)
					require.NoError(b, err)
				}
			}
			require.NoError(b, f.Sync())
			rec := make([]byte, 256)
			var off int64
			lat := make([]time.Duration, 0, b.N)
			b.ResetTimer()
			for i := 0; i < b.N; i++ {
				if how != "extending" && off+int64(len(rec)) > size {
					b.StopTimer() // the whole file was written once: start over in a new one
					require.NoError(b, f.Truncate(0))
					require.NoError(b, unix.Fallocate(int(f.Fd()), 0, 0, size))
					require.NoError(b, f.Sync())
					off = 0
					b.StartTimer()
				}
				start := time.Now()
				_, err := f.WriteAt(rec, off)
				require.NoError(b, err)
				require.NoError(b, unix.Fdatasync(int(f.Fd())))
				lat = append(lat, time.Since(start))
				off += int64(len(rec))
			}
			b.StopTimer()
			slices.Sort(lat)
			b.ReportMetric(float64(lat[len(lat)/2].Microseconds()), "p50-µs")
		})
	}
}
