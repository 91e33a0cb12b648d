package testkit

import (
	"os"
	"path/filepath"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/framework0/ctxd"
	"github.com/framework0/ctxd/store"
)

// WriteSnapshot writes st's snapshot to a new file in a temp folder of
// the test and returns its path and what WriteSnapshot reported.
func WriteSnapshot(t testing.TB, st store.Snapshotter) (string, ctxd.SnapshotInfo) {
	t.Helper()
	path := filepath.Join(t.TempDir(), "snapshot.db")
	f, err := os.Create(path)
	require.NoError(t, err)
	info, err := st.WriteSnapshot(f)
	require.NoError(t, err, "write snapshot")
	require.NoError(t, f.Close())
	return path, info
}
