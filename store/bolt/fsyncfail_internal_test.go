package bolt

import (
	"context"
	"encoding/json"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/framework0/ctxd"
	"github.com/framework0/ctxd/internal/powerfs"
	"github.com/framework0/ctxd/store"
)

// bbolt's commit fdatasyncs the file twice: after the data pages, then
// after the meta page. metaSync is the second.
const metaSync = 2

// A direct commit (a request of DirectBytes or more) whose meta page's
// fdatasync fails: bbolt rolls back, but its memory map shows the meta
// page, so the transaction reads as committed although it is not on the
// disk. The write is answered outcome_unknown and the store takes no
// more writes: before, it answered a plain error and went on, the next
// write took the same revision, and the key read back as corrupt.
// OnFail is told once, with Ready's error (the server's one log line).
func TestAFailedDirectCommitFailsTheStore(t *testing.T) {
	fs := powerfs.MountT(t, powerfs.Options{})
	path := filepath.Join(fs.Dir(), "ctxd.db")
	var told []error
	s, err := Open(path, Options{DirectBytes: 1 << 10, OnFail: func(err error) { told = append(told, err) }})
	require.NoError(t, err)
	ctx := context.Background()
	_, err = s.Put(ctx, "default", "a", json.RawMessage(`1`), nil, "t")
	require.NoError(t, err)
	require.NoError(t, s.checkpoint())

	require.NoError(t, fs.FailOn(powerfs.Trigger{Op: powerfs.OpFsync, Name: "ctxd.db", Count: metaSync}))
	big := json.RawMessage(`"` + strings.Repeat("x", 4<<10) + `"`)
	_, err = s.Put(ctx, "default", "big", big, nil, "t")
	require.ErrorIs(t, err, ctxd.ErrOutcomeUnknown)
	require.ErrorIs(t, s.Ready(), ctxd.ErrUnavailable, "the store is failed")
	require.ErrorIs(t, s.Ready(), store.ErrFailed, "until a restart")
	_, err = s.Put(ctx, "default", "c", json.RawMessage(`3`), nil, "t")
	require.ErrorIs(t, err, ctxd.ErrUnavailable, "no write after it")
	require.ErrorIs(t, err, store.ErrFailed)
	_, err = s.Put(ctx, "default", "d", json.RawMessage(`4`), nil, "t")
	require.ErrorIs(t, err, store.ErrFailed)
	if assert.Len(t, told, 1, "OnFail is told once, whatever the writes after") {
		assert.Equal(t, s.Ready(), told[0])
		assert.ErrorContains(t, told[0], "a commit to the database failed", "with the cause")
	}
	require.ErrorIs(t, s.Close(), ctxd.ErrUnavailable, "Close says the store failed")

	// The restart (same boot: the page cache shows the commit) reads a
	// consistent store, and writes after it.
	s, err = Open(path, Options{})
	require.NoError(t, err)
	defer s.Close()
	if r, err := s.Get("default", "big"); err == nil {
		assert.Equal(t, s.Revision(), r.ModRev)
	} else {
		require.ErrorIs(t, err, ctxd.ErrNotFound)
	}
	rev := s.Revision()
	r, err := s.Put(ctx, "default", "c", json.RawMessage(`3`), nil, "t")
	require.NoError(t, err)
	assert.Equal(t, rev+1, r.ModRev)
	_, err = s.Get("default", "big")
	assert.NotErrorIs(t, err, errCorrupt)
}

// The committer's commit fails at the meta page's fdatasync, and the
// server is restarted in the same boot: the page cache shows the failed
// commit's meta page, which says every record is applied. Open must not
// release the log on its word: a power cut before the next successful
// commit leaves the old meta page on the disk, and the records are needed.
// Before, Open released them, and the acknowledged writes were lost.
func TestOpenKeepsTheLogUntilItsOwnCommit(t *testing.T) {
	fs := powerfs.MountT(t, powerfs.Options{Mode: powerfs.Strict})
	path := filepath.Join(fs.Dir(), "ctxd.db")
	opts := Options{WALSegmentSize: 4096, CommitInterval: time.Hour, CommitChanges: 1 << 20}
	s, err := Open(path, opts)
	require.NoError(t, err)
	ctx := context.Background()
	value := json.RawMessage(`"` + strings.Repeat("v", 300) + `"`)
	const acked = 40
	for i := range acked {
		_, err := s.Put(ctx, "default", "k"+strconv.Itoa(i), value, nil, "t")
		require.NoError(t, err)
	}
	require.NoError(t, fs.FailOn(powerfs.Trigger{Op: powerfs.OpFsync, Name: "ctxd.db", Count: metaSync}))
	require.ErrorIs(t, s.checkpoint(), ctxd.ErrUnavailable, "the committer's commit fails")
	require.ErrorIs(t, s.Close(), ctxd.ErrUnavailable, "Close says the store failed")

	s, err = Open(path, opts) // the restart, in the same boot
	require.NoError(t, err)
	assert.Equal(t, uint64(acked), s.Revision())
	require.NoError(t, s.Close())

	_, err = fs.Cut()
	require.NoError(t, err)
	after := filepath.Join(t.TempDir(), "after")
	require.NoError(t, fs.WriteSurvivors(after))
	s, err = Open(filepath.Join(after, "ctxd.db"), opts)
	require.NoError(t, err, "the log still holds what the disk's database lacks")
	defer s.Close()
	assert.Equal(t, uint64(acked), s.Revision())
	for i := range acked {
		r, err := s.Get("default", "k"+strconv.Itoa(i))
		require.NoError(t, err)
		assert.Equal(t, value, r.Value)
	}
}
