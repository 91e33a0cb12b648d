package realtime

import (
	"strconv"
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

// BenchmarkRingPush measures a push into a full ring (each evicts one
// change), remembering the evicted revisions for the lag count
// (keep=10001, the default max_lag's) or not (keep=0): the cost of the
// count on the loop's path, as a ratio within one run.
//
//	go test -run '^$' -bench 'Ring' ./realtime/
func BenchmarkRingPush(b *testing.B) {
	for _, keep := range []int{0, 10001} {
		b.Run("keep="+strconv.Itoa(keep), func(b *testing.B) {
			r := newRing(16384, 64<<20, keep)
			frame := make([]byte, 100)
			rev := uint64(0)
			for range 2 * 16384 {
				rev++
				r.push(entry{rev: rev, last: true, frame: frame})
			}
			b.ResetTimer()
			for range b.N {
				rev++
				r.push(entry{rev: rev, last: true, frame: frame})
			}
		})
	}
}

// BenchmarkRingCountAfter measures the lag count of one session at one
// pass: a position inside the ring (the common case) and one behind its
// start, among the evicted changes remembered.
func BenchmarkRingCountAfter(b *testing.B) {
	r := newRing(16384, 64<<20, 10001)
	frame := make([]byte, 100)
	for rev := uint64(1); rev <= 3*16384; rev++ {
		r.push(entry{rev: rev, last: true, frame: frame})
	}
	for _, c := range []struct {
		name string
		pos  uint64
	}{{"in-ring", r.top - 100}, {"behind-start", r.start() - 5000}} {
		b.Run(c.name, func(b *testing.B) {
			var n uint64
			for range b.N {
				n += r.countAfter(c.pos)
			}
			if n == 0 {
				b.Fatal("no lag counted")
			}
		})
	}
}
