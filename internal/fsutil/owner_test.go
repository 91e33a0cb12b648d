//go:build unix

package fsutil_test

import (
	"os"
	"path/filepath"
	"syscall"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/framework0/ctxd/internal/fsutil"
)

// owner returns the uid and gid of path itself.
func owner(t *testing.T, path string) [2]uint32 {
	t.Helper()
	fi, err := os.Lstat(path)
	require.NoError(t, err)
	st := fi.Sys().(*syscall.Stat_t)
	return [2]uint32{st.Uid, st.Gid}
}

// user is the other user whose folder root writes in (nobody).
const user = 65534

// sharedFolder makes a folder "shared" of user's in a temp folder base,
// for a test run as root (skipped otherwise: only root gives files away).
func sharedFolder(t *testing.T) (base, dir string) {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("needs root: only root gives files away")
	}
	base = t.TempDir()
	dir = filepath.Join(base, "shared")
	require.NoError(t, os.Mkdir(dir, 0o750))
	require.NoError(t, os.Chown(dir, user, user))
	return base, dir
}

// Run as root in a folder another user owns, the files and folders made
// there are that user's; a lock file the user replaced by a symbolic link
// or a hard link to a file of root's is refused, and that file keeps its
// owner (root chowned what the link named: the user could take any file
// of the system).
func TestRootGivesTheFolderOwnerItsFilesAndNothingElse(t *testing.T) {
	base, dir := sharedFolder(t)

	tmp, release, err := fsutil.CreateSharedTemp(dir, "x.json", 0o600)
	require.NoError(t, err)
	_, err = tmp.Write([]byte("{}"))
	require.NoError(t, err)
	require.NoError(t, tmp.Commit(filepath.Join(dir, "x.json")))
	release()
	require.NoError(t, fsutil.MkdirAll(filepath.Join(dir, "sub"), 0o750))
	for _, name := range []string{"x.json", fsutil.WritersLock, "sub"} {
		assert.Equal(t, [2]uint32{user, user}, owner(t, filepath.Join(dir, name)), name)
	}

	victim := filepath.Join(base, "victim")
	require.NoError(t, os.WriteFile(victim, []byte("root's"), 0o600))
	lock := filepath.Join(dir, fsutil.WritersLock)
	for _, plant := range []func() error{
		func() error { return os.Symlink(victim, lock) },
		func() error { return os.Link(victim, lock) },
	} {
		require.NoError(t, os.Remove(lock))
		require.NoError(t, plant())
		_, _, err := fsutil.CreateSharedTemp(dir, "y.json", 0o600)
		require.Error(t, err, "a planted lock file is refused")
		assert.Equal(t, [2]uint32{0, 0}, owner(t, victim), "the file it names keeps its owner")
	}
}

// Giving a file away gives that very file: a hard link of another user's
// file (root's) put in place of a file of ours, on a system without
// fs.protected_hardlinks, is refused and keeps its owner, as is a FIFO of
// root's linked in; a symbolic link
// gets only its own owner changed; a file of one name is given.
func TestGiveRefusesAHardLinkedFile(t *testing.T) {
	base, dir := sharedFolder(t)
	fi, err := os.Stat(dir)
	require.NoError(t, err)
	o := fsutil.FolderOwner(fi)

	victim := filepath.Join(base, "victim")
	require.NoError(t, os.WriteFile(victim, []byte("root's"), 0o600))
	linked := filepath.Join(dir, "linked.db")
	require.NoError(t, os.Link(victim, linked))
	err = o.Give(linked)
	require.Error(t, err)
	assert.Contains(t, err.Error(), "hard links")
	assert.Equal(t, [2]uint32{0, 0}, owner(t, victim), "the linked file keeps its owner")

	symlink := filepath.Join(dir, "symlink.db")
	require.NoError(t, os.Symlink(victim, symlink))
	require.NoError(t, o.Give(symlink))
	assert.Equal(t, [2]uint32{0, 0}, owner(t, victim), "what the link names keeps its owner")
	var st syscall.Stat_t
	require.NoError(t, syscall.Lstat(symlink, &st))
	assert.Equal(t, [2]uint32{user, user}, [2]uint32{st.Uid, st.Gid}, "the link is given")

	fifo := filepath.Join(base, "fifo")
	require.NoError(t, syscall.Mkfifo(fifo, 0o600))
	linkedFifo := filepath.Join(dir, "fifo")
	require.NoError(t, os.Link(fifo, linkedFifo))
	err = o.Give(linkedFifo)
	require.Error(t, err, "a FIFO of root's linked in")
	assert.Equal(t, [2]uint32{0, 0}, owner(t, fifo), "the linked FIFO keeps its owner")

	own := filepath.Join(dir, "own.db")
	require.NoError(t, os.WriteFile(own, nil, 0o600))
	require.NoError(t, o.Give(own))
	assert.Equal(t, [2]uint32{user, user}, owner(t, own))
	require.NoError(t, o.Give(dir))
	assert.Equal(t, [2]uint32{user, user}, owner(t, dir), "a folder is given")
}

// A file root replaces keeps its owner, root's too: the new file was made
// the folder owner's (a tokens file root:root in a folder of the service
// user's went to that user).
func TestKeepOwnerAsRootKeepsRootsFile(t *testing.T) {
	_, dir := sharedFolder(t)
	path := filepath.Join(dir, "tokens.yaml")
	require.NoError(t, os.WriteFile(path, []byte("old"), 0o600))
	before, err := os.Stat(path)
	require.NoError(t, err)
	require.NoError(t, fsutil.WriteFileBytes(path, 0o600, []byte("new")))
	assert.Equal(t, [2]uint32{user, user}, owner(t, path), "a new file in the folder is its owner's")
	require.NoError(t, fsutil.KeepOwner(path, before))
	assert.Equal(t, [2]uint32{0, 0}, owner(t, path), "the replaced file's owner, root")
}
