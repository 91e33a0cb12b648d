package etcd

import (
	"context"
	"errors"
	"fmt"
	"sort"

	"go.etcd.io/etcd/api/v3/mvccpb"
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
	if err := s.unreachable(); err != nil {
		return err // at once, as reads: currentMarkSeen would wait out the timeout
	}
	ctx, cancel := context.WithTimeout(context.Background(), s.opts.RequestTimeout)
	mark, seen, err := s.currentMarkSeen(ctx)
	cancel()
	if err != nil {
		return err
	}
	// A full restore may switch the generation between the two loads:
	// the view is never below the switch of the generation it reads, and
	// reads that generation's keys to its end, whatever switch comes
	// while fn runs (the keys of a newer one do not exist at rev: the
	// view's reads found nothing, and a dump or snapshot was partial).
	g := s.keys.gen()
	rev := max(mark, uint64(g.rev))
	v, err := s.openView(rev, max(seen, rev), g.keys)
	var compacted *ctxd.CompactedError
	if errors.As(err, &compacted) && compacted.Compacted > rev && compacted.Compacted <= seen {
		// etcd's compaction passed the prefix's last change (a prefix
		// idle while others wrote and were compacted): nothing of the
		// prefix changed up to seen, so its state is the same at the
		// compaction mark, where it can still be read. Without this, it
		// could not be exported or dumped until it was written again.
		if v, err = s.openView(compacted.Compacted, seen, g.keys); err == nil {
			v.historyTo = rev // no change of the prefix after it
		}
	}
	if err != nil {
		return err
	}
	return fn(v)
}

// ViewAt calls fn with a view of the prefix at revision rev, at most the
// current one: etcd reads at rev, paged, as View's at its mark. A
// revision below etcd's compaction or a full restore's switch answers a
// *ctxd.CompactedError, one above the current revision
// ctxd.ErrFutureRevision (CheckRevision's errors).
func (s *Store) ViewAt(rev uint64, fn func(v store.View) error) error {
	if err := s.enter(); err != nil {
		return err
	}
	defer s.inflight.Done()
	if rev == 0 {
		return ctxd.Invalidf("there is no revision 0")
	}
	if err := s.readableAt(rev); err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(context.Background(), s.opts.RequestTimeout)
	mark, err := s.currentMark(ctx)
	cancel()
	if err != nil {
		return err
	}
	if rev > mark {
		return ctxd.FutureRevision(rev, mark)
	}
	// The generation once the watch has reached etcd's revision: a
	// switch at or below rev is delivered by then (loaded before, it was
	// the replaced generation's keys at rev). rev must not be below its
	// switch.
	g := s.keys.gen()
	if err := restoredErrorIn(g, rev); err != nil {
		return err
	}
	v, err := s.openView(rev, rev, g.keys)
	if err != nil {
		return err
	}
	return fn(v)
}

// openView opens the view at rev, whose keys' deadlines are read at
// deadlinesAt (at least rev): a keepalive is no change, and moves a
// deadline after the revision of the last change. It reads the
// namespaces at rev: a revision compacted away is a *ctxd.CompactedError
// with etcd's mark.
func (s *Store) openView(rev, deadlinesAt uint64, k dataKeys) (*view, error) {
	v := &view{s: s, rev: rev, historyTo: rev, deadlinesAt: deadlinesAt, keys: k}
	if v.rev == 0 {
		v.namespaces = []ctxd.Namespace{{Name: ctxd.DefaultNamespace}}
		return v, nil
	}
	ctx, cancel := context.WithTimeout(context.Background(), s.opts.RequestTimeout)
	defer cancel()
	var err error
	if v.namespaces, err = s.namespacesAt(ctx, k, v.rev); err != nil {
		return nil, readError(s.revisionError(ctx, err, v.rev)) // which reads the compaction mark
	}
	return v, nil
}

type view struct {
	s   *Store
	rev uint64
	// historyTo is the revision of the prefix's last change at rev (rev,
	// unless View read at the compaction mark, above it): a replay of
	// the history ends there, as a watch stops only at a change.
	historyTo   uint64
	deadlinesAt uint64
	keys        dataKeys // of the generation at rev
	namespaces  []ctxd.Namespace
}

func (v *view) Revision() uint64             { return v.rev }
func (v *view) Namespaces() []ctxd.Namespace { return append([]ctxd.Namespace(nil), v.namespaces...) }

// ForEach reads the namespace's keys with the prefix at the view's
// revision, a page at a time.
func (v *view) ForEach(ns, prefix string, fn func(ctxd.Record) error) error {
	if v.rev == 0 {
		return nil
	}
	base := v.keys.nsLive(ns)
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
		// Deadlines as keepalives left them: for a view of the current
		// state, now (its keys' states are those at v.rev).
		err = v.s.deadlinesOf(ctx, v.keys, ns, records, leased, v.deadlinesAt)
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
	if from > v.rev {
		// A compaction passed the view's revision since it was taken:
		// its history is gone (it read as none at all).
		return &ctxd.CompactedError{Requested: v.rev, Compacted: from}
	}
	if from > 1 {
		if err := v.keptAtMark(ctx, ns, from, fn); err != nil {
			return err
		}
	}
	err := v.s.eachRevision(ctx, max(from, 1)-1, v.historyTo, func(rc revisionChanges) bool {
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

// keptAtMark calls fn with the change that made each key of ns (""
// every namespace) what it is at the compaction mark, oldest first, for
// the keys live at the mark whose change is below it. Compaction keeps
// their outcome (a read at the mark answers it) but not in the history a
// watch replays; bolt's compaction keeps such a change in the key's
// history (the newest of each key live at its mark), and so a dump's
// history and /ctx/history list them on both backends (they listed
// nothing after etcd's default retention had run). The changes are held
// in memory to be sorted: the values of the keys unchanged since the mark.
func (v *view) keptAtMark(ctx context.Context, ns string, mark uint64, fn func(ctxd.Change) error) error {
	k := v.keys
	base := k.prefix + liveDir
	if ns != "" {
		base = k.nsLive(ns)
	}
	var kept []ctxd.Change
	_, err := v.s.eachPage(ctx, base, prefixEnd(base), int64(mark), viewPage, func(resp *clientv3.GetResponse) error {
		for _, kv := range resp.Kvs {
			if uint64(kv.ModRevision) >= mark {
				continue // in the history from the mark on
			}
			_, kns, key, ok := k.parse(kv.Key)
			if !ok {
				continue
			}
			env, err := decodeEnvelope(kv.Value)
			if err != nil {
				return fmt.Errorf("%s/%s at revision %d: %w", kns, key, mark, err)
			}
			kept = append(kept, ctxd.Change{Revision: uint64(kv.ModRevision), Namespace: kns, Key: key, Op: ctxd.OpPut,
				Value: env.value, Version: uint64(kv.Version), Who: env.who, Time: env.time, ExpiresAt: env.expiresAt})
		}
		return nil
	})
	if err != nil {
		return readError(v.s.revisionError(ctx, err, mark))
	}
	sort.SliceStable(kept, func(i, j int) bool { return kept[i].Revision < kept[j].Revision })
	for _, c := range kept {
		if err := fn(c); err != nil {
			return err
		}
	}
	return nil
}

// Change returns the change of ns/key at revision rev, which other keys'
// changes may share (one transaction).
//
// A put is read with two range reads at rev and rev-1 (putAt): that is
// what the callers ask for (they walk a key's puts: a record's mod
// revision, a change's previous revision), a dump's history one change
// at a time. Anything else (a delete, an expiry) is read from etcd's
// history with a watch from rev, which etcd serves from its unsynced
// watchers every 100 ms. BenchmarkDump (200 changes of 20 keys): the
// history dump took 18.3 s with a watch per change, 0.11 s with putAt;
// the dump at a past revision 12.1 s and 0.10 s.
func (v *view) Change(ns, key string, rev uint64) (ctxd.Change, error) {
	if rev == 0 || rev > v.rev {
		return ctxd.Change{}, fmt.Errorf("%s/%s at revision %d: %w", ns, key, rev, ctxd.ErrNotFound)
	}
	if c, ok := v.putAt(ns, key, rev); ok {
		return c, nil
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

// putAt reads the put of ns/key at revision rev as the watch would give
// it (changesOf, with the key's previous value when the put replaced
// one). ok is false when rev is not a put of the key, or the reads fail
// (the caller reads history then, which says why).
func (v *view) putAt(ns, key string, rev uint64) (c ctxd.Change, ok bool) {
	k := v.keys
	get := func(at uint64) *mvccpb.KeyValue {
		ctx, cancel := context.WithTimeout(context.Background(), v.s.opts.RequestTimeout)
		defer cancel()
		resp, err := v.s.cli.Get(ctx, k.live(ns, key), clientv3.WithRev(int64(at)))
		if err != nil {
			return nil
		}
		return firstKV(resp.Kvs)
	}
	kv := get(rev)
	if kv == nil || uint64(kv.ModRevision) != rev {
		return ctxd.Change{}, false
	}
	ev := &clientv3.Event{Type: mvccpb.PUT, Kv: kv}
	if kv.Version > 1 {
		if ev.PrevKv = get(rev - 1); ev.PrevKv == nil {
			return ctxd.Change{}, false
		}
	}
	cs := changesOf(k, []*clientv3.Event{ev})
	if len(cs) != 1 {
		return ctxd.Change{}, false
	}
	return cs[0], true
}
