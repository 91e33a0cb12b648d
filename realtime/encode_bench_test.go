package realtime

import (
	"encoding/json"
	"strconv"
	"testing"
	"time"

	"github.com/framework0/ctxd"
)

// BenchmarkNewEntries measures encoding a page of 1,024 changes read from
// the log into ring entries (the hub's one encoding per change): bolt's
// revisions of one change, and etcd transactions of 8 changes a revision,
// whose frames also carry index and count.
//
//	go test -run '^$' -bench NewEntries -count 5 ./realtime/
func BenchmarkNewEntries(b *testing.B) {
	for _, perRev := range []int{1, 8} {
		b.Run("changes_per_revision="+strconv.Itoa(perRev), func(b *testing.B) {
			page := make([]ctxd.Change, 1024)
			at := time.Date(2026, 12, 2, 6, 0, 0, 0, time.UTC)
			for i := range page {
				page[i] = ctxd.Change{Namespace: "default", Key: "app/key" + strconv.Itoa(i), Op: ctxd.OpPut,
					Value: json.RawMessage(`{"n":` + strconv.Itoa(i) + `,"s":"some text"}`), Who: "bench", Time: at,
					Version: 3, Revision: uint64(1 + i/perRev)}
			}
			b.ReportAllocs()
			for b.Loop() {
				_ = newEntries(page)
			}
		})
	}
}
