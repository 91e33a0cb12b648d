package export_test

import (
	"encoding/json"
	"io"
	"runtime"
	"strconv"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/framework0/ctxd"
	"github.com/framework0/ctxd/export"
	"github.com/framework0/ctxd/store"
	"github.com/framework0/ctxd/store/bolt"
)

// BenchmarkWrite dumps namespaces of 1,000, 10,000 and 100,000 keys in
// each format, from a real store. allocs/key and B/key (allocated, not
// retained) include the store's reads (store.View.ForEach); they stay flat
// as the namespace grows, up to the store's B-tree depth. Run with
//
//	go test -run '^$' -bench 'BenchmarkWrite' -benchmem ./export/
func BenchmarkWrite(b *testing.B) {
	for _, n := range []int{1000, 10000, 100000} {
		st := openStore(b, bolt.Options{Limits: ctxd.Limits{MaxTxnOps: 10000}})
		fill(b, st, n, 10000)
		for _, f := range export.Formats {
			b.Run(string(f)+"/keys="+strconv.Itoa(n), func(b *testing.B) {
				benchPerKey(b, n, viewDump(st, f))
			})
		}
	}
}

// BenchmarkWriteExpiring dumps 10,000 keys from a real store, none or all
// of them expiring: what the deadlines cost. json reads the keys a second
// time for its "expires_at" member (only when a key expires); csv and txt
// add a field or a line per key. Run with
//
//	go test -run '^$' -bench 'BenchmarkWriteExpiring' -benchmem ./export/
func BenchmarkWriteExpiring(b *testing.B) {
	const n = 10000
	for _, expiring := range []bool{false, true} {
		st := openStore(b, bolt.Options{Limits: ctxd.Limits{MaxTxnOps: n}})
		ttl := time.Duration(0)
		if expiring {
			ttl = time.Hour
		}
		fillTTL(b, st, n, n, ttl)
		for _, f := range []export.Format{export.JSON, export.CSV, export.TXT} {
			b.Run(string(f)+"/expiring="+strconv.FormatBool(expiring), func(b *testing.B) {
				benchPerKey(b, n, viewDump(st, f))
			})
		}
	}
}

// BenchmarkWriteOnly measures the writers alone, over a source that
// allocates nothing: the allocations per key are the writer's own and do
// not depend on the number of keys.
func BenchmarkWriteOnly(b *testing.B) {
	for _, n := range []int{1000, 10000, 100000} {
		src := &memSource{rev: 1}
		for i := range n {
			v, _ := json.Marshal(map[string]any{"id": i, "name": "item-" + strconv.Itoa(i), "tags": []string{"a", "b"}, "ok": i%2 == 0})
			src.recs = append(src.recs, ctxd.Record{
				Namespace: "default", Key: "app/item/" + strconv.Itoa(i), Value: v, Version: 1, CreateRev: 1, ModRev: 1, Who: "bench",
			})
		}
		for _, f := range export.Formats {
			b.Run(string(f)+"/keys="+strconv.Itoa(n), func(b *testing.B) {
				benchPerKey(b, n, func() (export.Result, error) {
					return export.Write(io.Discard, f, src, export.Options{Namespace: "default", Who: "bench"})
				})
			})
		}
	}
}

// viewDump dumps namespace default of st in format f, from one view.
func viewDump(st *bolt.Store, f export.Format) func() (export.Result, error) {
	return func() (export.Result, error) {
		var res export.Result
		err := st.View(func(v store.View) error {
			var err error
			res, err = export.Write(io.Discard, f, v, export.Options{Namespace: "default", Who: "bench"})
			return err
		})
		return res, err
	}
}

// benchPerKey runs write, a dump of n keys, in the benchmark's loop and
// reports its costs per key.
func benchPerKey(b *testing.B, n int, write func() (export.Result, error)) {
	var before, after runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&before)
	b.ResetTimer()
	var res export.Result
	for b.Loop() {
		var err error
		res, err = write()
		require.NoError(b, err)
	}
	b.StopTimer()
	runtime.ReadMemStats(&after)
	keys := float64(b.N) * float64(n)
	b.ReportMetric(float64(after.Mallocs-before.Mallocs)/keys, "allocs/key")
	b.ReportMetric(float64(after.TotalAlloc-before.TotalAlloc)/keys, "B/key")
	b.ReportMetric(float64(res.Bytes)/float64(n), "out-B/key")
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/keys, "ns/key")
}

// memSource is a Source over records in memory.
type memSource struct {
	rev  uint64
	recs []ctxd.Record
}

func (m *memSource) Revision() uint64 { return m.rev }

func (m *memSource) ForEach(_, _ string, fn func(ctxd.Record) error) error {
	for _, r := range m.recs {
		if err := fn(r); err != nil {
			return err
		}
	}
	return nil
}

func (m *memSource) ForEachChange(string, func(ctxd.Change) error) error { return nil }

func (m *memSource) Change(string, string, uint64) (ctxd.Change, error) {
	return ctxd.Change{}, ctxd.ErrNotFound
}
