package etcd

import (
	"context"
	"errors"
	"fmt"
	"io"
	"slices"
	"time"

	"go.etcd.io/etcd/api/v3/mvccpb"
	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/framework0/ctxd"
	"github.com/framework0/ctxd/store"
	"github.com/framework0/ctxd/store/bolt"
)

// snapshotTimeout bounds a whole snapshot (each etcd read within it still
// has the request timeout): history is replayed by a watch, which would
// otherwise wait forever on a cluster that lost its leader.
func (s *Store) snapshotTimeout() time.Duration {
	return max(time.Minute, 12*s.opts.RequestTimeout)
}

// WriteSnapshot writes the prefix's data as the bolt backend's snapshot
// file, so that either backend restores it: the state etcd still holds at
// its compaction mark (or the prefix's birth), read at that revision a
// page at a time in mod revision order, then every change after it up to
// the instance's committed mark, replayed from etcd's history. Writers
// keep writing meanwhile; the file is built in a scratch file
// (Options.SnapshotScratchDir, under Options.SnapshotReserve), removed
// afterwards.
//
// Revisions are etcd's, except where several changes share one (an etcd
// transaction): the file gives each its own, consecutive from there on
// (bolt.SnapshotBuilder), so the snapshot's revision may be a little
// above etcd's.
func (s *Store) WriteSnapshot(w io.Writer) (ctxd.SnapshotInfo, error) {
	if err := s.enter(); err != nil {
		return ctxd.SnapshotInfo{}, err
	}
	defer s.inflight.Done()
	if err := s.unreachable(); err != nil {
		return ctxd.SnapshotInfo{}, fmt.Errorf("snapshot of %s: %w", s.opts.Prefix, err) // at once, as reads
	}
	ctx, cancel := context.WithTimeout(context.Background(), s.snapshotTimeout())
	defer cancel()
	for attempt := 1; ; attempt++ {
		// A compaction (by any instance, or by etcd) that passes the
		// revision a snapshot reads the state at fails its reads with
		// compacted: the snapshot of now starts again from the new mark.
		// Nothing was written to w yet (the file is built aside first).
		info, err := s.writeSnapshot(ctx, w)
		if err = readError(err); err == nil {
			return info, nil
		}
		if !errors.Is(err, ctxd.ErrCompacted) || attempt == snapshotAttempts || ctx.Err() != nil {
			return ctxd.SnapshotInfo{}, fmt.Errorf("snapshot of %s: %w", s.opts.Prefix, err)
		}
	}
}

// snapshotAttempts is how many times a snapshot starts again when a
// compaction passed the revision it read at.
const snapshotAttempts = 5

func (s *Store) writeSnapshot(ctx context.Context, w io.Writer) (ctxd.SnapshotInfo, error) {
	rev, err := s.currentMark(ctx)
	if err != nil {
		return ctxd.SnapshotInfo{}, err
	}
	compacted, err := s.compactedRevisionNow(ctx)
	if err != nil {
		return ctxd.SnapshotInfo{}, err
	}
	// The current generation's history starts after its restore's claim
	// (generation.go): nothing of it is older. Its keys are read to the
	// end, whatever switch comes meanwhile (a newer one's keys do not
	// exist at base: the snapshot would skip them).
	g := s.keys.gen()
	base := max(compacted, s.born, g.id)
	rev = max(rev, base)
	if s.beforeSnapshotRead != nil {
		s.beforeSnapshotRead()
	}
	b, err := bolt.NewSnapshotBuilder(s.opts.SnapshotScratchDir, s.opts.SnapshotReserve)
	if err != nil {
		return ctxd.SnapshotInfo{}, err
	}
	defer b.Close()
	err = s.eachLiveByModRev(ctx, g.keys, base, func(r ctxd.Record) error {
		c := ctxd.Change{Revision: r.ModRev, Namespace: r.Namespace, Key: r.Key, Op: ctxd.OpPut,
			Value: r.Value, Version: r.Version, Who: r.Who, Time: r.UpdatedAt, ExpiresAt: r.ExpiresAt}
		return b.Add(c, r.CreateRev)
	})
	if err != nil {
		return ctxd.SnapshotInfo{}, err
	}
	// Reads below the base are compacted in the file as they are in etcd
	// (the base's changes may have been renumbered above it).
	fileCompacted := uint64(0)
	if compacted > 0 {
		fileCompacted = max(compacted, b.LastRevision())
	}
	var addErr error
	err = s.eachRevision(ctx, base, rev, func(rc revisionChanges) bool {
		for _, c := range rc.changes {
			if addErr = b.Add(c, 0); addErr != nil {
				return false
			}
		}
		return true
	})
	if addErr != nil {
		return ctxd.SnapshotInfo{}, addErr
	}
	if err != nil {
		return ctxd.SnapshotInfo{}, err
	}
	// Keepalives move deadline records, not the keys, and take no
	// revision of the feed's: the file's deadlines are the records' now,
	// for the keys not written since rev.
	if err := s.eachDeadline(ctx, g, rev, b.KeepAlive); err != nil {
		return ctxd.SnapshotInfo{}, err
	}
	return b.WriteTo(w, rev, fileCompacted)
}

// eachDeadline calls fn with the current deadline of every live key on a
// lease that no write changed after revision rev (its deadline record at
// the head, which keepalives move without a revision of the feed's), a
// page of records at a time. The keys of a page are read back in etcd
// transactions of deadlineReads gets each, not one request per key: a
// snapshot of many expiring keys would otherwise make as many round trips.
func (s *Store) eachDeadline(ctx context.Context, gen *generation, rev uint64, fn func(ns, key string, at time.Time) error) error {
	base := gen.keys.prefix + deadDir
	type leased struct {
		ns, key string
		d       deadline
	}
	_, err := s.eachPage(ctx, base, prefixEnd(base), 0, viewPage, func(resp *clientv3.GetResponse) error {
		page := make([]leased, 0, len(resp.Kvs))
		for _, kv := range resp.Kvs {
			_, ns, key, ok := gen.keys.parse(kv.Key)
			if !ok {
				continue
			}
			if d, err := decodeDeadline(kv.Value); err == nil {
				page = append(page, leased{ns, key, d})
			}
		}
		for batch := range slices.Chunk(page, deadlineReads) {
			gets := make([]clientv3.Op, len(batch))
			for i, l := range batch {
				gets[i] = clientv3.OpGet(gen.keys.live(l.ns, l.key)) // not keys-only: that drops the lease
			}
			rctx, cancel := context.WithTimeout(ctx, s.opts.RequestTimeout)
			live, err := s.cli.Txn(rctx).Then(gets...).Commit()
			cancel()
			if err != nil {
				return err
			}
			for i, l := range batch {
				k := firstKV(live.Responses[i].GetResponseRange().GetKvs())
				if k == nil || uint64(k.ModRevision) > rev || k.Lease != int64(l.d.lease) {
					continue // gone, or written after the snapshot's revision
				}
				if err := fn(l.ns, l.key, l.d.at); err != nil {
					return err
				}
			}
		}
		return nil
	})
	return err
}

// deadlineReads is how many keys eachDeadline reads in one etcd
// transaction: well under etcd's default --max-txn-ops (128).
const deadlineReads = 64

// eachLiveByModRev calls fn with every live key of the prefix at revision
// rev, oldest change first (mod revision order, the order a snapshot
// file's log needs), reading viewPage keys at a time. etcd sorts the
// range for each page; a revision is never split between two pages.
func (s *Store) eachLiveByModRev(ctx context.Context, k dataKeys, rev uint64, fn func(ctxd.Record) error) error {
	if rev == 0 {
		return nil
	}
	dir := k.prefix + liveDir
	read := func(opts ...clientv3.OpOption) (*clientv3.GetResponse, error) {
		rctx, cancel := context.WithTimeout(ctx, s.opts.RequestTimeout)
		defer cancel()
		opts = append(opts, clientv3.WithPrefix(), clientv3.WithRev(int64(rev)),
			clientv3.WithSort(clientv3.SortByModRevision, clientv3.SortAscend))
		resp, err := s.cli.Get(rctx, dir, opts...)
		if err != nil {
			return nil, s.revisionError(rctx, err, rev)
		}
		return resp, nil
	}
	emit := func(kvs []*mvccpb.KeyValue) error {
		for _, kv := range kvs {
			_, ns, key, ok := k.parse(kv.Key)
			if !ok {
				continue
			}
			r, err := record(ns, key, kv)
			if err != nil {
				return err
			}
			if err := fn(r); err != nil {
				return err
			}
		}
		return nil
	}
	for next := int64(1); ; {
		resp, err := read(clientv3.WithMinModRev(next), clientv3.WithLimit(viewPage))
		if err != nil {
			return err
		}
		kvs := resp.Kvs
		if !resp.More || len(kvs) == 0 {
			return emit(kvs)
		}
		last := kvs[len(kvs)-1].ModRevision
		whole := len(kvs)
		for whole > 0 && kvs[whole-1].ModRevision == last {
			whole--
		}
		if err := emit(kvs[:whole]); err != nil {
			return err
		}
		// The last revision of the page may go on in the next: read it
		// whole (one transaction, possibly larger than a page).
		resp, err = read(clientv3.WithMinModRev(last), clientv3.WithMaxModRev(last))
		if err != nil {
			return err
		}
		if err := emit(resp.Kvs); err != nil {
			return err
		}
		next = last + 1
	}
}

// OpenSnapshot opens a snapshot file of either backend (both write the
// bolt backend's format) for reading.
func (s *Store) OpenSnapshot(path string) (store.Snapshot, error) {
	snap, err := bolt.OpenSnapshot(path)
	if err != nil {
		return nil, err // not a store.Snapshot holding a nil *bolt.Snapshot
	}
	return snap, nil
}
