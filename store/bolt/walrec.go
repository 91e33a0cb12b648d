package bolt

import (
	"bytes"
	"encoding/binary"
	"fmt"

	"github.com/framework0/ctxd"
)

// A write-ahead log record is one request's changes, whole: a record is
// the log's unit of verification (its checksum covers it all), so a
// transaction is in the log entirely or not at all.
//
//	0x01 | store id (8 bytes) | uvarint n | n x (uvarint revision | uvarint len | log value)
//
// The store id is the database's (meta/store_id): the replay refuses a
// record of another store's log. Each log value is the change exactly as
// the log bucket stores it (encodeChange): the committer and the replay
// at Open put those bytes in bbolt as they are.
const (
	formatWAL   = 0x01
	storeIDSize = 8
)

// change is one change made by the writer: decoded, with its log value
// (raw, which Value is the tail of) and the sequence number of the
// write-ahead log record that holds it. It is never modified once made.
type change struct {
	logEntry
	raw []byte
	seq uint64
}

// creates reports whether the change makes a key live that was not: a
// put whose key did not exist (PrevRev is 0 exactly then).
func (c *change) creates() bool { return c.Op == ctxd.OpPut && c.PrevRev == 0 }

// walRecord is the payload of one request's record, built change by
// change; the changes' raw bytes are slices of it.
type walRecord struct {
	buf     []byte
	offsets [][2]int // start and end of each change's log value in buf
}

func newWALRecord(id []byte, n int, size int) *walRecord {
	r := &walRecord{buf: make([]byte, 0, size+1+len(id)+binary.MaxVarintLen64*(1+2*n))}
	r.buf = append(r.buf, formatWAL)
	r.buf = append(r.buf, id...)
	r.buf = binary.AppendUvarint(r.buf, uint64(n))
	return r
}

// add appends a change's revision and log value.
func (r *walRecord) add(rev uint64, logValue []byte) {
	r.buf = binary.AppendUvarint(r.buf, rev)
	r.buf = binary.AppendUvarint(r.buf, uint64(len(logValue)))
	start := len(r.buf)
	r.buf = append(r.buf, logValue...)
	r.offsets = append(r.offsets, [2]int{start, len(r.buf)})
}

// decodeWALRecord decodes a record's store id and changes. The changes
// keep slices of b: the caller passes a copy it owns.
func decodeWALRecord(seq uint64, b []byte) ([]byte, []*change, error) {
	d := decoder{b: b}
	if f := d.byte(); d.err != nil || f != formatWAL || len(d.b) < storeIDSize {
		return nil, nil, fmt.Errorf("write-ahead log record %d: unknown format: %w", seq, errCorrupt)
	}
	id := d.b[:storeIDSize]
	d.b = d.b[storeIDSize:]
	n := d.uvarint()
	if d.err != nil || n == 0 || n > uint64(len(b)) {
		return nil, nil, fmt.Errorf("write-ahead log record %d: bad change count: %w", seq, errCorrupt)
	}
	out := make([]*change, 0, n)
	for i := uint64(0); i < n; i++ {
		rev := d.uvarint()
		size := d.uvarint()
		if d.err != nil || size > uint64(len(d.b)) {
			return nil, nil, fmt.Errorf("write-ahead log record %d: change %d: %w", seq, i, errCorrupt)
		}
		raw := d.b[:size:size]
		d.b = d.b[size:]
		e, err := decodeChangeShared(rev, raw)
		if err != nil {
			return nil, nil, fmt.Errorf("write-ahead log record %d: revision %d: %w", seq, rev, err)
		}
		out = append(out, &change{logEntry: e, raw: raw, seq: seq})
	}
	if len(d.b) != 0 {
		return nil, nil, fmt.Errorf("write-ahead log record %d: %d bytes after its changes: %w", seq, len(d.b), errCorrupt)
	}
	return id, out, nil
}

// record returns the key's state as of this change (a put), with a copy
// of the value: the change is shared by every reader.
func (c *change) record() ctxd.Record {
	r := c.logEntry.record()
	r.Value = bytes.Clone(r.Value)
	return r
}

// change returns the change, with a copy of the value.
func (c *change) change() ctxd.Change {
	out := c.Change
	out.Value = bytes.Clone(out.Value)
	return out
}
