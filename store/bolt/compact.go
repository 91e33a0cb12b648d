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
func (s *Store) CompactKeep(ctx context.Context, rev uint64, keep int) (ctxd.CompactResult, error) {
	if rev == 0 {
		return ctxd.CompactResult{}, ctxd.Invalidf("compact revision must be at least 1")
	}
	if keep < 1 {
		keep = 1
	}
	if cur := s.Revision(); rev > cur {
		return ctxd.CompactResult{}, fmt.Errorf("%w: compact to revision %d, current revision is %d", ctxd.ErrFutureRevision, rev, cur)
	}
	s.maint.Lock()
	defer s.maint.Unlock()
	res := ctxd.CompactResult{Revision: max(rev, s.compacted.Load())}
	if rev <= s.compacted.Load() {
		return res, nil
	}
	// Compaction works on bbolt alone: let it hold every change up to rev.
	if err := s.checkpointTo(rev); err != nil {
		return res, fmt.Errorf("compact: %w", err)
	}
	gen := s.generation.Load()
	// Raise the mark first, so no reader is answered from half-compacted history.
	err := s.update(gen, func(tx *bbolt.Tx) error {
		return tx.Bucket(migrations.BucketMeta).Put(migrations.KeyCompacted, encodeRevision(rev))
	})
	if err != nil {
		return res, fmt.Errorf("compact: %w", err)
	}
	s.compacted.Store(rev)
	var from uint64
	for {
		if err := ctx.Err(); err != nil {
			return res, fmt.Errorf("compact: %w", err)
		}
		var done bool
		var removed int
		err := s.update(gen, func(tx *bbolt.Tx) error {
			var err error
			from, removed, done, err = compactChunkBelow(tx, from, rev, keep)
			return err
		})
		if err != nil {
			return res, fmt.Errorf("compact: %w", err)
		}
		res.Removed += removed
		s.stats.compacted.Add(uint64(removed))
		if done {
			s.stats.compactions.Add(1)
			return res, nil
		}
		failpoint.Hit(failpoint.CompactBetweenChunks)
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

// compactChunkBelow removes, from revision from upward and below limit,
// every log entry that is not among the keep newest changes of its key at
// or below limit. A delete that is its key's newest change is removed too
// when keep is 1: the key did not exist at limit.
func compactChunkBelow(tx *bbolt.Tx, from, limit uint64, keep int) (next uint64, removed int, done bool, err error) {
	logc := tx.Bucket(migrations.BucketLog).Cursor()
	n := 0
	k, v := logc.Seek(encodeRevision(from))
	for ; k != nil; k, v = logc.Seek(encodeRevision(from)) {
		rev := binary.BigEndian.Uint64(k)
		if rev >= limit {
			return rev, removed, true, nil
		}
		if n == compactChunk {
			return rev, removed, false, nil
		}
		n++
		from = rev + 1
		e, err := decodeChange(rev, v)
		if err != nil {
			return 0, removed, false, fmt.Errorf("log revision %d: %w", rev, err)
		}
		hist := tx.Bucket(migrations.HistBucket(e.Namespace))
		if hist == nil {
			return 0, removed, false, fmt.Errorf("log revision %d: namespace %s has no history bucket: %w", rev, e.Namespace, errCorrupt)
		}
		newer := newerChanges(hist, e.Key, rev, limit, keep)
		if newer < keep-1 || (newer == keep-1 && !(keep == 1 && e.Op == ctxd.OpDelete)) {
			continue
		}
		if err := logc.Delete(); err != nil {
			return 0, removed, false, err
		}
		if err := hist.Delete(histKey(e.Key, rev)); err != nil {
			return 0, removed, false, err
		}
		removed++
	}
	return from, removed, true, nil
}

// newerChanges counts, up to keep, the changes of key after rev and at or
// below limit.
func newerChanges(hist *bbolt.Bucket, key string, rev, limit uint64, keep int) int {
	c := hist.Cursor()
	prefix := histPrefix(key)
	n := 0
	for k, _ := c.Seek(histKey(key, rev+1)); k != nil && n < keep; k, _ = c.Next() {
		if !bytes.HasPrefix(k, prefix) || len(k) != len(prefix)+8 || binary.BigEndian.Uint64(k[len(prefix):]) > limit {
			break
		}
		n++
	}
	return n
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
		} else if rev > 1 {
			res, err := s.CompactKeep(ctx, rev, 1)
			total.Removed += res.Removed
			if err != nil {
				return total, err
			}
		}
	}
	if p.KeepVersions > 0 && cur > p.KeepRevisions {
		res, err := s.CompactKeep(ctx, cur-p.KeepRevisions, p.KeepVersions)
		total.Removed += res.Removed
		if err != nil {
			return total, err
		}
	}
	total.Revision = s.compacted.Load()
	return total, nil
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
