package etcd

import (
	"context"
	"fmt"

	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/framework0/ctxd"
	"github.com/framework0/ctxd/store"
)

// viewPage is how many keys a view reads from etcd at a time.
const viewPage = 1000

// View calls fn with a view of the prefix at the instance's committed
// mark once it holds every write acknowledged before the call (through
// any instance: currentMark): every read through it is an etcd read at
// that revision, so it is
// consistent however long fn runs (unless etcd compacts past it, which
// ends the view's reads with a *ctxd.CompactedError).
func (s *Store) View(fn func(v store.View) error) error {
	if err := s.enter(); err != nil {
		return err
	}
	defer s.inflight.Done()
	ctx, cancel := context.WithTimeout(context.Background(), s.opts.RequestTimeout)
	mark, err := s.currentMark(ctx)
	cancel()
	if err != nil {
		return err
	}
	v := &view{s: s, rev: mark}
	// A full restore may switch the generation between the two loads:
	// the view is never below the switch of the generation it reads.
	v.rev = max(v.rev, uint64(s.keys.gen().rev))
	if v.rev > 0 {
		ctx, cancel := context.WithTimeout(context.Background(), s.opts.RequestTimeout)
		var err error
		v.namespaces, err = s.namespacesAt(ctx, v.rev)
		cancel()
		if err != nil {
			return readError(s.revisionError(ctx, err, v.rev))
		}
	} else {
		v.namespaces = []ctxd.Namespace{{Name: ctxd.DefaultNamespace}}
	}
	return fn(v)
}

type view struct {
	s          *Store
	rev        uint64
	namespaces []ctxd.Namespace
}

func (v *view) Revision() uint64             { return v.rev }
func (v *view) Namespaces() []ctxd.Namespace { return append([]ctxd.Namespace(nil), v.namespaces...) }

// ForEach reads the namespace's keys with the prefix at the view's
// revision, a page at a time.
func (v *view) ForEach(ns, prefix string, fn func(ctxd.Record) error) error {
	if v.rev == 0 {
		return nil
	}
	base := v.s.keys.nsLive(ns)
	end := prefixEnd(base + prefix)
	for from := base + prefix; ; {
		ctx, cancel := context.WithTimeout(context.Background(), v.s.opts.RequestTimeout)
		resp, err := v.s.cli.Get(ctx, from, clientv3.WithRange(end), clientv3.WithLimit(viewPage), clientv3.WithRev(int64(v.rev)))
		if err != nil {
			err = readError(v.s.revisionError(ctx, err, v.rev))
			cancel()
			return err
		}
		records := make([]ctxd.Record, 0, len(resp.Kvs))
		leased := make([]bool, 0, len(resp.Kvs))
		for _, kv := range resp.Kvs {
			r, err := record(ns, string(kv.Key[len(base):]), kv)
			if err != nil {
				cancel()
				return err
			}
			records, leased = append(records, r), append(leased, kv.Lease != 0)
		}
		// Deadlines as keepalives left them at the view's revision.
		err = v.s.deadlinesOf(ctx, ns, records, leased, v.rev)
		cancel()
		if err != nil {
			return readError(err)
		}
		for _, r := range records {
			if err := fn(r); err != nil {
				return err
			}
		}
		if !resp.More || len(resp.Kvs) == 0 {
			return nil
		}
		from = string(resp.Kvs[len(resp.Kvs)-1].Key) + "\x00"
	}
}

// ForEachChange replays etcd's retained history of the prefix up to the
// view's revision, oldest first.
func (v *view) ForEachChange(ns string, fn func(ctxd.Change) error) error {
	if v.rev == 0 {
		return nil
	}
	var ferr error
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	from := v.s.compacted.Load()
	if c, err := v.s.compactedRevisionNow(ctx); err == nil {
		from = c
	}
	err := v.s.eachRevision(ctx, max(from, 1)-1, v.rev, func(rc revisionChanges) bool {
		for _, c := range rc.changes {
			if ns != "" && c.Namespace != ns {
				continue
			}
			if ferr = fn(c); ferr != nil {
				return false
			}
		}
		return true
	})
	if ferr != nil {
		return ferr
	}
	return readError(err)
}

// Change returns the change of ns/key at revision rev, which other keys'
// changes may share (one transaction): one read of etcd's history from
// rev.
func (v *view) Change(ns, key string, rev uint64) (ctxd.Change, error) {
	if rev == 0 || rev > v.rev {
		return ctxd.Change{}, fmt.Errorf("%s/%s at revision %d: %w", ns, key, rev, ctxd.ErrNotFound)
	}
	ctx, cancel := context.WithTimeout(context.Background(), v.s.opts.RequestTimeout)
	defer cancel()
	var found *ctxd.Change
	err := v.s.eachRevision(ctx, rev-1, v.rev, func(rc revisionChanges) bool {
		if rc.rev != rev {
			return false
		}
		// A transaction's changes share its revision: the key's own.
		for i, c := range rc.changes {
			if c.Namespace == ns && c.Key == key {
				found = &rc.changes[i]
				break
			}
		}
		return false
	})
	if err != nil && !errorsIsCompacted(err) {
		return ctxd.Change{}, readError(err)
	}
	if found == nil {
		return ctxd.Change{}, fmt.Errorf("%s/%s at revision %d: %w", ns, key, rev, ctxd.ErrNotFound)
	}
	return *found, nil
}
