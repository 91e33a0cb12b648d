package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
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

	"github.com/framework0/ctxd/client"
	"github.com/framework0/ctxd/internal/testkit"
	"github.com/framework0/ctxd/migrations"
)

// keyState is what a server answers of all its data: every key with
// its value, version and revisions, every key's history, the revision.
type keyState struct {
	Revision uint64
	Keys     map[string]string   // ns/key: value v<version> c<create_rev> m<mod_rev>
	History  map[string][]string // ns/key: op value @revision, newest first
}

func stateOfServer(t *testing.T, url string) keyState {
	t.Helper()
	cl, err := client.New(url)
	require.NoError(t, err)
	ctx := context.Background()
	st := keyState{Keys: map[string]string{}, History: map[string][]string{}}
	nss, err := cl.Namespaces(ctx)
	require.NoError(t, err)
	for _, ns := range nss {
		recs, err := cl.ListAll(ctx, ns.Name, "")
		require.NoError(t, err)
		for _, r := range recs {
			id := ns.Name + "/" + r.Key
			st.Keys[id] = fmt.Sprintf("%s v%d c%d m%d", r.Value, r.Version, r.CreateRev, r.ModRev)
			h, err := cl.History(ctx, ns.Name, r.Key, client.HistoryOptions{Limit: 1000})
			require.NoError(t, err)
			for _, c := range h.Changes {
				st.History[id] = append(st.History[id], fmt.Sprintf("%s %s @%d", c.Op, c.Value, c.Revision))
			}
		}
	}
	status, err := cl.Status(ctx)
	require.NoError(t, err)
	st.Revision = status.Revision
	return st
}

// readmeBlock returns the lines of the first ```sh block after marker in
// the README.
func readmeBlock(t *testing.T, marker string) []string {
	t.Helper()
	b, err := os.ReadFile(filepath.Join("..", "..", "README.md"))
	require.NoError(t, err)
	_, rest, ok := strings.Cut(string(b), marker)
	require.True(t, ok, "README has %q", marker)
	_, rest, ok = strings.Cut(rest, "```sh\n")
	require.True(t, ok)
	block, _, ok := strings.Cut(rest, "```")
	require.True(t, ok)
	return strings.Split(strings.TrimSpace(block), "\n")
}

// The README's "rebuild on a new machine" walk-through, run as written:
// each command line of its block runs in bash, with the built binary as
// ctxd, in a home folder of the machine its comment names. Only these
// differ from a real run: the new machine's data folder (/var/lib/ctxd)
// is a temp folder, scp copies into the new machine's home folder, and
// `ctxd serve` is started by the test (on a free port). Then the new
// server must have what the old one had at the snapshot, keys, versions
// and history, not what came after, go on far after the snapshot's
// revision, and answer compacted to a watcher resuming from before it or
// from a change the old server made after it.
func TestReadmeRebuildOnANewMachine(t *testing.T) {
	t.Parallel()
	block := readmeBlock(t, "**Rebuild on a new machine.**")
	pathDir := t.TempDir()
	require.NoError(t, os.Symlink(bin, filepath.Join(pathDir, "ctxd")))
	oldHome, newHome := t.TempDir(), t.TempDir()
	dataB := filepath.Join(t.TempDir(), "machine-b", "ctxd")

	a := startServer(t, t.TempDir())
	cl, err := client.New(a.URL)
	require.NoError(t, err)
	ctx := context.Background()
	put := func(ns, key, value string) {
		_, err := cl.Put(ctx, ns, key, json.RawMessage(value), client.PutOptions{})
		require.NoError(t, err)
	}
	put("default", "app.config.debug", `true`)
	put("default", "app.config.debug", `false`)
	put("default", "deploy/prod/version", `"1.4.2"`)
	put("team", "members", `["alice","bob"]`)
	put("default", "scratch", `{"tmp":1}`)
	_, err = cl.Delete(ctx, "default", "scratch", client.DeleteOptions{})
	require.NoError(t, err)
	put("team", "members", `["alice","bob","carol"]`)
	atSnapshot := stateOfServer(t, a.URL)

	home, env := "", []string(nil)
	var seenOnA uint64 // the last revision a watcher of the old server saw
	var b *serverProcess
	var outputs []string
	for _, line := range block {
		switch {
		case line == "# on the old machine (CTXD_SERVER points at its server)":
			home, env = oldHome, []string{"CTXD_SERVER=" + a.URL}
			continue
		case line == "# on the new machine":
			// The old server goes on after the snapshot: none of it
			// reaches the new machine.
			put("default", "after-snapshot", `1`)
			seenOnA = stateOfServer(t, a.URL).Revision
			home, env = newHome, nil
			continue
		case strings.HasPrefix(line, "#"):
			t.Fatalf("a comment the test does not know: %q", line)
		}
		require.NotEmpty(t, home, "a command before the block says which machine: %q", line)
		line = strings.ReplaceAll(line, "/var/lib/ctxd", dataB)
		if strings.HasPrefix(line, "ctxd serve") {
			require.Equal(t, "ctxd serve --data "+dataB, line)
			b = testkit.StartServe(t, bin, dataB, testkit.ServeOptions{})
			continue
		}
		// scp to new-host: copies into the new machine's home folder.
		script := `set -euo pipefail
scp() { local n=$#; [ "${!n}" = new-host: ] || { echo "scp: only new-host: is known" >&2; return 1; }; cp "${@:1:n-1}" "$NEW_HOME"/; }
` + line
		cmd := exec.Command("bash", "-c", script)
		cmd.Dir = home
		cmd.Env = testEnv(append(env, "PATH="+pathDir+":"+os.Getenv("PATH"), "NEW_HOME="+newHome)...)
		var stdout, stderr bytes.Buffer
		cmd.Stdout, cmd.Stderr = &stdout, &stderr
		require.NoError(t, cmd.Run(), "%s\nstdout: %s\nstderr: %s", line, stdout.String(), stderr.String())
		outputs = append(outputs, stdout.String())
		if strings.HasSuffix(line, "--dry-run") {
			assert.Contains(t, stdout.String(), "dry run: would create")
			assert.NoDirExists(t, filepath.Dir(dataB), "a dry run creates nothing")
		}
	}
	require.NotNil(t, b, "the block starts the new server")
	assert.FileExists(t, filepath.Join(newHome, "backup.db"))
	assert.FileExists(t, filepath.Join(newHome, "backup.json"))
	assert.NotContains(t, strings.Join(outputs, ""), "sha256 not checked", "backup.json was beside the file")

	bumped := atSnapshot.Revision + defaultBumpRevision
	got := stateOfServer(t, b.URL)
	assert.Equal(t, atSnapshot.Keys, got.Keys, "keys, values, versions and revisions of the snapshot")
	assert.Equal(t, atSnapshot.History, got.History)
	assert.Equal(t, bumped, got.Revision, "revisions go on far after the snapshot's (--bump-revision's default)")
	bcl, err := client.New(b.URL)
	require.NoError(t, err)
	r, err := bcl.Put(ctx, "default", "on-b", json.RawMessage(`1`), client.PutOptions{})
	require.NoError(t, err)
	assert.Equal(t, bumped+1, r.ModRev)

	// A watcher of the old server, which saw a change the snapshot does
	// not have, is told to re-read: it did not resume into the new
	// server's different changes under revisions it had seen (on-b took
	// the after-snapshot change's revision without the bump).
	for _, from := range []uint64{1, atSnapshot.Revision, seenOnA} {
		ws := testkit.DialWatch(t, strings.Replace(b.URL, "http://", "ws://", 1)+fmt.Sprintf("/v1/watch?from_rev=%d", from), nil)
		f := ws.Expect("compacted")
		assert.Equal(t, bumped, f.CompactedRevision, "a resume from %d re-reads", from)
	}
	ws := testkit.DialWatch(t, strings.Replace(b.URL, "http://", "ws://", 1)+fmt.Sprintf("/v1/watch?from_rev=%d", bumped), nil)
	ws.Expect("subscribed")
	f := ws.Expect("context_updated")
	assert.Equal(t, "on-b", f.Key, "from the bumped revision on, the new server's changes")
}

// Over a stopped server's database: the restore replaces it and keeps it
// as ctxd.db.before-restore-<time>; the command it prints undoes it, with
// the writes the server made after the snapshot, its killed last one
// included; revisions never go back. The command is run through a shell,
// as pasted: the data folder's name has a space and a $ in it.
func TestRestoreOverAStoppedServerAndUndo(t *testing.T) {
	t.Parallel()
	data := filepath.Join(t.TempDir(), "ctx data $HOME")
	srv := startServer(t, data)
	env := []string{"CTXD_SERVER=" + srv.URL}
	fill(t, srv.URL, 20, "A")
	r := cli(t, env, "", "snapshot", "create", "-o", "json")
	require.Equal(t, 0, r.code, r.stderr)
	id := fromJSON[client.SnapshotMeta](t, r.stdout).ID
	backup := filepath.Join(t.TempDir(), "backup.db")
	cliOK(t, env, "", "snapshot", "get", id, "-o", backup)
	fill(t, srv.URL, 30, "B")
	before := stateOfServer(t, srv.URL)
	srv.Kill() // the log may hold writes the file does not: the restore applies them to the kept file

	r = cli(t, nil, "", "restore", "--data", data, "--from", filepath.Join(data, "ctxd.db"))
	assert.Equal(t, 2, r.code, "the folder's own database as the snapshot: %s", r.stderr)
	assert.Contains(t, r.stderr, "is the database of this folder itself")
	assert.NotContains(t, r.stderr, "stop the server first")

	out := cliOK(t, nil, "", "restore", "--data", data, "--from", backup)
	assert.Contains(t, out, "restored (whole database)")
	m := regexp.MustCompile(`kept as (.+); to undo: ctxd (restore .+)\n`).FindStringSubmatch(out)
	require.NotNil(t, m, out)
	kept := m[1]
	assert.Equal(t, filepath.Join(data, "ctxd.db.before-restore-"), kept[:len(kept)-len("20261201T101500Z")])
	assert.Equal(t, "restore --data '"+data+"' --from '"+kept+"'", m[2])

	srv = startServer(t, data)
	assert.Equal(t, map[string]int{"A": 20}, tags(t, srv.URL))
	restored := stateOfServer(t, srv.URL)
	assert.Equal(t, before.Revision+1, restored.Revision, "the revision does not go back: the restored state has one of its own")
	srv.Signal(syscall.SIGTERM)
	require.Equal(t, 0, srv.Wait(30*time.Second))

	undo := exec.Command("sh", "-c", `"$0" `+m[2], bin)
	undo.Env = testEnv()
	outb, err := undo.CombinedOutput()
	require.NoError(t, err, "%s", outb)
	assert.Contains(t, string(outb), "restored (whole database)")
	srv = startServer(t, data)
	undone := stateOfServer(t, srv.URL)
	assert.Equal(t, before.Keys, undone.Keys, "every key as it was, at its version and revisions")
	assert.Equal(t, before.History, undone.History)
	assert.Equal(t, map[string]int{"B": 30}, tags(t, srv.URL))
	assert.Greater(t, undone.Revision, restored.Revision)
}

// The README's "undo a mistake" recipe, run as written (KEY and R filled
// in): keys the mistake deleted or overwrote come back, a key written
// since that the old state lacks stays, one expired since is skipped.
func TestReadmeUndoAMistake(t *testing.T) {
	t.Parallel()
	block := readmeBlock(t, "**Undo a mistake.**")
	pathDir := t.TempDir()
	require.NoError(t, os.Symlink(bin, filepath.Join(pathDir, "ctxd")))
	srv := startServer(t, t.TempDir())
	env := []string{"CTXD_SERVER=" + srv.URL}
	cliOK(t, env, "", "put", "-n", "team", "lead", `"ann"`)
	cliOK(t, env, "", "put", "-n", "team", "size", "4")
	cliOK(t, env, "", "put", "-n", "team", "lock", `"x"`, "--ttl", "1s")
	// The mistake, then a legitimate write.
	mistake := fromJSON[client.Record](t, cliOK(t, env, "", "del", "-n", "team", "lead", "-o", "json")).ModRev
	cliOK(t, env, "", "put", "-n", "team", "size", "40")
	cliOK(t, env, "", "put", "-n", "team", "added", "true")
	time.Sleep(1100 * time.Millisecond) // the lock's deadline passes

	home := t.TempDir()
	for _, line := range block {
		line = strings.ReplaceAll(line, "KEY", "lead")
		line = strings.ReplaceAll(line, "--rev R", "--rev "+strconv.FormatUint(mistake-1, 10))
		cmd := exec.Command("bash", "-c", "set -euo pipefail\n"+line)
		cmd.Dir = home
		cmd.Env = testEnv(append(env, "PATH="+pathDir+":"+os.Getenv("PATH"))...)
		out, err := cmd.CombinedOutput()
		require.NoError(t, err, "%s\n%s", line, out)
		if strings.HasPrefix(line, "ctxd history") {
			assert.Contains(t, string(out), "(deleted)", "the history shows the mistake")
		}
	}
	get := func(key string) string { return cliOK(t, env, "", "get", "-n", "team", key) }
	assert.Equal(t, "ann\n", get("lead"), "deleted by mistake: back")
	assert.Equal(t, "4\n", get("size"), "the old value back, the later write's too (as the README says)")
	assert.Equal(t, "true\n", get("added"), "written since, not in the dump: stays")
	assert.Equal(t, 4, cli(t, env, "", "get", "-n", "team", "lock").code, "expired since: skipped")
}

// --bump-revision: the new server's revisions start that far after the
// snapshot's, a watcher of the old server resuming from a revision it saw
// after the snapshot is told compacted; over an existing database the
// flag is refused and nothing changes; 0 goes on right after the
// snapshot's revision.
func TestRestoreBumpRevision(t *testing.T) {
	t.Parallel()
	srv := startServer(t, t.TempDir())
	env := []string{"CTXD_SERVER=" + srv.URL}
	fill(t, srv.URL, 10, "A")
	id := fromJSON[client.SnapshotMeta](t, cliOK(t, env, "", "snapshot", "create", "-o", "json")).ID
	backup := filepath.Join(t.TempDir(), "backup.db")
	cliOK(t, env, "", "snapshot", "get", id, "-o", backup)
	atSnapshot := stateOfServer(t, srv.URL).Revision
	fill(t, srv.URL, 5, "B")
	seen := stateOfServer(t, srv.URL).Revision

	data := filepath.Join(t.TempDir(), "new")
	cliOK(t, nil, "", "restore", "--data", data, "--from", backup, "--bump-revision", "1000")
	r := cli(t, nil, "", "restore", "--data", data, "--from", backup, "--bump-revision", "1000")
	assert.Equal(t, 2, r.code, "over an existing database: %s", r.stderr)
	assert.Contains(t, r.stderr, "--bump-revision applies to a new data folder")

	b := startServer(t, data)
	assert.Equal(t, atSnapshot+1000, stateOfServer(t, b.URL).Revision)
	ws := testkit.DialWatch(t, strings.Replace(b.URL, "http://", "ws://", 1)+fmt.Sprintf("/v1/watch?from_rev=%d", seen), nil)
	f := ws.Expect("compacted")
	assert.Equal(t, atSnapshot+1000, f.CompactedRevision)

	// --bump-revision 0: right after the snapshot's (its last state), and
	// a resume from the snapshot's revision goes on.
	data = filepath.Join(t.TempDir(), "new")
	cliOK(t, nil, "", "restore", "--data", data, "--from", backup, "--bump-revision", "0")
	c := startServer(t, data)
	assert.Equal(t, atSnapshot, stateOfServer(t, c.URL).Revision)
	ws = testkit.DialWatch(t, strings.Replace(c.URL, "http://", "ws://", 1)+fmt.Sprintf("/v1/watch?from_rev=%d", atSnapshot), nil)
	ws.Expect("subscribed")
}

// A bad snapshot into a new folder (a byte changed, with or without the
// metadata beside it; a wrong --sha256) is refused and leaves nothing
// behind: no folder, no temp file anywhere.
func TestRestoreBadSnapshotLeavesNothing(t *testing.T) {
	t.Parallel()
	srv := startServer(t, t.TempDir())
	env := []string{"CTXD_SERVER=" + checkedURL(t, srv)}
	fill(t, srv.URL, 50, "A")
	id := fromJSON[client.SnapshotMeta](t, cliOK(t, env, "", "snapshot", "create", "-o", "json")).ID
	src := t.TempDir()
	good := filepath.Join(src, "backup.db")
	cliOK(t, env, "", "snapshot", "get", id, "-o", good)
	sum := fromJSON[client.SnapshotMeta](t, string(readFile(t, filepath.Join(src, "backup.json")))).SHA256
	require.Len(t, sum, 64)

	content := readFile(t, good)
	corrupt := bytes.Clone(content)
	corrupt[len(corrupt)/2] ^= 0xff
	bare := t.TempDir() // a file with no metadata beside it
	for _, dir := range []string{src, bare} {
		require.NoError(t, os.WriteFile(filepath.Join(dir, "corrupt.db"), corrupt, 0o600))
	}
	require.NoError(t, os.WriteFile(filepath.Join(src, "corrupt.json"), readFile(t, filepath.Join(src, "backup.json")), 0o600))
	wrongSum := strings.Repeat("0", 64)

	for _, tt := range []struct {
		name   string
		args   []string
		stderr string
	}{
		{"corrupt byte, metadata beside", []string{"--from", filepath.Join(src, "corrupt.db")}, "sha256"},
		{"corrupt byte, no metadata", []string{"--from", filepath.Join(bare, "corrupt.db")}, "bad snapshot"},
		{"wrong --sha256", []string{"--from", good, "--sha256", wrongSum}, "was given"},
		{"wrong --sha256, dry run", []string{"--from", good, "--sha256", wrongSum, "--dry-run"}, "was given"},
		{"a folder", []string{"--from", bare}, "is a folder"},
		{"no such file", []string{"--from", filepath.Join(bare, "missing.db")}, "no such file"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			data := filepath.Join(t.TempDir(), "new", "data")
			r := cli(t, nil, "", append([]string{"restore", "--data", data}, tt.args...)...)
			assert.Equal(t, 1, r.code, r.stdout)
			assert.Contains(t, r.stderr, tt.stderr)
			assert.NoDirExists(t, filepath.Dir(data))
		})
	}
	assert.ElementsMatch(t, []string{"backup.db", "backup.json", "corrupt.db", "corrupt.json"}, testkit.DirNames(t, src))
	assert.Equal(t, []string{"corrupt.db"}, testkit.DirNames(t, bare))

	r := cli(t, nil, "", "restore", "--data", t.TempDir(), "--from", good, "--sha256", "xyz")
	assert.Equal(t, 2, r.code, "a malformed --sha256 is a usage error")
	r = cli(t, nil, "", "restore", "--data", filepath.Join(t.TempDir(), "new"), "--from", good, "--ns", "default")
	assert.Equal(t, 2, r.code, "a partial restore needs a database to restore into")

	// The right sum restores.
	data := filepath.Join(t.TempDir(), "data")
	out := cliOK(t, nil, "", "restore", "--data", data, "--from", good, "--sha256", sum)
	assert.Contains(t, out, "in a new folder")

	// A bad --ns or --prefix is a usage error, as ns= and prefix= are a
	// 400 online, and the database is left as it was.
	before := readFile(t, filepath.Join(data, dbFile))
	for _, bad := range [][]string{{"--ns", "Bad/Name"}, {"--ns", "default", "--ns", ""}, {"--prefix", "a\x01"}} {
		r := cli(t, nil, "", append([]string{"restore", "--data", data, "--from", good}, bad...)...)
		assert.Equal(t, 2, r.code, "%q: %s", bad, r.stderr)
		assert.Contains(t, r.stderr, bad[len(bad)-2])
	}
	assert.Equal(t, before, readFile(t, filepath.Join(data, dbFile)))

	// A file beside it that is not its metadata (a dump named like it):
	// refused without --sha256, which then stands alone.
	odd := t.TempDir()
	require.NoError(t, os.WriteFile(filepath.Join(odd, "x.db"), content, 0o600))
	require.NoError(t, os.WriteFile(filepath.Join(odd, "x.json"), []byte(`{"context":{"k":1}}`), 0o600))
	r = cli(t, nil, "", "restore", "--data", filepath.Join(t.TempDir(), "new"), "--from", filepath.Join(odd, "x.db"))
	assert.Equal(t, 1, r.code, r.stdout)
	assert.Contains(t, r.stderr, "--sha256")
	cliOK(t, nil, "", "restore", "--data", filepath.Join(t.TempDir(), "new"), "--from", filepath.Join(odd, "x.db"), "--sha256", sum)
	r = cli(t, nil, "", "restore", "--data", filepath.Join(t.TempDir(), "new"), "--from", filepath.Join(odd, "x.db"), "--sha256", wrongSum)
	assert.Equal(t, 1, r.code, "the sum given is checked: %s", r.stdout)
}

// The schema-1 fixture of package migrations, restored into a new folder
// as a snapshot: upgraded on the way, served with its keys and history.
func TestRestoreSchema1FixtureIntoANewFolder(t *testing.T) {
	t.Parallel()
	fixture := filepath.Join("..", "..", "migrations", "testdata", "schema1.db")
	before := readFile(t, fixture)
	data := filepath.Join(t.TempDir(), "data")
	out := cliOK(t, nil, "", "restore", "--data", data, "--from", fixture)
	assert.Contains(t, out, "from snapshot revision 7")
	assert.Contains(t, out, "sha256 not checked", "no metadata beside the fixture: said so")
	assert.Equal(t, before, readFile(t, fixture), "the fixture is not changed")
	assert.Equal(t, []string{"gen_schema1.go", "schema1.db"}, testkit.DirNames(t, filepath.Dir(fixture)), "nothing left beside it")

	srv := startServer(t, data)
	env := []string{"CTXD_SERVER=" + checkedURL(t, srv)}
	st := fromJSON[client.Status](t, cliOK(t, env, "", "status", "-o", "json"))
	assert.Equal(t, migrations.Current, st.SchemaVersion)
	assert.Equal(t, 7+defaultBumpRevision, st.Revision, "revisions go on far after the snapshot's")
	assert.Equal(t, `["alice","bob","carol"]`+"\n", cliOK(t, env, "", "get", "members", "-n", "team"))
	state := stateOfServer(t, srv.URL)
	assert.Equal(t, []string{"put false @3", "put true @1"}, state.History["default/app.config.debug"])
	assert.NotContains(t, state.Keys, "default/scratch")
}

func readFile(t *testing.T, path string) []byte {
	t.Helper()
	b, err := os.ReadFile(path)
	require.NoError(t, err)
	return b
}
