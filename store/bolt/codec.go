package bolt

import (
	"encoding/binary"
	"errors"
	"time"

	"github.com/framework0/ctxd"
)

// Record encodings. Every encoded record starts with a format byte so that a
// later schema can change the encoding and still read old records.
//
// kv value (format 2, schema 3; format 1 of schemas 1-2 also held the
// who, time and value, which the log already has):
//
//	0x02 | uvarint version | uvarint create_rev | uvarint mod_rev
//
// The current value is read from the log at mod_rev, so it is stored once.
//
// log value (format 1):
//
//	0x01 | op byte | uvarint len(ns) | ns | uvarint len(key) | key |
//	uvarint version | uvarint create_rev | uvarint prev_rev |
//	varint unix_nanos | uvarint len(who) | who | value (rest)
const (
	formatV1 = 0x01
	formatKV = 0x02
)

var errCorrupt = errors.New("corrupt record")

func encodeRevision(rev uint64) []byte {
	var b [8]byte
	binary.BigEndian.PutUint64(b[:], rev)
	return b[:]
}

// histKey is the history index key of one change: key 0x00 revision. Keys
// never contain 0x00 (control characters are refused), so one key's entries
// are contiguous and ordered by revision.
func histKey(key string, rev uint64) []byte {
	b := make([]byte, 0, len(key)+9)
	b = append(b, key...)
	b = append(b, 0)
	return binary.BigEndian.AppendUint64(b, rev)
}

func histPrefix(key string) []byte {
	b := make([]byte, 0, len(key)+1)
	b = append(b, key...)
	return append(b, 0)
}

type kvRecord struct {
	version, createRev, modRev uint64
}

func (r *kvRecord) encode() []byte {
	b := make([]byte, 0, 1+3*binary.MaxVarintLen64)
	b = append(b, formatKV)
	b = binary.AppendUvarint(b, r.version)
	b = binary.AppendUvarint(b, r.createRev)
	return binary.AppendUvarint(b, r.modRev)
}

// decoder reads the fields of one encoded record; the first error sticks.
type decoder struct {
	b   []byte
	err error
}

func (d *decoder) uvarint() uint64 { return decodeVarint(d, binary.Uvarint) }

func (d *decoder) varint() int64 { return decodeVarint(d, binary.Varint) }

// decodeVarint reads one varint of d with read (binary.Uvarint or
// binary.Varint).
func decodeVarint[T uint64 | int64](d *decoder, read func([]byte) (T, int)) T {
	if d.err != nil {
		return 0
	}
	v, n := read(d.b)
	if n <= 0 {
		d.err = errCorrupt
		return 0
	}
	d.b = d.b[n:]
	return v
}

func (d *decoder) byte() byte {
	if d.err != nil || len(d.b) == 0 {
		d.err = errCorrupt
		return 0
	}
	c := d.b[0]
	d.b = d.b[1:]
	return c
}

func (d *decoder) string() string {
	n := d.uvarint()
	if d.err != nil {
		return ""
	}
	if uint64(len(d.b)) < n {
		d.err = errCorrupt
		return ""
	}
	s := string(d.b[:n])
	d.b = d.b[n:]
	return s
}

// rest copies the remaining bytes: bbolt's memory is only valid inside
// the transaction.
func (d *decoder) rest() []byte {
	if d.err != nil {
		return nil
	}
	return append([]byte(nil), d.b...)
}

// decodeKV decodes a kv record: the key's version and revisions.
func decodeKV(b []byte) (kvRecord, error) {
	d := decoder{b: b}
	if d.byte() != formatKV && d.err == nil {
		return kvRecord{}, errCorrupt
	}
	r := kvRecord{version: d.uvarint(), createRev: d.uvarint(), modRev: d.uvarint()}
	return r, d.err
}

func encodeChange(c *ctxd.Change, createRev uint64) []byte {
	b := make([]byte, 0, 2+len(c.Namespace)+len(c.Key)+len(c.Who)+len(c.Value)+7*binary.MaxVarintLen64)
	b = append(b, formatV1, byte(c.Op))
	b = binary.AppendUvarint(b, uint64(len(c.Namespace)))
	b = append(b, c.Namespace...)
	b = binary.AppendUvarint(b, uint64(len(c.Key)))
	b = append(b, c.Key...)
	b = binary.AppendUvarint(b, c.Version)
	b = binary.AppendUvarint(b, createRev)
	b = binary.AppendUvarint(b, c.PrevRev)
	b = binary.AppendVarint(b, c.Time.UnixNano())
	b = binary.AppendUvarint(b, uint64(len(c.Who)))
	b = append(b, c.Who...)
	return append(b, c.Value...)
}

// logEntry is a decoded log value: the change and its key's create revision.
type logEntry struct {
	ctxd.Change
	createRev uint64
}

func decodeChange(rev uint64, b []byte) (logEntry, error) {
	return decodeChangeOf(rev, b, true)
}

// decodeChangeShared is decodeChange whose Value is the tail of b rather
// than a copy: for bytes the caller owns (a write-ahead log record).
func decodeChangeShared(rev uint64, b []byte) (logEntry, error) {
	return decodeChangeOf(rev, b, false)
}

func decodeChangeOf(rev uint64, b []byte, copyValue bool) (logEntry, error) {
	d := decoder{b: b}
	if d.byte() != formatV1 && d.err == nil {
		return logEntry{}, errCorrupt
	}
	var e logEntry
	e.Revision = rev
	e.Op = ctxd.Op(d.byte())
	e.Namespace = d.string()
	e.Key = d.string()
	e.Version = d.uvarint()
	e.createRev = d.uvarint()
	e.PrevRev = d.uvarint()
	e.Time = time.Unix(0, d.varint()).UTC()
	e.Who = d.string()
	if d.err == nil && len(d.b) > 0 {
		if copyValue {
			e.Value = d.rest()
		} else {
			e.Value = d.b[:len(d.b):len(d.b)]
		}
	}
	if d.err == nil && e.Op != ctxd.OpPut && e.Op != ctxd.OpDelete {
		d.err = errCorrupt
	}
	return e, d.err
}

// record returns the key's state as of this change (a put).
func (e *logEntry) record() ctxd.Record {
	return ctxd.Record{
		Namespace: e.Namespace, Key: e.Key, Value: e.Value, Version: e.Version,
		CreateRev: e.createRev, ModRev: e.Revision, Who: e.Who, UpdatedAt: e.Time,
	}
}

// decodeCurrent decodes the log entry a kv record points at into rec,
// checking that it is a put of ns/key without allocating their names
// again; the value is copied only withValue.
func decodeCurrent(b []byte, ns, key string, rec *ctxd.Record, withValue bool) error {
	d := decoder{b: b}
	if d.byte() != formatV1 || d.byte() != byte(ctxd.OpPut) || d.err != nil {
		return errCorrupt
	}
	if !d.equal(ns) || !d.equal(key) {
		return errCorrupt
	}
	rec.Version = d.uvarint()
	_ = d.uvarint() // create_rev: the kv record has it
	_ = d.uvarint() // prev_rev
	rec.UpdatedAt = time.Unix(0, d.varint()).UTC()
	rec.Who = d.string()
	if withValue {
		rec.Value = d.rest()
	}
	return d.err
}

// equal reads a length-prefixed string and reports whether it is s.
func (d *decoder) equal(s string) bool {
	n := d.uvarint()
	if d.err != nil || uint64(len(d.b)) < n {
		d.err = errCorrupt
		return false
	}
	ok := string(d.b[:n]) == s
	d.b = d.b[n:]
	return ok
}
