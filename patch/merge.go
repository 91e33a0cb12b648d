package patch

import (
	"bytes"
	"encoding/json"
	"errors"
	"slices"
	"strconv"

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
// their order and their text (keys and values as written), a member an
// object names twice too; new members go at the end. A patch that sets
// (or merges into) a member its object names twice is refused: it cannot
// tell which one it names. null removes every copy.
func mergePatch(target, patch []byte) ([]byte, error) {
	// Apply has checked the patch (ValidatePatch); the target is a stored
	// value, valid JSON by construction, which members reads with its
	// whitespace if it was stored before values were compacted. The
	// result is checked and compacted by Apply (CanonicalValue).
	if bytes.ContainsAny(patch, " \t\r\n") {
		var buf bytes.Buffer
		if err := json.Compact(&buf, patch); err != nil {
			return nil, ctxd.Invalidf("merge patch is not valid JSON")
		}
		patch = buf.Bytes()
	}
	out, err := merge(target, patch)
	if err != nil {
		return nil, mergeError(err)
	}
	return out, nil
}

// mergeError is err, of merge, as Apply returns it.
func mergeError(err error) error {
	var r *repeatedError
	if !errors.As(err, &r) {
		return err
	}
	slices.Reverse(r.object)
	if r.inPatch {
		return ctxd.Invalidf("the merge patch names member %q twice in one object (at %q): a patch names each member once",
			r.name, pointerOf(append(r.object, r.name)))
	}
	return &ctxd.PatchError{Op: "merge", Pointer: pointerOf(append(r.object, r.name)),
		Reason: repeatedMember(r.object, r.name, "a merge patch cannot tell which one it sets") +
			" (a null for " + strconv.Quote(r.name) + " removes both)"}
}

// repeatedError is a merge patch that sets member name of an object that
// names it twice, or (inPatch) a merge patch whose own object names it
// twice: {"c":{"q":1,"q":2}} would set whichever came last, where a JSON
// Patch document naming a member twice is refused (400) as well.
type repeatedError struct {
	name    string
	object  []string // the object's reference tokens, innermost first
	inPatch bool
}

func (e *repeatedError) Error() string { return "member " + strconv.Quote(e.name) + " named twice" }

// merge is MergePatch of two JSON values, the patch compact.
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
	if name, ok := repeated(changes); ok {
		return nil, &repeatedError{name: name, inPatch: true}
	}
	for _, c := range changes {
		i := find(doc, c.name)
		if string(c.value) == "null" {
			if i >= 0 {
				doc = remove(doc, c.name)
			}
			continue
		}
		if i > 0 && find(doc[:i], c.name) >= 0 {
			return nil, &repeatedError{name: c.name}
		}
		var cur []byte
		if i >= 0 {
			cur = doc[i].value
		}
		v, err := merge(cur, c.value)
		if err != nil {
			var r *repeatedError
			if errors.As(err, &r) {
				r.object = append(r.object, c.name)
			}
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

// members splits a JSON object into its members, in order. The text must
// be valid JSON (the callers check it, or made it); whitespace may be
// anywhere JSON allows it. A scan rather than encoding/json's Decoder:
// the writer splits the current value at each patch, and the Decoder's
// tokens cost an allocation each (5x the time on a 64-member object).
func members(obj []byte) ([]member, error) {
	bad := ctxd.Invalidf("merge patch: not a JSON object")
	i := skipSpace(obj, 0)
	if i >= len(obj) || obj[i] != '{' {
		return nil, bad
	}
	i = skipSpace(obj, i+1)
	var out []member
	if i < len(obj) && obj[i] == '}' {
		return out, nil
	}
	for {
		if i >= len(obj) || obj[i] != '"' {
			return nil, bad
		}
		end := skipString(obj, i)
		if end < 0 {
			return nil, bad
		}
		key := obj[i:end]
		name, err := memberName(key)
		if err != nil {
			return nil, bad
		}
		i = skipSpace(obj, end)
		if i >= len(obj) || obj[i] != ':' {
			return nil, bad
		}
		i = skipSpace(obj, i+1)
		vend := skipValue(obj, i)
		if vend < 0 {
			return nil, bad
		}
		out = append(out, member{name: name, key: key, value: obj[i:vend]})
		i = skipSpace(obj, vend)
		switch {
		case i < len(obj) && obj[i] == ',':
			i = skipSpace(obj, i+1)
		case i < len(obj) && obj[i] == '}':
			return out, nil
		default:
			return nil, bad
		}
	}
}

// memberName decodes a key: as written unless it has an escape.
func memberName(key []byte) (string, error) {
	if bytes.IndexByte(key, '\\') < 0 {
		return string(key[1 : len(key)-1]), nil
	}
	var name string
	err := json.Unmarshal(key, &name)
	return name, err
}

func skipSpace(b []byte, i int) int {
	for i < len(b) && (b[i] == ' ' || b[i] == '\t' || b[i] == '\n' || b[i] == '\r') {
		i++
	}
	return i
}

// skipString returns the end of the string starting at b[i] ('"'), or -1.
func skipString(b []byte, i int) int {
	for i++; i < len(b); i++ {
		switch b[i] {
		case '\\':
			i++
		case '"':
			return i + 1
		}
	}
	return -1
}

// skipValue returns the end of the value starting at b[i], or -1.
func skipValue(b []byte, i int) int {
	if i >= len(b) {
		return -1
	}
	switch b[i] {
	case '"':
		return skipString(b, i)
	case '{', '[':
		depth := 0
		for ; i < len(b); i++ {
			switch b[i] {
			case '"':
				if i = skipString(b, i); i < 0 {
					return -1
				}
				i--
			case '{', '[':
				depth++
			case '}', ']':
				if depth--; depth == 0 {
					return i + 1
				}
			}
		}
		return -1
	}
	for j := i; j < len(b); j++ {
		switch b[j] {
		case ',', '}', ']', ' ', '\t', '\n', '\r':
			return j
		}
	}
	return len(b)
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
