package ctxd

import (
	"bytes"
	"encoding/json"
	"errors"
	"slices"
)

// CheckDuplicateMembers refuses a request document (JSON) in which an
// object names one member twice: encoding/json keeps the last, so
// {"key":"a","value":1,"key":"b"} wrote b, and a JSON Patch operation
// {"op":"add","op":"remove"} removed. The members named in opaque (a
// key's value, a patch) are not looked into: a value is stored as sent,
// duplicate names and all. Text that is not JSON passes: its decoder
// refuses it, with a better message.
func CheckDuplicateMembers(doc []byte, opaque ...string) error {
	dec := json.NewDecoder(bytes.NewReader(doc))
	dec.UseNumber()
	err := checkMembers(dec, opaque)
	var dup *duplicateMember
	if errors.As(err, &dup) {
		return Invalidf("member %q is given twice in one object: give each once", dup.name)
	}
	return nil
}

type duplicateMember struct{ name string }

func (d *duplicateMember) Error() string { return "duplicate member " + d.name }

// checkMembers reads one JSON value from dec, checking every object in it.
func checkMembers(dec *json.Decoder, opaque []string) error {
	tok, err := dec.Token()
	if err != nil {
		return err
	}
	switch tok {
	case json.Delim('['):
		for dec.More() {
			if err := checkMembers(dec, opaque); err != nil {
				return err
			}
		}
		_, err = dec.Token()
		return err
	case json.Delim('{'):
		var names []string
		for dec.More() {
			tok, err := dec.Token()
			if err != nil {
				return err
			}
			name, _ := tok.(string)
			if slices.Contains(names, name) {
				return &duplicateMember{name}
			}
			names = append(names, name)
			if slices.Contains(opaque, name) {
				var skip json.RawMessage
				if err := dec.Decode(&skip); err != nil {
					return err
				}
				continue
			}
			if err := checkMembers(dec, opaque); err != nil {
				return err
			}
		}
		_, err = dec.Token()
		return err
	}
	return nil
}
