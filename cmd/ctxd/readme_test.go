package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"maps"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"sort"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/framework0/ctxd/internal/testkit"
)

// The README's examples that show answers are run, one after the other,
// against a new `ctxd serve` (this package's binary, a new data folder),
// and what they answer is compared with what the README shows
// (TestReadmeExamples).
//
// How README.md is read:
//
//   - A run is a section of README.md (readmeRuns): its ```sh and
//     ```console blocks run in order on one new server, but for those of
//     the subsections it names in without (they say they ran on a server
//     of their own: they are runs of their own).
//   - In a ```sh block, the ```json and plain ``` blocks right after it
//     (nothing but a line break between them) are its answers: each JSON
//     value is one answer, a plain block that is not JSON is one answer
//     (an HTTP answer when it starts with "HTTP/": curl -i). They answer
//     the block's last commands, in order; the commands before those are
//     steps whose answer is not shown, and must succeed.
//   - In a ```console block, a line starting with "$ " is a command (with
//     the lines of its here-document, or after a backslash), and the
//     lines up to the next command are what it writes, stdout and stderr
//     together as a terminal shows them; it must exit 0 (the README shows
//     `; echo "exit $?"` after a command that fails).
//   - Every command runs with sh -c, B set to the server's URL and ctxd
//     (this package's binary) on PATH with CTXD_SERVER set, in a folder
//     of the run's own, with what the section says it assumes
//     (readmeRun.env). The variables a command sets are set for the
//     commands after it, as in one terminal (TOKEN=$(ctxd token new ...)).
//     curl is the real one, told -q (no ~/.curlrc), -sS (no progress
//     meter) and, in a ```sh block, to write the HTTP status on stderr
//     (stdout is left as the README shows it): every request must answer
//     2xx, unless the command's comment starts with a status (`# 409`),
//     which is then the one it must answer; a JSON value after that status
//     (`# 200 {"status":"ok"} ...`) is the command's answer. A comment
//     `# saves NAME` says the command writes the file NAME in its folder.
//   - A `ctxd serve` command (its variables, and --data) is started by
//     the test, on a port of its own, in the run's folder; B and
//     CTXD_SERVER then name it. A run that has one gets no server at its
//     start.
//   - The README's paths are read as the test's (readmePaths): the data
//     folder /srv/ctxd/data is the server's, /etc/ctxd a folder of the
//     run.
//   - Answers are compared as JSON, member by member, exactly, but for
//     what varies from run to run (readmeVarying): times must be RFC 3339
//     times (and an expires_at as far after its updated_at as the README
//     shows), a build's version a string, and so on. An HTTP answer's
//     status line and the headers shown must match, and the server may
//     send only the headers the README says it left out
//     (readmeShortenedHeaders). A text answer is compared line by line,
//     with what varies masked (readmeTextVarying: RFC 3339 times, sizes,
//     ...) and CRLF read as LF.
//   - A command is not run only when readmeSkips names it, or
//     readmeSkipBlocks its block, with why; each skip is logged. A ```json
//     block of a run that answers no command is an illustration, which
//     readmeIllustrations must name, with why.

// readmeRun is a section of README.md whose examples run one after the
// other on a new server.
type readmeRun struct {
	name    string
	heading string   // the section's heading line, exactly
	without []string // headings of subsections that are runs of their own
	env     []string // what the section says its examples assume
}

var readmeRuns = []readmeRun{
	{
		// "The examples run one after the other on a new server".
		name:    "REST",
		heading: "## REST API (v1)",
		without: []string{readmePatchHeading},
	},
	{
		// "These examples are not part of the walkthrough ...: they ran
		// on a new server of their own".
		name:    "PATCH",
		heading: readmePatchHeading,
	},
	{
		// "The examples of this section run one after the other on a
		// new server".
		name:    "dumps",
		heading: "## Dumps, export and import",
	},
	{
		// One sequence: POST twice, read, history, dump, download.
		name:    "ctx",
		heading: "## Framework0-compatible API (`/ctx`)",
	},
	{
		// "The examples of this section run one after the other on a
		// new server".
		name:    "snapshots",
		heading: "## Snapshots, restore and disk space",
	},
	{
		// Tokens into a tokens file, then a new server on it.
		name:    "access",
		heading: "## Access control",
	},
	{
		name:    "errors",
		heading: "## Errors",
	},
	{
		// "The examples run one after the other on a new server, as the
		// user alice (`--who` defaults to `$USER`)".
		name:    "CLI",
		heading: "## Command line",
		env:     []string{"USER=alice"},
	},
}

const readmePatchHeading = "### Change part of a value: `PATCH /v1/ns/{ns}/keys/{key}`"

// readmeSkips are the commands of the runs that are not run, and why.
var readmeSkips = map[string]string{
	"B=http://127.0.0.1:8080": "the test sets B to its own server's URL",
	"systemctl reload ctxd        # or: kill -HUP <pid>": "a systemd unit's reload; the section's next " +
		"examples start a server of their own on a tokens file",
	"ctxd watch -n '*' --from-rev 3":           "runs until Ctrl-C (TestWatch* in watch_test.go run ctxd watch)",
	"ctxd watch deploy/ --from-rev 11 -o json": "runs until Ctrl-C (TestWatch* in watch_test.go run ctxd watch)",
}

// readmeSkipBlocks are the blocks of the runs that are not run, each
// named by its first line, and why.
var readmeSkipBlocks = map[string]string{
	"ctxd history KEY -n team                        # a key the mistake changed: R is the mistake's revision - 1": "" +
		"a recipe for a key and a revision of yours: TestReadmeUndoAMistake runs it with them filled in",
	"# on the old machine (CTXD_SERVER points at its server)": "two machines: TestReadmeRebuildOnANewMachine runs it " +
		"with a data folder for each",
	"ctxd restore --from backup.db --etcd-endpoints http://10.0.0.1:2379 --etcd-prefix /ctxd/ --dry-run": "" +
		"an etcd cluster at 10.0.0.1: TestRestoreIntoEtcdPrefixAndBack restores into etcd",
}

// readmeIllustrations are the JSON blocks of the runs that answer no
// command: each is named by how it starts, and why it is not compared.
var readmeIllustrations = map[string]string{
	`{"ns":"default","key":"app.config","value":{"debug":true},"version":1,`: "what a record looks like: the first put's answer, compared there",
	`"last_restore":`: "a member of /v1/status after a whole restore, which the walkthrough does not make",
	`"read_cache":{"state":"ready","revision":42,`: "/v1/status's read_cache on etcd",
	`{"error":{"code":"insufficient_storage",`:     "a write past the storage quota, which needs a server with a small quota and data to fill it",
}

// readmeVarying are the members whose values change from run to run,
// and what is checked of them instead; a check that returns handled false
// leaves the member to be compared exactly.
var readmeVarying = map[string]func(want, got any) (handled bool, err error){
	"updated_at":     isTime,
	"expires_at":     isTime,
	"time":           isTime,
	"timestamp":      isTime,
	"started_at":     isTime,
	"created":        isTime,
	"uptime_seconds": isNumber,
	// A dump's size: its times are RFC 3339 with the nanoseconds' trailing
	// zeros dropped, so its length varies; it must be the size of the
	// file at its path (diffDumpFile).
	"file_size": isNumber,
	// /v1/status's read_cache: a GET that comes before the store applied
	// the write it reads is answered by the write-ahead log's overlay, and
	// is neither a hit nor a miss (store/bolt/read.go).
	"fallbacks": isNumber,
	// /v1/status's sizes: the store applies acknowledged writes to the
	// database file in batches, in the background, so what the file holds,
	// and what is counted as not in it yet (used_bytes), depends on when
	// the status is asked for (diffStorage checks how they relate).
	"db_size_bytes":   isNumber,
	"file_size_bytes": isNumber,
	"in_use_bytes":    isNumber,
	"used_bytes":      isNumber,
	"free_pages":      isNumber,
	"version":         isBuildVersion,
	// A snapshot: its file is a copy of the database file (whose size
	// depends on how the store batched its writes, as above), its id
	// starts with the time it was taken.
	"size":   isNumber,
	"sha256": isSHA256,
	"id":     isSnapshotID,
}

// readmeTextVarying are what text answers show that changes from run to
// run: each is masked, in the README's answer and in the one compared
// with it.
var readmeTextVarying = []struct {
	re   *regexp.Regexp
	mask string
}{
	// RFC 3339 times.
	{regexp.MustCompile(`\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?(Z|[+-]\d\d:\d\d)`), "<time>"},
	// A new token (ctxd token new) is random.
	{regexp.MustCompile(`\bctxd_[A-Za-z0-9_-]{43}\b`), "<token>"},
	// The time an expiring key has left (the CLI's EXPIRES column), to
	// the second.
	{regexp.MustCompile(`\bin (\d+h)?(\d+m)?\d+s\b`), "in <time left>"},
	// Sizes of files: a dump's (its times' trailing zeros are dropped),
	// the database file's (ctxd status's db size).
	{regexp.MustCompile(`\b\d+(\.\d)? (B|KiB|MiB)\b`), "<size>"},
	// ctxd status: the build's version, the time since the start.
	{regexp.MustCompile(`(?m)^(version|uptime):( +)\S+$`), "$1:$2<varies>"},
}

// readmeShortenedHeaders are the headers a curl -i answer of the README
// leaves out: "(Shortened: `Content-Length`, `Date` and `X-Request-Id`
// come too.)"
var readmeShortenedHeaders = []string{"Content-Length", "Date", "X-Request-Id"}

// readmePaths are the README's paths the test reads as its own: the data
// folder its answers show (the server's), and the configuration folder of
// its examples (a folder of the run: /etc/ctxd/tokens.yaml).
const (
	readmeDataDir   = "/srv/ctxd/data"
	readmeConfigDir = "/etc/ctxd"
)

func TestReadmeExamples(t *testing.T) {
	t.Parallel()
	for _, tool := range []string{"curl", "jq"} {
		if _, err := exec.LookPath(tool); err != nil {
			t.Fatalf("%s is not installed: the README's examples run it (`make test` installs it when it is missing; or run apt-get install %s)", tool, tool)
		}
	}
	readme, err := os.ReadFile("../../README.md")
	require.NoError(t, err)
	doc := parseReadme(string(readme))
	illustrations, skips, skipBlocks := map[string]int{}, map[string]int{}, map[string]int{}
	for _, run := range readmeRuns {
		blocks, err := doc.runBlocks(run)
		require.NoError(t, err)
		for i, b := range blocks {
			switch b.info {
			case "sh", "console":
				if _, ok := readmeSkipBlocks[b.firstLine()]; ok {
					skipBlocks[b.firstLine()]++
					continue
				}
				cmds, _, err := b.commands()
				require.NoError(t, err)
				for _, c := range cmds {
					if _, ok := readmeSkips[c.text]; ok {
						skips[c.text]++
					}
				}
			}
			if b.info != "json" || i > 0 && b.follows && (blocks[i-1].info == "sh" || blocks[i-1].info == "json") {
				continue
			}
			found := false
			for prefix := range readmeIllustrations {
				if strings.HasPrefix(b.text, prefix) {
					illustrations[prefix]++
					found = true
				}
			}
			if !found {
				t.Errorf("README.md:%d: a JSON block that answers no command: make it an answer "+
					"(right after the ```sh block it answers) or name it in readmeIllustrations", b.line)
			}
		}
		t.Run(run.name, func(t *testing.T) {
			t.Parallel()
			runReadmeBlocks(t, run, blocks)
		})
	}
	for prefix := range readmeIllustrations {
		if illustrations[prefix] != 1 {
			t.Errorf("readmeIllustrations: %q starts %d JSON blocks of the runs, not 1", prefix, illustrations[prefix])
		}
	}
	for text := range readmeSkips {
		if skips[text] == 0 {
			t.Errorf("readmeSkips: %q is no command of the runs", text)
		}
	}
	for first := range readmeSkipBlocks {
		if skipBlocks[first] != 1 {
			t.Errorf("readmeSkipBlocks: %q starts %d blocks of the runs, not 1", first, skipBlocks[first])
		}
	}
}

// readmeSession is a run under way: its server, its folder, the
// variables its commands set.
type readmeSession struct {
	t        *testing.T
	run      readmeRun
	work     string            // the commands' folder
	vars     map[string]string // set by the commands so far
	varsFile string            // where a command writes its environment
	srv      *serverProcess
	dataDir  string
	compared int
}

// runReadmeBlocks runs the commands of blocks on a new server and
// compares their answers with the README's.
func runReadmeBlocks(t *testing.T, section readmeRun, blocks []readmeFence) {
	s := &readmeSession{t: t, run: section, work: t.TempDir(), vars: map[string]string{},
		varsFile: filepath.Join(t.TempDir(), "env")}
	require.NoError(t, os.MkdirAll(filepath.Join(s.work, "etc", "ctxd"), 0o700))
	serves := false
	for _, b := range blocks {
		if _, ok := readmeSkipBlocks[b.firstLine()]; ok {
			continue
		}
		cmds, _, err := b.commands()
		require.NoError(t, err)
		for _, c := range cmds {
			_, skipped := readmeSkips[c.text]
			serves = serves || !skipped && serveCommand.MatchString(c.text)
		}
	}
	if !serves {
		s.dataDir = t.TempDir()
		s.srv = startServer(t, s.dataDir)
	}
	for i, b := range blocks {
		if b.info != "sh" && b.info != "console" {
			continue
		}
		if why, ok := readmeSkipBlocks[b.firstLine()]; ok {
			t.Logf("README.md:%d: block not run: %s", b.line, why)
			continue
		}
		cmds, outputs, err := b.commands()
		require.NoError(t, err)
		var run []readmeCommand
		var shown []readmeAnswer
		for j, c := range cmds {
			if why, ok := readmeSkips[c.text]; ok {
				t.Logf("README.md:%d: not run: %s (%s)", c.line, c.text, why)
				continue
			}
			run = append(run, c)
			if b.info == "console" {
				shown = append(shown, outputs[j])
			}
		}
		outs := make([][]byte, len(run))
		for j, c := range run {
			outs[j] = s.runCommand(c, b.info == "console")
		}
		if b.info == "sh" {
			// The answers, read once the commands ran (a ctxd serve
			// among them names the data folder).
			for _, a := range blocks[i+1:] {
				if a.info != "json" && a.info != "" || !a.follows {
					break
				}
				as, err := a.answers(s.paths())
				require.NoError(t, err)
				shown = append(shown, as...)
			}
			if len(shown) > len(run) {
				t.Fatalf("README.md:%d: %d answers follow %d commands", b.line, len(shown), len(run))
			}
		}
		first := len(run) - len(shown)
		for j, c := range run {
			if outs[j] == nil {
				continue
			}
			if c.answer != nil {
				s.compared++
				checkReadmeAnswer(t, c, *c.answer, outs[j])
			}
			if j >= first {
				s.compared++
				want := shown[j-first]
				if b.info == "console" {
					want.text = s.paths().Replace(want.text)
				}
				checkReadmeAnswer(t, c, want, outs[j])
			}
		}
	}
	t.Logf("%d answers compared", s.compared)
	if s.compared == 0 {
		t.Error("no answer was compared: has the README's section changed?")
	}
}

// paths reads the README's paths as the run's (readmePaths).
func (s *readmeSession) paths() *strings.Replacer {
	return strings.NewReplacer(readmeDataDir+"/", s.dataDir+"/", readmeConfigDir+"/", filepath.Join(s.work, "etc", "ctxd")+"/")
}

// environ is the environment of the run's next command.
func (s *readmeSession) environ() []string {
	env := append([]string{"NO_PROXY=127.0.0.1", "no_proxy=127.0.0.1", "READMEVARS=" + s.varsFile,
		"PATH=" + filepath.Dir(bin) + string(os.PathListSeparator) + os.Getenv("PATH")}, s.run.env...)
	if s.srv != nil {
		env = append(env, "B="+s.srv.URL, "CTXD_SERVER="+s.srv.URL)
	}
	for _, k := range slices.Sorted(maps.Keys(s.vars)) {
		env = append(env, k+"="+s.vars[k])
	}
	return testEnv(env...)
}

// serveCommand is a `ctxd serve` command the test starts itself: its
// variables, and its data folder.
var serveCommand = regexp.MustCompile(`^((?:[A-Z][A-Z0-9_]*=\S+ +)*)ctxd serve --data (\S+)(?: +#.*)?$`)

// runCommand runs c and checks its exit status and HTTP statuses; it
// returns what it wrote on stdout (on stdout and stderr, for a console
// command), nil when it failed (the test has been told).
func (s *readmeSession) runCommand(c readmeCommand, console bool) []byte {
	t := s.t
	t.Helper()
	text := s.paths().Replace(c.text)
	if m := serveCommand.FindStringSubmatch(text); m != nil {
		s.serve(m[1], m[2])
		return []byte{}
	}
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	// The variables the command sets are the next commands' (set -a
	// exports them; env writes them out).
	sh := "set -a\n" + text + "\nreadme_rc=$?\nenv -0 >\"$READMEVARS\"\nexit $readme_rc\n"
	if !console {
		// The README's curl, but that -q leaves out any ~/.curlrc, -sS
		// hides the progress meter, and the status goes to stderr:
		// stdout is what the README shows.
		sh = `curl() { command curl -q -sS -w '%{stderr}%{http_code}\n' "$@"; }` + "\n" + sh
	}
	cmd := exec.CommandContext(ctx, "sh", "-c", sh)
	env := s.environ()
	cmd.Env, cmd.Dir = env, s.work
	// A command that does not end (ctxd watch, not skipped) is killed
	// with what it started, and the test told.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	cmd.Cancel = func() error { return syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL) }
	cmd.WaitDelay = time.Second
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if console {
		cmd.Stderr = &stdout // one pipe: the order a terminal shows
	}
	if err := cmd.Run(); err != nil {
		t.Errorf("README.md:%d: %s: %v\noutput: %s%s", c.line, c.text, err, stdout.String(), stderr.String())
		return nil
	}
	s.keepVariables(env)
	if c.saves != "" {
		if _, err := os.Stat(filepath.Join(s.work, c.saves)); err != nil {
			t.Errorf("README.md:%d: %s: it says it saves %s: %v", c.line, c.text, c.saves, err)
		}
	}
	if console {
		return stdout.Bytes()
	}
	var statuses []int
	for _, line := range strings.Split(strings.TrimSpace(stderr.String()), "\n") {
		if line == "" {
			continue
		}
		code, err := strconv.Atoi(line)
		if err != nil || len(line) != 3 {
			t.Errorf("README.md:%d: %s: wrote on stderr: %s", c.line, c.text, stderr.String())
			return nil
		}
		statuses = append(statuses, code)
	}
	if len(statuses) == 0 && strings.Contains(c.text, "curl ") {
		t.Errorf("README.md:%d: %s: no HTTP status: is curl not run by name?", c.line, c.text)
		return nil
	}
	for _, code := range statuses {
		if c.status != 0 && code != c.status || c.status == 0 && code/100 != 2 {
			want := "2xx"
			if c.status != 0 {
				want = strconv.Itoa(c.status)
			}
			t.Errorf("README.md:%d: %s: status %d, want %s\nanswer: %s", c.line, c.text, code, want, stdout.String())
			return nil
		}
	}
	return stdout.Bytes()
}

// keepVariables keeps the variables the last command set (those of its
// environment that env did not give it) for the next commands.
func (s *readmeSession) keepVariables(env []string) {
	data, err := os.ReadFile(s.varsFile)
	require.NoError(s.t, err)
	given := map[string]string{}
	for _, kv := range env {
		k, v, _ := strings.Cut(kv, "=")
		given[k] = v
	}
	for _, kv := range strings.Split(string(data), "\x00") {
		k, v, ok := strings.Cut(kv, "=")
		if !ok || slices.Contains([]string{"PWD", "OLDPWD", "SHLVL", "_"}, k) {
			continue
		}
		if old, ok := given[k]; !ok || old != v {
			s.vars[k] = v
		}
	}
}

// serve starts the server of a `ctxd serve` command: vars are its
// variables (NAME=value, separated by spaces), data its data folder.
func (s *readmeSession) serve(vars, data string) {
	if !filepath.IsAbs(data) {
		data = filepath.Join(s.work, data)
	}
	env := testEnv(strings.Fields(vars)...)
	s.srv = testkit.StartServe(s.t, bin, data, testkit.ServeOptions{Env: env, Dir: s.work})
	s.dataDir = data
}

// checkReadmeAnswer compares the answer out of c with want.
func checkReadmeAnswer(t *testing.T, c readmeCommand, want readmeAnswer, out []byte) {
	t.Helper()
	var diffs []string
	switch {
	case want.http != nil:
		diffs = diffHTTP(*want.http, out)
	case want.isJSON:
		diffs = diffJSONText(want.json, out)
	default:
		diffs = diffText(want.text, string(out))
	}
	if len(diffs) > 0 {
		t.Errorf("README.md:%d: the answer to README.md:%d (%s) differs from the server's:\n  %s\nthe server answered:\n%s",
			want.line, c.line, c.text, strings.Join(diffs, "\n  "), out)
	}
}

// readmeDoc is README.md cut into headings and fenced blocks.
type readmeDoc struct {
	headings []readmeHeading
	blocks   []readmeFence
}

type readmeHeading struct {
	line  int // 1-based
	level int
	text  string
}

// readmeFence is a fenced block: line is its first content line.
type readmeFence struct {
	line    int
	info    string // sh, json or ""
	text    string
	follows bool // its fence opens on the line after the previous block's close
}

func parseReadme(s string) readmeDoc {
	var d readmeDoc
	var cur *readmeFence
	var body []string
	lastClose := -1
	for i, line := range strings.Split(s, "\n") {
		n := i + 1
		switch {
		case cur == nil && strings.HasPrefix(line, "```"):
			cur = &readmeFence{line: n + 1, info: strings.TrimPrefix(line, "```"), follows: lastClose == n-1}
			body = nil
		case cur != nil && line == "```":
			cur.text = strings.Join(body, "\n")
			d.blocks = append(d.blocks, *cur)
			cur, lastClose = nil, n
		case cur != nil:
			body = append(body, line)
		case strings.HasPrefix(line, "#"):
			level := len(line) - len(strings.TrimLeft(line, "#"))
			if strings.HasPrefix(line[level:], " ") {
				d.headings = append(d.headings, readmeHeading{line: n, level: level, text: line})
			}
		}
	}
	return d
}

// section is the range of lines [from, to) of the section under the
// heading text.
func (d readmeDoc) section(text string) (from, to int, err error) {
	for i, h := range d.headings {
		if h.text != text {
			continue
		}
		to = 1 << 30
		for _, next := range d.headings[i+1:] {
			if next.level <= h.level {
				to = next.line
				break
			}
		}
		return h.line, to, nil
	}
	return 0, 0, fmt.Errorf("README.md has no heading %q: update readmeRuns", text)
}

// runBlocks are the blocks of r's section, in order.
func (d readmeDoc) runBlocks(r readmeRun) ([]readmeFence, error) {
	from, to, err := d.section(r.heading)
	if err != nil {
		return nil, err
	}
	type span struct{ from, to int }
	var out []span
	for _, w := range r.without {
		f, t, err := d.section(w)
		if err != nil {
			return nil, err
		}
		out = append(out, span{f, t})
	}
	var blocks []readmeFence
	for _, b := range d.blocks {
		in := b.line > from && b.line < to
		for _, s := range out {
			in = in && !(b.line > s.from && b.line < s.to)
		}
		if in {
			blocks = append(blocks, b)
		}
	}
	return blocks, nil
}

// readmeCommand is one command of a ```sh block.
type readmeCommand struct {
	line   int    // of README.md
	text   string // as written, its comment included
	status int    // the status its comment names, 0 for none
	answer *readmeAnswer
	saves  string // the file its comment says it writes
}

// firstLine is b's first line, its spaces trimmed.
func (b readmeFence) firstLine() string {
	first, _, _ := strings.Cut(b.text, "\n")
	return strings.TrimSpace(first)
}

// commands are the commands of an sh or console block, and for a console
// block what each writes (nil for an sh block).
func (b readmeFence) commands() ([]readmeCommand, []readmeAnswer, error) {
	switch b.info {
	case "sh":
		cmds, err := splitCommands(b)
		return cmds, nil, err
	case "console":
		return splitConsole(b)
	}
	return nil, nil, nil
}

var hereDoc = regexp.MustCompile(`<<-?\s*['"]?(\w+)['"]?`)

// splitConsole cuts a console block into its commands ("$ " lines, with
// the lines of a here-document, or after a backslash) and what each
// writes (the lines up to the next command).
func splitConsole(b readmeFence) ([]readmeCommand, []readmeAnswer, error) {
	var cmds []readmeCommand
	var outs []readmeAnswer
	lines := strings.Split(b.text, "\n")
	for i := 0; i < len(lines); {
		text, ok := strings.CutPrefix(lines[i], "$ ")
		if !ok {
			return nil, nil, fmt.Errorf("README.md:%d: a console block starts with a command (\"$ \")", b.line+i)
		}
		c := readmeCommand{line: b.line + i, text: text}
		i++
		for strings.HasSuffix(c.text, "\\") && i < len(lines) {
			c.text += "\n" + lines[i]
			i++
		}
		if m := hereDoc.FindStringSubmatch(c.text); m != nil {
			for {
				if i == len(lines) {
					return nil, nil, fmt.Errorf("README.md:%d: the here-document does not end with %s", c.line, m[1])
				}
				c.text += "\n" + lines[i]
				i++
				if lines[i-1] == m[1] {
					break
				}
			}
		}
		out := readmeAnswer{line: b.line + i}
		var written []string
		for ; i < len(lines) && !strings.HasPrefix(lines[i], "$ "); i++ {
			written = append(written, lines[i])
		}
		out.text = strings.Join(written, "\n")
		cmds, outs = append(cmds, c), append(outs, out)
	}
	return cmds, outs, nil
}

// splitCommands cuts an sh block into its commands: a line break ends one
// unless it is escaped or inside quotes. A comment that starts with a
// status gives the command's status, and the JSON value after it the
// command's answer.
func splitCommands(b readmeFence) ([]readmeCommand, error) {
	var cmds []readmeCommand
	var cur strings.Builder
	var comment strings.Builder
	line, start := b.line, b.line
	var quote rune
	inComment, escaped := false, false
	end := func() error {
		text := strings.TrimSpace(cur.String())
		if text != "" {
			c := readmeCommand{line: start, text: text}
			if err := c.parseComment(strings.TrimSpace(comment.String())); err != nil {
				return err
			}
			cmds = append(cmds, c)
		}
		cur.Reset()
		comment.Reset()
		inComment = false
		return nil
	}
	for _, r := range b.text + "\n" {
		if cur.Len() == 0 && r != '\n' && r != ' ' {
			start = line
		}
		switch {
		case r == '\n':
			line++
			if quote != 0 || escaped {
				escaped = false
				cur.WriteRune(r)
				continue
			}
			if err := end(); err != nil {
				return nil, err
			}
			continue
		case inComment:
			comment.WriteRune(r)
		case escaped:
			escaped = false
		case quote == '\'':
			if r == '\'' {
				quote = 0
			}
		case r == '\\':
			escaped = true
		case quote == '"':
			if r == '"' {
				quote = 0
			}
		case r == '\'' || r == '"':
			quote = r
		case r == '#' && (cur.Len() == 0 || strings.HasSuffix(cur.String(), " ")):
			inComment = true
		}
		cur.WriteRune(r)
	}
	if quote != 0 {
		return nil, fmt.Errorf("README.md:%d: a quote is not closed", start)
	}
	return cmds, nil
}

var (
	statusComment = regexp.MustCompile(`^\s*([1-5][0-9][0-9])\b\s*(.*)$`)
	savesComment  = regexp.MustCompile(`^saves (\S+)$`)
)

func (c *readmeCommand) parseComment(comment string) error {
	if m := savesComment.FindStringSubmatch(comment); m != nil {
		c.saves = m[1]
		return nil
	}
	m := statusComment.FindStringSubmatch(comment)
	if m == nil {
		return nil
	}
	c.status, _ = strconv.Atoi(m[1])
	if !strings.HasPrefix(m[2], "{") {
		return nil
	}
	dec := json.NewDecoder(strings.NewReader(m[2]))
	dec.UseNumber()
	var v any
	if err := dec.Decode(&v); err != nil {
		return fmt.Errorf("README.md:%d: the comment's answer: %w", c.line, err)
	}
	c.answer = &readmeAnswer{line: c.line, isJSON: true, json: v}
	return nil
}

// readmeAnswer is one answer the README shows.
type readmeAnswer struct {
	line   int
	isJSON bool
	json   any
	text   string
	http   *readmeHTTP
}

type readmeHTTP struct {
	status  string
	headers [][2]string
	body    any
}

// answers are the answers block b shows, its paths read as the run's.
func (b readmeFence) answers(paths *strings.Replacer) ([]readmeAnswer, error) {
	text := paths.Replace(b.text)
	if strings.HasPrefix(text, "HTTP/") {
		head, body, ok := strings.Cut(text, "\n\n")
		if !ok {
			return nil, fmt.Errorf("README.md:%d: an HTTP answer without a blank line after its headers", b.line)
		}
		lines := strings.Split(head, "\n")
		h := &readmeHTTP{status: lines[0]}
		for _, l := range lines[1:] {
			name, value, ok := strings.Cut(l, ": ")
			if !ok {
				return nil, fmt.Errorf("README.md:%d: header line %q", b.line, l)
			}
			h.headers = append(h.headers, [2]string{name, value})
		}
		v, err := jsonValues(body, b.line)
		if err != nil || len(v) != 1 {
			return nil, fmt.Errorf("README.md:%d: the body is not one JSON value (%v)", b.line, err)
		}
		h.body = v[0].json
		return []readmeAnswer{{line: b.line, http: h}}, nil
	}
	values, err := jsonValues(text, b.line)
	if err != nil && b.info == "json" {
		return nil, err
	}
	if err != nil {
		return []readmeAnswer{{line: b.line, text: text}}, nil
	}
	return values, nil
}

// jsonValues are the JSON values of text, each with its line.
func jsonValues(text string, line int) ([]readmeAnswer, error) {
	dec := json.NewDecoder(strings.NewReader(text))
	dec.UseNumber()
	var out []readmeAnswer
	for {
		var v any
		off := dec.InputOffset()
		err := dec.Decode(&v)
		if errors.Is(err, io.EOF) {
			return out, nil
		}
		if err != nil {
			return nil, fmt.Errorf("README.md:%d: %w", line, err)
		}
		rest := text[off:]
		skipped := len(rest) - len(strings.TrimLeft(rest, " \n"))
		at := line + strings.Count(text[:int(off)+skipped], "\n")
		out = append(out, readmeAnswer{line: at, isJSON: true, json: v})
	}
}

// diffJSONText compares the JSON text got with want.
func diffJSONText(want any, got []byte) []string {
	dec := json.NewDecoder(bytes.NewReader(got))
	dec.UseNumber()
	var v any
	if err := dec.Decode(&v); err != nil {
		return []string{fmt.Sprintf("not JSON: %v", err)}
	}
	if _, err := dec.Token(); !errors.Is(err, io.EOF) {
		return []string{"more than one JSON value"}
	}
	return diffJSON("", want, v)
}

// diffJSON lists how got differs from want, at path.
func diffJSON(path string, want, got any) []string {
	at := path
	if at == "" {
		at = "."
	}
	switch w := want.(type) {
	case map[string]any:
		g, ok := got.(map[string]any)
		if !ok {
			return []string{fmt.Sprintf("%s: README %s, server %s", at, compact(want), compact(got))}
		}
		var diffs []string
		keys := make([]string, 0, len(w)+len(g))
		for k := range w {
			keys = append(keys, k)
		}
		for k := range g {
			if _, ok := w[k]; !ok {
				keys = append(keys, k)
			}
		}
		sort.Strings(keys)
		for _, k := range keys {
			wv, inW := w[k]
			gv, inG := g[k]
			switch {
			case !inG:
				diffs = append(diffs, fmt.Sprintf("%s.%s: README %s, the server has no such member", path, k, compact(wv)))
			case !inW:
				diffs = append(diffs, fmt.Sprintf("%s.%s: the server has %s, the README has no such member", path, k, compact(gv)))
			default:
				if vary := readmeVarying[k]; vary != nil {
					handled, err := vary(wv, gv)
					if err != nil {
						diffs = append(diffs, fmt.Sprintf("%s.%s: server %s: %v", path, k, compact(gv), err))
					}
					if handled {
						continue
					}
				}
				diffs = append(diffs, diffJSON(path+"."+k, wv, gv)...)
			}
		}
		diffs = append(diffs, diffLifetime(at, w, g)...)
		diffs = append(diffs, diffStorage(at, g)...)
		return append(diffs, diffDumpFile(at, g)...)
	case []any:
		g, ok := got.([]any)
		if !ok || len(g) != len(w) {
			return []string{fmt.Sprintf("%s: README %s, server %s", at, compact(want), compact(got))}
		}
		var diffs []string
		for i := range w {
			diffs = append(diffs, diffJSON(fmt.Sprintf("%s[%d]", path, i), w[i], g[i])...)
		}
		return diffs
	default:
		if want != got {
			return []string{fmt.Sprintf("%s: README %s, server %s", at, compact(want), compact(got))}
		}
		return nil
	}
}

// diffLifetime checks that a record that expires lives as long as the
// README's: expires_at - updated_at is the same.
func diffLifetime(path string, want, got map[string]any) []string {
	life := func(m map[string]any) (time.Duration, bool) {
		u, ok1 := m["updated_at"].(string)
		e, ok2 := m["expires_at"].(string)
		tu, err1 := time.Parse(time.RFC3339Nano, u)
		te, err2 := time.Parse(time.RFC3339Nano, e)
		return te.Sub(tu), ok1 && ok2 && err1 == nil && err2 == nil
	}
	w, ok := life(want)
	if !ok {
		return nil
	}
	if g, ok := life(got); !ok || g != w {
		return []string{fmt.Sprintf("%s: expires_at - updated_at: README %v, server %v", path, w, g)}
	}
	return nil
}

// diffStorage checks that /v1/status's sizes are in order: the bytes in
// use within the database file, the bytes counted against the quota (those
// and the writes not in the file yet), the file's size and the data
// folder's.
func diffStorage(path string, got map[string]any) []string {
	var n [4]int64
	for i, k := range []string{"in_use_bytes", "used_bytes", "db_size_bytes", "file_size_bytes"} {
		num, ok := got[k].(json.Number)
		if !ok {
			return nil
		}
		n[i], _ = num.Int64()
	}
	if n[0] <= 0 || n[0] > n[1] || n[0] > n[2] || n[2] > n[3] {
		return []string{fmt.Sprintf("%s: in_use_bytes %d, used_bytes %d, db_size_bytes %d, file_size_bytes %d: "+
			"want 0 < in_use_bytes <= used_bytes, in_use_bytes <= db_size_bytes <= file_size_bytes", path, n[0], n[1], n[2], n[3])}
	}
	return nil
}

// diffDumpFile checks that a dump's file_size is the size of its file.
func diffDumpFile(path string, got map[string]any) []string {
	file, ok1 := got["path"].(string)
	size, ok2 := got["file_size"].(json.Number)
	if !ok1 || !ok2 {
		return nil
	}
	fi, err := os.Stat(file)
	if err != nil {
		return []string{fmt.Sprintf("%s: path: %v", path, err)}
	}
	if size.String() != strconv.FormatInt(fi.Size(), 10) {
		return []string{fmt.Sprintf("%s: file_size %s, but the file has %d bytes", path, size, fi.Size())}
	}
	return nil
}

func isTime(_, got any) (bool, error) {
	s, ok := got.(string)
	if !ok {
		return true, errors.New("not a time")
	}
	_, err := time.Parse(time.RFC3339Nano, s)
	return true, err
}

func isNumber(_, got any) (bool, error) {
	if _, ok := got.(json.Number); !ok {
		return true, errors.New("not a number")
	}
	return true, nil
}

// isBuildVersion: a version that is a string is the build's (/v1/status:
// git describe's, "test" here); a record's is a number, compared exactly.
func isBuildVersion(want, got any) (bool, error) {
	if _, ok := want.(string); !ok {
		return false, nil
	}
	if _, ok := got.(string); !ok {
		return true, errors.New("not a string")
	}
	return true, nil
}

var sha256Hex = regexp.MustCompile(`^[0-9a-f]{64}$`)

func isSHA256(_, got any) (bool, error) {
	if s, _ := got.(string); !sha256Hex.MatchString(s) {
		return true, errors.New("not a sha256 (64 hex digits)")
	}
	return true, nil
}

var snapshotID = regexp.MustCompile(`^\d{8}T\d{6}(\.\d+)?Z(-r\d+)$`)

// isSnapshotID: a snapshot's id is the time it was taken, then its
// revision, which must be the README's; another id is compared exactly.
func isSnapshotID(want, got any) (bool, error) {
	w, _ := want.(string)
	wm := snapshotID.FindStringSubmatch(w)
	if wm == nil {
		return false, nil
	}
	g, _ := got.(string)
	gm := snapshotID.FindStringSubmatch(g)
	if gm == nil || gm[2] != wm[2] {
		return true, fmt.Errorf("not a snapshot id ending in %s", wm[2])
	}
	return true, nil
}

func compact(v any) string {
	b, err := json.Marshal(v)
	if err != nil {
		return fmt.Sprint(v)
	}
	return string(b)
}

// diffHTTP compares a curl -i answer with want.
func diffHTTP(want readmeHTTP, got []byte) []string {
	head, body, ok := strings.Cut(string(got), "\r\n\r\n")
	if !ok {
		return []string{"not an HTTP answer (curl -i)"}
	}
	lines := strings.Split(head, "\r\n")
	var diffs []string
	if strings.TrimSpace(lines[0]) != want.status {
		diffs = append(diffs, fmt.Sprintf("status line: README %q, server %q", want.status, lines[0]))
	}
	shown := map[string]string{}
	for _, h := range want.headers {
		shown[strings.ToLower(h[0])] = h[1]
	}
	seen := map[string]bool{}
	for _, l := range lines[1:] {
		name, value, _ := strings.Cut(l, ": ")
		key := strings.ToLower(name)
		seen[key] = true
		w, ok := shown[key]
		switch {
		case ok && w != value:
			diffs = append(diffs, fmt.Sprintf("header %s: README %q, server %q", name, w, value))
		case !ok && !slices.ContainsFunc(readmeShortenedHeaders, func(s string) bool { return strings.EqualFold(s, name) }):
			diffs = append(diffs, fmt.Sprintf("header %s: %q, not shown by the README nor said to be left out", name, value))
		}
	}
	for _, h := range want.headers {
		if !seen[strings.ToLower(h[0])] {
			diffs = append(diffs, fmt.Sprintf("header %s: README %q, the server sends none", h[0], h[1]))
		}
	}
	return append(diffs, diffJSONText(want.body, []byte(body))...)
}

// diffText compares text answers line by line, what varies masked
// (readmeTextVarying).
func diffText(want, got string) []string {
	norm := func(s string) []string {
		s = strings.ReplaceAll(s, "\r\n", "\n")
		for _, v := range readmeTextVarying {
			s = v.re.ReplaceAllString(s, v.mask)
		}
		return strings.Split(strings.TrimRight(s, "\n"), "\n")
	}
	w, g := norm(want), norm(got)
	var diffs []string
	for i := 0; i < max(len(w), len(g)); i++ {
		var wl, gl string
		if i < len(w) {
			wl = w[i]
		}
		if i < len(g) {
			gl = g[i]
		}
		if wl != gl {
			diffs = append(diffs, fmt.Sprintf("line %d: README %q, server %q", i+1, wl, gl))
		}
	}
	return diffs
}

// The comparison TestReadmeExamples makes fails on what must match and
// passes over only what varies (readmeVarying, readmeShortenedHeaders).
func TestReadmeComparison(t *testing.T) {
	t.Parallel()
	want := func(s string) any {
		v, err := jsonValues(s, 1)
		require.NoError(t, err)
		require.Len(t, v, 1)
		return v[0].json
	}
	rec := `{"ns":"default","key":"k","value":{"a":1},"version":2,"revision":5,"who":"bob",` +
		`"updated_at":"2026-11-27T06:09:22.1Z","expires_at":"2026-11-27T06:14:22.1Z"}`
	for got, diffs := range map[string]int{
		// Other times, the same lifetime: equal.
		`{"ns":"default","key":"k","value":{"a":1},"version":2,"revision":5,"who":"bob",` +
			`"updated_at":"2030-01-01T00:00:00Z","expires_at":"2030-01-01T00:05:00Z"}`: 0,
		`{"ns":"default","key":"k","value":{"a":1},"version":2,"revision":6,"who":"bob",` +
			`"updated_at":"2030-01-01T00:00:00Z","expires_at":"2030-01-01T00:05:00Z"}`: 1,
		`{"ns":"default","key":"k","value":{"a":1.0},"version":2,"revision":5,"who":"bob",` +
			`"updated_at":"2030-01-01T00:00:00Z","expires_at":"2030-01-01T00:05:00Z"}`: 1,
		`{"ns":"default","key":"k","value":{"a":1},"version":2,"revision":5,"who":"bob",` +
			`"updated_at":"2030-01-01T00:00:00Z","expires_at":"2030-01-01T00:06:00Z"}`: 1,
		`{"ns":"default","key":"k","value":{"a":1},"version":"2","revision":5,"who":"bob",` +
			`"updated_at":"2030-01-01T00:00:00Z","expires_at":"2030-01-01T00:05:00Z"}`: 1,
		`{"ns":"default","key":"k","value":{"a":1},"version":2,"revision":5,"who":"bob","updated_at":"now"}`: 3,
		`{"ns":"default","key":"k","value":{"a":1},"version":2,"revision":5,"who":"bob",` +
			`"updated_at":"2030-01-01T00:00:00Z","expires_at":"2030-01-01T00:05:00Z","extra":1}`: 1,
	} {
		require.Len(t, diffJSONText(want(rec), []byte(got)), diffs, got)
	}

	h := readmeHTTP{status: "HTTP/1.1 200 OK", headers: [][2]string{{"Etag", `"2"`}}, body: want(`{"v":1}`)}
	require.Empty(t, diffHTTP(h, []byte("HTTP/1.1 200 OK\r\nEtag: \"2\"\r\nDate: x\r\nX-Request-Id: y\r\n\r\n{\"v\":1}")))
	require.Len(t, diffHTTP(h, []byte("HTTP/1.1 200 OK\r\nEtag: \"3\"\r\n\r\n{\"v\":1}")), 1)
	require.Len(t, diffHTTP(h, []byte("HTTP/1.1 200 OK\r\nEtag: \"2\"\r\nVary: z\r\n\r\n{\"v\":1}")), 1, "a header neither shown nor said left out")

	require.Empty(t, diffText("a,2026-11-27T06:35:35.26Z\nb", "a,2030-01-01T00:00:00Z\r\nb\r\n"))
	require.Len(t, diffText("a,1\nb", "a,2\r\nb\r\n"), 1)

	// What varies is masked; what does not still differs.
	require.Empty(t, diffText("ctxd_6dN3v0tA0mUeR2w8pGQ3cXj2l5iYxL1sZqK7bH4eF9o\nrun/lock  6  in 21s   x\nctx.csv: 199 B\n"+
		"version:             3682f8b\nuptime:              3s\ndb size:             20.0 KiB",
		"ctxd_Qm8xT2vN5bR1cW7yL0kJ3hF6gD9sA4pZeU1iO2tY5rE\nrun/lock  6  in 30s   x\nctx.csv: 644 B\n"+
			"version:             test\nuptime:              0s\ndb size:             24.0 KiB"))
	require.Len(t, diffText("run/lock  6  in 21s   x\nctx.csv: csv of default at revision 7, 199 B",
		"run/lock  7  in 21s   x\nctx.csv: csv of default at revision 8, 199 B"), 2)

	for got, err := range map[string]bool{"20261206T122644Z-r3": false, "20261206T122644.2Z-r3": false,
		"20261206T122644Z-r4": true, "r3": true} {
		handled, e := isSnapshotID("20261127T064501Z-r3", got)
		require.True(t, handled)
		require.Equal(t, err, e != nil, got)
	}
	handled, _ := isSnapshotID("c1", "c2")
	require.False(t, handled, "an id that is no snapshot's is compared exactly")
	_, err := isSHA256("", "9f2c...")
	require.Error(t, err)

	m := serveCommand.FindStringSubmatch("CTXD_AUTH_TOKENS_FILE=tokens.yaml ctxd serve --data ./data-auth   # in a terminal")
	require.Equal(t, []string{"CTXD_AUTH_TOKENS_FILE=tokens.yaml ", "./data-auth"}, m[1:])
	require.False(t, serveCommand.MatchString("ctxd serve [--config FILE] [--addr HOST:PORT]"))

	cmds, outs, err := splitConsole(readmeFence{line: 20, text: "$ ctxd put n 44; echo \"exit $?\"\nctxd: conflict\nexit 5\n" +
		"$ ctxd txn <<'EOF'\n{\"op\":\"put\"}\n$ x\nEOF\nOP  KEY\n$ ctxd get a \\\n  -n b\n$ true"})
	require.NoError(t, err)
	require.Len(t, cmds, 4)
	require.Equal(t, []int{20, 23, 28, 30}, []int{cmds[0].line, cmds[1].line, cmds[2].line, cmds[3].line})
	require.Equal(t, "ctxd txn <<'EOF'\n{\"op\":\"put\"}\n$ x\nEOF", cmds[1].text, "a here-document is the command's")
	require.Equal(t, "ctxd get a \\\n  -n b", cmds[2].text)
	require.Equal(t, []string{"ctxd: conflict\nexit 5", "OP  KEY", "", ""}, []string{outs[0].text, outs[1].text, outs[2].text, outs[3].text})
	require.Equal(t, 21, outs[0].line)

	cmds, err = splitCommands(readmeFence{line: 10, text: "curl $B/a -d '{\"x\":\n1}'   # 409 if taken\n" +
		"curl $B/b \\\n  -H 'X: #1'\ncurl $B/healthz   # 200 {\"status\":\"ok\"} while up"})
	require.NoError(t, err)
	require.Len(t, cmds, 3)
	require.Equal(t, []int{10, 12, 14}, []int{cmds[0].line, cmds[1].line, cmds[2].line})
	require.Equal(t, []int{409, 0, 200}, []int{cmds[0].status, cmds[1].status, cmds[2].status})
	require.Equal(t, map[string]any{"status": "ok"}, cmds[2].answer.json)
	cmds, err = splitCommands(readmeFence{line: 1, text: `curl -OJ "$B/x"   # saves default-r4.csv`})
	require.NoError(t, err)
	require.Equal(t, "default-r4.csv", cmds[0].saves)
}
