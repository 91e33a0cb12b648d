package bolt

import (
	"bytes"
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
//	0x02 | uvarint version | uvarint create_rev | uvarint mod_rev [| varint expires_unix_nanos]
//
// The current value is read from the log at mod_rev, so it is stored once.
// The deadline (since schema 5) is there only for a key that expires: a
// keepalive moves it without a log entry, so the kv record is where the
// current one is kept.
//
// log value (format 1):
//
//	0x01 | op byte | uvarint len(ns) | ns | uvarint len(key) | key |
//	uvarint version | uvarint create_rev | uvarint prev_rev |
//	varint unix_nanos | uvarint len(who) | who | value (rest)
//
// log value (format 3, since schema 5: a put with a deadline, or an
// expiry; every other change is still written in format 1):
//
//	0x03 | (format 1 from the op byte to who) | uvarint flags |
//	[varint expires_unix_nanos, when flags&1] | value (rest)
//
// flags: 1 the put set a deadline, 2 the delete is an expiry.
const (
	formatV1  = 0x01
	formatKV  = 0x02
	formatTTL = 0x03

	flagDeadline = 1
	flagExpired  = 2
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
	// expiresAt is the key's deadline (zero: none).
	expiresAt time.Time
}

func (r *kvRecord) encode() []byte {
	b := make([]byte, 0, 1+4*binary.MaxVarintLen64)
	b = append(b, formatKV)
	b = binary.AppendUvarint(b, r.version)
	b = binary.AppendUvarint(b, r.createRev)
	b = binary.AppendUvarint(b, r.modRev)
	if !r.expiresAt.IsZero() {
		b = binary.AppendVarint(b, r.expiresAt.UnixNano())
	}
	return b
}

// ttlKey is the deadline index entry of a key (bucket ttl, since schema
// 5): unix nanos big-endian | ns | 0x00 | key, so a cursor from the start
// meets the earliest deadlines first.
func ttlKey(at time.Time, ns, key string) []byte {
	b := make([]byte, 0, 8+len(ns)+1+len(key))
	b = binary.BigEndian.AppendUint64(b, uint64(at.UnixNano()))
	b = append(b, ns...)
	b = append(b, 0)
	return append(b, key...)
}

// decodeTTLKey splits a deadline index entry.
func decodeTTLKey(k []byte) (at time.Time, ns, key string, err error) {
	if len(k) < 10 {
		return time.Time{}, "", "", errCorrupt
	}
	rest := k[8:]
	i := bytes.IndexByte(rest, 0)
	if i <= 0 || i == len(rest)-1 {
		return time.Time{}, "", "", errCorrupt
	}
	return time.Unix(0, int64(binary.BigEndian.Uint64(k))).UTC(), string(rest[:i]), string(rest[i+1:]), nil
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
	if d.err == nil && len(d.b) > 0 {
		r.expiresAt = time.Unix(0, d.varint()).UTC()
	}
	return r, d.err
}

func encodeChange(c *ctxd.Change, createRev uint64) []byte {
	b := make([]byte, 0, 2+len(c.Namespace)+len(c.Key)+len(c.Who)+len(c.Value)+9*binary.MaxVarintLen64)
	format := byte(formatV1)
	if !c.ExpiresAt.IsZero() || c.Expired {
		format = formatTTL
	}
	b = append(b, format, byte(c.Op))
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
	if format == formatTTL {
		var flags uint64
		if !c.ExpiresAt.IsZero() {
			flags |= flagDeadline
		}
		if c.Expired {
			flags |= flagExpired
		}
		b = binary.AppendUvarint(b, flags)
		if !c.ExpiresAt.IsZero() {
			b = binary.AppendVarint(b, c.ExpiresAt.UnixNano())
		}
	}
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
	format := d.byte()
	if format != formatV1 && format != formatTTL && d.err == nil {
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
	if format == formatTTL {
		e.ExpiresAt, e.Expired = d.ttlTail()
	}
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
		ExpiresAt: e.ExpiresAt,
	}
}

// ttlTail reads the flags and deadline of a format 3 log value.
func (d *decoder) ttlTail() (expiresAt time.Time, expired bool) {
	flags := d.uvarint()
	if flags&flagDeadline != 0 {
		expiresAt = time.Unix(0, d.varint()).UTC()
	}
	return expiresAt, flags&flagExpired != 0
}

// decodeCurrent decodes the log entry a kv record points at into rec,
// checking that it is a put of ns/key without allocating their names
// again; the value is copied only withValue.
func decodeCurrent(b []byte, ns, key string, rec *ctxd.Record, withValue bool) error {
	d := decoder{b: b}
	format := d.byte()
	if format != formatV1 && format != formatTTL || d.byte() != byte(ctxd.OpPut) || d.err != nil {
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
	if format == formatTTL {
		rec.ExpiresAt, _ = d.ttlTail()
	}
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
