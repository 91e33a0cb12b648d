package bolt

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"time"

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
//
// A keepalive's record (format 2) moves deadlines and makes no change:
//
//	0x02 | store id (8 bytes) | uvarint n | n x (uvarint len(ns) | ns |
//	uvarint len(key) | key | uvarint mod_rev | varint expires_unix_nanos)
//
// Each entry applies only while the key is still at mod_rev: a later
// put or delete has replaced what it extended.
const (
	formatWAL       = 0x01
	formatKeepAlive = 0x02
	storeIDSize     = 8
)

// extend is one keepalive made by the writer: the key at modRev now
// expires at expiresAt. seq is its write-ahead log record's.
type extend struct {
	ns, key   string
	modRev    uint64
	expiresAt time.Time
	seq       uint64
}

// encodeKeepAlive is the payload of the record of keepalives xs.
func encodeKeepAlive(id []byte, xs []*extend) []byte {
	b := make([]byte, 0, 1+len(id)+binary.MaxVarintLen64)
	b = append(b, formatKeepAlive)
	b = append(b, id...)
	b = binary.AppendUvarint(b, uint64(len(xs)))
	for _, x := range xs {
		b = binary.AppendUvarint(b, uint64(len(x.ns)))
		b = append(b, x.ns...)
		b = binary.AppendUvarint(b, uint64(len(x.key)))
		b = append(b, x.key...)
		b = binary.AppendUvarint(b, x.modRev)
		b = binary.AppendVarint(b, x.expiresAt.UnixNano())
	}
	return b
}

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

// walEntries is what one write-ahead log record holds: changes, or
// keepalives.
type walEntries struct {
	id      []byte
	changes []*change
	extends []*extend
}

// decodeWALRecord decodes a record's store id and changes or keepalives.
// The changes keep slices of b: the caller passes a copy it owns.
func decodeWALRecord(seq uint64, b []byte) (walEntries, error) {
	d := decoder{b: b}
	f := d.byte()
	if d.err != nil || (f != formatWAL && f != formatKeepAlive) || len(d.b) < storeIDSize {
		return walEntries{}, fmt.Errorf("write-ahead log record %d: unknown format: %w", seq, errCorrupt)
	}
	id := d.b[:storeIDSize]
	d.b = d.b[storeIDSize:]
	n := d.uvarint()
	if d.err != nil || n == 0 || n > uint64(len(b)) {
		return walEntries{}, fmt.Errorf("write-ahead log record %d: bad change count: %w", seq, errCorrupt)
	}
	if f == formatKeepAlive {
		xs := make([]*extend, 0, n)
		for i := uint64(0); i < n; i++ {
			x := &extend{ns: d.string(), key: d.string(), modRev: d.uvarint(), seq: seq}
			x.expiresAt = time.Unix(0, d.varint()).UTC()
			xs = append(xs, x)
		}
		if d.err != nil || len(d.b) != 0 {
			return walEntries{}, fmt.Errorf("write-ahead log record %d: bad keepalive: %w", seq, errCorrupt)
		}
		return walEntries{id: id, extends: xs}, nil
	}
	out := make([]*change, 0, n)
	for i := uint64(0); i < n; i++ {
		rev := d.uvarint()
		size := d.uvarint()
		if d.err != nil || size > uint64(len(d.b)) {
			return walEntries{}, fmt.Errorf("write-ahead log record %d: change %d: %w", seq, i, errCorrupt)
		}
		raw := d.b[:size:size]
		d.b = d.b[size:]
		e, err := decodeChangeShared(rev, raw)
		if err != nil {
			return walEntries{}, fmt.Errorf("write-ahead log record %d: revision %d: %w", seq, rev, err)
		}
		out = append(out, &change{logEntry: e, raw: raw, seq: seq})
	}
	if len(d.b) != 0 {
		return walEntries{}, fmt.Errorf("write-ahead log record %d: %d bytes after its changes: %w", seq, len(d.b), errCorrupt)
	}
	return walEntries{id: id, changes: out}, nil
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
