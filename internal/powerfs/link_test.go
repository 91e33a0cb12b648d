package powerfs_test

import (
	"os"
	"path/filepath"
	"syscall"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/framework0/ctxd/internal/powerfs"
)

// A hard link is one more name of the same file: written through one
// name, read through the other; like any name it survives a cut once its
// folder is synced. (ctxd links its database to a backup name while it
// swaps in a restored or defragmented file.)
func TestHardLinks(t *testing.T) {
	fs := powerfs.MountT(t, powerfs.Options{})
	p := func(name string) string { return filepath.Join(fs.Dir(), name) }
	create(t, p("a"), "old", true)
	syncDir(t, fs.Dir())
	require.NoError(t, os.Link(p("a"), p("synced")))
	syncDir(t, fs.Dir())
	require.NoError(t, os.Link(p("a"), p("unsynced")))

	st, err := os.Stat(p("a"))
	require.NoError(t, err)
	assert.Equal(t, uint64(3), st.Sys().(*syscall.Stat_t).Nlink)
	f, err := os.OpenFile(p("unsynced"), os.O_WRONLY, 0)
	require.NoError(t, err)
	_, err = f.WriteAt([]byte("new"), 0)
	require.NoError(t, err)
	require.NoError(t, f.Sync())
	require.NoError(t, f.Close())
	b, err := os.ReadFile(p("synced"))
	require.NoError(t, err)
	assert.Equal(t, "new", string(b))

	assert.ErrorIs(t, os.Link(p("a"), p("synced")), os.ErrExist)
	require.NoError(t, os.Mkdir(p("dir"), 0o755))
	assert.ErrorIs(t, os.Link(p("dir"), p("dir2")), syscall.EPERM)
	require.NoError(t, os.Remove(p("a")))
	st, err = os.Stat(p("synced"))
	require.NoError(t, err)
	assert.Equal(t, uint64(2), st.Sys().(*syscall.Stat_t).Nlink)

	_, err = fs.Cut()
	require.NoError(t, err)
	assert.Equal(t, map[string]string{"a": "new", "synced": "new"}, tree(t, survivors(t, fs)),
		"the unlink of a and the link unsynced were not synced; the write was")
}

// A rename moves a name: the file keeps its count of names (ctxd's log
// renames its spare segment into place, and refuses, as root, a segment
// with other names).
func TestRenameKeepsTheLinkCount(t *testing.T) {
	fs := powerfs.MountT(t, powerfs.Options{})
	p := func(name string) string { return filepath.Join(fs.Dir(), name) }
	create(t, p("spare"), "x", true)
	require.NoError(t, os.Rename(p("spare"), p("segment")))
	st, err := os.Stat(p("segment"))
	require.NoError(t, err)
	assert.Equal(t, uint64(1), st.Sys().(*syscall.Stat_t).Nlink)
	require.NoError(t, os.Link(p("segment"), p("other")))
	require.NoError(t, os.Rename(p("other"), p("moved")))
	st, err = os.Stat(p("segment"))
	require.NoError(t, err)
	assert.Equal(t, uint64(2), st.Sys().(*syscall.Stat_t).Nlink)
}
