package bolt

import (
	"bytes"
	"encoding/binary"
	"fmt"

	bbolt "go.etcd.io/bbolt"

	"github.com/framework0/ctxd"
	"github.com/framework0/ctxd/migrations"
	"github.com/framework0/ctxd/store"
)

// View is a consistent, read-only view of the whole store at one revision:
// everything read through it comes from one bbolt read transaction, which
// never blocks writers. The store first lets the committer apply every
// change acknowledged so far (a checkpoint), so the transaction holds
// them all. It is valid only inside the function given to
// Store.View; records it yields are copies and may be kept.
type View struct {
	tx  *bbolt.Tx
	log *bbolt.Bucket
	rev uint64
}

func newView(tx *bbolt.Tx) *View {
	return &View{tx: tx, log: tx.Bucket(migrations.BucketLog), rev: lastRevision(tx)}
}

// View calls fn with a consistent view of the store.
func (s *Store) View(fn func(v store.View) error) error {
	return s.readView(func(v *View) error { return fn(v) })
}

// readView is View with the concrete type, for the store's own readers
// (snapshots write the view's bbolt transaction). It checkpoints first.
func (s *Store) readView(fn func(v *View) error) error {
	if err := s.checkpoint(); err != nil {
		return err
	}
	return s.view(func(tx *bbolt.Tx) error {
		return fn(newView(tx))
	})
}

// Revision is the revision the view is consistent at.
func (v *View) Revision() uint64 { return v.rev }

// Namespaces lists the namespaces with their live key counts, by name
// (bbolt keeps buckets in byte order, and every kv bucket shares a prefix).
func (v *View) Namespaces() []ctxd.Namespace {
	var out []ctxd.Namespace
	counts := v.tx.Bucket(migrations.BucketNSKeys)
	_ = v.tx.ForEach(func(name []byte, _ *bbolt.Bucket) error {
		ns, ok := migrations.NamespaceOf(name)
		if !ok {
			return nil
		}
		n := ctxd.Namespace{Name: ns}
		if v := counts.Get([]byte(ns)); len(v) == 8 {
			n.Keys = binary.BigEndian.Uint64(v)
		}
		out = append(out, n)
		return nil
	})
	return out
}

// ForEach calls fn for every live key of ns whose name starts with prefix,
// in key order, streaming: memory does not grow with the number of keys.
func (v *View) ForEach(ns, prefix string, fn func(ctxd.Record) error) error {
	if err := ctxd.ValidateNamespace(ns); err != nil {
		return err
	}
	b := v.tx.Bucket(migrations.KVBucket(ns))
	if b == nil {
		return nil
	}
	c, logc := b.Cursor(), v.log.Cursor()
	p := []byte(prefix)
	for k, val := c.Seek(p); k != nil && bytes.HasPrefix(k, p); k, val = c.Next() {
		r, err := currentRecord(logc, ns, string(k), val, true)
		if err != nil {
			return err
		}
		if err := fn(r); err != nil {
			return err
		}
	}
	return nil
}

// ForEachChange calls fn for every retained change of ns (all namespaces
// when ns is ""), oldest first.
func (v *View) ForEachChange(ns string, fn func(ctxd.Change) error) error {
	c := v.log.Cursor()
	for k, val := c.First(); k != nil; k, val = c.Next() {
		e, err := decodeChange(binary.BigEndian.Uint64(k), val)
		if err != nil {
			return fmt.Errorf("log revision %d: %w", binary.BigEndian.Uint64(k), err)
		}
		if ns != "" && e.Namespace != ns {
			continue
		}
		if err := fn(e.Change); err != nil {
			return err
		}
	}
	return nil
}

// Change returns the change of ns/key recorded at revision rev, or
// ErrNotFound if history no longer holds it (or the revision's change is
// another key's).
func (v *View) Change(ns, key string, rev uint64) (ctxd.Change, error) {
	val := v.log.Get(encodeRevision(rev))
	if val == nil {
		return ctxd.Change{}, fmt.Errorf("%s/%s at revision %d: %w", ns, key, rev, ctxd.ErrNotFound)
	}
	e, err := decodeChange(rev, val)
	if err != nil {
		return ctxd.Change{}, fmt.Errorf("log revision %d: %w", rev, err)
	}
	if e.Namespace != ns || e.Key != key {
		return ctxd.Change{}, fmt.Errorf("%s/%s at revision %d: %w (the revision changed %s/%s)", ns, key, rev, ctxd.ErrNotFound, e.Namespace, e.Key)
	}
	return e.Change, nil
}
