package export_test

import (
	"bytes"
	"encoding/csv"
	"encoding/json"
	"errors"
	"io"
	"runtime"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/framework0/ctxd"
	"github.com/framework0/ctxd/export"
	"github.com/framework0/ctxd/store"
	"github.com/framework0/ctxd/store/bolt"
)

type jsonDump struct {
	Timestamp      time.Time                  `json:"timestamp"`
	Who            string                     `json:"who"`
	Revision       uint64                     `json:"revision"`
	Namespace      string                     `json:"namespace"`
	Format         string                     `json:"format"`
	IncludeHistory bool                       `json:"include_history"`
	Context        map[string]json.RawMessage `json:"context"`
	KeyCount       int                        `json:"key_count"`
	ExpiresAt      map[string]time.Time       `json:"expires_at"`
	History        []historyEntry             `json:"history"`
	HistoryCount   *int                       `json:"history_count"`
}

type historyEntry struct {
	Revision  uint64          `json:"revision"`
	Timestamp time.Time       `json:"timestamp"`
	Key       string          `json:"key"`
	Action    string          `json:"action"`
	Before    json.RawMessage `json:"before"`
	After     json.RawMessage `json:"after"`
	Who       string          `json:"who"`
	Version   uint64          `json:"version"`
	ExpiresAt time.Time       `json:"expires_at"`
	Expired   bool            `json:"expired"`
}

func decodeStrict[T any](t testing.TB, b []byte) T {
	t.Helper()
	var v T
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.DisallowUnknownFields()
	require.NoError(t, dec.Decode(&v), "%s", b)
	_, err := dec.Token()
	require.ErrorIs(t, err, io.EOF, "data after the dump")
	return v
}

// changesOf returns the retained changes of ns, oldest first, and every
// change by revision.
func changesOf(t testing.TB, st *bolt.Store, ns string) ([]ctxd.Change, map[uint64]ctxd.Change) {
	t.Helper()
	all, err := st.ReadLog(0, 1<<30)
	require.NoError(t, err)
	byRev := map[uint64]ctxd.Change{}
	var out []ctxd.Change
	for _, c := range all {
		byRev[c.Revision] = c
		if c.Namespace == ns {
			out = append(out, c)
		}
	}
	return out, byRev
}

func TestJSONDump(t *testing.T) {
	st, live := populated(t)

	for _, history := range []bool{false, true} {
		t.Run("history="+strconv.FormatBool(history), func(t *testing.T) {
			out, res := dump(t, st, export.JSON, export.Options{Namespace: "default", Who: "tester", History: history, Time: dumpTime})
			d := decodeStrict[jsonDump](t, out)
			assert.Equal(t, dumpTime, d.Timestamp)
			assert.Equal(t, "tester", d.Who)
			assert.Equal(t, st.Revision(), d.Revision)
			assert.Equal(t, st.Revision(), res.Revision)
			assert.Equal(t, "default", d.Namespace)
			assert.Equal(t, "json", d.Format)
			assert.Equal(t, history, d.IncludeHistory)
			assert.Equal(t, len(live), d.KeyCount)
			assert.Equal(t, len(live), res.Keys)
			require.Len(t, d.Context, len(live))
			for _, r := range live {
				require.Contains(t, d.Context, r.Key)
				assert.Equal(t, compactJSON(t, r.Value), string(d.Context[r.Key]), r.Key)
			}
			assert.NotContains(t, d.Context, "not.dumped")
			assert.NotContains(t, d.Context, "gone")
			assert.Equal(t, `2`, string(d.Context["reborn"]))

			if !history {
				assert.Nil(t, d.History)
				assert.Nil(t, d.HistoryCount)
				assert.Equal(t, 0, res.Changes)
				return
			}
			changes, byRev := changesOf(t, st, "default")
			require.Len(t, d.History, len(changes))
			require.NotNil(t, d.HistoryCount)
			assert.Equal(t, len(changes), *d.HistoryCount)
			assert.Equal(t, len(changes), res.Changes)
			for i, c := range changes {
				h := d.History[i]
				assert.Equal(t, c.Revision, h.Revision)
				assert.Equal(t, c.Key, h.Key)
				assert.Equal(t, c.Who, h.Who)
				assert.Equal(t, c.Version, h.Version)
				assert.True(t, c.Time.Equal(h.Timestamp))
				before := "null"
				if c.PrevRev != 0 {
					before = compactJSON(t, byRev[c.PrevRev].Value)
				}
				assert.Equal(t, before, string(h.Before), "before of revision %d", c.Revision)
				if c.Op == ctxd.OpDelete {
					assert.Equal(t, "delete", h.Action)
					assert.Equal(t, "null", string(h.After))
				} else {
					assert.Equal(t, "set", h.Action)
					assert.Equal(t, compactJSON(t, c.Value), string(h.After))
				}
			}
		})
	}
}

// An empty namespace, and one that does not exist, dump as an empty context.
func TestEmptyDumps(t *testing.T) {
	st := openStore(t, bolt.Options{})
	for _, f := range export.Formats {
		out, res := dump(t, st, f, export.Options{Namespace: "nothing-here", Who: "x", History: true})
		assert.Equal(t, 0, res.Keys, f)
		assert.NotEmpty(t, out)
	}
	out, _ := dump(t, st, export.JSON, export.Options{Namespace: "default", History: true})
	d := decodeStrict[jsonDump](t, out)
	assert.Empty(t, d.Context)
	assert.NotNil(t, d.Context)
	assert.NotNil(t, d.History)
	assert.Empty(t, d.History)
}

// SpreadsheetSafe quotes the text cells a spreadsheet would take for a
// formula (a key, a string value, who starting with = + - @, a tab or a
// carriage return) and nothing else: numbers, objects and the other
// columns are as without it, which keeps every cell as stored. Other
// formats refuse it.
func TestCSVDumpSpreadsheetSafe(t *testing.T) {
	st := openStore(t, bolt.Options{})
	put(t, st, "default", "=cmd", `"=1+2"`, "@who")
	put(t, st, "default", "a", `"+x"`, "w")
	put(t, st, "default", "b", `"-2+3"`, "w")
	put(t, st, "default", "c", `"\tx"`, "w")
	put(t, st, "default", "d", `"\rx"`, "w")
	put(t, st, "default", "e", `-5`, "w")
	put(t, st, "default", "f", `{"k":"=1"}`, "w")
	put(t, st, "default", "g", `"plain = text"`, "w")
	rows := func(safe bool) map[string][]string {
		out, _ := dump(t, st, export.CSV, export.Options{Namespace: "default", SpreadsheetSafe: safe})
		all, err := csv.NewReader(bytes.NewReader(out)).ReadAll()
		require.NoError(t, err)
		byKey := map[string][]string{}
		for _, r := range all[1:] {
			byKey[strings.TrimPrefix(r[0], "'")] = r // no key here starts with a quote
		}
		return byKey
	}
	safe, raw := rows(true), rows(false)
	want := map[string][3]string{ // key cell, value cell, who cell
		"=cmd": {"'=cmd", "'=1+2", "'@who"},
		"a":    {"a", "'+x", "w"},
		"b":    {"b", "'-2+3", "w"},
		"c":    {"c", "'\tx", "w"},
		"d":    {"d", "'\rx", "w"},
		"e":    {"e", "-5", "w"},
		"f":    {"f", `{"k":"=1"}`, "w"},
		"g":    {"g", "plain = text", "w"},
	}
	require.Len(t, safe, len(want))
	for key, w := range want {
		row := safe[key]
		require.NotNil(t, row, key)
		assert.Equal(t, w, [3]string{row[0], row[1], row[5]}, key)
		assert.Equal(t, raw[key][2:5], row[2:5], "%s: the other columns are unchanged", key)
		assert.Equal(t, strings.TrimPrefix(w[1], "'"), raw[key][1], "%s: without it the value is as stored", key)
	}

	for _, f := range []export.Format{export.JSON, export.Pretty, export.TXT} {
		var buf bytes.Buffer
		require.NoError(t, st.View(func(v store.View) error {
			_, err := export.Write(&buf, f, v, export.Options{Namespace: "default", SpreadsheetSafe: true})
			assert.ErrorIs(t, err, export.ErrSpreadsheetSafe, f)
			return nil
		}))
		assert.Zero(t, buf.Len(), "%s: nothing written", f)
	}
}

func TestCSVDump(t *testing.T) {
	st, live := populated(t)

	for _, history := range []bool{false, true} {
		t.Run("history="+strconv.FormatBool(history), func(t *testing.T) {
			out, res := dump(t, st, export.CSV, export.Options{Namespace: "default", Who: "tester", History: history})
			assert.Contains(t, string(out), "\r\n", "RFC 4180 line ends")
			rd := csv.NewReader(bytes.NewReader(out))
			rows, err := rd.ReadAll()
			require.NoError(t, err)
			header := []string{"Key", "Value", "Type", "Version", "Revision", "Who", "Updated_At", "Expires_At"}
			if history {
				header = append(header, "Action")
			}
			require.Equal(t, header, rows[0])
			rows = rows[1:]
			require.GreaterOrEqual(t, len(rows), len(live))
			assert.Equal(t, len(live), res.Keys)
			for i, r := range live {
				row := rows[i]
				assert.Equal(t, r.Key, row[0])
				var want string
				typ := "string"
				if !isString(r.Value) {
					want = compactJSON(t, r.Value)
					var v any
					require.NoError(t, json.Unmarshal(r.Value, &v))
					switch v.(type) {
					case nil:
						typ = "null"
					case bool:
						typ = "boolean"
					case float64:
						typ = "number"
					case map[string]any:
						typ = "object"
					case []any:
						typ = "array"
					}
				}
				if typ == "string" {
					require.NoError(t, json.Unmarshal(r.Value, &want))
				}
				assert.Equal(t, want, row[1], r.Key)
				assert.Equal(t, typ, row[2], r.Key)
				assert.Equal(t, strconv.FormatUint(r.Version, 10), row[3])
				assert.Equal(t, strconv.FormatUint(r.ModRev, 10), row[4])
				assert.Equal(t, r.Who, row[5])
				ts, err := time.Parse(time.RFC3339Nano, row[6])
				require.NoError(t, err)
				assert.True(t, r.UpdatedAt.Equal(ts))
				assert.Equal(t, "", row[7], "a key without a ttl has no Expires_At")
				if history {
					assert.Equal(t, "current", row[8])
				}
			}
			if !history {
				assert.Len(t, rows, len(live))
				return
			}
			changes, _ := changesOf(t, st, "default")
			hrows := rows[len(live):]
			require.Len(t, hrows, len(changes))
			for i, c := range changes {
				row := hrows[i]
				assert.Equal(t, c.Key, row[0])
				assert.Equal(t, strconv.FormatUint(c.Revision, 10), row[4])
				if c.Op == ctxd.OpDelete {
					assert.Equal(t, "delete", row[8])
					assert.Equal(t, "", row[1])
					assert.Equal(t, "", row[2])
				} else {
					assert.Equal(t, "set", row[8])
				}
			}
		})
	}
}

func TestTXTDump(t *testing.T) {
	st, live := populated(t)

	out, res := dump(t, st, export.TXT, export.Options{Namespace: "default", Who: "tester", Time: dumpTime})
	lines := strings.Split(strings.TrimSuffix(string(out), "\n"), "\n")
	assert.Equal(t, "# ctxd dump of namespace default at revision "+strconv.FormatUint(res.Revision, 10), lines[0])
	assert.Equal(t, "# taken 2026-03-04T05:06:07.89Z by tester", lines[1])
	assert.Equal(t, "# "+strconv.Itoa(len(live))+" keys", lines[len(lines)-1])
	body := lines[2 : len(lines)-1]
	require.Len(t, body, len(live))
	for i, r := range live {
		key, value, ok := strings.Cut(body[i], "=")
		require.True(t, ok, body[i])
		assert.Equal(t, r.Key, key)
		var s string
		if isString(r.Value) && json.Unmarshal(r.Value, &s) == nil && !strings.ContainsAny(s, "\n\r\t") {
			assert.Equal(t, s, value, r.Key)
		} else {
			assert.Equal(t, compactJSON(t, r.Value), value, r.Key)
		}
	}

	out, res = dump(t, st, export.TXT, export.Options{Namespace: "default", Who: "tester", History: true})
	changes, _ := changesOf(t, st, "default")
	assert.Equal(t, len(changes), res.Changes)
	text := string(out)
	assert.Contains(t, text, "# history, oldest first")
	assert.Contains(t, text, " carol delete gone\n")
	assert.True(t, strings.HasSuffix(text, "# "+strconv.Itoa(len(changes))+" changes\n"))
}

func TestPrettyDump(t *testing.T) {
	st, live := populated(t)

	out, res := dump(t, st, export.Pretty, export.Options{Namespace: "default", Who: "tester", History: true, Time: dumpTime})
	text := string(out)
	for _, want := range []string{
		"Timestamp: 2026-03-04T05:06:07.89Z\n", "Requested by: tester\n", "Namespace: default\n",
		"Revision: " + strconv.FormatUint(res.Revision, 10) + "\n", "Include history: true\n",
		"Total keys: " + strconv.Itoa(len(live)) + "\n", "Change history:\n",
		"carol deleted gone (revision",
	} {
		assert.Contains(t, text, want)
	}
	// Parse the context section back: "key: <indented JSON>" blocks, in key order.
	_, section, ok := strings.Cut(text, "Context data:\n----------------------------------------\n")
	require.True(t, ok)
	section, _, ok = strings.Cut(section, "Total keys:")
	require.True(t, ok)
	for i, r := range live {
		prefix := r.Key + ": "
		require.True(t, strings.HasPrefix(section, prefix), "block %d should be %q: %.60q", i, r.Key, section)
		section = section[len(prefix):]
		dec := json.NewDecoder(strings.NewReader(section))
		var v json.RawMessage
		require.NoError(t, dec.Decode(&v))
		assert.Equal(t, compactJSON(t, r.Value), compactJSON(t, v), r.Key)
		if strings.HasPrefix(strings.TrimSpace(string(r.Value)), "{\"nested") {
			assert.Contains(t, string(v), "\n  \"nested\": {\n    \"a\": [", "values are indented")
		}
		section = section[dec.InputOffset():]
		require.True(t, strings.HasPrefix(section, "\n\n"), "%.40q", section)
		section = section[2:]
	}
	assert.Empty(t, section)
}

// A failing writer stops the dump with its error.
func TestWriteError(t *testing.T) {
	st := openStore(t, bolt.Options{})
	fill(t, st, 2000, 100) // more than the writer's 64 KiB buffer
	boom := errors.New("disk full")
	for _, f := range export.Formats {
		err := st.View(func(v store.View) error {
			_, err := export.Write(failingWriter{after: 1000, err: boom}, f, v, export.Options{Namespace: "default"})
			return err
		})
		require.ErrorIs(t, err, boom, f)
	}
	err := st.View(func(v store.View) error {
		_, err := export.Write(io.Discard, "xml", v, export.Options{Namespace: "default"})
		return err
	})
	require.ErrorIs(t, err, export.ErrUnknownFormat)
}

type failingWriter struct {
	after int
	err   error
}

func (w failingWriter) Write(p []byte) (int, error) {
	if len(p) > w.after {
		return w.after, w.err
	}
	return len(p), nil
}

func TestParseFormat(t *testing.T) {
	for _, tt := range []struct {
		in   string
		want export.Format
		ext  string
	}{{"", export.JSON, ".json"}, {"json", export.JSON, ".json"}, {"JSON", export.JSON, ".json"}, {"pretty", export.Pretty, ".pretty"}, {"csv", export.CSV, ".csv"}, {"Txt", export.TXT, ".txt"}} {
		f, err := export.ParseFormat(tt.in)
		require.NoError(t, err, tt.in)
		assert.Equal(t, tt.want, f)
		assert.Equal(t, tt.ext, f.Ext())
	}
	for _, in := range []string{"xml", "yaml", "js on", "json "} {
		_, err := export.ParseFormat(in)
		require.ErrorIs(t, err, export.ErrUnknownFormat, in)
	}
}

func isString(v []byte) bool {
	return strings.HasPrefix(strings.TrimSpace(string(v)), `"`)
}

// A pretty dump indents a value down to export.PrettyDepth levels: a
// value nested 10,000 levels deep (the deepest a value may be, 60 KB) was
// a 200 MB dump, its indentation growing with the square of its depth; it
// is now its size and a few KB (bytes counted, not time). What it writes
// is streamed: a value whose indented text is many times its size (a wide
// one, PrettyDepth levels down) is never held whole in memory
// (allocations are counted).
func TestPrettyDumpIsBoundedAndStreamed(t *testing.T) {
	st := openStore(t, bolt.Options{})
	const depth = 10000
	deep := strings.Repeat(`{"a":`, depth) + "1" + strings.Repeat("}", depth)
	_, err := st.Put(t.Context(), "default", "deep", json.RawMessage(deep), nil, "t")
	require.NoError(t, err)
	dump := func() (out countingWriter, allocated uint64) {
		var before, after runtime.MemStats
		runtime.GC()
		runtime.ReadMemStats(&before)
		require.NoError(t, st.View(func(v store.View) error {
			_, err := export.Write(&out, export.Pretty, v, export.Options{Namespace: "default"})
			return err
		}))
		runtime.ReadMemStats(&after)
		return out, after.TotalAlloc - before.TotalAlloc
	}
	out, _ := dump()
	t.Logf("a value of %d bytes nested %d deep: a pretty dump of %d bytes", len(deep), depth, out)
	assert.Less(t, int(out), len(deep)+16<<10, "the pretty dump of a deep value")

	wide := strings.Repeat("[", export.PrettyDepth) + strings.Repeat("0,", 100_000) + "0" + strings.Repeat("]", export.PrettyDepth)
	_, err = st.Put(t.Context(), "default", "deep", json.RawMessage(wide), nil, "t")
	require.NoError(t, err)
	out, allocated := dump()
	require.Greater(t, int(out), 30*len(wide), "the indented text of a wide value %d levels down", export.PrettyDepth)
	assert.Less(t, allocated, uint64(out)/8, "allocated while writing %d bytes", int(out))
}

type countingWriter int

func (c *countingWriter) Write(p []byte) (int, error) {
	*c += countingWriter(len(p))
	return len(p), nil
}
