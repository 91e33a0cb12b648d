package testkit

import (
	"os"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/framework0/ctxd/internal/fsutil"
)

// DirNames lists the names of dir's entries, sorted ([]string{} when it
// is empty), but the lock file of a folder processes may share
// (fsutil.WritersLock: a dump or snapshots folder has it once written to).
func DirNames(t testing.TB, dir string) []string {
	t.Helper()
	entries, err := os.ReadDir(dir) // sorted by name
	require.NoError(t, err)
	out := []string{}
	for _, e := range entries {
		if e.Name() != fsutil.WritersLock {
			out = append(out, e.Name())
		}
	}
	return out
}
