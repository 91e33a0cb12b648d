package jsontext

import (
	"encoding/json"
	"testing"
	"time"
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
