package export_test

import (
	"encoding/json"
	"errors"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/framework0/ctxd/export"
)

type kv struct{ key, value string }

func readAll(t *testing.T, in string) ([]kv, error) {
	t.Helper()
	var out []kv
	err := export.ReadJSON(strings.NewReader(in), func(key string, value json.RawMessage) error {
		out = append(out, kv{key, string(value)})
		return nil
	}, nil)
	return out, err
}

// A JSON dump reads back as the store's keys and values, byte for byte
// after compaction, in key order, history skipped.
func TestReadJSONOwnDump(t *testing.T) {
	st, live := populated(t)
	out, _ := dump(t, st, export.JSON, export.Options{Namespace: "default", History: true})
	got, err := readAll(t, string(out))
	require.NoError(t, err)
	require.Len(t, got, len(live))
	for i, r := range live {
		assert.Equal(t, r.Key, got[i].key)
		assert.Equal(t, compactJSON(t, r.Value), got[i].value)
	}
}

// Framework0 wrote its JSON dumps with json.dump(indent=2): metadata, then
// "context", then "history" with before/after entries.
func TestReadJSONFramework0Dump(t *testing.T) {
	const f0 = `{
  "timestamp": "2025-01-05T12:00:00.123456",
  "format": "json",
  "filename": "context_dump_20250105_120000.json",
  "who": "api_client",
  "key_count": 4,
  "include_history": true,
  "context": {
    "app.config.debug": true,
    "app.name": "demo",
    "limits": {"cpu": 2, "mem": [1, 2]},
    "ratio": 0.25
  },
  "history": [
    {"timestamp": "2025-01-05T11:59:00", "key": "app.name", "before": null, "after": "demo", "who": "shell"}
  ]
}`
	got, err := readAll(t, f0)
	require.NoError(t, err)
	assert.Equal(t, []kv{
		{"app.config.debug", "true"},
		{"app.name", `"demo"`},
		{"limits", `{"cpu": 2, "mem": [1, 2]}`},
		{"ratio", "0.25"},
	}, got)
}

func TestReadJSONMalformed(t *testing.T) {
	for name, in := range map[string]string{
		"empty":              ``,
		"not json":           `hello`,
		"array":              `[1,2]`,
		"string":             `"context"`,
		"no context":         `{"timestamp":"x"}`,
		"context not object": `{"context":[1,2]}`,
		"context null":       `{"context":null}`,
		"context twice":      `{"context":{},"context":{}}`,
		"truncated":          `{"context":{"a":1,"b":`,
		"truncated object":   `{"context":{"a":1}`,
		"bad value":          `{"context":{"a":tru}}`,
		"trailing data":      `{"context":{"a":1}} {"context":{}}`,
		"trailing garbage":   `{"context":{"a":1}} x`,
		"bad history":        `{"context":{"a":1},"history":[}`,
	} {
		t.Run(name, func(t *testing.T) {
			_, err := readAll(t, in)
			require.ErrorIs(t, err, export.ErrBadDump)
		})
	}
	got, err := readAll(t, `{"context":{}}`)
	require.NoError(t, err)
	assert.Empty(t, got)

	// A value nested past encoding/json's limit is named, with the limit
	// (it was "invalid character '[' exceeded max depth").
	_, err = readAll(t, `{"context":{"ok":1,"deep":`+strings.Repeat("[", 10001)+strings.Repeat("]", 10001)+`}}`)
	require.ErrorIs(t, err, export.ErrBadDump)
	assert.Contains(t, err.Error(), `key "deep"`)
	assert.Contains(t, err.Error(), "more than 10000 deep")

	boom := errors.New("stop here")
	err = export.ReadJSON(strings.NewReader(`{"context":{"a":1,"b":2}}`), func(string, json.RawMessage) error { return boom }, nil)
	require.ErrorIs(t, err, boom)
}
