package bolt

import (
	"context"
	"encoding/binary"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	bbolt "go.etcd.io/bbolt"

	"github.com/framework0/ctxd"
)

// persistedFreelist reports whether the database file at path has its
// freelist written (the meta page bbolt would choose points to a freelist
// page), as the file is on disk now.
func persistedFreelist(t *testing.T, path string) bool {
	t.Helper()
	ok, err := FreelistPersisted(path)
	require.NoError(t, err)
	return ok
}

// Every commit writes bbolt's freelist (DESIGN.md, "Open on a large
// database"), so that an open, after a clean stop or a crash alike, reads
// it from its page instead of walking the whole file; a file written
// without it (an older ctxd) gets it at its first open.
func TestEveryCommitPersistsTheFreelist(t *testing.T) {
	path := filepath.Join(t.TempDir(), "ctxd.db")
	old, err := Open(path, Options{freelist: freelistMode{notPersisted: true}})
	require.NoError(t, err)
	_, err = old.Put(context.Background(), "default", "k", json.RawMessage(`1`), nil, "t")
	require.NoError(t, err)
	require.NoError(t, old.Close())
	require.False(t, persistedFreelist(t, path), "control: the old mode leaves no freelist in the file")

	s, err := Open(path, Options{})
	require.NoError(t, err)
	defer func() { require.NoError(t, s.Close()) }()
	require.True(t, persistedFreelist(t, path), "the first open writes the freelist of a file that had none")
	for i := range 20 {
		_, err := s.Put(context.Background(), "default", fmt.Sprintf("k%d", i), json.RawMessage(`2`), nil, "t")
		require.NoError(t, err)
		require.NoError(t, s.checkpoint())
		// While the store is open, as a crash would leave the file.
		require.True(t, persistedFreelist(t, path), "after the committer's commit %d", i)
	}
	require.NoError(t, checkFileStructure(path))
}

// Open reads a few pages of the file, not all of them: the file's pages
// the process maps during Open stay a small part of the file. The control,
// the freelist rebuilt at open (NoFreelistSync), maps nearly all of it,
// which shows that the measure sees a scan.
func TestOpenDoesNotReadTheWholeFile(t *testing.T) {
	if rssFileOf(t) == 0 {
		t.Skip("no RssFile in /proc/self/status (not Linux)")
	}
	path := filepath.Join(t.TempDir(), "ctxd.db")
	s, err := Open(path, Options{})
	require.NoError(t, err)
	value := json.RawMessage(fmt.Sprintf(`"%01000d"`, 7))
	writes := make([]ctxd.Write, 16384) // ~17 MiB: one direct commit
	for i := range writes {
		writes[i] = ctxd.Write{Namespace: "big", Key: fmt.Sprintf("k%08d", i), Op: ctxd.OpPut, Value: value, Who: "t"}
	}
	_, err = s.Import(context.Background(), writes)
	require.NoError(t, err)
	require.NoError(t, s.Close())
	size := fileSize(path)
	require.Greater(t, size, int64(16<<20))

	mapped := func(mode freelistMode) int64 {
		before := rssFileOf(t)
		s, err := Open(path, Options{freelist: mode})
		require.NoError(t, err)
		after := rssFileOf(t)
		// Still readable and writable.
		r, err := s.Get("big", "k00012345")
		require.NoError(t, err)
		require.JSONEq(t, string(value), string(r.Value))
		_, err = s.Put(context.Background(), "other", "k", json.RawMessage(`1`), nil, "t")
		require.NoError(t, err)
		require.NoError(t, s.Close())
		return after - before
	}
	got := mapped(freelistMode{})
	require.Less(t, got, size/8, "Open mapped %d bytes of a %d-byte file: it reads the whole file again", got, size)
	// The old mode reads a freelist that is there, but its commits write
	// none: the open after rebuilds it.
	mapped(freelistMode{notPersisted: true})
	control := mapped(freelistMode{notPersisted: true})
	require.Greater(t, control, size/2, "control: rebuilding the freelist maps the file (%d of %d bytes)", control, size)
}

// A database whose freelist page is damaged is refused by Open with
// ErrDamaged and a message saying what to do, where bbolt itself would
// panic (the control: bbolt.Open on the same file), which would kill the
// server with a stack trace instead of an error.
func TestOpenRefusesADamagedFreelist(t *testing.T) {
	path := filepath.Join(t.TempDir(), "ctxd.db")
	s, err := Open(path, Options{})
	require.NoError(t, err)
	_, err = s.Put(context.Background(), "default", "k", json.RawMessage(`1`), nil, "t")
	require.NoError(t, err)
	require.NoError(t, s.Close())

	f, err := os.OpenFile(path, os.O_RDWR, 0)
	require.NoError(t, err)
	c := &fileChecker{r: f}
	m, err := c.meta()
	require.NoError(t, err)
	require.NotEqual(t, ^uint64(0), m.freelist, "the freelist is persisted")
	flags := make([]byte, 2)
	binary.LittleEndian.PutUint16(flags, flagLeaf) // a leaf where the freelist should be
	_, err = f.WriteAt(flags, int64(m.freelist*uint64(m.pageSize))+8)
	require.NoError(t, err)
	require.NoError(t, f.Close())

	_, err = Open(path, Options{})
	require.ErrorIs(t, err, ErrDamaged)
	assert.Contains(t, err.Error(), "ctxd restore")
	assert.Panics(t, func() {
		db, err := bbolt.Open(path, 0o600, &bbolt.Options{Timeout: time.Second})
		if err == nil {
			_ = db.Close()
		}
	}, "control: bbolt panics on this file")
}
