package bolt_test

import (
	"context"
	"encoding/binary"
	"encoding/json"
	"path/filepath"
	"testing"

	"github.com/stretchr/testify/require"
	bbolt "go.etcd.io/bbolt"

	"github.com/framework0/ctxd"
	"github.com/framework0/ctxd/migrations"
	"github.com/framework0/ctxd/store/bolt"
)

// testStore is an open store in a temp folder whose file is checked for
// consistency when the test ends.
type testStore struct {
	*bolt.Store
	t    testing.TB
	path string
	opts bolt.Options
}

func openStore(t testing.TB, opts bolt.Options) *testStore {
	t.Helper()
	ts := &testStore{t: t, path: filepath.Join(t.TempDir(), "ctxd.db"), opts: opts}
	ts.open()
	t.Cleanup(func() {
		if ts.Store == nil {
			return
		}
		require.NoError(t, ts.Check(), "consistency check")
		require.NoError(t, ts.Close())
	})
	return ts
}

func (ts *testStore) open() {
	ts.t.Helper()
	s, err := bolt.Open(ts.path, ts.opts)
	require.NoError(ts.t, err)
	ts.Store = s
}

// reopen is a real restart: close the database file and open it again.
func (ts *testStore) reopen() {
	ts.t.Helper()
	require.NoError(ts.t, ts.Check())
	require.NoError(ts.t, ts.Close())
	ts.open()
}

func (ts *testStore) put(ns, key, value string) ctxd.Record {
	ts.t.Helper()
	r, err := ts.Put(context.Background(), ns, key, json.RawMessage(value), nil, "test")
	require.NoError(ts.t, err)
	return r
}

func u64(v uint64) *uint64 { return &v }

// setSchema rewrites a database's schema version, to fake a newer ctxd.
func setSchema(t testing.TB, path string, version uint64) {
	t.Helper()
	db, err := bbolt.Open(path, 0o600, nil)
	require.NoError(t, err)
	defer db.Close()
	require.NoError(t, db.Update(func(tx *bbolt.Tx) error {
		var v [8]byte
		binary.BigEndian.PutUint64(v[:], version)
		return tx.Bucket(migrations.BucketMeta).Put(migrations.KeySchema, v[:])
	}))
}
