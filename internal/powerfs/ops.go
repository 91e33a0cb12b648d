package powerfs

import (
	"math/rand/v2"
)

// sectorSize is the unit a disk persists whole: a torn write keeps some of
// its sectors and loses the others.
const sectorSize = 512

// Fallocate modes (linux/falloc.h) that the file system supports.
const (
	fallocKeepSize  = 0x01
	fallocPunchHole = 0x02
	fallocZeroRange = 0x10
)

type opKind int

const (
	opWrite opKind = iota
	opTruncate
	opFallocate
)

// op is a change to a file's contents not yet made durable by an fsync.
type op struct {
	kind opKind
	off  int64  // write, fallocate
	data []byte // write
	size int64  // truncate: the new size; fallocate: the length
	mode uint32 // fallocate
}

func (o *op) apply(c *contents) {
	switch o.kind {
	case opWrite:
		c.writeAt(o.data, o.off)
	case opTruncate:
		c.truncate(o.size)
	case opFallocate:
		applyFallocate(c, o.off, o.size, o.mode)
	}
}

// validFallocate reports whether mode is a fallocate mode the file system
// supports.
func validFallocate(mode uint32) bool {
	switch mode {
	case 0, fallocKeepSize, fallocPunchHole | fallocKeepSize, fallocZeroRange, fallocZeroRange | fallocKeepSize:
		return true
	}
	return false
}

func applyFallocate(c *contents, off, n int64, mode uint32) {
	keep := mode&fallocKeepSize != 0
	switch {
	case mode&fallocPunchHole != 0:
		c.zero(off, n, true)
	case mode&fallocZeroRange != 0:
		c.zero(off, n, false)
		c.allocate(off, n, keep)
	default:
		c.allocate(off, n, keep)
	}
}

// sectors splits a write at the disk's sector boundaries (absolute file
// offsets, not offsets within the write).
func (o *op) sectors() []op {
	var out []op
	for b, off := o.data, o.off; len(b) > 0; {
		n := min(int64(len(b)), sectorSize-off%sectorSize)
		out = append(out, op{kind: opWrite, off: off, data: b[:n]})
		b, off = b[n:], off+n
	}
	return out
}

// replay applies ops to c as a disk might have persisted them at a power
// cut: each op is kept or dropped at random, the kept ones land in a random
// order, and each kept write keeps a random subset of its sectors (none:
// counted as dropped; some: counted as torn).
func replay(c *contents, ops []op, rng *rand.Rand, rep *Report) {
	var kept []op
	for _, o := range ops {
		if rng.IntN(2) == 0 {
			kept = append(kept, o)
		} else {
			rep.DroppedOps++
		}
	}
	rng.Shuffle(len(kept), func(i, j int) { kept[i], kept[j] = kept[j], kept[i] })
	for _, o := range kept {
		if o.kind != opWrite {
			o.apply(c)
			continue
		}
		secs := o.sectors()
		var landed []op
		for _, s := range secs {
			if len(secs) == 1 || rng.IntN(2) == 0 {
				landed = append(landed, s)
			}
		}
		switch {
		case len(landed) == 0:
			rep.DroppedOps++
		case len(landed) < len(secs):
			rep.TornOps++
		}
		for _, s := range landed {
			s.apply(c)
		}
	}
}
