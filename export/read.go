package export

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
)

// ErrBadDump is returned by ReadJSON for input that is not a JSON dump.
var ErrBadDump = errors.New("not a JSON dump")

// ReadJSON reads a JSON dump (as Write writes it in JSON, or as Framework0
// wrote its JSON dumps: any JSON object with a "context" object of key ->
// value) and calls fn for each key of "context", in the order of the file.
// The other members ("history" among them) are skipped without being kept
// in memory. Input that is not such an object, or has anything after it, is
// an error matching ErrBadDump (and the reader's error, if reading failed).
// An error from fn stops reading and is returned as is.
func ReadJSON(r io.Reader, fn func(key string, value json.RawMessage) error) error {
	dec := json.NewDecoder(r)
	dec.UseNumber()
	if err := expectDelim(dec, '{', "a JSON object"); err != nil {
		return err
	}
	seen := false
	for dec.More() {
		t, err := dec.Token()
		if err != nil {
			return bad(err)
		}
		name, _ := t.(string)
		if name != "context" {
			if err := skipValue(dec); err != nil {
				return err
			}
			continue
		}
		if seen {
			return fmt.Errorf("%w: \"context\" appears twice", ErrBadDump)
		}
		seen = true
		if err := expectDelim(dec, '{', `"context" to be an object of key -> value`); err != nil {
			return err
		}
		for dec.More() {
			t, err := dec.Token()
			if err != nil {
				return bad(err)
			}
			key, _ := t.(string)
			var value json.RawMessage
			if err := dec.Decode(&value); err != nil {
				return bad(err)
			}
			if err := fn(key, value); err != nil {
				return err
			}
		}
		if _, err := dec.Token(); err != nil { // the closing '}'
			return bad(err)
		}
	}
	if _, err := dec.Token(); err != nil { // the closing '}'
		return bad(err)
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
