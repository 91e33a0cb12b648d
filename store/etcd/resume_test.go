package etcd_test

import (
	"errors"
	"os"
	"path/filepath"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/framework0/ctxd"
	"github.com/framework0/ctxd/internal/testkit/etcdkit"
	"github.com/framework0/ctxd/store"
	"github.com/framework0/ctxd/store/etcd"
)

// A follower inside a transaction's revision resumes with the rest of it,
// and is told "compacted" once compaction took the revision: the rest of
// it is gone (it is not silently skipped).
func TestResumeInsideACompactedRevision(t *testing.T) {
	s := open(t, etcd.Options{Prefix: etcdkit.Prefix(etcdkit.Name(t))})
	ctx := t.Context()
	txn, err := s.Txn(ctx, []ctxd.Write{
		{Op: ctxd.OpPut, Namespace: "default", Key: "a", Value: []byte(`1`)},
		{Op: ctxd.OpPut, Namespace: "default", Key: "b", Value: []byte(`2`)},
		{Op: ctxd.OpPut, Namespace: "default", Key: "c", Value: []byte(`3`)},
	})
	require.NoError(t, err)
	r := txn.Revision
	one := uint64(1)

	after, skip, err := store.ResumeFrom(s, r, &one)
	require.NoError(t, err)
	assert.Equal(t, r-1, after)
	assert.Equal(t, 1, skip, "the first change of the revision was handled")

	next, err := s.Put(ctx, "default", "d", []byte(`4`), nil, "test")
	require.NoError(t, err)
	_, err = s.CompactKeep(ctx, next.ModRev, 1)
	require.NoError(t, err)

	_, _, err = store.ResumeFrom(s, r, &one)
	var ce *ctxd.CompactedError
	require.True(t, errors.As(err, &ce), "the rest of a compacted revision is gone: %v", err)
	after, skip, err = store.ResumeFrom(s, r, nil)
	require.NoError(t, err, "a follower with all of the revision goes on")
	assert.Equal(t, r, after)
	assert.Zero(t, skip)
}

// After a full restore, a follower from revision 0 ("every change history
// still holds") starts at the restored state's revision, with no error.
func TestResumeFromZeroAfterAFullRestore(t *testing.T) {
	s := open(t, etcd.Options{Prefix: etcdkit.Prefix(etcdkit.Name(t))})
	ctx := t.Context()
	_, err := s.Put(ctx, "default", "a", []byte(`1`), nil, "test")
	require.NoError(t, err)
	path := filepath.Join(t.TempDir(), "snap")
	f, err := os.Create(path)
	require.NoError(t, err)
	_, err = s.WriteSnapshot(f)
	require.NoError(t, err)
	require.NoError(t, f.Close())
	_, err = s.Put(ctx, "default", "b", []byte(`2`), nil, "test")
	require.NoError(t, err)
	res, err := s.Restore(ctx, path, ctxd.RestoreOptions{})
	require.NoError(t, err)
	after, skip, err := store.ResumeFrom(s, 0, nil)
	require.NoError(t, err, "from 0 after a full restore")
	require.Zero(t, skip)
	require.LessOrEqual(t, after, res.Revision)
	_, err = s.ReadLog(after, 10)
	require.NoError(t, err, "the log reads from there")
}
