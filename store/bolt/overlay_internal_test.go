package bolt

import (
	"testing"

	"github.com/stretchr/testify/assert"

	"github.com/framework0/ctxd"
)

// The committer's batches end at a write-ahead log record's end: it
// records the last record it applied, so a transaction split between two
// batches would lose its tail at a replay (found by the power-cut test).
func TestPendingTakesWholeRecords(t *testing.T) {
	var o overlay
	o.init(0)
	seqs := []uint64{1, 1, 1, 2, 2, 3}
	var cs []*change
	for i, seq := range seqs {
		cs = append(cs, &change{logEntry: logEntry{Change: ctxd.Change{Revision: uint64(i + 1), Namespace: "n", Key: "k", Op: ctxd.OpPut}}, seq: seq})
	}
	o.add(cs, map[string]uint64{"n": 1})
	for limit, want := range map[int]int{1: 3, 2: 3, 3: 3, 4: 5, 5: 5, 6: 6, 100: 6} {
		assert.Len(t, o.pending(limit), want, "limit %d", limit)
	}
	o.drop(3)
	assert.Len(t, o.pending(1), 2)
	assert.Equal(t, uint64(3), o.base)
	assert.Len(t, o.keys["n"]["k"], 3)
}
