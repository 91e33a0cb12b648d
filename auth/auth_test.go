package auth

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/framework0/ctxd"
)

func tokensFile(entries ...string) string {
	return "tokens:\n" + strings.Join(entries, "")
}

func entry(name, secret, roles string, extra ...string) string {
	s := "  - name: " + name + "\n    hash: " + HashSecret(secret) + "\n    roles: [" + roles + "]\n"
	for _, e := range extra {
		s += "    " + e + "\n"
	}
	return s
}

var (
	secretAdmin = NewSecret()
	secretRead  = NewSecret()
	secretLim   = NewSecret()
)

func TestSecretAndHash(t *testing.T) {
	s := NewSecret()
	assert.True(t, strings.HasPrefix(s, SecretPrefix))
	assert.Len(t, s, len(SecretPrefix)+43)
	assert.NotEqual(t, s, NewSecret())
	require.NoError(t, CheckSecret(s))
	assert.ErrorIs(t, CheckSecret("short"), ErrWeakSecret)
	assert.ErrorIs(t, CheckSecret(strings.Repeat("a", 40)+" b"), ErrWeakSecret)
	// The SHA-256 of "test".
	assert.Equal(t, "sha256:9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08", HashSecret("test"))
}

func TestRolesAndLimits(t *testing.T) {
	ts, err := ParseTokens([]byte(tokensFile(
		entry("ops", secretAdmin, "admin"),
		entry("board", secretRead, "read"),
		entry("ci", secretLim, "write", "namespaces: [staging, prod]", "prefixes: [deploy/, app.]"),
	)))
	require.NoError(t, err)
	assert.Equal(t, 3, ts.Len())

	admin, read, lim := ts.Lookup(secretAdmin), ts.Lookup(secretRead), ts.Lookup(secretLim)
	require.NotNil(t, admin)
	require.NotNil(t, read)
	require.NotNil(t, lim)
	assert.Nil(t, ts.Lookup("ctxd_nope"))
	assert.Nil(t, ts.Lookup(""))

	assert.True(t, admin.Has(RoleAdmin) && admin.Has(RoleWrite) && admin.Has(RoleRead) && admin.Has(RoleMetrics))
	assert.True(t, admin.CanWrite("x", "y"))
	assert.True(t, read.CanRead("any", "key"))
	assert.False(t, read.CanWrite("any", "key"))
	assert.False(t, read.Has(RoleMetrics))

	assert.True(t, lim.CanWrite("staging", "deploy/v"))
	assert.True(t, lim.CanRead("prod", "app.x"))
	assert.False(t, lim.CanRead("default", "deploy/v"))
	assert.False(t, lim.CanWrite("staging", "other"))
	assert.True(t, lim.CanReadPrefix("staging", "deploy/prod/"))
	assert.False(t, lim.CanReadPrefix("staging", ""))
	assert.False(t, lim.CanWriteAll("staging"))
	assert.True(t, lim.SeesNamespace("prod"))
	assert.False(t, lim.SeesNamespace("default"))
	assert.Contains(t, lim.Describe(), `token "ci" (roles write; namespaces staging,prod; key prefixes deploy/,app.)`)

	var none *Token // no access control
	assert.True(t, none.CanWrite("a", "b") && none.Has(RoleAdmin) && none.Unlimited())

	// What counts may count: prefixes none inside another.
	assert.Equal(t, []string{""}, none.ReadablePrefixes("a"))
	assert.Equal(t, []string{""}, read.ReadablePrefixes("a"))
	assert.Equal(t, []string{"app.", "deploy/"}, lim.ReadablePrefixes("prod"))
	assert.Empty(t, lim.ReadablePrefixes("default"))
	nested := &Token{Name: "n", Prefixes: []string{"a/b/", "a/", "c", "a/c"}, rights: RoleRead}
	assert.Equal(t, []string{"a/", "c"}, nested.ReadablePrefixes("x"))
}

func TestParseErrors(t *testing.T) {
	h := HashSecret(secretAdmin)
	for name, tc := range map[string]struct{ file, want string }{
		"empty":         {"", "no tokens"},
		"no tokens":     {"tokens: []\n", "no tokens"},
		"unknown field": {"tokens:\n  - name: a\n    hash: " + h + "\n    roles: [read]\n    role: x\n", "field role not found"},
		"bad hash":      {"tokens:\n  - name: a\n    hash: abc\n    roles: [read]\n", "64 hex digits"},
		"no roles":      {"tokens:\n  - name: a\n    hash: " + h + "\n", "at least one"},
		"bad role":      {tokensFile(entry("a", secretAdmin, "root")), "unknown role"},
		"bad ns":        {tokensFile(entry("a", secretAdmin, "read", "namespaces: [a/b]")), "not a namespace"},
		"empty prefix":  {tokensFile(entry("a", secretAdmin, "read", `prefixes: [""]`)), "empty prefix"},
		// An emptied list (to revoke, or from an empty template variable)
		// would allow everything: refused, where it granted all.
		"no namespaces":   {tokensFile(entry("a", secretAdmin, "write", "namespaces: []")), `an empty list would allow every namespace: leave "namespaces" out`},
		"null namespaces": {tokensFile(entry("a", secretAdmin, "write", "namespaces:")), "an empty list would allow every namespace"},
		"no prefixes":     {tokensFile(entry("a", secretAdmin, "write", "prefixes: []")), `an empty list would allow every key: leave "prefixes" out`},
		"bad prefixes":    {tokensFile(entry("a", secretAdmin, "write", "prefixes: {a: 1}")), "prefixes: line 5: cannot unmarshal !!map into a list, such as [read]"},
		"roles not a seq": {"tokens:\n  - name: a\n    hash: " + h + "\n    roles: read\n", "line 4: cannot unmarshal !!str `read` into a list, such as [read]"},
		"entry not a map": {"tokens:\n  - a\n", "line 2: cannot unmarshal !!str `a` into a token (name, hash, roles, namespaces, prefixes)"},
		"limited admin":   {tokensFile(entry("a", secretAdmin, "admin", "namespaces: [x]")), "cannot be limited"},
		"dup name":        {tokensFile(entry("a", secretAdmin, "read"), entry("a", secretRead, "read")), "used twice"},
		"dup hash":        {tokensFile(entry("a", secretAdmin, "read"), entry("b", secretAdmin, "read")), "same hash"},
		"name w/ space":   {tokensFile(entry("'a b'", secretAdmin, "read")), "printable"},
		"not a mapping":   {"- a\n", "line 1: cannot unmarshal !!seq into a mapping with \"tokens:\""},
		"tokens not seq":  {"tokens: 3\n", "line 1: cannot unmarshal !!int `3` into a list of tokens (- name: ...)"},
		// The second document's tokens were ignored, without a word.
		"two documents": {tokensFile(entry("a", secretAdmin, "read")) + "---\n" + tokensFile(entry("b", secretRead, "read")),
			"line 5: a second YAML document (after ---): put every token in one"},
	} {
		t.Run(name, func(t *testing.T) {
			_, err := ParseTokens([]byte(tc.file))
			require.Error(t, err)
			assert.Contains(t, err.Error(), tc.want)
		})
	}
}

// Info says what a token may do: the roles given, the rights they
// imply, its limits (copies); a nil token (access control off) may do
// everything.
func TestInfo(t *testing.T) {
	ts, err := ParseTokens([]byte(tokensFile(
		entry("ops", secretAdmin, "admin"),
		entry("ci", secretLim, "write", "namespaces: [staging]", "prefixes: [deploy/]"),
	)))
	require.NoError(t, err)
	all := []string{"read", "write", "metrics", "admin"}
	assert.Equal(t, ctxd.TokenInfo{AccessControl: true, Name: "ops", Roles: []string{"admin"}, Rights: all}, ts.Lookup(secretAdmin).Info())
	ci := ts.Lookup(secretLim)
	info := ci.Info()
	assert.Equal(t, ctxd.TokenInfo{AccessControl: true, Name: "ci", Roles: []string{"write"}, Rights: []string{"read", "write"},
		Namespaces: []string{"staging"}, Prefixes: []string{"deploy/"}}, info)
	info.Prefixes[0] = "x"
	assert.Equal(t, []string{"deploy/"}, ci.Prefixes, "a copy: the token's limits stay")
	var none *Token
	assert.Equal(t, ctxd.TokenInfo{Roles: []string{"admin"}, Rights: all}, none.Info())
	assert.True(t, none.Info().May("write"))
	assert.False(t, info.May("admin"))
}

// A reload keeps unchanged tokens (same object: connections go on) and
// revokes removed or changed ones, then tells the OnRevoke functions
// (once the revoked tokens' checks fail); Successor tells a changed token
// (its secret opens the new one) from a removed one; a bad file, or a reload that
// revokes nothing, changes nothing and tells no one.
func TestReload(t *testing.T) {
	path := filepath.Join(t.TempDir(), "tokens.yaml")
	write := func(s string) { require.NoError(t, os.WriteFile(path, []byte(s), 0o600)) }
	write(tokensFile(entry("ops", secretAdmin, "admin"), entry("board", secretRead, "read"), entry("ci", secretLim, "write")))
	a, err := NewAuthorizer(path, Options{})
	require.NoError(t, err)
	ops, board, ci := a.Authenticate(secretAdmin), a.Authenticate(secretRead), a.Authenticate(secretLim)
	require.NotNil(t, ops)
	told := 0
	a.OnRevoke(func() {
		told++
		assert.True(t, board.Revoked(), "told before the token is revoked")
	})

	_, revoked, err := a.Reload() // the same file
	require.NoError(t, err)
	assert.Zero(t, revoked)
	assert.Zero(t, told)

	// board removed, ci changed, ops kept.
	write(tokensFile(entry("ops", secretAdmin, "admin"), entry("ci", secretLim, "read")))
	loaded, revoked, err := a.Reload()
	require.NoError(t, err)
	assert.Equal(t, 2, loaded)
	assert.Equal(t, 2, revoked)
	assert.Equal(t, 1, told)
	assert.Same(t, ops, a.Authenticate(secretAdmin))
	assert.False(t, ops.Revoked())
	assert.True(t, board.Revoked())
	assert.False(t, board.CanRead("default", "x"))
	assert.Nil(t, a.Authenticate(secretRead))
	assert.True(t, ci.Revoked())
	ci2 := a.Authenticate(secretLim)
	require.NotNil(t, ci2)
	assert.True(t, ci2.CanRead("default", "x"))
	assert.False(t, ci2.CanWrite("default", "x"))
	assert.NotEqual(t, ci.Key(), ci2.Key())
	assert.Same(t, ops, a.Successor(ops), "kept: itself")
	assert.Same(t, ci2, a.Successor(ci), "changed: the token of its secret, with the new rights")
	assert.Nil(t, a.Successor(board), "removed: none")
	assert.Equal(t, []string{}, board.Info().Rights, "a revoked token may do nothing")
	assert.Equal(t, []string{"read"}, board.Info().Roles, "what the file gave it")

	write("tokens: [")
	_, _, err = a.Reload()
	require.Error(t, err)
	assert.Same(t, ops, a.Authenticate(secretAdmin), "a bad file keeps the tokens in use")
	assert.Equal(t, 1, told)
}

// A reload that only reorders a token's namespaces or prefixes keeps the
// token: its rights are the same, and its connections must not be closed
// as if they had changed.
func TestReloadKeepsATokenWhoseLimitsAreReordered(t *testing.T) {
	path := filepath.Join(t.TempDir(), "tokens.yaml")
	write := func(s string) { require.NoError(t, os.WriteFile(path, []byte(s), 0o600)) }
	write(tokensFile(entry("ci", secretLim, "write", "namespaces: [staging, prod]", "prefixes: [deploy/, app.]")))
	a, err := NewAuthorizer(path, Options{})
	require.NoError(t, err)
	ci := a.Authenticate(secretLim)
	require.NotNil(t, ci)

	write(tokensFile(entry("ci", secretLim, "write", "namespaces: [prod, staging]", "prefixes: [app., deploy/]")))
	_, revoked, err := a.Reload()
	require.NoError(t, err)
	assert.Zero(t, revoked)
	assert.False(t, ci.Revoked())
	assert.Same(t, ci, a.Authenticate(secretLim))

	write(tokensFile(entry("ci", secretLim, "write", "namespaces: [prod]", "prefixes: [app., deploy/]")))
	_, revoked, err = a.Reload()
	require.NoError(t, err)
	assert.Equal(t, 1, revoked, "a namespace taken away is a change")
	assert.True(t, ci.Revoked())
}
