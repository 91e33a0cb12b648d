package bolt

import (
	"fmt"
	"runtime"
	"testing"
	"weak"

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

// TestDropReleasesChanges: the changes (and keepalives) the committer
// dropped are no longer referenced by the overlay, by its revision order
// or by a key's list, though drop no longer copies what remains: the
// garbage collector frees them while the overlay keeps the rest.
func TestDropReleasesChanges(t *testing.T) {
	var o overlay
	o.init(0)
	var dropped []weak.Pointer[change]
	var cs []*change
	for i := range 6 {
		// Keys k0, k1, k0, k1, ...: each key's list keeps a later change.
		c := &change{logEntry: logEntry{Change: ctxd.Change{Revision: uint64(i + 1), Namespace: "n", Key: fmt.Sprintf("k%d", i%2), Op: ctxd.OpPut}}, seq: uint64(i + 1)}
		cs = append(cs, c)
		if i < 4 {
			dropped = append(dropped, weak.Make(c))
		}
	}
	o.add(cs, map[string]uint64{"n": 2})
	x := &extend{ns: "n", key: "k0", modRev: 1, seq: 1}
	o.addExtends([]*extend{x, {ns: "n", key: "k1", modRev: 2, seq: 5}})
	droppedExtend := weak.Make(x)
	cs, x = nil, nil
	o.drop(4, 4)
	runtime.GC()
	for i, w := range dropped {
		assert.Nil(t, w.Value(), "change %d was dropped and is still referenced", i+1)
	}
	assert.Nil(t, droppedExtend.Value(), "the dropped keepalive is still referenced")
	assert.Len(t, o.changes, 2)
	assert.Len(t, o.extends, 1)
	assert.Equal(t, []uint64{5}, revisions(o.keys["n"]["k0"]))
	assert.Equal(t, []uint64{6}, revisions(o.keys["n"]["k1"]))
	// The overlay goes on: adds after a drop, and a drop of everything.
	o.add([]*change{{logEntry: logEntry{Change: ctxd.Change{Revision: 7, Namespace: "n", Key: "k0", Op: ctxd.OpPut}}, seq: 7}}, map[string]uint64{"n": 2})
	assert.Equal(t, []uint64{5, 7}, revisions(o.keys["n"]["k0"]))
	assert.Equal(t, []uint64{5, 6, 7}, revisions(o.changes))
	o.drop(7, 7)
	assert.Empty(t, o.changes)
	assert.Empty(t, o.keys)
	assert.Empty(t, o.extends)
	assert.Equal(t, int64(0), o.size.Load())
}

func revisions(cs []*change) []uint64 {
	var out []uint64
	for _, c := range cs {
		out = append(out, c.Revision)
	}
	return out
}
