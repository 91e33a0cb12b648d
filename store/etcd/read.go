package etcd

import (
	"context"
	"errors"
	"fmt"
	"math"
	"sort"

	"go.etcd.io/etcd/api/v3/mvccpb"
	"go.etcd.io/etcd/api/v3/v3rpc/rpctypes"
	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/framework0/ctxd"
)

const defaultPageSize = 100

func pageSize(limit int) int {
	switch {
	case limit <= 0:
		return defaultPageSize
	case limit > ctxd.MaxListLimit:
		return ctxd.MaxListLimit
	}
	return limit
}

// checkKey checks the key a read or a keepalive names (any a ctxd could
// have written: not only under this instance's limits).
func (s *Store) checkKey(ns, key string) error {
	if err := ctxd.ValidateNamespace(ns); err != nil {
		return err
	}
	return ctxd.ValidateKeyName(key)
}

// record decodes a live etcd key's value into a record.
func record(ns, key string, kv *mvccpb.KeyValue) (ctxd.Record, error) {
	env, err := decodeEnvelope(kv.Value)
	if err != nil {
		return ctxd.Record{}, fmt.Errorf("read %s/%s: %w", ns, key, err)
	}
	return ctxd.Record{Namespace: ns, Key: key, Value: env.value, Version: uint64(kv.Version),
		CreateRev: uint64(kv.CreateRevision), ModRev: uint64(kv.ModRevision), Who: env.who, UpdatedAt: env.time,
		ExpiresAt: env.expiresAt}, nil
}

// Get returns a key's current state, linearizable: from the read cache
// when it can serve, else an etcd read.
func (s *Store) Get(ns, key string) (ctxd.Record, error) {
	if err := s.checkKey(ns, key); err != nil {
		return ctxd.Record{}, err
	}
	var r ctxd.Record
	if served, err := s.cached(func(c *readCache) (ok bool, err error) {
		r, ok, err = c.get(ns, key)
		return ok, err
	}); served || err != nil {
		return r, err
	}
	return s.getAt(ns, key, 0)
}

// GetAt returns what a key held at revision rev, an etcd read at rev.
func (s *Store) GetAt(ns, key string, rev uint64) (ctxd.Record, error) {
	if rev == 0 {
		return ctxd.Record{}, ctxd.Invalidf("there is no revision 0")
	}
	return s.getAt(ns, key, rev)
}

func (s *Store) getAt(ns, key string, rev uint64) (ctxd.Record, error) {
	if err := s.checkKey(ns, key); err != nil {
		return ctxd.Record{}, err
	}
	if err := s.readableAt(rev); rev > 0 && err != nil {
		return ctxd.Record{}, err
	}
	var r ctxd.Record
	err := s.read(func(ctx context.Context) error {
		// At rev (0: the head), in the generation in effect there
		// (getCurrentAll).
		resps, g, err := s.getCurrentAll(ctx, int64(rev), func(k dataKeys) []clientv3.Op {
			return []clientv3.Op{clientv3.OpGet(k.live(ns, key), clientv3.WithRev(int64(rev)))}
		})
		if err != nil {
			return s.revisionError(ctx, err, rev)
		}
		resp, k := resps[0], g.keys
		if len(resp.Kvs) == 0 {
			return ctxd.KeyNotFound(ns, key, rev)
		}
		if r, err = record(ns, key, resp.Kvs[0]); err != nil {
			return err
		}
		if rev == 0 && resp.Kvs[0].Lease != 0 {
			// A keepalive may have moved the deadline since the put.
			one := []ctxd.Record{r}
			err = s.deadlinesOf(ctx, k, ns, one, []bool{true}, 0)
			r = one[0]
			return err
		}
		return nil
	})
	return r, err
}

// revisionError turns etcd's answer to a read at rev into ctxd's.
func (s *Store) revisionError(ctx context.Context, err error, rev uint64) error {
	switch {
	case errors.Is(err, rpctypes.ErrFutureRev):
		head, herr := s.headRevision(ctx)
		if herr != nil {
			return herr
		}
		return ctxd.FutureRevision(rev, head)
	case errors.Is(err, rpctypes.ErrCompacted):
		compacted, cerr := s.compactedRevision(ctx)
		if cerr != nil {
			return cerr
		}
		return &ctxd.CompactedError{Requested: rev, Compacted: compacted}
	}
	return err
}

// CheckRevision is nil when etcd can read at rev.
func (s *Store) CheckRevision(rev uint64) error {
	if rev == 0 {
		return ctxd.Invalidf("there is no revision 0")
	}
	if err := s.readableAt(rev); err != nil {
		return err
	}
	return s.read(func(ctx context.Context) error {
		_, err := s.cli.Get(ctx, s.opts.Prefix+"ready", clientv3.WithRev(int64(rev)), clientv3.WithCountOnly())
		if err != nil {
			return s.revisionError(ctx, err, rev)
		}
		return nil
	})
}

// compactedRevision is etcd's compaction mark, the oldest readable
// revision (0 when nothing was compacted). etcd's API does not tell it,
// so it is found by bisection with reads at a revision, from the mark
// known before (it only moves up): about log2(revision) small reads.
func (s *Store) compactedRevision(ctx context.Context) (uint64, error) {
	return s.compactedRevisionFrom(ctx, s.cli)
}

// compactedRevisionFrom is compactedRevision with its reads sent to kv:
// one member's (Status, through firstMember), or the client's.
func (s *Store) compactedRevisionFrom(ctx context.Context, kv clientv3.KV) (uint64, error) {
	probe := s.opts.Prefix + "ready"
	readable := func(rev uint64) (bool, int64, error) {
		resp, err := kv.Get(ctx, probe, clientv3.WithRev(int64(rev)), clientv3.WithCountOnly())
		switch {
		case err == nil:
			return true, resp.Header.Revision, nil
		case errors.Is(err, rpctypes.ErrCompacted):
			return false, 0, nil
		}
		return false, 0, err
	}
	lo := max(s.compacted.Load(), 1)
	ok, head, err := readable(lo)
	if err != nil {
		return 0, err
	}
	if ok {
		if lo == 1 {
			return 0, nil
		}
		return lo, nil
	}
	// lo is compacted; the head is always readable.
	resp, err := kv.Get(ctx, probe, clientv3.WithCountOnly())
	if err != nil {
		return 0, err
	}
	_ = head
	hi := uint64(resp.Header.Revision)
	for lo+1 < hi {
		mid := lo + (hi-lo)/2
		ok, _, err := readable(mid)
		if err != nil {
			return 0, err
		}
		if ok {
			hi = mid
		} else {
			lo = mid
		}
	}
	s.sawCompacted(hi)
	return hi, nil
}

// sawCompacted records a compaction mark learnt from etcd.
func (s *Store) sawCompacted(rev uint64) {
	for {
		old := s.compacted.Load()
		if rev <= old || s.compacted.CompareAndSwap(old, rev) {
			return
		}
	}
}

// List returns a page of a namespace's live keys in byte order: one etcd
// range read.
func (s *Store) List(ns string, opts ctxd.ListOptions) (ctxd.ListPage, error) {
	if err := ctxd.ValidateNamespace(ns); err != nil {
		return ctxd.ListPage{}, err
	}
	var page ctxd.ListPage
	if served, err := s.cached(func(c *readCache) (ok bool, err error) {
		page, ok, err = c.list(ns, opts)
		return ok, err
	}); served || err != nil {
		return page, err
	}
	limit := pageSize(opts.Limit)
	page = ctxd.ListPage{Records: []ctxd.Record{}}
	err := s.read(func(ctx context.Context) error {
		resp, k, err := s.getCurrent(ctx, func(k dataKeys) clientv3.Op {
			base := k.nsLive(ns)
			from := base + opts.Prefix
			if opts.After >= opts.Prefix {
				from = base + opts.After + "\x00"
			}
			return clientv3.OpGet(from, clientv3.WithRange(prefixEnd(base+opts.Prefix)), clientv3.WithLimit(int64(limit)+1))
		})
		if err != nil {
			return err
		}
		base := k.nsLive(ns)
		var leased []bool
		for i, kv := range resp.Kvs {
			if i == limit {
				page.Next = page.Records[limit-1].Key
				break
			}
			r, err := record(ns, string(kv.Key[len(base):]), kv)
			if err != nil {
				return err
			}
			if opts.NoValues {
				// etcd sends the value anyway (who and when are in its
				// envelope): the client gets the lighter answer.
				r.Value = nil
			}
			page.Records = append(page.Records, r)
			leased = append(leased, kv.Lease != 0)
		}
		return s.deadlinesOf(ctx, k, ns, page.Records, leased, 0)
	})
	return page, err
}

// Count returns the number of a namespace's live keys that start with
// prefix: one count-only range read, no values sent.
func (s *Store) Count(ns, prefix string) (uint64, error) {
	if err := ctxd.ValidateNamespace(ns); err != nil {
		return 0, err
	}
	var n uint64
	if served, err := s.cached(func(c *readCache) (ok bool, err error) {
		n, ok, err = c.count(ns, prefix)
		return ok, err
	}); served || err != nil {
		return n, err
	}
	err := s.read(func(ctx context.Context) error {
		resp, _, err := s.getCurrent(ctx, func(k dataKeys) clientv3.Op {
			from := k.nsLive(ns) + prefix
			return clientv3.OpGet(from, clientv3.WithRange(prefixEnd(from)), clientv3.WithCountOnly())
		})
		if err != nil {
			return err
		}
		n = uint64(resp.Count)
		return nil
	})
	return n, err
}

// Namespaces lists the namespaces with live keys, and "default", with
// their counts, at the head.
func (s *Store) Namespaces() ([]ctxd.Namespace, error) {
	var out []ctxd.Namespace
	if served, err := s.cached(func(c *readCache) (ok bool, err error) {
		out, ok, err = c.namespaces()
		return ok, err
	}); served || err != nil {
		return out, err
	}
	err := s.read(func(ctx context.Context) error {
		var err error
		// Several reads: the generation is checked (and caught up with)
		// by the first one, not each.
		_, k, err := s.getCurrent(ctx, func(k dataKeys) clientv3.Op {
			return clientv3.OpGet(k.prefix+liveDir, clientv3.WithCountOnly())
		})
		if err != nil {
			return err
		}
		out, err = s.namespacesAt(ctx, k, 0)
		return err
	})
	return out, err
}

// namespacesAt counts the namespaces' keys at revision rev (0: the
// head, the first request's), in the keys of generation k, from pages of
// keys (keys only, fillPage a page): a page counts every namespace it
// ends, and the one it stops in is counted with one count-only read and
// skipped, so a large namespace costs 2 requests, not a page per
// thousand keys. Skipping from one namespace to the next with 2 reads
// each made a status at 5,000 namespaces overrun the request timeout.
func (s *Store) namespacesAt(ctx context.Context, k dataKeys, rev uint64) ([]ctxd.Namespace, error) {
	base := k.prefix + liveDir
	end := prefixEnd(base)
	var out []ctxd.Namespace
	hasDefault := false
	at := int64(rev)
	for from := base; ; {
		resp, err := s.cli.Get(ctx, from, clientv3.WithRange(end), clientv3.WithLimit(fillPage), clientv3.WithKeysOnly(), clientv3.WithRev(at))
		if err != nil {
			return nil, err
		}
		if at == 0 {
			at = resp.Header.Revision
		}
		if len(resp.Kvs) == 0 {
			break
		}
		for _, kv := range resp.Kvs {
			_, ns, _, ok := k.parse(kv.Key)
			if !ok {
				continue
			}
			if len(out) == 0 || out[len(out)-1].Name != ns {
				out = append(out, ctxd.Namespace{Name: ns})
				hasDefault = hasDefault || ns == ctxd.DefaultNamespace
			}
			out[len(out)-1].Keys++
		}
		if !resp.More {
			break
		}
		from = string(resp.Kvs[len(resp.Kvs)-1].Key) + "\x00"
		if len(out) > 0 {
			last := &out[len(out)-1]
			count, err := s.cli.Get(ctx, k.nsLive(last.Name), clientv3.WithPrefix(), clientv3.WithCountOnly(), clientv3.WithRev(at))
			if err != nil {
				return nil, err
			}
			last.Keys = uint64(count.Count)
			from = max(from, prefixEnd(k.nsLive(last.Name)))
		}
	}
	if !hasDefault {
		out = append(out, ctxd.Namespace{Name: ctxd.DefaultNamespace})
		sort.Slice(out, func(i, j int) bool { return out[i].Name < out[j].Name })
	}
	return out, nil
}

// History returns a page of one key's changes, newest first, across its
// lives, by walking etcd's MVCC history back from the cursor: each step
// is one read-only etcd transaction reading the key and its tombstone at
// revision R; the newer of the two is the change in effect at R, and the
// next step reads just below it. History ends where etcd compacted.
func (s *Store) History(ns, key string, opts ctxd.HistoryOptions) (ctxd.HistoryPage, error) {
	if err := s.checkKey(ns, key); err != nil {
		return ctxd.HistoryPage{}, err
	}
	limit := pageSize(opts.Limit)
	page := ctxd.HistoryPage{Changes: []ctxd.Change{}}
	err := s.read(func(ctx context.Context) error {
		var at uint64 // 0: the head
		if opts.Before > 0 {
			if opts.Before == 1 {
				k, err := s.knownKey(ctx, ns, key)
				if err != nil {
					return err
				}
				page.Truncated, err = s.oldestKeptTruncated(ctx, k, ns, key, 0)
				return err
			}
			// A bound past etcd's revisions (int64) is above the head.
			at = min(opts.Before-1, math.MaxInt64)
		}
		// One change more than the page: it tells whether there is a
		// next page, and the version and prev revision of the page's
		// oldest change when that is a delete or an update.
		steps, cut, err := s.walk(ctx, ns, key, at, limit+1)
		if errors.Is(err, rpctypes.ErrFutureRev) {
			// A bound above the head lists the history up to the head,
			// as on bolt: walk from etcd's revision now, which is below
			// the bound (the read above it failed).
			var head uint64
			if head, err = s.headRevision(ctx); err == nil {
				at = min(at, head)
				steps, cut, err = s.walk(ctx, ns, key, at, limit+1)
			}
		}
		if err != nil {
			return err
		}
		if len(steps) == 0 {
			k, err := s.knownKey(ctx, ns, key)
			if err != nil {
				return err
			}
			if cut {
				page.Truncated = true // the key's state at the bound is gone
				return nil
			}
			page.Truncated, err = s.oldestKeptTruncated(ctx, k, ns, key, at)
			return err
		}
		for i := range min(limit, len(steps)) {
			c := steps[i].change
			var older *step
			if i+1 < len(steps) {
				older = &steps[i+1]
			}
			switch {
			case c.Op == ctxd.OpDelete && older != nil && older.change.Op == ctxd.OpPut:
				c.Version, c.PrevRev = older.change.Version, older.change.Revision
			case c.Op == ctxd.OpPut && c.Version > 1 && older != nil:
				c.PrevRev = older.change.Revision
			}
			page.Changes = append(page.Changes, c)
		}
		if len(steps) > limit {
			page.Next = page.Changes[limit-1].Revision
		} else {
			page.Truncated = cut || truncatedAfter(steps[len(steps)-1].change)
		}
		return nil
	})
	return page, err
}

// knownKey is ErrNotFound unless a key had a change (it is live, or its
// tombstone is: tombstones are never deleted) in the current generation
// (getCurrentAll), whose keys it returns: an instance whose watch has
// not delivered a full restore's switch would look in the replaced
// generation, which the restorer deletes.
func (s *Store) knownKey(ctx context.Context, ns, key string) (dataKeys, error) {
	resps, g, err := s.getCurrentAll(ctx, 0, func(k dataKeys) []clientv3.Op {
		return []clientv3.Op{clientv3.OpGet(k.live(ns, key), clientv3.WithCountOnly()), clientv3.OpGet(k.tomb(ns, key), clientv3.WithCountOnly())}
	})
	if err != nil {
		return dataKeys{}, err
	}
	if resps[0].Count+resps[1].Count == 0 {
		return dataKeys{}, fmt.Errorf("history of %s/%s: %w", ns, key, ctxd.ErrNotFound)
	}
	return g.keys, nil
}

// stateAt reads a key and its tombstone as they were at revision at (0:
// the head). Below etcd's compaction mark a read fails, but the mark still
// holds each key's change in effect there: a change at or below at is in
// effect at at as well, when the other one did not change after at either
// (a delete after at writes the tombstone; tombstones are never removed).
// ok is false where the state at at is gone.
func (s *Store) stateAt(ctx context.Context, live, tomb string, at uint64) (kv, tkv *mvccpb.KeyValue, ok bool, err error) {
	kv, tkv, err = s.readPair(ctx, live, tomb, at)
	if !errors.Is(err, rpctypes.ErrCompacted) {
		return kv, tkv, err == nil, err
	}
	mark, err := s.compactedRevision(ctx)
	if err != nil || mark <= at {
		return nil, nil, false, err
	}
	kv, tkv, err = s.readPair(ctx, live, tomb, mark)
	switch {
	case errors.Is(err, rpctypes.ErrCompacted):
		return nil, nil, false, nil // compacted further meanwhile
	case err != nil:
		return nil, nil, false, err
	case tkv != nil && uint64(tkv.ModRevision) > at:
		return nil, nil, false, nil // deleted after at: what it was at at is gone
	case kv != nil && uint64(kv.CreateRevision) > at:
		// Its life began after at, and no delete came after at: it
		// did not exist at at.
		return nil, tkv, true, nil
	case kv != nil && uint64(kv.ModRevision) > at:
		return nil, nil, false, nil // changed after at, in the same life
	}
	return kv, tkv, true, nil
}

// currentPair reads a key and its tombstone at revision at (0: the head)
// in the current generation, the one at the head (getCurrent: the
// pointer is read at the head, whatever at), whose keys it returns.
func (s *Store) currentPair(ctx context.Context, ns, key string, at uint64) (kv, tkv *mvccpb.KeyValue, k dataKeys, err error) {
	resps, g, err := s.getCurrentAll(ctx, 0, func(k dataKeys) []clientv3.Op {
		return []clientv3.Op{clientv3.OpGet(k.live(ns, key), clientv3.WithRev(int64(at))), clientv3.OpGet(k.tomb(ns, key), clientv3.WithRev(int64(at)))}
	})
	if err != nil {
		return nil, nil, dataKeys{}, err
	}
	return firstKV(resps[0].Kvs), firstKV(resps[1].Kvs), g.keys, nil
}

// currentKeys are the keys of the current generation, the one the
// pointer names at the head (getCurrentAll with no read of its own).
func (s *Store) currentKeys(ctx context.Context) (dataKeys, error) {
	_, g, err := s.getCurrentAll(ctx, 0, func(dataKeys) []clientv3.Op { return nil })
	if err != nil {
		return dataKeys{}, err
	}
	return g.keys, nil
}

// readPair reads a key and its tombstone at revision rev (0: the head).
func (s *Store) readPair(ctx context.Context, live, tomb string, rev uint64) (kv, tkv *mvccpb.KeyValue, err error) {
	resp, err := s.cli.Txn(ctx).Then(
		clientv3.OpGet(live, clientv3.WithRev(int64(rev))),
		clientv3.OpGet(tomb, clientv3.WithRev(int64(rev))),
	).Commit()
	if err != nil {
		return nil, nil, err
	}
	return firstKV(resp.Responses[0].GetResponseRange().GetKvs()), firstKV(resp.Responses[1].GetResponseRange().GetKvs()), nil
}

// oldestKeptTruncated tells, for a page of a key's history that is empty
// below revision at+1 (at 0: below 1), whether the key's oldest kept change
// lost its predecessor to compaction: that change is the one in effect at
// etcd's mark, when the mark is above at (else the key did not exist at
// at, and its history starts with a create). It reads the key in the
// generation k (knownKey's).
func (s *Store) oldestKeptTruncated(ctx context.Context, k dataKeys, ns, key string, at uint64) (bool, error) {
	mark, err := s.compactedRevision(ctx)
	if err != nil || mark == 0 || at >= mark {
		return false, err
	}
	kv, tkv, err := s.readPair(ctx, k.live(ns, key), k.tomb(ns, key), mark)
	if errors.Is(err, rpctypes.ErrCompacted) {
		return s.oldestKeptTruncated(ctx, k, ns, key, at) // the mark moved
	}
	switch {
	case err != nil:
		return false, err
	case kv != nil:
		return kv.Version > 1, nil // live at the mark: its life's earlier puts are gone
	}
	return tkv != nil, nil // deleted at the mark: the put it removed is gone
}

// truncatedAfter tells whether the oldest change of a key's history that
// was kept lost its predecessor: a delete's put, an update's create.
func truncatedAfter(c ctxd.Change) bool {
	return c.Op == ctxd.OpDelete || c.Version > 1
}

// step is one change found walking a key's history back.
type step struct{ change ctxd.Change }

// walk reads up to n changes of a key, newest first, from revision at
// (0: the head) down, until etcd's compaction or the key's first change.
// cut is true when compaction ended it: the key had a state there that is
// gone.
func (s *Store) walk(ctx context.Context, ns, key string, at uint64, n int) (out []step, cut bool, err error) {
	var k dataKeys // the generation walked
	for first := true; len(out) < n; first = false {
		var (
			kv, tkv *mvccpb.KeyValue
			ok      bool
		)
		if first {
			// In the current generation: the instance's watch may not
			// have delivered a full restore's switch yet, whose replaced
			// keys are deleted at the head and hold the data from before
			// the restore at its revision (getCurrent). The walk goes on
			// in the generation read.
			kv, tkv, k, err = s.currentPair(ctx, ns, key, at)
			ok = err == nil
		}
		if compacted := first && errors.Is(err, rpctypes.ErrCompacted); compacted || !first {
			if compacted {
				// The pointer was read with the key, and failed with
				// it: read it alone.
				k, err = s.currentKeys(ctx)
			}
			// Compacted at at: stateAt reads the state kept at etcd's
			// mark.
			if err == nil {
				kv, tkv, ok, err = s.stateAt(ctx, k.live(ns, key), k.tomb(ns, key), at)
			}
		}
		if err != nil {
			return nil, false, err
		}
		if !ok {
			return out, true, nil // history ends at the compaction
		}
		var c ctxd.Change
		switch {
		case kv != nil:
			// Live at R: its life began after its last delete.
			env, err := decodeEnvelope(kv.Value)
			if err != nil {
				return nil, false, fmt.Errorf("history of %s/%s: %w", ns, key, err)
			}
			c = ctxd.Change{Revision: uint64(kv.ModRevision), Namespace: ns, Key: key, Op: ctxd.OpPut,
				Value: env.value, Version: uint64(kv.Version), Who: env.who, Time: env.time, ExpiresAt: env.expiresAt}
		case tkv != nil:
			env, err := decodeEnvelope(tkv.Value)
			if err != nil {
				return nil, false, fmt.Errorf("history of %s/%s: %w", ns, key, err)
			}
			c = ctxd.Change{Revision: uint64(tkv.ModRevision), Namespace: ns, Key: key, Op: ctxd.OpDelete, Who: env.who, Time: env.time}
			if !env.expiresAt.IsZero() {
				// An armed tombstone: the put with a TTL that wrote it
				// was not deleted by ctxd, so its life ended by expiry,
				// between the two.
				c, err = s.expiryAfter(ctx, k, ns, key, tkv.ModRevision)
				var compacted *ctxd.CompactedError
				if errors.As(err, &compacted) {
					return out, true, nil // history ends at the compaction
				}
				if err != nil {
					return nil, false, err
				}
			}
		default:
			return out, false, nil // before the key's first change
		}
		out = append(out, step{change: c})
		at = c.Revision - 1
		if at == 0 {
			break
		}
	}
	return out, false, nil
}
