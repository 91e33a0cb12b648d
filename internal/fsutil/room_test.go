package fsutil_test

import (
	"errors"
	"os"
	"path/filepath"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/framework0/ctxd/internal/fsutil"
)

func TestAutoReserve(t *testing.T) {
	assert.Equal(t, int64(0), fsutil.AutoReserve(0))
	assert.Equal(t, int64(0), fsutil.AutoReserve(-1))
	assert.Equal(t, int64(5<<20), fsutil.AutoReserve(100<<20), "a twentieth")
	assert.Equal(t, int64(fsutil.MaxAutoReserve), fsutil.AutoReserve(1<<40), "at most 1 GiB")
}

// A temp file whose writes would leave less than its reserve free stops at
// its first write, and Discard leaves nothing; without a reserve (0) the
// same write goes through.
func TestTempKeepsTheReserveFree(t *testing.T) {
	dir := t.TempDir()
	tmp, err := fsutil.CreateTemp(dir, "x", 0o600)
	require.NoError(t, err)
	tmp.KeepFree(1 << 62) // more than any disk has
	_, err = tmp.Write([]byte("data"))
	var re *fsutil.ReserveError
	require.ErrorAs(t, err, &re)
	assert.True(t, errors.Is(err, fsutil.ErrReserve))
	assert.Equal(t, "x", re.What, "the file's name, not its path")
	assert.Equal(t, int64(4), re.Need)
	assert.Contains(t, err.Error(), "storage.reserve_bytes")
	tmp.Discard()
	entries, err := os.ReadDir(dir)
	require.NoError(t, err)
	assert.Empty(t, entries)

	tmp, err = fsutil.CreateTemp(dir, "y", 0o600)
	require.NoError(t, err)
	defer tmp.Discard()
	_, err = tmp.Write([]byte("data"))
	require.NoError(t, err, "no reserve: nothing checked")

	require.ErrorIs(t, fsutil.Reserve(1<<62).Fits(dir, "a copy", 0), fsutil.ErrReserve)
	require.NoError(t, fsutil.Reserve(0).Fits(dir, "a copy", 1<<62), "0 checks nothing")
	require.NoError(t, fsutil.Reserve(1).Fits(filepath.Join(dir, "missing"), "a copy", 1<<62), "a folder that cannot be looked at is not checked")
}
