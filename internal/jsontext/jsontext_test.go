package jsontext

import (
	"bufio"
	"bytes"
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// FuzzAppendString checks the output against encoding/json (without its
// HTML escaping) for any string.
func FuzzAppendString(f *testing.F) {
	for _, s := range []string{"", "plain", `q"b\`, "\n\r\t\b\f\x00\x1f", "\xff\xfe", "ü€😀", "\u2028\u2029", "<&>"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		got := AppendString(nil, s)
		var back string
		if err := json.Unmarshal(got, &back); err != nil {
			t.Fatalf("%q encodes to invalid JSON %s: %v", s, got, err)
		}
		want, _ := json.Marshal(s)
		var wantBack string
		_ = json.Unmarshal(want, &wantBack)
		if back != wantBack {
			t.Fatalf("%q decodes to %q, encoding/json gives %q", s, back, wantBack)
		}
	})
}

func TestAppendTime(t *testing.T) {
	tm := time.Date(2026, 11, 27, 6, 9, 22, 1222265, time.UTC)
	want, _ := json.Marshal(tm)
	if got := AppendTime(nil, tm); string(got) != string(want) {
		t.Fatalf("got %s, want %s", got, want)
	}
}

// FuzzIndent checks Indent against json.Indent (trimmed) for any valid
// JSON nested no deeper than maxDepth; a value nested deeper must come out
// the same value (with a prefix and indent of white space).
func FuzzIndent(f *testing.F) {
	for _, s := range []string{`1`, `"s"`, `{}`, `[]`, `{ }`, `[ ]`, `{"a":1}`, `{"a":[1,2,{"b":null}],"c":{}}`,
		` [ 1 , [ ] , { "k" : "v\"}" } ] `, `"a\\"`, `{"\\":"\"]"}`, `[[[[]]]]`, `[true,false,null,-1.5e3]`} {
		f.Add(s, "", "  ", uint8(32))
		f.Add(s, "", "  ", uint8(1))
	}
	f.Add(`{"a":[1]}`, ">", "\t", uint8(32))
	f.Fuzz(func(t *testing.T, src, prefix, indent string, maxDepth uint8) {
		if !json.Valid([]byte(src)) {
			return
		}
		var got bytes.Buffer
		w := bufio.NewWriter(&got)
		if err := Indent(w, []byte(src), prefix, indent, int(maxDepth)); err != nil {
			t.Fatal(err)
		}
		if err := w.Flush(); err != nil {
			t.Fatal(err)
		}
		if Depth([]byte(src)) <= int(maxDepth) {
			var want bytes.Buffer
			if err := json.Indent(&want, []byte(src), prefix, indent); err != nil {
				t.Fatalf("json.Indent(%q): %v", src, err)
			}
			if wantText := string(bytes.TrimSpace(want.Bytes())); got.String() != wantText {
				t.Fatalf("Indent(%q, %q, %q, %d) = %q, json.Indent gives %q", src, prefix, indent, maxDepth, got.String(), wantText)
			}
			return
		}
		if strings.Trim(prefix+indent, " \t\r\n") != "" {
			return // not JSON once indented, as json.Indent's
		}
		var a, b bytes.Buffer
		if json.Compact(&a, []byte(src)) != nil || json.Compact(&b, got.Bytes()) != nil || a.String() != b.String() {
			t.Fatalf("Indent(%q, %q, %q, %d) = %q: not the same value", src, prefix, indent, maxDepth, got.String())
		}
	})
}

// Indent holds nothing of what it writes: a value whose indented text is
// megabytes costs no allocation of that size.
func TestIndentAllocatesNothingOfTheOutput(t *testing.T) {
	const depth = 2000
	src := []byte(strings.Repeat("[", depth) + strings.Repeat("]", depth))
	var n countingWriter
	w := bufio.NewWriter(&n)
	allocs := testing.AllocsPerRun(3, func() {
		if err := Indent(w, src, "", "  ", depth); err != nil {
			t.Fatal(err)
		}
	})
	require.NoError(t, w.Flush())
	assert.Greater(t, n, countingWriter(3*4_000_000), "the indented text of the three runs")
	assert.Zero(t, allocs)
}

// The text of a deep value is bounded by the depth that is indented, not
// the square of the value's depth: bytes out against depth (not times).
// Indented to every level, a value nested 10,000 levels deep (60 KB, the
// deepest a value may be: ctxd.Limits.ValidateValue) was 200 MB; to 32 levels it
// is its size and a few KB, whatever its depth. Below maxDepth, lines are
// as json.Indent's; deeper, the value is compact on its member's line.
func TestIndentIsBoundedByItsDepth(t *testing.T) {
	const maxDepth = 32
	for _, depth := range []int{10, 32, 100, 1000, 10000} {
		src := []byte(strings.Repeat(`{"a":`, depth) + "1" + strings.Repeat("}", depth))
		var n countingWriter
		w := bufio.NewWriter(&n)
		require.NoError(t, Indent(w, src, "", "  ", maxDepth))
		require.NoError(t, w.Flush())
		t.Logf("depth %5d: %6d bytes of value, %7d bytes indented", depth, len(src), n)
		assert.LessOrEqual(t, int(n), len(src)+2*maxDepth*(2*maxDepth+3), "depth %d", depth)
	}

	var b bytes.Buffer
	w := bufio.NewWriter(&b)
	require.NoError(t, Indent(w, []byte(`{"a": {"b": [1, {"c": 2}]}, "d": [3, 4]}`), "", "  ", 2))
	require.NoError(t, w.Flush())
	assert.Equal(t, "{\n  \"a\": {\n    \"b\": [1,{\"c\":2}]\n  },\n  \"d\": [\n    3,\n    4\n  ]\n}", b.String())
}

type countingWriter int

func (c *countingWriter) Write(p []byte) (int, error) {
	*c += countingWriter(len(p))
	return len(p), nil
}
