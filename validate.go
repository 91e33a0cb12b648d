package ctxd

import (
	"bytes"
	"encoding/json"
	"fmt"
	"time"
	"unicode/utf8"

	"github.com/framework0/ctxd/internal/jsontext"
)

// ValidateNamespace checks a namespace name: 1..64 of [A-Za-z0-9._-].
func ValidateNamespace(ns string) error {
	if ns == "" {
		return Invalidf("namespace is empty")
	}
	if len(ns) > 64 {
		return Invalidf("namespace is %d bytes, at most 64 allowed", len(ns))
	}
	for i := 0; i < len(ns); i++ {
		c := ns[i]
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '.' || c == '_' || c == '-') {
			return Invalidf("namespace %q: only letters, digits, '.', '_' and '-' are allowed", ns)
		}
	}
	return nil
}

// ValidateKey checks a key against the limits: 1..MaxKeyBytes bytes of UTF-8
// without control characters.
func (l Limits) ValidateKey(key string) error {
	if key == "" {
		return Invalidf("key is empty")
	}
	if len(key) > l.MaxKeyBytes {
		return TooLargef("key is %d bytes, at most %d allowed", len(key), l.MaxKeyBytes)
	}
	return validateText("key", key)
}

// ValidateKeyName checks a key that a read, a delete or a keepalive names:
// as ValidateKey under the largest limit any configuration allows
// (MaxKeyBytes). limits.max_key_bytes bounds the keys written: a key
// written under a larger limit (by another instance on the same etcd
// prefix, or before the setting was lowered) stays readable and
// deletable.
func ValidateKeyName(key string) error {
	return Limits{MaxKeyBytes: MaxKeyBytes}.ValidateKey(key)
}

// ValidatePrefix checks a key prefix (of a listing, a watch, a restore):
// empty (every key), or what could start a key: at most MaxKeyBytes bytes
// of UTF-8 without control characters. Another would match no key, and
// a watch would echo it back altered (U+FFFD).
func ValidatePrefix(prefix string) error {
	if len(prefix) > MaxKeyBytes {
		return Invalidf("prefix is %d bytes, longer than a key can be (%d bytes)", len(prefix), MaxKeyBytes)
	}
	return validateText("prefix", prefix)
}

// MaxWhoBytes bounds a change's who.
const MaxWhoBytes = 256

// ValidateWho checks a change's author: at most 256 bytes of UTF-8
// without control characters (validateText).
func ValidateWho(who string) error {
	if err := ValidateRecordedWho(who); err != nil {
		return err
	}
	return validateText("who", who)
}

// ValidateRecordedWho checks a who as a dump or a snapshot recorded it:
// at most 256 bytes, as every write has been held to. Its text is kept as
// recorded, even one from before a who had to be UTF-8 without control
// characters (ValidateWho, since 2026-12-02): dumps and snapshots of data
// written before still import and restore.
func ValidateRecordedWho(who string) error {
	if len(who) > MaxWhoBytes {
		return TooLargef("who is %d bytes, at most %d allowed", len(who), MaxWhoBytes)
	}
	return nil
}

// MaxClientNameBytes bounds a registered client's type and name
// (client_register, on /v1/watch and Socket.IO).
const MaxClientNameBytes = 256

// ValidateClientName checks a client_register's type or name (what): at
// most MaxClientNameBytes bytes of UTF-8 without control characters.
// They are shown in client_stats, /ctx/all and the CLI's tables, and the
// name is the who of the client's writes (ValidateWho).
func ValidateClientName(what, s string) error {
	if len(s) > MaxClientNameBytes {
		return Invalidf("%s is %d bytes, at most %d allowed", what, len(s), MaxClientNameBytes)
	}
	return validateText(what, s)
}

// validateText checks that s (a key, a who) is UTF-8 without control
// characters (C0, DEL, C1): they would travel raw into CSV exports and
// the CLI's tables on a terminal, and invalid UTF-8 is not JSON text.
func validateText(what, s string) error {
	if !utf8.ValidString(s) {
		return Invalidf("%s is not valid UTF-8", what)
	}
	for _, r := range s {
		if r < 0x20 || r == 0x7f || (r >= 0x80 && r < 0xa0) {
			return Invalidf("%s contains control character %U", what, r)
		}
	}
	return nil
}

// ValidateValue checks that a value is one JSON value within the size
// limit, as CanonicalValue does, without keeping the canonical form.
func (l Limits) ValidateValue(value []byte) error {
	_, err := l.CanonicalValue(value)
	return err
}

// CanonicalValue checks that value is one JSON value in UTF-8 and returns
// it in the form ctxd stores: compact, with the whitespace outside strings
// removed and nothing else changed (json.Compact: numbers keep their exact
// text, strings their escapes, objects their member order). So the same
// value is the same bytes in every answer, dump and feed message. The size
// limit applies to the compact form. A value already compact is returned
// as is, without a copy.
func (l Limits) CanonicalValue(value []byte) ([]byte, error) {
	if len(value) == 0 {
		return nil, Invalidf("value is empty: send a JSON value (use null for null)")
	}
	// encoding/json accepts any bytes inside strings; JSON text must be
	// UTF-8 (RFC 8259), and WebSocket text frames must be: a browser drops
	// the connection on a frame that is not.
	if !utf8.Valid(value) {
		return nil, Invalidf("value is not valid UTF-8")
	}
	value, err := CompactJSON(value)
	if err != nil {
		return nil, err
	}
	if err := CheckSurrogates(value); err != nil {
		return nil, err
	}
	if len(value) > l.MaxValueBytes {
		return nil, TooLargef("value is %d bytes, at most %d allowed", len(value), l.MaxValueBytes)
	}
	return value, nil
}

// CheckSurrogates refuses JSON text with a string that escapes half of a
// UTF-16 surrogate pair alone ("\ud800"), as SurrogateCheck does.
func CheckSurrogates(text []byte) error {
	var c SurrogateCheck
	if err := c.Write(text); err != nil {
		return err
	}
	return c.End()
}

// SurrogateCheck finds, in JSON text given to Write in pieces, a string
// escape of half a UTF-16 surrogate pair alone ("\ud800", or a high half
// not followed by a low one). JSON's grammar allows it, but it names no
// Unicode character (RFC 8259 section 8.2; I-JSON, RFC 7493, forbids it),
// and readers differ on it: encoding/json decodes it as U+FFFD, so that a
// key sent as "\ud800" would be stored under a name the client never
// sent; stored in a value it broke jq on GET /ctx/all, and CSV and TXT
// dumps wrote U+FFFD. The zero value is ready; text that is not JSON may
// pass or fail, to be refused by its decoder.
type SurrogateCheck struct {
	state  uint8 // one of the surrogate* states
	digits int   // hex digits read of the escape being read
	r      rune  // its value so far
	high   rune  // the high half waiting for its low half
}

const (
	surrogateText    = iota // outside any escape
	surrogateEscape         // after a backslash
	surrogateHex            // in the hex digits of a \u escape
	surrogateWantEsc        // after a high half: a backslash must follow
	surrogateWantU          // after its backslash: a u must follow
	surrogateLowHex         // in the hex digits of the escape after a high half
)

// Write checks the next piece of the text.
func (c *SurrogateCheck) Write(p []byte) error {
	for i := 0; i < len(p); i++ {
		b := p[i]
		switch c.state {
		case surrogateText:
			// In valid JSON a backslash is always in a string and starts an
			// escape: skip to the next one.
			j := bytes.IndexByte(p[i:], '\\')
			if j < 0 {
				return nil
			}
			i += j
			c.state = surrogateEscape
		case surrogateEscape:
			c.state = surrogateText // the escaped character
			if b == 'u' {
				c.state, c.digits, c.r = surrogateHex, 0, 0
			}
		case surrogateHex, surrogateLowHex:
			c.r = c.r<<4 | hexDigit(b)
			if c.digits++; c.digits < 4 {
				continue
			}
			if c.state == surrogateLowHex {
				if c.r < 0xDC00 || c.r > 0xDFFF {
					return loneSurrogate(c.high)
				}
				c.state = surrogateText
				continue
			}
			switch {
			case c.r >= 0xDC00 && c.r <= 0xDFFF:
				return loneSurrogate(c.r)
			case c.r >= 0xD800 && c.r <= 0xDBFF:
				c.state, c.high = surrogateWantEsc, c.r
			default:
				c.state = surrogateText
			}
		case surrogateWantEsc:
			if b != '\\' {
				return loneSurrogate(c.high)
			}
			c.state = surrogateWantU
		case surrogateWantU:
			if b != 'u' {
				return loneSurrogate(c.high)
			}
			c.state, c.digits, c.r = surrogateLowHex, 0, 0
		}
	}
	return nil
}

// End reports a high half that the text ended after.
func (c *SurrogateCheck) End() error {
	if c.state >= surrogateWantEsc {
		return loneSurrogate(c.high)
	}
	return nil
}

func loneSurrogate(r rune) error {
	return Invalidf("a string escapes a lone surrogate \\u%04x: it is not a Unicode character (escape a pair, or send the character as UTF-8)", r)
}

// hexDigit is the value of a hex digit (0 for anything else: text that is
// not JSON is refused by its decoder).
func hexDigit(c byte) rune {
	switch {
	case c >= '0' && c <= '9':
		return rune(c - '0')
	case c >= 'a' && c <= 'f':
		return rune(c - 'a' + 10)
	case c >= 'A' && c <= 'F':
		return rune(c - 'A' + 10)
	}
	return 0
}

// maxJSONDepth is how deep encoding/json (json.Valid, json.Compact)
// lets arrays and objects nest: deeper, it calls the text not JSON.
const maxJSONDepth = 10000

// notJSON is the error of text that json.Valid refused, named what: it
// says when the text is JSON nested too deep, rather than not JSON.
func notJSON(what string, v []byte) error {
	deepest := jsontext.Depth(v)
	if deepest > maxJSONDepth {
		return Invalidf("%s nests arrays and objects %d deep, more than %d", what, deepest, maxJSONDepth)
	}
	return Invalidf("%s is not valid JSON", what)
}

// CompactJSON returns v, one JSON value, without the whitespace outside
// strings (json.Compact): v itself when it is already compact, a copy
// otherwise. Anything but one JSON value is ErrInvalid.
func CompactJSON(v []byte) ([]byte, error) {
	if !bytes.ContainsAny(v, " \t\r\n") {
		// No whitespace at all: already compact (JSON strings hold no raw
		// tab or line break, and a space may only be inside one).
		if !json.Valid(v) {
			return nil, notJSON("value", v)
		}
		return v, nil
	}
	var buf bytes.Buffer
	buf.Grow(len(v))
	if err := json.Compact(&buf, v); err != nil {
		return nil, notJSON("value", v)
	}
	if buf.Len() == len(v) {
		return v, nil
	}
	return buf.Bytes(), nil
}

// ValidatePatch checks a patch's kind and that its document is JSON within
// the value size limit. What the document says (a JSON Patch's operations
// and pointers) is checked when it is applied (package patch).
func (l Limits) ValidatePatch(p Patch) error {
	if p.Type != MergePatch && p.Type != JSONPatch {
		return Invalidf("unknown patch type %q: want %s or %s", p.Type, MergePatch, JSONPatch)
	}
	if len(p.Doc) > l.MaxValueBytes {
		return TooLargef("patch is %d bytes, at most %d allowed", len(p.Doc), l.MaxValueBytes)
	}
	if len(p.Doc) == 0 || !utf8.Valid(p.Doc) {
		return Invalidf("patch is not valid JSON")
	}
	if !json.Valid(p.Doc) {
		return notJSON("patch", p.Doc)
	}
	return nil
}

// WithDefaults returns the limits with every unset (or out of range) field
// set to its DefaultLimits value.
func (l Limits) WithDefaults() Limits {
	if l.MaxKeyBytes <= 0 || l.MaxKeyBytes > MaxKeyBytes {
		l.MaxKeyBytes = DefaultLimits.MaxKeyBytes
	}
	if l.MaxValueBytes <= 0 {
		l.MaxValueBytes = DefaultLimits.MaxValueBytes
	}
	if l.MaxTxnOps <= 0 {
		l.MaxTxnOps = DefaultLimits.MaxTxnOps
	}
	if l.MinTTL <= 0 {
		l.MinTTL = DefaultLimits.MinTTL
	}
	if l.MaxTTL <= 0 {
		l.MaxTTL = DefaultLimits.MaxTTL
	}
	return l
}

// ForImport returns the limits an import of n writes is checked against
// (store.Backend's Import): no cap on the number of writes, and no minimum
// TTL, because an imported key's TTL is what remained of the deadline its
// dump recorded, not a client's choice; and a who is kept as the dump or
// snapshot recorded it, even one from before who had to be text (a
// restore into etcd imports). limits.max_ttl still applies.
func (l Limits) ForImport(n int) Limits {
	l.MaxTxnOps = max(n, 1)
	l.MinTTL = time.Nanosecond
	l.importing = true
	return l
}

// PrepareWrites checks the writes of one request (a put, a delete, a patch
// or a transaction) against the limits, and puts each put's value in its
// canonical form (CanonicalValue), in place. A backend calls it before it
// queues or sends the writes, so that bad input fails alone and changes
// nothing, and every backend stores the same bytes.
func (l Limits) PrepareWrites(writes []Write) error {
	if len(writes) == 0 {
		return Invalidf("no writes given")
	}
	if len(writes) > l.MaxTxnOps {
		return TooLargef("transaction has %d writes, at most %d allowed", len(writes), l.MaxTxnOps)
	}
	type nsKey struct{ ns, key string }
	var seen map[nsKey]bool
	if len(writes) > 1 {
		seen = make(map[nsKey]bool, len(writes))
	}
	for i := range writes {
		w := &writes[i]
		if err := ValidateNamespace(w.Namespace); err != nil {
			return err
		}
		checkKey := l.ValidateKey
		if w.Op == OpDelete {
			checkKey = ValidateKeyName
		}
		if err := checkKey(w.Key); err != nil {
			return err
		}
		switch w.Op {
		case OpPut:
			// A refused value or ttl is named: of a transaction's or an
			// import's puts, which.
			v, err := l.CanonicalValue(w.Value)
			if err != nil {
				return fmt.Errorf("put %s/%s: %w", w.Namespace, w.Key, err)
			}
			w.Value = v
			if w.TTL != 0 {
				if err := l.ValidateTTL(w.TTL); err != nil {
					return fmt.Errorf("put %s/%s: %w", w.Namespace, w.Key, err)
				}
			}
		case OpPatch:
			if err := l.ValidatePatch(w.Patch); err != nil {
				return err
			}
			if w.TTL != 0 {
				return Invalidf("patch of %s/%s: a patch takes no ttl (it keeps the key's deadline)", w.Namespace, w.Key)
			}
		case OpDelete:
			if w.TTL != 0 {
				return Invalidf("delete of %s/%s: a delete takes no ttl", w.Namespace, w.Key)
			}
		default:
			return Invalidf("unknown op %d", w.Op)
		}
		if l.importing {
			if err := ValidateRecordedWho(w.Who); err != nil {
				return err
			}
		} else if err := ValidateWho(w.Who); err != nil {
			return err
		}
		if seen != nil {
			k := nsKey{w.Namespace, w.Key}
			if seen[k] {
				return Invalidf("key %s/%s appears twice in one transaction", w.Namespace, w.Key)
			}
			seen[k] = true
		}
	}
	return nil
}
