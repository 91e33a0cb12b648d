package etcd

import (
	"context"
	"strconv"
	"strings"

	clientv3 "go.etcd.io/etcd/client/v3"
)

// Removing replaced generations, resumably. A full restore deletes the
// generation it replaced right after its switch; a restorer that dies
// between the two (or before its switch, with its new generation half
// written) leaves keys that no generation reads. Every instance removes
// them at Open and after its watch sees a switch (removeStaleGenerations;
// but its own restore's switch, which the restore follows with that
// removal itself), so whoever comes next finishes the job.
//
// Which generations are garbage:
//   - every generation whose id is below the pointer's mod revision,
//     except the current one: a restore that claimed its id before the
//     current switch can no longer switch (its switch compares the
//     pointer it started from, which has moved), so nothing will ever read
//     them;
//   - a generation above it is a restore that claimed after the switch:
//     in flight while its restorer holds its mark (restoringDir + id, on
//     a lease the restorer keeps alive), garbage once the mark is gone (the
//     restorer died or gave up: the lease ran out). Its switch compares the
//     mark, so a restore whose generation was removed under it cannot
//     switch to it.
//   - generation 0's data (directly under the prefix) once any other
//     generation is current.

// restoringDir holds the marks of full restores in flight:
// <prefix>meta/restoring/<id>, each on its restorer's lease.
const restoringDir = "meta/restoring/"

// restoreMarkTTL is the lease of a restore's mark, in seconds: how long
// after its restorer died its half-written generation is kept.
const restoreMarkTTL = 10

// markKey is the etcd key of generation id's mark.
func (s *Store) markKey(id uint64) string {
	return s.opts.Prefix + restoringDir + strconv.FormatUint(id, 10)
}

// markRestore puts generation id's mark on a lease kept alive until the
// returned function is called (which revokes it, removing the mark).
func (s *Store) markRestore(ctx context.Context, id uint64) (unmark func(), err error) {
	gctx, cancel := context.WithTimeout(ctx, s.opts.RequestTimeout)
	defer cancel()
	lease, err := s.cli.Grant(gctx, max(restoreMarkTTL, s.minLeaseTTL))
	if err != nil {
		return nil, writeError(err, beforeSwitch)
	}
	if _, err := s.cli.Put(gctx, s.markKey(id), "", clientv3.WithLease(lease.ID)); err != nil {
		return nil, writeError(err, beforeSwitch)
	}
	kctx, stop := context.WithCancel(context.Background())
	alive, err := s.cli.KeepAlive(kctx, lease.ID)
	if err != nil {
		stop()
		return nil, writeError(err, beforeSwitch)
	}
	go func() {
		for range alive { // the client needs its answers read
		}
	}()
	return func() {
		stop()
		rctx, cancel := context.WithTimeout(context.Background(), s.opts.RequestTimeout)
		defer cancel()
		_, _ = s.cli.Revoke(rctx, lease.ID) // else the mark ends with its lease
	}, nil
}

// markCompare is the condition of a restore's switch: its mark is there.
func (s *Store) markCompare(id uint64) clientv3.Cmp {
	return clientv3.Compare(clientv3.CreateRevision(s.markKey(id)), ">", 0)
}

// removeStaleGenerations deletes the keys of every generation that no
// instance reads and no restore in flight writes (the rule above), as far
// as etcd answers: what is left is removed next time. It returns how many
// generations it removed.
func (s *Store) removeStaleGenerations(ctx context.Context) int {
	rctx, cancel := context.WithTimeout(ctx, s.opts.RequestTimeout)
	defer cancel()
	cur, err := s.readGeneration(rctx)
	if err != nil {
		return 0
	}
	ptr := clientv3.Compare(clientv3.ModRevision(s.opts.Prefix+genKey), "=", cur.rev)
	removed := 0
	if cur.id != 0 {
		old := dataKeys{prefix: s.opts.Prefix}
		resp, err := s.cli.Txn(rctx).Then(
			clientv3.OpGet(old.prefix+liveDir, clientv3.WithPrefix(), clientv3.WithCountOnly()),
			clientv3.OpGet(old.prefix+tombDir, clientv3.WithPrefix(), clientv3.WithCountOnly())).Commit()
		if err == nil && resp.Responses[0].GetResponseRange().Count+resp.Responses[1].GetResponseRange().Count > 0 {
			tresp, err := s.cli.Txn(rctx).If(ptr).Then(clientv3.OpDelete(old.prefix+liveDir, clientv3.WithPrefix()),
				clientv3.OpDelete(old.prefix+tombDir, clientv3.WithPrefix())).Commit()
			if err == nil && tresp.Succeeded {
				removed++
			}
		}
	}
	for _, id := range s.generationsPresent(rctx) {
		if id == cur.id {
			continue
		}
		cmps := []clientv3.Cmp{ptr}
		if id > uint64(cur.rev) {
			// Claimed after the switch: only once its restorer's mark is gone.
			cmps = append(cmps, clientv3.Compare(clientv3.CreateRevision(s.markKey(id)), "=", 0))
		}
		resp, err := s.cli.Txn(rctx).If(cmps...).Then(clientv3.OpDelete(genPrefix(s.opts.Prefix, id), clientv3.WithPrefix())).Commit()
		if err == nil && resp.Succeeded {
			removed++
		}
	}
	return removed
}

// cleanLater removes stale generations in the background (until ctx,
// the watch's, ends): at Open, and when the watch saw a switch.
func (s *Store) cleanLater(ctx context.Context) {
	s.background.Go(func() { s.removeStaleGenerations(ctx) })
}

// generationsPresent lists the ids of the generations that have keys
// under <prefix>g/: one 1-key read per generation (a skip-scan).
func (s *Store) generationsPresent(ctx context.Context) []uint64 {
	dir := s.opts.Prefix + "g/"
	end := clientv3.GetPrefixRangeEnd(dir)
	var ids []uint64
	from := dir
	for {
		resp, err := s.cli.Get(ctx, from, clientv3.WithRange(end), clientv3.WithKeysOnly(), clientv3.WithLimit(1))
		if err != nil || len(resp.Kvs) == 0 {
			return ids
		}
		rest := strings.TrimPrefix(string(resp.Kvs[0].Key), dir)
		idText, _, _ := strings.Cut(rest, "/")
		if id, err := strconv.ParseUint(idText, 10, 64); err == nil && id > 0 {
			ids = append(ids, id)
		}
		// The next generation's keys start after every key of this one:
		// '0' follows '/'.
		from = dir + idText + "0"
	}
}
