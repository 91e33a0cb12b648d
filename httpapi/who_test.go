package httpapi_test

import (
	"encoding/json"
	"net/http"
	"net/url"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/framework0/ctxd"
	"github.com/framework0/ctxd/configs"
	"github.com/framework0/ctxd/internal/testkit"
)

// whoOf returns who the last change of ns/key was recorded as, read from
// the store.
func (e *env) whoOf(ns, key string) string {
	e.t.Helper()
	page, err := e.store.History(ns, key, ctxd.HistoryOptions{Limit: 1})
	require.NoError(e.t, err)
	require.NotEmpty(e.t, page.Changes, "%s/%s has no history", ns, key)
	return page.Changes[0].Who
}

// With auth.who: token, every change made with a token is recorded under
// the token's name, through every door that writes: the who a request
// gives comes after it in parentheses, and no request can record a
// change as another token's. With the default (declared), the request's
// who is recorded as given.
func TestChangesAreSignedByTheirToken(t *testing.T) {
	e := newFullEnv(t, true, func(c *configs.Config) { c.Auth.Who = configs.WhoToken })
	w := []string{"Authorization", "Bearer " + tokWrite} // token "writer"
	ok := func(r response) {
		t.Helper()
		require.Contains(t, []int{http.StatusOK, http.StatusCreated}, r.status, string(r.body))
	}

	ok(e.do("PUT", keyPath("default", "plain"), "1", w...))
	assert.Equal(t, "writer", e.whoOf("default", "plain"), "no who given: the token's name")
	ok(e.do("PUT", keyPath("default", "claimed"), "1", append(w, "X-Ctxd-Who", "ops")...))
	assert.Equal(t, "writer (ops)", e.whoOf("default", "claimed"), "another token's name is only a label after the token's")
	ok(e.do("PUT", keyPath("default", "self")+"?who=writer", "1", w...))
	assert.Equal(t, "writer", e.whoOf("default", "self"), "the token's own name is not repeated")
	ok(e.do("PATCH", keyPath("default", "plain")+"?who=ci-42", `{"a":1}`, append(w, "Content-Type", "application/merge-patch+json")...))
	assert.Equal(t, "writer (ci-42)", e.whoOf("default", "plain"))
	ok(e.do("DELETE", keyPath("default", "self"), "", append(w, "X-Ctxd-Who", "cleanup")...))
	assert.Equal(t, "writer (cleanup)", e.whoOf("default", "self"))

	ok(e.do("POST", "/v1/txn", `{"who":"deployer","ops":[{"op":"put","key":"t1","value":1}]}`, w...))
	assert.Equal(t, "writer (deployer)", e.whoOf("default", "t1"), "a transaction body's who")
	ok(e.do("POST", "/v1/txn?who=q", `{"ops":[{"op":"put","key":"t2","value":1}]}`, w...))
	assert.Equal(t, "writer (q)", e.whoOf("default", "t2"))

	// Framework0's /ctx (namespace team here): its default author,
	// api_client, gives way to the token's name too.
	ok(e.do("POST", "/ctx", `{"key":"c1","value":1,"who":"framework0"}`, w...))
	assert.Equal(t, "writer (framework0)", e.whoOf("team", "c1"))
	ok(e.do("POST", "/ctx", `{"key":"c2","value":1}`, w...))
	assert.Equal(t, "writer", e.whoOf("team", "c2"))
	ok(e.do("DELETE", "/ctx/c2", "", w...))
	assert.Equal(t, "writer", e.whoOf("team", "c2"))

	ok(e.do("POST", "/v1/ns/imported/import?who=migration", `{"context":{"i":1}}`, w...))
	assert.Equal(t, "writer (migration)", e.whoOf("imported", "i"))

	// The WebSocket feed's context_set.
	ws := testkit.DialWatch(t, "ws"+strings.TrimPrefix(e.url, "http")+"/v1/watch?token="+url.QueryEscape(tokWrite), nil)
	require.NoError(t, ws.Conn.WriteJSON(map[string]any{"type": "context_set", "id": 1, "key": "ws", "value": 1, "who": "dashboard"}))
	for f := ws.Next(); f.Type != ctxd.TypeContextSetConfirmed; f = ws.Next() {
		require.NotEqual(t, "error", f.Type, f.Message)
	}
	assert.Equal(t, "writer (dashboard)", e.whoOf("default", "ws"))

	// A who that fits alone but not after the token's name is refused
	// whole, saying why, and writes nothing.
	long := strings.Repeat("x", ctxd.MaxWhoBytes-len("writer")) // fits alone
	r := requireError(t, e.do("PUT", keyPath("default", "long"), "1", append(w, "X-Ctxd-Who", long)...), http.StatusRequestEntityTooLarge, "too_large")
	assert.Contains(t, r.Error.Message, "token's name")
	requireError(t, e.do("GET", keyPath("default", "long"), "", w...), http.StatusNotFound, "not_found")
	requireError(t, e.do("POST", "/v1/txn", `{"who":"`+long+`","ops":[{"op":"put","key":"long","value":1}]}`, w...), http.StatusRequestEntityTooLarge, "too_large")
	requireError(t, e.do("GET", keyPath("default", "long"), "", w...), http.StatusNotFound, "not_found")

	// A /ctx/dump's who (its file's header, its answer, the
	// context_dumped message) is signed as a change's is, and held to
	// the same 256 bytes once after the token's name (README, /ctx/dump).
	o := []string{"Authorization", "Bearer " + tokAdmin} // token "ops"
	var dump struct {
		Who string `json:"who"`
	}
	dr := e.do("POST", "/ctx/dump", `{"who":"nightly"}`, o...)
	ok(dr)
	require.NoError(t, json.Unmarshal(dr.body, &dump))
	assert.Equal(t, "ops (nightly)", dump.Who)
	long = strings.Repeat("x", ctxd.MaxWhoBytes-len("ops")) // fits alone
	assert.Equal(t, http.StatusRequestEntityTooLarge, e.do("POST", "/ctx/dump", `{"who":"`+long+`"}`, o...).status)

	// The default: the request's who as given (Framework0's way).
	d := newFullEnv(t, true)
	require.Equal(t, http.StatusOK, d.do("PUT", keyPath("default", "claimed"), "1", append(w, "X-Ctxd-Who", "ops")...).status)
	assert.Equal(t, "ops", d.whoOf("default", "claimed"))
	var rec ctxd.Record
	require.NoError(t, json.Unmarshal(d.do("GET", keyPath("default", "claimed"), "", w...).body, &rec))
	assert.Equal(t, "ops", rec.Who)
}
