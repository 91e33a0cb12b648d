package httpapi_test

import (
	"fmt"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/framework0/ctxd"
	"github.com/framework0/ctxd/httpapi"
)

func TestPutGetDelete(t *testing.T) {
	e := newEnv(t, envOptions{})

	before := time.Now().Add(-time.Second)
	r := e.do(http.MethodPut, keyPath("default", "app.config"), `{"debug": true, "level":3}`)
	require.Equal(t, http.StatusOK, r.status, string(r.body))
	assert.Equal(t, "application/json", r.header.Get("Content-Type"))
	assert.Equal(t, `"1"`, r.header.Get("ETag"))
	rec := decode[ctxd.Record](t, r)
	assert.Equal(t, "default", rec.Namespace)
	assert.Equal(t, "app.config", rec.Key)
	assert.Equal(t, `{"debug":true,"level":3}`, string(rec.Value), "the bytes sent are stored compact")
	assert.Equal(t, uint64(1), rec.Version)
	assert.Equal(t, uint64(1), rec.CreateRev)
	assert.Equal(t, uint64(1), rec.ModRev)
	assert.Equal(t, "api", rec.Who)
	assert.WithinDuration(t, time.Now(), rec.UpdatedAt, time.Minute)
	assert.True(t, rec.UpdatedAt.After(before))

	r = e.do(http.MethodGet, keyPath("default", "app.config"), "")
	require.Equal(t, http.StatusOK, r.status, string(r.body))
	assert.Equal(t, `"1"`, r.header.Get("ETag"))
	assert.Equal(t, rec, decode[ctxd.Record](t, r))

	r = e.do(http.MethodPut, keyPath("default", "app.config"), `"v2"`)
	require.Equal(t, http.StatusOK, r.status, string(r.body))
	assert.Equal(t, `"2"`, r.header.Get("ETag"))
	rec2 := decode[ctxd.Record](t, r)
	assert.Equal(t, uint64(2), rec2.Version)
	assert.Equal(t, uint64(1), rec2.CreateRev)
	assert.Equal(t, uint64(2), rec2.ModRev)

	// HEAD answers like GET, without a body.
	r = e.do(http.MethodHead, keyPath("default", "app.config"), "")
	require.Equal(t, http.StatusOK, r.status)
	assert.Equal(t, `"2"`, r.header.Get("ETag"))
	assert.Empty(t, r.body)

	r = e.do(http.MethodDelete, keyPath("default", "app.config"), "")
	require.Equal(t, http.StatusOK, r.status, string(r.body))
	del := decode[ctxd.Record](t, r)
	assert.Equal(t, "null", string(del.Value))
	assert.Equal(t, uint64(2), del.Version, "the deleted version")
	assert.Equal(t, uint64(3), del.ModRev, "the delete's revision")

	requireError(t, e.do(http.MethodGet, keyPath("default", "app.config"), ""), http.StatusNotFound, "not_found")
	assert.Equal(t, http.StatusNotFound, e.do(http.MethodHead, keyPath("default", "app.config"), "").status)
	requireError(t, e.do(http.MethodDelete, keyPath("default", "app.config"), ""), http.StatusNotFound, "not_found")

	// A later put starts the key's life again at version 1.
	rec = e.put("app.config", `1`)
	assert.Equal(t, uint64(1), rec.Version)
	assert.Equal(t, uint64(4), rec.CreateRev)
	assert.Equal(t, uint64(4), e.revision())
}

func TestWho(t *testing.T) {
	e := newEnv(t, envOptions{})
	tests := []struct {
		name  string
		query string
		hdr   []string
		want  string
	}{
		{"default", "", nil, "api"},
		{"query", "?who=alice", nil, "alice"},
		{"header", "", []string{"X-Ctxd-Who", "bob"}, "bob"},
		{"query wins over header", "?who=alice", []string{"X-Ctxd-Who", "bob"}, "alice"},
		{"empty query falls back to header", "?who=", []string{"X-Ctxd-Who", "bob"}, "bob"},
		{"escaped", "?who=deploy%20bot%2F1", nil, "deploy bot/1"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := e.do(http.MethodPut, keyPath("default", "who")+tt.query, `1`, tt.hdr...)
			require.Equal(t, http.StatusOK, r.status, string(r.body))
			assert.Equal(t, tt.want, decode[ctxd.Record](t, r).Who)

			r = e.do(http.MethodDelete, keyPath("default", "who")+tt.query, ``, tt.hdr...)
			require.Equal(t, http.StatusOK, r.status, string(r.body))
			assert.Equal(t, tt.want, decode[ctxd.Record](t, r).Who, "delete records who too")
		})
	}
	// A who with a control character or not UTF-8 is refused, as such a
	// key is, and nothing is written.
	rev := e.revision()
	for _, q := range []string{"?who=a%00b", "?who=%1B%5B2J", "?who=%FF"} {
		ae := requireError(t, e.do(http.MethodPut, keyPath("default", "who")+q, `1`), http.StatusBadRequest, "bad_request")
		assert.Contains(t, ae.Error.Message, "who ", q)
	}
	assert.Equal(t, rev, e.revision(), "refused writes change nothing")

	// Where no author is taken, none is checked: the probes (a load
	// balancer's header must not fail them), and /ctx/history, whose who
	// is a filter.
	long := strings.Repeat("w", 300)
	for _, path := range []string{"/healthz", "/readyz"} {
		assert.Equal(t, http.StatusOK, e.do(http.MethodGet, path, "", "X-Ctxd-Who", long).status, path)
	}
	e.api.Skip("/ctx")
	r := e.do(http.MethodGet, "/ctx/history?who="+long, "")
	require.Equal(t, http.StatusOK, r.status, string(r.body))
	assert.Contains(t, string(r.body), `"filtered_entries":0`)
	assert.Equal(t, http.StatusOK, e.do(http.MethodGet, "/ctx/history?who=%01", "").status)
}

func TestKeysRoundTrip(t *testing.T) {
	e := newEnv(t, envOptions{})
	keys := []string{
		"app.config.debug",
		"deploy/prod/version",
		"trailing/slash/",
		"/leading",
		"a//b",
		"history",
		"a/history", // sent as a%2Fhistory: a key, not the history route
		"dots/../and/./more",
		"..",
		"percent%41literal",
		"with space+plus",
		"question?hash#amp&eq=",
		"ünïcødé/日本語",
		"emoji 🎉",
		strings.Repeat("k", ctxd.MaxKeyBytes),
	}
	for i, key := range keys {
		t.Run(key, func(t *testing.T) {
			value := strconv.Itoa(i)
			rec := e.put(key, value)
			assert.Equal(t, key, rec.Key)

			r := e.do(http.MethodGet, keyPath("default", key), "")
			require.Equal(t, http.StatusOK, r.status, string(r.body))
			got := decode[ctxd.Record](t, r)
			assert.Equal(t, key, got.Key)
			assert.Equal(t, value, string(got.Value))

			r = e.do(http.MethodGet, "/v1/ns/default/keys?limit=1&prefix="+urlQueryEscape(key), "")
			require.Equal(t, http.StatusOK, r.status, string(r.body))
			page := decode[ctxd.ListPage](t, r)
			require.NotEmpty(t, page.Records)
			assert.Equal(t, key, page.Records[0].Key)
		})
	}
}

func TestRawSlashesInKey(t *testing.T) {
	e := newEnv(t, envOptions{})
	// Raw slashes are accepted and mean the same key as %2F.
	r := e.do(http.MethodPut, "/v1/ns/default/keys/deploy/prod/version", `"1.2"`)
	require.Equal(t, http.StatusOK, r.status, string(r.body))
	assert.Equal(t, "deploy/prod/version", decode[ctxd.Record](t, r).Key)

	r = e.do(http.MethodGet, "/v1/ns/default/keys/deploy%2Fprod%2Fversion", "")
	require.Equal(t, http.StatusOK, r.status, string(r.body))
	assert.Equal(t, `"1.2"`, string(decode[ctxd.Record](t, r).Value))

	r = e.do(http.MethodGet, "/v1/ns/default/keys/deploy/prod%2Fversion", "")
	require.Equal(t, http.StatusOK, r.status, string(r.body))

	r = e.do(http.MethodDelete, "/v1/ns/default/keys/deploy/prod/version", "")
	require.Equal(t, http.StatusOK, r.status, string(r.body))
	requireError(t, e.do(http.MethodGet, "/v1/ns/default/keys/deploy%2Fprod%2Fversion", ""), http.StatusNotFound, "not_found")
}

// Every route unescapes its path segments once, as the client sent them:
// "%2564efault" is the namespace "%64efault" (refused: '%' is not allowed
// in a namespace), never "default" (snapshot ids: TestSnapshotLifecycle).
// Before, Echo routed on the unescaped path when the client's was
// in the default escaping, and the namespace and snapshot routes that
// unescape their parameter unescaped it a second time.
func TestPathSegmentsAreUnescapedOnce(t *testing.T) {
	e := newEnv(t, envOptions{})
	e.put("a", `1`)
	require.Equal(t, http.StatusOK, e.do(http.MethodGet, "/v1/ns/%64efault/keys", "").status, "escaped once")
	for _, path := range []string{
		"/v1/ns/%2564efault/keys",
		"/v1/ns/%2564efault/keys?count=true",
		"/v1/ns/%2564efault/export",
		"/v1/ns/%2564efault/keys/a",
	} {
		r := e.do(http.MethodGet, path, "")
		requireError(t, r, http.StatusBadRequest, "bad_request")
		assert.Contains(t, string(r.body), `namespace \"%64efault\"`, path)
	}
}

func TestHistorySuffix(t *testing.T) {
	e := newEnv(t, envOptions{})
	e.put("a", `"a1"`)
	e.put("a/history", `"the key"`)

	// %2Fhistory is part of the key.
	r := e.do(http.MethodGet, "/v1/ns/default/keys/a%2Fhistory", "")
	require.Equal(t, http.StatusOK, r.status, string(r.body))
	rec := decode[ctxd.Record](t, r)
	assert.Equal(t, "a/history", rec.Key)
	assert.Equal(t, `"the key"`, string(rec.Value))

	// A raw /history suffix on GET is the history route.
	r = e.do(http.MethodGet, "/v1/ns/default/keys/a/history", "")
	require.Equal(t, http.StatusOK, r.status, string(r.body))
	h := decode[ctxd.HistoryPage](t, r)
	require.Len(t, h.Changes, 1)
	assert.Equal(t, "a", h.Changes[0].Key)

	// History of the key "a/history" itself.
	r = e.do(http.MethodGet, "/v1/ns/default/keys/a%2Fhistory/history", "")
	require.Equal(t, http.StatusOK, r.status, string(r.body))
	h = decode[ctxd.HistoryPage](t, r)
	require.Len(t, h.Changes, 1)
	assert.Equal(t, "a/history", h.Changes[0].Key)

	// On PUT and DELETE a raw /history suffix is just part of the key.
	r = e.do(http.MethodPut, "/v1/ns/default/keys/b/history", `2`)
	require.Equal(t, http.StatusOK, r.status, string(r.body))
	assert.Equal(t, "b/history", decode[ctxd.Record](t, r).Key)
	r = e.do(http.MethodDelete, "/v1/ns/default/keys/b/history", ``)
	require.Equal(t, http.StatusOK, r.status, string(r.body))
	assert.Equal(t, "b/history", decode[ctxd.Record](t, r).Key)

	// A key named "history" is a key.
	e.put("history", `3`)
	r = e.do(http.MethodGet, "/v1/ns/default/keys/history", "")
	require.Equal(t, http.StatusOK, r.status, string(r.body))
	assert.Equal(t, "history", decode[ctxd.Record](t, r).Key)

	// "/history" with nothing before it names no key.
	requireError(t, e.do(http.MethodGet, "/v1/ns/default/keys//history", ""), http.StatusBadRequest, "bad_request")
}

func TestHistory(t *testing.T) {
	e := newEnv(t, envOptions{})
	var revs []uint64
	for i := 1; i <= 5; i++ {
		revs = append(revs, e.put("cfg/x", strconv.Itoa(i)).ModRev)
		e.put("other", strconv.Itoa(i)) // interleaved changes of another key
	}
	r := e.do(http.MethodDelete, keyPath("default", "cfg/x")+"?who=cleaner", "")
	require.Equal(t, http.StatusOK, r.status, string(r.body))
	revs = append(revs, decode[ctxd.Record](t, r).ModRev)
	revs = append(revs, e.put("cfg/x", `"again"`).ModRev)

	// One page with everything, newest first.
	r = e.do(http.MethodGet, keyPath("default", "cfg/x")+"/history", "")
	require.Equal(t, http.StatusOK, r.status, string(r.body))
	all := decode[ctxd.HistoryPage](t, r)
	assert.False(t, hasField(t, r, "next"), "one page: no next")
	require.Len(t, all.Changes, 7)
	for i, ch := range all.Changes {
		assert.Equal(t, revs[len(revs)-1-i], ch.Revision)
		assert.Equal(t, "cfg/x", ch.Key)
		assert.Equal(t, "default", ch.Namespace)
	}
	assert.Equal(t, ctxd.OpPut, all.Changes[0].Op)
	assert.Equal(t, `"again"`, string(all.Changes[0].Value))
	assert.Equal(t, uint64(1), all.Changes[0].Version)
	assert.Equal(t, ctxd.OpDelete, all.Changes[1].Op)
	assert.Equal(t, "null", string(all.Changes[1].Value))
	assert.Equal(t, "cleaner", all.Changes[1].Who)
	assert.Equal(t, uint64(5), all.Changes[1].Version)
	assert.Equal(t, `5`, string(all.Changes[2].Value))
	assert.Equal(t, revs[3], all.Changes[2].PrevRev, "the put before it")
	assert.Equal(t, uint64(0), all.Changes[6].PrevRev)

	// Pages of 2, following next.
	var paged []ctxd.Change
	path := keyPath("default", "cfg/x") + "/history?limit=2"
	for pages := 0; ; pages++ {
		require.Less(t, pages, 10, "paging does not end")
		r = e.do(http.MethodGet, path, "")
		require.Equal(t, http.StatusOK, r.status, string(r.body))
		p := decode[ctxd.HistoryPage](t, r)
		require.LessOrEqual(t, len(p.Changes), 2)
		paged = append(paged, p.Changes...)
		if !hasField(t, r, "next") {
			break
		}
		path = fmt.Sprintf("%s/history?limit=2&before=%d", keyPath("default", "cfg/x"), p.Next)
	}
	assert.Equal(t, all.Changes, paged)

	// A limit too large for 64 bits is the maximum, as a list's.
	r = e.doUnchecked(http.MethodGet, keyPath("default", "cfg/x")+"/history?limit=18446744073709551616", "")
	require.Equal(t, http.StatusOK, r.status, string(r.body))
	assert.Equal(t, all.Changes, decode[ctxd.HistoryPage](t, r).Changes)

	requireError(t, e.do(http.MethodGet, keyPath("default", "never")+"/history", ""), http.StatusNotFound, "not_found")
}

func TestList(t *testing.T) {
	e := newEnv(t, envOptions{})

	r := e.do(http.MethodGet, "/v1/ns/default/keys", "")
	require.Equal(t, http.StatusOK, r.status, string(r.body))
	assert.JSONEq(t, `{"keys":[]}`, string(r.body), "an empty list is [], not null")

	var want []string
	for i := range 25 {
		k := fmt.Sprintf("p/%02d", i)
		want = append(want, k)
		e.put(k, strconv.Itoa(i))
	}
	e.put("q", `"not in prefix"`)
	e.put("o", `"not in prefix"`)

	var got []string
	path := "/v1/ns/default/keys?prefix=p%2F&limit=10"
	pages := 0
	for {
		require.Less(t, pages, 10, "paging does not end")
		pages++
		r = e.do(http.MethodGet, path, "")
		require.Equal(t, http.StatusOK, r.status, string(r.body))
		p := decode[ctxd.ListPage](t, r)
		require.LessOrEqual(t, len(p.Records), 10)
		for _, rec := range p.Records {
			got = append(got, rec.Key)
			assert.Equal(t, "default", rec.Namespace)
		}
		if !hasField(t, r, "next") {
			break
		}
		path = "/v1/ns/default/keys?prefix=p%2F&limit=10&after=" + urlQueryEscape(p.Next)
	}
	assert.Equal(t, 3, pages)
	assert.Equal(t, want, got)

	// Without a prefix every key is listed, in byte order.
	r = e.do(http.MethodGet, "/v1/ns/default/keys?limit=1000", "")
	require.Equal(t, http.StatusOK, r.status, string(r.body))
	p := decode[ctxd.ListPage](t, r)
	require.Len(t, p.Records, 27)
	assert.Equal(t, "o", p.Records[0].Key)
	assert.Equal(t, "q", p.Records[26].Key)
	assert.False(t, hasField(t, r, "next"), "the last page has no next")

	// A limit above the maximum is capped, not refused: one too large for
	// 64 bits as well (it was a 400).
	r = e.do(http.MethodGet, "/v1/ns/default/keys?limit=1000000", "")
	require.Equal(t, http.StatusOK, r.status, string(r.body))
	for _, limit := range []string{"18446744073709551616", strings.Repeat("9", 40)} {
		r = e.doUnchecked(http.MethodGet, "/v1/ns/default/keys?limit="+limit, "")
		require.Equal(t, http.StatusOK, r.status, "limit=%s: %s", limit, r.body)
		assert.Len(t, decode[ctxd.ListPage](t, r).Records, 27, "limit=%s", limit)
	}

	// A namespace nobody wrote to lists nothing.
	r = e.do(http.MethodGet, "/v1/ns/empty/keys", "")
	require.Equal(t, http.StatusOK, r.status, string(r.body))
	assert.JSONEq(t, `{"keys":[]}`, string(r.body))
}

func TestNamespaces(t *testing.T) {
	e := newEnv(t, envOptions{})
	r := e.do(http.MethodGet, "/v1/ns", "")
	require.Equal(t, http.StatusOK, r.status, string(r.body))
	assert.JSONEq(t, `{"namespaces":[{"name":"default","keys":0}]}`, string(r.body))

	e.put("a", "1")
	for _, k := range []string{"x", "y"} {
		r = e.do(http.MethodPut, keyPath("team-a.prod_1", k), "1")
		require.Equal(t, http.StatusOK, r.status, string(r.body))
		assert.Equal(t, "team-a.prod_1", decode[ctxd.Record](t, r).Namespace)
	}
	r = e.do(http.MethodGet, keyPath("team-a.prod_1", "x"), "")
	require.Equal(t, http.StatusOK, r.status, string(r.body))
	requireError(t, e.do(http.MethodGet, keyPath("default", "x"), ""), http.StatusNotFound, "not_found")

	r = e.do(http.MethodGet, "/v1/ns", "")
	require.Equal(t, http.StatusOK, r.status, string(r.body))
	assert.JSONEq(t, `{"namespaces":[{"name":"default","keys":1},{"name":"team-a.prod_1","keys":2}]}`, string(r.body))

	r = e.do(http.MethodGet, "/v1/ns/team-a.prod_1/keys", "")
	require.Equal(t, http.StatusOK, r.status, string(r.body))
	assert.Len(t, decode[ctxd.ListPage](t, r).Records, 2)
}

func TestPointInTime(t *testing.T) {
	e := newEnv(t, envOptions{})
	r1 := e.put("k", `"one"`).ModRev
	e.put("other", `0`)
	r2 := e.put("k", `"two"`).ModRev
	r := e.do(http.MethodDelete, keyPath("default", "k"), "")
	require.Equal(t, http.StatusOK, r.status, string(r.body))
	r3 := decode[ctxd.Record](t, r).ModRev

	get := func(rev uint64) response {
		return e.do(http.MethodGet, fmt.Sprintf("%s?rev=%d", keyPath("default", "k"), rev), "")
	}
	r = get(r1)
	require.Equal(t, http.StatusOK, r.status, string(r.body))
	assert.Equal(t, `"one"`, string(decode[ctxd.Record](t, r).Value))
	assert.Equal(t, `"1"`, r.header.Get("ETag"))
	r = get(r1 + 1)
	require.Equal(t, http.StatusOK, r.status, string(r.body))
	assert.Equal(t, `"one"`, string(decode[ctxd.Record](t, r).Value))
	r = get(r2)
	require.Equal(t, http.StatusOK, r.status, string(r.body))
	assert.Equal(t, `"two"`, string(decode[ctxd.Record](t, r).Value))
	assert.Equal(t, `"2"`, r.header.Get("ETag"))
	requireError(t, get(r3), http.StatusNotFound, "not_found")
	requireError(t, get(r3+1), http.StatusBadRequest, "future_revision")
	requireError(t, e.do(http.MethodGet, keyPath("default", "nope")+"?rev=1", ""), http.StatusNotFound, "not_found")

	for _, bad := range []string{"0", "-1", "abc", "1.5", "", "+1", " 1", "1e3", "18446744073709551616"} {
		t.Run("rev="+bad, func(t *testing.T) {
			r := e.do(http.MethodGet, keyPath("default", "k")+"?rev="+urlQueryEscape(bad), "")
			requireError(t, r, http.StatusBadRequest, "bad_request")
		})
	}

	require.NoError(t, e.st.Compact(bg, r2))
	ae := requireError(t, get(r1), http.StatusGone, "compacted")
	require.NotNil(t, ae.Error.CompactedRevision)
	assert.Equal(t, r2, *ae.Error.CompactedRevision)
	r = get(r2)
	require.Equal(t, http.StatusOK, r.status, string(r.body))
	assert.Equal(t, `"two"`, string(decode[ctxd.Record](t, r).Value))

	r = e.do(http.MethodGet, "/v1/status", "")
	assert.Equal(t, r2, decode[ctxd.ServerStatus](t, r).CompactedRevision)

	// The history says that it was cut: the first put is gone.
	r = e.do(http.MethodGet, keyPath("default", "k")+"/history", "")
	require.Equal(t, http.StatusOK, r.status, string(r.body))
	p := decode[ctxd.HistoryPage](t, r)
	assert.Len(t, p.Changes, 2, "the put in effect at the mark and the delete")
	assert.True(t, p.Truncated, string(r.body))
	r = e.do(http.MethodGet, fmt.Sprintf("%s/history?before=%d", keyPath("default", "k"), r2), "")
	require.Equal(t, http.StatusOK, r.status, string(r.body))
	assert.JSONEq(t, `{"changes":[],"truncated":true}`, string(r.body), "below the oldest change kept")
	r = e.do(http.MethodGet, keyPath("default", "other")+"/history", "")
	require.Equal(t, http.StatusOK, r.status, string(r.body))
	assert.False(t, hasField(t, r, "truncated"), "a history that starts with its create: %s", r.body)
}

func TestCompareAndSwap(t *testing.T) {
	e := newEnv(t, envOptions{})
	path := keyPath("default", "cas")

	// 0: must not exist.
	r := e.do(http.MethodPut, path, `1`, "If-Match", "0")
	require.Equal(t, http.StatusOK, r.status, string(r.body))
	ae := requireError(t, e.do(http.MethodPut, path, `1`, "If-Match", "0"), http.StatusConflict, "conflict")
	require.NotNil(t, ae.Error.CurrentVersion)
	assert.Equal(t, uint64(1), *ae.Error.CurrentVersion)

	// Bare and quoted versions, as the ETag gives them back.
	r = e.do(http.MethodPut, path, `2`, "If-Match", "1")
	require.Equal(t, http.StatusOK, r.status, string(r.body))
	etag := r.header.Get("ETag")
	require.Equal(t, `"2"`, etag)
	r = e.do(http.MethodPut, path, `3`, "If-Match", etag)
	require.Equal(t, http.StatusOK, r.status, string(r.body))
	r = e.do(http.MethodPut, path, `4`, "If-Match", ` "3" `)
	require.Equal(t, http.StatusOK, r.status, string(r.body))

	rev := e.revision()
	ae = requireError(t, e.do(http.MethodPut, path, `99`, "If-Match", "2"), http.StatusConflict, "conflict")
	require.NotNil(t, ae.Error.CurrentVersion)
	assert.Equal(t, uint64(4), *ae.Error.CurrentVersion)
	assert.Equal(t, "cas", ae.Error.Key)
	assert.Equal(t, "default", ae.Error.NS)
	ae = requireError(t, e.do(http.MethodDelete, path, ``, "If-Match", `"3"`), http.StatusConflict, "conflict")
	assert.Equal(t, uint64(4), *ae.Error.CurrentVersion)
	ae = requireError(t, e.do(http.MethodPut, keyPath("default", "missing"), `1`, "If-Match", "1"), http.StatusConflict, "conflict")
	assert.Equal(t, uint64(0), *ae.Error.CurrentVersion)
	assert.Equal(t, rev, e.revision(), "failed swaps write nothing")
	r = e.do(http.MethodGet, path, "")
	assert.Equal(t, `4`, string(decode[ctxd.Record](t, r).Value))

	r = e.do(http.MethodDelete, path, ``, "If-Match", `"4"`)
	require.Equal(t, http.StatusOK, r.status, string(r.body))
	requireError(t, e.do(http.MethodGet, path, ""), http.StatusNotFound, "not_found")

	// If-None-Match: * is HTTP's create-only, If-Match: 0 (it was ignored,
	// and the put overwrote the key); any other on a write is refused.
	once := keyPath("default", "once")
	require.Equal(t, http.StatusOK, e.do(http.MethodPut, once, `1`, "If-None-Match", "*").status)
	ae = requireError(t, e.do(http.MethodPut, once, `2`, "If-None-Match", "*"), http.StatusConflict, "conflict")
	assert.Equal(t, uint64(1), *ae.Error.CurrentVersion)
	requireError(t, e.do(http.MethodPut, once, `2`, "If-None-Match", `"1"`), http.StatusBadRequest, "bad_request")
	requireError(t, e.do(http.MethodPut, once, `2`, "If-None-Match", "*", "If-Match", "1"), http.StatusBadRequest, "bad_request")
	assert.Equal(t, `1`, string(decode[ctxd.Record](t, e.do(http.MethodGet, once, "")).Value))
}

// A page of large values ends early, with its cursor, once its values
// pass Config.MaxPageBytes (16 MiB; 64 KiB here): limit=1000 of 1 MiB
// values was one answer of 1 GiB built in memory. Following the cursor
// gives every key (or change) once.
func TestPagesOfLargeValuesAreBounded(t *testing.T) {
	e := newEnv(t, envOptions{cfg: httpapi.Config{MaxPageBytes: 64 << 10}})
	big := `"` + strings.Repeat("v", 4<<10-2) + `"`
	const n = 20 // 80 KiB of values: two pages
	for i := range n {
		e.put(fmt.Sprintf("big/%02d", i), big)
		e.put("hot", big)
	}
	var keys []string
	pages := 0
	for after := ""; ; pages++ {
		r := e.do(http.MethodGet, "/v1/ns/default/keys?prefix=big/&limit=1000&after="+url.QueryEscape(after), "")
		require.Equal(t, http.StatusOK, r.status)
		p := decode[ctxd.ListPage](t, r)
		assert.Less(t, len(r.body), 72<<10, "a page stops after 64 KiB of values")
		for _, rec := range p.Records {
			keys = append(keys, rec.Key)
		}
		if p.Next == "" {
			break
		}
		after = p.Next
	}
	assert.Equal(t, 1, pages, "two pages: %d", pages+1)
	require.Len(t, keys, n)
	for i, k := range keys {
		assert.Equal(t, fmt.Sprintf("big/%02d", i), k, "each key once, in order")
	}

	var revs []uint64
	for before := uint64(0); ; {
		path := keyPath("default", "hot") + "/history?limit=1000"
		if before > 0 {
			path += "&before=" + strconv.FormatUint(before, 10)
		}
		r := e.do(http.MethodGet, path, "")
		require.Equal(t, http.StatusOK, r.status)
		assert.Less(t, len(r.body), 72<<10)
		p := decode[ctxd.HistoryPage](t, r)
		for _, c := range p.Changes {
			revs = append(revs, c.Revision)
		}
		if p.Next == 0 {
			break
		}
		before = p.Next
	}
	require.Len(t, revs, n, "every change once")
	for i := 1; i < len(revs); i++ {
		assert.Greater(t, revs[i-1], revs[i], "newest first, none twice")
	}
}

// A history page longer than one store chunk (100) lists every change once
// (a chunk's cursor one off listed a change twice: no test read two).
func TestHistoryPagesLongerThanAChunkListEachChangeOnce(t *testing.T) {
	e := newEnv(t, envOptions{})
	for i := 0; i < 250; i++ {
		e.put("k", strconv.Itoa(i))
	}
	r := e.do(http.MethodGet, keyPath("default", "k")+"/history?limit=250", "")
	require.Equal(t, http.StatusOK, r.status)
	page := decode[ctxd.HistoryPage](t, r)
	seen := map[uint64]bool{}
	for _, c := range page.Changes {
		require.False(t, seen[c.Revision], "revision %d listed twice", c.Revision)
		seen[c.Revision] = true
	}
	require.Len(t, page.Changes, 250)
}

// A compressed body is refused with 415, not taken as it came (gzip was a
// misleading "not valid UTF-8", br bytes that happened to be JSON were
// stored as sent).
func TestACompressedBodyIsRefused(t *testing.T) {
	e := newEnv(t, envOptions{})
	rev := e.revision()
	for _, enc := range []string{"gzip", "br", "deflate"} {
		ae := requireError(t, e.do(http.MethodPut, keyPath("default", "z"), `1`, "Content-Encoding", enc), http.StatusUnsupportedMediaType, ctxd.CodeUnsupportedMediaType)
		assert.Contains(t, ae.Error.Message, "send the body uncompressed")
	}
	assert.Equal(t, rev, e.revision(), "nothing written")
	assert.Equal(t, http.StatusOK, e.do(http.MethodPut, keyPath("default", "z"), `1`, "Content-Encoding", "identity").status)
	assert.Equal(t, http.StatusOK, e.do(http.MethodGet, "/healthz", "", "Content-Encoding", "gzip").status, "no body, nothing to refuse")
}
