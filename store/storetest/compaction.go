package storetest

import (
	"fmt"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/framework0/ctxd"
	"github.com/framework0/ctxd/store"
)

// Compaction discards history below a mark: reads below it fail with a
// *ctxd.CompactedError, reads at or above it still answer exactly, and the
// mark never goes back, also across a restart.
func checkCompaction(t testing.TB, h Harness) {
	b := open(t, h, Config{})
	ctx := t.Context()
	r1 := b.put("default", "k", `1`).ModRev
	r2 := b.put("default", "gone", `1`).ModRev
	r3 := b.put("default", "k", `2`).ModRev
	r4 := b.del("default", "gone").ModRev
	r5 := b.put("default", "stable", `"s"`).ModRev
	r6 := b.put("default", "k", `3`).ModRev

	_, err := b.CompactKeep(ctx, r6+1000, 1)
	assert.ErrorIs(t, err, ctxd.ErrFutureRevision, "compacting past the current revision")
	_, err = b.CompactKeep(ctx, 0, 1)
	assert.ErrorIs(t, err, ctxd.ErrInvalid, "there is no revision 0")

	res, err := b.CompactKeep(ctx, r5, 1)
	require.NoError(t, err)
	assert.Equal(t, r5, res.Revision)
	assert.Positive(t, res.Removed)

	assertBelowMark := func(when string) {
		t.Helper()
		_, err := b.GetAt("default", "k", r4)
		if ce := assertCompacted(t, err, "get below the mark, %s", when); ce != nil {
			assert.Equal(t, r4, ce.Requested, when)
			assert.Equal(t, r5, ce.Compacted, when)
		}
		assertCompacted(t, b.CheckRevision(r4), "check below the mark, %s", when)
		assertCompacted(t, b.CheckRevision(r1), "check below the mark, %s", when)
		_, err = b.ReadLog(r2, 10)
		if ce := assertCompacted(t, err, "a follower that has not seen the third and fourth changes, %s", when); ce != nil {
			assert.Equal(t, r5, ce.Compacted, when)
		}

		assert.NoError(t, b.CheckRevision(r5), "at the mark, %s", when)
		assert.NoError(t, b.CheckRevision(r6), "above the mark, %s", when)
		for rev, want := range map[uint64]string{r5: `2`, r6: `3`} {
			r, err := b.GetAt("default", "k", rev)
			if assert.NoError(t, err, "the change in effect at revision %d is kept, %s", rev, when) {
				assert.Equal(t, want, string(r.Value), "revision %d, %s", rev, when)
			}
		}
		r, err := b.GetAt("default", "stable", r5)
		if assert.NoError(t, err, when) {
			assert.Equal(t, `"s"`, string(r.Value), when)
		}
		_, err = b.GetAt("default", "gone", r5)
		assert.ErrorIs(t, err, ctxd.ErrNotFound, "deleted before the mark, %s", when)
		assert.Equal(t, []uint64{r6, r3}, b.historyRevs("default", "k"), "history from the change in effect at the mark, %s", when)
		changes, err := b.ReadLog(r4, 10)
		if assert.NoError(t, err, "a follower that saw the fourth change misses nothing, %s", when) {
			assert.Equal(t, []uint64{r5, r6}, revisions(changes), when)
		}
		st, err := b.Status()
		if assert.NoError(t, err) {
			assert.Equal(t, r5, st.CompactedRevision, when)
		}
		assert.Equal(t, `3`, b.value("default", "k"), "current values are never compacted, %s", when)
		assert.Equal(t, `"s"`, b.value("default", "stable"), when)
	}
	assertBelowMark("after compaction")

	if past, ok := b.Backend.(store.PastViewer); ok {
		err := past.ViewAt(r1, func(store.View) error { return nil })
		assertCompacted(t, err, "a view below the mark")
	}
	require.NoError(t, b.View(func(v store.View) error {
		_, err := v.Change("default", "k", r1)
		assert.ErrorIs(t, err, ctxd.ErrNotFound, "the view does not hold a compacted change")
		var revs []uint64
		require.NoError(t, v.ForEachChange("", func(c ctxd.Change) error { revs = append(revs, c.Revision); return nil }))
		// The change that made each key live at the mark what it is
		// there (k's r3) is kept, as in the key's history, and so listed
		// (a dump's history, /ctx/history); "gone" did not exist at the
		// mark.
		assert.Equal(t, []uint64{r3, r5, r6}, revs, "the view has the changes retained")
		return nil
	}))

	res, err = b.CompactKeep(ctx, r3, 1)
	require.NoError(t, err, "compacting below the mark does nothing")
	assert.Equal(t, r5, res.Revision, "the mark never goes back")
	assert.Zero(t, res.Removed)
	assertBelowMark("after compacting below the mark")

	b.restart()
	assertBelowMark("after a restart")
}

// CompactKeep keeps, per key, the keep newest changes at or below the
// mark, besides everything above it; a read below the mark is still
// compacted even when its change was kept.
func checkCompactKeep(t testing.TB, h Harness) {
	b := open(t, h, Config{})
	var revs []uint64 // a at 0, 2, 4, 6, 8; b at 1, 3, 5, 7, 9
	for i := 1; i <= 5; i++ {
		revs = append(revs, b.put("default", "a", fmt.Sprint(i)).ModRev)
		revs = append(revs, b.put("default", "b", fmt.Sprint(i)).ModRev)
	}
	if h.Compaction == CompactAtMark {
		_, err := b.CompactKeep(t.Context(), revs[7], 2)
		assert.ErrorIs(t, err, ctxd.ErrNotSupported, "keeping 2 changes per key (Harness.Compaction)")
		assert.Len(t, b.historyRevs("default", "a"), 5, "an unsupported compaction removes nothing")
		assert.NoError(t, b.CheckRevision(revs[0]))
	} else {
		res, err := b.CompactKeep(t.Context(), revs[7], 2)
		require.NoError(t, err)
		assert.Equal(t, revs[7], res.Revision)
		assert.Equal(t, 4, res.Removed)
		assert.Equal(t, []uint64{revs[8], revs[6], revs[4]}, b.historyRevs("default", "a"), "2 newest at or below the mark, plus everything above")
		assert.Equal(t, []uint64{revs[9], revs[7], revs[5]}, b.historyRevs("default", "b"))
		r, err := b.GetAt("default", "a", revs[7])
		require.NoError(t, err)
		assert.Equal(t, "4", string(r.Value))
		_, err = b.GetAt("default", "a", revs[6])
		assertCompacted(t, err, "below the mark even though the change there is kept")
	}
	_, err := b.CompactKeep(t.Context(), revs[8], 0)
	require.NoError(t, err, "keep below 1 keeps the change in effect")
	r, err := b.GetAt("default", "b", revs[8])
	require.NoError(t, err)
	assert.Equal(t, "4", string(r.Value))
}

// Retention by versions caps each key's history except within the newest
// KeepRevisions revisions, so that followers inside that window resume.
func checkRetentionByVersions(t testing.TB, h Harness) {
	b := open(t, h, Config{})
	var revs []uint64
	for i := 1; i <= 10; i++ {
		revs = append(revs, b.put("default", "k", fmt.Sprint(i)).ModRev)
	}
	res, err := b.ApplyRetention(t.Context(), store.RetentionPolicy{})
	require.NoError(t, err)
	assert.Zero(t, res.Revision, "an empty policy keeps everything")
	assert.Zero(t, res.Removed)
	assert.Len(t, b.historyRevs("default", "k"), 10)

	if h.Compaction == CompactAtMark {
		_, err = b.ApplyRetention(t.Context(), store.RetentionPolicy{KeepVersions: 2, KeepRevisions: 3})
		assert.ErrorIs(t, err, ctxd.ErrNotSupported, "2 versions per key (Harness.Compaction)")
		assert.Len(t, b.historyRevs("default", "k"), 10, "an unsupported retention removes nothing")
	}
	// The newest 3 revisions are kept whole, and the change in effect
	// below them: on a backend alone on its engine, the 7th put.
	res, err = b.ApplyRetention(t.Context(), store.RetentionPolicy{KeepVersions: 1, KeepRevisions: 3})
	require.NoError(t, err)
	assert.Equal(t, revs[6], res.Revision)
	assert.Equal(t, 6, res.Removed)
	assert.Equal(t, []uint64{revs[9], revs[8], revs[7], revs[6]}, b.historyRevs("default", "k"))
	changes, err := b.ReadLog(revs[5], 100)
	require.NoError(t, err, "a follower inside the kept window resumes")
	assert.Equal(t, revs[6:], revisions(changes))
	_, err = b.ReadLog(revs[4], 100)
	assertCompacted(t, err, "a follower before the window")
}

// Retention by age drops changes older than KeepFor, keeping the change in
// effect at the cut-off. The exact cut-off needs a clock the test moves.
func checkRetentionByAge(t testing.TB, h Harness) {
	if h.Compaction == CompactAtMark {
		b := open(t, h, Config{})
		b.put("default", "k", `1`)
		b.put("default", "k", `2`)
		_, err := b.ApplyRetention(t.Context(), store.RetentionPolicy{KeepFor: time.Nanosecond})
		assert.ErrorIs(t, err, ctxd.ErrNotSupported, "retention by age (Harness.Compaction)")
		assert.Len(t, b.historyRevs("default", "k"), 2, "an unsupported retention removes nothing")
		return
	}
	if !h.Clock {
		b := open(t, h, Config{})
		b.put("default", "k", `1`)
		b.put("default", "k", `2`)
		res, err := b.ApplyRetention(t.Context(), store.RetentionPolicy{KeepFor: time.Hour})
		require.NoError(t, err)
		assert.Zero(t, res.Removed, "nothing is an hour old")
		assert.NoError(t, b.CheckRevision(1))
		t.Skip("the backend does not take a clock (Harness.Clock): the exact cut-off is not checked")
	}

	start := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	clock := newFakeClock(start)
	b := open(t, h, Config{Now: clock.Now})
	ctx := t.Context()
	r := b.put("default", "k", `1`) // rev 1, t0
	assert.True(t, start.Equal(r.UpdatedAt), "the change is stamped with the backend's clock")
	b.put("default", "gone", `1`) // rev 2, t0
	clock.Advance(48 * time.Hour)
	b.put("default", "k", `2`) // rev 3, t0+48h
	clock.Advance(time.Hour)
	log := b.log(0)
	require.Len(t, log, 3)
	assert.True(t, start.Add(48*time.Hour).Equal(log[2].Time), "the log has the clock's time")

	res, err := b.ApplyRetention(ctx, store.RetentionPolicy{KeepFor: 24 * time.Hour})
	require.NoError(t, err)
	assert.Equal(t, uint64(3), res.Revision, "the cut-off is the first change younger than a day")
	assert.Equal(t, []uint64{3}, b.historyRevs("default", "k"))
	assert.Equal(t, []uint64{2}, b.historyRevs("default", "gone"), "the change in effect at the cut-off stays")
	assert.Equal(t, "1", b.value("default", "gone"))

	// Among many changes, one a minute, the cut-off lands on the first
	// change at or after now - KeepFor.
	b = open(t, h, Config{Now: clock.Now})
	minute0 := clock.Now()
	for i := 1; i <= 40; i++ {
		b.put("default", fmt.Sprintf("k%d", i%7), fmt.Sprint(i)) // revision i at minute i-1
		clock.Advance(time.Minute)
	}
	require.True(t, minute0.Add(40*time.Minute).Equal(clock.Now()))
	// Now is minute 40: keeping 15 minutes cuts at minute 25, revision 26.
	res, err = b.ApplyRetention(ctx, store.RetentionPolicy{KeepFor: 15 * time.Minute})
	require.NoError(t, err)
	assert.Equal(t, uint64(26), res.Revision)
	_, err = b.GetAt("default", "k5", 25)
	assertCompacted(t, err, "just below the cut-off")
	r, err = b.GetAt("default", "k5", 26)
	require.NoError(t, err)
	assert.Equal(t, "26", string(r.Value))
	r, err = b.GetAt("default", "k0", 26)
	require.NoError(t, err, "the change in effect at the cut-off is kept")
	assert.Equal(t, "21", string(r.Value))

	// The newest KeepRevisions revisions stay whole, by age as by count:
	// a quiet server with a short KeepFor (or a clock stepped forward)
	// keeps what watchers resume from and ?rev= reads.
	res, err = b.ApplyRetention(ctx, store.RetentionPolicy{KeepFor: time.Second, KeepRevisions: 10})
	require.NoError(t, err)
	assert.Equal(t, uint64(30), res.Revision, "revisions 31-40 are the newest 10, and 30 their base")
	_, err = b.GetAt("default", "k2", 30)
	require.NoError(t, err)
}

// History says where compaction cut it: the last page of a key whose
// oldest kept change lost its predecessor is Truncated (that change is an
// update, or a delete); a page that has a next one is not, nor is a key
// whose history starts with its create. A page below the oldest kept
// change is empty and says the same. The change in effect at the mark is
// listed below a bound above it, as GetAt at the mark reads it.
func checkHistoryTruncated(t testing.TB, h Harness) {
	b := open(t, h, Config{})
	early := b.put("default", "early", `1`).ModRev // never changed again
	k1 := b.put("default", "k", `1`).ModRev
	k2 := b.put("default", "k", `2`).ModRev
	y1 := b.put("default", "y", `1`).ModRev
	y2 := b.del("default", "y").ModRev
	mark := b.put("default", "filler", `1`).ModRev
	k3 := b.put("default", "k", `3`).ModRev
	y3 := b.put("default", "y", `2`).ModRev
	fresh := b.put("default", "fresh", `1`).ModRev

	type want struct {
		revs      []uint64
		next      uint64
		truncated bool
	}
	check := func(key string, opts ctxd.HistoryOptions, w want, what string) {
		t.Helper()
		p, err := b.History("default", key, opts)
		if !assert.NoError(t, err, what) {
			return
		}
		revs := []uint64{}
		for _, c := range p.Changes {
			revs = append(revs, c.Revision)
		}
		assert.Equal(t, w.revs, revs, what)
		assert.Equal(t, w.next, p.Next, what)
		assert.Equal(t, w.truncated, p.Truncated, what)
	}
	check("k", ctxd.HistoryOptions{}, want{revs: []uint64{k3, k2, k1}}, "whole history before compaction")
	check("y", ctxd.HistoryOptions{Before: y3}, want{revs: []uint64{y2, y1}}, "an earlier life before compaction")

	_, err := b.CompactKeep(t.Context(), mark, 1)
	require.NoError(t, err)

	check("k", ctxd.HistoryOptions{}, want{revs: []uint64{k3, k2}, truncated: true}, "k's create is gone")
	check("k", ctxd.HistoryOptions{Limit: 1}, want{revs: []uint64{k3}, next: k3}, "a page with a next one")
	check("k", ctxd.HistoryOptions{Before: k3}, want{revs: []uint64{k2}, truncated: true}, "the last page")
	check("k", ctxd.HistoryOptions{Before: k2}, want{revs: []uint64{}, truncated: true}, "below the oldest kept change")
	check("k", ctxd.HistoryOptions{Before: 1}, want{revs: []uint64{}, truncated: true}, "below revision 1")
	check("early", ctxd.HistoryOptions{}, want{revs: []uint64{early}}, "a key that starts with its create")
	check("early", ctxd.HistoryOptions{Before: early + 1}, want{revs: []uint64{early}}, "the change in effect at the mark, below a bound under the mark")
	check("early", ctxd.HistoryOptions{Before: early}, want{revs: []uint64{}}, "below a create")
	check("fresh", ctxd.HistoryOptions{Before: fresh}, want{revs: []uint64{}}, "below a create after the mark")
	// The delete in effect at the mark may go or stay (as in
	// checkCompaction): kept, it is the oldest change and its put is gone;
	// gone, the earlier life left no trace (HistoryPage.Truncated).
	if h.Compaction == CompactAtMark {
		check("y", ctxd.HistoryOptions{}, want{revs: []uint64{y3, y2}, truncated: true}, "the delete in effect at the mark is kept")
	} else {
		check("y", ctxd.HistoryOptions{}, want{revs: []uint64{y3}}, "the delete in effect at the mark went with the life it ended")
	}
}
