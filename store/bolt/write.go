package bolt

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"slices"
	"time"

	bbolt "go.etcd.io/bbolt"

	"github.com/framework0/ctxd"
	"github.com/framework0/ctxd/migrations"
	"github.com/framework0/ctxd/patch"
)

// group checks and makes the changes of the requests of one round of the
// writer, in memory: against the state so far (bbolt, then the overlay,
// then the group's own earlier requests), so that every check sees every
// earlier acknowledged write. Nothing is written here: the writer makes
// the changes durable in the write-ahead log (or, for a request too large
// for it, in bbolt directly).
type group struct {
	store *Store
	rev   uint64
	// now is the time the group's changes record; ttlNow the store's
	// ttlClock then, which deadlines are set and compared on.
	now, ttlNow time.Time
	// keys is the state of each key this group changed, after its changes,
	// and changed the last change it made to each.
	keys    map[nsKeyName]keyState
	changed map[nsKeyName]*change
	// nsKeys holds the key counts this group changed.
	nsKeys map[string]uint64
	// tx is a bbolt read transaction, begun at the first key the overlay
	// does not have; txRev is a revision it holds everything up to (the
	// overlay's base when it began).
	tx    *bbolt.Tx
	txRev uint64
	// kv is a cursor on each namespace's kv bucket in tx, reused for
	// every key the group looks up there (get).
	kv map[string]*bbolt.Cursor
	// first is the revision before the group's changes; bytes the size
	// of its log records.
	first uint64
	bytes int64
	// id numbers the writer's groups, from 1; prev are the groups written
	// before this one and not yet published (durable or not), oldest
	// first: the state before this group is theirs, then the overlay's,
	// then bbolt's. prev is dropped once the group is prepared, so that
	// no group keeps older ones alive.
	id   uint64
	prev []*group
	// earliest is the earliest deadline the group's changes and
	// keepalives set (zero: none), until the deadline index has them.
	earliest time.Time
}

// noteDeadline records a deadline the group set (earliest).
func (g *group) noteDeadline(at time.Time) {
	if g.earliest.IsZero() || at.Before(g.earliest) {
		g.earliest = at
	}
}

// anyDue reports whether a deadline may have passed at g.ttlNow: the
// deadline index's earliest (published ones; it may be stale, never
// late), or one set by this group or an unpublished one before it. Nearly
// always none is, and expireTouched need not look up the request's keys.
func (g *group) anyDue() bool {
	if at, ok := g.store.ttl.next(); ok && !at.After(g.ttlNow) {
		return true
	}
	for _, p := range append(g.prev[:len(g.prev):len(g.prev)], g) {
		if !p.earliest.IsZero() && !p.earliest.After(g.ttlNow) {
			return true
		}
	}
	return false
}

type nsKeyName struct{ ns, key string }

// keyState is a key's state: its kv record when live (with its current
// deadline), and its value when the group or the overlay has it (nil
// when it is in bbolt: valueOf).
type keyState struct {
	kvRecord
	live  bool
	value []byte
}

// newGroup starts the writer's next group. The groups the syncer has
// published since the last one leave s.inflight: their state is in the
// overlay now.
func (s *Store) newGroup() *group {
	s.prune()
	s.groups++
	now, ttlNow := s.now().UTC(), s.ttlClock.now()
	if d := now.Sub(ttlNow); d > -clockStep && d < clockStep {
		// The clocks agree (the wall clock has not stepped since the
		// TTL clock's base): one reading, so that a key's expires_at is
		// its updated_at plus its ttl exactly.
		now = ttlNow
	}
	return &group{store: s, id: s.groups, prev: s.inflight, first: s.rev, rev: s.rev, now: now, ttlNow: ttlNow, keys: make(map[nsKeyName]keyState), changed: make(map[nsKeyName]*change), nsKeys: make(map[string]uint64)}
}

// prune drops from s.inflight the groups the syncer has answered.
func (s *Store) prune() {
	landed := s.landed.Load()
	n := 0
	for n < len(s.inflight) && s.inflight[n].id <= landed {
		n++
	}
	if n > 0 {
		s.inflight = s.inflight[:copy(s.inflight, s.inflight[n:])]
		clear(s.inflight[len(s.inflight):cap(s.inflight)])
	}
}

// close ends the group's read transaction, and its view of the groups
// before it: it is prepared.
func (g *group) close() {
	g.endTx()
	g.prev = nil
}

// endTx ends the group's read transaction, if it has one.
func (g *group) endTx() {
	if g.tx != nil {
		_ = g.tx.Rollback()
		g.tx = nil
	}
	clear(g.kv)
}

// get returns the value of key in the bucket of cursor c, or nil, as
// bbolt's Bucket.Get does, but with a cursor the caller reuses:
// Bucket.Get allocates a cursor and grows its page stack at every call,
// and the writer and the committer each look up the key of every change
// (BenchmarkPutParallel64: 7 fewer allocations per put, DESIGN.md). Only
// for buckets without nested buckets (Seek gives their values as nil).
func get(c *bbolt.Cursor, key []byte) []byte {
	k, v := c.Seek(key)
	if !bytes.Equal(k, key) {
		return nil
	}
	return v
}

func (g *group) keyCount(ns string) uint64 {
	if n, ok := g.nsKeys[ns]; ok {
		return n
	}
	for i := len(g.prev) - 1; i >= 0; i-- {
		if n, ok := g.prev[i].nsKeys[ns]; ok {
			return n
		}
	}
	// The syncer publishes counts (holding the overlay's lock).
	g.store.ov.mu.RLock()
	defer g.store.ov.mu.RUnlock()
	return g.store.nsKeys[ns]
}

// unpublished returns the state a group written before g and not yet
// published gave the key, the newest.
func (g *group) unpublished(name nsKeyName) (keyState, bool) {
	for i := len(g.prev) - 1; i >= 0; i-- {
		if st, ok := g.prev[i].keys[name]; ok {
			return st, true
		}
	}
	return keyState{}, false
}

// state returns a key's current state. Its deadline comes from the
// deadline index, which the writer keeps exact for every published change
// and keepalive (the group's own are in g.keys).
func (g *group) state(ns, key string) (keyState, error) {
	name := nsKeyName{ns, key}
	if st, ok := g.keys[name]; ok {
		return st, nil
	}
	if st, ok := g.unpublished(name); ok {
		return st, nil
	}
	st, err := g.published(ns, key)
	if err == nil && st.live {
		st.expiresAt = g.store.ttl.get(name, st.modRev)
	}
	return st, err
}

// published returns a key's state before this group, without its deadline.
func (g *group) published(ns, key string) (keyState, error) {
	ov := &g.store.ov
	ov.mu.RLock()
	cs := ov.keys[ns][key]
	ov.mu.RUnlock()
	if len(cs) > 0 {
		c := cs[len(cs)-1]
		if c.Op == ctxd.OpDelete {
			return keyState{}, nil
		}
		return keyState{kvRecord: kvRecord{version: c.Version, createRev: c.createRev, modRev: c.Revision}, live: true, value: c.Value}, nil
	}
	if err := g.begin(); err != nil {
		return keyState{}, err
	}
	c, ok := g.kv[ns]
	if !ok {
		if b := g.tx.Bucket(migrations.KVBucket(ns)); b != nil {
			c = b.Cursor()
		}
		if g.kv == nil {
			g.kv = make(map[string]*bbolt.Cursor)
		}
		g.kv[ns] = c // nil: no such bucket in tx
	}
	if c == nil {
		return keyState{}, nil
	}
	v := get(c, []byte(key))
	if v == nil {
		return keyState{}, nil
	}
	r, err := decodeKV(v)
	if err != nil {
		return keyState{}, fmt.Errorf("read %s/%s: %w", ns, key, err)
	}
	return keyState{kvRecord: r, live: true}, nil
}

// valueOf returns the value of a live key whose state state just returned:
// its own when it came from the group or the overlay, otherwise the log
// entry at its mod revision in the read transaction state used (copied:
// bbolt's memory is valid only inside the transaction).
func (g *group) valueOf(st keyState) ([]byte, error) {
	if st.value != nil {
		return st.value, nil
	}
	if g.tx == nil {
		// The state came through an earlier group, unpublished, that
		// read it from bbolt (a keepalive keeps the value there, at its
		// mod revision): this group has read nothing of bbolt yet.
		if err := g.begin(); err != nil {
			return nil, err
		}
	}
	e, err := readLog(g.tx.Bucket(migrations.BucketLog), st.modRev)
	if err != nil {
		return nil, err
	}
	return e.Value, nil
}

// begin makes g.tx a read transaction that holds every change the
// overlay no longer has: what is not in the overlay is in bbolt, up to
// its base, and a transaction begun before the committer applied base
// may not have it yet: begin another. Only the transaction ends then:
// the group's view of the groups before it (g.prev) must stay, they are
// still unpublished.
func (g *group) begin() error {
	ov := &g.store.ov
	ov.mu.RLock()
	base := ov.base
	ov.mu.RUnlock()
	if g.tx != nil && g.txRev < base {
		g.endTx()
	}
	if g.tx == nil {
		// The committer moves the base only once its commit is visible
		// to new transactions: one begun now holds at least base. That
		// bound is all the check above needs, and cheaper than reading
		// the log's last key (a walk down the largest bucket) per group.
		tx, err := g.store.db.Begin(false)
		if err != nil {
			return err
		}
		g.tx, g.txRev = tx, base
	}
	return nil
}

// made is what a request made: its answer, its changes (or keepalives)
// and the payload of its write-ahead log record (nil: nothing to log).
type made struct {
	res     ctxd.TxnResult
	changes []*change
	extends []*extend
	record  []byte
}

// apply makes what request r asks: writes, a keepalive or an expiry.
func (g *group) apply(r *request) (made, error) {
	switch {
	case r.keepAlive != nil:
		return g.keepAlive(r.keepAlive)
	case r.expire:
		return g.expire()
	}
	return g.applyWrites(r.writes, false)
}

// expireTouched deletes, as expiries (who ctxd:ttl, each its own
// revision), the keys r touches whose deadline has passed but that the
// expirer has not deleted yet: r then meets them gone (a patch, a delete
// or a keepalive is 404, an expected version sees 0, a put makes version
// 1), and the feed and history show the expiry before r's change. The
// expirer runs apart from writes, so without this a write in that window
// met the old key: a patch kept it, with no deadline at all (a key that
// never expired). made is empty when r touches no such key.
func (g *group) expireTouched(r *request) (made, error) {
	if !g.anyDue() {
		return made{}, nil // no lookup on the write path but in the rare window
	}
	var due []ctxd.Write
	check := func(ns, key string) error {
		st, err := g.state(ns, key)
		if err != nil || !st.live || st.expiresAt.IsZero() || st.expiresAt.After(g.ttlNow) {
			return err
		}
		if !slices.ContainsFunc(due, func(w ctxd.Write) bool { return w.Namespace == ns && w.Key == key }) {
			due = append(due, ctxd.Write{Namespace: ns, Key: key, Op: ctxd.OpDelete, Who: ctxd.WhoTTL})
		}
		return nil
	}
	switch {
	case r.expire || r.exclusive != nil:
	case r.keepAlive != nil:
		if err := check(r.keepAlive.ns, r.keepAlive.key); err != nil {
			return made{}, err
		}
	default:
		for i := range r.writes {
			if err := check(r.writes[i].Namespace, r.writes[i].Key); err != nil {
				return made{}, err
			}
		}
	}
	if len(due) == 0 {
		return made{}, nil
	}
	return g.applyWrites(due, true)
}

// applyWrites checks every write's expected version against the state so
// far, applies each patch to the value current now, and only if all hold,
// makes the changes (deletes marked as expiries when expired is set). A
// patch becomes a put of its result: that is what the write-ahead log and
// the history record, so nothing replays a patch. The request's patches
// share one patch.Budget: their work together is what one patch may do,
// however many the transaction holds. A failed check or patch returns a
// request error and changes nothing.
func (g *group) applyWrites(writes []ctxd.Write, expired bool) (made, error) {
	current := make([]keyState, len(writes))
	size := 0
	patched := false
	var budget patch.Budget
	for i := range writes {
		if writes[i].Op == ctxd.OpPatch && !patched {
			// The caller's writes stay as they were.
			writes = slices.Clone(writes)
			patched = true
		}
		w := &writes[i]
		st, err := g.state(w.Namespace, w.Key)
		if err != nil {
			return made{}, err
		}
		current[i] = st
		var have uint64
		if st.live {
			have = st.version
		}
		if w.Expect != nil && *w.Expect != have {
			return made{}, &ctxd.ConflictError{Namespace: w.Namespace, Key: w.Key, Expected: *w.Expect, Current: have}
		}
		if w.Op == ctxd.OpDelete && !st.live {
			return made{}, fmt.Errorf("delete %s/%s: %w", w.Namespace, w.Key, ctxd.ErrNotFound)
		}
		if w.Op == ctxd.OpPatch {
			if err := g.patch(w, st, &budget); err != nil {
				return made{}, err
			}
		}
		size += changeSize(w)
	}
	rec := newWALRecord(g.store.id, len(writes), size)
	m := made{res: ctxd.TxnResult{Records: make([]ctxd.Record, len(writes))}, changes: make([]*change, len(writes))}
	cs := make([]change, len(writes)) // one allocation for the request's changes
	for i := range writes {
		var cur *kvRecord
		if current[i].live {
			cur = &current[i].kvRecord
		}
		m.res.Records[i] = g.write(&writes[i], cur, &cs[i], rec, expired)
		m.changes[i] = &cs[i]
	}
	for i, off := range rec.offsets {
		cs[i].raw = rec.buf[off[0]:off[1]:off[1]]
		if cs[i].Value != nil {
			cs[i].Value = cs[i].raw[len(cs[i].raw)-len(cs[i].Value):]
		}
	}
	m.record = rec.buf
	m.res.Revision = g.rev
	return m, nil
}

// patch turns a patch of a key in state st into the put of its result,
// within what budget, its request's, has left.
func (g *group) patch(w *ctxd.Write, st keyState, budget *patch.Budget) error {
	if !st.live {
		return fmt.Errorf("patch %s/%s: %w", w.Namespace, w.Key, ctxd.ErrNotFound)
	}
	cur, err := g.valueOf(st)
	if err != nil {
		return err
	}
	v, err := budget.Apply(cur, w.Patch, g.store.limits)
	if err != nil {
		return fmt.Errorf("patch %s/%s: %w", w.Namespace, w.Key, err)
	}
	w.Op, w.Value, w.Patch = ctxd.OpPut, v, ctxd.Patch{}
	// A patch changes part of the value, not the key's life: an expiring
	// key keeps its deadline (a put without a TTL would make it permanent).
	if !st.expiresAt.IsZero() {
		if left := st.expiresAt.Sub(g.ttlNow); left > 0 {
			w.TTL = left
		}
	}
	return nil
}

// changeSize bounds the bytes of a write's change in a record.
func changeSize(w *ctxd.Write) int {
	return len(w.Namespace) + len(w.Key) + len(w.Who) + len(w.Value) + 12*binary.MaxVarintLen64
}

// write makes one change whose preconditions hold, into c and rec.
func (g *group) write(w *ctxd.Write, cur *kvRecord, c *change, rec *walRecord, expired bool) ctxd.Record {
	g.rev++
	c.Change = ctxd.Change{Revision: g.rev, Namespace: w.Namespace, Key: w.Key, Op: w.Op, Who: w.Who, Time: g.now}
	next := kvRecord{version: 1, createRev: g.rev, modRev: g.rev}
	if cur != nil {
		c.PrevRev = cur.modRev
		next.version = cur.version + 1
		next.createRev = cur.createRev
	}
	name := nsKeyName{w.Namespace, w.Key}
	switch w.Op {
	case ctxd.OpPut:
		c.Value = w.Value
		c.Version = next.version
		if w.TTL > 0 {
			c.ExpiresAt = g.ttlNow.Add(w.TTL)
			g.noteDeadline(c.ExpiresAt)
			next.expiresAt = c.ExpiresAt
		}
		g.keys[name] = keyState{kvRecord: next, live: true, value: w.Value}
		if cur == nil {
			g.nsKeys[w.Namespace] = g.keyCount(w.Namespace) + 1
		}
	case ctxd.OpDelete:
		c.Version = cur.version
		c.Expired = expired
		next.version = cur.version
		g.keys[name] = keyState{}
		g.nsKeys[w.Namespace] = g.keyCount(w.Namespace) - 1
	}
	c.createRev = next.createRev
	g.changed[name] = c
	rec.add(g.rev, encodeChange(&c.Change, next.createRev))
	return ctxd.Record{
		Namespace: w.Namespace, Key: w.Key, Value: c.Value, Version: c.Version,
		CreateRev: next.createRev, ModRev: g.rev, Who: w.Who, UpdatedAt: g.now,
		ExpiresAt: c.ExpiresAt,
	}
}

// applier applies changes to bbolt in one write transaction: the
// committer's batches, the replay at Open, and the direct commit of a
// request too large for the write-ahead log.
type applier struct {
	tx      *bbolt.Tx
	log     *bbolt.Bucket
	ttl     *bbolt.Bucket
	buckets map[string]nsBuckets
	counts  map[string]uint64
}

// nsBuckets are a namespace's buckets in the applier's transaction, and a
// cursor on kv for its lookups (get).
type nsBuckets struct {
	kv, hist *bbolt.Bucket
	kvc      *bbolt.Cursor
}

func newApplier(tx *bbolt.Tx) *applier {
	log := tx.Bucket(migrations.BucketLog)
	// The log only ever grows at its end: fill its pages completely.
	log.FillPercent = 1.0
	return &applier{tx: tx, log: log, ttl: tx.Bucket(migrations.BucketTTL), buckets: make(map[string]nsBuckets), counts: make(map[string]uint64)}
}

func (a *applier) namespace(ns string) (nsBuckets, error) {
	if b, ok := a.buckets[ns]; ok {
		return b, nil
	}
	b := nsBuckets{kv: a.tx.Bucket(migrations.KVBucket(ns)), hist: a.tx.Bucket(migrations.HistBucket(ns))}
	if b.kv == nil || b.hist == nil {
		var err error
		if b.kv, err = a.tx.CreateBucketIfNotExists(migrations.KVBucket(ns)); err != nil {
			return nsBuckets{}, fmt.Errorf("create namespace %s: %w", ns, err)
		}
		if b.hist, err = a.tx.CreateBucketIfNotExists(migrations.HistBucket(ns)); err != nil {
			return nsBuckets{}, fmt.Errorf("create namespace %s: %w", ns, err)
		}
	}
	b.kvc = b.kv.Cursor()
	a.buckets[ns] = b
	if v := a.tx.Bucket(migrations.BucketNSKeys).Get([]byte(ns)); len(v) == 8 {
		a.counts[ns] = binary.BigEndian.Uint64(v)
	} else {
		a.counts[ns] = 0
	}
	return b, nil
}

// apply writes one change: its log entry (raw, as is), its history index
// entry and the key's kv record.
func (a *applier) apply(c *change) error {
	b, err := a.namespace(c.Namespace)
	if err != nil {
		return err
	}
	rev := encodeRevision(c.Revision)
	if err := a.log.Put(rev, c.raw); err != nil {
		return fmt.Errorf("log revision %d: %w", c.Revision, err)
	}
	if err := b.hist.Put(histKey(c.Key, c.Revision), nil); err != nil {
		return fmt.Errorf("index history of %s/%s: %w", c.Namespace, c.Key, err)
	}
	key := []byte(c.Key)
	// The deadline the key had leaves the index; a put's new one enters.
	if err := a.unindex(b.kvc, c.Namespace, c.Key); err != nil {
		return err
	}
	switch c.Op {
	case ctxd.OpPut:
		next := kvRecord{version: c.Version, createRev: c.createRev, modRev: c.Revision, expiresAt: c.ExpiresAt}
		if !c.ExpiresAt.IsZero() {
			if err := a.ttl.Put(ttlKey(c.ExpiresAt, c.Namespace, c.Key), nil); err != nil {
				return fmt.Errorf("index deadline of %s/%s: %w", c.Namespace, c.Key, err)
			}
		}
		if err := b.kv.Put(key, next.encode()); err != nil {
			return fmt.Errorf("put %s/%s: %w", c.Namespace, c.Key, err)
		}
		if c.creates() {
			a.counts[c.Namespace]++
		}
	case ctxd.OpDelete:
		if err := b.kv.Delete(key); err != nil {
			return fmt.Errorf("delete %s/%s: %w", c.Namespace, c.Key, err)
		}
		a.counts[c.Namespace]--
	}
	return nil
}

// unindex removes the deadline index entry of ns/key, if its kv record
// (read with kv, a cursor on the namespace's kv bucket) has a deadline.
func (a *applier) unindex(kv *bbolt.Cursor, ns, key string) error {
	v := get(kv, []byte(key))
	if v == nil {
		return nil
	}
	old, err := decodeKV(v)
	if err != nil {
		return fmt.Errorf("read %s/%s: %w", ns, key, err)
	}
	if old.expiresAt.IsZero() {
		return nil
	}
	if err := a.ttl.Delete(ttlKey(old.expiresAt, ns, key)); err != nil {
		return fmt.Errorf("unindex deadline of %s/%s: %w", ns, key, err)
	}
	return nil
}

// extend applies a keepalive: the key's kv record and the deadline index
// get the new deadline, if the key is still at the revision it extended
// (a later change replaced it otherwise, and set its own).
func (a *applier) extend(x *extend) error {
	kv := a.tx.Bucket(migrations.KVBucket(x.ns))
	if kv == nil {
		return nil
	}
	v := kv.Get([]byte(x.key))
	if v == nil {
		return nil
	}
	r, err := decodeKV(v)
	if err != nil {
		return fmt.Errorf("read %s/%s: %w", x.ns, x.key, err)
	}
	if r.modRev != x.modRev {
		return nil
	}
	if err := a.unindex(kv.Cursor(), x.ns, x.key); err != nil {
		return err
	}
	r.expiresAt = x.expiresAt
	if err := a.ttl.Put(ttlKey(x.expiresAt, x.ns, x.key), nil); err != nil {
		return fmt.Errorf("index deadline of %s/%s: %w", x.ns, x.key, err)
	}
	if err := kv.Put([]byte(x.key), r.encode()); err != nil {
		return fmt.Errorf("keepalive %s/%s: %w", x.ns, x.key, err)
	}
	return nil
}

// finish writes the changed key counts and, when seq is not 0, the last
// write-ahead log record applied.
func (a *applier) finish(seq uint64) error {
	b := a.tx.Bucket(migrations.BucketNSKeys)
	for ns, n := range a.counts {
		var v [8]byte
		binary.BigEndian.PutUint64(v[:], n)
		if err := b.Put([]byte(ns), v[:]); err != nil {
			return fmt.Errorf("count keys of %s: %w", ns, err)
		}
	}
	if seq != 0 {
		if err := a.tx.Bucket(migrations.BucketMeta).Put(migrations.KeyWALSeq, encodeRevision(seq)); err != nil {
			return fmt.Errorf("record write-ahead log position: %w", err)
		}
	}
	return nil
}

// applyChanges applies a batch of records to bbolt in one transaction and
// records b.seq (when not 0) as the last write-ahead log record applied.
// The changes go first, then the keepalives: a keepalive applies only to
// the revision it extended, so the order between the two does not change
// the outcome.
func applyChanges(db *bbolt.DB, b batch) error {
	return db.Update(func(tx *bbolt.Tx) error {
		a := newApplier(tx)
		for _, c := range b.changes {
			if err := a.apply(c); err != nil {
				return err
			}
		}
		for _, x := range b.extends {
			if err := a.extend(x); err != nil {
				return err
			}
		}
		return a.finish(b.seq)
	})
}
