package powerfs_test

import (
	"io/fs"
	"os"
	"path/filepath"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/framework0/ctxd/internal/fsutil"
	"github.com/framework0/ctxd/internal/powerfs"
)

// survivors cuts the power (if not yet) and writes what survived to a new
// folder, returned.
func survivors(t *testing.T, f *powerfs.FS) string {
	t.Helper()
	dir := t.TempDir()
	require.NoError(t, f.WriteSurvivors(dir))
	return dir
}

// tree maps each file under dir to its contents and each folder to "/".
func tree(t *testing.T, dir string) map[string]string {
	t.Helper()
	out := map[string]string{}
	err := filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil || p == dir {
			return err
		}
		rel, _ := filepath.Rel(dir, p)
		if d.IsDir() {
			out[rel] = "/"
			return nil
		}
		b, err := os.ReadFile(p)
		out[rel] = string(b)
		return err
	})
	require.NoError(t, err)
	return out
}

// create creates a new file with data, fsynced when sync is set (its
// folder is not).
func create(t *testing.T, p, data string, sync bool) {
	t.Helper()
	f, err := os.OpenFile(p, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o644)
	require.NoError(t, err)
	_, err = f.WriteString(data)
	require.NoError(t, err)
	if sync {
		require.NoError(t, f.Sync())
	}
	require.NoError(t, f.Close())
}

// syncDir fsyncs the folder.
func syncDir(t *testing.T, dir string) {
	t.Helper()
	require.NoError(t, fsutil.SyncDir(dir))
}

// mkdirs makes folders under dir, then fsyncs dir so that they are durable.
func mkdirs(t *testing.T, dir string, names ...string) {
	t.Helper()
	for _, n := range names {
		require.NoError(t, os.Mkdir(filepath.Join(dir, n), 0o755))
	}
	syncDir(t, dir)
}
