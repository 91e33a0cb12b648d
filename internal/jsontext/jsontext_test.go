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
// JSON.
func FuzzIndent(f *testing.F) {
	for _, s := range []string{`1`, `"s"`, `{}`, `[]`, `{ }`, `[ ]`, `{"a":1}`, `{"a":[1,2,{"b":null}],"c":{}}`,
		` [ 1 , [ ] , { "k" : "v\"}" } ] `, `"a\\"`, `{"\\":"\"]"}`, `[[[[]]]]`, `[true,false,null,-1.5e3]`} {
		f.Add(s, "", "  ")
	}
	f.Add(`{"a":[1]}`, ">", "\t")
	f.Fuzz(func(t *testing.T, src, prefix, indent string) {
		if !json.Valid([]byte(src)) {
			return
		}
		var want bytes.Buffer
		if err := json.Indent(&want, []byte(src), prefix, indent); err != nil {
			t.Fatalf("json.Indent(%q): %v", src, err)
		}
		var got bytes.Buffer
		w := bufio.NewWriter(&got)
		if err := Indent(w, []byte(src), prefix, indent); err != nil {
			t.Fatal(err)
		}
		if err := w.Flush(); err != nil {
			t.Fatal(err)
		}
		if wantText := string(bytes.TrimSpace(want.Bytes())); got.String() != wantText {
			t.Fatalf("Indent(%q, %q, %q) = %q, json.Indent gives %q", src, prefix, indent, got.String(), wantText)
		}
	})
}

// Indent holds nothing of what it writes: a value nested deep, whose
// indented text is megabytes, costs no allocation of that size.
func TestIndentAllocatesNothingOfTheOutput(t *testing.T) {
	const depth = 2000
	src := []byte(strings.Repeat("[", depth) + strings.Repeat("]", depth))
	var n countingWriter
	w := bufio.NewWriter(&n)
	allocs := testing.AllocsPerRun(3, func() {
		if err := Indent(w, src, "", "  "); err != nil {
			t.Fatal(err)
		}
	})
	require.NoError(t, w.Flush())
	assert.Greater(t, n, countingWriter(3*4_000_000), "the indented text of the three runs")
	assert.Zero(t, allocs)
}

type countingWriter int

func (c *countingWriter) Write(p []byte) (int, error) {
	*c += countingWriter(len(p))
	return len(p), nil
}
