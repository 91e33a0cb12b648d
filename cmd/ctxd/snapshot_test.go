package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/framework0/ctxd/client"
	"github.com/framework0/ctxd/store/snapshots"
)

// fill writes keys k00000..k(n-1) with a ~1 KB value tagged tag, in
// transactions of 100.
func fill(t *testing.T, url string, n int, tag string) {
	t.Helper()
	cl, err := client.New(url)
	require.NoError(t, err)
	pad := strings.Repeat("x", 1000)
	var ops []client.TxnOp
	for i := 0; i < n; i++ {
		ops = append(ops, client.TxnOp{Op: "put", Key: fmt.Sprintf("k%05d", i), Value: json.RawMessage(fmt.Sprintf(`{"tag":%q,"pad":%q}`, tag, pad))})
		if len(ops) == 100 || i == n-1 {
			_, err := cl.Txn(context.Background(), ops, client.TxnOptions{})
			require.NoError(t, err)
			ops = nil
		}
	}
}

// tags counts the keys per tag, read through the API.
func tags(t *testing.T, url string) map[string]int {
	t.Helper()
	cl, err := client.New(url)
	require.NoError(t, err)
	recs, err := cl.ListAll(context.Background(), "default", "k")
	require.NoError(t, err)
	out := map[string]int{}
	for _, r := range recs {
		var v struct{ Tag string }
		require.NoError(t, json.Unmarshal(r.Value, &v))
		out[v.Tag]++
	}
	return out
}

func TestSnapshotCommands(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	srv := startServer(t, dir)
	env := []string{"CTXD_SERVER=" + checkedURL(t, srv)}
	fill(t, srv.URL, 50, "A")

	r := cli(t, env, "", "snapshot", "create", "-o", "json")
	require.Equal(t, 0, r.code, r.stderr)
	var meta client.SnapshotMeta
	require.NoError(t, json.Unmarshal([]byte(r.stdout), &meta))
	assert.Equal(t, uint64(1), uint64(len(meta.Namespaces)))

	r = cli(t, env, "", "snapshot", "ls")
	require.Equal(t, 0, r.code, r.stderr)
	assert.Contains(t, r.stdout, meta.ID)
	// In JSON, the API's answer, with one snapshot as with several.
	r = cli(t, env, "", "snapshot", "ls", "-o", "json")
	require.Equal(t, 0, r.code, r.stderr)
	var list struct{ Snapshots []client.SnapshotMeta }
	require.NoError(t, json.Unmarshal([]byte(r.stdout), &list), r.stdout)
	require.Len(t, list.Snapshots, 1)
	assert.Equal(t, meta.ID, list.Snapshots[0].ID)

	file := filepath.Join(t.TempDir(), "backup.db")
	r = cli(t, env, "", "snapshot", "get", meta.ID, "-o", file)
	require.Equal(t, 0, r.code, r.stderr)
	fi, err := os.Stat(file)
	require.NoError(t, err)
	assert.Equal(t, meta.Size, fi.Size())

	fill(t, srv.URL, 50, "B")
	live := cli(t, env, "", "dump", "--format", "csv")
	require.Equal(t, 0, live.code, live.stderr)
	r = cli(t, env, "", "dump", "--snapshot", meta.ID, "--format", "csv")
	require.Equal(t, 0, r.code, r.stderr)
	assert.Equal(t, 50, strings.Count(r.stdout, `""tag"":""A""`), "the snapshot's values, not the live ones")
	assert.NotEqual(t, live.stdout, r.stdout)
	r = cli(t, env, "", "dump", "--snapshot", meta.ID, "--format", "txt", "--who", "bob")
	require.Equal(t, 0, r.code, r.stderr)
	assert.Contains(t, r.stdout, " by bob\n", "who asked, in the dump's header")
	r = cli(t, env, "", "snapshot", "restore", meta.ID, "--dry-run")
	require.Equal(t, 0, r.code, r.stderr)
	assert.Contains(t, r.stdout, "dry run")
	assert.Equal(t, map[string]int{"B": 50}, tags(t, srv.URL))

	r = cli(t, env, "", "snapshot", "restore", meta.ID, "--prefix", "k0001")
	require.Equal(t, 0, r.code, r.stderr)
	assert.Equal(t, map[string]int{"A": 10, "B": 40}, tags(t, srv.URL), "partial restore of a prefix")

	r = cli(t, env, "", "snapshot", "restore", meta.ID)
	require.Equal(t, 0, r.code, r.stderr)
	assert.Equal(t, map[string]int{"A": 50}, tags(t, srv.URL))
	// ctxd status says which revisions the restore discarded.
	st := fromJSON[client.Status](t, cliOK(t, env, "", "status", "-o", "json"))
	require.NotNil(t, st.LastRestore)
	assert.Contains(t, cliOK(t, env, "", "status"),
		fmt.Sprintf("revisions %d to %d (restored from a snapshot at %d)", meta.Revision+1, st.LastRestore.Revision-1, meta.Revision))

	r = cli(t, env, "", "snapshot", "upload", file)
	require.Equal(t, 0, r.code, r.stderr)
	assert.Contains(t, r.stdout, "upload")
	bad := filepath.Join(t.TempDir(), "bad.db")
	require.NoError(t, os.WriteFile(bad, []byte("not a database"), 0o600))
	r = cli(t, env, "", "snapshot", "upload", bad)
	assert.Equal(t, 1, r.code, r.stdout)
	assert.Contains(t, r.stderr, "bad_snapshot")
	assert.Contains(t, r.stderr, "sha256 not checked", "no metadata beside it: said so")

	// A value changed inside its text is still valid JSON, which no check
	// of the file's structure can tell: the sha256 recorded beside the
	// file (by snapshot get) does, and the upload is refused before it is
	// sent. (It was uploaded, and a restore served the changed value.)
	damaged := filepath.Join(t.TempDir(), "damaged.db")
	good := readFile(t, file)
	require.Contains(t, string(good), `"tag":"A"`)
	require.NoError(t, os.WriteFile(damaged, bytes.Replace(good, []byte(`"tag":"A"`), []byte(`"tag":"Z"`), 1), 0o600))
	require.NoError(t, os.WriteFile(snapshots.MetaPath(damaged), readFile(t, snapshots.MetaPath(file)), 0o600))
	before := cli(t, env, "", "snapshot", "ls", "-o", "json").stdout
	r = cli(t, env, "", "snapshot", "upload", damaged)
	assert.Equal(t, 1, r.code, r.stdout)
	assert.Contains(t, r.stderr, "sha256")
	r = cli(t, env, "", "snapshot", "upload", file, "--sha256", strings.Repeat("0", 64))
	assert.Equal(t, 1, r.code, r.stdout)
	assert.Contains(t, r.stderr, "was given")
	assert.Equal(t, 2, cli(t, env, "", "snapshot", "upload", file, "--sha256", "xyz").code, "a malformed --sha256 is a usage error")
	r = cli(t, env, "", "snapshot", "upload", file+".missing")
	assert.Equal(t, 1, r.code, r.stdout)
	assert.Contains(t, r.stderr, "no such file")
	assert.NotContains(t, r.stderr, "sha256 not checked", "the missing file first")
	assert.Equal(t, before, cli(t, env, "", "snapshot", "ls", "-o", "json").stdout, "nothing uploaded")

	r = cli(t, env, "", "defrag")
	require.Equal(t, 0, r.code, r.stderr)
	assert.Contains(t, r.stdout, "defragmented")

	r = cli(t, env, "", "snapshot", "rm", meta.ID)
	require.Equal(t, 0, r.code, r.stderr)
	r = cli(t, env, "", "snapshot", "rm", meta.ID)
	assert.Equal(t, 4, r.code, "removing twice: not found")
	r = cli(t, env, "", "snapshot", "get", meta.ID)
	assert.Equal(t, 2, r.code, "get needs -o FILE")

	// Offline: restore and compact a stopped server's folder.
	fill(t, srv.URL, 50, "C")
	srv.Signal(syscall.SIGTERM)
	require.Equal(t, 0, srv.Wait(30*time.Second))
	r = cli(t, nil, "", "restore", "--data", dir, "--from", file, "--dry-run")
	require.Equal(t, 0, r.code, r.stderr)
	r = cli(t, nil, "", "restore", "--data", dir, "--from", file)
	require.Equal(t, 0, r.code, r.stderr)
	r = cli(t, nil, "", "restore", "--data", dir, "--from", bad)
	assert.Equal(t, 1, r.code)
	r = cli(t, nil, "", "compact", "--data", dir)
	require.Equal(t, 0, r.code, r.stderr)
	assert.Contains(t, r.stdout, "compacted")

	srv = startServer(t, dir)
	assert.Equal(t, map[string]int{"A": 50}, tags(t, srv.URL))
	r = cli(t, nil, "", "compact", "--data", dir, "--lock-timeout", "300ms")
	assert.Equal(t, 1, r.code, "a running server's file is refused")
	assert.Contains(t, r.stderr, "server running")
}
