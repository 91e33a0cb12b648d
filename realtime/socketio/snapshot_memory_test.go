package socketio_test

import (
	"runtime"
	"strconv"
	"strings"
	"testing"

	"github.com/rs/zerolog"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/framework0/ctxd"
	"github.com/framework0/ctxd/internal/testkit"
	"github.com/framework0/ctxd/realtime/socketio"
	"github.com/framework0/ctxd/store/bolt"
)

// A context_snapshot costs a few times its size in memory, not the 8 to
// 11 times of a map marshalled by encoding/json: allocations are counted
// (runtime.MemStats.TotalAlloc), not time.
func TestContextSnapshotAllocatesAFewTimesItsSize(t *testing.T) {
	st := testkit.OpenBolt(t, bolt.Options{})
	value := `"` + strings.Repeat("x", 10_000) + `"`
	var writes []ctxd.Write
	for i := range 800 {
		writes = append(writes, ctxd.Write{Op: ctxd.OpPut, Namespace: "default", Key: "k" + strconv.Itoa(i), Value: []byte(value), Who: "test"})
		if len(writes) == 100 {
			_, err := st.Txn(t.Context(), writes)
			require.NoError(t, err)
			writes = nil
		}
	}
	s := socketio.New(st.Store, socketio.Options{}, zerolog.Nop())
	defer s.Close()

	_, err := socketio.BuildSnapshot(s, "default") // warm: the store's page cache, pools
	require.NoError(t, err)
	var before, after runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&before)
	p, err := socketio.BuildSnapshot(s, "default")
	runtime.ReadMemStats(&after)
	require.NoError(t, err)
	require.Greater(t, len(p), 8_000_000)
	ratio := float64(after.TotalAlloc-before.TotalAlloc) / float64(len(p))
	t.Logf("allocated %.1f times the packet's %d bytes", ratio, len(p))
	assert.Less(t, ratio, 5.0)
}
