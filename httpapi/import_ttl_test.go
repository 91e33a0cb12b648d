package httpapi_test

import (
	"encoding/json"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/framework0/ctxd"
	"github.com/framework0/ctxd/httpapi"
	"github.com/framework0/ctxd/store/bolt"
)

// An export carries each expiring key's deadline, and an import into a
// fresh server puts the key with the time left as its ttl: the deadline
// survives the move (exactly up to the time the import took: it is never
// earlier, and later by at most the time between the request and its
// commit). A key without a ttl stays permanent.
func TestExportImportKeepsDeadlines(t *testing.T) {
	from := newEnv(t, envOptions{})
	r := from.do(http.MethodPut, keyPath("default", "run/lock")+"?ttl=1h", `"w7"`)
	require.Equal(t, http.StatusOK, r.status, string(r.body))
	lock := decode[ctxd.Record](t, r)
	from.put("perm", `1`)

	r = from.do(http.MethodGet, "/v1/ns/default/export", "")
	require.Equal(t, http.StatusOK, r.status)
	var dump struct {
		ExpiresAt map[string]time.Time `json:"expires_at"`
	}
	require.NoError(t, json.Unmarshal(r.body, &dump))
	require.Equal(t, map[string]time.Time{"run/lock": lock.ExpiresAt}, normalize(dump.ExpiresAt), "%s", r.body)

	to := newEnv(t, envOptions{})
	sent := time.Now()
	r = to.do(http.MethodPost, "/v1/ns/copy/import", string(r.body))
	require.Equal(t, http.StatusOK, r.status, string(r.body))
	assert.Equal(t, httpapi.ImportResult{Namespace: "copy", Imported: 2, Revision: to.revision()}, decode[httpapi.ImportResult](t, r))

	got := decode[ctxd.Record](t, to.do(http.MethodGet, keyPath("copy", "run/lock"), ""))
	require.False(t, got.ExpiresAt.IsZero(), "the imported key expires")
	assert.False(t, got.ExpiresAt.Before(lock.ExpiresAt), "never earlier: %s < %s", got.ExpiresAt, lock.ExpiresAt)
	late := got.ExpiresAt.Sub(lock.ExpiresAt)
	assert.LessOrEqual(t, late, got.UpdatedAt.Sub(sent), "later by at most the import's own time")
	perm := decode[ctxd.Record](t, to.do(http.MethodGet, keyPath("copy", "perm"), ""))
	assert.True(t, perm.ExpiresAt.IsZero(), "a permanent key stays permanent")
}

func normalize(m map[string]time.Time) map[string]time.Time {
	out := map[string]time.Time{}
	for k, v := range m {
		out[k] = v.UTC().Round(0)
	}
	return out
}

// A key whose deadline in the dump has passed is skipped and counted: a
// live key of that name in the namespace is left alone. A deadline closer
// than limits.min_ttl (an hour here) is kept as is (the ttl is what
// remains, not a client's choice). Bad deadlines are a 400 that writes
// nothing.
func TestImportDeadlines(t *testing.T) {
	e := newEnv(t, envOptions{store: bolt.Options{Limits: ctxd.Limits{MinTTL: time.Hour}}})
	live := e.do(http.MethodPut, keyPath("ns1", "old"), `"live"`)
	require.Equal(t, http.StatusOK, live.status)
	past := time.Now().Add(-time.Minute).UTC().Format(time.RFC3339Nano)
	near := time.Now().Add(time.Minute).UTC()

	body := `{"context":{"old":"stale","new":1,"near":2},"expires_at":{"old":"` + past + `","near":"` + near.Format(time.RFC3339Nano) + `"}}`
	r := e.do(http.MethodPost, "/v1/ns/ns1/import", body)
	require.Equal(t, http.StatusOK, r.status, string(r.body))
	res := decode[httpapi.ImportResult](t, r)
	assert.Equal(t, 2, res.Imported)
	assert.Equal(t, 1, res.SkippedExpired)
	old := decode[ctxd.Record](t, e.do(http.MethodGet, keyPath("ns1", "old"), ""))
	assert.Equal(t, `"live"`, string(old.Value), "the expired key of the dump did not replace the live one")
	assert.Equal(t, uint64(1), old.Version)
	got := decode[ctxd.Record](t, e.do(http.MethodGet, keyPath("ns1", "near"), ""))
	assert.False(t, got.ExpiresAt.Before(near), "deadline %s kept, %s", got.ExpiresAt, near)
	assert.Less(t, got.ExpiresAt.Sub(got.UpdatedAt), time.Hour, "the ttl is below limits.min_ttl, not raised to it")
	r = e.do(http.MethodPut, keyPath("ns1", "near")+"?ttl=1m", `3`)
	requireError(t, r, http.StatusBadRequest, "bad_request") // control: a client's ttl below min_ttl is refused

	// Negative control: without expires_at the same key is put.
	r = e.do(http.MethodPost, "/v1/ns/ns2/import", `{"context":{"old":"stale"}}`)
	require.Equal(t, http.StatusOK, r.status, string(r.body))
	assert.Equal(t, 0, decode[httpapi.ImportResult](t, r).SkippedExpired)

	rev := e.revision()
	far := time.Now().Add(9000 * time.Hour).UTC().Format(time.RFC3339Nano)
	for name, body := range map[string]string{
		"key not in context": `{"context":{"a":1},"expires_at":{"b":"` + far + `"}}`,
		"not a time":         `{"context":{"a":1},"expires_at":{"a":"tomorrow"}}`,
		"not an object":      `{"context":{"a":1},"expires_at":"` + far + `"}`,
		"beyond max_ttl":     `{"context":{"a":1},"expires_at":{"a":"` + far + `"}}`,
		"twice":              `{"context":{"a":1},"expires_at":{"a":"` + far + `","a":"` + far + `"}}`,
		"centuries ahead":    `{"context":{"a":1},"expires_at":{"a":"2999-01-01T00:00:00Z"}}`,
	} {
		t.Run(name, func(t *testing.T) {
			r := e.do(http.MethodPost, "/v1/ns/bad/import", body)
			requireError(t, r, http.StatusBadRequest, "bad_request")
			if name == "key not in context" {
				assert.True(t, strings.Contains(string(r.body), `\"b\"`), "%s", r.body)
			}
			if name == "beyond max_ttl" {
				// Which of a dump's keys: the ttl is the import's, not the client's.
				assert.Contains(t, string(r.body), "bad/a", "the message names the key")
			}
			if name == "centuries ahead" {
				assert.Contains(t, string(r.body), "2999-01-01T00:00:00Z, is too far ahead", "a deadline, not an overflowed ttl")
			}
		})
	}
	assert.Equal(t, rev, e.revision(), "nothing was written")
}
