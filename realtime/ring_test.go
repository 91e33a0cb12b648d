package realtime

import (
	"testing"

	"github.com/stretchr/testify/assert"
)

// pushRevs pushes one change at each revision of revs into r.
func pushRevs(r *ring, revs ...uint64) {
	for _, rev := range revs {
		r.push(entry{rev: rev, last: true, frame: []byte("{}")})
	}
}

// On bolt every revision has one change: countAfter is the distance to
// the top for every position, in the ring, evicted, or older than what
// the ring remembers (the rule before the ring remembered evictions, so
// a bolt hub closes "lagged" exactly as it did).
func TestRingCountsDenseRevisionsAsDistance(t *testing.T) {
	for _, keep := range []int{1, 7, 1000} {
		r := newRing(4, 1<<20, keep)
		r.reset(10)
		for rev := uint64(11); rev <= 60; rev++ {
			pushRevs(r, rev)
		}
		for pos := uint64(0); pos <= 70; pos++ {
			assert.Equal(t, uint64(60-min(pos, 60)), r.countAfter(pos), "keep %d, pos %d", keep, pos)
		}
	}
}

// On etcd revisions skip the numbers of other prefixes and repeat for a
// transaction's changes: countAfter counts the changes one by one, in the
// ring and evicted, never the revisions between them, as long as it
// remembers the evictions.
func TestRingCountsSparseRevisionsByChange(t *testing.T) {
	r := newRing(2, 1<<20, 100)
	r.reset(5)
	// Changes at 100, 200 (a transaction of 3), 300, ..., 900.
	pushRevs(r, 100, 200, 200, 200)
	for rev := uint64(300); rev <= 900; rev += 100 {
		pushRevs(r, rev)
	}
	assert.Equal(t, uint64(900), r.top)
	assert.Equal(t, uint64(700), r.start(), "the ring holds the 2 changes after 700")
	for _, c := range []struct{ pos, want uint64 }{
		{5, 11}, {0, 11 + 5}, // before the reset: the distance stands in {99, 11}, {100, 10}, {150, 10}, {200, 7},
		{799, 2}, {800, 1}, {899, 1}, {900, 0}, {1000, 0},
	} {
		assert.Equal(t, c.want, r.countAfter(c.pos), "pos %d", c.pos)
	}
	// Past what it remembers, the distance stands in for the rest.
	r = newRing(2, 1<<20, 3)
	r.reset(5)
	pushRevs(r, 100, 200, 300, 400, 500, 600, 700)
	assert.Equal(t, uint64(200), r.counted, "evicted 100..500, forgot 100 and 200")
	assert.Equal(t, uint64(5), r.countAfter(200))
	assert.Equal(t, uint64(5+200-5), r.countAfter(5))
}
