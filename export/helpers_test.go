package export_test

import (
	"bytes"
	"context"
	"encoding/json"
	"strconv"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/framework0/ctxd"
	"github.com/framework0/ctxd/export"
	"github.com/framework0/ctxd/internal/testkit"
	"github.com/framework0/ctxd/store"
	"github.com/framework0/ctxd/store/bolt"
)

var bg = context.Background()

// openStore opens a store in a temp folder, checked and closed when the
// test ends.
func openStore(t testing.TB, opts bolt.Options) *bolt.Store {
	t.Helper()
	return testkit.OpenBolt(t, opts).Store
}

func put(t testing.TB, st *bolt.Store, ns, key, value, who string) ctxd.Record {
	t.Helper()
	rec, err := st.Put(bg, ns, key, json.RawMessage(value), nil, who)
	require.NoError(t, err)
	return rec
}

func del(t testing.TB, st *bolt.Store, ns, key, who string) ctxd.Record {
	t.Helper()
	rec, err := st.Delete(bg, ns, key, nil, who)
	require.NoError(t, err)
	return rec
}

// dump writes a dump of the store's current state.
func dump(t testing.TB, st *bolt.Store, f export.Format, opts export.Options) ([]byte, export.Result) {
	return dumpAt(t, st, 0, f, opts)
}

// dumpAt is dump of the store as it was at revision rev (0: now), through
// export.AtRevision.
func dumpAt(t testing.TB, st *bolt.Store, rev uint64, f export.Format, opts export.Options) ([]byte, export.Result) {
	t.Helper()
	var buf bytes.Buffer
	var res export.Result
	require.NoError(t, st.View(func(v store.View) error {
		var src export.Source = v
		if rev != 0 {
			var err error
			if src, err = export.AtRevision(v, rev); err != nil {
				return err
			}
		}
		var err error
		res, err = export.Write(&buf, f, src, opts)
		return err
	}))
	require.Equal(t, int64(buf.Len()), res.Bytes)
	return buf.Bytes(), res
}

// liveRecords lists every key of ns, as the store answers.
func liveRecords(t testing.TB, st *bolt.Store, ns string) []ctxd.Record {
	t.Helper()
	var out []ctxd.Record
	after := ""
	for {
		page, err := st.List(ns, ctxd.ListOptions{After: after, Limit: ctxd.MaxListLimit})
		require.NoError(t, err)
		out = append(out, page.Records...)
		if page.Next == "" {
			return out
		}
		after = page.Next
	}
}

// sampleValues are values of every JSON type, some with characters that
// need quoting in CSV or escaping in JSON.
var sampleValues = map[string]string{
	"app.config.debug":    `true`,
	"app.config.level":    `3`,
	"app.name":            `"ctxd"`,
	"app.motto":           `"say \"hi\", then\nleave"`,
	"app.spaces":          `"  padded  "`,
	"deploy/prod/version": `"1.4.2"`,
	"float":               `-12.5e3`,
	"nothing":             `null`,
	"list":                `[1, "two", {"three": 3}]`,
	"obj":                 "{\n  \"nested\": {\"a\": [true, false]},\n  \"b\": \"x,y\"\n}",
	"unicode/日本語":         `"émoji 🎉 \u2028"`,
	"empty.string":        `""`,
	"empty.object":        `{}`,
	"comma,key":           `"v"`,
	"quote\"key":          `"v"`,
}

// populate writes sampleValues to ns with a little history: an update, a
// delete and a re-create, and a key in another namespace.
func populate(t testing.TB, st *bolt.Store, ns string) {
	t.Helper()
	for k, v := range sampleValues {
		put(t, st, ns, k, `"old"`, "alice")
		put(t, st, ns, k, v, "bob")
	}
	put(t, st, ns, "gone", `1`, "alice")
	del(t, st, ns, "gone", "carol")
	put(t, st, ns, "reborn", `1`, "alice")
	del(t, st, ns, "reborn", "alice")
	put(t, st, ns, "reborn", `2`, "dave")
	put(t, st, "other", "not.dumped", `1`, "alice")
}

// populated opens a store, populates "default" and returns the store and
// the namespace's live records.
func populated(t testing.TB) (*bolt.Store, []ctxd.Record) {
	t.Helper()
	st := openStore(t, bolt.Options{})
	populate(t, st, "default")
	return st, liveRecords(t, st, "default")
}

// fill writes n keys of "default" with small object values (some 60
// bytes), batch per transaction (at most the store's max_txn_ops).
func fill(t testing.TB, st *bolt.Store, n, batch int) {
	t.Helper()
	fillTTL(t, st, n, batch, 0)
}

// fillTTL is fill with every key put with ttl (0: none).
func fillTTL(t testing.TB, st *bolt.Store, n, batch int, ttl time.Duration) {
	t.Helper()
	var writes []ctxd.Write
	for i := range n {
		v, _ := json.Marshal(map[string]any{"id": i, "name": "item-" + strconv.Itoa(i), "tags": []string{"a", "b"}, "ok": i%2 == 0})
		writes = append(writes, ctxd.Write{Namespace: "default", Key: "app/item/" + strconv.Itoa(i), Op: ctxd.OpPut, Value: v, Who: "bench", TTL: ttl})
		if len(writes) == batch || i == n-1 {
			_, err := st.Txn(bg, writes)
			require.NoError(t, err)
			writes = writes[:0]
		}
	}
}

// compactJSON returns v compacted, to compare JSON values.
func compactJSON(t testing.TB, v []byte) string {
	t.Helper()
	var b bytes.Buffer
	require.NoError(t, json.Compact(&b, v), "value %q", v)
	return b.String()
}

var dumpTime = time.Date(2026, 3, 4, 5, 6, 7, 890000000, time.UTC)
