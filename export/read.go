package export

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"strings"
	"time"
)

// ErrBadDump is returned by ReadJSON for input that is not a JSON dump.
var ErrBadDump = errors.New("not a JSON dump")

// ReadJSON reads a JSON dump (as Write writes it in JSON, or as Framework0
// wrote its JSON dumps: any JSON object with a "context" object of key ->
// value) and calls fn for each key of "context", in the order of the file,
// and deadline (when not nil) for each member of the "expires_at" object
// (key -> RFC 3339 time), which a dump writes after "context". The other
// members ("history" among them) are skipped without being kept in memory.
// Input that is not such an object, or has anything after it, or an
// "expires_at" that is not an object of times, is an error matching
// ErrBadDump (and the reader's error, if reading failed). An error from fn
// or deadline stops reading and is returned as is.
func ReadJSON(r io.Reader, fn func(key string, value json.RawMessage) error, deadline func(key string, at time.Time) error) error {
	dec := json.NewDecoder(r)
	dec.UseNumber()
	seen, seenDeadlines := false, false
	err := forEachMember(dec, "a JSON object", func(name string) error {
		switch {
		case name == "context":
			if seen {
				return fmt.Errorf("%w: \"context\" appears twice", ErrBadDump)
			}
			seen = true
			return forEachMember(dec, `"context" to be an object of key -> value`, func(key string) error {
				var value json.RawMessage
				if err := dec.Decode(&value); err != nil {
					if strings.Contains(err.Error(), "exceeded max depth") {
						// encoding/json's own words name neither the key nor the limit.
						return fmt.Errorf("%w: the value of key %q nests arrays and objects more than 10000 deep", ErrBadDump, key)
					}
					return bad(err)
				}
				return fn(key, value)
			})
		case name == "expires_at" && deadline != nil:
			if seenDeadlines {
				return fmt.Errorf("%w: \"expires_at\" appears twice", ErrBadDump)
			}
			seenDeadlines = true
			return forEachMember(dec, `"expires_at" to be an object of key -> time`, func(key string) error {
				return readDeadline(dec, key, deadline)
			})
		}
		return skipValue(dec)
	})
	if err != nil {
		return err
	}
	if !seen {
		return fmt.Errorf(`%w: it has no "context" object`, ErrBadDump)
	}
	if _, err := dec.Token(); !errors.Is(err, io.EOF) {
		if err == nil {
			return fmt.Errorf("%w: data after the JSON object", ErrBadDump)
		}
		return bad(err)
	}
	return nil
}

// forEachMember reads a JSON object, calling fn with each member's name;
// fn reads the member's value from dec. what says what the object is, for
// the error when the input is not an object.
func forEachMember(dec *json.Decoder, what string, fn func(name string) error) error {
	if err := expectDelim(dec, '{', what); err != nil {
		return err
	}
	for dec.More() {
		t, err := dec.Token()
		if err != nil {
			return bad(err)
		}
		name, _ := t.(string)
		if err := fn(name); err != nil {
			return err
		}
	}
	if _, err := dec.Token(); err != nil { // the closing '}'
		return bad(err)
	}
	return nil
}

// readDeadline reads the value of key in "expires_at": an RFC 3339 time.
func readDeadline(dec *json.Decoder, key string, deadline func(key string, at time.Time) error) error {
	t, err := dec.Token()
	if err != nil {
		return bad(err)
	}
	s, ok := t.(string)
	if !ok {
		return fmt.Errorf("%w: \"expires_at\" of key %q is not a time string", ErrBadDump, key)
	}
	at, err := time.Parse(time.RFC3339Nano, s)
	if err != nil {
		return fmt.Errorf("%w: \"expires_at\" of key %q: %w", ErrBadDump, key, err)
	}
	return deadline(key, at)
}

func bad(err error) error {
	if errors.Is(err, io.EOF) {
		err = io.ErrUnexpectedEOF
	}
	return fmt.Errorf("%w: %w", ErrBadDump, err)
}

func expectDelim(dec *json.Decoder, want json.Delim, what string) error {
	t, err := dec.Token()
	if err != nil {
		return bad(err)
	}
	if d, ok := t.(json.Delim); !ok || d != want {
		return fmt.Errorf("%w: expected %s", ErrBadDump, what)
	}
	return nil
}

// skipValue consumes one JSON value token by token, so that a large member
// is never held whole.
func skipValue(dec *json.Decoder) error {
	depth := 0
	for {
		t, err := dec.Token()
		if err != nil {
			return bad(err)
		}
		if d, ok := t.(json.Delim); ok {
			switch d {
			case '{', '[':
				depth++
			default:
				depth--
			}
		}
		if depth == 0 {
			return nil
		}
	}
}
