package etcd

import (
	"encoding/binary"
	"errors"
	"fmt"
	"strings"
	"time"
)

// Key layout under the prefix. A namespace name never holds '/', so the
// first '/' after the namespace ends it; a key may hold anything.
const (
	liveDir = "k/" // <prefix>k/<ns>/<key>: the live value's envelope
	tombDir = "t/" // <prefix>t/<ns>/<key>: the last delete's envelope
	// bornKey (<prefix>meta/born) is written once, by the first Open of
	// the prefix: its create revision is below every change of the
	// prefix, so that history from there on is known whole even when
	// etcd compacted the cluster above older revisions.
	bornKey = "meta/born"
)

// envelopeFormat is the first byte of every value ctxd writes to etcd.
const envelopeFormat = 1

// envelope is what ctxd stores in an etcd value: who made the change,
// when, and for a put the JSON value, byte for byte as the client sent it.
//
// Encoding: format byte (1), uvarint length of who, who, 8 bytes of the
// time in Unix nanoseconds (big endian), then the value to the end.
type envelope struct {
	who   string
	time  time.Time
	value []byte
}

func (e envelope) encode() []byte {
	b := make([]byte, 0, 1+binary.MaxVarintLen64+len(e.who)+8+len(e.value))
	b = append(b, envelopeFormat)
	b = binary.AppendUvarint(b, uint64(len(e.who)))
	b = append(b, e.who...)
	b = binary.BigEndian.AppendUint64(b, uint64(e.time.UnixNano()))
	return append(b, e.value...)
}

var errBadEnvelope = errors.New("not a ctxd value")

func decodeEnvelope(b []byte) (envelope, error) {
	if len(b) == 0 || b[0] != envelopeFormat {
		return envelope{}, fmt.Errorf("%w: unknown format", errBadEnvelope)
	}
	n, w := binary.Uvarint(b[1:])
	if w <= 0 || uint64(len(b)-1-w) < n+8 {
		return envelope{}, fmt.Errorf("%w: truncated", errBadEnvelope)
	}
	rest := b[1+w:]
	e := envelope{who: string(rest[:n])}
	e.time = time.Unix(0, int64(binary.BigEndian.Uint64(rest[n:n+8]))).UTC()
	if v := rest[n+8:]; len(v) > 0 {
		e.value = v
	}
	return e, nil
}

// dataKeys builds and parses the etcd keys of one generation's data,
// under its data prefix (generation.go).
type dataKeys struct{ prefix string }

func (k dataKeys) live(ns, key string) string { return k.prefix + liveDir + ns + "/" + key }
func (k dataKeys) tomb(ns, key string) string { return k.prefix + tombDir + ns + "/" + key }

// nsLive is the range of a namespace's live keys.
func (k dataKeys) nsLive(ns string) string { return k.prefix + liveDir + ns + "/" }

// parse splits an etcd key into its directory (liveDir or tombDir), the
// namespace and the key; ok is false for a key ctxd did not write.
func (k dataKeys) parse(etcdKey []byte) (dir, ns, key string, ok bool) {
	s, found := strings.CutPrefix(string(etcdKey), k.prefix)
	if !found || len(s) < 2 {
		return "", "", "", false
	}
	dir, s = s[:2], s[2:]
	if dir != liveDir && dir != tombDir {
		return "", "", "", false
	}
	ns, key, found = strings.Cut(s, "/")
	return dir, ns, key, found && ns != "" && key != ""
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
