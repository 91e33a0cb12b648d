package httpapi_test

import (
	"net/http"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/framework0/ctxd"
	"github.com/framework0/ctxd/store/bolt"
)

func TestTxn(t *testing.T) {
	e := newEnv(t, envOptions{})
	e.put("a", `"a1"`)
	e.put("gone", `"g1"`)

	r := e.do(http.MethodPost, "/v1/txn?who=ignored", `{
		"who": "deployer",
		"ops": [
			{"op": "put", "key": "a", "value": {"n": 2}, "if_version": 1},
			{"op": "put", "ns": "team", "key": "dir/b", "value": [1, 2], "if_version": 0},
			{"op": "delete", "key": "gone"},
			{"op": "put", "ns": "default", "key": "c", "value": null}
		]
	}`)
	require.Equal(t, http.StatusOK, r.status, string(r.body))
	res := decode[ctxd.TxnResult](t, r)
	assert.Equal(t, uint64(6), res.Revision)
	require.Len(t, res.Records, 4)
	assert.Equal(t, ctxd.Record{Namespace: "default", Key: "a", Value: []byte(`{"n":2}`), Version: 2, CreateRev: 1, ModRev: 3, Who: "deployer", UpdatedAt: res.Records[0].UpdatedAt}, res.Records[0])
	assert.Equal(t, "team", res.Records[1].Namespace)
	assert.Equal(t, "dir/b", res.Records[1].Key)
	assert.Equal(t, uint64(1), res.Records[1].Version)
	assert.Equal(t, uint64(4), res.Records[1].ModRev)
	assert.Equal(t, "gone", res.Records[2].Key)
	assert.Equal(t, "null", string(res.Records[2].Value))
	assert.Equal(t, uint64(5), res.Records[2].ModRev)
	assert.Equal(t, "null", string(res.Records[3].Value))

	r = e.do(http.MethodGet, keyPath("default", "a"), "")
	assert.Equal(t, `{"n":2}`, string(decode[ctxd.Record](t, r).Value), "stored compact")
	r = e.do(http.MethodGet, keyPath("team", "dir/b"), "")
	assert.Equal(t, `[1,2]`, string(decode[ctxd.Record](t, r).Value))
	requireError(t, e.do(http.MethodGet, keyPath("default", "gone"), ""), http.StatusNotFound, "not_found")
	r = e.do(http.MethodGet, keyPath("default", "c"), "")
	require.Equal(t, http.StatusOK, r.status)
	assert.Equal(t, `null`, string(decode[ctxd.Record](t, r).Value))

	// Who falls back to ?who=, then the header, then "api".
	r = e.do(http.MethodPost, "/v1/txn?who=q", `{"ops":[{"op":"put","key":"w","value":1}]}`, "X-Ctxd-Who", "h")
	require.Equal(t, http.StatusOK, r.status, string(r.body))
	assert.Equal(t, "q", decode[ctxd.TxnResult](t, r).Records[0].Who)
	r = e.do(http.MethodPost, "/v1/txn", `{"ops":[{"op":"put","key":"w","value":2}]}`, "X-Ctxd-Who", "h")
	assert.Equal(t, "h", decode[ctxd.TxnResult](t, r).Records[0].Who)
	r = e.do(http.MethodPost, "/v1/txn", `{"ops":[{"op":"put","key":"w","value":3}]}`)
	assert.Equal(t, "api", decode[ctxd.TxnResult](t, r).Records[0].Who)
}

func TestTxnAllOrNothing(t *testing.T) {
	e := newEnv(t, envOptions{})
	e.put("a", `"a1"`)
	e.put("b", `"b1"`)
	rev := e.revision()

	// The last op conflicts: none of the others may be applied.
	r := e.do(http.MethodPost, "/v1/txn", `{"ops":[
		{"op":"put","key":"new","value":1},
		{"op":"delete","key":"a"},
		{"op":"put","ns":"other","key":"x","value":1},
		{"op":"put","key":"b","value":"b2","if_version":7}
	]}`)
	ae := requireError(t, r, http.StatusConflict, "conflict")
	require.NotNil(t, ae.Error.CurrentVersion)
	assert.Equal(t, uint64(1), *ae.Error.CurrentVersion)
	assert.Equal(t, "b", ae.Error.Key)
	assert.Equal(t, "default", ae.Error.NS)

	assert.Equal(t, rev, e.revision())
	requireError(t, e.do(http.MethodGet, keyPath("default", "new"), ""), http.StatusNotFound, "not_found")
	requireError(t, e.do(http.MethodGet, keyPath("other", "x"), ""), http.StatusNotFound, "not_found")
	r = e.do(http.MethodGet, keyPath("default", "a"), "")
	require.Equal(t, http.StatusOK, r.status)
	assert.Equal(t, `"a1"`, string(decode[ctxd.Record](t, r).Value))
	r = e.do(http.MethodGet, keyPath("default", "b"), "")
	assert.Equal(t, `"b1"`, string(decode[ctxd.Record](t, r).Value))
	r = e.do(http.MethodGet, "/v1/ns", "")
	assert.JSONEq(t, `{"namespaces":[{"name":"default","keys":2}]}`, string(r.body))

	// A must-not-exist guard on an existing key fails the same way.
	r = e.do(http.MethodPost, "/v1/txn", `{"ops":[{"op":"put","key":"new","value":1},{"op":"put","key":"a","value":1,"if_version":0}]}`)
	requireError(t, r, http.StatusConflict, "conflict")
	assert.Equal(t, rev, e.revision())
	requireError(t, e.do(http.MethodGet, keyPath("default", "new"), ""), http.StatusNotFound, "not_found")
}

// Of several puts (a transaction, an import), the one whose value is
// refused is named: "too large: value is 17 bytes" did not say which.
func TestARefusedValueOfSeveralPutsIsNamed(t *testing.T) {
	e := newEnv(t, envOptions{store: bolt.Options{Limits: ctxd.Limits{MaxValueBytes: 16}}})
	rev := e.revision()
	ae := requireError(t, e.do(http.MethodPost, "/v1/txn", `{"ops":[{"op":"put","key":"small","value":1},{"op":"put","key":"big","value":"0123456789abcdef"}]}`),
		http.StatusRequestEntityTooLarge, "too_large")
	assert.Contains(t, ae.Error.Message, "default/big")
	ae = requireError(t, e.do(http.MethodPost, "/v1/ns/imp/import", `{"context":{"small":1,"big":"0123456789abcdef"}}`),
		http.StatusRequestEntityTooLarge, "too_large")
	assert.Contains(t, ae.Error.Message, "imp/big")
	assert.Equal(t, rev, e.revision(), "nothing was written")
}
