package bolt

import (
	"encoding/binary"
	"errors"
	"fmt"
	"hash/fnv"
	"io"
	"os"
)

// checkFileStructure validates the page structure of a bbolt file from its
// bytes, before bbolt maps it. bbolt trusts its file: a page id, an
// overflow count or an element offset that points past the end of a
// truncated or damaged file makes it fault on memory (SIGBUS or SIGSEGV),
// which no recover() catches. So a file from elsewhere (a snapshot, an
// upload) is walked here first: the valid meta page with the highest
// transaction id, every page reachable from its root bucket and its
// freelist, each bounded by the file and by the page count, each element
// inside its page, and no page visited twice.
func checkFileStructure(path string) error { return checkFile(path, true) }

// checkOpenable checks what bbolt reads when it opens a file: its meta
// pages and, through the newest valid one, the freelist page (tens of
// KiB, not the file: Open stays fast on a large database). A damaged meta
// or freelist page would otherwise fault or panic inside bbolt.Open; the
// tree's pages are read when used, as bbolt reads them.
func checkOpenable(path string) error { return checkFile(path, false) }

func checkFile(path string, tree bool) error {
	f, err := os.Open(path)
	if err != nil {
		return err
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return err
	}
	c := &fileChecker{r: f, size: fi.Size(), seen: map[uint64]bool{}}
	m, err := c.meta()
	if err != nil {
		return err
	}
	c.pageSize, c.pgid = uint64(m.pageSize), m.pgid
	if c.pgid*c.pageSize > uint64(c.size) {
		return fmt.Errorf("file is truncated: %d bytes, its meta page needs %d", c.size, c.pgid*c.pageSize)
	}
	if m.freelist != ^uint64(0) {
		if err := c.freelist(m.freelist); err != nil {
			return err
		}
	}
	if !tree {
		return nil
	}
	return c.bucket(m.root, nil, 0)
}

const (
	pageHeaderSize  = 16
	pageElementSize = 16
	flagBranch      = 0x01
	flagLeaf        = 0x02
	flagMeta        = 0x04
	flagFreelist    = 0x10
	leafBucketFlag  = 0x01
	boltMagic       = 0xED0CDAED
	boltVersion     = 2
	maxTreeDepth    = 64
)

type fileChecker struct {
	r        io.ReaderAt
	size     int64
	pageSize uint64
	pgid     uint64
	seen     map[uint64]bool
}

type fileMeta struct {
	pageSize       uint32
	root, freelist uint64
	pgid, txid     uint64
}

// meta returns the valid meta page with the highest transaction id, as
// bbolt would choose.
func (c *fileChecker) meta() (fileMeta, error) {
	var best *fileMeta
	try := func(off int64) {
		buf := make([]byte, pageHeaderSize+64)
		if _, err := c.r.ReadAt(buf, off); err != nil {
			return
		}
		if binary.LittleEndian.Uint16(buf[8:])&flagMeta == 0 {
			return
		}
		m := buf[pageHeaderSize:]
		h := fnv.New64a()
		h.Write(m[:56])
		if binary.LittleEndian.Uint32(m[0:]) != boltMagic || binary.LittleEndian.Uint32(m[4:]) != boltVersion ||
			binary.LittleEndian.Uint64(m[56:]) != h.Sum64() {
			return
		}
		fm := fileMeta{
			pageSize: binary.LittleEndian.Uint32(m[8:]),
			root:     binary.LittleEndian.Uint64(m[16:]),
			freelist: binary.LittleEndian.Uint64(m[32:]),
			pgid:     binary.LittleEndian.Uint64(m[40:]),
			txid:     binary.LittleEndian.Uint64(m[48:]),
		}
		if fm.pageSize < 512 || fm.pageSize > 1<<16 || fm.pageSize&(fm.pageSize-1) != 0 {
			return
		}
		if best == nil || fm.txid > best.txid {
			best = &fm
		}
	}
	try(0)
	first := best
	if first != nil {
		try(int64(first.pageSize))
	} else {
		for ps := int64(512); ps <= 1<<16; ps *= 2 {
			try(ps)
		}
	}
	if best == nil {
		return fileMeta{}, errors.New("no valid bbolt meta page: not a database, or both meta pages are damaged")
	}
	return *best, nil
}

// page reads page id with its overflow pages, checking its bounds.
func (c *fileChecker) page(id uint64) ([]byte, error) {
	if id < 2 || id >= c.pgid {
		return nil, fmt.Errorf("page %d is out of range [2, %d)", id, c.pgid)
	}
	if c.seen[id] {
		return nil, fmt.Errorf("page %d is referenced twice", id)
	}
	c.seen[id] = true
	head := make([]byte, pageHeaderSize)
	if _, err := c.r.ReadAt(head, int64(id*c.pageSize)); err != nil {
		return nil, fmt.Errorf("page %d: %w", id, err)
	}
	if got := binary.LittleEndian.Uint64(head); got != id {
		return nil, fmt.Errorf("page %d says it is page %d", id, got)
	}
	overflow := uint64(binary.LittleEndian.Uint32(head[12:]))
	if id+1+overflow > c.pgid {
		return nil, fmt.Errorf("page %d overflows past the last page", id)
	}
	for i := uint64(1); i <= overflow; i++ {
		if c.seen[id+i] {
			return nil, fmt.Errorf("page %d overlaps page %d", id, id+i)
		}
		c.seen[id+i] = true
	}
	buf := make([]byte, (1+overflow)*c.pageSize)
	if _, err := c.r.ReadAt(buf, int64(id*c.pageSize)); err != nil {
		return nil, fmt.Errorf("page %d: %w", id, err)
	}
	return buf, nil
}

func (c *fileChecker) freelist(id uint64) error {
	p, err := c.page(id)
	if err != nil {
		return fmt.Errorf("freelist: %w", err)
	}
	if binary.LittleEndian.Uint16(p[8:])&flagFreelist == 0 {
		return fmt.Errorf("freelist page %d has the wrong type", id)
	}
	count, start := uint64(binary.LittleEndian.Uint16(p[10:])), uint64(pageHeaderSize)
	if count == 0xFFFF {
		count, start = binary.LittleEndian.Uint64(p[pageHeaderSize:]), pageHeaderSize+8
	}
	if count > (uint64(len(p))-start)/8 {
		return fmt.Errorf("freelist page %d lists more ids than it holds", id)
	}
	for i := uint64(0); i < count; i++ {
		if free := binary.LittleEndian.Uint64(p[start+8*i:]); free < 2 || free >= c.pgid {
			return fmt.Errorf("freelist page %d lists page %d, out of range", id, free)
		}
	}
	return nil
}

// bucket checks a bucket given its root page id, or its inline page.
func (c *fileChecker) bucket(root uint64, inline []byte, depth int) error {
	if depth > maxTreeDepth {
		return errors.New("buckets nest too deep")
	}
	if root == 0 {
		return c.elements(inline, flagLeaf, depth)
	}
	p, err := c.page(root)
	if err != nil {
		return err
	}
	return c.elements(p, 0, depth)
}

// elements checks the elements of page p (want: required type, 0 = any).
func (c *fileChecker) elements(p []byte, want uint16, depth int) error {
	if depth > maxTreeDepth {
		return errors.New("tree too deep")
	}
	if len(p) < pageHeaderSize {
		return errors.New("page shorter than its header")
	}
	flags, count := binary.LittleEndian.Uint16(p[8:]), int(binary.LittleEndian.Uint16(p[10:]))
	if want != 0 && flags&want == 0 || flags&(flagBranch|flagLeaf) == 0 {
		return fmt.Errorf("page has unexpected type %#x", flags)
	}
	if pageHeaderSize+count*pageElementSize > len(p) {
		return fmt.Errorf("page holds %d elements, more than fit", count)
	}
	for i := 0; i < count; i++ {
		off := pageHeaderSize + i*pageElementSize
		e := p[off : off+pageElementSize]
		if flags&flagBranch != 0 {
			pos, ksize := uint64(binary.LittleEndian.Uint32(e)), uint64(binary.LittleEndian.Uint32(e[4:]))
			if uint64(off)+pos+ksize > uint64(len(p)) {
				return errors.New("branch key outside its page")
			}
			child, err := c.page(binary.LittleEndian.Uint64(e[8:]))
			if err != nil {
				return err
			}
			if err := c.elements(child, 0, depth+1); err != nil {
				return err
			}
			continue
		}
		eflags := binary.LittleEndian.Uint32(e)
		pos, ksize, vsize := uint64(binary.LittleEndian.Uint32(e[4:])), uint64(binary.LittleEndian.Uint32(e[8:])), uint64(binary.LittleEndian.Uint32(e[12:]))
		end := uint64(off) + pos + ksize + vsize
		if end > uint64(len(p)) {
			return errors.New("leaf key or value outside its page")
		}
		if eflags&leafBucketFlag == 0 {
			continue
		}
		v := p[uint64(off)+pos+ksize : end]
		if len(v) < 16 {
			return errors.New("bucket header too short")
		}
		root := binary.LittleEndian.Uint64(v)
		if err := c.bucket(root, v[16:], depth+1); err != nil {
			return err
		}
	}
	return nil
}
