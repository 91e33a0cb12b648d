package etcd

import (
	"context"
	"fmt"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/framework0/ctxd"
	"github.com/framework0/ctxd/internal/failpoint"
	"github.com/framework0/ctxd/store"
	"github.com/framework0/ctxd/store/bolt"
)

// restoreBatchOps is how many etcd operations one transaction of a full
// restore's history holds: under etcd's default --max-txn-ops (128).
const restoreBatchOps = 64

// restoreClaimKey is put once by each full restore: the revision of the
// put names the new generation, unique in the cluster.
const restoreClaimKey = "meta/restore"

// Restore replaces the prefix's data with the snapshot at path (a
// snapshot file of either backend), after verifying it.
//
// A partial restore (opts.Namespaces or opts.Prefix) is one ordinary
// transaction of puts and deletes (Import): within etcd's limits on one
// transaction. A dry run reports the differences and writes nothing.
//
// A full restore writes the snapshot's history, change by change, under
// a new generation's data prefix, then switches the pointer key to it in
// one etcd transaction: atomic at any size, for every instance at once
// (each sees the switch on its watch and its followers send "reset").
// Revisions are etcd's: the restored changes get new ones, above every
// revision before the restore; versions count each key's changes from
// its oldest one in the snapshot. Reads and resumes below the switch
// answer a *ctxd.CompactedError naming the snapshot's revision. The
// replaced generation's keys are deleted afterwards.
func (s *Store) Restore(ctx context.Context, path string, opts ctxd.RestoreOptions) (ctxd.RestoreResult, error) {
	for _, ns := range opts.Namespaces {
		if err := ctxd.ValidateNamespace(ns); err != nil {
			return ctxd.RestoreResult{}, err
		}
	}
	if err := s.enter(); err != nil {
		return ctxd.RestoreResult{}, err
	}
	defer s.inflight.Done()
	snap, err := bolt.OpenSnapshot(path)
	if err != nil {
		return ctxd.RestoreResult{}, err
	}
	defer snap.Close()
	if err := snap.Verify(); err != nil {
		return ctxd.RestoreResult{}, err
	}
	res := ctxd.RestoreResult{DryRun: opts.DryRun, Partial: opts.IsPartial()}
	if res.SnapshotRevision, err = snap.Revision(); err != nil {
		return ctxd.RestoreResult{}, err
	}
	var writes []ctxd.Write
	err = snap.View(func(sv store.View) error {
		return s.View(func(lv store.View) error {
			var err error
			res.Namespaces, writes, err = store.RestoreDiff(sv, lv, opts, !opts.DryRun && opts.IsPartial())
			return err
		})
	})
	if err != nil {
		return ctxd.RestoreResult{}, fmt.Errorf("restore: compare with snapshot: %w", err)
	}
	switch {
	case opts.DryRun:
		res.Revision = s.Revision()
		return res, nil
	case opts.IsPartial() && len(writes) == 0:
		res.Revision = s.Revision()
		return res, nil
	case opts.IsPartial():
		out, err := s.Import(ctx, writes)
		if err != nil {
			return ctxd.RestoreResult{}, fmt.Errorf("restore: %w", err)
		}
		res.Revision = out.Revision
		return res, nil
	}
	rev, err := s.restoreFull(ctx, snap, res.SnapshotRevision)
	if err != nil {
		return ctxd.RestoreResult{}, fmt.Errorf("restore: %w", err)
	}
	res.Revision = rev
	return res, nil
}

// restoreFull writes the snapshot as a new generation and switches to it;
// it returns the switch's revision. A failure before the switch removes
// what it wrote and leaves the live data as it was. The new generation is
// marked as in flight until the switch (cleanup.go), so that no instance
// removes it as garbage meanwhile.
//
// The generation it replaces is the pointer's when it claims, read from
// etcd (reloadGeneration): the instance's watch may not have delivered a
// switch yet (one that came after the restore's comparison, or that a
// lagging watch holds back), and a switch compared with the instance's
// generation then failed after the whole new generation was written, a
// 409 with no restore running beside it. Only a full restore that
// switches after this claim is a conflict.
func (s *Store) restoreFull(ctx context.Context, snap store.Snapshot, snapRev uint64) (uint64, error) {
	if f := s.beforeRestoreClaim.Load(); f != nil {
		(*f)()
	}
	if err := s.reloadGeneration(ctx); err != nil {
		return 0, err
	}
	old := s.keys.gen()
	claim, err := s.put(ctx, s.opts.Prefix+restoreClaimKey, "")
	if err != nil {
		return 0, err
	}
	id := uint64(claim.Header.Revision)
	unmark, err := s.markRestore(ctx, id)
	if err != nil {
		return 0, err
	}
	defer unmark()
	next := dataKeys{prefix: genPrefix(s.opts.Prefix, id)}
	if err := s.writeHistory(ctx, next, snap); err != nil {
		s.removeData(next.prefix)
		return 0, err
	}
	s.switching.Store(id)
	defer s.switching.Store(0)
	tctx, cancel := context.WithTimeout(ctx, s.opts.RequestTimeout)
	resp, err := s.cli.Txn(tctx).If(s.genCompare(old), s.markCompare(id)).
		Then(clientv3.OpPut(s.opts.Prefix+genKey, encodeGeneration(id, snapRev))).Commit()
	cancel()
	if err != nil {
		// The switch may have applied: the new generation's data stays
		// (it is live if it did; removed as garbage if it did not). If
		// it did, the replaced generation is removed at the next Open or
		// switch of any instance.
		return 0, writeError(err, true)
	}
	if !resp.Succeeded {
		s.removeData(next.prefix)
		return 0, fmt.Errorf("%w: another full restore replaced the data meanwhile (or this restore's mark ran out)", ctxd.ErrConflict)
	}
	rev := uint64(resp.Header.Revision)
	failpoint.Hit(failpoint.EtcdRestoreAfterSwitch)
	s.feed.waitFor(ctx, rev)
	// The replaced generation is nobody's now: every write compares the
	// pointer, and reads below the switch are refused. This instance's
	// watch leaves it to this removal (s.switching), which goes on if the
	// client has gone. Should this process die first, the next instance
	// to open or to see a switch removes it.
	s.removeStaleGenerations(context.WithoutCancel(ctx))
	return rev, nil
}

// put is one etcd put with the request timeout, a step of a restore
// before its switch.
func (s *Store) put(ctx context.Context, key, value string) (*clientv3.PutResponse, error) {
	ctx, cancel := context.WithTimeout(ctx, s.opts.RequestTimeout)
	defer cancel()
	resp, err := s.cli.Put(ctx, key, value)
	if err != nil {
		return nil, writeError(err, beforeSwitch)
	}
	return resp, nil
}

// beforeSwitch is writeError's sent for the steps of a full restore
// before its switch (its claim, mark, staged generation and leases): the
// switch alone changes what anyone reads, so a restore that fails before
// it did not apply, whatever became of the step (what it left is garbage
// of no generation, removed later): unavailable, never outcome unknown.
const beforeSwitch = false

// removeData deletes every key under prefix, as far as etcd answers: it
// is garbage of no generation, which a later restore removes again.
func (s *Store) removeData(prefix string) {
	ctx, cancel := context.WithTimeout(context.Background(), s.opts.RequestTimeout)
	defer cancel()
	_, _ = s.cli.Delete(ctx, prefix, clientv3.WithPrefix())
}

// writeHistory writes every change of the snapshot, oldest first, under
// the data prefix of k, with the who and time it records: a few dozen
// changes of distinct keys per etcd transaction (they share its
// revision, as a ctxd transaction's changes do).
func (s *Store) writeHistory(ctx context.Context, k dataKeys, snap store.Snapshot) error {
	var ops []clientv3.Op
	batch := map[string]bool{}
	flush := func() error {
		if len(ops) == 0 {
			return nil
		}
		tctx, cancel := context.WithTimeout(ctx, s.opts.RequestTimeout)
		defer cancel()
		if _, err := s.cli.Txn(tctx).Then(ops...).Commit(); err != nil {
			return writeError(err, beforeSwitch)
		}
		ops, batch = ops[:0], map[string]bool{}
		return nil
	}
	return snap.View(func(v store.View) error {
		// The live keys that expire: their last put goes on a lease
		// granted for the time left (liveDeadlines).
		deadlines, err := liveDeadlines(v)
		if err != nil {
			return err
		}
		err = v.ForEachChange("", func(c ctxd.Change) error {
			id := c.Namespace + "/" + c.Key
			if batch[id] || len(ops)+3 > restoreBatchOps {
				if err := flush(); err != nil {
					return err
				}
			}
			batch[id] = true
			env := envelope{who: c.Who, time: c.Time}
			if c.Op == ctxd.OpPut {
				env.value, env.expiresAt = c.Value, c.ExpiresAt
				if d, live := deadlines[id]; live && d.rev == c.Revision {
					lease, err := s.restoredLease(ctx, d.at)
					if err != nil {
						return err
					}
					armed := envelope{who: ctxd.WhoTTL, time: c.Time, expiresAt: d.at}
					ops = append(ops, clientv3.OpPut(k.live(c.Namespace, c.Key), string(env.encode()), clientv3.WithLease(lease.lease)),
						clientv3.OpPut(k.dead(c.Namespace, c.Key), string(lease.encode()), clientv3.WithLease(lease.lease)),
						clientv3.OpPut(k.tomb(c.Namespace, c.Key), string(armed.encode())))
					return nil
				}
				ops = append(ops, clientv3.OpPut(k.live(c.Namespace, c.Key), string(env.encode())))
				return nil
			}
			ops = append(ops, clientv3.OpDelete(k.live(c.Namespace, c.Key)), clientv3.OpPut(k.tomb(c.Namespace, c.Key), string(env.encode())))
			return nil
		})
		if err != nil {
			return err
		}
		return flush()
	})
}

// liveDeadline is a live key of a snapshot that expires: the revision of
// its last put and its deadline (a keepalive's, when one moved it).
type liveDeadline struct {
	rev uint64
	at  time.Time
}

// liveDeadlines are the snapshot's live keys that expire, by ns/key.
func liveDeadlines(v store.View) (map[string]liveDeadline, error) {
	out := map[string]liveDeadline{}
	for _, ns := range v.Namespaces() {
		err := v.ForEach(ns.Name, "", func(r ctxd.Record) error {
			if !r.ExpiresAt.IsZero() {
				out[ns.Name+"/"+r.Key] = liveDeadline{rev: r.ModRev, at: r.ExpiresAt}
			}
			return nil
		})
		if err != nil {
			return nil, err
		}
	}
	return out, nil
}

// restoredLease grants the lease of a restored key that expires at at:
// for the time left, in whole seconds and at least etcd's minimum, so the
// key never expires before its deadline (one already past expires as
// soon as etcd can). Its deadline record keeps the snapshot's deadline.
func (s *Store) restoredLease(ctx context.Context, at time.Time) (deadline, error) {
	secs := max(leaseTTL(time.Until(at)), s.minLeaseTTL)
	gctx, cancel := context.WithTimeout(ctx, s.opts.RequestTimeout)
	defer cancel()
	resp, err := s.cli.Grant(gctx, secs)
	if err != nil {
		return deadline{}, writeError(err, beforeSwitch)
	}
	return deadline{lease: resp.ID, ttlSeconds: resp.TTL, at: at.UTC()}, nil
}
