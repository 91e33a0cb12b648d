package etcd_test

import (
	"encoding/json"
	"strconv"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/framework0/ctxd"
	"github.com/framework0/ctxd/internal/testkit"
	"github.com/framework0/ctxd/internal/testkit/etcdkit"
	"github.com/framework0/ctxd/store/etcd"
)

// writeHistory makes n revisions on s: single puts, and every third a
// transaction of three puts (one revision, three changes).
func writeHistory(t *testing.T, s *etcd.Store, n int) {
	t.Helper()
	for i := range n {
		v := json.RawMessage(strconv.Itoa(i))
		if i%3 == 2 {
			_, err := s.Txn(t.Context(), []ctxd.Write{
				{Op: ctxd.OpPut, Namespace: "default", Key: "t/a", Value: v},
				{Op: ctxd.OpPut, Namespace: "default", Key: "t/b", Value: v},
				{Op: ctxd.OpPut, Namespace: "default", Key: "t/c", Value: v},
			})
			require.NoError(t, err)
			continue
		}
		_, err := s.Put(t.Context(), "default", "k"+strconv.Itoa(i), v, nil, "test")
		require.NoError(t, err)
	}
}

// An instance that starts on a prefix with history reads the newest of it
// into memory in the background (up to RingChanges revisions back, whole
// revisions, at most RingChanges changes): a client that lost another
// instance and resumes on this one from before its start is served from
// memory, with the same changes the other instance has, not by a watch
// of etcd's history per read. Negative control: without the backfill the
// floor stays at the revision the instance opened at.
func TestNewInstanceHoldsRecentHistory(t *testing.T) {
	prefix := etcdkit.Prefix(etcdkit.Name(t))
	first := open(t, etcd.Options{Prefix: prefix})
	_, err := first.Put(t.Context(), "default", "before", json.RawMessage(`0`), nil, "test")
	require.NoError(t, err)
	start := first.Revision()
	writeHistory(t, first, 30)
	opened := first.Revision()

	late := open(t, etcd.Options{Prefix: prefix})
	testkit.Eventually(t, func() bool { return etcd.FeedFloor(late) <= start }, "the new instance's recent changes reach back to %d", start)
	want, err := first.ReadLog(start, 1000)
	require.NoError(t, err)
	got, err := late.ReadLog(start, 1000)
	require.NoError(t, err)
	assert.Equal(t, want, got)
	assert.Len(t, got, 20+3*10)
	assert.Equal(t, opened, got[len(got)-1].Revision)

	// A small buffer keeps the newest whole revisions that fit.
	small := open(t, etcd.Options{Prefix: prefix, RingChanges: 8})
	testkit.Eventually(t, func() bool { return etcd.FeedFloor(small) < opened }, "the small instance's backfill")
	floor := etcd.FeedFloor(small)
	got, err = small.ReadLog(floor, 1000)
	require.NoError(t, err)
	require.NotEmpty(t, got)
	assert.LessOrEqual(t, len(got), 8)
	assert.Equal(t, want[len(want)-len(got):], got, "the newest changes, whole revisions")
	assert.Greater(t, got[0].Revision, floor)

	// So does a byte bound (a prefix of large values).
	limit := etcd.ChangeBytes(want[len(want)-8:])
	sized := open(t, etcd.Options{Prefix: prefix, RingBytes: limit})
	testkit.Eventually(t, func() bool { return etcd.FeedFloor(sized) < opened }, "the sized instance's backfill")
	floor = etcd.FeedFloor(sized)
	got, err = sized.ReadLog(floor, 1000)
	require.NoError(t, err)
	require.NotEmpty(t, got)
	assert.LessOrEqual(t, etcd.ChangeBytes(got), limit)
	assert.Equal(t, want[len(want)-len(got):], got, "the newest changes, whole revisions")
	assert.Greater(t, got[0].Revision, floor)
}

// The backfill stops at etcd's compaction: the instance holds what etcd
// still has, and reads below it are "compacted" as before.
func TestBackfillStopsAtCompaction(t *testing.T) {
	prefix := etcdkit.Prefix(etcdkit.Name(t))
	first := open(t, etcd.Options{Prefix: prefix})
	writeHistory(t, first, 12)
	mid := first.Revision()
	writeHistory(t, first, 12)
	_, err := first.CompactKeep(t.Context(), mid, 1)
	require.NoError(t, err)

	late := open(t, etcd.Options{Prefix: prefix})
	testkit.Eventually(t, func() bool { return etcd.FeedFloor(late) < late.Revision() }, "the backfill after the compaction")
	assert.GreaterOrEqual(t, etcd.FeedFloor(late), mid-1, "nothing below the compaction")
	want, err := first.ReadLog(mid, 1000)
	require.NoError(t, err)
	got, err := late.ReadLog(mid, 1000)
	require.NoError(t, err)
	assert.Equal(t, want, got)
	_, err = late.ReadLog(mid-2, 1)
	assert.ErrorIs(t, err, ctxd.ErrCompacted)
}

// A follower far behind (before the instance's recent changes) catches up
// page by page. Each watch of etcd's history costs etcd a read of every
// revision from its start to its head, and a wait for etcd's next resync
// (100 ms) per response: one watch serves many pages, what etcd has sent
// is kept for the next ones. A catch-up of 300 revisions in pages of 10
// takes a few watches, not 30. Every change comes once, in order.
// Negative control: with each page a watch of its own, 30.
func TestCatchUpFromHistoryReusesEtcdsAnswers(t *testing.T) {
	reads := catchUpFromHistory(t, etcd.Options{Prefix: etcdkit.Prefix(etcdkit.Name(t)), RingChanges: 100})
	assert.LessOrEqual(t, reads, uint64(5), "watches of etcd's history for the catch-up")
	assert.Positive(t, reads, "the catch-up read history")

	// A byte bound (Options.RingBytes) keeps less of what etcd sent past
	// each page; the catch-up is just as whole.
	small := etcd.ChangeBytes(make([]ctxd.Change, 5))
	reads = catchUpFromHistory(t, etcd.Options{Prefix: etcdkit.Prefix(etcdkit.Name(t) + "-bytes"), RingChanges: 100, RingBytes: small})
	assert.Positive(t, reads, "the catch-up read history")
}

// catchUpFromHistory writes 400 changes to a new instance with opts, most
// beyond its recent changes, reads them back from before the first in
// pages of 10, checks each comes once, in order, and returns how many
// watches of etcd's history that took.
func catchUpFromHistory(t *testing.T, opts etcd.Options) uint64 {
	t.Helper()
	s := open(t, opts)
	_, err := s.Put(t.Context(), "default", "before", json.RawMessage(`0`), nil, "test")
	require.NoError(t, err)
	start := s.Revision()
	for i := range 400 {
		_, err := s.Put(t.Context(), "default", "k"+strconv.Itoa(i), json.RawMessage(strconv.Itoa(i)), nil, "test")
		require.NoError(t, err)
	}
	mark := s.Revision()
	require.Greater(t, etcd.FeedFloor(s), start+250, "most of it is history, not in memory")

	before := etcd.HistoryReads(s)
	pos, n := start, 0
	for pos < mark {
		page, err := s.ReadLog(pos, 10)
		require.NoError(t, err)
		require.NotEmpty(t, page, "a page after %d, below the mark %d", pos, mark)
		for _, c := range page {
			require.Greater(t, c.Revision, pos, "in order, once")
			pos = c.Revision
			require.Equal(t, "k"+strconv.Itoa(n), c.Key, "no gap")
			n++
		}
	}
	assert.Equal(t, 400, n)
	return etcd.HistoryReads(s) - before
}
