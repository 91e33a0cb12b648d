package httpapi_test

import (
	"net/http"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/framework0/ctxd"
	"github.com/framework0/ctxd/internal/testkit"
)

// TestPutWithTTL: ?ttl= on PUT, "ttl" on /v1/txn ops (a duration or a
// number of seconds) and on POST /ctx set expires_at; the key expires as
// a delete by ctxd:ttl, marked expired in its history.
func TestPutWithTTL(t *testing.T) {
	e := newEnv(t, envOptions{})
	r := e.do(http.MethodPut, keyPath("default", "lock")+"?ttl=1s", `"held"`)
	require.Equal(t, http.StatusOK, r.status, string(r.body))
	lock := decode[ctxd.Record](t, r)
	assert.Equal(t, lock.UpdatedAt.Add(time.Second), lock.ExpiresAt)
	assert.True(t, hasField(t, r, "expires_at"))
	assert.False(t, hasField(t, e.do(http.MethodPut, keyPath("default", "plain"), `1`), "expires_at"), "a permanent key has no expires_at")

	r = e.do(http.MethodPost, "/v1/txn", `{"ops":[{"op":"put","key":"t1","value":1,"ttl":"1h"},{"op":"put","key":"t2","value":2,"ttl":90}]}`)
	require.Equal(t, http.StatusOK, r.status, string(r.body))
	res := decode[ctxd.TxnResult](t, r)
	assert.Equal(t, res.Records[0].UpdatedAt.Add(time.Hour), res.Records[0].ExpiresAt)
	assert.Equal(t, res.Records[1].UpdatedAt.Add(90*time.Second), res.Records[1].ExpiresAt)

	r = e.do(http.MethodPost, "/ctx", `{"key":"compat","value":1,"ttl":"10m"}`)
	require.Equal(t, http.StatusOK, r.status, string(r.body))
	assert.True(t, hasField(t, r, "expires_at"))
	assert.False(t, e.do(http.MethodGet, keyPath("default", "compat"), "").status != http.StatusOK)
	assert.False(t, decode[ctxd.Record](t, e.do(http.MethodGet, keyPath("default", "compat"), "")).ExpiresAt.IsZero())

	// The lock expires: a bounded wait for the change, then its recorded time.
	testkit.Eventually(t, func() bool {
		return e.do(http.MethodGet, keyPath("default", "lock"), "").status == http.StatusNotFound
	})
	r = e.do(http.MethodGet, keyPath("default", "lock")+"/history", "")
	require.Equal(t, http.StatusOK, r.status, string(r.body))
	h := decode[ctxd.HistoryPage](t, r)
	require.Len(t, h.Changes, 2)
	exp := h.Changes[0]
	assert.Equal(t, ctxd.OpDelete, exp.Op)
	assert.Equal(t, ctxd.WhoTTL, exp.Who)
	assert.True(t, exp.Expired)
	assert.False(t, exp.Time.Before(lock.ExpiresAt))
	assert.Equal(t, lock.ExpiresAt, h.Changes[1].ExpiresAt, "the put in history shows its deadline")
}

func TestTTLRefusals(t *testing.T) {
	e := newEnv(t, envOptions{})
	rev := e.revision()
	for name, req := range map[string][2]string{
		"not a duration":   {http.MethodPut, keyPath("default", "k") + "?ttl=soon"},
		"zero":             {http.MethodPut, keyPath("default", "k") + "?ttl=0"},
		"negative":         {http.MethodPut, keyPath("default", "k") + "?ttl=-5s"},
		"below min_ttl":    {http.MethodPut, keyPath("default", "k") + "?ttl=10ms"},
		"above max_ttl":    {http.MethodPut, keyPath("default", "k") + "?ttl=9000h"},
		"ttl on a delete":  {http.MethodPost, "/v1/txn"},
		"bad ttl in a txn": {http.MethodPost, "/v1/txn"},
		// Below a nanosecond: it was taken as no ttl, a key that never expires.
		"tiny ttl in a txn": {http.MethodPost, "/v1/txn"},
	} {
		body := `1`
		switch name {
		case "ttl on a delete":
			body = `{"ops":[{"op":"delete","key":"k","ttl":"1m"}]}`
		case "bad ttl in a txn":
			body = `{"ops":[{"op":"put","key":"k","value":1,"ttl":true}]}`
		case "tiny ttl in a txn":
			body = `{"ops":[{"op":"put","key":"k","value":1,"ttl":1e-10}]}`
		}
		t.Run(name, func(t *testing.T) {
			requireError(t, e.do(req[0], req[1], body), http.StatusBadRequest, "bad_request")
		})
	}
	requireCtxError(t, e.do(http.MethodPost, "/ctx", `{"key":"k","value":1,"ttl":"x"}`), http.StatusBadRequest, "bad_request")
	ce := requireCtxError(t, e.do(http.MethodPost, "/ctx", `{"key":"k","value":1,"ttl":1e-10}`), http.StatusBadRequest, "bad_request")
	assert.Contains(t, ce.Error.Message, "below the minimum")
	// Of several puts, the refused one is named.
	ae := requireError(t, e.do(http.MethodPost, "/v1/txn", `{"ops":[{"op":"put","key":"k","value":1,"ttl":"1h"},{"op":"put","key":"lock","value":1,"ttl":"10ms"}]}`),
		http.StatusBadRequest, "bad_request")
	assert.Contains(t, ae.Error.Message, "default/lock")
	assert.Equal(t, rev, e.revision(), "refused writes change nothing")
}

// TestTTLOnDeleteOrPatchRefused: ?ttl= on DELETE or PATCH is refused, as
// "ttl" on a transaction's delete or patch op is, rather than ignored: a
// DELETE ?ttl=1m would otherwise delete the key at once. Neither route
// takes ttl (openapi.yaml), so the unknown-parameter check refuses it.
func TestTTLOnDeleteOrPatchRefused(t *testing.T) {
	e := newEnv(t, envOptions{})
	before := e.put("k", `{"a":1}`)
	ae := requireError(t, e.do(http.MethodDelete, keyPath("default", "k")+"?ttl=1m", ""), http.StatusBadRequest, "bad_request")
	assert.Contains(t, ae.Error.Message, `unknown query parameter "ttl": DELETE`)
	ae = requireError(t, e.do(http.MethodPatch, keyPath("default", "k")+"?ttl=1m", `{"a":2}`,
		"Content-Type", string(ctxd.MergePatch)), http.StatusBadRequest, "bad_request")
	assert.Contains(t, ae.Error.Message, `unknown query parameter "ttl": PATCH`)
	after := decode[ctxd.Record](t, e.do(http.MethodGet, keyPath("default", "k"), ""))
	assert.Equal(t, before, after, "the key is as it was")
	assert.Equal(t, before.ModRev, e.revision(), "refused writes change nothing")
}

// TestKeepAliveEndpoint: POST .../keepalive?ttl= moves the deadline with
// no new version or revision; If-Match, a missing key, a permanent key and
// a missing ttl are refused.
func TestKeepAliveEndpoint(t *testing.T) {
	e := newEnv(t, envOptions{})
	r := e.do(http.MethodPut, keyPath("default", "hb")+"?ttl=1m", `"alive"`)
	require.Equal(t, http.StatusOK, r.status, string(r.body))
	hb := decode[ctxd.Record](t, r)
	e.put("forever", `1`)
	rev := e.revision()
	ka := keyPath("default", "hb") + "/keepalive"

	requireError(t, e.do(http.MethodPost, ka+"?ttl=1h", "", "If-Match", `"2"`), http.StatusConflict, "conflict")
	requireError(t, e.do(http.MethodPost, ka, ""), http.StatusBadRequest, "bad_request")
	requireError(t, e.do(http.MethodPost, keyPath("default", "nope")+"/keepalive?ttl=1h", ""), http.StatusNotFound, "not_found")
	// With If-Match, a missing key fails the precondition (version 0), as
	// its PATCH and DELETE do; it was a 404.
	for _, req := range []struct{ method, path, body, ct string }{
		{http.MethodPost, keyPath("default", "nope") + "/keepalive?ttl=1h", "", ""},
		{http.MethodPatch, keyPath("default", "nope"), `{"a":1}`, "application/merge-patch+json"},
		{http.MethodDelete, keyPath("default", "nope"), "", ""},
	} {
		ae := requireError(t, e.do(req.method, req.path, req.body, "If-Match", `"1"`, "Content-Type", req.ct), http.StatusConflict, "conflict")
		require.NotNil(t, ae.Error.CurrentVersion, "%s %s", req.method, req.path)
		assert.Equal(t, uint64(0), *ae.Error.CurrentVersion, "%s %s", req.method, req.path)
	}
	requireError(t, e.do(http.MethodPost, keyPath("default", "nope")+"/keepalive?ttl=1h", "", "If-Match", "0"), http.StatusNotFound, "not_found")
	requireError(t, e.do(http.MethodPost, keyPath("default", "forever")+"/keepalive?ttl=1h", ""), http.StatusBadRequest, "bad_request")
	ae := requireError(t, e.do(http.MethodPost, keyPath("default", "hb"), ""), http.StatusMethodNotAllowed, "method_not_allowed")
	assert.Contains(t, ae.Error.Message, "/keepalive", "the answer says where a keepalive goes")

	r = e.do(http.MethodPost, ka+"?ttl=1h", "", "If-Match", `"1"`)
	require.Equal(t, http.StatusOK, r.status, string(r.body))
	assert.Equal(t, `"1"`, r.header.Get("ETag"))
	got := decode[ctxd.Record](t, r)
	assert.Equal(t, hb.ModRev, got.ModRev)
	assert.Equal(t, hb.Version, got.Version)
	assert.True(t, got.ExpiresAt.Sub(hb.ExpiresAt) > 50*time.Minute)
	assert.Equal(t, rev, e.revision(), "no revision")
	assert.Equal(t, got, decode[ctxd.Record](t, e.do(http.MethodGet, keyPath("default", "hb"), "")))
	// A key whose own name ends in /keepalive is reached escaped.
	r = e.do(http.MethodPut, "/v1/ns/default/keys/x%2Fkeepalive?ttl=1m", `1`)
	require.Equal(t, http.StatusOK, r.status, string(r.body))
	r = e.do(http.MethodPost, "/v1/ns/default/keys/x%2Fkeepalive/keepalive?ttl=2m", "")
	require.Equal(t, http.StatusOK, r.status, string(r.body))
	assert.Equal(t, "x/keepalive", decode[ctxd.Record](t, r).Key)
}
