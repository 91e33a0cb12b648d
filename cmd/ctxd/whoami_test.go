package main

import (
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"

	"github.com/framework0/ctxd"
	"github.com/framework0/ctxd/auth"
	"github.com/framework0/ctxd/internal/testkit"
)

// ctxd whoami says what the token may do, in a table and as the API's
// JSON, for each kind of token of a real tokens file; an unknown token,
// and one a SIGHUP reload removed, exit 1 as every command does for a
// 401; without access control it says that everything is allowed.
func TestWhoami(t *testing.T) {
	dir := t.TempDir()
	ops, board, deployer, scraper := auth.NewSecret(), auth.NewSecret(), auth.NewSecret(), auth.NewSecret()
	entries := testkit.TokenEntry("ops", ops, "    roles: [admin]\n") +
		testkit.TokenEntry("board", board, "    roles: [read]\n") +
		testkit.TokenEntry("scraper", scraper, "    roles: [metrics]\n")
	tokensPath := writeFile(t, filepath.Join(dir, "tokens.yaml"), "tokens:\n"+entries+
		testkit.TokenEntry("deployer", deployer, "    roles: [write]\n    namespaces: [staging, prod]\n    prefixes: [deploy/, \"my app/\"]\n"))
	srv := startServer(t, filepath.Join(dir, "data"), "--config",
		writeFile(t, filepath.Join(dir, "ctxd.yaml"), "auth:\n  mode: on\n  tokens_file: "+tokensPath+"\n"))
	checked := checkedURL(t, srv)
	env := func(token string) []string { return []string{"CTXD_SERVER=" + checked, "CTXD_TOKEN=" + token} }

	assert.Equal(t, "token:         deployer\n"+
		"roles:         write\n"+
		"may:           read, write\n"+
		"namespaces:    staging prod\n"+
		"key prefixes:  deploy/ 'my app/'\n", cliOK(t, env(deployer), "", "whoami"))
	assert.Equal(t, ctxd.TokenInfo{AccessControl: true, Name: "deployer", Roles: []string{"write"}, Rights: []string{"read", "write"},
		Namespaces: []string{"staging", "prod"}, Prefixes: []string{"deploy/", "my app/"}},
		fromJSON[ctxd.TokenInfo](t, cliOK(t, env(deployer), "", "whoami", "-o", "json")))
	// A metrics token is not limited, but may read no key: its
	// namespaces and prefixes are none, not "all".
	for _, tc := range []struct {
		secret, name, rights, limits string
	}{
		{ops, "ops", "read, write, metrics, admin", "all"},
		{board, "board", "read", "all"},
		{scraper, "scraper", "metrics", "none (it may not read keys)"},
	} {
		out := cliOK(t, env(tc.secret), "", "whoami")
		assert.Contains(t, out, "token:         "+tc.name+"\n", out)
		assert.Contains(t, out, "may:           "+tc.rights+"\n", out)
		assert.Contains(t, out, "namespaces:    "+tc.limits+"\nkey prefixes:  "+tc.limits+"\n", out)
	}

	r := cli(t, env(auth.NewSecret()), "", "whoami")
	assert.Equal(t, 1, r.code, r.stderr)
	assert.Contains(t, r.stderr, "access token is not valid")
	r = cli(t, env(ops), "", "whoami", "-o", "value")
	assert.Equal(t, 2, r.code, "no value format: %s", r.stderr)

	// board removed by a reload: refused from then on.
	writeFile(t, tokensPath, "tokens:\n"+testkit.TokenEntry("ops", ops, "    roles: [admin]\n"))
	srv.Signal(syscall.SIGHUP)
	waitFor(t, "the tokens reloaded", func() bool { return strings.Contains(srv.Stderr.String(), "SIGHUP: tokens reloaded") })
	r = cli(t, env(board), "", "whoami")
	assert.Equal(t, 1, r.code, r.stderr)
	assert.Contains(t, r.stderr, "401 unauthorized")
	srv.Signal(syscall.SIGTERM)
	assert.Equal(t, 0, srv.Wait(20*time.Second), srv.Stderr.String())

	open := startServer(t, filepath.Join(dir, "data-open"))
	out := cliOK(t, []string{"CTXD_SERVER=" + checkedURL(t, open)}, "", "whoami", "-o", "json")
	assert.Equal(t, ctxd.TokenInfo{Roles: []string{"admin"}, Rights: []string{"read", "write", "metrics", "admin"}},
		fromJSON[ctxd.TokenInfo](t, out))
}
