package bolt

import (
	"bytes"
	"fmt"
	"math/rand/v2"
	"testing"
	"time"

	bbolt "go.etcd.io/bbolt"

	"github.com/framework0/ctxd/migrations"
	"github.com/framework0/ctxd/perf"
)

// BenchmarkLayout is the layout study of DESIGN.md ("The layout on a
// deep tree"): on the database BenchmarkLargeDatabase builds (the same
// environment variables; build it once and keep the folder), for batches
// of n random overwrites of one preloaded namespace, how many pages each
// bucket's part of a put dirties (bbolt nodes materialised in the write
// transaction, which is rolled back: the file is not changed), each
// bucket's shape (depth, pages, bytes per entry), and what a scan of the
// log reads against a scan of the kv bucket. Run:
//
//	CTXD_BENCH_LARGE_DB=/tmp/ctxd-layout-1g CTXD_BENCH_LARGE_BYTES=1073741824 \
//	  go test ./store/bolt/ -run '^$' -bench Layout -benchtime 1x
func BenchmarkLayout(b *testing.B) {
	path, keys := largeDatabase(b)
	s, err := Open(path, Options{})
	if err != nil {
		b.Fatal(err)
	}
	defer s.Close()
	ns := perf.PreloadNamespaces[0]
	b.Run("shape", func(b *testing.B) {
		err := s.db.View(func(tx *bbolt.Tx) error {
			for _, name := range [][]byte{migrations.KVBucket(ns), migrations.HistBucket(ns), migrations.BucketLog} {
				st := tx.Bucket(name).Stats()
				b.Logf("bucket %-12s depth %d, %7d keys, %6d leaf + %4d branch + %6d overflow pages, %5.1f bytes in leaves per key",
					name, st.Depth, st.KeyN, st.LeafPageN, st.BranchPageN, st.LeafOverflowN, float64(st.LeafInuse)/float64(st.KeyN))
			}
			return nil
		})
		if err != nil {
			b.Fatal(err)
		}
	})
	// "together" is the layout not built (DESIGN.md): the history index
	// entry in the kv bucket, right after its key, so that both land on
	// one leaf; it is approximated by writing it there.
	for _, n := range []int{1, 64, 1024} {
		for _, part := range []string{"kv", "hist", "log", "all", "together"} {
			b.Run(fmt.Sprintf("batch=%d/%s", n, part), func(b *testing.B) {
				var nodes int
				for range b.N {
					nodes += dirtiedPages(b, s.db, ns, keys, n, part)
				}
				b.ReportMetric(float64(nodes)/float64(b.N), "pages/batch")
				b.ReportMetric(float64(nodes)/float64(b.N*n), "pages/put")
			})
		}
	}
	b.Run("scan", func(b *testing.B) {
		for range b.N {
			err := s.db.View(func(tx *bbolt.Tx) error {
				for _, name := range [][]byte{migrations.KVBucket(ns), migrations.BucketLog} {
					start := time.Now()
					var n, bytes int
					c := tx.Bucket(name).Cursor()
					for k, v := c.First(); k != nil; k, v = c.Next() {
						n++
						bytes += len(k) + len(v)
					}
					b.Logf("scan of %s: %d entries, %d MiB of keys and values, %s", name, n, bytes>>20, time.Since(start).Round(time.Millisecond))
				}
				return nil
			})
			if err != nil {
				b.Fatal(err)
			}
		}
	})
}

// dirtiedPages applies, in a write transaction it rolls back, n overwrites
// of random keys of ns, writing the buckets part names as the committer
// would, and returns the pages they dirtied.
func dirtiedPages(b *testing.B, db *bbolt.DB, ns string, keys int64, n int, part string) int {
	tx, err := db.Begin(true)
	if err != nil {
		b.Fatal(err)
	}
	defer func() { _ = tx.Rollback() }()
	kv, hist, log := tx.Bucket(migrations.KVBucket(ns)), tx.Bucket(migrations.HistBucket(ns)), tx.Bucket(migrations.BucketLog)
	log.FillPercent = 1.0
	_, entry := log.Cursor().Last()
	entry = bytes.Clone(entry)
	rev := lastRevision(tx)
	rng := rand.New(rand.NewPCG(uint64(time.Now().UnixNano()), 2))
	st := tx.Stats()
	before := st.GetNodeCount()
	for range n {
		key := fmt.Sprintf("pre-%010d", rng.Int64N(keys))
		rev++
		if part == "kv" || part == "all" {
			rec := kvRecord{version: 2, createRev: 1, modRev: rev}
			if err := kv.Put([]byte(key), rec.encode()); err != nil {
				b.Fatal(err)
			}
		}
		if part == "hist" || part == "all" {
			if err := hist.Put(histKey(key, rev), nil); err != nil {
				b.Fatal(err)
			}
		}
		if part == "together" {
			rec := kvRecord{version: 2, createRev: 1, modRev: rev}
			if err := kv.Put([]byte(key), rec.encode()); err != nil {
				b.Fatal(err)
			}
			if err := kv.Put(histKey(key, rev), nil); err != nil {
				b.Fatal(err)
			}
		}
		if part == "log" || part == "all" || part == "together" {
			if err := log.Put(encodeRevision(rev), entry); err != nil {
				b.Fatal(err)
			}
		}
	}
	st = tx.Stats()
	return int(st.GetNodeCount() - before)
}
