package httpapi_test

import (
	"net/http"
	"strconv"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/framework0/ctxd"
	"github.com/framework0/ctxd/patch"
)

const (
	mergeType = "application/merge-patch+json"
	jsonType  = "application/json-patch+json"
)

// PATCH with either media type changes part of the value; If-Match works
// as for a put; the answer is the record, with its version as ETag.
func TestPatchKey(t *testing.T) {
	e := newEnv(t, envOptions{})
	e.put("cfg", `{"debug":false,"limits":{"cpu":2,"mem":"1G"},"tags":["a"]}`)

	r := e.do(http.MethodPatch, keyPath("default", "cfg"), `{"debug": true, "limits": {"mem": null}}`, "Content-Type", mergeType, "X-Ctxd-Who", "ops")
	require.Equal(t, http.StatusOK, r.status, string(r.body))
	assert.Equal(t, `"2"`, r.header.Get("ETag"))
	rec := decode[ctxd.Record](t, r)
	assert.Equal(t, `{"debug":true,"limits":{"cpu":2},"tags":["a"]}`, string(rec.Value))
	assert.Equal(t, "ops", rec.Who)

	r = e.do(http.MethodPatch, keyPath("default", "cfg"), `[{"op":"test","path":"/debug","value":true},{"op":"add","path":"/tags/-","value":"b"}]`,
		"Content-Type", jsonType+"; charset=utf-8", "If-Match", `"2"`)
	require.Equal(t, http.StatusOK, r.status, string(r.body))
	rec = decode[ctxd.Record](t, r)
	assert.Equal(t, `{"debug":true,"limits":{"cpu":2},"tags":["a","b"]}`, string(rec.Value))
	assert.Equal(t, uint64(3), rec.Version)

	r = e.do(http.MethodGet, keyPath("default", "cfg"), "")
	assert.Equal(t, rec, decode[ctxd.Record](t, r), "the patched value is stored")
}

// A patch that fails answers with the operation and pointer that failed
// and writes nothing; so do a wrong version, a wrong media type, a
// malformed patch and a missing key.
func TestPatchRefusals(t *testing.T) {
	e := newEnv(t, envOptions{})
	e.put("cfg", `{"state":"idle","list":[1]}`)
	rev := e.revision()
	path := keyPath("default", "cfg")

	ae := requireError(t, e.do(http.MethodPatch, path, `[{"op":"replace","path":"/state","value":"busy"},{"op":"test","path":"/state","value":"idle"}]`,
		"Content-Type", jsonType), http.StatusConflict, ctxd.CodePatchTestFailed)
	require.NotNil(t, ae.Error.Pointer)
	assert.Equal(t, "/state", *ae.Error.Pointer)
	require.NotNil(t, ae.Error.OpIndex)
	assert.Equal(t, 1, *ae.Error.OpIndex)
	assert.Equal(t, "test", ae.Error.Op)

	ae = requireError(t, e.do(http.MethodPatch, path, `[{"op":"remove","path":"/list/4"}]`, "Content-Type", jsonType),
		http.StatusUnprocessableEntity, ctxd.CodePatchFailed)
	require.NotNil(t, ae.Error.Pointer)
	assert.Equal(t, "/list/4", *ae.Error.Pointer)

	ae = requireError(t, e.do(http.MethodPatch, path, `{"state":"busy"}`, "Content-Type", mergeType, "If-Match", "7"),
		http.StatusConflict, ctxd.CodeConflict)
	require.NotNil(t, ae.Error.CurrentVersion)
	assert.Equal(t, uint64(1), *ae.Error.CurrentVersion)

	requireError(t, e.do(http.MethodPatch, path, `{"state":"busy"}`, "Content-Type", "application/json"),
		http.StatusUnsupportedMediaType, ctxd.CodeUnsupportedMediaType)
	requireError(t, e.do(http.MethodPatch, path, `{"state":"busy"}`), http.StatusUnsupportedMediaType, ctxd.CodeUnsupportedMediaType)
	requireError(t, e.do(http.MethodPatch, path, `[{"op":"frobnicate","path":"/a"}]`, "Content-Type", jsonType), http.StatusBadRequest, ctxd.CodeBadRequest)
	requireError(t, e.do(http.MethodPatch, path, `{"state":`, "Content-Type", mergeType), http.StatusBadRequest, ctxd.CodeBadRequest)
	requireError(t, e.do(http.MethodPatch, keyPath("default", "nope"), `{"a":1}`, "Content-Type", mergeType), http.StatusNotFound, ctxd.CodeNotFound)

	// A patch sent with PUT, which would store it as the whole value
	// (the merge patch below replaced the value with {"state":"busy"}).
	for _, ct := range []string{mergeType, jsonType, "Application/Merge-Patch+JSON; charset=utf-8"} {
		ae = requireError(t, e.do(http.MethodPut, path, `{"state":"busy"}`, "Content-Type", ct),
			http.StatusUnsupportedMediaType, ctxd.CodeUnsupportedMediaType)
		assert.Contains(t, ae.Error.Message, "send it with PATCH", "PUT with %s", ct)
	}

	assert.Equal(t, rev, e.revision(), "no refused patch took a revision")
	r := e.do(http.MethodGet, path, "")
	assert.Equal(t, `{"state":"idle","list":[1]}`, string(decode[ctxd.Record](t, r).Value))

	// A PUT takes any other Content-Type, or none, as before.
	for i, ct := range []string{"", "application/json", "application/x-www-form-urlencoded", "text/plain", "not a media type"} {
		r := e.doUnchecked(http.MethodPut, keyPath("default", "put"), strconv.Itoa(i), "Content-Type", ct)
		require.Equal(t, http.StatusOK, r.status, "PUT with Content-Type %q: %s", ct, r.body)
	}
}

// A value whose object names a member twice is stored as sent; a patch
// that would rewrite that object (a JSON Patch through it) or set that
// member (a merge patch) answers 422 patch_failed naming the member and
// where it is, and writes nothing; a merge patch of other members keeps
// both copies. (A JSON Patch replacing /b wrote {"a":2,"a":2,"b":5}.)
func TestPatchOfAValueNamingAMemberTwice(t *testing.T) {
	e := newEnv(t, envOptions{})
	const value = `{"a":1,"a":2,"b":0}`
	assert.Equal(t, value, string(e.put("dup", value).Value), "stored as sent")
	rev := e.revision()
	path := keyPath("default", "dup")

	ae := requireError(t, e.do(http.MethodPatch, path, `[{"op":"replace","path":"/b","value":5}]`, "Content-Type", jsonType),
		http.StatusUnprocessableEntity, ctxd.CodePatchFailed)
	require.NotNil(t, ae.Error.OpIndex)
	assert.Equal(t, 0, *ae.Error.OpIndex)
	assert.Equal(t, "replace", ae.Error.Op)
	require.NotNil(t, ae.Error.Pointer)
	assert.Equal(t, "/b", *ae.Error.Pointer)
	assert.Contains(t, ae.Error.Message, `the value names member "a" twice (at "/a"`)
	assert.Contains(t, ae.Error.Message, "PUT the whole value")

	ae = requireError(t, e.do(http.MethodPatch, path, `{"a":5}`, "Content-Type", mergeType),
		http.StatusUnprocessableEntity, ctxd.CodePatchFailed)
	assert.Equal(t, "merge", ae.Error.Op)
	require.NotNil(t, ae.Error.Pointer)
	assert.Equal(t, "/a", *ae.Error.Pointer)
	assert.Contains(t, ae.Error.Message, `names member "a" twice`)
	assert.Equal(t, rev, e.revision(), "no refused patch took a revision")
	assert.Equal(t, value, string(decode[ctxd.Record](t, e.do(http.MethodGet, path, "")).Value))

	r := e.do(http.MethodPatch, path, `{"b":5}`, "Content-Type", mergeType)
	require.Equal(t, http.StatusOK, r.status, string(r.body))
	assert.Equal(t, `{"a":1,"a":2,"b":5}`, string(decode[ctxd.Record](t, r).Value))
}

// A value sent with whitespace is stored and answered compact, numbers
// and strings as sent.
func TestValuesAreAnsweredCompact(t *testing.T) {
	e := newEnv(t, envOptions{})
	rec := e.put("pretty", "{\n  \"n\": 9007199254740993,\n  \"s\": \"a  b\",\n  \"x\": [ 1.50, true ]\n}\n")
	want := `{"n":9007199254740993,"s":"a  b","x":[1.50,true]}`
	assert.Equal(t, want, string(rec.Value))
	r := e.do(http.MethodGet, "/v1/ns/default/keys", "")
	assert.Contains(t, string(r.body), `"value":`+want+`,`)
	r = e.do(http.MethodGet, "/ctx/pretty", "")
	assert.Contains(t, string(r.body), `"value":`+want+`,`)
	r = e.do(http.MethodPost, "/ctx", "{\"key\":\"posted\",\"value\": [ 1,\n 2 ]}")
	require.Equal(t, http.StatusOK, r.status, string(r.body))
	assert.Contains(t, string(r.body), `"value":[1,2]`)
	r = e.do(http.MethodGet, "/v1/ns/default/export?format=txt", "")
	assert.Contains(t, string(r.body), "pretty="+want+"\n", "a TXT dump line")
	r = e.do(http.MethodGet, "/v1/ns/default/export?format=csv", "")
	assert.Contains(t, string(r.body), `"`+strings.ReplaceAll(want, `"`, `""`)+`"`, "a CSV cell")
}

// values=false lists the same records without a "value" member; count=true
// answers the number of keys under the prefix.
func TestListWithoutValuesAndCount(t *testing.T) {
	e := newEnv(t, envOptions{})
	big := `"` + strings.Repeat("x", 64<<10) + `"`
	for _, k := range []string{"app/a", "app/b", "app/c", "other"} {
		e.put(k, big)
	}
	e.do(http.MethodDelete, keyPath("default", "app/b"), "")

	r := e.do(http.MethodGet, "/v1/ns/default/keys?prefix=app/&values=false", "")
	require.Equal(t, http.StatusOK, r.status, string(r.body))
	assert.NotContains(t, string(r.body), `"value"`)
	assert.Less(t, len(r.body), 1000, "no value was sent")
	page := decode[ctxd.ListPage](t, r)
	require.Len(t, page.Records, 2)
	assert.Equal(t, "app/a", page.Records[0].Key)
	assert.Equal(t, "app/c", page.Records[1].Key)
	full := decode[ctxd.ListPage](t, e.do(http.MethodGet, "/v1/ns/default/keys?prefix=app/", ""))
	for i := range full.Records {
		full.Records[i].Value = nil
	}
	assert.Equal(t, full, page, "the same records but the values")

	r = e.do(http.MethodGet, "/v1/ns/default/keys?prefix=app/&count=true", "")
	require.Equal(t, http.StatusOK, r.status, string(r.body))
	assert.JSONEq(t, `{"count":2}`, string(r.body))
	r = e.do(http.MethodGet, "/v1/ns/default/keys?count=1", "")
	assert.JSONEq(t, `{"count":3}`, string(r.body))
	r = e.do(http.MethodGet, "/v1/ns/nobody/keys?count=true", "")
	assert.JSONEq(t, `{"count":0}`, string(r.body))

	requireError(t, e.do(http.MethodGet, "/v1/ns/default/keys?values=maybe", ""), http.StatusBadRequest, ctxd.CodeBadRequest)
	requireError(t, e.do(http.MethodGet, "/v1/ns/default/keys?count=true&after=app/a", ""), http.StatusBadRequest, ctxd.CodeBadRequest)
}

// A transaction may patch: after its earlier writes, all or nothing.
func TestTxnPatch(t *testing.T) {
	e := newEnv(t, envOptions{})
	e.put("cfg", `{"a":1}`)
	r := e.do(http.MethodPost, "/v1/txn", `{"ops":[
		{"op":"put","key":"other","value":true},
		{"op":"patch","key":"cfg","patch":{"b":2}},
		{"op":"patch","ns":"default","key":"other2","patch":[{"op":"add","path":"/x","value":1}],"patch_type":"json","if_version":0}]}`)
	requireError(t, r, http.StatusNotFound, ctxd.CodeNotFound) // a patch needs a live key
	requireError(t, e.do(http.MethodGet, keyPath("default", "other"), ""), http.StatusNotFound, ctxd.CodeNotFound)
	r = e.do(http.MethodPost, "/v1/txn", `{"ops":[
		{"op":"put","key":"other","value":{"n":0}},
		{"op":"patch","key":"cfg","patch":{"b":2}},
		{"op":"patch","key":"other","patch":[{"op":"replace","path":"/n","value":1}]}]}`)
	requireError(t, r, http.StatusBadRequest, ctxd.CodeBadRequest) // one key twice
	r = e.do(http.MethodPost, "/v1/txn", `{"ops":[
		{"op":"patch","key":"cfg","patch":[{"op":"test","path":"/a","value":1}]},
		{"op":"put","key":"flag","value":true}]}`)
	require.Equal(t, http.StatusOK, r.status, string(r.body))
	res := decode[ctxd.TxnResult](t, r)
	assert.Equal(t, `{"a":1}`, string(res.Records[0].Value))
	r = e.do(http.MethodPost, "/v1/txn", `{"ops":[
		{"op":"patch","key":"cfg","patch":[{"op":"test","path":"/a","value":2}]},
		{"op":"put","key":"flag","value":false}]}`)
	ae := requireError(t, r, http.StatusConflict, ctxd.CodePatchTestFailed)
	assert.Equal(t, "/a", *ae.Error.Pointer)
	for _, body := range []string{
		`{"ops":[{"op":"patch","key":"cfg"}]}`,
		`{"ops":[{"op":"patch","key":"cfg","patch":{},"value":1}]}`,
		`{"ops":[{"op":"patch","key":"cfg","patch":{},"patch_type":"xml"}]}`,
		`{"ops":[{"op":"put","key":"cfg","value":1,"patch":{}}]}`,
	} {
		requireError(t, e.do(http.MethodPost, "/v1/txn", body), http.StatusBadRequest, ctxd.CodeBadRequest)
	}
	r = e.do(http.MethodGet, keyPath("default", "flag"), "")
	assert.Equal(t, `true`, string(decode[ctxd.Record](t, r).Value), "the failed transaction wrote nothing")
}

// The patch ops of one transaction share one budget of work
// (patch.WorkBytes): two JSON Patches that each fit alone are 413
// too_large together, name the key of the one past it, and write
// nothing (a transaction of 128 such patches held the writer 92 s).
func TestTxnPatchesShareOneWorkBudget(t *testing.T) {
	e := newEnv(t, envOptions{})
	big := `{"n":0,"s":"` + strings.Repeat("x", 100_000) + `"}`
	e.put("a", big)
	e.put("b", big)
	rev := e.revision()
	// 100 operations on a value of 100 KB: three fifths of the budget.
	doc := "[" + strings.Repeat(`{"op":"test","path":"/n","value":0},`, 99) + `{"op":"replace","path":"/n","value":1}]`
	require.Less(t, 100*(len(big)+len(doc)), patch.WorkBytes)
	require.Greater(t, 2*100*(len(big)+len(doc)), patch.WorkBytes)

	r := e.do(http.MethodPost, "/v1/txn", `{"ops":[{"op":"put","key":"new","value":1},
		{"op":"patch","key":"a","patch":`+doc+`},{"op":"patch","key":"b","patch":`+doc+`}]}`)
	ae := requireError(t, r, http.StatusRequestEntityTooLarge, ctxd.CodeTooLarge)
	assert.Contains(t, ae.Error.Message, "default/b")
	assert.Equal(t, rev, e.revision(), "the transaction wrote nothing")

	r = e.do(http.MethodPatch, keyPath("default", "b"), doc, "Content-Type", jsonType)
	require.Equal(t, http.StatusOK, r.status, "one of them alone: %.200s", r.body)
}
