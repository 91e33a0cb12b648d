package wal_test

import (
	"bytes"
	"fmt"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/framework0/ctxd/store/wal"
)

// BenchmarkAppend appends groups of 256-byte records, each Append one
// fdatasync, into 64 MiB segments (rotation included): one record per
// Append is a lone write's cost, 32 is what the store's writer does under
// load. zerofill preallocates by writing zeros instead of fallocate.
func BenchmarkAppend(b *testing.B) {
	for _, zeroFill := range []bool{false, true} {
		for _, n := range []int{1, 32} {
			name := fmt.Sprintf("%dx256B/fallocate", n)
			if zeroFill {
				name = fmt.Sprintf("%dx256B/zerofill", n)
			}
			b.Run(name, func(b *testing.B) {
				l := openLog(b, b.TempDir(), wal.Options{ZeroFill: zeroFill})
				recs := make([][]byte, n)
				for i := range recs {
					recs[i] = bytes.Repeat([]byte{'v'}, 256)
				}
				b.SetBytes(int64(256 * n))
				b.ResetTimer()
				for i := 0; i < b.N; i++ {
					_, err := l.Append(recs...)
					require.NoError(b, err)
				}
				b.ReportMetric(float64(b.N*n)/b.Elapsed().Seconds(), "records/s")
			})
		}
	}
}
