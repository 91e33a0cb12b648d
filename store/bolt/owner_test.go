package bolt_test

import (
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"syscall"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/framework0/ctxd/internal/testkit"
	"github.com/framework0/ctxd/store/bolt"
	"github.com/framework0/ctxd/store/wal"
)

// A store opened by root in the data folder of another user (a server
// run as root by hand, on the folder of the service user) gives every
// file it creates there to the folder's owner: a new database, the
// write-ahead log's segments as it rotates, a defragmented copy swapped
// in. Otherwise the server, back under its own user, cannot open them.
// (The offline commands, through real processes: cmd/ctxd's
// TestOfflineCommandsKeepTheDataFolderOwner.)
func TestStoreGivesItsFilesTheDataFolderOwner(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root: only root may give files to another user")
	}
	const user = 65534 // nobody
	dir := filepath.Join(t.TempDir(), "data")
	require.NoError(t, os.Mkdir(dir, 0o750))
	require.NoError(t, os.Chown(dir, user, user))
	// ownedByUser checks every file and folder in dir, and returns the
	// log's segments.
	ownedByUser := func(after string) (segments []string) {
		t.Helper()
		require.NoError(t, filepath.WalkDir(dir, func(path string, d fs.DirEntry, err error) error {
			if err != nil {
				return err
			}
			if filepath.Ext(path) == ".wal" {
				segments = append(segments, d.Name())
			}
			fi, err := d.Info()
			if err != nil {
				return err
			}
			st := fi.Sys().(*syscall.Stat_t)
			assert.Equal(t, [2]uint32{user, user}, [2]uint32{st.Uid, st.Gid}, "%s: the owner of %s", after, path)
			return nil
		}))
		return segments
	}

	b := testkit.OpenBoltAt(t, filepath.Join(dir, "ctxd.db"), bolt.Options{WALSegmentSize: wal.MinSegmentSize})
	for i := range 200 { // several segments of the log
		_, err := b.Put(ctx, "n", fmt.Sprintf("k%d", i), []byte(`"a value that fills the log"`), nil, "t")
		require.NoError(t, err)
	}
	segments := ownedByUser("writes")
	assert.NotEqual(t, []string{"00000000000000000001.wal"}, segments, "the log rotated")
	_, err := b.Defrag(ctx)
	require.NoError(t, err)
	b.CloseChecked()
	ownedByUser("a defrag")
}
