package bolt_test

import (
	"encoding/json"
	"path/filepath"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/framework0/ctxd/internal/powerfs"
	"github.com/framework0/ctxd/internal/testkit"
	"github.com/framework0/ctxd/store/bolt"
)

// A new database file survives a power cut with what was written to it:
// bbolt does not fsync the folder after creating its file, so Open does
// (without that, the file and every acknowledged write in it are gone).
func TestNewDatabaseSurvivesPowerCut(t *testing.T) {
	fs := powerfs.MountT(t, powerfs.Options{})
	s, err := bolt.Open(filepath.Join(fs.Dir(), "ctxd.db"), bolt.Options{})
	require.NoError(t, err)
	_, err = s.Put(ctx, "default", "k", json.RawMessage(`1`), nil, "t")
	require.NoError(t, err)
	require.NoError(t, s.Close())

	_, err = fs.Cut()
	require.NoError(t, err)
	out := t.TempDir()
	require.NoError(t, fs.WriteSurvivors(out))
	require.Equal(t, []string{"ctxd.db", "wal"}, testkit.DirNames(t, out), "the database file and its log survived")
	b := testkit.OpenBoltAt(t, filepath.Join(out, "ctxd.db"), bolt.Options{})
	rec, err := b.Get("default", "k")
	require.NoError(t, err)
	assert.JSONEq(t, `1`, string(rec.Value))
}
