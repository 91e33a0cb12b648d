package bolt_test

import (
	"context"
	"encoding/binary"
	"encoding/json"
	"testing"

	"github.com/stretchr/testify/require"
	bbolt "go.etcd.io/bbolt"

	"github.com/framework0/ctxd"
	"github.com/framework0/ctxd/internal/testkit"
	"github.com/framework0/ctxd/migrations"
	"github.com/framework0/ctxd/store/bolt"
)

// testStore is an open store in a temp folder whose file is checked for
// consistency when the test ends (testkit.OpenBolt).
type testStore struct {
	*testkit.Bolt
	t    testing.TB
	path string
}

func openStore(t testing.TB, opts bolt.Options) *testStore {
	t.Helper()
	b := testkit.OpenBolt(t, opts)
	return &testStore{Bolt: b, t: t, path: b.Path()}
}

// open opens the store again after the test closed it.
func (ts *testStore) open() {
	ts.t.Helper()
	ts.Open()
}

// reopen is a real restart: close the database file and open it again.
func (ts *testStore) reopen() {
	ts.t.Helper()
	ts.Reopen()
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
