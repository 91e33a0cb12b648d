package bolt

import (
	"context"
	"encoding/binary"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	bbolt "go.etcd.io/bbolt"

	"github.com/framework0/ctxd"
	"github.com/framework0/ctxd/migrations"
)

// A snapshot's who is kept as recorded, as an import keeps it (ctxd's
// Limits.ForImport): one that is not UTF-8 (written before a who had to
// be text) verifies; one longer than any write ever took (256 bytes) is
// refused, naming its change, as an import of it (a restore into etcd)
// is. It was restored whole. The who is only in the change (the log).
func TestSnapshotWhoIsCheckedAsAnImportChecksIt(t *testing.T) {
	dir := t.TempDir()
	s, err := Open(filepath.Join(dir, "ctxd.db"), Options{})
	require.NoError(t, err)
	rec, err := s.Put(context.Background(), "default", "k", []byte(`1`), nil, "w")
	require.NoError(t, err)
	good := filepath.Join(dir, "snap.db")
	f, err := os.Create(good)
	require.NoError(t, err)
	_, err = s.WriteSnapshot(f)
	require.NoError(t, err)
	require.NoError(t, f.Close())
	require.NoError(t, s.Close())
	goodBytes, err := os.ReadFile(good)
	require.NoError(t, err)

	verifyWithWho := func(who string) error {
		path := filepath.Join(t.TempDir(), "snap.db")
		require.NoError(t, os.WriteFile(path, goodBytes, 0o600))
		db, err := bbolt.Open(path, 0o600, nil)
		require.NoError(t, err)
		require.NoError(t, db.Update(func(tx *bbolt.Tx) error {
			logb := tx.Bucket(migrations.BucketLog)
			k := binary.BigEndian.AppendUint64(nil, rec.ModRev)
			e, err := decodeChange(rec.ModRev, logb.Get(k))
			require.NoError(t, err)
			e.Who = who
			return logb.Put(k, encodeChange(&e.Change, e.createRev))
		}))
		require.NoError(t, db.Close())
		snap, err := OpenSnapshot(path)
		require.NoError(t, err)
		defer snap.Close()
		return snap.Verify()
	}
	require.NoError(t, verifyWithWho("w"), "the snapshot as written")
	assert.NoError(t, verifyWithWho("old\xff\x1b"), "a who from before who had to be text")
	err = verifyWithWho(strings.Repeat("w", 257))
	require.ErrorIs(t, err, ctxd.ErrBadSnapshot)
	assert.NotErrorIs(t, err, ctxd.ErrTooLarge, "a bad snapshot (422)")
	assert.Contains(t, err.Error(), `default/"k": the who of revision 1: too large: who is 257 bytes, at most 256 allowed`)
}
