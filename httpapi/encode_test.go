package httpapi_test

import (
	"bytes"
	"encoding/json"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/framework0/ctxd"
	"github.com/framework0/ctxd/httpapi"
)

// marshal is encoding/json without HTML escaping and without the trailing
// newline: what the hand-written encoders must match byte for byte.
func marshal(t testing.TB, v any) []byte {
	t.Helper()
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	enc.SetEscapeHTML(false)
	require.NoError(t, enc.Encode(v))
	return bytes.TrimSuffix(buf.Bytes(), []byte("\n"))
}

var trickyStrings = []string{
	"",
	"plain",
	`quote " and backslash \`,
	"newline\n tab\t cr\r bs\b ff\f",
	"\x00\x01\x1f\x7f",
	"html <b>&amp;</b>",
	"ünïcødé 日本語 🎉",
	"line sep \u2028 para sep \u2029",
	"invalid \xff\xfe utf8 \xc3",
	"deploy/prod/version",
}

func TestAppendStringMatchesEncodingJSON(t *testing.T) {
	for _, s := range trickyStrings {
		assert.Equal(t, string(marshal(t, s)), string(httpapi.AppendString(nil, s)), "%q", s)
	}
}

func FuzzAppendString(f *testing.F) {
	for _, s := range trickyStrings {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		got := httpapi.AppendString(nil, s)
		if want := marshal(t, s); !bytes.Equal(want, got) {
			t.Fatalf("%q: got %s, want %s", s, got, want)
		}
	})
}

func TestAppendRecordMatchesEncodingJSON(t *testing.T) {
	ts := time.Date(2025, 3, 4, 5, 6, 7, 890123000, time.UTC)
	recs := []ctxd.Record{
		{},
		{Namespace: "default", Key: "a/b.c", Value: json.RawMessage(`{"x":[1,2,{"y":null}]}`), Version: 3, CreateRev: 1, ModRev: 9, Who: "alice", UpdatedAt: ts},
		{Namespace: "n", Key: "weird \"key\"\x01", Value: nil, Version: 1 << 63, CreateRev: 1<<64 - 1, ModRev: 1, Who: "<script>", UpdatedAt: ts.In(time.FixedZone("x", 3600))},
	}
	for _, r := range recs {
		assert.Equal(t, string(marshal(t, r)), string(httpapi.AppendRecord(nil, &r)))
	}
}

func TestAppendChangeMatchesEncodingJSON(t *testing.T) {
	ts := time.Date(2025, 3, 4, 5, 6, 7, 0, time.UTC)
	changes := []ctxd.Change{
		{},
		{Revision: 7, Namespace: "default", Key: "k", Op: ctxd.OpPut, Value: json.RawMessage(`"v"`), Version: 2, PrevRev: 3, Who: "w", Time: ts},
		{Revision: 8, Namespace: "default", Key: "k", Op: ctxd.OpDelete, Version: 2, PrevRev: 7, Who: "w\n", Time: ts},
	}
	for _, c := range changes {
		assert.Equal(t, string(marshal(t, c)), string(httpapi.AppendChange(nil, &c)))
	}
}
