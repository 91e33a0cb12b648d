package fsutil_test

import (
	"errors"
	"io"
	iofs "io/fs"
	"os"
	"path/filepath"
	"syscall"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/framework0/ctxd/internal/fsutil"
	"github.com/framework0/ctxd/internal/powerfs"
	"github.com/framework0/ctxd/internal/testkit"
)

func writeString(s string) func(io.Writer) error {
	return func(w io.Writer) error { _, err := io.WriteString(w, s); return err }
}

func TestWriteFile(t *testing.T) {
	dir := t.TempDir()
	p := filepath.Join(dir, "out.txt")
	n, err := fsutil.WriteFile(p, 0o640, writeString("hello"))
	require.NoError(t, err)
	assert.Equal(t, int64(5), n)
	b, err := os.ReadFile(p)
	require.NoError(t, err)
	assert.Equal(t, "hello", string(b))
	st, err := os.Stat(p)
	require.NoError(t, err)
	assert.Equal(t, os.FileMode(0o640), st.Mode().Perm())
	assert.Equal(t, []string{"out.txt"}, testkit.DirNames(t, dir), "no temp file is left")

	// Replacing: new content and new permissions.
	n, err = fsutil.WriteFile(p, 0o600, writeString("hi"))
	require.NoError(t, err)
	assert.Equal(t, int64(2), n)
	b, err = os.ReadFile(p)
	require.NoError(t, err)
	assert.Equal(t, "hi", string(b))
	st, err = os.Stat(p)
	require.NoError(t, err)
	assert.Equal(t, os.FileMode(0o600), st.Mode().Perm())
	assert.Equal(t, []string{"out.txt"}, testkit.DirNames(t, dir))
}

func TestWriteFileFailingWriteKeepsOldFile(t *testing.T) {
	dir := t.TempDir()
	p := filepath.Join(dir, "out.txt")
	require.NoError(t, fsutil.WriteFileBytes(p, 0o644, []byte("old content")))
	boom := errors.New("boom")
	_, err := fsutil.WriteFile(p, 0o600, func(w io.Writer) error {
		if _, err := io.WriteString(w, "half of the new"); err != nil {
			return err
		}
		return boom
	})
	require.ErrorIs(t, err, boom)
	b, err := os.ReadFile(p)
	require.NoError(t, err)
	assert.Equal(t, "old content", string(b), "the previous file is intact")
	st, err := os.Stat(p)
	require.NoError(t, err)
	assert.Equal(t, os.FileMode(0o644), st.Mode().Perm(), "nor are its permissions changed")
	assert.Equal(t, []string{"out.txt"}, testkit.DirNames(t, dir), "the temp file is removed")
}

func TestWriteFileFailingWriteNoOldFile(t *testing.T) {
	dir := t.TempDir()
	_, err := fsutil.WriteFile(filepath.Join(dir, "new.txt"), 0o600, func(io.Writer) error { return io.ErrUnexpectedEOF })
	require.ErrorIs(t, err, io.ErrUnexpectedEOF)
	assert.Empty(t, testkit.DirNames(t, dir))
}

func TestWriteFileMissingFolder(t *testing.T) {
	dir := t.TempDir()
	called := false
	_, err := fsutil.WriteFile(filepath.Join(dir, "missing", "x"), 0o644, func(io.Writer) error { called = true; return nil })
	require.Error(t, err)
	assert.False(t, called, "write is not called without a temp file")
	assert.Empty(t, testkit.DirNames(t, dir))
}

func TestWriteFileRelativePath(t *testing.T) {
	t.Chdir(t.TempDir())
	require.NoError(t, fsutil.WriteFileBytes("rel.txt", 0o600, []byte("x")))
	b, err := os.ReadFile("rel.txt")
	require.NoError(t, err)
	assert.Equal(t, "x", string(b))
	assert.Equal(t, []string{"rel.txt"}, testkit.DirNames(t, "."))
}

func TestWriteFileRenameFails(t *testing.T) {
	dir := t.TempDir()
	p := filepath.Join(dir, "taken")
	require.NoError(t, os.Mkdir(p, 0o750))
	require.NoError(t, os.WriteFile(filepath.Join(p, "inside"), nil, 0o600))
	_, err := fsutil.WriteFile(p, 0o600, writeString("x"))
	require.Error(t, err, "a non-empty folder cannot be renamed over")
	assert.Equal(t, []string{"taken"}, testkit.DirNames(t, dir), "the temp file is removed")
}

func TestTempCloseThenCommit(t *testing.T) {
	dir := t.TempDir()
	tmp, err := fsutil.CreateTemp(dir, "snap", 0o600)
	require.NoError(t, err)
	defer tmp.Discard()
	assert.True(t, fsutil.IsTemp(filepath.Base(tmp.Name())), tmp.Name())
	assert.Equal(t, dir, filepath.Dir(tmp.Name()))
	_, err = io.WriteString(tmp, "snapshot")
	require.NoError(t, err)
	assert.Equal(t, int64(8), tmp.Size())
	require.NoError(t, tmp.Close())
	require.NoError(t, tmp.Close(), "Close again answers the same")

	// The closed temp file can be read whole before it is committed.
	b, err := os.ReadFile(tmp.Name())
	require.NoError(t, err)
	assert.Equal(t, "snapshot", string(b))

	final := filepath.Join(dir, "20260101T000000Z-r1.db")
	require.NoError(t, tmp.Commit(final))
	tmp.Discard() // does nothing after Commit
	b, err = os.ReadFile(final)
	require.NoError(t, err)
	assert.Equal(t, "snapshot", string(b))
	assert.Equal(t, []string{"20260101T000000Z-r1.db"}, testkit.DirNames(t, dir))
	require.Error(t, tmp.Commit(final), "a temp file is committed once")
}

func TestTempCommitOtherFolder(t *testing.T) {
	dir, other := t.TempDir(), t.TempDir()
	tmp, err := fsutil.CreateTemp(dir, "x", 0o600)
	require.NoError(t, err)
	require.Error(t, tmp.Commit(filepath.Join(other, "x")))
	tmp.Discard()
	assert.Empty(t, testkit.DirNames(t, dir))
	assert.Empty(t, testkit.DirNames(t, other))
}

func TestTempDiscard(t *testing.T) {
	dir := t.TempDir()
	tmp, err := fsutil.CreateTemp(dir, "x", 0o600)
	require.NoError(t, err)
	_, err = io.WriteString(tmp, "partial")
	require.NoError(t, err)
	tmp.Discard()
	tmp.Discard()
	assert.Empty(t, testkit.DirNames(t, dir))
	require.Error(t, tmp.Commit(filepath.Join(dir, "x")), "a discarded temp file cannot be committed")
	assert.Empty(t, testkit.DirNames(t, dir))
}

func TestRemoveTemps(t *testing.T) {
	dir := t.TempDir()
	tmp, err := fsutil.CreateTemp(dir, "left.json", 0o600)
	require.NoError(t, err)
	require.NoError(t, tmp.Close()) // a crash: neither committed nor discarded
	require.NoError(t, os.WriteFile(filepath.Join(dir, "kept.json"), nil, 0o600))
	require.NoError(t, os.WriteFile(filepath.Join(dir, ".hidden"), nil, 0o600))
	require.NoError(t, os.Mkdir(filepath.Join(dir, fsutil.TempPrefix+"folder"), 0o750))
	require.NoError(t, fsutil.RemoveTemps(dir))
	assert.Equal(t, []string{".hidden", fsutil.TempPrefix + "folder", "kept.json"}, testkit.DirNames(t, dir))
}

func TestSyncDir(t *testing.T) {
	require.NoError(t, fsutil.SyncDir(t.TempDir()))
	require.Error(t, fsutil.SyncDir(filepath.Join(t.TempDir(), "missing")))
}

// TestMkdirAll: the folders are made as os.MkdirAll makes them (that they
// survive a power cut: TestMkdirAllSurvivesPowerCut).
func TestMkdirAll(t *testing.T) {
	root := t.TempDir()
	dir := filepath.Join(root, "a", "b", "c")
	require.NoError(t, fsutil.MkdirAll(dir, 0o750))
	st, err := os.Stat(dir)
	require.NoError(t, err)
	assert.True(t, st.IsDir())
	assert.Equal(t, os.FileMode(0o750), st.Mode().Perm())
	require.NoError(t, fsutil.MkdirAll(dir, 0o750), "a folder that exists")
	require.NoError(t, fsutil.MkdirAll(root+"/a/./b/", 0o750), "an unclean path")

	file := filepath.Join(root, "file")
	require.NoError(t, os.WriteFile(file, nil, 0o600))
	require.ErrorIs(t, fsutil.MkdirAll(file, 0o750), syscall.ENOTDIR, "a file in the way")
	require.Error(t, fsutil.MkdirAll(filepath.Join(file, "sub"), 0o750), "a file as a parent")
}

// TestMkdirAllSurvivesPowerCut: a file written durably into new folders
// survives a power cut when MkdirAll made them, and is lost with them when
// os.MkdirAll did (nothing synced the folders' names).
func TestMkdirAllSurvivesPowerCut(t *testing.T) {
	if err := powerfs.Available(); err != nil {
		t.Skip("needs FUSE: " + err.Error())
	}
	for _, tc := range []struct {
		name  string
		mkdir func(string, os.FileMode) error
		want  map[string]bool
	}{
		{"fsutil", fsutil.MkdirAll, map[string]bool{"a": true, "a/b": true, "a/b/f": true}},
		{"os", os.MkdirAll, map[string]bool{}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			fs := powerfs.MountT(t, powerfs.Options{})
			dir := filepath.Join(fs.Dir(), "a", "b")
			require.NoError(t, tc.mkdir(dir, 0o750))
			require.NoError(t, fsutil.WriteFileBytes(filepath.Join(dir, "f"), 0o600, []byte("data")))
			_, err := fs.Cut()
			require.NoError(t, err)
			out := t.TempDir()
			require.NoError(t, fs.WriteSurvivors(out))
			got := map[string]bool{}
			require.NoError(t, filepath.WalkDir(out, func(p string, _ iofs.DirEntry, err error) error {
				if rel, _ := filepath.Rel(out, p); rel != "." {
					got[rel] = true
				}
				return err
			}))
			assert.Equal(t, tc.want, got)
		})
	}
}

// CommitNew puts the file in place only where there is none: a file that
// appeared meanwhile is left alone, and the temp file stays for Discard.
func TestTempCommitNew(t *testing.T) {
	dir := t.TempDir()
	final := filepath.Join(dir, "ctxd.db")
	tmp, err := fsutil.CreateTemp(dir, "ctxd.db", 0o600)
	require.NoError(t, err)
	_, err = io.WriteString(tmp, "restored")
	require.NoError(t, err)
	require.NoError(t, os.WriteFile(final, []byte("appeared"), 0o600))
	err = tmp.CommitNew(final)
	require.ErrorIs(t, err, iofs.ErrExist)
	b, err := os.ReadFile(final)
	require.NoError(t, err)
	assert.Equal(t, "appeared", string(b), "an existing file is never replaced")
	tmp.Discard()
	assert.Equal(t, []string{"ctxd.db"}, testkit.DirNames(t, dir))

	require.NoError(t, os.Remove(final))
	tmp, err = fsutil.CreateTemp(dir, "ctxd.db", 0o640)
	require.NoError(t, err)
	defer tmp.Discard()
	_, err = io.WriteString(tmp, "restored")
	require.NoError(t, err)
	require.NoError(t, tmp.CommitNew(final))
	tmp.Discard() // does nothing after CommitNew
	b, err = os.ReadFile(final)
	require.NoError(t, err)
	assert.Equal(t, "restored", string(b))
	st, err := os.Stat(final)
	require.NoError(t, err)
	assert.Equal(t, os.FileMode(0o640), st.Mode().Perm())
	assert.Equal(t, []string{"ctxd.db"}, testkit.DirNames(t, dir), "the temp name is gone")
}

// The folder lock: writers share it, a cleaner gets it only when no one
// holds it, and a holder that closes (or dies: the kernel releases a
// flock) gives it back. Each open file counts as a process.
func TestFolderLock(t *testing.T) {
	path := filepath.Join(t.TempDir(), ".lock")
	first, err := fsutil.LockShared(path)
	require.NoError(t, err)
	second, err := fsutil.LockShared(path)
	require.NoError(t, err, "writers share it")
	_, held, err := fsutil.TryLockExclusive(path)
	require.NoError(t, err)
	assert.False(t, held, "no cleaner while a writer holds it")
	first()
	_, held, err = fsutil.TryLockExclusive(path)
	require.NoError(t, err)
	assert.False(t, held, "the second writer still holds it")
	second()
	unlock, held, err := fsutil.TryLockExclusive(path)
	require.NoError(t, err)
	require.True(t, held, "no writer: the cleaner gets it")
	_, held, err = fsutil.TryLockExclusive(path)
	require.NoError(t, err)
	assert.False(t, held, "one cleaner at a time")
	unlock()
}
