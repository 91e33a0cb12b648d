package etcd

import (
	"context"
	"errors"
	"fmt"
	"time"

	"go.etcd.io/etcd/api/v3/mvccpb"
	"go.etcd.io/etcd/api/v3/v3rpc/rpctypes"
	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/framework0/ctxd"
)

// Expiring keys are etcd leases, one per key (DESIGN.md has the measure
// against leases shared by deadline): a put with a TTL grants a lease and
// attaches the key and its deadline record to it; etcd deletes both when
// the lease expires, in one revision that writes nothing else, and every
// instance's watch turns that delete into the expiry change. etcd does
// the delete, so there is exactly one however many instances run, and
// none needs to run for it to happen.

// leaseTTL is the TTL in whole seconds of the lease for ttl: etcd's
// leases count whole seconds, so a TTL is rounded up.
func leaseTTL(ttl time.Duration) int64 {
	return int64((ttl + time.Second - 1) / time.Second)
}

// checkTTL refuses a TTL etcd cannot honour: below its minimum lease TTL
// etcd would keep the key longer than asked (it raises the lease's TTL to
// its minimum, 1.5 election timeouts, 2 s with etcd's defaults).
func (s *Store) checkTTL(ns, key string, ttl time.Duration) error {
	if secs := leaseTTL(ttl); secs < s.minLeaseTTL {
		return ctxd.Invalidf("ttl %s of %s/%s is below etcd's minimum lease TTL of %ds: etcd cannot expire a key sooner (set limits.min_ttl to at least %ds on etcd)",
			ttl, ns, key, s.minLeaseTTL, s.minLeaseTTL)
	}
	return nil
}

// MinTTL is the shortest TTL etcd can honour: its minimum lease TTL,
// learnt at Open. A shorter one is refused whatever limits.min_ttl says.
func (s *Store) MinTTL() time.Duration { return time.Duration(s.minLeaseTTL) * time.Second }

// probeMinLeaseTTL asks etcd for a 1-second lease and reads the TTL it
// granted: etcd raises a lease's TTL to its minimum and says so.
func (s *Store) probeMinLeaseTTL(ctx context.Context) (int64, error) {
	resp, err := s.cli.Grant(ctx, 1)
	if err != nil {
		return 0, err
	}
	if _, err := s.cli.Revoke(ctx, resp.ID); err != nil && !errors.Is(err, rpctypes.ErrLeaseNotFound) {
		return 0, err
	}
	return resp.TTL, nil
}

// grantLeases grants a lease to each write with a TTL (0 for the others).
// When one fails, those granted are revoked.
func (s *Store) grantLeases(ctx context.Context, writes []ctxd.Write) ([]deadline, error) {
	var out []deadline
	for i, w := range writes {
		if w.TTL <= 0 {
			continue
		}
		if out == nil {
			out = make([]deadline, len(writes))
		}
		gctx, cancel := context.WithTimeout(ctx, s.opts.RequestTimeout)
		resp, err := s.cli.Grant(gctx, leaseTTL(w.TTL))
		cancel()
		if err != nil {
			s.revokeGranted(out)
			// No write was sent: nothing changed.
			return nil, writeError(err, false)
		}
		out[i] = deadline{lease: resp.ID, ttlSeconds: resp.TTL}
	}
	return out, nil
}

// revokeGranted revokes leases granted for a transaction that did not
// apply, so that they do not linger until their TTL.
func (s *Store) revokeGranted(granted []deadline) {
	for _, d := range granted {
		if d.lease != clientv3.NoLease {
			s.revokeLater(d.lease)
		}
	}
}

// revokeLater revokes a lease no key needs any more (its key was
// replaced, deleted, or its transaction did not apply), in the
// background: the write's answer does not wait for it. Revoking deletes
// what is still attached: nothing, or a deadline record left behind by a
// put without TTL or a delete (no change of the feed). When it fails the
// lease still ends at its TTL.
func (s *Store) revokeLater(id clientv3.LeaseID) {
	s.inflight.Add(1)
	go func() {
		defer s.inflight.Done()
		ctx, cancel := context.WithTimeout(context.Background(), s.opts.RequestTimeout)
		defer cancel()
		_, _ = s.cli.Revoke(ctx, id)
	}()
}

// KeepAlive moves the deadline of a live expiring key to ttl from now
// without a new version: it renews the key's lease (etcd's KeepAliveOnce)
// and rewrites the key's deadline record, which is not a change. etcd
// renews a lease to the TTL it granted, so ttl must be the TTL the key was
// put with (rounded up to whole seconds); another one is ctxd.ErrInvalid:
// moving the key to a new lease would be a put, a new version.
//
// The key's lease, TTL and modification revision come from the read
// cache when it holds them (no read of etcd, no wait for the cache to be
// current), else from a read of etcd. Either way the deadline record is
// rewritten on condition that the key is still at that revision, so a
// keepalive applies only to the key as read: when the cache's copy was
// behind (or anything it says does not fit the request), nothing was
// written, and the keepalive starts again from a read of etcd, whose
// answer is exact; when the key moves between that read and the rewrite
// (another writer was first), it reads again: a keepalive without
// If-Match applies to the key as it is, and never answers a conflict.
func (s *Store) KeepAlive(ctx context.Context, ns, key string, ttl time.Duration, expect *uint64) (ctxd.Record, error) {
	if err := s.checkKey(ns, key); err != nil {
		return ctxd.Record{}, err
	}
	// Not limits.min_ttl and max_ttl: the TTL must be the key's own, which
	// the put was checked for (by whichever instance took it); another
	// instance's narrower limits would refuse one heartbeat in N.
	if err := (ctxd.Limits{}).ValidateTTL(ttl); err != nil { // positive
		return ctxd.Record{}, err
	}
	if err := s.checkTTL(ns, key, ttl); err != nil {
		return ctxd.Record{}, err
	}
	// A write: unavailable at once while etcd is unreachable.
	if err := s.beginWrite(ctx); err != nil {
		return ctxd.Record{}, err
	}
	defer s.inflight.Done()
	s.stats.requests.Add(1)
	ctx, cancel := context.WithTimeout(ctx, s.opts.RequestTimeout)
	defer cancel()
	gen := s.keys.gen()
	// expired: the lease the key was last seen with had ended (a key
	// gone when read next expired, and the answer says so).
	expired := false
	if s.cache != nil {
		if e, ok := s.cache.leaseOf(ns, key); ok && e.ttlSeconds == leaseTTL(ttl) && (expect == nil || *expect == uint64(e.version)) {
			if rec, err := e.record(ns); err == nil {
				at, held, ended, err := s.renew(ctx, gen, ns, key, clientv3.LeaseID(e.lease), e.ttlSeconds, e.md, e.deadlineRev)
				switch {
				case err != nil:
					return ctxd.Record{}, err
				case held:
					s.cache.hits.Add(1)
					rec.ExpiresAt = at
					return rec, nil
				}
				expired = ended
			}
		}
		s.cache.misses.Add(1)
	}
	// Each round reads the key from etcd and renews it as read; a round
	// that finds it written, deleted or its lease ended since (another
	// writer got there first) reads again, so the answer is about the key
	// as it is then: never a conflict the request did not ask about.
	for {
		rec, held, ended, err := s.keepAliveRound(ctx, ns, key, ttl, expect, expired)
		if err != nil || held {
			return rec, err
		}
		expired = ended
	}
}

// keepAliveRound is a round of KeepAlive from a read of etcd: held is
// false when the key moved between the read and the renewal (ended: its
// lease had ended), and the caller reads again. expired says the round
// before found the key's lease ended: a key gone now expired. The key is
// read in the generation current then, which the instance catches up
// with when its watch has not delivered a full restore's switch yet
// (getCurrent): the replaced generation's keys are deleted by then.
func (s *Store) keepAliveRound(ctx context.Context, ns, key string, ttl time.Duration, expect *uint64, expired bool) (rec ctxd.Record, held, ended bool, err error) {
	resps, gen, err := s.getCurrentAll(ctx, 0, func(k dataKeys) []clientv3.Op {
		return []clientv3.Op{clientv3.OpGet(k.live(ns, key)), clientv3.OpGet(k.dead(ns, key))}
	})
	if err != nil {
		return ctxd.Record{}, false, false, readError(err)
	}
	kv := firstKV(resps[0].Kvs)
	var have uint64
	if kv != nil {
		have = uint64(kv.Version)
	}
	// The expected version first, as for a delete or a patch (and as on
	// bolt): a missing key is at version 0, a conflict for If-Match: 3.
	if expect != nil && *expect != have {
		return ctxd.Record{}, false, false, &ctxd.ConflictError{Namespace: ns, Key: key, Expected: *expect, Current: have}
	}
	if kv == nil && expired {
		return ctxd.Record{}, false, false, fmt.Errorf("keepalive %s/%s: %w (it expired)", ns, key, ctxd.ErrNotFound)
	}
	if kv == nil {
		return ctxd.Record{}, false, false, fmt.Errorf("keepalive %s/%s: %w", ns, key, ctxd.ErrNotFound)
	}
	rec, err = record(ns, key, kv)
	if err != nil {
		return ctxd.Record{}, false, false, err
	}
	dkv := firstKV(resps[1].Kvs)
	if kv.Lease == 0 || dkv == nil || dkv.Lease != kv.Lease {
		return ctxd.Record{}, false, false, ctxd.Invalidf("keepalive %s/%s: the key does not expire (it was put without a ttl): put it with a ttl first", ns, key)
	}
	d, err := decodeDeadline(dkv.Value)
	if err != nil {
		return ctxd.Record{}, false, false, fmt.Errorf("keepalive %s/%s: %w", ns, key, err)
	}
	if leaseTTL(ttl) != d.ttlSeconds {
		return ctxd.Record{}, false, false, ctxd.Invalidf("keepalive %s/%s: ttl %s: on etcd a keepalive renews the key's lease for the ttl it was put with (%ds); to change the ttl, put the key again",
			ns, key, ttl, d.ttlSeconds)
	}
	at, held, ended, err := s.renew(ctx, gen, ns, key, d.lease, d.ttlSeconds, kv.ModRevision, dkv.ModRevision)
	if err != nil || !held {
		return ctxd.Record{}, false, ended, err
	}
	rec.ExpiresAt = at
	return rec, true, false, nil
}

// renew renews the key's lease, read with the key at modRev, and moves
// its deadline record to ttlSeconds from now, on condition that the key
// is still at modRev (a write since would have given it a deadline of
// its own, or none), that its record is still at recordRev (another
// keepalive since may have moved it later: written over with this one's,
// taken earlier, the deadline would go back) and that no full restore
// replaced the data (generation.go). held is false when the lease had ended (expired) or
// either condition failed: nothing was written (and when the data was
// replaced, the instance has caught up with the restore). The record's
// transaction is a group's when the store groups writes (renewGrouped);
// a group etcd refuses because the lease ended meanwhile sends it again
// alone, which tells.
func (s *Store) renew(ctx context.Context, gen *generation, ns, key string, lease clientv3.LeaseID, ttlSeconds, modRev, recordRev int64) (at time.Time, held, expired bool, err error) {
	grouped := s.groups != nil
again:
	now := s.opts.Now().UTC()
	if _, err := s.cli.KeepAliveOnce(ctx, lease); err != nil {
		if errors.Is(err, rpctypes.ErrLeaseNotFound) {
			return time.Time{}, false, true, nil
		}
		return time.Time{}, false, false, writeError(err, true)
	}
	d := deadline{lease: lease, ttlSeconds: ttlSeconds, at: now.Add(time.Duration(ttlSeconds) * time.Second), recordRev: recordRev}
	if grouped {
		// With other writes and keepalives in one transaction.
		held, err := s.renewGrouped(ctx, gen, ns, key, d, modRev)
		switch {
		case errors.Is(err, errGoAlone):
			// etcd refused the group (a lease ended while it waited,
			// perhaps this one: renewing it again tells), or the data
			// was replaced: alone, from the renewal.
			grouped = false
			goto again
		case err != nil:
			return time.Time{}, false, false, err
		case held:
			return d.at, true, false, nil
		default:
			return time.Time{}, false, false, nil
		}
	}
	cmps, op := renewalOps(gen, ns, key, d, modRev)
	started := time.Now()
	put, err := s.cli.Txn(ctx).If(append(cmps, s.genCompare(gen))...).Then(op).
		Else(clientv3.OpGet(s.opts.Prefix+genKey, clientv3.WithKeysOnly())).Commit()
	s.stats.transactions.Add(1)
	if err != nil {
		if errors.Is(err, rpctypes.ErrLeaseNotFound) {
			return time.Time{}, false, true, nil
		}
		return time.Time{}, false, false, writeError(err, true)
	}
	if !put.Succeeded {
		if kv := firstKV(put.Responses[0].GetResponseRange().GetKvs()); kv != nil && kv.ModRevision != gen.rev {
			// A full restore switched the data: catch up with it, so
			// that the keepalive reads the restored key next.
			if err := s.catchUpGeneration(ctx, kv.ModRevision); err != nil {
				return time.Time{}, false, false, readError(err)
			}
		}
		return time.Time{}, false, false, nil
	}
	s.committed(1, 0, started)
	return d.at, true, false, nil
}

// renewalOps are the compares and the put of a keepalive's rewrite of its
// key's deadline record to d, alone or in a group: only while the key is
// still at modRev, the revision the keepalive read it at, and its record
// at d.recordRev (when known).
func renewalOps(gen *generation, ns, key string, d deadline, modRev int64) ([]clientv3.Cmp, clientv3.Op) {
	cmps := []clientv3.Cmp{clientv3.Compare(clientv3.ModRevision(gen.keys.live(ns, key)), "=", modRev)}
	if d.recordRev > 0 {
		cmps = append(cmps, clientv3.Compare(clientv3.ModRevision(gen.keys.dead(ns, key)), "=", d.recordRev))
	}
	return cmps, clientv3.OpPut(gen.keys.dead(ns, key), string(d.encode()), clientv3.WithLease(d.lease))
}

// deadlinesOf sets ExpiresAt of the records whose key is on a lease
// (leased[i] true) to their deadline record's at revision rev (0: the
// head): one range read over the records' keys, which are in key order
// in one namespace. A keepalive moves the deadline record only, so that
// it, not the put's envelope, has the current deadline. The records are
// of generation k.
func (s *Store) deadlinesOf(ctx context.Context, k dataKeys, ns string, records []ctxd.Record, leased []bool, rev uint64) error {
	first, last := -1, -1
	for i, l := range leased {
		if l {
			if first < 0 {
				first = i
			}
			last = i
		}
	}
	if first < 0 {
		return nil
	}
	from, to := k.dead(ns, records[first].Key), k.dead(ns, records[last].Key)+"\x00"
	resp, err := s.cli.Get(ctx, from, clientv3.WithRange(to), clientv3.WithRev(int64(rev)))
	if err != nil {
		return s.revisionError(ctx, err, rev)
	}
	at := make(map[string]time.Time, len(resp.Kvs))
	base := len(k.nsDead(ns))
	for _, kv := range resp.Kvs {
		if d, err := decodeDeadline(kv.Value); err == nil {
			at[string(kv.Key[base:])] = d.at
		}
	}
	for i, l := range leased {
		if t, ok := at[records[i].Key]; l && ok {
			records[i].ExpiresAt = t
		}
	}
	return nil
}

// expiryOf is the expiry change of a key's lease-driven delete event: a
// delete by ctxd.WhoTTL whose time is the deadline it met (etcd records
// no time of its own; its lessor deletes within about half a second of
// it). The deadline is the deadline record's, deleted with the key
// (dead, when the revision has it), else the put's.
func expiryOf(c ctxd.Change, prev *mvccpb.KeyValue, dead *deadline) ctxd.Change {
	c.Op, c.Who, c.Expired = ctxd.OpDelete, ctxd.WhoTTL, true
	if prev != nil {
		c.Version = uint64(prev.Version)
		if env, err := decodeEnvelope(prev.Value); err == nil {
			c.Time = env.expiresAt
		}
	}
	if dead != nil {
		c.Time = dead.at
	}
	return c
}

// expiryAfter finds, for History, the expiry that ended a key's life
// after its armed tombstone's revision armed (the put with a TTL that
// wrote it): the first delete of the key after it (there is no other
// delete in between: a ctxd delete rewrites the tombstone), read with a
// watch of the key from there, and the deadline record in effect just
// before it. When etcd compacted past the put, the watch starts at the
// compaction instead, if the key was live there (else the expiry is
// compacted away too). It reads the key in the generation k, the walk's.
func (s *Store) expiryAfter(ctx context.Context, k dataKeys, ns, key string, armed int64) (ctxd.Change, error) {
	from := armed + 1
	for {
		c, compacted, err := s.firstDelete(ctx, k, ns, key, from)
		if compacted == 0 {
			return c, err
		}
		resp, err := s.cli.Get(ctx, k.live(ns, key), clientv3.WithRev(compacted), clientv3.WithCountOnly())
		if err != nil && !errors.Is(err, rpctypes.ErrCompacted) {
			return ctxd.Change{}, err
		}
		if err != nil || resp.Count == 0 {
			return ctxd.Change{}, &ctxd.CompactedError{Requested: uint64(armed), Compacted: uint64(compacted)}
		}
		from = compacted
	}
}

// firstDelete is the expiry change of the first delete of a key from
// revision from on, or etcd's compaction revision when from is below it.
func (s *Store) firstDelete(ctx context.Context, k dataKeys, ns, key string, from int64) (ctxd.Change, int64, error) {
	wctx, cancel := context.WithCancel(ctx)
	defer cancel()
	wch := s.cli.Watch(wctx, k.live(ns, key), clientv3.WithRev(from), clientv3.WithPrevKV(), clientv3.WithFilterPut())
	for resp := range wch {
		if resp.CompactRevision > 0 {
			s.sawCompacted(uint64(resp.CompactRevision))
			return ctxd.Change{}, resp.CompactRevision, nil
		}
		if err := resp.Err(); err != nil {
			return ctxd.Change{}, 0, err
		}
		for _, ev := range resp.Events {
			c := ctxd.Change{Revision: uint64(ev.Kv.ModRevision), Namespace: ns, Key: key}
			var dead *deadline
			got, err := s.cli.Get(ctx, k.dead(ns, key), clientv3.WithRev(ev.Kv.ModRevision-1))
			if err == nil && len(got.Kvs) > 0 {
				if d, err := decodeDeadline(got.Kvs[0].Value); err == nil {
					dead = &d
				}
			}
			return expiryOf(c, ev.PrevKv, dead), 0, nil
		}
	}
	if err := ctx.Err(); err != nil {
		return ctxd.Change{}, 0, err
	}
	return ctxd.Change{}, 0, fmt.Errorf("%w: the watch on etcd ended", ctxd.ErrUnavailable)
}
