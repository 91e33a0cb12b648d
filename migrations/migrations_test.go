package migrations_test

import (
	"context"
	"encoding/binary"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	bbolt "go.etcd.io/bbolt"

	"github.com/framework0/ctxd"
	"github.com/framework0/ctxd/migrations"
	ctxdbolt "github.com/framework0/ctxd/store/bolt"
)

// copyFixture copies a testdata database into a temp folder, so tests
// never change the committed file.
func copyFixture(t *testing.T, name string) string {
	t.Helper()
	src, err := os.Open(filepath.Join("testdata", name))
	require.NoError(t, err)
	defer src.Close()
	path := filepath.Join(t.TempDir(), "ctxd.db")
	dst, err := os.OpenFile(path, os.O_CREATE|os.O_WRONLY, 0o600)
	require.NoError(t, err)
	_, err = io.Copy(dst, src)
	require.NoError(t, err)
	require.NoError(t, dst.Close())
	return path
}

func schemaOf(t *testing.T, path string) int {
	t.Helper()
	db, err := bbolt.Open(path, 0o600, &bbolt.Options{ReadOnly: true})
	require.NoError(t, err)
	defer db.Close()
	var v int
	require.NoError(t, db.View(func(tx *bbolt.Tx) error {
		var err error
		v, err = migrations.SchemaVersion(tx)
		return err
	}))
	return v
}

func TestSchema1FixtureOpensAndIsUpgraded(t *testing.T) {
	path := copyFixture(t, "schema1.db")
	from, to, plan, err := migrations.PlanFile(path, 0)
	require.NoError(t, err)
	assert.Equal(t, 1, from)
	assert.Equal(t, migrations.Current, to)
	require.Len(t, plan, migrations.Current-1)
	assert.Equal(t, 1, schemaOf(t, path), "planning changes nothing")

	s, err := ctxdbolt.Open(path, ctxdbolt.Options{})
	require.NoError(t, err)
	defer s.Close()
	require.NoError(t, s.Check())

	debug, err := s.Get("default", "app.config.debug")
	require.NoError(t, err)
	assert.Equal(t, `false`, string(debug.Value))
	assert.Equal(t, uint64(2), debug.Version)
	assert.Equal(t, "bob", debug.Who)
	old, err := s.GetAt("default", "app.config.debug", 2)
	require.NoError(t, err)
	assert.Equal(t, `true`, string(old.Value))
	_, err = s.Get("default", "scratch")
	assert.ErrorIs(t, err, ctxd.ErrNotFound, "deleted in the fixture")
	h, err := s.History("team", "members", ctxd.HistoryOptions{})
	require.NoError(t, err)
	assert.Len(t, h.Changes, 2)

	ns, err := s.Namespaces()
	require.NoError(t, err)
	assert.Equal(t, []ctxd.Namespace{{Name: "default", Keys: 2}, {Name: "team", Keys: 1}}, ns,
		"the 1->2 step counted the live keys")
	assert.Equal(t, uint64(7), s.Revision())

	r, err := s.Put(context.Background(), "default", "new", json.RawMessage(`1`), nil, "t")
	require.NoError(t, err)
	assert.Equal(t, uint64(8), r.ModRev, "revisions continue from the old file")
	st, err := s.Status()
	require.NoError(t, err)
	assert.Equal(t, uint64(4), st.Keys)
	require.NoError(t, s.Close())
	assert.Equal(t, migrations.Current, schemaOf(t, path))
}

func TestNewerSchemaIsRefused(t *testing.T) {
	path := filepath.Join(t.TempDir(), "ctxd.db")
	s, err := ctxdbolt.Open(path, ctxdbolt.Options{})
	require.NoError(t, err)
	require.NoError(t, s.Close())

	db, err := bbolt.Open(path, 0o600, nil)
	require.NoError(t, err)
	require.NoError(t, db.Update(func(tx *bbolt.Tx) error {
		var v [8]byte
		binary.BigEndian.PutUint64(v[:], uint64(migrations.Current+1))
		return tx.Bucket(migrations.BucketMeta).Put(migrations.KeySchema, v[:])
	}))
	require.NoError(t, db.Close())

	_, err = ctxdbolt.Open(path, ctxdbolt.Options{})
	require.ErrorIs(t, err, migrations.ErrTooNew)
	assert.ErrorIs(t, err, migrations.ErrTooNew)
	assert.Contains(t, err.Error(), fmt.Sprintf("version %d", migrations.Current+1), "names the file's version")
	assert.Contains(t, err.Error(), fmt.Sprintf("(%d)", migrations.Current), "and the binary's")
	_, _, _, err = migrations.PlanFile(path, 0)
	assert.ErrorIs(t, err, migrations.ErrTooNew)
	assert.Equal(t, migrations.Current+1, schemaOf(t, path), "a refused file is not touched")
}

func TestNewFileIsInitialisedAtCurrent(t *testing.T) {
	path := filepath.Join(t.TempDir(), "ctxd.db")
	s, err := ctxdbolt.Open(path, ctxdbolt.Options{})
	require.NoError(t, err)
	require.NoError(t, s.Close())
	assert.Equal(t, migrations.Current, schemaOf(t, path))
	from, _, plan, err := migrations.PlanFile(path, 0)
	require.NoError(t, err)
	assert.Equal(t, migrations.Current, from)
	assert.Empty(t, plan)
}

// Each step is tested on its own: upgrade 1->2 counts keys per namespace.
func TestStep1To2CountsKeys(t *testing.T) {
	path := copyFixture(t, "schema1.db")
	db, err := bbolt.Open(path, 0o600, nil)
	require.NoError(t, err)
	defer db.Close()
	plan, err := migrations.Plan(1)
	require.NoError(t, err)
	require.Equal(t, 1, plan[0].From)
	require.NoError(t, db.Update(plan[0].Apply))
	require.NoError(t, db.View(func(tx *bbolt.Tx) error {
		b := tx.Bucket(migrations.BucketNSKeys)
		require.NotNil(t, b)
		assert.Equal(t, uint64(2), binary.BigEndian.Uint64(b.Get([]byte("default"))))
		assert.Equal(t, uint64(1), binary.BigEndian.Uint64(b.Get([]byte("team"))))
		return nil
	}))
}

func TestFailedMigrationChangesNothing(t *testing.T) {
	path := copyFixture(t, "schema1.db")
	db, err := bbolt.Open(path, 0o600, nil)
	require.NoError(t, err)
	// The whole plan runs in the caller's transaction: when anything in it
	// fails, the transaction aborts and every step is undone with it.
	err = db.Update(func(tx *bbolt.Tx) error {
		_, err := migrations.Migrate(tx)
		require.NoError(t, err)
		return assert.AnError // abort: bbolt rolls the whole plan back
	})
	require.ErrorIs(t, err, assert.AnError)
	require.NoError(t, db.Close())
	assert.Equal(t, 1, schemaOf(t, path), "an aborted plan leaves the old schema")
}

func TestPlanRefusesUnknownVersions(t *testing.T) {
	_, err := migrations.Plan(0)
	assert.Error(t, err)
	_, err = migrations.Plan(migrations.Current + 1)
	var tooNew *migrations.TooNewError
	require.ErrorAs(t, err, &tooNew)
	assert.Equal(t, migrations.Current+1, tooNew.Found)
}

// Step 2->3 rewrites kv records to format 2 (no value), leaving every value
// readable from the log.
func TestStep2To3StoresValuesOnce(t *testing.T) {
	path := copyFixture(t, "schema1.db")
	db, err := bbolt.Open(path, 0o600, nil)
	require.NoError(t, err)
	plan, err := migrations.Plan(1)
	require.NoError(t, err)
	require.Len(t, plan, migrations.Current-1)
	// kvBytes checks that every kv record of "default" is in format and
	// returns their size.
	kvBytes := func(format byte) int {
		n := 0
		require.NoError(t, db.View(func(tx *bbolt.Tx) error {
			return tx.Bucket(migrations.KVBucket("default")).ForEach(func(_, v []byte) error {
				assert.Equal(t, format, v[0])
				n += len(v)
				return nil
			})
		}))
		return n
	}
	require.NoError(t, db.Update(plan[0].Apply))
	before := kvBytes(1)
	require.Equal(t, 2, plan[1].From)
	require.NoError(t, db.Update(plan[1].Apply))
	assert.Less(t, kvBytes(2), before)
	// Applying the step again is harmless.
	require.NoError(t, db.Update(plan[1].Apply))
	require.NoError(t, db.Close())
}

// Step 3->4 gives the file a store id and changes nothing else: the
// write-ahead log's position (meta/wal_seq) is absent, which means 0.
func TestStep3To4OnlyRaisesTheVersion(t *testing.T) {
	path := copyFixture(t, "schema1.db")
	db, err := bbolt.Open(path, 0o600, nil)
	require.NoError(t, err)
	plan, err := migrations.Plan(1)
	require.NoError(t, err)
	require.Equal(t, 3, plan[2].From)
	require.NoError(t, db.Update(plan[0].Apply))
	require.NoError(t, db.Update(plan[1].Apply))
	dump := func() map[string]string {
		out := map[string]string{}
		require.NoError(t, db.View(func(tx *bbolt.Tx) error {
			return tx.ForEach(func(name []byte, b *bbolt.Bucket) error {
				return b.ForEach(func(k, v []byte) error {
					out[string(name)+"/"+string(k)] = string(v)
					return nil
				})
			})
		}))
		return out
	}
	before := dump()
	require.NoError(t, db.Update(plan[2].Apply))
	after := dump()
	assert.Len(t, after["meta/store_id"], 8)
	delete(after, "meta/store_id")
	assert.Equal(t, before, after)
	require.NoError(t, db.View(func(tx *bbolt.Tx) error {
		assert.Nil(t, tx.Bucket(migrations.BucketMeta).Get(migrations.KeyWALSeq))
		return nil
	}))
	require.NoError(t, db.Close())
}
