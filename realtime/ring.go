package realtime

import "github.com/framework0/ctxd"

// entry is one change as the hub fans it out: what a filter looks at, and
// the context_updated frame, encoded once and shared by every session.
type entry struct {
	rev   uint64
	ns    string
	key   string
	frame []byte
}

func newEntry(c *ctxd.Change) entry {
	return entry{rev: c.Revision, ns: c.Namespace, key: c.Key, frame: appendChange(nil, c)}
}

// ring holds the most recent changes, contiguous in revision: it covers the
// positions start()..top, i.e. it holds every change after start() up to
// top. It is owned by the hub's loop goroutine.
type ring struct {
	buf      []entry // circular; len(buf) is the capacity in changes
	head     int     // index of the oldest entry
	n        int
	top      uint64 // revision of the newest change read
	bytes    int
	maxBytes int
}

func newRing(size, maxBytes int) *ring {
	return &ring{buf: make([]entry, size), maxBytes: maxBytes}
}

// start is the oldest position the ring can serve: it holds every change
// after it.
func (r *ring) start() uint64 { return r.top - uint64(r.n) }

// reset empties the ring, which then starts at rev.
func (r *ring) reset(rev uint64) {
	clear(r.buf)
	r.head, r.n, r.top, r.bytes = 0, 0, rev, 0
}

// push appends the next change (its revision must be top+1), evicting the
// oldest entries past the size or byte bound.
func (r *ring) push(e entry) {
	for r.n > 0 && (r.n == len(r.buf) || r.bytes+len(e.frame) > r.maxBytes) {
		r.bytes -= len(r.buf[r.head].frame)
		r.buf[r.head] = entry{}
		r.head = (r.head + 1) % len(r.buf)
		r.n--
	}
	r.buf[(r.head+r.n)%len(r.buf)] = e
	r.n++
	r.top = e.rev
	r.bytes += len(e.frame)
}

// after returns the entry with revision pos+1; pos must be in
// [start(), top).
func (r *ring) after(pos uint64) *entry {
	i := int(pos - r.start())
	return &r.buf[(r.head+i)%len(r.buf)]
}
