package patch

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"math/big"
	"strconv"
	"strings"

	jsonpatch "github.com/evanphx/json-patch/v5"

	"github.com/framework0/ctxd"
)

// operation is one JSON Patch operation, checked before it is applied.
type operation struct {
	op, path, from string
	hasFrom        bool
	value          json.RawMessage // nil when absent; "null" is present
}

// checkOps checks a JSON Patch document's shape (RFC 6902 section 4): an
// array of operations, each with a known "op", a "path" that is a JSON
// pointer, a "from" for move and copy, a "value" for add, replace and
// test. What does not hold is the client's mistake whatever the value
// (ctxd.ErrInvalid, 400), unlike a pointer the value does not have.
func checkOps(doc []byte) ([]operation, error) {
	var raw []map[string]json.RawMessage
	if err := json.Unmarshal(doc, &raw); err != nil {
		return nil, ctxd.Invalidf("a JSON Patch is an array of operation objects: %s", ctxd.DecodeErrorMessage(err))
	}
	if raw == nil { // null decodes without an error
		return nil, ctxd.Invalidf("a JSON Patch is an array of operation objects, not null")
	}
	if err := ctxd.CheckDuplicateMembers(doc, "value"); err != nil {
		return nil, err // {"op":"add","op":"remove"} removed
	}
	ops := make([]operation, len(raw))
	str := func(i int, m map[string]json.RawMessage, name string, dst *string) (bool, error) {
		v, ok := m[name]
		if !ok {
			return false, nil
		}
		if err := json.Unmarshal(v, dst); err != nil {
			return false, ctxd.Invalidf("JSON Patch operation %d: %q is not a string", i, name)
		}
		return true, nil
	}
	for i, m := range raw {
		o := &ops[i]
		if ok, err := str(i, m, "op", &o.op); err != nil || !ok {
			return nil, errors.Join(err, ctxd.Invalidf("JSON Patch operation %d has no \"op\"", i))
		}
		switch o.op {
		case "add", "replace", "test":
			if o.value = m["value"]; o.value == nil {
				return nil, ctxd.Invalidf("JSON Patch operation %d (%s) has no \"value\"", i, o.op)
			}
		case "move", "copy":
			ok, err := str(i, m, "from", &o.from)
			if err != nil || !ok {
				return nil, errors.Join(err, ctxd.Invalidf("JSON Patch operation %d (%s) has no \"from\"", i, o.op))
			}
			o.hasFrom = true
			if err := checkPointer(o.from); err != nil {
				return nil, ctxd.Invalidf("JSON Patch operation %d (%s): \"from\": %v", i, o.op, err)
			}
		case "remove":
		default:
			return nil, ctxd.Invalidf("JSON Patch operation %d has an unknown op %q: want add, remove, replace, move, copy or test", i, o.op)
		}
		if ok, err := str(i, m, "path", &o.path); err != nil || !ok {
			return nil, errors.Join(err, ctxd.Invalidf("JSON Patch operation %d (%s) has no \"path\"", i, o.op))
		}
		if err := checkPointer(o.path); err != nil {
			return nil, ctxd.Invalidf("JSON Patch operation %d (%s): \"path\": %v", i, o.op, err)
		}
	}
	return ops, nil
}

// checkPointer checks a JSON pointer's syntax (RFC 6901): empty, or
// "/"-separated tokens where "~" is only in "~0" and "~1".
func checkPointer(p string) error {
	if p != "" && p[0] != '/' {
		return errors.New("a JSON pointer is empty or starts with \"/\": " + strconv.Quote(p))
	}
	for i := 0; i < len(p); i++ {
		if p[i] == '~' && (i+1 == len(p) || p[i+1] != '0' && p[i+1] != '1') {
			return errors.New("in a JSON pointer \"~\" is followed by 0 or 1: " + strconv.Quote(p))
		}
	}
	return nil
}

// tokens splits a pointer into its unescaped reference tokens.
func tokens(pointer string) []string {
	if pointer == "" {
		return nil
	}
	ts := strings.Split(pointer[1:], "/")
	for i, t := range ts {
		ts[i] = strings.ReplaceAll(strings.ReplaceAll(t, "~1", "/"), "~0", "~")
	}
	return ts
}

// jsonPatch applies a JSON Patch (RFC 6902) one operation at a time.
// add, remove, replace, move and copy are github.com/evanphx/json-patch/v5's,
// set to the RFC (no negative array indexes, no HTML escaping); before
// each, the pointers are checked against the value as it is then, for
// what that library lets through (array indexes with leading zeros, a
// member named "" on the way) and for what it would rewrite (an object
// on the way that names a member twice: checkPath). test is ours: the
// library lets a test for null pass where there is no value, and reads a
// member named "" as the whole object. Applying operations one at a time
// names the failing one at once and bounds each intermediate value by the
// size limit.
//
// work is the patch's (WorkBytes), refused before anything is applied
// when it is more than budget has left.
func jsonPatch(value, doc []byte, limits ctxd.Limits, budget *Budget) (out []byte, work int, err error) {
	ops, err := checkOps(doc)
	if err != nil {
		return nil, 0, err
	}
	p, err := jsonpatch.DecodePatch(doc)
	if err != nil {
		return nil, 0, ctxd.Invalidf("JSON Patch: %v", err)
	}
	work = len(ops) * (len(value) + len(doc))
	if len(ops) == 0 {
		// Nothing to apply, but the value is checked and written again
		// all the same: one pass, counted as a merge patch's (Apply).
		work = min(len(value)+len(doc), WorkBytes)
	}
	if err := budget.check(work, fmt.Sprintf("a JSON Patch of %d operations", len(ops)), len(value)); err != nil {
		return nil, 0, err
	}
	if len(ops) == 0 {
		return value, work, nil
	}
	opts := jsonpatch.NewApplyOptions()
	opts.SupportNegativeIndices = false
	opts.EscapeHTML = false
	opts.AccumulatedCopySizeLimit = int64(limits.MaxValueBytes)
	cur := value
	for i, o := range ops {
		fail := func(pointer, reason string) *ctxd.PatchError {
			return &ctxd.PatchError{Index: i, Op: o.op, Pointer: pointer, Test: o.op == "test", Reason: reason}
		}
		// A move and a copy add at their path, "-" (the end of an array)
		// too (RFC 6902, 4.4 and 4.5).
		adds := o.op == "add" || o.op == "move" || o.op == "copy"
		if reason, repeats := checkPath(cur, o.path, adds); reason != "" {
			pe := fail(o.path, reason)
			// A member named twice on the way is the value's fault, not
			// a test that does not hold.
			pe.Test = pe.Test && !repeats
			return nil, 0, pe
		}
		if o.op == "test" {
			v, ok := lookup(cur, o.path)
			if !ok {
				return nil, 0, fail(o.path, "there is no value there")
			}
			if !equalJSON(v, o.value) {
				return nil, 0, fail(o.path, "the value there is not the one the test names")
			}
			continue
		}
		if o.hasFrom {
			if reason, _ := checkPath(cur, o.from, false); reason != "" {
				return nil, 0, fail(o.from, reason)
			}
			if _, ok := lookup(cur, o.from); !ok {
				return nil, 0, fail(o.from, "there is no value there to "+o.op)
			}
		}
		var next []byte
		switch {
		case o.op == "move" && o.from == o.path:
			// A move to where it is changes nothing (the library removes
			// and adds it again: a member would move to the end).
			next = cur
		case o.op == "move" && strings.HasPrefix(o.path, o.from+"/"):
			// RFC 6902 4.4: "from" must not be a proper prefix of "path".
			// The library said "doc is missing destination path".
			return nil, 0, fail(o.path, "a value cannot be moved into itself: the path is inside the from, "+strconv.Quote(o.from))
		case o.path == "" && (o.op == "add" || o.op == "replace"):
			// The whole value (RFC 6902: "" names the document), of any
			// type: the library takes only an object or an array there.
			next = o.value
		case o.path == "" && o.hasFrom:
			next, _ = lookup(cur, o.from)
		case o.path == "" && o.op == "remove":
			// The library removed the member named "" ("/"), and wrote
			// the object back (checkPath).
			return nil, 0, fail(o.path, "the path \"\" is the whole value, which a remove cannot take away: replace it (with null, for example), or delete the key")
		case !isContainer(cur):
			return nil, 0, fail(o.path, "a JSON Patch operation below the top applies to an object or an array; this value is neither (replace it with path \"\", PUT, or a merge patch)")
		default:
			next, err = jsonpatch.Patch{p[i]}.ApplyWithOptions(cur, opts)
			var tooLarge *jsonpatch.AccumulatedCopySizeError
			if errors.As(err, &tooLarge) {
				return nil, 0, ctxd.TooLargef("operation %d (%s): %v", i, o.op, tooLarge)
			}
			if err != nil {
				return nil, 0, fail(o.path, err.Error())
			}
		}
		if len(next) > limits.MaxValueBytes {
			return nil, 0, ctxd.TooLargef("operation %d (%s) makes the value %d bytes, at most %d allowed", i, o.op, len(next), limits.MaxValueBytes)
		}
		cur = next
	}
	return cur, work, nil
}

// isContainer reports whether v is a JSON object or array.
func isContainer(v []byte) bool { return len(v) > 0 && (v[0] == '{' || v[0] == '[') }

// checkPath walks pointer through doc as far as it exists, and returns
// why it cannot be used: a token that is not an array index (digits
// without leading zeros, or "-" last for an add) where the value is an
// array, a member named "" before the last token, which the library
// cannot reach, or an object on the way (doc itself when it is one, and
// the object the last token names a member of) that names a member
// twice (repeats). "" when none.
//
// A value is stored as sent, a member named twice in one object too, but
// the library reads each object on an operation's way into a map and
// writes it back with the last copy's value for every copy:
// {"a":1,"a":2,"b":0} with /b replaced became {"a":2,"a":2,"b":5}, and
// with /a removed {"a":null,"b":0}. A patch must not change what it does
// not name, so such an operation is refused. The objects off its way
// are written back as they were, byte for byte.
func checkPath(doc []byte, pointer string, add bool) (reason string, repeats bool) {
	ts := tokens(pointer)
	cur := json.RawMessage(doc)
	for i, t := range ts {
		last := i == len(ts)-1
		switch {
		case len(cur) > 0 && cur[0] == '[':
			if t == "-" && last && add {
				return "", false
			}
			if !isIndex(t) {
				return strconv.Quote(t) + " is not an array index (digits without leading zeros)", false
			}
			next, ok := child(cur, t)
			if !ok {
				return "", false
			}
			cur = next
		case len(cur) > 0 && cur[0] == '{':
			if t == "" && !last {
				return "a member named \"\" inside the value cannot be reached by JSON Patch here; use a merge patch", false
			}
			ms, err := members(cur)
			if err != nil {
				return "", false
			}
			if name, ok := repeated(ms); ok {
				return repeatedMember(ts[:i], name, "JSON Patch cannot tell them apart (it would write the object back with one value for both)") +
					" (a merge patch that does not set " + strconv.Quote(name) + " keeps both)", true
			}
			j := find(ms, t)
			if j < 0 {
				return "", false
			}
			cur = ms[j].value
		default:
			return "", false
		}
	}
	return "", false
}

func isIndex(t string) bool {
	if t == "" || len(t) > 1 && t[0] == '0' {
		return false
	}
	for i := 0; i < len(t); i++ {
		if t[i] < '0' || t[i] > '9' {
			return false
		}
	}
	return true
}

// child returns the member named t of an object, or element t of an array.
func child(v json.RawMessage, t string) (json.RawMessage, bool) {
	switch {
	case len(v) > 0 && v[0] == '{':
		ms, err := members(v)
		if err != nil {
			return nil, false
		}
		if i := find(ms, t); i >= 0 {
			return ms[i].value, true
		}
	case len(v) > 0 && v[0] == '[':
		var arr []json.RawMessage
		if json.Unmarshal(v, &arr) != nil || !isIndex(t) {
			return nil, false
		}
		if i, err := strconv.Atoi(t); err == nil && i < len(arr) {
			return arr[i], true
		}
	}
	return nil, false
}

// lookup returns the value pointer names in doc (RFC 6901).
func lookup(doc []byte, pointer string) (json.RawMessage, bool) {
	cur := json.RawMessage(doc)
	for _, t := range tokens(pointer) {
		next, ok := child(cur, t)
		if !ok {
			return nil, false
		}
		cur = next
	}
	return cur, true
}

// equalJSON reports whether two JSON texts are the same value (RFC 6902
// section 4.6): numbers equal by value (1 and 1.0), objects whatever
// their member order.
func equalJSON(a, b []byte) bool {
	va, err := decodeNumbers(a)
	if err != nil {
		return false
	}
	vb, err := decodeNumbers(b)
	if err != nil {
		return false
	}
	return equalValues(va, vb)
}

func decodeNumbers(b []byte) (any, error) {
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.UseNumber()
	var v any
	err := dec.Decode(&v)
	return v, err
}

func equalValues(a, b any) bool {
	switch a := a.(type) {
	case map[string]any:
		b, ok := b.(map[string]any)
		if !ok || len(a) != len(b) {
			return false
		}
		for k, va := range a {
			vb, ok := b[k]
			if !ok || !equalValues(va, vb) {
				return false
			}
		}
		return true
	case []any:
		b, ok := b.([]any)
		if !ok || len(a) != len(b) {
			return false
		}
		for i := range a {
			if !equalValues(a[i], b[i]) {
				return false
			}
		}
		return true
	case json.Number:
		b, ok := b.(json.Number)
		if !ok {
			return false
		}
		fa, _, errA := big.ParseFloat(string(a), 10, 256, big.ToNearestEven)
		fb, _, errB := big.ParseFloat(string(b), 10, 256, big.ToNearestEven)
		if errA != nil || errB != nil {
			return a == b
		}
		return fa.Cmp(fb) == 0
	default:
		return a == b
	}
}
