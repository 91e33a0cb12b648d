package bolt_test

import (
	"fmt"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/framework0/ctxd"
	"github.com/framework0/ctxd/store"
	"github.com/framework0/ctxd/store/bolt"
)

func historyRevs(t *testing.T, s *testStore, ns, key string) []uint64 {
	t.Helper()
	h, err := s.History(ns, key, ctxd.HistoryOptions{})
	require.NoError(t, err)
	var revs []uint64
	for _, c := range h.Changes {
		revs = append(revs, c.Revision)
	}
	return revs
}

func TestCompactKeepsNewestVersionsPerKey(t *testing.T) {
	s := openStore(t, bolt.Options{})
	for i := 1; i <= 5; i++ {
		s.put("default", "a", fmt.Sprint(i)) // a: 1,3,5,7,9
		s.put("default", "b", fmt.Sprint(i)) // b: 2,4,6,8,10
	}
	res, err := s.CompactKeep(ctx, 8, 2)
	require.NoError(t, err)
	assert.Equal(t, uint64(8), res.Revision)
	assert.Equal(t, []uint64{9, 7, 5}, historyRevs(t, s, "default", "a"), "2 newest at or below 8, plus everything above")
	assert.Equal(t, []uint64{10, 8, 6}, historyRevs(t, s, "default", "b"))
	assert.Equal(t, 4, res.Removed)
	r, err := s.GetAt("default", "a", 8)
	require.NoError(t, err)
	assert.Equal(t, "4", string(r.Value))
	_, err = s.GetAt("default", "a", 7)
	assert.ErrorIs(t, err, ctxd.ErrCompacted, "below the mark is 410 even if the version is kept")
}

func TestRetentionByVersionsKeepsRecentRevisionsWhole(t *testing.T) {
	s := openStore(t, bolt.Options{})
	for i := 1; i <= 10; i++ {
		s.put("default", "k", fmt.Sprint(i))
	}
	res, err := s.ApplyRetention(ctx, store.RetentionPolicy{KeepVersions: 1, KeepRevisions: 3})
	require.NoError(t, err)
	assert.Equal(t, uint64(7), res.Revision)
	assert.Equal(t, []uint64{10, 9, 8, 7}, historyRevs(t, s, "default", "k"))
	changes, err := s.ReadLog(6, 100)
	require.NoError(t, err, "a watcher inside the kept window can resume")
	assert.Len(t, changes, 4)
}

func TestRetentionByAge(t *testing.T) {
	now := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	clock := func() time.Time { return now }
	s := openStore(t, bolt.Options{Now: clock})
	s.put("default", "k", `1`)    // rev 1, t0
	s.put("default", "gone", `1`) // rev 2
	now = now.Add(48 * time.Hour)
	s.put("default", "k", `2`) // rev 3, t0+48h
	now = now.Add(time.Hour)
	res, err := s.ApplyRetention(ctx, store.RetentionPolicy{KeepFor: 24 * time.Hour})
	require.NoError(t, err)
	assert.Equal(t, uint64(3), res.Revision)
	assert.Equal(t, []uint64{3}, historyRevs(t, s, "default", "k"))
	assert.Equal(t, []uint64{2}, historyRevs(t, s, "default", "gone"), "the change in effect at the cut-off stays")
	g, err := s.Get("default", "gone")
	require.NoError(t, err)
	assert.Equal(t, "1", string(g.Value))
}

// The age cut-off lands on the first change at or after it, among many.
func TestRetentionByAgeFindsTheCutOff(t *testing.T) {
	now := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	s := openStore(t, bolt.Options{Now: func() time.Time { return now }})
	for i := 1; i <= 100; i++ {
		s.put("default", fmt.Sprintf("k%d", i%7), fmt.Sprint(i)) // revision i at minute i
		now = now.Add(time.Minute)
	}
	// now is minute 101: keeping 30 minutes cuts at minute 71, revision 71.
	res, err := s.ApplyRetention(ctx, store.RetentionPolicy{KeepFor: 30 * time.Minute})
	require.NoError(t, err)
	assert.Equal(t, uint64(71), res.Revision)
	_, err = s.GetAt("default", "k1", 70)
	assert.ErrorIs(t, err, ctxd.ErrCompacted)
	r, err := s.GetAt("default", "k1", 71)
	require.NoError(t, err)
	assert.Equal(t, "71", string(r.Value))
}
