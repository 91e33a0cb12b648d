package wal_test

import (
	"bytes"
	"fmt"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/framework0/ctxd/store/wal"
)

// BenchmarkAppend appends groups of 256-byte records, each Append one
// fdatasync: one record per Append is a lone write's cost, 32 is what the
// store's writer does under load. zerofill is the default preparation of
// segments (fallocate, then zeros written over), fallocate is
// Options.FallocateOnly. Segments are 4 MiB, so that a run of 2,000 appends of
// 32 records rotates twice and pays for preparing the next segment in the
// background (the cost per byte is the same as with 64 MiB segments).
func BenchmarkAppend(b *testing.B) {
	for _, fallocOnly := range []bool{true, false} {
		for _, n := range []int{1, 32} {
			name := fmt.Sprintf("%dx256B/fallocate", n)
			if !fallocOnly {
				name = fmt.Sprintf("%dx256B/zerofill", n)
			}
			b.Run(name, func(b *testing.B) {
				l := openLog(b, b.TempDir(), wal.Options{SegmentSize: 4 << 20, FallocateOnly: fallocOnly})
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
