package bolt_test

import (
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/framework0/ctxd"
	"github.com/framework0/ctxd/patch"
	"github.com/framework0/ctxd/store/bolt"
)

// BenchmarkPatchContention64 is 64 writers updating one document at once,
// each its own member (the document has 64, of ~40 bytes each):
//
//   - merge, json: a PATCH (merge patch, JSON Patch) applied by the writer;
//     nothing is retried and nothing is lost.
//   - cas-read-modify-write: what a client did before patches: read the
//     value, change its member, put it back with the version it read, and
//     retry on a conflict. It reports the retries per update.
//   - put-whole-value: a blind put of a whole document of the same size (it
//     loses the others' changes): the cost of the write alone.
func BenchmarkPatchContention64(b *testing.B) {
	members := make([]string, 64)
	for i := range members {
		members[i] = fmt.Sprintf(`"f%02d":"%s"`, i, strings.Repeat("v", 32))
	}
	doc := json.RawMessage("{" + strings.Join(members, ",") + "}")
	run := func(b *testing.B, update func(s *bolt.Store, worker int, n int64) (retries int64, err error)) {
		s := openStore(b, bolt.Options{}).Store
		if _, err := s.Put(ctx, "default", "doc", doc, nil, "bench"); err != nil {
			b.Fatal(err)
		}
		var workers, count, retries atomic.Int64
		b.SetParallelism(64 / max(1, runtimeProcs()))
		b.ReportAllocs()
		b.ResetTimer()
		b.RunParallel(func(pb *testing.PB) {
			w := int(workers.Add(1)-1) % 64
			for pb.Next() {
				r, err := update(s, w, count.Add(1))
				if err != nil {
					b.Error(err)
					return
				}
				retries.Add(r)
			}
		})
		b.StopTimer()
		b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "updates/s")
		b.ReportMetric(float64(retries.Load())/float64(b.N), "retries/op")
		ws := s.Stats()
		b.ReportMetric(float64(ws.Requests)/float64(ws.Commits), "requests/commit")
	}
	b.Run("merge", func(b *testing.B) {
		run(b, func(s *bolt.Store, w int, n int64) (int64, error) {
			p := ctxd.Patch{Type: ctxd.MergePatch, Doc: json.RawMessage(fmt.Sprintf(`{"f%02d":%d}`, w, n))}
			_, err := s.Patch(ctx, "default", "doc", p, nil, "bench")
			return 0, err
		})
	})
	b.Run("json", func(b *testing.B) {
		run(b, func(s *bolt.Store, w int, n int64) (int64, error) {
			p := ctxd.Patch{Type: ctxd.JSONPatch, Doc: json.RawMessage(fmt.Sprintf(`[{"op":"replace","path":"/f%02d","value":%d}]`, w, n))}
			_, err := s.Patch(ctx, "default", "doc", p, nil, "bench")
			return 0, err
		})
	})
	b.Run("cas-read-modify-write", func(b *testing.B) {
		run(b, func(s *bolt.Store, w int, n int64) (int64, error) {
			p := ctxd.Patch{Type: ctxd.MergePatch, Doc: json.RawMessage(fmt.Sprintf(`{"f%02d":%d}`, w, n))}
			for retries := int64(0); ; retries++ {
				cur, err := s.Get("default", "doc")
				if err != nil {
					return retries, err
				}
				next, err := patch.Apply(cur.Value, p, ctxd.DefaultLimits)
				if err != nil {
					return retries, err
				}
				_, err = s.Put(ctx, "default", "doc", next, &cur.Version, "bench")
				if !errors.Is(err, ctxd.ErrConflict) {
					return retries, err
				}
			}
		})
	})
	b.Run("put-whole-value", func(b *testing.B) {
		run(b, func(s *bolt.Store, w int, n int64) (int64, error) {
			v := strings.Replace(string(doc), `"f00":"`, `"f00":"`+strconv.FormatInt(n%10, 10), 1)
			_, err := s.Put(ctx, "default", "doc", json.RawMessage(v), nil, "bench")
			return 0, err
		})
	})
}
