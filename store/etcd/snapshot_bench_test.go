package etcd_test

import (
	"encoding/json"
	"fmt"
	"io"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/framework0/ctxd"
	"github.com/framework0/ctxd/internal/testkit"
	"github.com/framework0/ctxd/internal/testkit/etcdkit"
	"github.com/framework0/ctxd/store/bolt"
	"github.com/framework0/ctxd/store/etcd"
)

// benchKeys is how many keys the snapshot benchmarks hold.
const benchKeys = 10000

// What a snapshot of an etcd prefix and a full restore into one cost,
// beside the bolt backend's snapshot of the same keys (a ratio within one
// run; DESIGN.md):
//
//	go test ./store/etcd -run '^$' -bench Snapshot -benchtime 3x
func BenchmarkSnapshot(b *testing.B) {
	src := testkit.OpenBolt(b, bolt.Options{})
	dst := open(b, etcd.Options{Prefix: etcdkit.Prefix(etcdkit.Name(b))})
	for i := 0; i < benchKeys; i += 1000 {
		var writes []ctxd.Write
		for j := i; j < i+1000; j++ {
			writes = append(writes, ctxd.Write{Namespace: "default", Key: fmt.Sprintf("key-%06d", j), Op: ctxd.OpPut,
				Value: json.RawMessage(fmt.Sprintf(`{"n":%d,"pad":"0123456789abcdef"}`, j)), Who: "bench"})
		}
		_, err := src.Import(b.Context(), writes)
		require.NoError(b, err)
		_, err = dst.Import(b.Context(), writes)
		require.NoError(b, err)
	}
	b.Run("bolt-write", func(b *testing.B) {
		for b.Loop() {
			_, err := src.WriteSnapshot(io.Discard)
			require.NoError(b, err)
		}
		b.ReportMetric(float64(benchKeys)*float64(b.N)/b.Elapsed().Seconds(), "keys/s")
	})
	b.Run("etcd-write", func(b *testing.B) {
		for b.Loop() {
			_, err := dst.WriteSnapshot(io.Discard)
			require.NoError(b, err)
		}
		b.ReportMetric(float64(benchKeys)*float64(b.N)/b.Elapsed().Seconds(), "keys/s")
	})
	path, _ := testkit.WriteSnapshot(b, src)
	b.Run("etcd-full-restore", func(b *testing.B) {
		for b.Loop() {
			_, err := dst.Restore(b.Context(), path, ctxd.RestoreOptions{})
			require.NoError(b, err)
		}
		b.ReportMetric(float64(benchKeys)*float64(b.N)/b.Elapsed().Seconds(), "keys/s")
	})
}
