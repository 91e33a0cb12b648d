package bolt

import (
	"encoding/binary"
	"fmt"
	"time"

	bbolt "go.etcd.io/bbolt"

	"github.com/framework0/ctxd"
	"github.com/framework0/ctxd/migrations"
)

// group applies the requests of one commit inside one bbolt transaction.
type group struct {
	store *Store
	tx    *bbolt.Tx
	log   *bbolt.Bucket
	rev   uint64
	now   time.Time
	// nsKeys holds the key counts this group changed, written once at finish.
	nsKeys  map[string]uint64
	buckets map[string]nsBuckets
}

type nsBuckets struct{ kv, hist *bbolt.Bucket }

func (g *group) begin(tx *bbolt.Tx) {
	g.tx = tx
	g.log = tx.Bucket(migrations.BucketLog)
	// The log only ever grows at its end: fill its pages completely.
	g.log.FillPercent = 1.0
	g.nsKeys = make(map[string]uint64)
	g.buckets = make(map[string]nsBuckets)
}

func (g *group) namespace(ns string, create bool) (nsBuckets, error) {
	if b, ok := g.buckets[ns]; ok {
		return b, nil
	}
	b := nsBuckets{kv: g.tx.Bucket(migrations.KVBucket(ns)), hist: g.tx.Bucket(migrations.HistBucket(ns))}
	if b.kv == nil || b.hist == nil {
		if !create {
			return nsBuckets{}, nil
		}
		var err error
		if b.kv, err = g.tx.CreateBucketIfNotExists(migrations.KVBucket(ns)); err != nil {
			return nsBuckets{}, fmt.Errorf("create namespace %s: %w", ns, err)
		}
		if b.hist, err = g.tx.CreateBucketIfNotExists(migrations.HistBucket(ns)); err != nil {
			return nsBuckets{}, fmt.Errorf("create namespace %s: %w", ns, err)
		}
	}
	g.buckets[ns] = b
	return b, nil
}

func (g *group) keyCount(ns string) uint64 {
	if n, ok := g.nsKeys[ns]; ok {
		return n
	}
	return g.store.nsKeys[ns]
}

// apply checks every write's expected version against the state so far in
// this transaction, and only if all hold, writes them. A failed check
// returns a request error and writes nothing.
func (g *group) apply(writes []ctxd.Write) (ctxd.TxnResult, error) {
	// One slice for the whole request: a pointer per found key would put
	// each decoded record on the heap.
	type found struct {
		rec kvRecord
		ok  bool
	}
	current := make([]found, len(writes))
	for i := range writes {
		w := &writes[i]
		b, err := g.namespace(w.Namespace, false)
		if err != nil {
			return ctxd.TxnResult{}, err
		}
		if b.kv != nil {
			if v := b.kv.Get([]byte(w.Key)); v != nil {
				r, err := decodeKV(v)
				if err != nil {
					return ctxd.TxnResult{}, fmt.Errorf("read %s/%s: %w", w.Namespace, w.Key, err)
				}
				current[i] = found{rec: r, ok: true}
			}
		}
		var have uint64
		if current[i].ok {
			have = current[i].rec.version
		}
		if w.Expect != nil && *w.Expect != have {
			return ctxd.TxnResult{}, &ctxd.ConflictError{Namespace: w.Namespace, Key: w.Key, Expected: *w.Expect, Current: have}
		}
		if w.Op == ctxd.OpDelete && !current[i].ok {
			return ctxd.TxnResult{}, fmt.Errorf("delete %s/%s: %w", w.Namespace, w.Key, ctxd.ErrNotFound)
		}
	}
	res := ctxd.TxnResult{Records: make([]ctxd.Record, len(writes))}
	for i := range writes {
		var cur *kvRecord
		if current[i].ok {
			cur = &current[i].rec
		}
		rec, err := g.write(&writes[i], cur)
		if err != nil {
			return ctxd.TxnResult{}, err
		}
		res.Records[i] = rec
	}
	res.Revision = g.rev
	return res, nil
}

// write records one change whose preconditions hold.
func (g *group) write(w *ctxd.Write, cur *kvRecord) (ctxd.Record, error) {
	b, err := g.namespace(w.Namespace, true)
	if err != nil {
		return ctxd.Record{}, err
	}
	g.rev++
	c := ctxd.Change{Revision: g.rev, Namespace: w.Namespace, Key: w.Key, Op: w.Op, Who: w.Who, Time: g.now}
	next := kvRecord{version: 1, createRev: g.rev, modRev: g.rev}
	if cur != nil {
		c.PrevRev = cur.modRev
		next.version = cur.version + 1
		next.createRev = cur.createRev
	}
	key := []byte(w.Key)
	switch w.Op {
	case ctxd.OpPut:
		c.Value = w.Value
		c.Version = next.version
		if err := b.kv.Put(key, next.encode()); err != nil {
			return ctxd.Record{}, fmt.Errorf("put %s/%s: %w", w.Namespace, w.Key, err)
		}
		if cur == nil {
			g.nsKeys[w.Namespace] = g.keyCount(w.Namespace) + 1
		}
	case ctxd.OpDelete:
		c.Version = cur.version
		next.version = cur.version
		if err := b.kv.Delete(key); err != nil {
			return ctxd.Record{}, fmt.Errorf("delete %s/%s: %w", w.Namespace, w.Key, err)
		}
		g.nsKeys[w.Namespace] = g.keyCount(w.Namespace) - 1
	}
	if err := g.log.Put(encodeRevision(g.rev), encodeChange(&c, next.createRev)); err != nil {
		return ctxd.Record{}, fmt.Errorf("log revision %d: %w", g.rev, err)
	}
	if err := b.hist.Put(histKey(w.Key, g.rev), nil); err != nil {
		return ctxd.Record{}, fmt.Errorf("index history of %s/%s: %w", w.Namespace, w.Key, err)
	}
	return ctxd.Record{
		Namespace: w.Namespace, Key: w.Key, Value: c.Value, Version: c.Version,
		CreateRev: next.createRev, ModRev: g.rev, Who: w.Who, UpdatedAt: g.now,
	}, nil
}

// finish writes the changed key counts.
func (g *group) finish() error {
	if len(g.nsKeys) == 0 {
		return nil
	}
	b := g.tx.Bucket(migrations.BucketNSKeys)
	for ns, n := range g.nsKeys {
		var v [8]byte
		binary.BigEndian.PutUint64(v[:], n)
		if err := b.Put([]byte(ns), v[:]); err != nil {
			return fmt.Errorf("count keys of %s: %w", ns, err)
		}
	}
	return nil
}
