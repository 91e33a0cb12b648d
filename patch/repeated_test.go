package patch_test

import (
	"fmt"
	"slices"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/framework0/ctxd"
	"github.com/framework0/ctxd/patch"
)

// A value whose object names a member twice is stored as sent. A JSON
// Patch operation through that object is refused, naming the member and
// where it is: the library wrote the object back with the last copy's
// value for both ({"a":1,"a":2,"b":0} with /b replaced became
// {"a":2,"a":2,"b":5}; with /a removed, {"a":null,"b":0}). Operations
// that do not go through it leave it byte for byte; one that replaces or
// copies it whole keeps both copies.
func TestJSONPatchKeepsRepeatedMembers(t *testing.T) {
	refused := []struct {
		value, doc string
		index      int
		pointer    string // the operation's path or from
		at         string // the member named twice
	}{
		{`{"a":1,"a":2,"b":0}`, `[{"op":"replace","path":"/b","value":5}]`, 0, "/b", "/a"},
		{`{"a":1,"a":2,"b":0}`, `[{"op":"add","path":"/c","value":5}]`, 0, "/c", "/a"},
		{`{"a":1,"a":2,"b":0}`, `[{"op":"remove","path":"/b"}]`, 0, "/b", "/a"},
		{`{"a":1,"a":2,"b":0}`, `[{"op":"replace","path":"/a","value":5}]`, 0, "/a", "/a"},
		{`{"a":1,"a":2,"b":0}`, `[{"op":"remove","path":"/a"}]`, 0, "/a", "/a"},
		{`{"a":1,"a":2,"b":0}`, `[{"op":"test","path":"/a","value":2}]`, 0, "/a", "/a"},
		{`{"a":1,"a":2,"b":0}`, `[{"op":"copy","from":"/b","path":"/c"}]`, 0, "/c", "/a"},
		{`{"a":1,"\u0061":2,"b":0}`, `[{"op":"replace","path":"/b","value":5}]`, 0, "/b", "/a"},
		{`{"x":{"k":1,"k":2,"c":{}},"b":0}`, `[{"op":"add","path":"/x/d","value":5}]`, 0, "/x/d", "/x/k"},
		{`{"x":{"k":1,"k":2,"c":{}},"b":0}`, `[{"op":"copy","from":"/x/c","path":"/y"}]`, 0, "/x/c", "/x/k"},
		{`{"x":{"k":1,"k":2,"c":{}},"b":0}`, `[{"op":"move","from":"/x/c","path":"/y"}]`, 0, "/x/c", "/x/k"},
		{`{"a/b":{"~":1,"~":2}}`, `[{"op":"add","path":"/a~1b/z","value":5}]`, 0, "/a~1b/z", "/a~1b/~0"},
		{`[{"a":1,"a":2},{"b":0}]`, `[{"op":"add","path":"/0/c","value":5}]`, 0, "/0/c", "/0/a"},
		// Named twice by the patch itself, then patched through.
		{`{"b":0}`, `[{"op":"add","path":"/c","value":{"q":1,"q":2}},{"op":"add","path":"/c/r","value":3}]`, 1, "/c/r", "/c/q"},
	}
	for _, c := range refused {
		_, err := patch.Apply([]byte(c.value), ctxd.Patch{Type: ctxd.JSONPatch, Doc: raw(c.doc)}, ctxd.DefaultLimits)
		var pe *ctxd.PatchError
		if !assert.ErrorAs(t, err, &pe, "%s on %s", c.doc, c.value) {
			continue
		}
		assert.ErrorIs(t, err, ctxd.ErrPatchFailed)
		assert.Equal(t, c.index, pe.Index, "%s on %s", c.doc, c.value)
		assert.Equal(t, c.pointer, pe.Pointer, "%s on %s", c.doc, c.value)
		assert.Contains(t, pe.Reason, `twice (at "`+c.at+`"`, "%s on %s", c.doc, c.value)
		assert.Contains(t, pe.Reason, "PUT the whole value", "%s on %s", c.doc, c.value)
	}
	_, err := patch.Apply([]byte(`{"x":{"k":1,"k":2},"b":0}`), ctxd.Patch{Type: ctxd.JSONPatch, Doc: raw(`[{"op":"add","path":"/x/d","value":5}]`)}, ctxd.DefaultLimits)
	assert.EqualError(t, err, `patch cannot be applied: operation 0 (add) at "/x/d": the object at "/x" names member "k" twice (at "/x/k"; a value is stored as sent): `+
		`JSON Patch cannot tell them apart (it would write the object back with one value for both), so it is not patched: PUT the whole value, with each member once (a merge patch that does not set "k" keeps both)`)

	applied := []struct{ value, doc, want string }{
		{`{"x":{"k":1,"k":2,"c":{}},"b":{"c":1}}`, `[{"op":"replace","path":"/b/c","value":5}]`, `{"x":{"k":1,"k":2,"c":{}},"b":{"c":5}}`},
		{`{"x":{"k":1,"k":2,"c":{}},"b":0}`, `[{"op":"remove","path":"/b"}]`, `{"x":{"k":1,"k":2,"c":{}}}`},
		{`{"x":{"k":1,"k":2,"c":{}},"b":0}`, `[{"op":"copy","from":"/x","path":"/y"}]`, `{"x":{"k":1,"k":2,"c":{}},"b":0,"y":{"k":1,"k":2,"c":{}}}`},
		{`{"x":{"k":1,"k":2,"c":{}},"b":0}`, `[{"op":"move","from":"/x","path":"/y"}]`, `{"b":0,"y":{"k":1,"k":2,"c":{}}}`},
		{`{"x":{"k":1,"k":2,"c":{}},"b":0}`, `[{"op":"replace","path":"/x","value":{"k":3}}]`, `{"x":{"k":3},"b":0}`},
		{`[{"a":1,"a":2},{"b":0}]`, `[{"op":"replace","path":"/1/b","value":5}]`, `[{"a":1,"a":2},{"b":5}]`},
		{`{"a":1,"a":2,"b":0}`, `[{"op":"replace","path":"","value":{"a":2,"b":5}}]`, `{"a":2,"b":5}`},
		{`{"b":0}`, `[{"op":"add","path":"/c","value":{"q":1,"q":2}},{"op":"add","path":"/d","value":3}]`, `{"b":0,"c":{"q":1,"q":2},"d":3}`},
	}
	for _, c := range applied {
		out, err := patch.Apply([]byte(c.value), ctxd.Patch{Type: ctxd.JSONPatch, Doc: raw(c.doc)}, ctxd.DefaultLimits)
		require.NoError(t, err, "%s on %s", c.doc, c.value)
		assert.Equal(t, c.want, string(out), "%s on %s", c.doc, c.value)
	}
}

// A merge patch keeps both copies of a member named twice, whatever else
// it changes; one that sets that member, or merges into it, is refused
// (which copy would it set?), naming it; null removes both.
func TestMergePatchKeepsRepeatedMembers(t *testing.T) {
	value := `{"a":1,"a":2,"b":0,"x":{"k":{"p":1},"k":{"q":2}}}`
	applied := []struct{ patch, want string }{
		{`{"b":5}`, `{"a":1,"a":2,"b":5,"x":{"k":{"p":1},"k":{"q":2}}}`},
		{`{"x":{"c":5},"n":1}`, `{"a":1,"a":2,"b":0,"x":{"k":{"p":1},"k":{"q":2},"c":5},"n":1}`},
		{`{"a":null}`, `{"b":0,"x":{"k":{"p":1},"k":{"q":2}}}`},
		{`{"x":{"k":null}}`, `{"a":1,"a":2,"b":0,"x":{}}`},
		{`{"x":7}`, `{"a":1,"a":2,"b":0,"x":7}`},
	}
	for _, c := range applied {
		out, err := patch.Apply([]byte(value), ctxd.Patch{Type: ctxd.MergePatch, Doc: raw(c.patch)}, ctxd.DefaultLimits)
		require.NoError(t, err, c.patch)
		assert.Equal(t, c.want, string(out), c.patch)
	}
	refused := []struct{ patch, pointer string }{
		{`{"a":5}`, "/a"},
		{`{"b":5,"a":{"c":1}}`, "/a"},
		{`{"x":{"k":{"r":5}}}`, "/x/k"},
		{`{"x":{"c":1,"k":{"p":null}}}`, "/x/k"},
	}
	for _, c := range refused {
		_, err := patch.Apply([]byte(value), ctxd.Patch{Type: ctxd.MergePatch, Doc: raw(c.patch)}, ctxd.DefaultLimits)
		var pe *ctxd.PatchError
		if !assert.ErrorAs(t, err, &pe, c.patch) {
			continue
		}
		assert.ErrorIs(t, err, ctxd.ErrPatchFailed)
		assert.Equal(t, ctxd.PatchError{Op: "merge", Pointer: c.pointer, Reason: pe.Reason}, *pe, c.patch)
	}
	_, err := patch.Apply([]byte(value), ctxd.Patch{Type: ctxd.MergePatch, Doc: raw(`{"x":{"k":{"r":5}}}`)}, ctxd.DefaultLimits)
	assert.EqualError(t, err, `patch cannot be applied: operation 0 (merge) at "/x/k": the object at "/x" names member "k" twice (at "/x/k"; a value is stored as sent): `+
		`a merge patch cannot tell which one it sets, so it is not patched: PUT the whole value, with each member once (a null for "k" removes both)`)
}

// A merge patch that names a member twice in one of its own objects is
// refused as a malformed patch (400), as a JSON Patch document naming one
// twice is: it set whichever came last.
func TestMergePatchNamingAMemberTwiceIsRefused(t *testing.T) {
	for _, c := range []struct{ value, patch, pointer string }{
		{`{"b":0}`, `{"c":{"q":1,"q":2}}`, "/c/q"},
		{`{"b":0}`, `{"b":1,"b":2}`, "/b"},
		{`{"b":0}`, `{"b":null,"b":null}`, "/b"},
		{`7`, `{"c":{"d":{"q":1,"q":2}}}`, "/c/d/q"},
	} {
		_, err := patch.Apply([]byte(c.value), ctxd.Patch{Type: ctxd.MergePatch, Doc: raw(c.patch)}, ctxd.DefaultLimits)
		require.ErrorIs(t, err, ctxd.ErrInvalid, c.patch)
		assert.Contains(t, err.Error(), `names member "`, c.patch)
		assert.Contains(t, err.Error(), `(at "`+c.pointer+`")`, c.patch)
	}
	out, err := patch.Apply([]byte(`{"b":0}`), ctxd.Patch{Type: ctxd.MergePatch, Doc: raw(`{"c":{"q":1},"d":{"q":2}}`)}, ctxd.DefaultLimits)
	require.NoError(t, err)
	assert.Equal(t, `{"b":0,"c":{"q":1},"d":{"q":2}}`, string(out))
}

// A member named twice is found in an object of any size (up to 128
// members a table on the stack, beyond a map), and an object without one
// is patched.
func TestRepeatedMembersFoundInObjectsOfAnySize(t *testing.T) {
	for _, n := range []int{1, 2, 127, 128, 129, 1000} {
		names := make([]string, n)
		for i := range names {
			names[i] = fmt.Sprintf(`"m%04d":%d`, i, i)
		}
		distinct := "{" + strings.Join(names, ",") + "}"
		add := ctxd.Patch{Type: ctxd.JSONPatch, Doc: raw(`[{"op":"add","path":"/new","value":0}]`)}
		out, err := patch.Apply([]byte(distinct), add, ctxd.DefaultLimits)
		require.NoError(t, err, "%d distinct members", n)
		assert.Equal(t, distinct[:len(distinct)-1]+`,"new":0}`, string(out))

		// The first member again, last (of n+1), and one in the middle.
		middle := slices.Insert(slices.Clone(names), n/2, fmt.Sprintf(`"m%04d":-1`, n-1))
		for _, value := range []string{
			distinct[:len(distinct)-1] + `,"m0000":-1}`,
			"{" + strings.Join(middle, ",") + "}",
		} {
			_, err = patch.Apply([]byte(value), add, ctxd.DefaultLimits)
			var pe *ctxd.PatchError
			if assert.ErrorAs(t, err, &pe, "%d members and one twice", n+1) {
				assert.Contains(t, pe.Reason, "twice", "%d members and one twice", n+1)
			}
		}
	}
}
