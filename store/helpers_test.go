package store_test

import (
	"context"
	"encoding/binary"
	"encoding/json"
	"path/filepath"
	"testing"

	"github.com/framework0/ctxd/migrations"
	"github.com/framework0/ctxd/store"
	"github.com/stretchr/testify/require"
	bolt "go.etcd.io/bbolt"
)

// testStore is an open store in a temp folder whose file is checked for
// consistency when the test ends.
type testStore struct {
	*store.Store
	t    testing.TB
	path string
	opts store.Options
}

func openStore(t testing.TB, opts store.Options) *testStore {
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
	s, err := store.Open(ts.path, ts.opts)
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

func (ts *testStore) put(ns, key, value string) store.Record {
	ts.t.Helper()
	r, err := ts.Put(context.Background(), ns, key, json.RawMessage(value), nil, "test")
	require.NoError(ts.t, err)
	return r
}

func u64(v uint64) *uint64 { return &v }

// setSchema rewrites a database's schema version, to fake a newer ctxd.
func setSchema(t testing.TB, path string, version uint64) {
	t.Helper()
	db, err := bolt.Open(path, 0o600, nil)
	require.NoError(t, err)
	defer db.Close()
	require.NoError(t, db.Update(func(tx *bolt.Tx) error {
		var v [8]byte
		binary.BigEndian.PutUint64(v[:], version)
		return tx.Bucket(migrations.BucketMeta).Put(migrations.KeySchema, v[:])
	}))
}
