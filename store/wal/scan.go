package wal

import (
	"bufio"
	"fmt"
	"io"
	"os"
)

// end says why a scanner stopped.
type end int

const (
	endNone end = iota // a record was read
	endRoom            // fewer than a header's bytes are left in the segment
	endZero            // an all-zero header: where the records end
	endBad             // a record that does not verify (torn, damaged or stale)
)

// scanner reads one segment's records in order from its start, verifying
// each.
type scanner struct {
	path  string
	first uint64 // the segment's first record
	r     *bufio.Reader
	size  int64  // the segment's size
	off   int64  // offset of the next record
	next  uint64 // sequence number the next record must have
	hdr   [headerSize]byte
	buf   []byte
	// reason says what was wrong with the record at off when scan
	// returned endBad.
	reason string
}

func newScanner(f *os.File, path string, size int64, first uint64) *scanner {
	return &scanner{
		path:  path,
		first: first,
		r:     bufio.NewReaderSize(io.NewSectionReader(f, 0, size), int(min(size, 1<<20))),
		size:  size,
		next:  first,
	}
}

// scan reads the record at s.off. When it verifies, scan returns its
// payload (valid until the next scan) and endNone, and moves to the next
// record; otherwise it says why the records end there and stays. An error
// is an I/O error.
func (s *scanner) scan() ([]byte, end, error) {
	room := s.size - s.off
	if room < headerSize {
		return nil, endRoom, nil
	}
	if _, err := io.ReadFull(s.r, s.hdr[:]); err != nil {
		return nil, endNone, fmt.Errorf("wal: read %s at offset %d: %w", s.path, s.off, err)
	}
	h := parseHeader(s.hdr[:])
	if h.zero() {
		return nil, endZero, nil
	}
	if s.reason = h.check(s.next, room); s.reason != "" {
		return nil, endBad, nil
	}
	total := recordSize(int(h.length))
	// The padding of a record at the end of a file shorter than a
	// multiple of 8 may be missing: it is not part of the record.
	need := int(min(total, room) - headerSize)
	if cap(s.buf) < need {
		s.buf = make([]byte, need)
	}
	buf := s.buf[:need]
	if _, err := io.ReadFull(s.r, buf); err != nil {
		return nil, endNone, fmt.Errorf("wal: read %s at offset %d: %w", s.path, s.off, err)
	}
	payload := buf[:h.length]
	if checksum(s.first, s.hdr[:], payload) != h.crc {
		s.reason = fmt.Sprintf("checksum mismatch (record %d expected here, length %d)", s.next, h.length)
		return nil, endBad, nil
	}
	if h.seq != s.next {
		s.reason = fmt.Sprintf("record %d where record %d was expected", h.seq, s.next)
		return nil, endBad, nil
	}
	s.off += total
	s.next++
	return payload, endNone, nil
}
