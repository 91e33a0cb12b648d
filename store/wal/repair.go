package wal

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
)

// repairTail clears the last segment past its records, which end at tail
// (next is the record that would come there; e and reason say why they
// end), and returns how many bytes it overwrote. The caller fsyncs.
//
// Bytes past the records can only be what Writes no Sync had covered
// left there: records of the group of a torn one (a group is the records
// written since the last Sync that had returned, pipelined Writes
// included). If a record of a later group is intact there instead, record
// next was durable when it was written, so records that were
// acknowledged are lost: that is corruption, refused with a
// *CorruptError, never cut. Otherwise every non-zero block is overwritten
// with zeros, so that a shorter record appended at tail can never be
// followed by an older record that verifies.
func repairTail(f *os.File, sg segment, size, tail int64, next uint64, e end, reason string) (int64, error) {
	path := sg.path
	const block = 64 << 10
	buf := make([]byte, block+headerSize)
	zeros := make([]byte, len(buf))
	var dirty []int64
	for off := tail; off < size; off += block {
		n, err := f.ReadAt(buf[:min(int64(len(buf)), size-off)], off)
		if err != nil && !errors.Is(err, io.EOF) {
			return 0, fmt.Errorf("wal: read %s at offset %d: %w", path, off, err)
		}
		data, own := buf[:n], min(n, block)
		if bytes.Equal(data, zeros[:n]) {
			continue
		}
		if !bytes.Equal(data[:own], zeros[:own]) {
			dirty = append(dirty, off)
		}
		for p := 0; p < own && p+headerSize <= n; p += align {
			at, err := laterRecord(f, sg.first, data[p:p+headerSize], off+int64(p), size, next)
			if err != nil {
				return 0, err
			}
			if at {
				h := parseHeader(data[p:])
				why := reason
				if e == endZero {
					why = "zeros"
				}
				return 0, &CorruptError{File: path, Offset: tail, Reason: fmt.Sprintf(
					"the records end here (%s), but record %d, written after them once they were durable, is intact at offset %d: acknowledged records from %d on are lost",
					why, h.seq, off+int64(p), next)}
			}
		}
	}
	var zeroed int64
	for _, off := range dirty {
		n := min(block, size-off)
		if _, err := f.WriteAt(zeros[:n], off); err != nil {
			return 0, fmt.Errorf("wal: clear %s at offset %d: %w", path, off, err)
		}
		zeroed += n
	}
	return zeroed, nil
}

// laterRecord reports whether hdr, read at offset at of the segment whose
// first record is segFirst and whose size is size, starts a record that
// verifies and whose group starts after record next (record next was
// durable when it was written).
func laterRecord(f *os.File, segFirst uint64, hdr []byte, at, size int64, next uint64) (bool, error) {
	h := parseHeader(hdr)
	if h.kind != kindData || h.reserved != [3]byte{} || uint64(h.groupOff) >= h.seq ||
		h.groupStart() <= next || int64(h.length) > size-at-headerSize {
		return false, nil
	}
	payload := make([]byte, h.length)
	if _, err := f.ReadAt(payload, at+headerSize); err != nil {
		return false, fmt.Errorf("wal: read %s at offset %d: %w", f.Name(), at, err)
	}
	return checksum(segFirst, hdr, payload) == h.crc, nil
}
