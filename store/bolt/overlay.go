package bolt

import (
	"slices"
	"strings"
	"sync"
	"sync/atomic"

	"github.com/google/btree"

	"github.com/framework0/ctxd"
)

// overlay holds the changes that are acknowledged (durable in the
// write-ahead log) and not yet applied to bbolt: every read consults it.
//
// The writer adds changes at the top, the committer removes them from the
// bottom once a bbolt commit that holds them has returned (durable and
// visible to new read transactions), so a change is always in one or the
// other, and for a moment in both. A reader takes what it needs from the
// overlay first, under the read lock, and begins its bbolt read
// transaction after: that transaction holds every change up to the base
// the reader saw (see read.go for how each read combines the two).
type overlay struct {
	mu sync.RWMutex
	// base: bbolt holds every change up to base; the overlay holds the
	// changes base+1 to top, in revision order. top is the last revision
	// published (the committed mark).
	base, top uint64
	changes   []*change
	// keys: each key's changes here, oldest first, by namespace; sorted:
	// the same keys in key order, by namespace, so that a list page takes
	// the overlay's keys from where it starts instead of sorting them all
	// (the committer's interval lets thousands wait, see committer.go).
	keys   map[string]map[string][]*change
	sorted map[string]*btree.BTreeG[string]
	// ns: the live key count of each namespace after its last change
	// here, and that change's revision.
	ns map[string]nsCount
	// extends are the keepalives not yet applied, in record order, and
	// ext the last of each key, by namespace. They have no revision: the
	// committer applies them with the changes of the records around them.
	extends []*extend
	ext     map[string]map[string]*extend
	bytes   int64
	// drained is closed (and replaced) each time changes are removed or
	// the base moves: checkpoints and the writer's backpressure wait on it.
	drained chan struct{}
	// size is len(changes)+len(extends), read without the lock by the
	// fast paths: 0 means bbolt had everything when it was read.
	// sizeBytes is bytes, read without the lock by the storage quota's
	// check.
	size      atomic.Int64
	sizeBytes atomic.Int64
}

type nsCount struct {
	keys, rev uint64
}

func (o *overlay) init(base uint64) {
	o.base, o.top = base, base
	o.changes = nil
	o.keys = make(map[string]map[string][]*change)
	o.sorted = make(map[string]*btree.BTreeG[string])
	o.ns = make(map[string]nsCount)
	o.extends = nil
	o.ext = make(map[string]map[string]*extend)
	o.bytes = 0
	o.size.Store(0)
	o.sizeBytes.Store(0)
	if o.drained == nil {
		o.drained = make(chan struct{})
	}
}

// add appends the changes of requests the writer has made durable; counts
// are the live key counts of the namespaces after them.
// The caller holds o.mu.
func (o *overlay) add(cs []*change, counts map[string]uint64) {
	for _, c := range cs {
		o.changes = append(o.changes, c)
		byKey := o.keys[c.Namespace]
		if byKey == nil {
			byKey = make(map[string][]*change)
			o.keys[c.Namespace] = byKey
			o.sorted[c.Namespace] = btree.NewG(32, btree.Less[string]())
		}
		if len(byKey[c.Key]) == 0 {
			o.sorted[c.Namespace].ReplaceOrInsert(c.Key)
		}
		byKey[c.Key] = append(byKey[c.Key], c)
		o.ns[c.Namespace] = nsCount{keys: counts[c.Namespace], rev: c.Revision}
		o.bytes += int64(len(c.raw))
		o.top = c.Revision
	}
	o.size.Store(int64(len(o.changes) + len(o.extends)))
	o.sizeBytes.Store(o.bytes)
}

// addExtends appends the keepalives the writer has made durable.
// The caller holds o.mu.
func (o *overlay) addExtends(xs []*extend) {
	for _, x := range xs {
		o.extends = append(o.extends, x)
		byKey := o.ext[x.ns]
		if byKey == nil {
			byKey = make(map[string]*extend)
			o.ext[x.ns] = byKey
		}
		byKey[x.key] = x
	}
	o.size.Store(int64(len(o.changes) + len(o.extends)))
}

// drop removes the changes up to rev and the keepalives up to record seq,
// which bbolt now holds, and raises the base to rev.
func (o *overlay) drop(rev, seq uint64) {
	o.mu.Lock()
	defer o.mu.Unlock()
	x := 0
	for x < len(o.extends) && o.extends[x].seq <= seq {
		e := o.extends[x]
		if o.ext[e.ns][e.key] == e {
			delete(o.ext[e.ns], e.key)
			if len(o.ext[e.ns]) == 0 {
				delete(o.ext, e.ns)
			}
		}
		x++
	}
	o.extends = dropFront(o.extends, x)
	n := 0
	for n < len(o.changes) && o.changes[n].Revision <= rev {
		c := o.changes[n]
		byKey := o.keys[c.Namespace]
		if cs := byKey[c.Key]; len(cs) <= 1 {
			delete(byKey, c.Key)
			if len(byKey) == 0 {
				delete(o.keys, c.Namespace)
				delete(o.sorted, c.Namespace)
			} else {
				o.sorted[c.Namespace].Delete(c.Key)
			}
		} else {
			byKey[c.Key] = dropFront(cs, 1)
		}
		if o.ns[c.Namespace].rev <= rev {
			delete(o.ns, c.Namespace)
		}
		o.bytes -= int64(len(c.raw))
		n++
	}
	o.changes = dropFront(o.changes, n)
	o.base = max(o.base, rev)
	o.top = max(o.top, o.base)
	o.size.Store(int64(len(o.changes) + len(o.extends)))
	o.sizeBytes.Store(o.bytes)
	close(o.drained)
	o.drained = make(chan struct{})
}

// dropFront removes the first n elements of s without copying the rest:
// drop runs under the write lock, which every read and the syncer's
// publish wait for, so it does no work there that is proportional to what
// remains (it used to clone the remaining changes after each committer
// batch). The dropped elements are cleared so that the backing array does
// not keep them alive; the next append that outgrows it copies only what
// remains. No reader shares the array: they get copies (keyChanges, after,
// pending).
func dropFront[T any](s []*T, n int) []*T {
	clear(s[:n])
	if n == len(s) {
		return s[:0]
	}
	return s[n:]
}

// reset empties the overlay at base rev: after a change of bbolt that did
// not go through it (a direct commit, a restore, a reload), when it holds
// nothing. The caller holds o.mu.
func (o *overlay) reset(rev uint64) {
	if o.drained != nil {
		close(o.drained)
		o.drained = nil
	}
	o.init(rev)
}

// state is what a waiter needs: the base, the top and the channel closed
// at the next drop.
func (o *overlay) state() (base, top uint64, pending int, bytes int64, drained <-chan struct{}) {
	o.mu.RLock()
	defer o.mu.RUnlock()
	return o.base, o.top, len(o.changes), o.bytes, o.drained
}

// latest returns a key's last change in the overlay, if it has one, and
// its last keepalive there (nil if none).
func (o *overlay) latest(ns, key string) (*change, *extend) {
	o.mu.RLock()
	defer o.mu.RUnlock()
	x := o.ext[ns][key]
	cs := o.keys[ns][key]
	if len(cs) == 0 {
		return nil, x
	}
	return cs[len(cs)-1], x
}

// extendsOf returns a copy of the last keepalive of each key of ns.
func (o *overlay) extendsOf(ns string) map[string]*extend {
	o.mu.RLock()
	defer o.mu.RUnlock()
	if len(o.ext[ns]) == 0 {
		return nil
	}
	out := make(map[string]*extend, len(o.ext[ns]))
	for k, x := range o.ext[ns] {
		out[k] = x
	}
	return out
}

// lastExtendSeq is the record of the newest keepalive not yet applied (0:
// none).
func (o *overlay) lastExtendSeq() uint64 {
	o.mu.RLock()
	defer o.mu.RUnlock()
	if len(o.extends) == 0 {
		return 0
	}
	return o.extends[len(o.extends)-1].seq
}

// extendsUpTo reports whether a keepalive of record seq or older is still
// to be applied.
func (o *overlay) extendsUpTo(seq uint64) bool {
	o.mu.RLock()
	defer o.mu.RUnlock()
	return len(o.extends) > 0 && o.extends[0].seq <= seq
}

// keyChanges returns a copy of a key's changes in the overlay, oldest
// first, with the base and top they were read at.
func (o *overlay) keyChanges(ns, key string) (cs []*change, base, top uint64) {
	o.mu.RLock()
	defer o.mu.RUnlock()
	return slices.Clone(o.keys[ns][key]), o.base, o.top
}

// after returns up to limit changes with a revision above after (in
// order), with the base and top they were read at.
func (o *overlay) after(after uint64, limit int) (cs []*change, base, top uint64) {
	o.mu.RLock()
	defer o.mu.RUnlock()
	i, _ := slices.BinarySearchFunc(o.changes, after+1, func(c *change, rev uint64) int {
		switch {
		case c.Revision < rev:
			return -1
		case c.Revision > rev:
			return 1
		}
		return 0
	})
	end := min(len(o.changes), i+limit)
	return slices.Clone(o.changes[i:end]), o.base, o.top
}

// batch is what the committer applies in one transaction: the oldest
// records' changes and keepalives, seq the last record among them.
type batch struct {
	changes []*change
	extends []*extend
	seq     uint64
}

// pending returns the oldest records, for the committer: about limit
// changes and keepalives, in record order, and always whole write-ahead
// log records (the committer records the last record it applied, so it
// must apply all of its changes).
func (o *overlay) pending(limit int) batch {
	o.mu.RLock()
	defer o.mu.RUnlock()
	var b batch
	n, x := 0, 0
	for n+x < limit && (n < len(o.changes) || x < len(o.extends)) {
		if x == len(o.extends) || n < len(o.changes) && o.changes[n].seq < o.extends[x].seq {
			b.seq = o.changes[n].seq
			n++
			for n < len(o.changes) && o.changes[n].seq == b.seq {
				n++
			}
			continue
		}
		b.seq = o.extends[x].seq
		for x < len(o.extends) && o.extends[x].seq == b.seq {
			x++
		}
	}
	b.changes = slices.Clone(o.changes[:n])
	b.extends = slices.Clone(o.extends[:x])
	return b
}

// namespaces returns a copy of the namespace counts, with the top they
// are at.
func (o *overlay) namespaces() (map[string]nsCount, uint64) {
	o.mu.RLock()
	defer o.mu.RUnlock()
	out := make(map[string]nsCount, len(o.ns))
	for ns, c := range o.ns {
		out[ns] = c
	}
	return out, o.top
}

// keysFrom returns the last change of each key of ns in the overlay that
// starts with prefix and sorts after after, in key order, with the top
// they are at. With limit above 0 it stops after limit+1 changes that are
// not deletes: a list page of limit records cannot reach past the last of
// them, and the one beyond the limit tells it that a next page exists
// (List); the deletes before it are all there, since they hide bbolt's keys.
func (o *overlay) keysFrom(ns, prefix, after string, limit int) ([]*change, uint64) {
	o.mu.RLock()
	defer o.mu.RUnlock()
	var out []*change
	live := 0
	if t := o.sorted[ns]; t != nil {
		byKey := o.keys[ns]
		t.AscendGreaterOrEqual(max(prefix, after), func(key string) bool {
			if !strings.HasPrefix(key, prefix) {
				return false
			}
			if key == after {
				return true
			}
			cs := byKey[key]
			c := cs[len(cs)-1]
			out = append(out, c)
			if c.Op != ctxd.OpDelete {
				live++
			}
			return limit <= 0 || live <= limit
		})
	}
	return out, o.top
}
