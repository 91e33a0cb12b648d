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
		assert.Len(t, o.pending(limit).changes, want, "limit %d", limit)
	}
	o.drop(3, 1)
	assert.Len(t, o.pending(1).changes, 2)
	assert.Equal(t, uint64(3), o.base)
	assert.Len(t, o.keys["n"]["k"], 3)
}

// TestPendingKeepsRecordOrderWithKeepalives: the committer's batches
// follow the records' order across changes and keepalives, so the last
// record it notes as applied never skips a keepalive.
func TestPendingKeepsRecordOrderWithKeepalives(t *testing.T) {
	var o overlay
	o.init(0)
	o.add([]*change{
		{logEntry: logEntry{Change: ctxd.Change{Revision: 1, Namespace: "n", Key: "k", Op: ctxd.OpPut}}, seq: 1},
		{logEntry: logEntry{Change: ctxd.Change{Revision: 2, Namespace: "n", Key: "k", Op: ctxd.OpPut}}, seq: 3},
	}, map[string]uint64{"n": 1})
	o.addExtends([]*extend{{ns: "n", key: "k", modRev: 1, seq: 2}})
	b := o.pending(2)
	assert.Len(t, b.changes, 1)
	assert.Len(t, b.extends, 1)
	assert.Equal(t, uint64(2), b.seq)
	o.drop(1, 2)
	assert.Empty(t, o.extends)
	assert.Nil(t, o.ext["n"], "the dropped keepalive leaves the index by key")
	assert.Equal(t, int64(1), o.size.Load())
	b = o.pending(10)
	assert.Len(t, b.changes, 1)
	assert.Equal(t, uint64(3), b.seq)
}
