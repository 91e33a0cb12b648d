package bolt

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"time"

	bbolt "go.etcd.io/bbolt"
	berrors "go.etcd.io/bbolt/errors"

	"github.com/framework0/ctxd"
	"github.com/framework0/ctxd/internal/failpoint"
	"github.com/framework0/ctxd/migrations"
	"github.com/framework0/ctxd/store"
)

// compactChunk bounds the log entries examined per transaction: each chunk
// holds bbolt's write lock for a few milliseconds at most, so writers keep
// committing while a large compaction runs.
const compactChunk = 1000

// Compact discards history below revision rev: afterwards reads at a
// revision below rev fail with ErrCompacted, while reads at rev or later
// still answer exactly. For each key, the change in effect at rev is kept.
func (s *Store) Compact(ctx context.Context, rev uint64) error {
	_, err := s.CompactKeep(ctx, rev, 1)
	return err
}

// CompactKeep is Compact that keeps, below rev, the keep newest changes of
// each key at or below rev (at least the one in effect at rev).
//
// It examines only the log from the last finished compaction's revision on
// (meta/pruned), when that one kept no more than keep changes per key:
// below it, only the keys changed since can hold too many. A compaction
// asked at the mark of one a crash interrupted resumes it (meta/pruning).
func (s *Store) CompactKeep(ctx context.Context, rev uint64, keep int) (ctxd.CompactResult, error) {
	if rev == 0 {
		return ctxd.CompactResult{}, ctxd.Invalidf("compact revision must be at least 1")
	}
	if keep < 1 {
		keep = 1
	}
	if cur := s.Revision(); rev > cur {
		return ctxd.CompactResult{}, ctxd.FutureRevision(rev, cur)
	}
	s.maint.Lock()
	defer s.maint.Unlock()
	res := ctxd.CompactResult{Revision: max(rev, s.compacted.Load())}
	if rev < s.compacted.Load() {
		return res, nil
	}
	// Compaction works on bbolt alone: let it hold every change up to rev.
	if err := s.checkpointTo(rev); err != nil {
		return res, fmt.Errorf("compact: %w", err)
	}
	gen := s.generation.Load()
	var p compactPass
	if rev == s.compacted.Load() {
		// Asked again: resume the pass a crash interrupted, if it was this
		// one (keeping no more than asked now); else it is done if the
		// last finished pass was at rev and kept no more than asked now.
		// A pass keeping fewer at the same revision still has work: that
		// is the remedy for a full quota (compact keep_versions=1), which
		// did nothing when asked right after a compaction that kept 10.
		var resume, finished bool
		if err := s.view(func(tx *bbolt.Tx) error {
			meta := tx.Bucket(migrations.BucketMeta)
			p, resume = decodePass(meta.Get(migrations.KeyPruning))
			if v := meta.Get(migrations.KeyPruned); len(v) == 16 {
				finished = binary.BigEndian.Uint64(v) == rev && binary.BigEndian.Uint64(v[8:]) <= uint64(keep)
			}
			return nil
		}); err != nil {
			return res, fmt.Errorf("compact: %w", err)
		}
		switch {
		case resume && p.limit == rev && p.keep <= uint64(keep):
			// Resume the interrupted pass (p.limit == rev: no new one).
		case finished:
			return res, nil
		default:
			p = compactPass{} // a new pass at rev (below: p.limit != rev)
		}
	}
	// Raise the mark first, so no reader is answered from half-compacted
	// history, and record the pass in the same transaction.
	var err error
	if p.limit != rev {
		err = s.update(gen, func(tx *bbolt.Tx) error {
			meta := tx.Bucket(migrations.BucketMeta)
			p = compactPass{limit: rev, keep: uint64(keep)}
			if v := meta.Get(migrations.KeyPruned); len(v) == 16 {
				done, doneKeep := binary.BigEndian.Uint64(v), binary.BigEndian.Uint64(v[8:])
				if doneKeep <= p.keep && done <= rev {
					p.start = done
				}
			}
			p.next = p.start
			if err := meta.Put(migrations.KeyCompacted, encodeRevision(rev)); err != nil {
				return err
			}
			return meta.Put(migrations.KeyPruning, p.encode())
		})
	}
	if err != nil {
		return res, fmt.Errorf("compact: %w", err)
	}
	s.compacted.Store(rev)
	for {
		if err := ctx.Err(); err != nil {
			return res, fmt.Errorf("compact: %w", err)
		}
		var done bool
		var removed, examined int
		err := s.update(gen, func(tx *bbolt.Tx) error {
			chunk := p
			var err error
			if removed, examined, done, err = chunk.run(tx); err != nil {
				return err
			}
			if err := chunk.record(tx, done); err != nil {
				return err
			}
			p = chunk
			return nil
		})
		if err != nil {
			return res, fmt.Errorf("compact: %w", err)
		}
		res.Removed += removed
		s.stats.compacted.Add(uint64(removed))
		s.stats.compactExamined.Add(uint64(examined))
		if done {
			s.stats.compactions.Add(1)
			return res, nil
		}
		failpoint.Hit(failpoint.CompactBetweenChunks)
		if s.afterCompactChunk != nil {
			s.afterCompactChunk()
		}
	}
}

// errReplaced stops maintenance that started before the database file was
// replaced by a restore.
var errReplaced = errors.New("the database was replaced by a restore while this ran")

// update runs fn in a write transaction of the database of generation gen.
func (s *Store) update(gen uint64, fn func(tx *bbolt.Tx) error) error {
	s.dbMu.RLock()
	defer s.dbMu.RUnlock()
	if s.generation.Load() != gen {
		return errReplaced
	}
	err := s.db.Update(fn)
	if errors.Is(err, berrors.ErrDatabaseNotOpen) {
		return ctxd.ErrClosed
	}
	if err == nil {
		s.measure()
	}
	return err
}

// compactPass is one compaction: changes below limit that are not among
// the keep newest of their key at or below limit go. Below start, each
// key already holds at most keep changes, so only the log from start on
// is examined: each change there is judged, and the key of the newest
// one examined has its changes below start judged too. next is the next
// log revision to examine.
type compactPass struct {
	limit, keep, start, next uint64
}

func (p compactPass) encode() []byte {
	b := make([]byte, 0, 32)
	for _, v := range []uint64{p.limit, p.keep, p.start, p.next} {
		b = binary.BigEndian.AppendUint64(b, v)
	}
	return b
}

// decodePass reads a meta/pruning record; ok is false when there is none.
func decodePass(v []byte) (p compactPass, ok bool) {
	if len(v) != 32 {
		return compactPass{}, false
	}
	u := func(i int) uint64 { return binary.BigEndian.Uint64(v[8*i:]) }
	return compactPass{limit: u(0), keep: u(1), start: u(2), next: u(3)}, u(1) > 0
}

// record writes where the pass stands in the transaction of its chunk: the
// next revision to examine, or, when done, the pass as the last finished
// one.
func (p compactPass) record(tx *bbolt.Tx, done bool) error {
	meta := tx.Bucket(migrations.BucketMeta)
	if !done {
		return meta.Put(migrations.KeyPruning, p.encode())
	}
	if err := meta.Delete(migrations.KeyPruning); err != nil {
		return err
	}
	return meta.Put(migrations.KeyPruned, binary.BigEndian.AppendUint64(encodeRevision(p.limit), p.keep))
}

// run examines up to compactChunk log entries from p.next, removing what
// the pass removes, and moves p.next past them.
func (p *compactPass) run(tx *bbolt.Tx) (removed, examined int, done bool, err error) {
	log := tx.Bucket(migrations.BucketLog)
	logc := log.Cursor()
	keep := int(p.keep)
	for k, v := logc.Seek(encodeRevision(p.next)); k != nil; k, v = logc.Seek(encodeRevision(p.next)) {
		rev := binary.BigEndian.Uint64(k)
		if rev > p.limit {
			return removed, examined, true, nil
		}
		if examined == compactChunk {
			return removed, examined, false, nil
		}
		examined++
		p.next = rev + 1
		e, err := decodeChangeShared(rev, v)
		if err != nil {
			return removed, examined, false, fmt.Errorf("log revision %d: %w", rev, err)
		}
		hist := tx.Bucket(migrations.HistBucket(e.Namespace))
		if hist == nil {
			return removed, examined, false, fmt.Errorf("log revision %d: namespace %s has no history bucket: %w", rev, e.Namespace, errCorrupt)
		}
		newer := newerChanges(hist, e.Key, rev, p.limit, keep)
		if newer == 0 && p.start > 0 {
			n, err := pruneBelow(log, hist, e.Key, p.start, p.limit, keep)
			if err != nil {
				return removed, examined, false, err
			}
			removed += n
		}
		// A delete that is its key's newest change goes when keep is 1: the
		// key did not exist at limit.
		if rev == p.limit || newer < keep-1 || (newer == keep-1 && !(keep == 1 && e.Op == ctxd.OpDelete)) {
			continue
		}
		if err := log.Delete(k); err != nil {
			return removed, examined, false, err
		}
		if err := hist.Delete(histKey(e.Key, rev)); err != nil {
			return removed, examined, false, err
		}
		removed++
	}
	return removed, examined, true, nil
}

// newerChanges counts, up to keep, the changes of key after rev and at or
// below limit.
func newerChanges(hist *bbolt.Bucket, key string, rev, limit uint64, keep int) int {
	c := hist.Cursor()
	prefix := histPrefix(key)
	n := 0
	for k, _ := c.Seek(histKey(key, rev+1)); k != nil && n < keep; k, _ = c.Next() {
		if !isHistOf(k, prefix) || binary.BigEndian.Uint64(k[len(prefix):]) > limit {
			break
		}
		n++
	}
	return n
}

// pruneBelow removes the changes of key below start that are not among its
// keep newest at or below limit, and returns how many it removed. They are
// few: a finished compaction left at most keep below start.
func pruneBelow(log, hist *bbolt.Bucket, key string, start, limit uint64, keep int) (int, error) {
	prefix := histPrefix(key)
	c := hist.Cursor()
	// The key's changes from start to limit, up to keep.
	above := 0
	first, _ := c.Seek(histKey(key, start))
	for k := first; k != nil && above < keep && isHistOf(k, prefix) && binary.BigEndian.Uint64(k[len(prefix):]) <= limit; k, _ = c.Next() {
		above++
	}
	// The changes below start, newest first: the i-th has above+i newer.
	k, _ := c.Seek(histKey(key, start))
	if k == nil {
		k, _ = c.Last()
	} else {
		k, _ = c.Prev()
	}
	var doomed []uint64
	for i := 0; k != nil && isHistOf(k, prefix); k, _ = c.Prev() {
		if above+i >= keep {
			doomed = append(doomed, binary.BigEndian.Uint64(k[len(prefix):]))
		}
		i++
	}
	for _, rev := range doomed {
		if err := log.Delete(encodeRevision(rev)); err != nil {
			return 0, err
		}
		if err := hist.Delete(histKey(key, rev)); err != nil {
			return 0, err
		}
	}
	return len(doomed), nil
}

// isHistOf reports whether k is a history index key of the key whose
// prefix (histPrefix) is prefix.
func isHistOf(k, prefix []byte) bool {
	return len(k) == len(prefix)+8 && bytes.HasPrefix(k, prefix)
}

// ApplyRetention compacts history as policy allows.
func (s *Store) ApplyRetention(ctx context.Context, p store.RetentionPolicy) (ctxd.CompactResult, error) {
	var total ctxd.CompactResult
	// The cut-offs are searched in bbolt's log: let it hold every change.
	if err := s.checkpoint(); err != nil {
		return total, fmt.Errorf("retention: %w", err)
	}
	cur := s.Revision()
	if p.KeepFor > 0 {
		if rev, err := s.firstRevisionAfter(s.now().Add(-p.KeepFor)); err != nil {
			return total, err
		} else if rev = min(rev, belowKeptWhole(cur, p.KeepRevisions)); rev > 1 {
			res, err := s.CompactKeep(ctx, rev, 1)
			total.Removed += res.Removed
			if err != nil {
				return total, err
			}
		}
	}
	if rev := belowKeptWhole(cur, p.KeepRevisions); p.KeepVersions > 0 && rev > 0 {
		res, err := s.CompactKeep(ctx, rev, p.KeepVersions)
		total.Removed += res.Removed
		if err != nil {
			return total, err
		}
	}
	total.Revision = s.compacted.Load()
	return total, nil
}

// belowKeptWhole returns the highest revision ApplyRetention may compact
// at: it keeps the newest keep revisions whole, by age as by count, so
// that watchers can resume and recent point-in-time reads work (a quiet
// server with a short keep_for, or a clock stepped forward, lost every
// revision older than keep_for). 0: none.
func belowKeptWhole(cur, keep uint64) uint64 {
	if cur <= keep {
		return 0
	}
	return cur - keep
}

// firstRevisionAfter returns the first logged revision recorded at or after
// t (the current revision + 1 if none). Change times grow with revisions (the
// writer stamps each commit in order), so this is a binary search over the
// log's keys, not a scan: retention runs every compact_interval on logs of
// millions of entries. A wall clock that stepped back makes the cut-off
// approximate, never a wrong read: reads below it get ErrCompacted.
func (s *Store) firstRevisionAfter(t time.Time) (uint64, error) {
	var rev uint64
	err := s.view(func(tx *bbolt.Tx) error {
		c := tx.Bucket(migrations.BucketLog).Cursor()
		// at returns the first logged change at or after revision r.
		at := func(r uint64) (logEntry, bool, error) {
			k, v := c.Seek(encodeRevision(r))
			if k == nil {
				return logEntry{}, false, nil
			}
			e, err := decodeChange(binary.BigEndian.Uint64(k), v)
			return e, err == nil, err
		}
		lo, hi := s.compacted.Load(), lastRevision(tx)+1
		for lo < hi {
			mid := lo + (hi-lo)/2
			e, ok, err := at(mid)
			if err != nil {
				return err
			}
			if !ok || !e.Time.Before(t) {
				hi = mid
			} else {
				lo = e.Revision + 1
			}
		}
		rev = lo
		if e, ok, err := at(lo); err != nil {
			return err
		} else if ok {
			rev = e.Revision
		}
		return nil
	})
	return min(rev, s.Revision()), err
}
