package bolt_test

import (
	"encoding/json"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/framework0/ctxd"
	"github.com/framework0/ctxd/internal/testkit"
	"github.com/framework0/ctxd/migrations"
	"github.com/framework0/ctxd/store/bolt"
)

var bigValue = json.RawMessage(`"` + strings.Repeat("x", 1000) + `"`)

// Defrag while serving is checked by the conformance suite (writes during
// it, data after it); here, that it gives bbolt's free pages back to the
// file system and leaves a consistent file.
func TestDefragShrinksTheFile(t *testing.T) {
	s := openStore(t, bolt.Options{})
	fillBig(t, s, 3000)
	require.NoError(t, s.Compact(ctx, s.Revision()))
	before := mustStatus(t, s)
	require.Positive(t, before.FreePages, "compaction left free pages")
	written := s.Stats()
	require.Positive(t, written.PageWrites, "the compaction wrote pages")

	res, err := s.Defrag(ctx)
	require.NoError(t, err)
	// bbolt counts per file: the store keeps the swapped file's counts, or
	// its Prometheus counters would go back to 0.
	assert.GreaterOrEqual(t, s.Stats().PageWrites, written.PageWrites, "pages written never go down")
	assert.GreaterOrEqual(t, s.Stats().DiskWrite, written.DiskWrite, "write time never goes down")
	t.Logf("defrag: %d -> %d bytes, pause %v", res.SizeBefore, res.SizeAfter, res.Pause)
	assert.Equal(t, before.FileSizeBytes, res.SizeBefore)
	assert.Less(t, res.SizeAfter, res.SizeBefore)
	require.NoError(t, s.Check())
	after := mustStatus(t, s)
	assert.Equal(t, res.SizeAfter, after.FileSizeBytes)
	assert.Less(t, after.FreePages, before.FreePages)
	assert.Equal(t, uint64(1), s.Stats().Defrags)

	s.reopen()
	assert.Equal(t, uint64(3000), mustStatus(t, s).Keys)
	v, err := s.Get("default", "big/0002999")
	require.NoError(t, err)
	assert.Equal(t, string(bigValue), string(v.Value))
}

func TestCompactFileOffline(t *testing.T) {
	s := openStore(t, bolt.Options{})
	fillBig(t, s, 2000)
	require.NoError(t, s.Compact(ctx, s.Revision()))
	rev := s.Revision()
	require.NoError(t, s.Close())

	before, after, err := bolt.CompactFile(s.path, 0)
	require.NoError(t, err)
	t.Logf("compact: %d -> %d bytes", before, after)
	assert.Less(t, after, before)
	s.open()
	assert.Equal(t, rev, s.Revision())
	v, err := s.Get("default", "big/0001999")
	require.NoError(t, err)
	assert.Equal(t, string(bigValue), string(v.Value))
}

// A file of a newer schema is refused and left alone: its layout may hold
// what this binary does not know to copy.
func TestCompactFileRefusesANewerSchema(t *testing.T) {
	s := openStore(t, bolt.Options{})
	require.NoError(t, s.Close())
	setSchema(t, s.path, 99)
	before, err := os.ReadFile(s.path)
	require.NoError(t, err)
	_, _, err = bolt.CompactFile(s.path, 0)
	require.ErrorIs(t, err, migrations.ErrTooNew)
	after, err := os.ReadFile(s.path)
	require.NoError(t, err)
	assert.Equal(t, before, after)
	setSchema(t, s.path, migrations.Current)
	s.open()
}

func TestCompactFileRefusesAnOpenDatabase(t *testing.T) {
	s := openStore(t, bolt.Options{})
	// One try: how long it waits is not what this tests (it waited 5 s).
	_, _, err := bolt.CompactFile(s.path, migrations.NoLockWait)
	assert.ErrorIs(t, err, bolt.ErrLocked)
}

// fillBig writes n keys with 1 KB values, each overwritten three times, so
// that compaction frees most pages.
func fillBig(t *testing.T, s *testStore, n int) {
	t.Helper()
	for round := 0; round < 3; round++ {
		var writes []ctxd.Write
		for i := 0; i < n; i++ {
			writes = append(writes, ctxd.Write{Namespace: "default", Key: fmt.Sprintf("big/%07d", i), Op: ctxd.OpPut, Value: bigValue})
			if len(writes) == 100 {
				_, err := s.Txn(ctx, writes)
				require.NoError(t, err)
				writes = nil
			}
		}
	}
}

func mustStatus(t testing.TB, s *testStore) ctxd.Status {
	t.Helper()
	st, err := s.Status()
	require.NoError(t, err)
	return st
}

// An Open refused because a server holds the folder leaves that server's
// files alone: the file a restore or defrag is preparing next to the
// database is removed only by an Open that holds the folder (leftovers of
// a crash). Before, the refused Open removed it, and the running server
// crashed on the empty file it reopened.
func TestARefusedOpenLeavesTheServersFilesAlone(t *testing.T) {
	path := filepath.Join(t.TempDir(), "ctxd.db")
	running, err := bolt.Open(path, bolt.Options{})
	require.NoError(t, err)
	preparing := path + ".restore.tmp"
	require.NoError(t, os.WriteFile(preparing, []byte("being prepared"), 0o600))

	_, err = bolt.Open(path, bolt.Options{OpenTimeout: 100 * time.Millisecond})
	require.ErrorIs(t, err, bolt.ErrLocked)
	assert.FileExists(t, preparing, "the running server's file")

	require.NoError(t, running.Close())
	s, err := bolt.Open(path, bolt.Options{})
	require.NoError(t, err)
	defer s.Close()
	assert.NoFileExists(t, preparing, "a leftover of a crash, removed by an Open that holds the folder")
}

// A database file that is a symbolic link (ctxd.db in the data folder
// naming a file on another disk) stays one: defrag, an offline compact
// and a whole offline restore write the new file beside the link's
// target and rename it over the target, while the write-ahead log stays
// in the data folder. Before, each renamed its copy over the link: the
// data moved to the data folder's disk without a word, and the file on
// the other disk was left behind, stale.
func TestSwapsKeepALinkedDatabaseFile(t *testing.T) {
	dir, disk := t.TempDir(), t.TempDir()
	target := filepath.Join(disk, "ctxd.db")
	link := filepath.Join(dir, "ctxd.db")
	require.NoError(t, os.Symlink(target, link))
	assertLinked := func(step string) {
		t.Helper()
		fi, err := os.Lstat(link)
		require.NoError(t, err)
		require.Equal(t, fs.ModeSymlink, fi.Mode().Type(), "after %s, ctxd.db is still the link", step)
		assert.Equal(t, []string{"ctxd.db"}, testkit.DirNames(t, disk), "after %s, the target alone on its disk", step)
		assert.DirExists(t, bolt.WALDir(link), "the log stays in the data folder")
	}

	s := &testStore{Bolt: testkit.OpenBoltAt(t, link, bolt.Options{}), t: t, path: link}
	fillBig(t, s, 200)
	require.NoError(t, s.Compact(ctx, s.Revision()))
	_, err := s.Defrag(ctx)
	require.NoError(t, err)
	assertLinked("defrag")
	snapPath, _ := writeSnapshot(t, s)
	s.put("default", "after-snapshot", "1")
	require.NoError(t, s.Close())

	_, _, err = bolt.CompactFile(link, 0)
	require.NoError(t, err)
	assertLinked("ctxd compact")

	res, err := bolt.RestoreFolder(ctx, link, snapPath, bolt.FolderRestoreOptions{})
	require.NoError(t, err)
	fi, err := os.Lstat(link)
	require.NoError(t, err)
	require.Equal(t, fs.ModeSymlink, fi.Mode().Type(), "after ctxd restore, ctxd.db is still the link")
	assert.Equal(t, disk, filepath.Dir(res.Kept), "the replaced file is kept beside the target")

	s.open()
	_, err = s.Get("default", "after-snapshot")
	require.ErrorIs(t, err, ctxd.ErrNotFound, "the restored state is read through the link")
	v, err := s.Get("default", "big/0000199")
	require.NoError(t, err)
	assert.Equal(t, string(bigValue), string(v.Value))

	// A new machine's folder whose ctxd.db names a file not there yet.
	dir, disk = t.TempDir(), t.TempDir()
	target, link = filepath.Join(disk, "ctxd.db"), filepath.Join(dir, "ctxd.db")
	require.NoError(t, os.Symlink(target, link))
	_, err = bolt.RestoreFolder(ctx, link, snapPath, bolt.FolderRestoreOptions{})
	require.NoError(t, err)
	assert.FileExists(t, target)
	b := testkit.OpenBoltAt(t, link, bolt.Options{})
	_, err = b.Get("default", "big/0000199")
	require.NoError(t, err)
	assertLinked("a restore into a new folder")
}
