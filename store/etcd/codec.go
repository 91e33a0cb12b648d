package etcd

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"strings"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
)

// Key layout under the prefix. A namespace name never holds '/', so the
// first '/' after the namespace ends it; a key may hold anything.
const (
	liveDir = "k/" // <prefix>k/<ns>/<key>: the live value's envelope
	tombDir = "t/" // <prefix>t/<ns>/<key>: the last delete's envelope
	// deadDir (<prefix>d/<ns>/<key>) holds an expiring key's deadline
	// record, on the key's lease: a keepalive moves the deadline there,
	// without touching the key (which would make a version).
	deadDir = "d/"
	// bornKey (<prefix>meta/born) is written once, by the first Open of
	// the prefix: its create revision is below every change of the
	// prefix, so that history from there on is known whole even when
	// etcd compacted the cluster above older revisions.
	bornKey = "meta/born"
)

// The first byte of every value ctxd writes to etcd: envelopeFormat, or
// envelopeDeadline for one that carries a deadline (a put with a TTL, and
// the tombstone it arms). Values without a deadline are written in format
// 1, byte for byte as before expiring keys existed.
const (
	envelopeFormat   = 1
	envelopeDeadline = 2
)

// envelope is what ctxd stores in an etcd value: who made the change,
// when, the deadline a put with a TTL set, and for a put the JSON value,
// byte for byte as the client sent it.
//
// Encoding: format byte (1, or 2 with a deadline), uvarint length of who,
// who, 8 bytes of the time in Unix nanoseconds (big endian), in format 2
// 8 bytes of the deadline in Unix nanoseconds, then the value to the end.
//
// A tombstone with a deadline is armed: the put with a TTL writes it, so
// that once etcd's lease deleted the key (which writes nothing of ours)
// the tombstone still says that the key's life ended by expiry.
type envelope struct {
	who       string
	time      time.Time
	expiresAt time.Time
	value     []byte
}

func (e envelope) encode() []byte {
	b := make([]byte, 0, 1+binary.MaxVarintLen64+len(e.who)+16+len(e.value))
	format := byte(envelopeFormat)
	if !e.expiresAt.IsZero() {
		format = envelopeDeadline
	}
	b = append(b, format)
	b = binary.AppendUvarint(b, uint64(len(e.who)))
	b = append(b, e.who...)
	b = binary.BigEndian.AppendUint64(b, uint64(e.time.UnixNano()))
	if format == envelopeDeadline {
		b = binary.BigEndian.AppendUint64(b, uint64(e.expiresAt.UnixNano()))
	}
	return append(b, e.value...)
}

var errBadEnvelope = errors.New("not a ctxd value")

func decodeEnvelope(b []byte) (envelope, error) {
	if len(b) == 0 || (b[0] != envelopeFormat && b[0] != envelopeDeadline) {
		return envelope{}, fmt.Errorf("%w: unknown format", errBadEnvelope)
	}
	fixed := uint64(8)
	if b[0] == envelopeDeadline {
		fixed = 16
	}
	n, w := binary.Uvarint(b[1:])
	if w <= 0 || uint64(len(b)-1-w) < n+fixed {
		return envelope{}, fmt.Errorf("%w: truncated", errBadEnvelope)
	}
	rest := b[1+w:]
	e := envelope{who: string(rest[:n])}
	e.time = time.Unix(0, int64(binary.BigEndian.Uint64(rest[n:n+8]))).UTC()
	if fixed == 16 {
		e.expiresAt = time.Unix(0, int64(binary.BigEndian.Uint64(rest[n+8:n+16]))).UTC()
	}
	if v := rest[n+fixed:]; len(v) > 0 {
		e.value = v
	}
	return e, nil
}

// deadline is the value of an expiring key's deadline record (deadDir),
// written on the key's lease with every put with a TTL and moved by each
// keepalive: the lease (a write that replaces or deletes the key learns
// from it which lease to revoke), the lease's granted TTL in seconds (a
// keepalive renews the lease to it) and the deadline it gives.
//
// Encoding: 8 bytes each of the lease ID, the TTL in seconds and the
// deadline in Unix nanoseconds (big endian).
type deadline struct {
	lease      clientv3.LeaseID
	ttlSeconds int64
	at         time.Time
	// recordRev, not encoded, is the modification revision of the
	// deadline record this was read from, for a patch that keeps it: its
	// commit requires the record unchanged (a keepalive since moved the
	// deadline, which the put would otherwise turn back in its envelope
	// and answer). 0: not read from a record.
	recordRev int64
}

func (d deadline) encode() []byte {
	b := binary.BigEndian.AppendUint64(make([]byte, 0, 24), uint64(d.lease))
	b = binary.BigEndian.AppendUint64(b, uint64(d.ttlSeconds))
	return binary.BigEndian.AppendUint64(b, uint64(d.at.UnixNano()))
}

func decodeDeadline(b []byte) (deadline, error) {
	if len(b) != 24 {
		return deadline{}, fmt.Errorf("%w: a deadline record of %d bytes", errBadEnvelope, len(b))
	}
	return deadline{
		lease:      clientv3.LeaseID(binary.BigEndian.Uint64(b[:8])),
		ttlSeconds: int64(binary.BigEndian.Uint64(b[8:16])),
		at:         time.Unix(0, int64(binary.BigEndian.Uint64(b[16:]))).UTC(),
	}, nil
}

// dataKeys builds and parses the etcd keys of one generation's data,
// under its data prefix (generation.go).
type dataKeys struct{ prefix string }

func (k dataKeys) live(ns, key string) string { return k.prefix + liveDir + ns + "/" + key }
func (k dataKeys) tomb(ns, key string) string { return k.prefix + tombDir + ns + "/" + key }
func (k dataKeys) dead(ns, key string) string { return k.prefix + deadDir + ns + "/" + key }

// nsDead is the range of a namespace's deadline records.
func (k dataKeys) nsDead(ns string) string { return k.prefix + deadDir + ns + "/" }

// nsLive is the range of a namespace's live keys.
func (k dataKeys) nsLive(ns string) string { return k.prefix + liveDir + ns + "/" }

// parse splits an etcd key into its directory (liveDir, tombDir or deadDir), the
// namespace and the key; ok is false for a key ctxd did not write.
func (k dataKeys) parse(etcdKey []byte) (dir, ns, key string, ok bool) {
	s, found := strings.CutPrefix(string(etcdKey), k.prefix)
	if !found || len(s) < 2 {
		return "", "", "", false
	}
	dir, s = s[:2], s[2:]
	if dir != liveDir && dir != tombDir && dir != deadDir {
		return "", "", "", false
	}
	ns, key, found = strings.Cut(s, "/")
	return dir, ns, key, found && ns != "" && key != ""
}

// eachPage reads the keys of [from, end) a page of limit at a time, all
// at one revision: rev, or (0) the first page's, which it returns. Each
// page is one request with the request timeout; fn gets each response,
// and an error from it stops the reading.
func (s *Store) eachPage(ctx context.Context, from, end string, rev, limit int64, fn func(*clientv3.GetResponse) error) (int64, error) {
	for {
		rctx, cancel := context.WithTimeout(ctx, s.opts.RequestTimeout)
		resp, err := s.cli.Get(rctx, from, clientv3.WithRange(end), clientv3.WithLimit(limit), clientv3.WithRev(rev))
		cancel()
		if err != nil {
			return rev, err
		}
		if rev == 0 {
			rev = resp.Header.Revision
		}
		if err := fn(resp); err != nil {
			return rev, err
		}
		if !resp.More || len(resp.Kvs) == 0 {
			return rev, nil
		}
		from = string(resp.Kvs[len(resp.Kvs)-1].Key) + "\x00"
	}
}

// prefixEnd is the end of the range of keys starting with p.
func prefixEnd(p string) string {
	b := []byte(p)
	for i := len(b) - 1; i >= 0; i-- {
		if b[i] < 0xff {
			b[i]++
			return string(b[:i+1])
		}
	}
	return "\x00" // every key: etcd's "no end"
}
