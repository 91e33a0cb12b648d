package main

import (
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/framework0/ctxd"
)

// ctxd txn applies its ops all or nothing, from arguments or from stdin
// (lines of ops, an array, a whole request): -n is the namespace of ops
// without one, --who (or the request's who) is recorded, a conflict exits
// 5 and a patch of a missing key 4 with nothing written, and a misspelt
// field (if_verison) is refused before anything is sent rather than
// turning a conditional write into an unconditional one.
func TestCLITxn(t *testing.T) {
	t.Parallel()
	srv := startServer(t, t.TempDir())
	env := []string{"CTXD_SERVER=" + checkedURL(t, srv)}
	txnJSON := func(t *testing.T, stdin string, args ...string) ctxd.TxnResult {
		t.Helper()
		return fromJSON[ctxd.TxnResult](t, cliOK(t, env, stdin, append([]string{"txn", "-o", "json"}, args...)...))
	}
	get := func(key string, args ...string) string {
		return strings.TrimSpace(cliOK(t, env, "", append([]string{"get", key}, args...)...))
	}
	cliOK(t, env, "", "put", "gone", "1")
	cliOK(t, env, "", "put", "cfg", `{"a":1}`)

	// Arguments: a put that must create, a delete and a patch, in one
	// transaction; -n for the ops without ns.
	res := txnJSON(t, "", "-n", "team",
		`{"op":"put","key":"leader","value":"ann","if_version":0}`,
		`{"op":"delete","ns":"default","key":"gone"}`,
		`{"op":"patch","ns":"default","key":"cfg","patch":{"b":2}}`)
	require.Len(t, res.Records, 3)
	assert.Equal(t, "team", res.Records[0].Namespace)
	assert.Equal(t, uint64(1), res.Records[0].Version)
	assert.Equal(t, "tester", res.Records[0].Who, "--who defaults to $USER")
	assert.Equal(t, res.Records[2].ModRev, res.Revision)
	assert.Equal(t, "ann", get("leader", "-n", "team"))
	assert.Equal(t, 4, cli(t, env, "", "get", "gone").code)
	assert.JSONEq(t, `{"a":1,"b":2}`, get("cfg"))

	// The table: a row per op, in order.
	cliOK(t, env, "", "put", "t0", "0")
	out := cliOK(t, env, "", "txn", `{"op":"put","key":"t1","value":1}`, `{"op":"delete","key":"t0"}`)
	lines := strings.Split(strings.TrimSpace(out), "\n")
	require.Len(t, lines, 3, out)
	assert.Equal(t, []string{"OP", "NS", "KEY", "VERSION"}, strings.Fields(lines[0])[:4])
	assert.Equal(t, []string{"put", "default", "t1", "1"}, strings.Fields(lines[1])[:4])
	assert.Equal(t, []string{"delete", "default", "t0", "1"}, strings.Fields(lines[2])[:4])
	assert.Contains(t, lines[2], "(deleted)")

	// All or nothing: the conflict on leader writes nothing else.
	before := get("cfg", "-o", "json")
	r := cli(t, env, "", "txn", "-n", "team",
		`{"op":"put","key":"other","value":1}`,
		`{"op":"put","key":"leader","value":"bob","if_version":0}`)
	assert.Equal(t, 5, r.code, r.stderr)
	assert.Contains(t, r.stderr, "team/leader")
	assert.Equal(t, 4, cli(t, env, "", "get", "other", "-n", "team").code, "nothing written")
	r = cli(t, env, "", "txn", `{"op":"put","key":"x","value":1}`, `{"op":"patch","key":"missing","patch":{}}`)
	assert.Equal(t, 4, r.code, r.stderr)
	assert.Equal(t, 4, cli(t, env, "", "get", "x").code, "nothing written")

	// Refused before sending: a misspelt field, two values in one
	// argument, no ops at all.
	for _, args := range [][]string{
		{`{"op":"put","key":"x","value":1,"if_verison":3}`},
		{`{"op":"put","key":"x","value":1} {"op":"delete","key":"y"}`},
		{`not json`},
		{`null`},
		{},
	} {
		r := cli(t, env, "", append([]string{"txn"}, args...)...)
		assert.Equal(t, 2, r.code, "txn %v: %s", args, r.stderr)
	}
	// A null op decodes as an op with nothing in it: refused here, not by
	// the server (exit 1), however stdin holds it.
	for _, in := range []string{`null`, `[null]`, `{"ops":[null]}`, `{"op":"put","key":"x","value":1} null`} {
		r := cli(t, env, in, "txn")
		assert.Equal(t, 2, r.code, "txn <<< %s: %s", in, r.stderr)
		assert.Contains(t, r.stderr, "not null", in)
	}
	r = cli(t, env, `{"op":"put","key":"x","value":1}`+"\n"+`{"op":"put","key":"y","value":2,"iff_version":0}`, "txn")
	assert.Equal(t, 2, r.code, r.stderr)
	assert.Contains(t, r.stderr, "op 2")
	assert.Equal(t, 4, cli(t, env, "", "get", "x").code, "nothing written")
	r = cli(t, env, `{"ops":"x"}`, "txn")
	assert.Equal(t, 2, r.code, r.stderr)
	assert.Contains(t, r.stderr, `"ops" must be an array, not a string`, "in JSON's words")
	assert.NotContains(t, r.stderr, "Go struct field", "not Go's types")
	assert.Equal(t, before, get("cfg", "-o", "json"), "cfg untouched by every refused txn")

	// stdin: ops one per line, an array (with -), a whole request whose
	// who is recorded unless --who is given.
	res = txnJSON(t, `{"op":"put","key":"l1","value":1}`+"\n"+`{"op":"put","key":"l2","value":{"n":2},"ttl":"1h"}`+"\n")
	require.Len(t, res.Records, 2)
	assert.NotNil(t, res.Records[1].ExpiresAt, "the ttl of an op")
	res = txnJSON(t, `[{"op":"put","key":"l1","value":10,"if_version":1}]`, "-")
	assert.Equal(t, uint64(2), res.Records[0].Version)
	res = txnJSON(t, `{"who":"deployer","ops":[{"op":"put","key":"l3","value":3}]}`)
	assert.Equal(t, "deployer", res.Records[0].Who)
	res = txnJSON(t, `{"who":"deployer","ops":[{"op":"put","key":"l3","value":4}]}`, "--who", "ops-team")
	assert.Equal(t, "ops-team", res.Records[0].Who, "--who wins over the request's")
	res = txnJSON(t, `{"who":"deployer","ops":[{"op":"put","key":"l3","value":5}]}`, "--who", "")
	assert.Equal(t, "cli", res.Records[0].Who, "an empty --who is the CLI's default")
	assert.Equal(t, "5", get("l3"))
}
