package export_test

import (
	"bytes"
	"encoding/csv"
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/framework0/ctxd"
	"github.com/framework0/ctxd/export"
	"github.com/framework0/ctxd/store/bolt"
)

// putTTL puts key with a ttl (0: permanent) and returns its record.
func putTTL(t testing.TB, st *bolt.Store, key, value string, ttl time.Duration) ctxd.Record {
	t.Helper()
	_, err := st.Txn(bg, []ctxd.Write{{Namespace: "default", Key: key, Op: ctxd.OpPut, Value: json.RawMessage(value), Who: "t", TTL: ttl}})
	require.NoError(t, err)
	rec, err := st.Get("default", key)
	require.NoError(t, err)
	return rec
}

// Every format carries each expiring key's deadline, and only theirs: JSON
// in "expires_at" (read back by ReadJSON), CSV in Expires_At, TXT in a
// comment under the key, pretty next to the value; history entries carry
// the deadline their put set.
func TestDumpsCarryDeadlines(t *testing.T) {
	st := openStore(t, bolt.Options{})
	lock := putTTL(t, st, "run/lock", `"w7"`, time.Hour)
	hb := putTTL(t, st, "worker/hb", `{"n":1}`, 2*time.Hour)
	putTTL(t, st, "perm", `1`, 0)
	require.False(t, lock.ExpiresAt.IsZero())
	want := map[string]time.Time{"run/lock": lock.ExpiresAt, "worker/hb": hb.ExpiresAt}

	out, _ := dump(t, st, export.JSON, export.Options{Namespace: "default", History: true})
	d := decodeStrict[jsonDump](t, out)
	require.Len(t, d.ExpiresAt, 2, "%s", out)
	for k, at := range want {
		assert.True(t, at.Equal(d.ExpiresAt[k]), "%s: %s, want %s", k, d.ExpiresAt[k], at)
	}
	for _, h := range d.History {
		assert.True(t, want[h.Key].Equal(h.ExpiresAt), "history of %s", h.Key)
	}
	read := map[string]time.Time{}
	require.NoError(t, export.ReadJSON(bytes.NewReader(out), func(string, json.RawMessage) error { return nil },
		func(key string, at time.Time) error { read[key] = at; return nil }))
	require.Len(t, read, 2)
	for k, at := range want {
		assert.True(t, at.Equal(read[k]), k)
	}

	out, _ = dump(t, st, export.CSV, export.Options{Namespace: "default"})
	rows, err := csv.NewReader(bytes.NewReader(out)).ReadAll()
	require.NoError(t, err)
	require.Len(t, rows, 4)
	assert.Equal(t, "Expires_At", rows[0][7])
	for _, row := range rows[1:] {
		if row[0] == "perm" {
			assert.Equal(t, "", row[7])
			continue
		}
		at, err := time.Parse(time.RFC3339Nano, row[7])
		require.NoError(t, err, row)
		assert.True(t, want[row[0]].Equal(at), row[0])
	}

	out, _ = dump(t, st, export.TXT, export.Options{Namespace: "default"})
	txt := string(out)
	assert.Contains(t, txt, "run/lock=w7\n# expires_at "+lock.ExpiresAt.UTC().Format(time.RFC3339Nano)+"\n")
	assert.Contains(t, txt, "worker/hb={\"n\":1}\n# expires_at "+hb.ExpiresAt.UTC().Format(time.RFC3339Nano)+"\n")
	assert.Equal(t, 2, strings.Count(txt, "# expires_at "), "the permanent key has none: %s", txt)

	out, _ = dump(t, st, export.Pretty, export.Options{Namespace: "default"})
	assert.Contains(t, string(out), "(expires at "+lock.ExpiresAt.UTC().Format(time.RFC3339Nano)+")")
	assert.Equal(t, 2, strings.Count(string(out), "(expires at "))

	// Negative control: a put without ttl makes the key permanent, and
	// the deadline leaves every format.
	before := st.Revision()
	putTTL(t, st, "run/lock", `"w8"`, 0)
	putTTL(t, st, "worker/hb", `{"n":2}`, 0)
	for _, f := range export.Formats {
		out, _ := dump(t, st, f, export.Options{Namespace: "default"})
		assert.NotContains(t, string(out), lock.ExpiresAt.UTC().Format(time.RFC3339Nano), f)
	}
	out, _ = dump(t, st, export.JSON, export.Options{Namespace: "default"})
	assert.Nil(t, decodeStrict[jsonDump](t, out).ExpiresAt, "no expiring key: no expires_at member")

	// At the earlier revision the deadlines are back (AtRevision reads
	// the deadline of the put in effect then).
	out, _ = dumpAt(t, st, before, export.JSON, export.Options{Namespace: "default"})
	d = decodeStrict[jsonDump](t, out)
	require.Len(t, d.ExpiresAt, 2, "%s", out)
	assert.True(t, lock.ExpiresAt.Equal(d.ExpiresAt["run/lock"]))
}

// A dump at an earlier revision shows the deadline of the put in effect
// then, also when that put is still the key's current one and a keepalive
// moved its deadline since (a keepalive is not in history): the export
// agrees with GET ?rev=. It showed the keepalive's.
func TestDumpAtARevisionBeforeAKeepalive(t *testing.T) {
	st := openStore(t, bolt.Options{})
	lease := putTTL(t, st, "lease", `1`, time.Hour)
	at := st.Revision()
	putTTL(t, st, "other", `2`, 0) // a later revision
	renewed, err := st.KeepAlive(bg, "default", "lease", 3*time.Hour, nil)
	require.NoError(t, err)
	require.True(t, renewed.ExpiresAt.After(lease.ExpiresAt.Add(time.Hour)))

	out, _ := dumpAt(t, st, at, export.JSON, export.Options{Namespace: "default"})
	d := decodeStrict[jsonDump](t, out)
	assert.True(t, lease.ExpiresAt.Equal(d.ExpiresAt["lease"]), "the put's deadline at its revision, not the keepalive's: %s", out)
	old, err := st.GetAt("default", "lease", at)
	require.NoError(t, err)
	assert.True(t, old.ExpiresAt.Equal(d.ExpiresAt["lease"]), "as GET ?rev= reads it")

	out, _ = dump(t, st, export.JSON, export.Options{Namespace: "default"})
	d = decodeStrict[jsonDump](t, out)
	assert.True(t, renewed.ExpiresAt.Equal(d.ExpiresAt["lease"]), "now: the keepalive's deadline")
}

func TestReadJSONBadDeadlines(t *testing.T) {
	for name, in := range map[string]string{
		"not an object": `{"context":{"a":1},"expires_at":[1]}`,
		"not a string":  `{"context":{"a":1},"expires_at":{"a":5}}`,
		"not a time":    `{"context":{"a":1},"expires_at":{"a":"soon"}}`,
		"twice":         `{"context":{"a":1},"expires_at":{},"expires_at":{}}`,
		"truncated":     `{"context":{"a":1},"expires_at":{"a":"2026-01-01T00:00:00Z"`,
		"nested":        `{"context":{"a":1},"expires_at":{"a":{"b":"x"}}}`,
	} {
		t.Run(name, func(t *testing.T) {
			err := export.ReadJSON(strings.NewReader(in), func(string, json.RawMessage) error { return nil },
				func(string, time.Time) error { return nil })
			require.ErrorIs(t, err, export.ErrBadDump)
		})
	}
}
