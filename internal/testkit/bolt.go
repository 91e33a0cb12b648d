package testkit

import (
	"path/filepath"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/framework0/ctxd/store/bolt"
)

// Bolt is a bbolt store opened by OpenBolt.
type Bolt struct {
	*bolt.Store // nil while closed
	t           testing.TB
	path        string
	opts        bolt.Options
}

// OpenBolt opens a bbolt store in a new temp folder. When the test ends
// the file gets bbolt's full consistency check and the store is closed
// (unless the test closed it).
func OpenBolt(t testing.TB, opts bolt.Options) *Bolt {
	t.Helper()
	return OpenBoltAt(t, filepath.Join(t.TempDir(), "ctxd.db"), opts)
}

// OpenBoltAt is OpenBolt on the database file at path (a stopped server's,
// say).
func OpenBoltAt(t testing.TB, path string, opts bolt.Options) *Bolt {
	t.Helper()
	b := &Bolt{t: t, path: path, opts: opts}
	b.Open()
	t.Cleanup(b.CloseChecked)
	return b
}

// Path is the database file.
func (b *Bolt) Path() string { return b.path }

// Open opens the store again after CloseChecked, or after the test
// closed it with the store's own Close.
func (b *Bolt) Open() {
	b.t.Helper()
	st, err := bolt.Open(b.path, b.opts)
	require.NoError(b.t, err)
	b.Store = st
}

// CloseChecked runs bbolt's consistency check on the file and closes the
// store; it does nothing when the store is closed already. (The store's
// own Close is still there, for a test of closing itself.)
func (b *Bolt) CloseChecked() {
	b.t.Helper()
	if b.Store == nil {
		return
	}
	st := b.Store
	b.Store = nil
	require.NoError(b.t, st.Check(), "consistency check of %s", b.path)
	require.NoError(b.t, st.Close())
}

// Reopen is a real restart: check, close the database file and open it
// again.
func (b *Bolt) Reopen() {
	b.t.Helper()
	b.CloseChecked()
	b.Open()
}

// CheckBoltFile opens the database file at path, runs bbolt's consistency
// check and closes it: for the file a server left behind.
func CheckBoltFile(t testing.TB, path string) {
	t.Helper()
	st, err := bolt.Open(path, bolt.Options{})
	require.NoError(t, err)
	require.NoError(t, st.Check(), "consistency check of %s", path)
	require.NoError(t, st.Close())
}
