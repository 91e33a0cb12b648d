package powerfs

import (
	"slices"
)

// pageSize is the unit in which contents are stored and shared, and the
// block size reported to stat.
const pageSize = 4096

type page [pageSize]byte

// zeroPage backs every allocated page that has not been written (fallocate):
// it counts as a block but is never written in place.
var zeroPage = new(page)

// contents are a file's bytes, stored in pages so that a snapshot (the
// durable copy made at each fsync) shares them instead of copying the
// file: a page shared with a snapshot is copied the first time it is
// written afterwards. Bytes past size in the last page are always zero,
// so growing the file reads zeros there.
type contents struct {
	size  int64
	pages []*page // nil: a hole (reads as zeros, uses no block)
	own   []bool  // own[i]: pages[i] is this contents' alone, writable in place
}

// share returns a copy of c that shares its pages; both copies then copy a
// page before writing it.
func (c *contents) share() contents {
	clear(c.own)
	return contents{size: c.size, pages: slices.Clone(c.pages), own: make([]bool, len(c.pages))}
}

// blocks is the number of 512-byte blocks the allocated pages take.
func (c *contents) blocks() uint64 {
	var n uint64
	for _, p := range c.pages {
		if p != nil {
			n += pageSize / 512
		}
	}
	return n
}

// grow makes room for page index i.
func (c *contents) grow(i int) {
	if i >= len(c.pages) {
		c.pages = append(c.pages, make([]*page, i+1-len(c.pages))...)
		c.own = append(c.own, make([]bool, i+1-len(c.own))...)
	}
}

// writable returns page i, allocated and owned.
func (c *contents) writable(i int) *page {
	c.grow(i)
	switch {
	case c.pages[i] == nil:
		c.pages[i] = new(page)
		c.own[i] = true
	case !c.own[i]:
		p := *c.pages[i]
		c.pages[i] = &p
		c.own[i] = true
	}
	return c.pages[i]
}

// writeAt writes b at off, growing the file if needed.
func (c *contents) writeAt(b []byte, off int64) {
	for len(b) > 0 {
		i, o := int(off/pageSize), int(off%pageSize)
		n := copy(c.writable(i)[o:], b)
		b, off = b[n:], off+int64(n)
		c.size = max(c.size, off)
	}
}

// readAt reads into b from off and returns the number of bytes read: less
// than len(b) at the end of the file.
func (c *contents) readAt(b []byte, off int64) int {
	if off >= c.size {
		return 0
	}
	b = b[:min(int64(len(b)), c.size-off)]
	read := 0
	for read < len(b) {
		i, o := int(off/pageSize), int(off%pageSize)
		var n int
		if i < len(c.pages) && c.pages[i] != nil {
			n = copy(b[read:], c.pages[i][o:])
		} else {
			n = copy(b[read:], zeroPage[o:])
		}
		read += n
		off += int64(n)
	}
	return read
}

// truncate sets the size; bytes past a smaller size are forgotten.
func (c *contents) truncate(size int64) {
	if size < c.size {
		keep := int((size + pageSize - 1) / pageSize)
		if keep < len(c.pages) {
			clear(c.pages[keep:])
			c.pages, c.own = c.pages[:keep], c.own[:keep]
		}
		if o := int(size % pageSize); o != 0 && keep-1 < len(c.pages) && c.pages[keep-1] != nil {
			clear(c.writable(keep - 1)[o:])
		}
	}
	c.size = size
}

// allocate backs [off, off+n) with blocks (zero where there were holes)
// and, unless keepSize, grows the file to cover it.
func (c *contents) allocate(off, n int64, keepSize bool) {
	for i := int(off / pageSize); int64(i)*pageSize < off+n; i++ {
		c.grow(i)
		if c.pages[i] == nil {
			c.pages[i], c.own[i] = zeroPage, false
		}
	}
	if !keepSize {
		c.size = max(c.size, off+n)
	}
}

// zero writes zeros over [off, off+n) without growing the file; whole
// pages become holes when punch is set, zero blocks otherwise.
func (c *contents) zero(off, n int64, punch bool) {
	end := off + n
	for off < end {
		i, o := int(off/pageSize), int(off%pageSize)
		l := min(int64(pageSize-o), end-off)
		if i >= len(c.pages) {
			break
		}
		switch {
		case c.pages[i] == nil:
		case o == 0 && l == pageSize && punch:
			c.pages[i], c.own[i] = nil, false
		case o == 0 && l == pageSize:
			c.pages[i], c.own[i] = zeroPage, false
		default:
			clear(c.writable(i)[o : o+int(l)])
		}
		off += l
	}
}

// bytes returns the whole contents.
func (c *contents) bytes() []byte {
	b := make([]byte, c.size)
	c.readAt(b, 0)
	return b
}
