package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/framework0/ctxd"
	"github.com/framework0/ctxd/client"
	"github.com/framework0/ctxd/configs"
	"github.com/framework0/ctxd/internal/testkit"
)

func TestParseValue(t *testing.T) {
	tests := []struct {
		arg      string
		stdin    string
		asString bool
		want     string
	}{
		{arg: "hello", want: `"hello"`},
		{arg: "42", want: `42`},
		{arg: "-7.5e3", want: `-7.5e3`},
		{arg: "true", want: `true`},
		{arg: "null", want: `null`},
		{arg: `"quoted"`, want: `"quoted"`},
		{arg: ` {"a": [1, 2]} `, want: `{"a": [1, 2]}`},
		{arg: "", want: `""`},
		{arg: "{not json", want: `"{not json"`},
		{arg: `say "hi"`, want: `"say \"hi\""`},
		{arg: "héllo\tworld", want: `"héllo\tworld"`},
		{arg: "42", asString: true, want: `"42"`},
		{arg: "-", stdin: "[1,2]\n", want: `[1,2]`},
		{arg: "-", stdin: "line one\nline two\n", want: `"line one\nline two"`},
		{arg: "-", stdin: "crlf\r\n", want: `"crlf"`},
		{arg: "-", stdin: "42\n", asString: true, want: `"42"`},
	}
	for _, tt := range tests {
		got, err := parseValue(tt.arg, tt.asString, strings.NewReader(tt.stdin))
		require.NoError(t, err)
		assert.Equal(t, tt.want, string(got), "arg %q stdin %q", tt.arg, tt.stdin)
		assert.True(t, json.Valid(got))
	}
	// An empty stdin (a command before the pipe that printed nothing) is
	// refused, not stored as "": '""' says that.
	_, err := parseValue("-", false, strings.NewReader(""))
	var ue *usageError
	assert.True(t, errors.As(err, &ue), "%v", err)
}

func TestValueText(t *testing.T) {
	tests := map[string]string{
		`"hello"`:         "hello",
		`"two\nlines"`:    "two\nlines",
		`42`:              "42",
		`{ "a" : [1, 2]}`: `{"a":[1,2]}`,
		`null`:            "null",
		``:                "null",
	}
	for in, want := range tests {
		assert.Equal(t, want, valueText(json.RawMessage(in)), in)
	}
	assert.Equal(t, `"tab\there"`, cell(json.RawMessage(`"tab\there"`)))
	assert.Equal(t, `{"a":1}`, cell(json.RawMessage("{\n\t\"a\": 1\n}")), "one line, no raw tab")
	long := cell(json.RawMessage(`"` + strings.Repeat("é", 100) + `"`))
	assert.Equal(t, maxCell, len([]rune(long)))
	assert.True(t, strings.HasSuffix(long, "..."))
}

func TestExpiresText(t *testing.T) {
	now := time.Date(2026, 12, 2, 3, 0, 0, 0, time.UTC)
	for _, tt := range []struct {
		at   time.Time
		want string
	}{
		{time.Time{}, "-"},
		{now.Add(29400 * time.Millisecond), "in 29s"},
		{now.Add(time.Hour + 2*time.Second), "in 1h0m2s"},
		{now.Add(400 * time.Millisecond), "now"},
		{now.Add(-time.Minute), "now"},
	} {
		assert.Equal(t, tt.want, expiresText(tt.at, now), "%s", tt.at)
	}
	// The column is there only when a record expires.
	assert.Equal(t, "", expiresColumn([]client.Record{{Key: "a"}}, now).header)
	col := expiresColumn([]client.Record{{Key: "a"}, {Key: "b", ExpiresAt: now.Add(time.Minute)}}, now)
	assert.Equal(t, "\tEXPIRES", col.header)
	assert.Equal(t, "\t-", col.cell(client.Record{Key: "a"}))
}

func TestExitCodeTable(t *testing.T) {
	connErr := fmt.Errorf("get default/k: %w", &url.Error{Op: "Get", URL: "http://x", Err: errors.New("connection refused")})
	tests := []struct {
		err  error
		want int
	}{
		{nil, exitOK},
		{errors.New("boom"), exitError},
		{usagef("bad"), exitUsage},
		{fmt.Errorf("load: %w", &configs.Error{Field: "addr", Err: errors.New("bad")}), exitUsage},
		{connErr, exitUnreachable},
		{&client.APIError{Status: 404, Code: client.CodeNotFound}, exitNotFound},
		{&client.APIError{Status: 409, Code: client.CodeConflict}, exitConflict},
		{&client.APIError{Status: 400, Code: client.CodeBadRequest}, exitError},
		{&client.APIError{Status: 500, Code: client.CodeInternal}, exitError},
		{&client.APIError{Status: 503, Code: client.CodeUnavailable}, exitError},
		{&client.APIError{Status: 503, Code: client.CodeOutcomeUnknown}, exitOutcomeUnknown},
		// Sent, no answer: outcome unknown, though it is a connection error too.
		{fmt.Errorf("put default/k: %w: sent: %w", ctxd.ErrOutcomeUnknown, &url.Error{Op: "Put", URL: "http://x", Err: context.DeadlineExceeded}), exitOutcomeUnknown},
	}
	for _, tt := range tests {
		var stderr bytes.Buffer
		a := &app{stderr: &stderr}
		assert.Equal(t, tt.want, a.exitCode(tt.err), "%v", tt.err)
		if tt.err != nil {
			assert.True(t, strings.HasPrefix(stderr.String(), "ctxd: "), stderr.String())
		}
	}
}

// runNoServer runs the command line args in this process, against an
// address where no server listens, and returns what it wrote to stderr.
func runNoServer(args ...string) (string, error) {
	var stdout, stderr bytes.Buffer
	a := &app{stdin: strings.NewReader(""), stdout: &stdout, stderr: &stderr, environ: []string{"CTXD_SERVER=http://127.0.0.1:1"}}
	err := a.run(context.Background(), args)
	a.exitCode(err)
	return stderr.String(), err
}

// Errors raised while cobra parses the command line are usage errors; errors
// from a command's own code are not.
func TestUsageErrorsInProcess(t *testing.T) {
	for _, args := range [][]string{
		{"nope"}, {"get"}, {"get", "--nope", "k"}, {"ls", "a", "b"}, {"ls", "--all", "--limit", "3"},
		{"ls", "--limit", "0"}, {"get", "k", "-o", "yaml"}, {"version", "extra"},
		// Found by a review: exit 0 with the group's help; a write to
		// default; a value stored mangled, or empty; a server said down.
		{"snapshot", "bogus"}, {"token", "bogus"}, {"put", "k", "v", "-n", ""}, {"ls", "-n", " "},
		{"put", "k", "\xff\xfe"}, {"put", "k", "\"\xff\""}, {"put", "k", "-"}, {"status", "--token", "tok\r"},
		{"watch", "-n", " , "},
	} {
		stderr, err := runNoServer(args...)
		var ue *usageError
		assert.True(t, errors.As(err, &ue), "%v: %v", args, err)
		assert.Contains(t, stderr, "--help' for usage", args)
	}
	stderr, _ := runNoServer("snapshot", "create", "-o", "value")
	assert.Contains(t, stderr, "-o value is not supported by snapshot create", "the command's whole name")
	_, err := runNoServer("get", "k", "--timeout", "1s")
	assert.True(t, client.IsConnectionError(err), "%v", err)
	var ue *usageError
	assert.False(t, errors.As(err, &ue))
}

// dump's and snapshot get's -o is the FILE they write, as the README
// documents; a format's name there (-o json, as every other command takes
// it) is refused before anything is asked of the server: it wrote the
// snapshot or the dump to a file named json. ./json is a file of that
// name (here, the connection refused: no server at the address).
func TestOutputFileIsNotAFormat(t *testing.T) {
	t.Chdir(t.TempDir()) // nothing is written; if it were, here
	for _, args := range [][]string{
		{"snapshot", "get", "ID", "-o", "json"}, {"snapshot", "get", "ID", "-o", "value"},
		{"snapshot", "get", "ID", "-o", "table"}, {"snapshot", "get", "ID", "--output=json"},
		{"dump", "-o", "json"}, {"dump", "-o", "csv"}, {"dump", "--format", "csv", "-o", "value"},
	} {
		stderr, err := runNoServer(args...)
		var ue *usageError
		require.True(t, errors.As(err, &ue), "%v: %v", args, err)
		assert.Contains(t, stderr, "is the FILE to write", args)
		assert.Contains(t, stderr, "give ./"+args[len(args)-1][strings.LastIndex(args[len(args)-1], "=")+1:], args)
	}
	stderr, _ := runNoServer("dump", "-o", "pretty")
	assert.Contains(t, stderr, "its format is --format")
	stderr, err := runNoServer("snapshot", "get", "ID")
	assert.Contains(t, stderr, "needs -o FILE", "%v", err)
	for _, args := range [][]string{
		{"snapshot", "get", "ID", "-o", "./json"}, {"snapshot", "get", "ID", "-o", "backup.db"},
		{"dump", "-o", "./csv"}, {"dump", "-o", "ctx.json"}, {"dump", "-o", "-"},
	} {
		_, err := runNoServer(args...)
		assert.True(t, client.IsConnectionError(err), "%v: %v", args, err)
	}
	entries, err := os.ReadDir(".")
	require.NoError(t, err)
	assert.Empty(t, entries)
}

// The commands that work on the whole database wait as long as it
// takes by default (--timeout 0), as defrag and compaction do: a
// snapshot of a few GB taken, downloaded, uploaded or restored within
// the client commands' 30s was luck (a download cut off, an upload or a
// restore ended outcome unknown while the server carried on). dump and
// import, which move one namespace, wait 10m. (The default, not a run:
// a test of it would wait past 30s.)
func TestWholeDatabaseCommandsWaitAsLongAsTheyTake(t *testing.T) {
	a := &app{stdin: strings.NewReader(""), stdout: io.Discard, stderr: io.Discard}
	root := a.rootCmd()
	for path, want := range map[string]time.Duration{
		"snapshot create": 0, "snapshot get": 0, "snapshot upload": 0, "snapshot restore": 0,
		"defrag": 0, "compaction": 0,
		"dump": transferTimeout, "import": transferTimeout,
		"get": 30 * time.Second, "snapshot ls": 30 * time.Second,
	} {
		cmd, _, err := root.Find(strings.Fields(path))
		require.NoError(t, err, path)
		require.NoError(t, cmd.ParseFlags(nil), path)
		got, err := cmd.Flags().GetDuration("timeout")
		require.NoError(t, err, path)
		assert.Equal(t, want, got, "%s --timeout", path)
		assert.Equal(t, want.String(), cmd.Flags().Lookup("timeout").DefValue, "%s --help", path)
	}
}

// `ctxd perf --fanout-targets`, the deprecated name of --more-targets,
// still fills the same setting: read-instances, which needs more targets,
// is then not refused for want of them (a bad --duration stops each run
// at validation, before anything is measured), and the user is told the
// new name. The control: without either flag it is refused.
func TestPerfFanoutTargetsAlias(t *testing.T) {
	run := func(args ...string) (string, error) {
		var stdout, stderr bytes.Buffer
		a := &app{stdin: strings.NewReader(""), stdout: &stdout, stderr: &stderr}
		err := a.run(context.Background(), append([]string{"perf", "--duration", "0", "read-instances"}, args...))
		return stdout.String() + stderr.String(), err
	}
	const needsTargets = "needs more instances of the target's deployment"
	_, err := run()
	require.ErrorContains(t, err, needsTargets, "the control: read-instances without more targets")
	for _, flag := range []string{"--more-targets", "--fanout-targets"} {
		out, err := run(flag, "http://127.0.0.1:1,http://127.0.0.1:2")
		var ue *usageError
		require.True(t, errors.As(err, &ue), "%s: %v", flag, err)
		require.ErrorContains(t, err, "duration must be > 0", flag)
		require.NotContains(t, err.Error(), needsTargets, "%s did not set the more targets", flag)
		if flag == "--fanout-targets" {
			assert.Contains(t, out, "use --more-targets", "the deprecation notice")
		}
	}
}

// A server that takes the request and never answers is not "not running":
// past --timeout the CLI says it did not answer (exit 3 still).
func TestNoAnswerWithinTimeout(t *testing.T) {
	hung, _ := testkit.SilentAfterRequest(t, true)
	var stdout, stderr bytes.Buffer
	a := &app{stdin: strings.NewReader(""), stdout: &stdout, stderr: &stderr, environ: []string{"CTXD_SERVER=" + hung}}
	assert.Equal(t, exitUnreachable, a.exitCode(a.run(context.Background(), []string{"get", "k", "--timeout", "300ms"})))
	assert.Contains(t, stderr.String(), "No answer within --timeout")
	assert.NotContains(t, stderr.String(), "Is the server running?")
}

// A change of the server other than a key's (a restore, a snapshot, a
// dump) that was sent and got no answer is outcome unknown too (exit 6),
// not "cannot connect" (3): a restore sent again discards what was
// written since the first.
func TestAdminWritesWithoutAnswerAreOutcomeUnknown(t *testing.T) {
	hung, _ := testkit.SilentAfterRequest(t, true)
	upload := filepath.Join(t.TempDir(), "backup.db")
	require.NoError(t, os.WriteFile(upload, []byte("a snapshot file, or not: sent all the same"), 0o600))
	for _, args := range [][]string{
		{"snapshot", "restore", "20261127T101500Z-r42"}, {"snapshot", "create"}, {"snapshot", "rm", "20261127T101500Z-r42"},
		{"snapshot", "upload", upload},
		{"dump", "--server-side"}, {"dumps", "rm", "x.json"}, {"compaction"}, {"defrag"},
	} {
		var stdout, stderr bytes.Buffer
		a := &app{stdin: strings.NewReader(""), stdout: &stdout, stderr: &stderr, environ: []string{"CTXD_SERVER=" + hung}}
		assert.Equal(t, exitOutcomeUnknown, a.exitCode(a.run(context.Background(), append(args, "--timeout", "300ms"))), "%v: %s", args, stderr.String())
		assert.Contains(t, stderr.String(), "may or may not have taken effect", args)
	}
}

// ctxd watch --timeout bounds each connection attempt: 0 waits forever,
// as its help says (it was WatchOptions' default, 10s), except over
// several instances, where a silent one costs the connection timeout
// before the next is tried.
func TestWatchDialTimeout(t *testing.T) {
	for _, tc := range []struct {
		timeout time.Duration
		several bool
		want    time.Duration
	}{
		{30 * time.Second, false, 30 * time.Second},
		{time.Second, false, time.Second},
		{0, false, forever},
		{0, true, client.DefaultConnectTimeout},
		{30 * time.Second, true, client.DefaultConnectTimeout},
		{time.Second, true, time.Second},
	} {
		assert.Equal(t, tc.want, watchDialTimeout(tc.timeout, tc.several), "--timeout %v, several %v", tc.timeout, tc.several)
	}
	assert.Greater(t, forever, 100*365*24*time.Hour, "forever is long enough")
}
