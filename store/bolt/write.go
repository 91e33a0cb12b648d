package bolt

import (
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
	now   time.Time
	// keys is the state of each key this group changed, after its changes.
	keys map[nsKeyName]keyState
	// nsKeys holds the key counts this group changed.
	nsKeys map[string]uint64
	// tx is a bbolt read transaction, begun at the first key the overlay
	// does not have; txRev is the revision it is at.
	tx    *bbolt.Tx
	txRev uint64
}

type nsKeyName struct{ ns, key string }

// keyState is a key's state: its kv record when live, and its value when
// the group or the overlay has it (nil when it is in bbolt: valueOf).
type keyState struct {
	kvRecord
	live  bool
	value []byte
}

func (s *Store) newGroup() *group {
	return &group{store: s, rev: s.rev, now: s.now().UTC(), keys: make(map[nsKeyName]keyState), nsKeys: make(map[string]uint64)}
}

// close ends the group's read transaction.
func (g *group) close() {
	if g.tx != nil {
		_ = g.tx.Rollback()
		g.tx = nil
	}
}

func (g *group) keyCount(ns string) uint64 {
	if n, ok := g.nsKeys[ns]; ok {
		return n
	}
	return g.store.nsKeys[ns]
}

// state returns a key's current state.
func (g *group) state(ns, key string) (keyState, error) {
	if st, ok := g.keys[nsKeyName{ns, key}]; ok {
		return st, nil
	}
	ov := &g.store.ov
	ov.mu.RLock()
	cs := ov.keys[ns][key]
	base := ov.base
	ov.mu.RUnlock()
	if len(cs) > 0 {
		c := cs[len(cs)-1]
		if c.Op == ctxd.OpDelete {
			return keyState{}, nil
		}
		return keyState{kvRecord: kvRecord{version: c.Version, createRev: c.createRev, modRev: c.Revision}, live: true, value: c.Value}, nil
	}
	// Not in the overlay: its last change is in bbolt, up to base. A
	// transaction begun before the committer applied base may not have
	// it yet: begin another.
	if g.tx != nil && g.txRev < base {
		g.close()
	}
	if g.tx == nil {
		tx, err := g.store.db.Begin(false)
		if err != nil {
			return keyState{}, err
		}
		g.tx, g.txRev = tx, lastRevision(tx)
	}
	b := g.tx.Bucket(migrations.KVBucket(ns))
	if b == nil {
		return keyState{}, nil
	}
	v := b.Get([]byte(key))
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
		return nil, fmt.Errorf("value at revision %d: not in the group, the overlay or a read: %w", st.modRev, errCorrupt)
	}
	e, err := readLog(g.tx.Bucket(migrations.BucketLog), st.modRev)
	if err != nil {
		return nil, err
	}
	return e.Value, nil
}

// made is what a request made: its answer, its changes and the payload
// of its write-ahead log record.
type made struct {
	res     ctxd.TxnResult
	changes []*change
	record  []byte
}

// apply checks every write's expected version against the state so far,
// applies each patch to the value current now, and only if all hold,
// makes the changes. A patch becomes a put of its result: that is what
// the write-ahead log and the history record, so nothing replays a patch.
// A failed check or patch returns a request error and changes nothing.
func (g *group) apply(writes []ctxd.Write) (made, error) {
	current := make([]keyState, len(writes))
	size := 0
	patched := false
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
			if err := g.patch(w, st); err != nil {
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
		m.res.Records[i] = g.write(&writes[i], cur, &cs[i], rec)
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

// patch turns a patch of a key in state st into the put of its result.
func (g *group) patch(w *ctxd.Write, st keyState) error {
	if !st.live {
		return fmt.Errorf("patch %s/%s: %w", w.Namespace, w.Key, ctxd.ErrNotFound)
	}
	cur, err := g.valueOf(st)
	if err != nil {
		return err
	}
	v, err := patch.Apply(cur, w.Patch, g.store.limits)
	if err != nil {
		return fmt.Errorf("patch %s/%s: %w", w.Namespace, w.Key, err)
	}
	w.Op, w.Value, w.Patch = ctxd.OpPut, v, ctxd.Patch{}
	return nil
}

// changeSize bounds the bytes of a write's change in a record.
func changeSize(w *ctxd.Write) int {
	return len(w.Namespace) + len(w.Key) + len(w.Who) + len(w.Value) + 12*binary.MaxVarintLen64
}

// write makes one change whose preconditions hold, into c and rec.
func (g *group) write(w *ctxd.Write, cur *kvRecord, c *change, rec *walRecord) ctxd.Record {
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
		g.keys[name] = keyState{kvRecord: next, live: true, value: w.Value}
		if cur == nil {
			g.nsKeys[w.Namespace] = g.keyCount(w.Namespace) + 1
		}
	case ctxd.OpDelete:
		c.Version = cur.version
		next.version = cur.version
		g.keys[name] = keyState{}
		g.nsKeys[w.Namespace] = g.keyCount(w.Namespace) - 1
	}
	c.createRev = next.createRev
	rec.add(g.rev, encodeChange(&c.Change, next.createRev))
	return ctxd.Record{
		Namespace: w.Namespace, Key: w.Key, Value: c.Value, Version: c.Version,
		CreateRev: next.createRev, ModRev: g.rev, Who: w.Who, UpdatedAt: g.now,
	}
}

// applier applies changes to bbolt in one write transaction: the
// committer's batches, the replay at Open, and the direct commit of a
// request too large for the write-ahead log.
type applier struct {
	tx      *bbolt.Tx
	log     *bbolt.Bucket
	buckets map[string]nsBuckets
	counts  map[string]uint64
}

type nsBuckets struct{ kv, hist *bbolt.Bucket }

func newApplier(tx *bbolt.Tx) *applier {
	log := tx.Bucket(migrations.BucketLog)
	// The log only ever grows at its end: fill its pages completely.
	log.FillPercent = 1.0
	return &applier{tx: tx, log: log, buckets: make(map[string]nsBuckets), counts: make(map[string]uint64)}
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
	switch c.Op {
	case ctxd.OpPut:
		next := kvRecord{version: c.Version, createRev: c.createRev, modRev: c.Revision}
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

// applyChanges applies changes to bbolt in one transaction and records seq
// (when not 0) as the last write-ahead log record applied.
func applyChanges(db *bbolt.DB, cs []*change, seq uint64) error {
	return db.Update(func(tx *bbolt.Tx) error {
		a := newApplier(tx)
		for _, c := range cs {
			if err := a.apply(c); err != nil {
				return err
			}
		}
		return a.finish(seq)
	})
}
