package main

import (
	"bytes"
	"context"
	"encoding/csv"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/framework0/ctxd"
	"github.com/framework0/ctxd/client"
	"github.com/framework0/ctxd/export"
	"github.com/framework0/ctxd/internal/testkit"
)

// jsonDump is the part of a JSON dump the CLI tests read.
type jsonDump struct {
	Revision  uint64                     `json:"revision"`
	Namespace string                     `json:"namespace"`
	Who       string                     `json:"who"`
	Context   map[string]json.RawMessage `json:"context"`
	KeyCount  int                        `json:"key_count"`
	History   []json.RawMessage          `json:"history"`
}

func TestDumpImportCLI(t *testing.T) {
	t.Parallel()
	data := t.TempDir()
	srv := startServer(t, data)
	env := []string{"CTXD_SERVER=" + checkedURL(t, srv)}
	run := func(t *testing.T, stdin string, args ...string) string {
		t.Helper()
		return cliOK(t, env, stdin, args...)
	}
	run(t, "", "put", "app.name", "ctxd")
	run(t, "", "put", "app.config", `{"debug": true}`)
	run(t, "", "put", "n", "1")
	rev1 := uint64(3)
	run(t, "", "put", "n", "2")

	// To stdout, JSON by default, consistent at the current revision.
	d := fromJSON[jsonDump](t, run(t, "", "dump"))
	assert.Equal(t, uint64(4), d.Revision)
	assert.Equal(t, "default", d.Namespace)
	assert.Equal(t, "tester", d.Who)
	assert.Equal(t, map[string]json.RawMessage{
		"app.name": json.RawMessage(`"ctxd"`), "app.config": json.RawMessage(`{"debug":true}`), "n": json.RawMessage(`2`),
	}, d.Context)

	// At an earlier revision, with history.
	d = fromJSON[jsonDump](t, run(t, "", "dump", "--rev", strconv.FormatUint(rev1, 10), "--history"))
	assert.Equal(t, rev1, d.Revision)
	assert.Equal(t, `1`, string(d.Context["n"]))
	assert.Len(t, d.History, 3)

	// To a file, in each format.
	dir := t.TempDir()
	for _, f := range export.Formats {
		out := filepath.Join(dir, "ctx."+string(f))
		msg := run(t, "", "dump", "--format", string(f), "-o", out)
		assert.Contains(t, msg, out)
		assert.Contains(t, msg, "at revision 4")
		b, err := os.ReadFile(out)
		require.NoError(t, err)
		fi, err := os.Stat(out)
		require.NoError(t, err)
		assert.Equal(t, os.FileMode(0o600), fi.Mode().Perm(), "a dump holds every value: its owner's alone, as snapshot get's file")
		switch f {
		case export.CSV:
			rows, err := csv.NewReader(bytes.NewReader(b)).ReadAll()
			require.NoError(t, err)
			assert.Len(t, rows, 4)
		case export.TXT:
			assert.Contains(t, string(b), "app.name=ctxd\n")
		case export.Pretty:
			assert.Contains(t, string(b), "app.config: {\n  \"debug\": true\n}")
		}
	}
	entries, err := os.ReadDir(dir)
	require.NoError(t, err)
	assert.Len(t, entries, 4, "no temp file is left next to the output")

	// For a spreadsheet: the text cells it would take for a formula
	// quoted (the run's "=x" value), to stdout and server-side.
	run(t, "", "put", "formula", `"=x"`)
	for _, args := range [][]string{
		{"dump", "--format", "csv", "--spreadsheet-safe"},
		{"dump", "--format", "csv", "--spreadsheet-safe", "--server-side", "--filename", "sheet"},
	} {
		out := run(t, "", args...)
		if slices.Contains(args, "--server-side") {
			b, err := os.ReadFile(filepath.Join(data, "dumps", "sheet.csv"))
			require.NoError(t, err)
			out = string(b)
		}
		assert.Contains(t, out, "\r\nformula,'=x,string,", args)
	}
	assert.Contains(t, run(t, "", "dump", "--format", "csv"), "\r\nformula,=x,string,", "as stored without it")
	run(t, "", "dumps", "rm", "sheet.csv")
	run(t, "", "del", "formula")

	// Server-side, then listed and downloaded.
	out := run(t, "", "dump", "--server-side", "--filename", "nightly", "--format", "csv")
	assert.Contains(t, out, "nightly.csv")
	assert.Contains(t, out, filepath.Join(data, "dumps", "nightly.csv"))
	run(t, "", "dump", "--server-side")
	assert.Contains(t, run(t, "", "dumps", "-o", "value"), "nightly.csv\n")
	list := fromJSON[ctxd.DumpList](t, run(t, "", "dumps", "-o", "json"))
	assert.Equal(t, filepath.Join(data, "dumps"), list.Directory)
	assert.Len(t, list.Dumps, 2)
	assert.Contains(t, run(t, "", "dumps"), "FILENAME")
	assert.Equal(t, "removed nightly.csv\n", run(t, "", "dumps", "rm", "nightly.csv"))
	assert.NotContains(t, run(t, "", "dumps", "-o", "value"), "nightly.csv")
	others := fromJSON[ctxd.DumpList](t, run(t, "", "dumps", "-o", "json")).Dumps
	require.NotEmpty(t, others)
	assert.JSONEq(t, `{"removed":"`+others[0].Filename+`"}`, run(t, "", "dumps", "rm", others[0].Filename, "-o", "json"), "-o json is JSON")

	// Import: a dump file into another namespace gives it the same keys.
	jsonFile := filepath.Join(dir, "ctx.json")
	out = run(t, "", "import", "-n", "copy", jsonFile)
	assert.Contains(t, out, "copy")
	c := fromJSON[jsonDump](t, run(t, "", "dump", "-n", "copy"))
	d = fromJSON[jsonDump](t, run(t, "", "dump"))
	assert.Equal(t, d.Context, c.Context)
	// From stdin, with JSON output.
	res := fromJSON[client.ImportResult](t, run(t, `{"context":{"x":1,"y":"z"}}`, "import", "-n", "piped", "-", "-o", "json"))
	assert.Equal(t, 2, res.Imported)
	assert.Equal(t, "piped", res.Namespace)

	// Failures.
	bad := filepath.Join(dir, "bad.json")
	require.NoError(t, os.WriteFile(bad, []byte(`{"context":{"a":1`), 0o600))
	for _, tt := range []struct {
		name   string
		args   []string
		code   int
		stderr string
	}{
		{"malformed import", []string{"import", bad}, 1, "not a JSON dump"},
		{"missing import file", []string{"import", filepath.Join(dir, "nope.json")}, 1, "no such file"},
		{"unknown format", []string{"dump", "--format", "xml"}, 2, "unknown dump format"},
		{"empty format", []string{"dump", "--format", ""}, 2, "unknown dump format"},
		{"spreadsheet-safe json", []string{"dump", "--spreadsheet-safe"}, 2, "--spreadsheet-safe: spreadsheet_safe is for csv dumps only"},
		{"filename without server-side", []string{"dump", "--filename", "x"}, 2, "--server-side"},
		{"output and server-side", []string{"dump", "--server-side", "-o", "x"}, 2, "none of the others"},
		{"bad filename", []string{"dump", "--server-side", "--filename", "../x"}, 2, "bad dump filename"},
		{"future revision", []string{"dump", "--rev", "999"}, 1, "future_revision"},
		{"import needs a file", []string{"import"}, 2, "FILE"},
		// Its failed read failed the request: "Is the server running?", exit 3.
		{"import of a folder", []string{"import", dir}, 1, "import: read " + dir + ": is a directory"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			r := cli(t, env, "", tt.args...)
			assert.Equal(t, tt.code, r.code, r.stderr)
			assert.Contains(t, r.stderr, tt.stderr)
		})
	}
	// A failed dump to a file leaves no file.
	r := cli(t, env, "", "dump", "--rev", "999", "-o", filepath.Join(dir, "never.json"))
	assert.Equal(t, 1, r.code)
	assert.NoFileExists(t, filepath.Join(dir, "never.json"))
	entries, err = os.ReadDir(dir)
	require.NoError(t, err)
	assert.Len(t, entries, 5, "the four dumps and bad.json, no temp file")
}

// A dump killed midway, with the server, leaves no listed file: the partial
// dump is a temp file that the listing never shows and the next start
// removes.
func TestDumpKilledMidway(t *testing.T) {
	t.Parallel()
	data := t.TempDir()
	// A namespace big enough that a pretty dump takes a while: 300 values
	// of 20,000 numbers each, one line per number once indented. The
	// server imports them in one request of 32 MB (hence the body limit),
	// streamed from pieces: checking or copying that much JSON in this
	// race-detecting process took seconds.
	srv := testkit.StartServe(t, bin, data, testkit.ServeOptions{Env: testEnv("CTXD_HTTP_MAX_BODY_BYTES=" + strconv.Itoa(64<<20))})
	var big strings.Builder
	big.WriteString("[")
	for i := range 20000 {
		if i > 0 {
			big.WriteString(",")
		}
		big.WriteString(strconv.Itoa(i))
	}
	big.WriteString("]")
	parts := []io.Reader{strings.NewReader(`{"context":{`)}
	for i := range 300 {
		sep := ","
		if i == 0 {
			sep = ""
		}
		parts = append(parts, strings.NewReader(sep+`"k`+strconv.Itoa(i)+`":`), strings.NewReader(big.String()))
	}
	parts = append(parts, strings.NewReader("}}"))
	c, err := client.New(srv.URL)
	require.NoError(t, err)
	res, err := c.Import(context.Background(), "", io.MultiReader(parts...))
	require.NoError(t, err)
	require.Equal(t, 300, res.Imported)
	dumps := filepath.Join(data, "dumps")
	done := make(chan error, 1)
	go func() {
		resp, err := http.Post(srv.URL+"/ctx/dump", "application/json", strings.NewReader(`{"format":"pretty","filename":"big","include_history":true}`))
		if err == nil {
			resp.Body.Close()
		}
		done <- err
	}()

	// Wait until the dump is being written, then kill the server.
	var temp string
	testkit.Eventually(t, func() bool {
		es, _ := os.ReadDir(dumps)
		for _, e := range es {
			if strings.HasPrefix(e.Name(), export.TempPrefix) {
				if fi, err := e.Info(); err == nil && fi.Size() > 0 {
					temp = e.Name()
				}
			}
		}
		return temp != ""
	}, "the dump never started")
	srv.Signal(syscall.SIGKILL)
	assert.Equal(t, -1, srv.Wait(10*time.Second), "killed by the signal")
	require.Error(t, <-done, "the dump request got no answer")

	assert.Equal(t, []string{temp}, testkit.DirNames(t, dumps), "only the partial temp file is on disk")
	assert.NoFileExists(t, filepath.Join(dumps, "big.pretty"))

	// After a restart: nothing listed, the temp file removed.
	srv = startServer(t, data)
	resp, err := http.Get(srv.URL + "/ctx/dump/list")
	require.NoError(t, err)
	defer resp.Body.Close()
	var list struct {
		DumpCount int `json:"dump_count"`
	}
	require.NoError(t, json.NewDecoder(resp.Body).Decode(&list))
	assert.Equal(t, 0, list.DumpCount)
	assert.Empty(t, testkit.DirNames(t, dumps), "the temp file was removed at start")
}

// -o FILE replaces a regular file whole, writes through a symbolic link to
// its target, and writes straight into anything else: the rename of the
// whole-file write replaced a named pipe (or, as root, /dev/null) with a
// regular file. A folder is refused.
func TestDumpToLinksPipesAndFolders(t *testing.T) {
	t.Parallel()
	srv := startServer(t, t.TempDir())
	env := []string{"CTXD_SERVER=" + checkedURL(t, srv)}
	cliOK(t, env, "", "put", "k", "1")
	dir := t.TempDir()

	target := filepath.Join(dir, "target.json")
	require.NoError(t, os.WriteFile(target, []byte("old"), 0o644))
	link := filepath.Join(dir, "link.json")
	require.NoError(t, os.Symlink("target.json", link))
	cliOK(t, env, "", "dump", "-o", link)
	fi, err := os.Lstat(link)
	require.NoError(t, err)
	assert.NotZero(t, fi.Mode()&os.ModeSymlink, "the link is still a link")
	assert.JSONEq(t, `1`, string(fromJSON[jsonDump](t, string(readFile(t, target))).Context["k"]), "the link's target has the dump")

	pipe := filepath.Join(dir, "pipe")
	require.NoError(t, syscall.Mkfifo(pipe, 0o644))
	got := make(chan string, 1)
	go func() {
		b, _ := os.ReadFile(pipe) // opens once the dump does, reads to its end
		got <- string(b)
	}()
	r := cli(t, env, "", "dump", "-o", pipe)
	require.Equal(t, 0, r.code, r.stderr)
	select {
	case s := <-got:
		assert.JSONEq(t, `1`, string(fromJSON[jsonDump](t, s).Context["k"]))
	case <-time.After(testkit.Deadline):
		t.Fatal("nothing came through the pipe")
	}
	fi, err = os.Lstat(pipe)
	require.NoError(t, err)
	assert.NotZero(t, fi.Mode()&os.ModeNamedPipe, "the pipe is still a pipe, not a file")
	es, err := os.ReadDir(dir)
	require.NoError(t, err)
	assert.Len(t, es, 3, "no temp file left: %v", es)

	r = cli(t, env, "", "dump", "-o", dir)
	assert.Equal(t, 1, r.code)
	assert.Contains(t, r.stderr, dir+" is a folder: give a file name")

	// A pipe nobody reads blocks its writer where no context reaches:
	// Ctrl-C still ends it (it was caught, and the process hung).
	lonely := filepath.Join(dir, "lonely")
	require.NoError(t, syscall.Mkfifo(lonely, 0o644))
	cmd := exec.Command(bin, "dump", "-o", lonely)
	cmd.Env = testEnv(env...)
	require.NoError(t, cmd.Start())
	time.Sleep(300 * time.Millisecond) // in its open of the pipe
	require.NoError(t, cmd.Process.Signal(os.Interrupt))
	ended := make(chan error, 1)
	go func() { ended <- cmd.Wait() }()
	select {
	case <-ended:
	case <-time.After(testkit.Deadline):
		_ = cmd.Process.Kill()
		t.Fatal("Ctrl-C did not end a dump into a pipe nobody reads")
	}
}

// Ctrl-C during -o FILE stops the write and takes its temp file away.
func TestWriteOutFileInterrupted(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "dump.json")
	_, _, _, err := writeOutFile(context.Background(), path, 0o644, func(ctx context.Context, w io.Writer) error {
		if _, err := w.Write(make([]byte, 1<<20)); err != nil {
			return err
		}
		// Caught while it writes (without writeOutFile's handler it would
		// end the test binary).
		if err := syscall.Kill(os.Getpid(), syscall.SIGINT); err != nil {
			return err
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(testkit.Deadline):
			return errors.New("the signal did not stop the write")
		}
	})
	require.EqualError(t, err, "interrupted: "+path+" not written")
	es, err := os.ReadDir(dir)
	require.NoError(t, err)
	assert.Empty(t, es, "the temp file is gone")
}
