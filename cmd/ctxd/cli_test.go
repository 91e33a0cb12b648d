package main

import (
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/framework0/ctxd"
	"github.com/framework0/ctxd/internal/testkit"
	"github.com/framework0/ctxd/internal/testkit/etcdkit"
	"github.com/framework0/ctxd/migrations"
	"github.com/framework0/ctxd/store/etcd"
)

func TestCLIAgainstServer(t *testing.T) {
	t.Parallel()
	srv := startServer(t, t.TempDir())
	env := []string{"CTXD_SERVER=" + checkedURL(t, srv)}

	// run expects exit code 0 and returns stdout.
	run := func(t *testing.T, stdin string, args ...string) string {
		t.Helper()
		return cliOK(t, env, stdin, args...)
	}
	// recordJSON runs put or get with -o json and returns the record.
	recordJSON := func(t *testing.T, args ...string) ctxd.Record {
		t.Helper()
		return fromJSON[ctxd.Record](t, run(t, "", append(args, "-o", "json")...))
	}

	// A value that is not JSON is stored as a JSON string; JSON is stored as is.
	out := run(t, "", "put", "greeting", "hello")
	assert.Contains(t, out, "greeting")
	assert.Contains(t, out, `"hello"`)
	assert.Equal(t, "hello\n", run(t, "", "get", "greeting"))
	rec := recordJSON(t, "get", "greeting")
	assert.Equal(t, `"hello"`, string(rec.Value))
	assert.Equal(t, "tester", rec.Who, "--who defaults to $USER")

	n1 := recordJSON(t, "put", "n", "42")
	assert.Equal(t, "42", string(n1.Value))
	assert.Equal(t, uint64(1), n1.Version)
	assert.Equal(t, "default", n1.Namespace)

	assert.Equal(t, `"42"`, string(recordJSON(t, "put", "s42", "42", "--string").Value))
	assert.Equal(t, `"42"`, string(recordJSON(t, "put", "q42", `"42"`).Value))
	obj := recordJSON(t, "put", "app/config", `{"debug": true, "level": 3}`, "--who", "deployer")
	assert.JSONEq(t, `{"debug":true,"level":3}`, string(obj.Value))
	assert.Equal(t, "deployer", obj.Who)
	assert.Equal(t, `{"debug":true,"level":3}`+"\n", run(t, "", "get", "app/config"))

	// - reads the value from stdin: JSON as JSON, anything else as a string.
	run(t, "[1, 2, 3]\n", "put", "list", "-")
	assert.JSONEq(t, "[1,2,3]", string(recordJSON(t, "get", "list").Value))
	run(t, "from stdin\n", "put", "text", "-")
	assert.Equal(t, "from stdin\n", run(t, "", "get", "text"))

	// Compare-and-swap.
	n2 := recordJSON(t, "put", "n", "43", "--if-version", "1")
	assert.Equal(t, uint64(2), n2.Version)
	r := cli(t, env, "", "put", "n", "44", "--if-version", "1")
	assert.Equal(t, 5, r.code, r.stderr)
	assert.Contains(t, r.stderr, "conflict")
	assert.Equal(t, 5, cli(t, env, "", "put", "n", "44", "--if-version", "0").code)
	assert.Equal(t, uint64(1), recordJSON(t, "put", "fresh", "1", "--if-version", "0").Version)
	assert.Equal(t, "43\n", run(t, "", "get", "n"))

	// Point-in-time read.
	assert.Equal(t, "42\n", run(t, "", "get", "n", "--rev", strconv.FormatUint(n1.ModRev, 10)))

	// ls: table, value, prefix, paging.
	out = run(t, "", "ls")
	for _, k := range []string{"KEY", "greeting", "n", "app/config", "list", "text"} {
		assert.Contains(t, out, k)
	}
	assert.Equal(t, "app/config\n", run(t, "", "ls", "app/", "-o", "value"))
	r = cli(t, env, "", "ls", "--limit", "2", "-o", "value")
	require.Equal(t, 0, r.code, r.stderr)
	assert.Equal(t, "app/config\nfresh\n", r.stdout)
	assert.Contains(t, r.stderr, `--after fresh,`)
	assert.Equal(t, "greeting\nlist\n", run(t, "", "ls", "--limit", "2", "--after", "fresh", "-o", "value"))
	page := fromJSON[ctxd.ListPage](t, run(t, "", "ls", "--all", "-o", "json"))
	assert.Len(t, page.Records, 8)
	assert.Empty(t, page.Next)

	// history, newest first.
	hist := fromJSON[ctxd.HistoryPage](t, run(t, "", "history", "n", "-o", "json"))
	require.Len(t, hist.Changes, 2)
	assert.Equal(t, n2.ModRev, hist.Changes[0].Revision)
	assert.Equal(t, "43", string(hist.Changes[0].Value))
	assert.Equal(t, n1.ModRev, hist.Changes[1].Revision)
	assert.Equal(t, "43\n42\n", run(t, "", "history", "n", "-o", "value"))
	out = run(t, "", "history", "n")
	assert.Contains(t, out, "REVISION")
	assert.Contains(t, out, "put")

	// del, with and without --if-version.
	assert.Equal(t, 5, cli(t, env, "", "del", "n", "--if-version", "1").code)
	out = run(t, "", "del", "n", "--if-version", "2")
	assert.Contains(t, out, "(deleted)")
	r = cli(t, env, "", "get", "n")
	assert.Equal(t, 4, r.code, r.stderr)
	assert.Equal(t, "", r.stdout)
	assert.Equal(t, 4, cli(t, env, "", "del", "n").code)
	assert.Regexp(t, `(?m)^\d+\s+delete\s+2\s+.*\(deleted\)$`, run(t, "", "history", "n"), "a delete's VALUE, as del and watch print it")

	// Namespaces.
	run(t, "", "put", "-n", "team", "k", "v")
	assert.Equal(t, "k\n", run(t, "", "ls", "-n", "team", "-o", "value"))
	assert.Equal(t, 4, cli(t, env, "", "get", "k").code, "k is in team, not default")
	assert.Equal(t, "default\nteam\n", run(t, "", "ns", "-o", "value"))

	// status.
	st := fromJSON[ctxd.ServerStatus](t, run(t, "", "status", "-o", "json"))
	assert.Equal(t, "test", st.Version)
	assert.Equal(t, uint64(11), st.Revision)
	assert.Equal(t, uint64(8), st.Keys)
	assert.Contains(t, run(t, "", "status"), "revision:")

	// --server beats CTXD_SERVER; a bare host:port is fine.
	r = cli(t, []string{"CTXD_SERVER=http://127.0.0.1:1"}, "", "get", "greeting", "--server", srv.Addr)
	assert.Equal(t, 0, r.code, r.stderr)
	assert.Equal(t, "hello\n", r.stdout)

	// Errors from the server that are neither 404 nor 409 exit 1.
	r = cli(t, env, "", "put", "-n", "bad/ns", "k", "v")
	assert.Equal(t, 1, r.code)
	assert.Contains(t, r.stderr, "bad_request")

	// An empty --who is the CLI's default for an empty $USER, not the
	// server's (api) for a request that names no one.
	assert.Equal(t, "cli", recordJSON(t, "put", "nobody", "1", "--who", "").Who)
}

// ctxd status says when the server has an alarm, with its message: the
// table showed none, so an operator asking why writes answered 507 (or
// 503, and /readyz 503, for a failed store) saw a status like any other.
func TestStatusShowsTheAlarm(t *testing.T) {
	t.Parallel()
	srv := startServer(t, t.TempDir(), "--storage-quota", "1MiB")
	env := []string{"CTXD_SERVER=" + srv.URL}
	assert.NotContains(t, cliOK(t, env, "", "status"), "alarm")
	value := `"` + strings.Repeat("x", 256<<10) + `"`
	for i := 0; ; i++ {
		require.Less(t, i, 16, "the quota was never reached")
		if r := cli(t, env, value, "put", fmt.Sprintf("k%d", i), "-"); r.code != 0 {
			require.Contains(t, r.stderr, "insufficient_storage")
			break
		}
	}
	assert.Regexp(t, `(?m)^alarm:\s+insufficient_storage: storage quota exceeded: `, cliOK(t, env, "", "status"))
}

func TestExitCodes(t *testing.T) {
	t.Parallel()
	srv := startServer(t, t.TempDir())
	env := []string{"CTXD_SERVER=" + checkedURL(t, srv)}

	closed := "http://" + testkit.FreeAddr(t)
	closedTLS := "https://" + strings.TrimPrefix(closed, "http://")

	badConfig := filepath.Join(t.TempDir(), "bad.yaml")
	require.NoError(t, os.WriteFile(badConfig, []byte("addr: 127.0.0.1:0\nlimits:\n  max_keys: 3\n"), 0o600))
	// etcd.ca_file naming a file with no certificate in it, on line 5.
	notPEM := filepath.Join(t.TempDir(), "ca.pem")
	require.NoError(t, os.WriteFile(notPEM, []byte("not a certificate\n"), 0o600))
	badCAConfig := filepath.Join(t.TempDir(), "ca.yaml")
	require.NoError(t, os.WriteFile(badCAConfig, []byte("store:\n  backend: etcd\netcd:\n  endpoints: "+closedTLS+"\n  ca_file: "+notPEM+"\n"), 0o600))

	// An etcd deployment, whose prefix another may not lie inside.
	endpoint := etcdkit.Shared(t).Endpoint
	outer := etcdkit.Prefix(etcdkit.Name(t))
	deployment, err := etcd.Open(etcd.Options{Endpoints: []string{endpoint}, Prefix: outer})
	require.NoError(t, err)
	require.NoError(t, deployment.Close())
	onEtcd := []string{"CTXD_STORE_BACKEND=etcd", "CTXD_ETCD_ENDPOINTS=" + endpoint}

	tests := []struct {
		name   string
		env    []string
		args   []string
		code   int
		stderr string
	}{
		{name: "ok", env: env, args: []string{"status"}, code: 0},
		{name: "version", args: []string{"version"}, code: 0},
		{name: "get missing key", env: env, args: []string{"get", "missing"}, code: 4, stderr: "not found"},
		{name: "history of missing key", env: env, args: []string{"history", "missing"}, code: 4},
		{name: "del missing key", env: env, args: []string{"del", "missing"}, code: 4},
		{name: "put expecting a version of a missing key", env: env, args: []string{"put", "missing", "1", "--if-version", "3"}, code: 5, stderr: "conflict"},
		{name: "closed port", args: []string{"get", "k", "--server", closed}, code: 3, stderr: "connection refused"},
		{name: "closed port from env", env: []string{"CTXD_SERVER=" + closed}, args: []string{"status"}, code: 3},
		// Several instances: a closed port, then the server (reached: the key is missing).
		{name: "closed port, then the server", args: []string{"get", "missing", "--server", closed + "," + strings.TrimPrefix(env[0], "CTXD_SERVER=")}, code: 4, stderr: "not found"},
		{name: "closed ports only", env: []string{"CTXD_SERVER=" + closed + "," + closed + "/x"}, args: []string{"status"}, code: 3},
		{name: "unknown flag", env: env, args: []string{"get", "k", "--bogus"}, code: 2, stderr: "unknown flag: --bogus"},
		{name: "unknown shorthand", env: env, args: []string{"put", "k", "-5"}, code: 2},
		{name: "missing argument", env: env, args: []string{"put", "k"}, code: 2, stderr: "put needs 2 argument(s)"},
		{name: "extra argument", env: env, args: []string{"get", "a", "b"}, code: 2},
		{name: "unknown command", args: []string{"frobnicate"}, code: 2, stderr: `unknown command "frobnicate"`},
		{name: "bad flag value", env: env, args: []string{"get", "k", "--rev", "x"}, code: 2},
		// Revision 0 is refused as the server refuses ?rev=0, not read as
		// "no --rev" (the current value, the newest history, a live dump).
		{name: "get at revision 0", env: env, args: []string{"get", "missing", "--rev", "0"}, code: 2, stderr: "1 or more"},
		{name: "history before revision 0", env: env, args: []string{"history", "missing", "--before", "0"}, code: 2, stderr: "1 or more"},
		{name: "dump at revision 0", env: env, args: []string{"dump", "--rev", "0"}, code: 2, stderr: "1 or more"},
		{name: "bad output format", env: env, args: []string{"get", "k", "-o", "xml"}, code: 2, stderr: `unknown output format "xml"`},
		{name: "value output not offered", env: env, args: []string{"status", "-o", "value"}, code: 2},
		{name: "bad server URL", args: []string{"get", "k", "--server", "ftp://x"}, code: 2},
		{name: "bad server URL in a list", args: []string{"get", "k", "--server", closed + ",ftp://x"}, code: 2, stderr: "ftp://x"},
		{name: "server listed twice", args: []string{"get", "k", "--server", closed + "," + closed}, code: 2, stderr: "listed twice"},
		{name: "empty server in a list", args: []string{"get", "k", "--server", closed + ","}, code: 2, stderr: "an empty address in the list"},
		{name: "negative timeout", env: env, args: []string{"get", "k", "--timeout", "-1s"}, code: 2, stderr: "--timeout -1s"},
		{name: "serve with unknown config field", args: []string{"serve", "--config", badConfig, "--data", t.TempDir()}, code: 2, stderr: "limits.max_keys"},
		{name: "serve with missing config file", args: []string{"serve", "--config", badConfig + ".nope"}, code: 2, stderr: "no such file"},
		// perf's flags are checked before anything runs (these exited 1
		// once the run began, or were accepted).
		{name: "perf with a bad target URL", args: []string{"perf", "write-latency", "--target", "ftp://host:21"}, code: 2, stderr: "bad server URL"},
		{name: "perf with more targets and no target", args: []string{"perf", "write-latency", "--more-targets", closed}, code: 2, stderr: "give --target"},
		{name: "perf destructive without a target", args: []string{"perf", "write-latency", "--destructive"}, code: 2, stderr: "--destructive"},
		{name: "perf server log level with a target", args: []string{"perf", "write-latency", "--target", closed, "--server-log-level", "info"}, code: 2, stderr: "--server-log-level"},
		// etcd's TLS files are settings too: one that cannot be read is a
		// configuration error, as tls.cert_file's (it was exit 1), and
		// says where the setting came from, as every other one does.
		{name: "serve with a missing etcd CA file", args: []string{"serve", "--data", t.TempDir()},
			env: []string{"CTXD_STORE_BACKEND=etcd", "CTXD_ETCD_ENDPOINTS=" + closedTLS, "CTXD_ETCD_CA_FILE=/nonexistent/ca.pem"}, code: 2, stderr: "config: etcd.ca_file (env CTXD_ETCD_CA_FILE): "},
		{name: "serve with an etcd CA file of no certificate", args: []string{"serve", "--config", badCAConfig, "--data", t.TempDir()}, code: 2,
			stderr: "config: etcd.ca_file (file " + badCAConfig + ", line 5): " + notPEM + ": no PEM certificate in it"},
		{name: "serve with a missing etcd client certificate", args: []string{"serve", "--data", t.TempDir()},
			env: []string{"CTXD_STORE_BACKEND=etcd", "CTXD_ETCD_ENDPOINTS=" + closedTLS, "CTXD_ETCD_CERT_FILE=/nonexistent/c.pem", "CTXD_ETCD_KEY_FILE=/nonexistent/k.pem"}, code: 2,
			stderr: "config: etcd.cert_file (env CTXD_ETCD_CERT_FILE): with etcd.key_file (env CTXD_ETCD_KEY_FILE): "},
		{name: "serve with a missing TLS certificate", args: []string{"serve", "--data", t.TempDir()},
			env: []string{"CTXD_TLS_CERT_FILE=/nonexistent/c.pem", "CTXD_TLS_KEY_FILE=/nonexistent/k.pem"}, code: 2, stderr: "config: tls.cert_file (env CTXD_TLS_CERT_FILE): "},
		// etcd's client reaches an http:// endpoint in plain text whatever
		// the TLS settings: it started, and sent the password in the clear.
		{name: "serve with an etcd CA and an http endpoint", args: []string{"serve", "--data", t.TempDir()},
			env: []string{"CTXD_STORE_BACKEND=etcd", "CTXD_ETCD_ENDPOINTS=" + closed, "CTXD_ETCD_CA_FILE=/nonexistent/ca.pem"}, code: 2,
			stderr: "config: etcd.endpoints (env CTXD_ETCD_ENDPOINTS): " + closed + " is an http:// endpoint"},
		{name: "serve inside another deployment's etcd prefix", args: []string{"serve", "--data", t.TempDir()},
			env: append(onEtcd, "CTXD_ETCD_PREFIX="+outer+"k/default/"), code: 2, stderr: "config: etcd.prefix (env CTXD_ETCD_PREFIX): prefix " + outer + "k/default/ lies inside the prefix of another deployment, " + outer},
		{name: "serve with an etcd request timeout of 1ns", args: []string{"serve", "--data", t.TempDir()},
			env: append(onEtcd, "CTXD_ETCD_REQUEST_TIMEOUT=1ns"), code: 2, stderr: "config: etcd.request_timeout (env CTXD_ETCD_REQUEST_TIMEOUT): must be at least 1s"},
		// The tokens file's error says where auth.tokens_file was set, as
		// every other setting's does (it said "file PATH", as if the
		// setting came from a config file of that name).
		{name: "serve with a missing tokens file", args: []string{"serve", "--data", t.TempDir()},
			env: []string{"CTXD_AUTH_TOKENS_FILE=/nonexistent/tokens.yaml"}, code: 2,
			stderr: "config: auth.tokens_file (env CTXD_AUTH_TOKENS_FILE): /nonexistent/tokens.yaml: open /nonexistent/tokens.yaml: "},
		{name: "serve with bad env", env: []string{"CTXD_LOG_LEVEL=loud"}, args: []string{"serve", "--data", t.TempDir()}, code: 2, stderr: "log.level (env CTXD_LOG_LEVEL)"},
		{name: "serve with bad flag value", args: []string{"serve", "--addr", "nowhere", "--data", t.TempDir()}, code: 2, stderr: "config: addr (flag)"},
		{name: "serve with a negative quota", args: []string{"serve", "--storage-quota", "-1", "--data", t.TempDir()}, code: 2, stderr: `config: storage.quota_bytes (flag): invalid quota "-1"`},
		{name: "serve with a quota of a bad unit", env: []string{"CTXD_STORAGE_QUOTA_BYTES=1TB"}, args: []string{"serve", "--data", t.TempDir()}, code: 2, stderr: "storage.quota_bytes (env CTXD_STORAGE_QUOTA_BYTES)"},
		{name: "serve with an argument", args: []string{"serve", "extra"}, code: 2},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := cli(t, tt.env, "", tt.args...)
			assert.Equal(t, tt.code, r.code, "stdout %q stderr %q", r.stdout, r.stderr)
			if tt.stderr != "" {
				assert.Contains(t, r.stderr, tt.stderr)
			}
			if tt.code != 0 {
				assert.True(t, strings.HasPrefix(r.stderr, "ctxd: "), r.stderr)
			}
		})
	}
}

func TestVersionAndHelp(t *testing.T) {
	t.Parallel()
	r := cli(t, nil, "", "version")
	assert.Equal(t, 0, r.code)
	assert.True(t, strings.HasPrefix(r.stdout, "ctxd test ("), r.stdout)

	r = cli(t, nil, "", "--help")
	assert.Equal(t, 0, r.code)
	for _, c := range []string{"serve", "put", "get", "del", "ls", "history", "status", "migrate", "version"} {
		assert.Contains(t, r.stdout, c)
	}
}

func TestMigrateCommand(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	r := cli(t, nil, "", "migrate", "--data", dir, "--dry-run")
	assert.Equal(t, 1, r.code)
	assert.Contains(t, r.stderr, "no database at")

	// A database written by this binary is current. While a server holds
	// it, migrate says so instead of bbolt's bare "timeout".
	srv := startServer(t, dir)
	r = cli(t, nil, "", "migrate", "--data", dir, "--dry-run", "--lock-timeout", "300ms")
	assert.Equal(t, 1, r.code)
	assert.Contains(t, r.stderr, "in use by another process (is a server running on it?)")
	srv.Signal(syscall.SIGTERM)
	require.Equal(t, 0, srv.Wait(10*time.Second))
	r = cli(t, nil, "", "migrate", "--data", dir, "--dry-run")
	assert.Equal(t, 0, r.code, r.stderr)
	assert.Contains(t, r.stdout, "is current, nothing to do")
	r = cli(t, []string{"CTXD_DATA_DIR=" + dir}, "", "migrate")
	assert.Equal(t, 0, r.code, r.stderr)
	assert.Contains(t, r.stdout, "is current")
}

// --lock-timeout, of the commands that open a data folder's database file
// themselves. While a server holds the folder, a short one (0s: one try)
// fails with the same "in use" error. The server stops once they all
// have, or 3 s in: a command that waited the default 5 s instead gets the
// file then, and succeeds. A long one gets the file when the server stops
// during its wait. A negative one is a usage error naming the flag.
func TestLockTimeout(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	snapshot := filepath.Join(t.TempDir(), "schema1.db")
	require.NoError(t, os.WriteFile(snapshot, readFile(t, filepath.Join("..", "..", "migrations", "testdata", "schema1.db")), 0o600))
	commands := []struct {
		args     []string
		short    string
		negative string // what a negative timeout answers
	}{
		{[]string{"compact", "--data", dir}, "0s", "--lock-timeout -1s: must not be negative"},
		{[]string{"migrate", "--data", dir}, "300ms", "--lock-timeout -1s: must not be negative"},
		{[]string{"restore", "--data", dir, "--from", snapshot}, "0s", "--lock-timeout -1s: must not be negative"},
		// serve's is its storage.lock_timeout setting, whose flag it is.
		{[]string{"serve", "--addr", "127.0.0.1:0", "--data", dir}, "300ms", "storage.lock_timeout (flag): must be >= 0"},
	}
	for _, c := range commands {
		r := cli(t, nil, "", append(c.args, "--lock-timeout", "-1s")...)
		assert.Equal(t, 2, r.code, "%v: %s", c.args, r.stderr)
		assert.Contains(t, r.stderr, c.negative, c.args)
	}

	srv := startServer(t, dir)
	runs := make([]<-chan result, len(commands))
	for i, c := range commands {
		runs[i] = cliAsync(t, nil, append(c.args, "--lock-timeout", c.short)...)
	}
	results := make([]result, len(runs))
	gaveUp := make(chan struct{})
	go func() {
		for i, run := range runs {
			results[i] = <-run
		}
		close(gaveUp)
	}()
	select {
	case <-gaveUp:
	case <-time.After(3 * time.Second):
	}
	srv.Signal(syscall.SIGTERM)
	require.Equal(t, 0, srv.Wait(30*time.Second))
	select {
	case <-gaveUp:
	case <-time.After(10 * time.Second):
		t.Fatal("a command with a short --lock-timeout still runs: it waited longer, and got the folder once the server stopped")
	}
	for i, r := range results {
		assert.Equal(t, 1, r.code, "%v --lock-timeout %s: %s", commands[i].args, commands[i].short, r.stderr)
		assert.Contains(t, r.stderr, "in use by another process", commands[i].args)
	}

	srv = startServer(t, dir)
	offline := commands[:3]
	runs = runs[:len(offline)]
	for i, c := range offline {
		runs[i] = cliAsync(t, nil, append(c.args, "--lock-timeout", "10s")...)
	}
	time.Sleep(300 * time.Millisecond) // into their wait: the server stops while they wait
	srv.Signal(syscall.SIGTERM)
	require.Equal(t, 0, srv.Wait(30*time.Second))
	for i, run := range runs {
		r := <-run
		assert.Equal(t, 0, r.code, "%v --lock-timeout 10s: %s", offline[i].args, r.stderr)
	}
}

// The schema-1 fixture of package migrations: --dry-run prints the plan and
// leaves the file alone; migrate upgrades it; the server then serves its data.
func TestMigrateSchema1Fixture(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	fixture, err := os.ReadFile(filepath.Join("..", "..", "migrations", "testdata", "schema1.db"))
	require.NoError(t, err)
	db := filepath.Join(dir, dbFile)
	require.NoError(t, os.WriteFile(db, fixture, 0o600))

	r := cli(t, nil, "", "migrate", "--data", dir, "--dry-run")
	require.Equal(t, 0, r.code, r.stderr)
	cur := migrations.Current
	assert.Contains(t, r.stdout, fmt.Sprintf("schema 1 -> %d", cur))
	assert.Contains(t, r.stdout, "1 -> 2: ")
	assert.Contains(t, r.stdout, "2 -> 3: ")
	assert.Contains(t, r.stdout, "dry run: nothing changed")
	after, err := os.ReadFile(db)
	require.NoError(t, err)
	assert.Equal(t, fixture, after, "--dry-run changed the file")

	r = cli(t, nil, "", "migrate", "--data", dir)
	require.Equal(t, 0, r.code, r.stderr)
	assert.Contains(t, r.stdout, fmt.Sprintf("migrated to schema %d", cur))
	r = cli(t, nil, "", "migrate", "--data", dir, "--dry-run")
	require.Equal(t, 0, r.code, r.stderr)
	assert.Contains(t, r.stdout, fmt.Sprintf("schema %d is current", cur))

	srv := startServer(t, dir)
	r = cli(t, []string{"CTXD_SERVER=" + checkedURL(t, srv)}, "", "status", "-o", "json")
	require.Equal(t, 0, r.code, r.stderr)
	assert.Contains(t, r.stdout, fmt.Sprintf(`"schema_version": %d`, cur))
}

// ctxd serve on the schema-1 fixture, without ctxd migrate: the server
// says that it upgrades the file before it does (a large one takes a
// while, and the server does not listen meanwhile), and how long it took.
func TestServeUpgradesAnOlderSchemaAndSaysSo(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	fixture, err := os.ReadFile(filepath.Join("..", "..", "migrations", "testdata", "schema1.db"))
	require.NoError(t, err)
	require.NoError(t, os.WriteFile(filepath.Join(dir, dbFile), fixture, 0o600))
	srv := startServer(t, dir)
	logs := srv.Stderr.String()
	upgrading := regexp.MustCompile(fmt.Sprintf(`"from":1,"to":%d,.*"message":"upgrading the database file`, migrations.Current)).FindStringIndex(logs)
	opened := strings.Index(logs, `"schema_upgraded_from":1,"schema_upgrade_ms":`)
	require.NotNil(t, upgrading, logs)
	require.Greater(t, opened, upgrading[0], "the upgrade is announced, then the store opened says it was done: %s", logs)
}

// ctxd patch: a merge patch for an object, a JSON Patch for an array, --type,
// stdin, --if-version, and the exit codes of a failed test (5), a patch that
// cannot apply (1) and a missing key (4).
func TestCLIPatch(t *testing.T) {
	t.Parallel()
	srv := startServer(t, t.TempDir())
	env := []string{"CTXD_SERVER=" + checkedURL(t, srv)}
	recordJSON := func(t *testing.T, stdin string, args ...string) ctxd.Record {
		t.Helper()
		return fromJSON[ctxd.Record](t, cliOK(t, env, stdin, append(args, "-o", "json")...))
	}
	cliOK(t, env, "", "put", "cfg", `{"debug": false, "tags": ["a"]}`)

	rec := recordJSON(t, "", "patch", "cfg", `{"debug":true,"owner":"ann"}`)
	assert.JSONEq(t, `{"debug":true,"tags":["a"],"owner":"ann"}`, string(rec.Value))
	rec = recordJSON(t, "", "patch", "cfg", `[{"op":"add","path":"/tags/-","value":"b"}]`, "--if-version", "2")
	assert.JSONEq(t, `{"debug":true,"tags":["a","b"],"owner":"ann"}`, string(rec.Value))
	rec = recordJSON(t, `{"owner": null}`+"\n", "patch", "cfg", "-")
	assert.Equal(t, `{"debug":true,"tags":["a","b"]}`+"\n", cliOK(t, env, "", "get", "cfg"), "members keep their order")
	rec = recordJSON(t, "", "patch", "cfg", `["replaced"]`, "--type", "merge")
	assert.JSONEq(t, `["replaced"]`, string(rec.Value), "a merge patch that is not an object replaces the value")

	r := cli(t, env, "", "patch", "cfg", `[{"op":"test","path":"/0","value":"other"}]`)
	assert.Equal(t, 5, r.code, r.stderr)
	assert.Contains(t, r.stderr, `"/0"`)
	r = cli(t, env, "", "patch", "cfg", `[{"op":"remove","path":"/7"}]`)
	assert.Equal(t, 1, r.code, r.stderr)
	assert.Contains(t, r.stderr, "patch_failed")
	assert.Equal(t, 5, cli(t, env, "", "patch", "cfg", `{}`, "--if-version", "1").code)
	assert.Equal(t, 4, cli(t, env, "", "patch", "nope", `{}`).code)
	assert.Equal(t, 2, cli(t, env, "", "patch", "cfg", `not json`).code)
	assert.Equal(t, 2, cli(t, env, "", "patch", "cfg", `{}`, "--type", "xml").code)
	assert.Equal(t, `["replaced"]`+"\n", cliOK(t, env, "", "get", "cfg"), "refused patches changed nothing")
}

// ls says how to go on to the next page, in words a shell takes as they
// are: a key with $, a backtick, a quote or a backslash, pasted from a
// Go-quoted "..." into sh, named another key (--after "x$HOME" went on
// after x/root: a page of keys skipped). Following the hint page after
// page, through sh, lists every key once.
func TestLsHintContinuesInAShell(t *testing.T) {
	t.Parallel()
	srv := startServer(t, t.TempDir())
	env := []string{"CTXD_SERVER=" + srv.URL}
	keys := []string{`a b`, `x"d`, `x$HOME`, `x'q`, `x\b`, "x`id`", `x!1`, `y`, `é-ü`}
	for _, k := range keys {
		cliOK(t, env, "", "put", "-n", "sh", "--", k, "1")
	}
	var listed []string
	hint := regexp.MustCompile(`^more keys: continue with (--after .*), or use --all\n$`)
	args := ""
	for page := 0; ; page++ {
		require.Less(t, page, len(keys), "the hints go round: %q", listed)
		cmd := exec.Command("sh", "-c", `"$0" ls -n sh --limit 2 -o value `+args, bin)
		cmd.Env = testEnv(env...)
		var stdout, stderr strings.Builder
		cmd.Stdout, cmd.Stderr = &stdout, &stderr
		require.NoError(t, cmd.Run(), stderr.String())
		listed = append(listed, strings.Split(strings.TrimSuffix(stdout.String(), "\n"), "\n")...)
		if stderr.Len() == 0 {
			break
		}
		m := hint.FindStringSubmatch(stderr.String())
		require.NotNil(t, m, stderr.String())
		args = m[1]
	}
	assert.ElementsMatch(t, keys, listed)
	assert.Len(t, listed, len(keys), "each once: %q", listed)
}

// shellQuote leaves a word as it is only when no shell reads any of its
// characters: not zsh either, the default shell of macOS, whose EQUALS
// option (on by default) takes a word that starts with = for a command's
// path ('ctxd ls --after =x' there: "zsh: x not found"). Each word, as
// quoted, is itself again through sh.
func TestShellQuote(t *testing.T) {
	t.Parallel()
	for in, want := range map[string]string{
		"plain/key-1.v2": "plain/key-1.v2",
		"=x":             "'=x'",
		"a=b":            "'a=b'",
		"":               "''",
		"x'q":            `'x'\''q'`,
		"~user":          "'~user'",
		"a b":            "'a b'",
	} {
		got := shellQuote(in)
		assert.Equal(t, want, got, "%q", in)
		out, err := exec.Command("sh", "-c", `printf %s `+got).Output()
		require.NoError(t, err, got)
		assert.Equal(t, in, string(out), "%q through sh", got)
	}
}

// ctxd status over several instances prints the status of the one that
// answered and, below it, each instance's readiness (/readyz), in the
// list's order: it printed one instance's status alone, with no word of
// the others (here one down, one stopping). With -o json, the status's
// fields as for one server, and "instances". Its first line, "server:"
// ("server" in JSON), names the instance whose status it is: nothing
// said which one had answered.
func TestStatusOfSeveralInstances(t *testing.T) {
	t.Parallel()
	srv := startServer(t, t.TempDir())
	down := "http://" + testkit.FreeAddr(t)
	stopping := testkit.StartServe(t, bin, t.TempDir(), testkit.ServeOptions{Env: testEnv("CTXD_SHUTDOWN_DRAIN=10m")})
	defer stopping.Kill()
	stopping.Signal(syscall.SIGTERM) // it drains: /readyz 503, while it serves on
	testkit.Eventually(t, func() bool {
		resp, err := http.Get(stopping.URL + "/readyz")
		if err != nil {
			return false
		}
		resp.Body.Close()
		return resp.StatusCode == http.StatusServiceUnavailable
	}, "the stopping instance's /readyz")
	list := []string{"--server", down + "," + srv.URL + "," + stopping.URL}

	out := cliOK(t, nil, "", append([]string{"status"}, list...)...)
	assert.Regexp(t, `\Aserver:\s+`+regexp.QuoteMeta(srv.URL)+`\nversion:`, out, "the instance that answered, first")
	assert.Contains(t, out, "revision:")
	assert.Regexp(t, `(?m)^`+regexp.QuoteMeta(down)+`:\s+not ready: .*connection refused\n`+
		regexp.QuoteMeta(srv.URL)+`:\s+ready\n`+
		regexp.QuoteMeta(stopping.URL)+`:\s+not ready: shutting down \(shutdown_drain\).*\(503 unavailable\)\n\z`, out)

	type statusOut struct {
		ctxd.ServerStatus
		Server    string `json:"server"`
		Instances []struct {
			URL   string `json:"url"`
			Ready bool   `json:"ready"`
			Error string `json:"error"`
		} `json:"instances"`
	}
	st := fromJSON[statusOut](t, cliOK(t, nil, "", append([]string{"status", "-o", "json"}, list...)...))
	assert.Equal(t, "test", st.Version)
	assert.Equal(t, srv.URL, st.Server)
	require.Len(t, st.Instances, 3)
	assert.Equal(t, down, st.Instances[0].URL)
	assert.False(t, st.Instances[0].Ready)
	assert.Contains(t, st.Instances[0].Error, "connection refused")
	assert.Equal(t, srv.URL, st.Instances[1].URL)
	assert.True(t, st.Instances[1].Ready)
	assert.Empty(t, st.Instances[1].Error)
	assert.False(t, st.Instances[2].Ready)
	assert.Contains(t, st.Instances[2].Error, "shutting down")

	one := cliOK(t, nil, "", "status", "-o", "json", "--server", srv.URL)
	assert.NotContains(t, one, "instances", "one server: its status as it was")
	assert.NotContains(t, one, `"server"`, "one server: its status as it was")
	assert.NotContains(t, cliOK(t, nil, "", "status", "--server", srv.URL), "server:", "one server: its status as it was")
}

// -o json indents as the pretty format does: down to 32 levels, a value
// nested deeper written compact on one line. Indented to every level, its
// text grew with the square of its depth (a value 2,000 levels deep, 4 KB,
// printed 8 MB; 10,000 levels, 200 MB), held in memory before a byte was
// printed. What -o json prints is still the record, value included, and
// a shallow value is indented as before.
func TestJSONOutputIsBoundedByItsDepth(t *testing.T) {
	t.Parallel()
	srv := startServer(t, t.TempDir())
	env := []string{"CTXD_SERVER=" + checkedURL(t, srv)}
	deep := strings.Repeat("[", 2000) + strings.Repeat("]", 2000)
	cliOK(t, env, "", "put", "deep", deep)
	out := cliOK(t, env, "", "get", "deep", "-o", "json")
	assert.Less(t, len(out), 16<<10, "the text of a 4 KB value")
	rec := fromJSON[ctxd.Record](t, out)
	assert.Equal(t, deep, compact(rec.Value))
	hist := fromJSON[ctxd.HistoryPage](t, cliOK(t, env, "", "history", "deep", "-o", "json"))
	require.Len(t, hist.Changes, 1)
	assert.Equal(t, deep, compact(hist.Changes[0].Value))

	cliOK(t, env, "", "put", "shallow", `{"a":[1,{"b":null}]}`)
	out = cliOK(t, env, "", "get", "shallow", "-o", "json")
	assert.Contains(t, out, "  \"value\": {\n    \"a\": [\n      1,\n      {\n        \"b\": null\n      }\n    ]\n  },\n")
	assert.True(t, strings.HasSuffix(out, "}\n"), "one line break after the object: %q", out)
}

// A signal while the store opens (here etcd does not answer, within a
// dial timeout of a minute) is not lost: the server says it stops once
// the store has opened, and a second signal ends it at once, as after
// the start. Before, signal.NotifyContext held every signal of the start
// until the store had opened or failed: Ctrl-C, twice, did nothing for
// etcd.dial_timeout (or a log replay, or storage.lock_timeout).
func TestServeSignalWhileTheStoreOpens(t *testing.T) {
	cmd := exec.Command(bin, "serve", "--addr", "127.0.0.1:0", "--data", t.TempDir())
	cmd.Env = testEnv("CTXD_STORE_BACKEND=etcd", "CTXD_ETCD_ENDPOINTS=http://"+testkit.FreeAddr(t), "CTXD_ETCD_DIAL_TIMEOUT=1m",
		"CTXD_LOG_LEVEL=debug") // "opening the store": the signal handler is set
	var stderr testkit.SyncBuffer
	cmd.Stderr = &stderr
	require.NoError(t, cmd.Start())
	exited := make(chan struct{})
	go func() {
		_ = cmd.Wait()
		close(exited)
	}()
	t.Cleanup(func() {
		_ = cmd.Process.Kill()
		<-exited
	})
	waitFor(t, "the store opening", func() bool { return strings.Contains(stderr.String(), `"message":"opening the store"`) })
	require.NoError(t, cmd.Process.Signal(syscall.SIGINT))
	waitFor(t, "the first signal's answer", func() bool {
		return strings.Contains(stderr.String(), "signal while the store opens: stopping once it has opened (a second signal exits at once)")
	})
	require.NoError(t, cmd.Process.Signal(syscall.SIGINT))
	<-exited
	status, _ := cmd.ProcessState.Sys().(syscall.WaitStatus)
	assert.True(t, status.Signaled() && status.Signal() == syscall.SIGINT, "ended by the second signal, not by etcd's dial timeout: %v\n%s", cmd.ProcessState, stderr.String())
}
