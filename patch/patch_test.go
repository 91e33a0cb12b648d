package patch_test

import (
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/framework0/ctxd"
	"github.com/framework0/ctxd/patch"
)

// vector is one case of the json-patch-tests suite (testdata/README.md).
type vector struct {
	Comment  string          `json:"comment"`
	Doc      json.RawMessage `json:"doc"`
	Patch    json.RawMessage `json:"patch"`
	Expected json.RawMessage `json:"expected"`
	Error    string          `json:"error"`
	Disabled bool            `json:"disabled"`
}

func loadVectors(t *testing.T, name string) []vector {
	t.Helper()
	b, err := os.ReadFile(filepath.Join("testdata", name))
	require.NoError(t, err)
	var vs []vector
	require.NoError(t, json.Unmarshal(b, &vs))
	require.NotEmpty(t, vs)
	return vs
}

// rfc6902Extra are the RFC 6902 Appendix A examples missing from the copy
// of spec_tests.json in testdata (A.14 to A.16), from the RFC's text.
var rfc6902Extra = []vector{
	{Comment: "A.14. ~ Escape Ordering", Doc: raw(`{"/": 9, "~1": 10}`),
		Patch: raw(`[{"op": "test", "path": "/~01", "value": 10}]`), Expected: raw(`{"/": 9, "~1": 10}`)},
	{Comment: "A.15. Comparing Strings and Numbers", Doc: raw(`{"/": 9, "~1": 10}`),
		Patch: raw(`[{"op": "test", "path": "/~01", "value": "10"}]`), Error: "string not equivalent to number"},
	{Comment: "A.16. Adding an Array Value", Doc: raw(`{"foo": ["bar"]}`),
		Patch: raw(`[{"op": "add", "path": "/foo/-", "value": ["abc", "def"]}]`), Expected: raw(`{"foo": ["bar", ["abc", "def"]]}`)},
}

func raw(s string) json.RawMessage { return json.RawMessage(s) }

// The published RFC 6902 vectors: every enabled case gives its expected
// document (compared as JSON values: member order is free), or an error.
func TestJSONPatchVectors(t *testing.T) {
	sets := map[string][]vector{
		"tests.json":      loadVectors(t, "tests.json"),
		"spec_tests.json": append(loadVectors(t, "spec_tests.json"), rfc6902Extra...),
	}
	ran := 0
	for name, vs := range sets {
		for i, v := range vs {
			if v.Disabled {
				continue
			}
			ran++
			label := name + "#" + strings.TrimSpace(v.Comment)
			if v.Comment == "" {
				label = name + "#" + string(v.Patch)
			}
			t.Run(label, func(t *testing.T) {
				out, err := patch.Apply(v.Doc, ctxd.Patch{Type: ctxd.JSONPatch, Doc: v.Patch}, ctxd.DefaultLimits)
				if v.Error != "" {
					require.Error(t, err, "case %d should fail: %s", i, v.Error)
					assert.True(t, errors.Is(err, ctxd.ErrInvalid) || errors.Is(err, ctxd.ErrPatchFailed) || errors.Is(err, ctxd.ErrPatchTestFailed),
						"a failure is a bad patch or a patch error, not %v", err)
					return
				}
				require.NoError(t, err, "case %d", i)
				want := v.Expected
				if want == nil {
					want = v.Doc // a case without "expected" only checks that it applies
				}
				assert.JSONEq(t, string(want), string(out), "case %d", i)
				compacted, err := ctxd.CompactJSON(out)
				require.NoError(t, err)
				assert.Equal(t, string(compacted), string(out), "the result is compact")
			})
		}
	}
	assert.Greater(t, ran, 90, "the vectors ran")
}

// RFC 7396 Appendix A, and section 3's example, byte for byte: members
// keep their order, new ones go at the end.
func TestMergePatchRFCExamples(t *testing.T) {
	cases := []struct{ target, patch, want string }{
		{`{"a":"b"}`, `{"a":"c"}`, `{"a":"c"}`},
		{`{"a":"b"}`, `{"b":"c"}`, `{"a":"b","b":"c"}`},
		{`{"a":"b"}`, `{"a":null}`, `{}`},
		{`{"a":"b","b":"c"}`, `{"a":null}`, `{"b":"c"}`},
		{`{"a":["b"]}`, `{"a":"c"}`, `{"a":"c"}`},
		{`{"a":"c"}`, `{"a":["b"]}`, `{"a":["b"]}`},
		{`{"a":{"b":"c"}}`, `{"a":{"b":"d","c":null}}`, `{"a":{"b":"d"}}`},
		{`{"a":[{"b":"c"}]}`, `{"a":[1]}`, `{"a":[1]}`},
		{`["a","b"]`, `["c","d"]`, `["c","d"]`},
		{`{"a":"b"}`, `["c"]`, `["c"]`},
		{`{"a":"foo"}`, `null`, `null`},
		{`{"a":"foo"}`, `"bar"`, `"bar"`},
		{`{"e":null}`, `{"a":1}`, `{"e":null,"a":1}`},
		{`[1,2]`, `{"a":"b","c":null}`, `{"a":"b"}`},
		{`{}`, `{"a":{"bb":{"ccc":null}}}`, `{"a":{"bb":{}}}`},
		// Section 3.
		{`{"title":"Goodbye!","author":{"givenName":"John","familyName":"Doe"},"tags":["example","sample"],"content":"This will be unchanged"}`,
			`{"title":"Hello!","phoneNumber":"+01-123-456-7890","author":{"familyName":null},"tags":["example"]}`,
			`{"title":"Hello!","author":{"givenName":"John"},"tags":["example"],"content":"This will be unchanged","phoneNumber":"+01-123-456-7890"}`},
	}
	for _, c := range cases {
		out, err := patch.Apply([]byte(c.target), ctxd.Patch{Type: ctxd.MergePatch, Doc: raw(c.patch)}, ctxd.DefaultLimits)
		require.NoError(t, err, "%s + %s", c.target, c.patch)
		assert.Equal(t, c.want, string(out), "%s + %s", c.target, c.patch)
	}
}

// What a patch does not touch keeps its bytes: numbers their exact text,
// strings their escapes and characters (no HTML escaping), keys as
// written; the result is compact whatever the patch's spacing.
func TestUntouchedPartsKeepTheirBytes(t *testing.T) {
	value := `{"big":9007199254740993,"f":1.50,"html":"<a href=\"x\">&</a>","esc":"\u00e9","k\u0065y":1}`
	merge := []struct{ patch, want string }{
		{`{ "n" : 1 }`, `{"big":9007199254740993,"f":1.50,"html":"<a href=\"x\">&</a>","esc":"\u00e9","k\u0065y":1,"n":1}`},
		{`{"big":12345678901234567890123}`, `{"big":12345678901234567890123,"f":1.50,"html":"<a href=\"x\">&</a>","esc":"\u00e9","k\u0065y":1}`},
	}
	for _, c := range merge {
		out, err := patch.Apply([]byte(value), ctxd.Patch{Type: ctxd.MergePatch, Doc: raw(c.patch)}, ctxd.DefaultLimits)
		require.NoError(t, err)
		assert.Equal(t, c.want, string(out), "merge %s", c.patch)
	}
	out, err := patch.Apply([]byte(value), ctxd.Patch{Type: ctxd.JSONPatch, Doc: raw(`[{"op":"add","path":"/n","value":1e400}]`)}, ctxd.DefaultLimits)
	require.NoError(t, err)
	var got map[string]json.RawMessage
	require.NoError(t, json.Unmarshal(out, &got))
	assert.Equal(t, `9007199254740993`, string(got["big"]))
	assert.Equal(t, `1.50`, string(got["f"]))
	assert.Equal(t, `1e400`, string(got["n"]), "a number of the patch keeps its text")
	assert.Contains(t, string(out), `"html":"<a href=\"x\">&</a>"`, "nothing is HTML-escaped")
	// A move to where it is changes nothing (RFC 6902); the library
	// removed and added the member again, at the end.
	out, err = patch.Apply([]byte(`{"a":1,"b":2}`), ctxd.Patch{Type: ctxd.JSONPatch, Doc: raw(`[{"op":"move","from":"/a","path":"/a"}]`)}, ctxd.DefaultLimits)
	require.NoError(t, err)
	assert.Equal(t, `{"a":1,"b":2}`, string(out))
}

// A failing operation is named with its index and pointer; a test that
// does not hold is told apart from a path that does not exist.
func TestFailuresNameTheOperationAndPointer(t *testing.T) {
	value := []byte(`{"a":{"b":1},"list":[1,2]}`)
	cases := []struct {
		name, patch string
		test        bool
		index       int
		pointer     string
	}{
		{"test differs", `[{"op":"add","path":"/c","value":1},{"op":"test","path":"/a/b","value":2}]`, true, 1, "/a/b"},
		{"test of a missing path", `[{"op":"test","path":"/nope","value":1}]`, true, 0, "/nope"},
		{"test for null where nothing is", `[{"op":"test","path":"/nope","value":null}]`, true, 0, "/nope"},
		{"remove missing", `[{"op":"test","path":"/a/b","value":1},{"op":"remove","path":"/a/x"}]`, false, 1, "/a/x"},
		{"add under a missing parent", `[{"op":"add","path":"/x/y","value":1}]`, false, 0, "/x/y"},
		{"index out of range", `[{"op":"replace","path":"/list/5","value":1}]`, false, 0, "/list/5"},
		{"negative index", `[{"op":"add","path":"/list/-1","value":1}]`, false, 0, "/list/-1"},
		{"move from a missing path", `[{"op":"move","from":"/a/zz","path":"/q"}]`, false, 0, "/a/zz"},
	}
	for _, c := range cases {
		_, err := patch.Apply(value, ctxd.Patch{Type: ctxd.JSONPatch, Doc: raw(c.patch)}, ctxd.DefaultLimits)
		var pe *ctxd.PatchError
		require.ErrorAs(t, err, &pe, c.name)
		assert.Equal(t, c.test, pe.Test, c.name)
		assert.Equal(t, c.index, pe.Index, c.name)
		assert.Equal(t, c.pointer, pe.Pointer, c.name)
		if c.test {
			assert.ErrorIs(t, err, ctxd.ErrPatchTestFailed, c.name)
		} else {
			assert.ErrorIs(t, err, ctxd.ErrPatchFailed, c.name)
		}
	}
}

// A move or a copy to "/list/-" appends, as an add there does: RFC 6902
// makes each an add at its path ("-" is past the array's last element).
// It was refused as "not an array index".
func TestMoveAndCopyToTheEndOfAnArray(t *testing.T) {
	value := []byte(`{"a":0,"list":[1,2]}`)
	for doc, want := range map[string]string{
		`[{"op":"copy","from":"/a","path":"/list/-"}]`:      `{"a":0,"list":[1,2,0]}`,
		`[{"op":"move","from":"/a","path":"/list/-"}]`:      `{"list":[1,2,0]}`,
		`[{"op":"move","from":"/list/0","path":"/list/-"}]`: `{"a":0,"list":[2,1]}`,
	} {
		out, err := patch.Apply(value, ctxd.Patch{Type: ctxd.JSONPatch, Doc: raw(doc)}, ctxd.DefaultLimits)
		require.NoError(t, err, doc)
		assert.JSONEq(t, want, string(out), doc)
	}
	_, err := patch.Apply(value, ctxd.Patch{Type: ctxd.JSONPatch, Doc: raw(`[{"op":"copy","from":"/list/-","path":"/b"}]`)}, ctxd.DefaultLimits)
	assert.ErrorIs(t, err, ctxd.ErrPatchFailed, `"-" as from names no element`)
}

// A move into one of its own members is refused (RFC 6902 4.4: "from"
// must not be a proper prefix of "path"), and says so: it was the
// library's "doc is missing destination path", of a path that was there.
func TestAMoveIntoItselfIsRefusedAndSaysSo(t *testing.T) {
	value := []byte(`{"a":{"b":{"c":1}},"l":[1,[2]]}`)
	for _, doc := range []string{
		`[{"op":"move","from":"/a","path":"/a/b/d"}]`,
		`[{"op":"move","from":"/l","path":"/l/1/-"}]`,
		`[{"op":"move","from":"","path":"/x"}]`,
	} {
		_, err := patch.Apply(value, ctxd.Patch{Type: ctxd.JSONPatch, Doc: raw(doc)}, ctxd.DefaultLimits)
		var pe *ctxd.PatchError
		require.ErrorAs(t, err, &pe, doc)
		assert.Equal(t, "move", pe.Op, doc)
		assert.Contains(t, pe.Reason, "into itself", doc)
	}
	// Control: a member whose name starts as the other's is not inside it.
	out, err := patch.Apply(value, ctxd.Patch{Type: ctxd.JSONPatch, Doc: raw(`[{"op":"move","from":"/a","path":"/ab"}]`)}, ctxd.DefaultLimits)
	require.NoError(t, err)
	assert.JSONEq(t, `{"ab":{"b":{"c":1}},"l":[1,[2]]}`, string(out))
}

// A malformed patch is bad input whatever the value; a result over the
// size limit is too large; neither is a patch error.
func TestBadPatchesAndLimits(t *testing.T) {
	value := []byte(`{"a":"0123456789"}`)
	bad := []ctxd.Patch{
		{Type: ctxd.JSONPatch, Doc: raw(`{"op":"add"}`)},
		{Type: ctxd.JSONPatch, Doc: raw(`[{"op":"add","path":"a","value":1}]`)},
		{Type: ctxd.JSONPatch, Doc: raw(`[{"op":"add","path":"/a~2","value":1}]`)},
		{Type: ctxd.JSONPatch, Doc: raw(`[{"op":"move","path":"/b"}]`)},
		{Type: ctxd.JSONPatch, Doc: raw(`[{"path":"/b"}]`)},
		{Type: ctxd.JSONPatch, Doc: raw(`[1]`)},
		{Type: ctxd.JSONPatch, Doc: raw(`null`)},                                     // decoded without an error: was a patch of no operation
		{Type: ctxd.JSONPatch, Doc: raw(`[{"op":"add","op":"remove","path":"/a"}]`)}, // the last op won
		{Type: ctxd.MergePatch, Doc: raw(`{"a":`)},
		{Type: "application/json", Doc: raw(`{}`)},
	}
	for _, p := range bad {
		_, err := patch.Apply(value, p, ctxd.DefaultLimits)
		assert.ErrorIs(t, err, ctxd.ErrInvalid, "%s %s", p.Type, p.Doc)
		assert.NotContains(t, err.Error(), "Go value", "in JSON's words, not Go's types: %s", p.Doc)
	}
	_, err := patch.Apply(value, ctxd.Patch{Type: ctxd.JSONPatch, Doc: raw(`{"op":"add"}`)}, ctxd.DefaultLimits)
	assert.EqualError(t, err, "invalid input: a JSON Patch is an array of operation objects: must be an array, not an object")
	small := ctxd.Limits{MaxValueBytes: 64}.WithDefaults()
	_, err = patch.Apply(value, ctxd.Patch{Type: ctxd.MergePatch, Doc: raw(`{"b":"` + strings.Repeat("x", 64) + `"}`)}, small)
	assert.ErrorIs(t, err, ctxd.ErrTooLarge)
	doubling := `[{"op":"copy","from":"/a","path":"/b"},{"op":"copy","from":"/a","path":"/c"},{"op":"copy","from":"/a","path":"/d"},{"op":"copy","from":"/a","path":"/e"}]`
	_, err = patch.Apply(value, ctxd.Patch{Type: ctxd.JSONPatch, Doc: raw(doubling)}, small)
	assert.ErrorIs(t, err, ctxd.ErrTooLarge)
	big := []byte(`{"a":"` + strings.Repeat("x", 1<<20) + `"}`)
	many := `[` + strings.Repeat(`{"op":"test","path":"/a","value":"x"},`, patch.WorkBytes/len(big)) + `{"op":"remove","path":"/a"}]`
	_, err = patch.Apply(big, ctxd.Patch{Type: ctxd.JSONPatch, Doc: raw(many)}, ctxd.Limits{MaxValueBytes: 2 << 20}.WithDefaults())
	assert.ErrorIs(t, err, ctxd.ErrTooLarge, "operations x value size over the work bound")
	_, err = patch.Apply([]byte(`42`), ctxd.Patch{Type: ctxd.JSONPatch, Doc: raw(`[{"op":"replace","path":"/a","value":1}]`)}, ctxd.DefaultLimits)
	assert.ErrorIs(t, err, ctxd.ErrPatchFailed, "a JSON Patch below the top of a number")
	_, err = patch.Apply([]byte(`{"a":1}`), ctxd.Patch{Type: ctxd.JSONPatch, Doc: raw(`[{"op":"replace","path":"","value":1},{"op":"add","path":"/b","value":2}]`)}, ctxd.DefaultLimits)
	assert.ErrorIs(t, err, ctxd.ErrPatchFailed, "below the top of a value an earlier operation made a number")
	assert.NotContains(t, err.Error(), "%!", "the reason is ours, not a library's misformatted one")
}

// The patches of one request share WorkBytes (Budget): a transaction of
// 128 JSON Patches, each under a bound of its own, held bolt's writer for
// 92 s. Each patch alone is within the budget, together they are not,
// and the one that would pass it is refused before it is applied. A patch
// that fails counts nothing; a merge patch counts its value and patch
// once, and one alone applies to any value (as before the budget).
func TestPatchesOfARequestShareTheWorkBudget(t *testing.T) {
	limits := ctxd.Limits{MaxValueBytes: 64 << 20}.WithDefaults()
	value := []byte(`{"n":0,"s":"` + strings.Repeat("x", 100_000) + `"}`)
	p, work := workPatch(len(value), patch.WorkBytes*3/5, "0")

	_, err := patch.Apply(value, p, limits)
	require.NoError(t, err, "a patch alone")
	var b patch.Budget
	_, err = b.Apply(value, p, limits)
	require.NoError(t, err, "the first patch of a request")
	_, err = b.Apply(value, p, limits)
	assert.ErrorIs(t, err, ctxd.ErrTooLarge, "the second, past what the first left")
	assert.ErrorContains(t, err, "after the request's patches before it")
	small, smallWork := workPatch(len(value), patch.WorkBytes-work, "0")
	_, err = b.Apply(value, small, limits)
	require.NoError(t, err, "a refused patch counts nothing: the rest of the budget is left")
	_, err = b.Apply(value, ctxd.Patch{Type: ctxd.JSONPatch, Doc: raw(`[{"op":"replace","path":"/n","value":3}]`)}, limits)
	assert.ErrorIs(t, err, ctxd.ErrTooLarge, "%d of %d used: one operation on the value is over", work+smallWork, patch.WorkBytes)

	var failed patch.Budget
	failing, _ := workPatch(len(value), patch.WorkBytes*3/5, "1")
	_, err = failed.Apply(value, failing, limits)
	require.ErrorIs(t, err, ctxd.ErrPatchTestFailed)
	_, err = failed.Apply(value, p, limits)
	assert.NoError(t, err, "a patch that failed counts nothing")

	// Merge patches count their value and patch once.
	merge := ctxd.Patch{Type: ctxd.MergePatch, Doc: raw(`{"n":1}`)}
	var m patch.Budget
	_, err = m.Apply(value, p, limits)
	require.NoError(t, err)
	merges := 0
	for ; merges <= patch.WorkBytes/len(value); merges++ {
		if _, err = m.Apply(value, merge, limits); err != nil {
			break
		}
	}
	assert.ErrorIs(t, err, ctxd.ErrTooLarge)
	assert.Equal(t, (patch.WorkBytes-work)/(len(value)+len(merge.Doc)), merges, "merge patches after the JSON Patch, within what it left")
	_, err = m.Apply(value, ctxd.Patch{Type: ctxd.JSONPatch, Doc: raw(`[]`)}, limits)
	assert.ErrorIs(t, err, ctxd.ErrTooLarge, "an empty JSON Patch writes its value again: it counts as a merge patch")

	huge := []byte(`{"n":0,"s":"` + strings.Repeat("x", patch.WorkBytes+1) + `"}`)
	var h patch.Budget
	_, err = h.Apply(huge, merge, limits)
	require.NoError(t, err, "a merge patch alone, of a value over WorkBytes")
	_, err = h.Apply([]byte(`{}`), merge, limits)
	assert.ErrorIs(t, err, ctxd.ErrTooLarge, "it took the whole budget")
}

// workPatch is the JSON Patch with the most operations whose work on a
// value of size bytes is at most target, and that work: tests that
// member "n" of the value is want, and a replace of it.
func workPatch(size, target int, want string) (ctxd.Patch, int) {
	test := `{"op":"test","path":"/n","value":` + want + `},`
	doc := func(ops int) string {
		return "[" + strings.Repeat(test, ops-1) + `{"op":"replace","path":"/n","value":2}]`
	}
	ops := target / size
	for ops > 1 && ops*(size+len(doc(ops))) > target {
		ops--
	}
	d := doc(ops)
	return ctxd.Patch{Type: ctxd.JSONPatch, Doc: raw(d)}, ops * (size + len(d))
}

// TestJSONPatchOfTheWholeValue: RFC 6902's path "" names the whole value,
// whatever its type: add and replace set it, move and copy put a part of
// it there, test compares it, remove cannot take it away. (The library takes only an object or an
// array there, and answered replacing an object with 1 with "replace
// operation value must be object or array: %!w(<nil>)".)
func TestJSONPatchOfTheWholeValue(t *testing.T) {
	cases := []struct{ value, doc, want string }{
		{`{"a":1}`, `[{"op":"replace","path":"","value":1}]`, `1`},
		{`{"a":1}`, `[{"op":"add","path":"","value":"s"}]`, `"s"`},
		{`42`, `[{"op":"replace","path":"","value":{"b": [1]}}]`, `{"b":[1]}`},
		{`42`, `[{"op":"test","path":"","value":42.0},{"op":"replace","path":"","value":null}]`, `null`},
		{`{"a":{"b":1},"c":2}`, `[{"op":"move","from":"/a","path":""}]`, `{"b":1}`},
		{`{"a":[1,2]}`, `[{"op":"copy","from":"/a","path":""},{"op":"add","path":"/-","value":3}]`, `[1,2,3]`},
	}
	for _, c := range cases {
		out, err := patch.Apply([]byte(c.value), ctxd.Patch{Type: ctxd.JSONPatch, Doc: raw(c.doc)}, ctxd.DefaultLimits)
		require.NoError(t, err, "%s on %s", c.doc, c.value)
		assert.Equal(t, c.want, string(out), "%s on %s", c.doc, c.value)
	}
	// A remove of "" is refused: the library removed the member named ""
	// (whose pointer is "/"), and {"":1,"a":1,"a":2} became {"a":2,"a":2}.
	for _, value := range []string{`{"":1,"a":1}`, `{"":1,"a":1,"a":2}`, `[1]`, `{"a":1}`} {
		_, err := patch.Apply([]byte(value), ctxd.Patch{Type: ctxd.JSONPatch, Doc: raw(`[{"op":"remove","path":""}]`)}, ctxd.DefaultLimits)
		var pe *ctxd.PatchError
		require.ErrorAs(t, err, &pe, value)
		assert.Equal(t, ctxd.PatchError{Index: 0, Op: "remove", Pointer: "", Reason: pe.Reason}, *pe, value)
		assert.Contains(t, pe.Reason, "the whole value", value)
	}
}
