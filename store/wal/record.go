package wal

import (
	"encoding/binary"
	"fmt"
	"hash/crc32"
	"slices"
)

// The record format; the package comment describes it.
const (
	headerSize = 24
	align      = 8

	// kindData is the kind of a record whose payload is the caller's.
	// Other kinds are reserved: a record of an unknown kind is an error,
	// never skipped, so that a log written by a newer format is refused.
	kindData byte = 1
)

var castagnoli = crc32.MakeTable(crc32.Castagnoli)

// recordSize is the space a record with an n-byte payload takes in a
// segment: header, payload and zero padding to a multiple of 8.
func recordSize(n int) int64 {
	return (headerSize + int64(n) + align - 1) &^ (align - 1)
}

// appendRecord appends the record of payload, with sequence number seq,
// to buf, for the segment whose first record is segFirst. groupOff is seq
// minus the sequence number of the first record of its group: the first
// record that was not durable yet when its Write began.
func appendRecord(buf []byte, segFirst, seq uint64, groupOff uint32, payload []byte) []byte {
	start := len(buf)
	size := int(recordSize(len(payload)))
	buf = slices.Grow(buf, size)[:start+size]
	rec := buf[start:]
	binary.LittleEndian.PutUint32(rec[4:], uint32(len(payload)))
	binary.LittleEndian.PutUint64(rec[8:], seq)
	binary.LittleEndian.PutUint32(rec[16:], groupOff)
	rec[20] = kindData
	rec[21], rec[22], rec[23] = 0, 0, 0
	copy(rec[headerSize:], payload)
	clear(rec[headerSize+len(payload):])
	binary.LittleEndian.PutUint32(rec[0:], checksum(segFirst, rec[:headerSize], payload))
	return buf
}

// checksum is the CRC-32C of the segment's first sequence number
// segFirst (8 bytes, little-endian), header bytes 4 to 24 and the payload.
// segFirst ties a record to its segment: bytes that a file held before it
// became this segment never verify.
func checksum(segFirst uint64, hdr, payload []byte) uint32 {
	crc := crc32.Update(0, castagnoli, binary.LittleEndian.AppendUint64(make([]byte, 0, 8), segFirst))
	crc = crc32.Update(crc, castagnoli, hdr[4:headerSize])
	return crc32.Update(crc, castagnoli, payload)
}

// header is a decoded record header.
type header struct {
	crc      uint32
	length   uint32
	seq      uint64
	groupOff uint32
	kind     byte
	reserved [3]byte
}

func parseHeader(b []byte) header {
	return header{
		crc:      binary.LittleEndian.Uint32(b[0:]),
		length:   binary.LittleEndian.Uint32(b[4:]),
		seq:      binary.LittleEndian.Uint64(b[8:]),
		groupOff: binary.LittleEndian.Uint32(b[16:]),
		kind:     b[20],
		reserved: [3]byte{b[21], b[22], b[23]},
	}
}

func (h header) zero() bool { return h == header{} }

// groupStart is the sequence number of the first record of this record's
// group: every record before it was durable when this one was written.
func (h header) groupStart() uint64 { return h.seq - uint64(h.groupOff) }

// check says what is wrong with a header read where record want was
// expected with room bytes left in the segment (header included), before
// its checksum is known; "" when nothing is.
func (h header) check(want uint64, room int64) string {
	switch {
	case h.kind != kindData:
		return fmt.Sprintf("unknown record kind %d", h.kind)
	case h.reserved != [3]byte{}:
		return "reserved header bytes are not zero"
	case int64(h.length) > room-headerSize:
		return fmt.Sprintf("length %d runs past the end of the segment (%d bytes left)", h.length, room-headerSize)
	case uint64(h.groupOff) >= h.seq:
		return fmt.Sprintf("group offset %d of record %d is out of range", h.groupOff, h.seq)
	}
	return ""
}
