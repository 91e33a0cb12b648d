package bolt

import (
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/framework0/ctxd"
	"github.com/framework0/ctxd/store/wal"
)

// segmentStarts lists the first sequence number of each segment of the
// write-ahead log in dir (their file names).
func segmentStarts(t *testing.T, dir string) []uint64 {
	t.Helper()
	names, err := filepath.Glob(filepath.Join(dir, "*.wal"))
	require.NoError(t, err)
	var out []uint64
	for _, n := range names {
		seq, err := strconv.ParseUint(strings.TrimSuffix(filepath.Base(n), ".wal"), 10, 64)
		require.NoError(t, err, n)
		out = append(out, seq)
	}
	return out
}

// The committer releases the write-ahead log up to the last record it
// applied to bbolt, and not one record further: the first record it has
// not applied stays in the log, also when it is the last of its segment
// and the next segment has begun (releasing before the next record would
// delete that segment). Each round has the committer apply the records
// published so far while two more are durable and not yet published (the
// test holds the writer between its log write and the syncer, and syncs
// the log itself): a small one, a, and a large one, b, that does not fit
// in what is left of a's segment and begins the next. After the apply,
// the log still holds a. At the end a crash (a copy of the folder, the
// committer idle) reopens with every acknowledged write. Run with the
// release one record further (ReleaseBefore(b.seq+2) in applyPending), a
// is gone from the log every round but the first, and the copy does not
// open (wal.ErrReleased): bbolt ends before a, the log after it.
func TestCommitterReleasesOnlyAppliedRecords(t *testing.T) {
	path := filepath.Join(t.TempDir(), "data", "ctxd.db")
	// The committer applies only when the test asks (applyPending).
	s, err := Open(path, Options{WALSegmentSize: wal.MinSegmentSize, CommitInterval: time.Hour, CommitChanges: 1 << 20})
	require.NoError(t, err)
	t.Cleanup(func() {
		assert.NoError(t, s.Check())
		require.NoError(t, s.Close())
	})
	ctx := context.Background()
	put := func(key string, value json.RawMessage) *request {
		w := ctxd.Write{Namespace: "default", Key: key, Op: ctxd.OpPut, Value: value, Who: "t"}
		r := &request{writes: []ctxd.Write{w}, size: changeSize(&w), done: make(chan result, 1)}
		require.False(t, s.big(r), "%s goes through the log", key)
		return r
	}
	small := json.RawMessage(`"` + strings.Repeat("s", 200) + `"`)
	// Less than half a 4 KiB segment (larger goes to bbolt directly), more
	// than what a segment has left after a large record and two small.
	large := json.RawMessage(`"` + strings.Repeat("l", 1800) + `"`)

	const rounds = 8
	var acked []string
	began := 0
	for i := range rounds {
		n := strconv.Itoa(i)
		_, err := s.Txn(ctx, put("lone"+n, small).writes)
		require.NoError(t, err)
		acked = append(acked, "lone"+n)
		applied := s.wal.LastSeq() // the last record published: applyPending applies up to it

		h := holdGroups(s)
		a, b := put("a"+n, small), put("b"+n, large)
		h.commit(t, a, b)
		_, err = s.wal.Sync()
		require.NoError(t, err)
		require.Equal(t, applied+2, s.wal.LastSeq(), "a and b are durable, one record each")
		if slices.Contains(segmentStarts(t, s.wal.Dir()), applied+2) {
			began++
		}
		err = s.applyPending()
		first := s.wal.FirstSeq()
		h.land()
		answer(t, a)
		answer(t, b)
		acked = append(acked, "a"+n, "b"+n)
		require.NoError(t, err)
		assert.LessOrEqual(t, first, applied+1, "round %d: record %d, the first not applied, is still in the log", i, applied+1)
	}
	// All but the first round: the first b fits in the first segment.
	require.Equal(t, rounds-1, began, "b began a segment, a ended one")

	crashed := filepath.Join(t.TempDir(), "crashed")
	require.NoError(t, os.CopyFS(crashed, os.DirFS(filepath.Dir(path))))
	c, err := Open(filepath.Join(crashed, "ctxd.db"), Options{WALSegmentSize: wal.MinSegmentSize})
	require.NoError(t, err, "the crashed folder opens")
	defer func() {
		assert.NoError(t, c.Check())
		require.NoError(t, c.Close())
	}()
	for _, key := range acked {
		_, err := c.Get("default", key)
		assert.NoError(t, err, "acknowledged %s is there after the crash", key)
	}
}
