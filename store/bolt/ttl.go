package bolt

import (
	"cmp"
	"container/heap"
	"context"
	"fmt"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	bbolt "go.etcd.io/bbolt"

	"github.com/framework0/ctxd"
	"github.com/framework0/ctxd/migrations"
)

// expireBatch bounds the keys one expiry request deletes: one write-ahead
// log record each, so a burst of deadlines is a few records, not one huge.
const expireBatch = 512

// deadlines is the in-memory index of the keys that expire: each key's
// current deadline and the revision it applies to, ordered by deadline (a
// heap), so the expirer's cost is the keys that are due, not all keys.
// The writer keeps it exact: it is rebuilt from bucket ttl at load and
// updated by every group it publishes; the expirer reads it.
type deadlines struct {
	mu    sync.Mutex
	byKey map[nsKeyName]*deadline
	order deadlineHeap
	// wake (one slot, never blocking) tells the expirer the earliest
	// deadline may have moved.
	wake chan struct{}
}

type deadline struct {
	name   nsKeyName
	at     time.Time
	modRev uint64
	index  int // in order
}

func newDeadlines() *deadlines {
	return &deadlines{byKey: make(map[nsKeyName]*deadline), wake: make(chan struct{}, 1)}
}

// reset empties the index. The caller holds d.mu.
func (d *deadlines) reset() {
	d.byKey = make(map[nsKeyName]*deadline)
	d.order = d.order[:0]
}

// set records that ns/key at modRev expires at at. The caller holds d.mu.
func (d *deadlines) set(name nsKeyName, at time.Time, modRev uint64) {
	if e, ok := d.byKey[name]; ok {
		e.at, e.modRev = at, modRev
		heap.Fix(&d.order, e.index)
		return
	}
	e := &deadline{name: name, at: at, modRev: modRev}
	d.byKey[name] = e
	heap.Push(&d.order, e)
}

// remove forgets a key's deadline. The caller holds d.mu.
func (d *deadlines) remove(name nsKeyName) {
	if e, ok := d.byKey[name]; ok {
		heap.Remove(&d.order, e.index)
		delete(d.byKey, name)
	}
}

// get returns a key's deadline if it has one at revision modRev.
func (d *deadlines) get(name nsKeyName, modRev uint64) time.Time {
	d.mu.Lock()
	defer d.mu.Unlock()
	if e, ok := d.byKey[name]; ok && e.modRev == modRev {
		return e.at
	}
	return time.Time{}
}

// names returns every key with a deadline.
func (d *deadlines) names() []nsKeyName {
	d.mu.Lock()
	defer d.mu.Unlock()
	out := make([]nsKeyName, 0, len(d.byKey))
	for name := range d.byKey {
		out = append(out, name)
	}
	return out
}

// next returns the earliest deadline, if any key expires.
func (d *deadlines) next() (time.Time, bool) {
	d.mu.Lock()
	defer d.mu.Unlock()
	if len(d.order) == 0 {
		return time.Time{}, false
	}
	return d.order[0].at, true
}

// due returns up to limit keys whose deadline is at or before now,
// earliest first, without removing them: the writer does when it
// publishes their expiry.
func (d *deadlines) due(now time.Time, limit int) []nsKeyName {
	d.mu.Lock()
	defer d.mu.Unlock()
	var out []nsKeyName
	// Walk the heap's array breadth-first from the root, pruning subtrees
	// whose root is not due (their children are later still).
	queue := []int{0}
	for len(queue) > 0 && len(out) < limit {
		i := queue[0]
		queue = queue[1:]
		if i >= len(d.order) || d.order[i].at.After(now) {
			continue
		}
		out = append(out, d.order[i].name)
		queue = append(queue, 2*i+1, 2*i+2)
	}
	return out
}

// publish updates the index with the changes and keepalives of a group
// made durable, and wakes the expirer if the earliest deadline moved.
//
// A group's keepalives come after its changes here, but not always in the
// group: a keepalive of a key that a later write of the group replaced
// or deleted (its modRev below that write's revision) is superseded, and
// setting it would put back the old deadline, on the old revision, in
// place of the write's. Lookups by the write's revision then found no
// deadline, and a patch made the key permanent (found by the conformance
// check KeepAlivesRacingWritesAnswerTheKeyAsItIs).
func (d *deadlines) publish(cs []*change, xs []*extend) {
	d.mu.Lock()
	before := time.Time{}
	if len(d.order) > 0 {
		before = d.order[0].at
	}
	var written map[nsKeyName]uint64 // the newest revision of each key the group changed
	if len(xs) > 0 {
		written = make(map[nsKeyName]uint64, len(cs))
	}
	for _, c := range cs {
		name := nsKeyName{c.Namespace, c.Key}
		if c.Op == ctxd.OpPut && !c.ExpiresAt.IsZero() {
			d.set(name, c.ExpiresAt, c.Revision)
		} else {
			d.remove(name)
		}
		if written != nil {
			written[name] = max(written[name], c.Revision)
		}
	}
	for _, x := range xs {
		name := nsKeyName{x.ns, x.key}
		if written[name] > x.modRev {
			continue // superseded by a later write of the group
		}
		d.set(name, x.expiresAt, x.modRev)
	}
	moved := len(d.order) > 0 && !d.order[0].at.Equal(before)
	d.mu.Unlock()
	if moved {
		d.poke()
	}
}

// poke wakes the expirer.
func (d *deadlines) poke() {
	select {
	case d.wake <- struct{}{}:
	default:
	}
}

// load rebuilds the index from bucket ttl, checking each entry against its
// key's kv record.
func (d *deadlines) load(tx *bbolt.Tx) error {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.reset()
	b := tx.Bucket(migrations.BucketTTL)
	if b == nil {
		return nil
	}
	return b.ForEach(func(k, _ []byte) error {
		at, ns, key, err := decodeTTLKey(k)
		if err != nil {
			return fmt.Errorf("ttl index entry %x: %w", k, err)
		}
		kvb := tx.Bucket(migrations.KVBucket(ns))
		var v []byte
		if kvb != nil {
			v = kvb.Get([]byte(key))
		}
		r, err := decodeKV(v)
		if v == nil || err != nil || !r.expiresAt.Equal(at) {
			return fmt.Errorf("ttl index entry %s/%s at %s: the key's record does not have that deadline: %w", ns, key, at, errCorrupt)
		}
		d.set(nsKeyName{ns, key}, at, r.modRev)
		return nil
	})
}

// deadlineHeap orders deadlines, earliest first (container/heap).
type deadlineHeap []*deadline

func (h deadlineHeap) Len() int           { return len(h) }
func (h deadlineHeap) Less(i, j int) bool { return h[i].at.Before(h[j].at) }
func (h deadlineHeap) Swap(i, j int) {
	h[i], h[j] = h[j], h[i]
	h[i].index, h[j].index = i, j
}
func (h *deadlineHeap) Push(x any) {
	e := x.(*deadline)
	e.index = len(*h)
	*h = append(*h, e)
}
func (h *deadlineHeap) Pop() any {
	old := *h
	e := old[len(old)-1]
	old[len(old)-1] = nil
	*h = old[:len(old)-1]
	return e
}

// expirer deletes keys whose deadline has passed: it sleeps until the
// earliest deadline (or a wake), then asks the writer to expire what is
// due. The writer checks each key again, so a put or keepalive that got
// there first wins. Keys already due at Open (the server was down past
// their deadline) expire as soon as it starts.
func (s *Store) expirer() {
	defer close(s.expirerDone)
	timer := time.NewTimer(time.Hour)
	defer timer.Stop()
	for {
		if at, ok := s.ttl.next(); ok {
			if wait := at.Sub(s.ttlClock.now()); wait > 0 {
				timer.Reset(wait)
			} else {
				n, err := s.expireDue()
				if err == nil && n > 0 {
					continue
				}
				// Nothing expired though a deadline is due (the writer
				// found it moved) or the store refuses writes: look again
				// in a while rather than spin.
				timer.Reset(time.Second)
			}
		}
		select {
		case <-timer.C:
		case <-s.ttl.wake:
			if !timer.Stop() {
				select {
				case <-timer.C:
				default:
				}
			}
		case <-s.stop:
			return
		}
	}
}

// expireDue submits one expiry request and returns how many keys it
// deleted.
func (s *Store) expireDue() (int, error) {
	res, err := s.submit(context.Background(), &request{expire: true, done: make(chan result, 1)})
	return len(res.Records), err
}

// expire is the group's part of an expiry request: a delete by
// ctxd.WhoTTL of each key whose deadline has passed, checked against the
// state so far.
func (g *group) expire() (made, error) {
	var writes []ctxd.Write
	for _, name := range g.store.ttl.due(g.ttlNow, expireBatch) {
		st, err := g.state(name.ns, name.key)
		if err != nil {
			return made{}, err
		}
		if !st.live || st.expiresAt.IsZero() || st.expiresAt.After(g.ttlNow) {
			continue
		}
		writes = append(writes, ctxd.Write{Namespace: name.ns, Key: name.key, Op: ctxd.OpDelete, Who: ctxd.WhoTTL})
	}
	if len(writes) == 0 {
		return made{}, nil
	}
	return g.applyWrites(writes, true)
}

// keepAlive is a keepalive request: move the deadline of ns/key.
type keepAlive struct {
	ns, key string
	ttl     time.Duration
	expect  *uint64
}

// KeepAlive moves the deadline of a live key that expires to ttl from
// now, without a new version: no revision, no history entry, no feed
// event. The move is durable (a write-ahead log record of its own) before
// the call returns. With expect non-nil the key must be at that version.
func (s *Store) KeepAlive(ctx context.Context, ns, key string, ttl time.Duration, expect *uint64) (ctxd.Record, error) {
	if err := s.checkKey(ns, key); err != nil {
		return ctxd.Record{}, err
	}
	if err := s.limits.ValidateTTL(ttl); err != nil {
		return ctxd.Record{}, err
	}
	res, err := s.submit(ctx, &request{keepAlive: &keepAlive{ns: ns, key: key, ttl: ttl, expect: expect}, done: make(chan result, 1)})
	if err != nil {
		return ctxd.Record{}, err
	}
	return res.Records[0], nil
}

// keepAlive is the group's part of a keepalive request: it checks the
// key (live, at the expected version, with a deadline) and moves its
// deadline.
func (g *group) keepAlive(ka *keepAlive) (made, error) {
	st, err := g.state(ka.ns, ka.key)
	if err != nil {
		return made{}, err
	}
	// The expected version first, as for a delete or a patch: a missing
	// (or expired) key is at version 0, a conflict for If-Match: 3.
	var have uint64
	if st.live {
		have = st.version
	}
	if ka.expect != nil && *ka.expect != have {
		return made{}, &ctxd.ConflictError{Namespace: ka.ns, Key: ka.key, Expected: *ka.expect, Current: have}
	}
	if !st.live {
		return made{}, fmt.Errorf("keepalive %s/%s: %w", ka.ns, ka.key, ctxd.ErrNotFound)
	}
	if st.expiresAt.IsZero() {
		return made{}, ctxd.Invalidf("keepalive %s/%s: the key does not expire (it was put without a ttl): put it with a ttl first", ka.ns, ka.key)
	}
	rec, err := g.record(ka.ns, ka.key, st)
	if err != nil {
		return made{}, err
	}
	x := &extend{ns: ka.ns, key: ka.key, modRev: st.modRev, expiresAt: g.ttlNow.Add(ka.ttl)}
	st.expiresAt = x.expiresAt
	g.noteDeadline(x.expiresAt)
	g.keys[nsKeyName{ka.ns, ka.key}] = st
	rec.ExpiresAt = x.expiresAt
	return made{
		res:     ctxd.TxnResult{Revision: g.rev, Records: []ctxd.Record{rec}},
		extends: []*extend{x},
		record:  encodeKeepAlive(g.store.id, []*extend{x}),
	}, nil
}

// record reads the key's state st as a record, with its value: from the
// group's own change, the overlay, or bbolt.
func (g *group) record(ns, key string, st keyState) (ctxd.Record, error) {
	name := nsKeyName{ns, key}
	if c, ok := g.changed[name]; ok && c.Revision == st.modRev {
		return c.record(), nil
	}
	for i := len(g.prev) - 1; i >= 0; i-- {
		if c, ok := g.prev[i].changed[name]; ok && c.Revision == st.modRev {
			return c.record(), nil
		}
	}
	if c, _ := g.store.ov.latest(ns, key); c != nil && c.Revision == st.modRev {
		return c.record(), nil
	}
	if err := g.begin(); err != nil {
		return ctxd.Record{}, err
	}
	b := g.tx.Bucket(migrations.KVBucket(ns))
	var v []byte
	if b != nil {
		v = b.Get([]byte(key))
	}
	if v == nil {
		return ctxd.Record{}, fmt.Errorf("read %s/%s: %w", ns, key, errCorrupt)
	}
	return currentRecord(g.tx.Bucket(migrations.BucketLog).Cursor(), ns, key, v, true)
}

// clockStep is how far the wall clock may move apart from the TTL clock
// before the writer takes it for a step (NTP slews smaller offsets away).
const clockStep = time.Second

// rebaseDeadlines is the group's first part when the wall clock stepped
// since the TTL clock's base: every expiring key's deadline moves by the
// step (a keepalive record of the store's own: no version, no event), so
// that each keeps the time it had left, and the TTL clock takes the wall
// clock as its new base. Deadlines are so stored as wall times, whatever
// the steps: a restart, an export or a restore measures them against the
// wall clock (they stayed on the clock of Open, and after a step forward
// a restart expired every key set since).
func (g *group) rebaseDeadlines() (made, error) {
	step := g.now.Sub(g.ttlNow)
	if step > -clockStep && step < clockStep {
		return made{}, nil
	}
	names := g.store.ttl.names()
	for _, p := range g.prev { // deadlines set by groups not published yet
		for name, st := range p.keys {
			if !st.expiresAt.IsZero() {
				names = append(names, name)
			}
		}
	}
	slices.SortFunc(names, func(a, b nsKeyName) int { return cmp.Or(cmp.Compare(a.ns, b.ns), cmp.Compare(a.key, b.key)) })
	names = slices.Compact(names)
	var xs []*extend
	states := make([]keyState, 0, len(names))
	for _, name := range names { // read all first: an error changes nothing
		st, err := g.state(name.ns, name.key)
		if err != nil {
			return made{}, err
		}
		if st.live && !st.expiresAt.IsZero() {
			xs = append(xs, &extend{ns: name.ns, key: name.key, modRev: st.modRev, expiresAt: st.expiresAt.Add(step)})
			states = append(states, st)
		}
	}
	for i, x := range xs {
		st := states[i]
		st.expiresAt = x.expiresAt
		g.noteDeadline(x.expiresAt)
		g.keys[nsKeyName{x.ns, x.key}] = st
	}
	g.store.ttlClock.rebase()
	g.ttlNow = g.store.ttlClock.now()
	g.now = g.ttlNow
	if g.store.onClockStep != nil {
		g.store.onClockStep(step, len(xs))
	}
	if len(xs) == 0 {
		return made{}, nil
	}
	return made{extends: xs, record: encodeKeepAlive(g.store.id, xs)}, nil
}

// steadyClock reads the wall clock as it stood at its base, moved on by
// what elapsed measures since, in UTC.
type steadyClock struct {
	wall    func() time.Time
	elapsed func() time.Duration
	base    atomic.Pointer[clockBase]
}

type clockBase struct {
	wall time.Time
	at   time.Duration
}

func newSteadyClock(wall func() time.Time, elapsed func() time.Duration) *steadyClock {
	c := &steadyClock{wall: wall, elapsed: elapsed}
	c.rebase()
	return c
}

func (c *steadyClock) now() time.Time {
	b := c.base.Load()
	return b.wall.Add(c.elapsed() - b.at).UTC()
}

// rebase makes the wall clock's reading now the clock's base.
func (c *steadyClock) rebase() {
	c.base.Store(&clockBase{wall: c.wall(), at: c.elapsed()})
}

// elapsedOn returns what now has moved since the call: time.Now's readings
// carry a monotonic reading, which their Sub measures on (a step of the
// wall clock does not move it); a test's fake clock's do not, and it then
// measures what the fake clock moved.
func elapsedOn(now func() time.Time) func() time.Duration {
	start := now()
	return func() time.Duration { return now().Sub(start) }
}
