package patch

import (
	"bytes"
	"encoding/json"
	"fmt"

	"github.com/framework0/ctxd"
)

// mergePatch applies a JSON Merge Patch (RFC 7396, section 2):
//
//	define MergePatch(Target, Patch):
//	  if Patch is an Object:
//	    if Target is not an Object:
//	      Target = {} # Ignore the contents and set it to an empty Object
//	    for each Name/Value pair in Patch:
//	      if Value is null:
//	        if Name exists in Target:
//	          remove the Name/Value pair from Target
//	      else:
//	        Target[Name] = MergePatch(Target[Name], Value)
//	    return Target
//	  else:
//	    return Patch
//
// It is ours rather than github.com/evanphx/json-patch's MergePatch, which
// escapes <, > and & in the whole result with no option to stop it: a
// merge would rewrite bytes of members it did not touch. Members keep
// their order and their text (keys and values as written); new members
// go at the end.
func mergePatch(target, patch []byte) ([]byte, error) {
	patch, err := ctxd.CompactJSON(patch)
	if err != nil {
		return nil, ctxd.Invalidf("merge patch is not valid JSON")
	}
	target, err = ctxd.CompactJSON(target)
	if err != nil {
		return nil, fmt.Errorf("merge patch: the current value: %w", err)
	}
	return merge(target, patch)
}

// merge is MergePatch of two compact JSON values.
func merge(target, patch []byte) ([]byte, error) {
	if len(patch) == 0 || patch[0] != '{' {
		return patch, nil
	}
	var doc []member
	if len(target) > 0 && target[0] == '{' {
		var err error
		if doc, err = members(target); err != nil {
			return nil, err
		}
	}
	changes, err := members(patch)
	if err != nil {
		return nil, err
	}
	for _, c := range changes {
		i := find(doc, c.name)
		if string(c.value) == "null" {
			if i >= 0 {
				doc = remove(doc, c.name)
			}
			continue
		}
		var cur []byte
		if i >= 0 {
			cur = doc[i].value
		}
		v, err := merge(cur, c.value)
		if err != nil {
			return nil, err
		}
		if i >= 0 {
			doc[i].value = v
		} else {
			doc = append(doc, member{name: c.name, key: c.key, value: v})
		}
	}
	size := 2
	for _, m := range doc {
		size += len(m.key) + 1 + len(m.value) + 1
	}
	out := make([]byte, 0, size)
	out = append(out, '{')
	for i, m := range doc {
		if i > 0 {
			out = append(out, ',')
		}
		out = append(out, m.key...)
		out = append(out, ':')
		out = append(out, m.value...)
	}
	return append(out, '}'), nil
}

// member is one member of a JSON object: its decoded name, its key as
// written (the JSON string with its quotes), and its value as written.
type member struct {
	name  string
	key   []byte
	value []byte
}

// members splits a compact JSON object into its members, in order.
func members(obj []byte) ([]member, error) {
	dec := json.NewDecoder(bytes.NewReader(obj))
	if _, err := dec.Token(); err != nil { // {
		return nil, ctxd.Invalidf("merge patch: %v", err)
	}
	var out []member
	for dec.More() {
		start := dec.InputOffset()
		tok, err := dec.Token()
		if err != nil {
			return nil, ctxd.Invalidf("merge patch: %v", err)
		}
		name, _ := tok.(string)
		// The key as written: between the previous value and the key
		// there is a comma, and whitespace in a value not yet compact.
		key := bytes.TrimLeft(obj[start:dec.InputOffset()], ", \t\r\n")
		var v json.RawMessage
		if err := dec.Decode(&v); err != nil {
			return nil, ctxd.Invalidf("merge patch: %v", err)
		}
		out = append(out, member{name: name, key: key, value: v})
	}
	return out, nil
}

// find returns the index of the member named name (the last one, as a
// JSON decoder would keep it), or -1.
func find(ms []member, name string) int {
	for i := len(ms) - 1; i >= 0; i-- {
		if ms[i].name == name {
			return i
		}
	}
	return -1
}

// remove drops every member named name.
func remove(ms []member, name string) []member {
	out := ms[:0]
	for _, m := range ms {
		if m.name != name {
			out = append(out, m)
		}
	}
	return out
}
