package bolt_test

import (
	"context"
	"strconv"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/framework0/ctxd"
	"github.com/framework0/ctxd/store/bolt"
)

// Compacting again at the same revision keeping fewer versions does the
// work: it is the remedy for a full quota (keep_versions=1, then defrag),
// and it did nothing when asked right after a compaction that kept 10
// (the revision had not moved: "already compacted"). Asked again keeping
// as many, it is a no-op.
func TestCompactAgainKeepingFewer(t *testing.T) {
	s := openStore(t, bolt.Options{})
	ctx := context.Background()
	for i := range 30 {
		s.put("default", "k", strconv.Itoa(i))
	}
	rev := s.Revision()
	res, err := s.CompactKeep(ctx, rev, 10)
	require.NoError(t, err)
	assert.Equal(t, 20, res.Removed)
	res, err = s.CompactKeep(ctx, rev, 1)
	require.NoError(t, err)
	assert.Equal(t, 9, res.Removed, "keeping 1 at the same revision removes the 9 others")
	h, err := s.History("default", "k", ctxd.HistoryOptions{Limit: 100})
	require.NoError(t, err)
	assert.Len(t, h.Changes, 1)
	for _, keep := range []int{1, 5} {
		res, err = s.CompactKeep(ctx, rev, keep)
		require.NoError(t, err)
		assert.Zero(t, res.Removed, "keeping %d: nothing more to do", keep)
	}
}
