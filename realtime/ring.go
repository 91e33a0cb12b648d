package realtime

import (
	"sort"

	"github.com/framework0/ctxd"
)

// entry is one change as the hub fans it out: what a filter looks at, and
// the context_updated frame, encoded once and shared by every session.
//
// Several changes may share a revision (on etcd, every change of one
// transaction has the transaction's revision): idx is the change's place
// among them, and last tells the last one, so that a session's cursor
// (session.pos, session.part) can stand inside a revision.
type entry struct {
	rev   uint64
	idx   int
	last  bool
	ns    string
	key   string
	frame []byte
}

// newEntries encodes changes read from the log. A read never ends inside
// a revision (store.Feed.ReadLog), so the last change of the slice is the
// last of its revision.
func newEntries(changes []ctxd.Change) []entry {
	out := make([]entry, len(changes))
	for first := 0; first < len(changes); {
		end := ctxd.RevisionEnd(changes, first)
		for i := first; i < end; i++ {
			c := &changes[i]
			out[i] = entry{rev: c.Revision, idx: i - first, last: i == end-1, ns: c.Namespace, key: c.Key,
				frame: appendChange(nil, c, i-first, end-first)}
		}
		first = end
	}
	return out
}

// ring holds the most recent changes in revision order: every change with
// a revision in (lo, top]. Revisions may skip numbers (etcd: other
// prefixes of the cluster) and repeat (a transaction's changes), so the
// ring is searched, not indexed by revision. It is owned by the hub's loop
// goroutine.
//
// It also remembers the revisions of the last changes it evicted, so that
// it can count the changes a session is behind (countAfter) when the
// session is older than its start: the distance in revisions cannot, on
// an etcd whose other prefixes move the revision too.
type ring struct {
	buf      []entry // circular; len(buf) is the capacity in changes
	head     int     // index of the oldest entry
	n        int
	lo, top  uint64
	bytes    int
	maxBytes int

	// evicted holds the revisions of the evicted changes (every one after
	// counted), at most keepEvicted of them: it grows by append until
	// full, then is circular, the oldest at evictedHead.
	evicted     []uint64
	evictedHead int
	keepEvicted int
	counted     uint64
}

// maxKeepEvicted bounds the evicted revisions a ring remembers (8 MiB),
// whatever MaxLag asks.
const maxKeepEvicted = 1 << 20

// newRing makes a ring of size changes and maxBytes of frames that counts
// exactly up to keepEvicted changes older than its start.
func newRing(size, maxBytes, keepEvicted int) *ring {
	return &ring{buf: make([]entry, size), maxBytes: maxBytes, keepEvicted: min(keepEvicted, maxKeepEvicted)}
}

// start is the oldest position the ring can serve: it holds every change
// after it.
func (r *ring) start() uint64 { return r.lo }

// reset empties the ring, which then starts at rev.
func (r *ring) reset(rev uint64) {
	clear(r.buf)
	r.head, r.n, r.lo, r.top, r.bytes = 0, 0, rev, rev, 0
	r.evicted, r.evictedHead, r.counted = nil, 0, rev
}

// advance records that the ring holds every change up to rev (there were
// none after top up to it).
func (r *ring) advance(rev uint64) { r.top = max(r.top, rev) }

// push appends the next change (its revision must be >= top), evicting the
// oldest entries past the size or byte bound. Evicting a change moves the
// start to its revision: a revision partly evicted is served from the log.
func (r *ring) push(e entry) {
	for r.n > 0 && (r.n == len(r.buf) || r.bytes+len(e.frame) > r.maxBytes) {
		old := &r.buf[r.head]
		r.lo = max(r.lo, old.rev)
		r.remember(old.rev)
		r.bytes -= len(old.frame)
		*old = entry{}
		r.head = (r.head + 1) % len(r.buf)
		r.n--
	}
	r.buf[(r.head+r.n)%len(r.buf)] = e
	r.n++
	r.top = max(r.top, e.rev)
	r.bytes += len(e.frame)
}

// at returns the i-th oldest entry.
func (r *ring) at(i int) *entry { return &r.buf[(r.head+i)%len(r.buf)] }

// next returns change number part of the first revision after pos, or nil
// when the ring has none; pos must be >= start().
func (r *ring) next(pos uint64, part int) *entry {
	i := sort.Search(r.n, func(i int) bool { return r.at(i).rev > pos }) + part
	if i >= r.n {
		return nil
	}
	return r.at(i)
}

// remember records the revision of an evicted change, forgetting the
// oldest past keepEvicted.
func (r *ring) remember(rev uint64) {
	switch {
	case r.keepEvicted <= 0:
		r.counted = rev
	case len(r.evicted) < r.keepEvicted:
		r.evicted = append(r.evicted, rev)
	default:
		r.counted = r.evicted[r.evictedHead]
		r.evicted[r.evictedHead] = rev
		r.evictedHead = (r.evictedHead + 1) % len(r.evicted)
	}
}

// countAfter is how many changes with a revision after pos the ring has
// read: those it holds and those it remembers evicting, counted one by
// one. Only for a position older than all it remembers (more than
// keepEvicted changes back, or before a reset) does the distance in
// revisions stand in for the rest: exact on bolt, whose revisions have one
// change each; on etcd more than the changes, for a position that is more
// than keepEvicted changes behind already.
func (r *ring) countAfter(pos uint64) uint64 {
	n := r.n - sort.Search(r.n, func(i int) bool { return r.at(i).rev > pos })
	if pos >= r.lo {
		return uint64(n) // every evicted change is at or before lo
	}
	ne := len(r.evicted)
	n += ne - sort.Search(ne, func(i int) bool { return r.evicted[(r.evictedHead+i)%ne] > pos })
	if pos < r.counted {
		return uint64(n) + r.counted - pos
	}
	return uint64(n)
}
