package store

import (
	"bytes"
	"context"
	"encoding/binary"
	"fmt"

	"github.com/framework0/ctxd/migrations"
	bolt "go.etcd.io/bbolt"
)

// compactChunk bounds the log entries examined per transaction, so a large
// compaction never holds the write lock for long.
const compactChunk = 10000

// Compact discards history below revision rev: afterwards reads at a
// revision below rev fail with ErrCompacted, while reads at rev or later
// still answer exactly. For each key, the change in effect at rev is kept.
func (s *Store) Compact(ctx context.Context, rev uint64) error {
	if rev == 0 {
		return invalidf("compact revision must be at least 1")
	}
	if cur := s.Revision(); rev > cur {
		return fmt.Errorf("%w: compact to revision %d, current revision is %d", ErrFutureRevision, rev, cur)
	}
	if rev <= s.compacted.Load() {
		return nil
	}
	s.dbMu.RLock()
	defer s.dbMu.RUnlock()
	// Raise the mark first, so no reader is answered from half-compacted history.
	err := s.db.Update(func(tx *bolt.Tx) error {
		return tx.Bucket(migrations.BucketMeta).Put(migrations.KeyCompacted, encodeRevision(rev))
	})
	if err != nil {
		return fmt.Errorf("compact: %w", err)
	}
	s.compacted.Store(rev)
	var from uint64
	for {
		if err := ctx.Err(); err != nil {
			return fmt.Errorf("compact: %w", err)
		}
		var done bool
		err := s.db.Update(func(tx *bolt.Tx) error {
			var err error
			from, done, err = compactChunkBelow(tx, from, rev)
			return err
		})
		if err != nil {
			return fmt.Errorf("compact: %w", err)
		}
		if done {
			return nil
		}
	}
}

// compactChunkBelow removes, from revision from upward and below limit,
// every log entry that is not the change in effect at limit for its key.
func compactChunkBelow(tx *bolt.Tx, from, limit uint64) (next uint64, done bool, err error) {
	logc := tx.Bucket(migrations.BucketLog).Cursor()
	n := 0
	k, v := logc.Seek(encodeRevision(from))
	for ; k != nil; k, v = logc.Seek(encodeRevision(from)) {
		rev := binary.BigEndian.Uint64(k)
		if rev >= limit {
			return rev, true, nil
		}
		if n == compactChunk {
			return rev, false, nil
		}
		n++
		from = rev + 1
		e, err := decodeChange(rev, v)
		if err != nil {
			return 0, false, fmt.Errorf("log revision %d: %w", rev, err)
		}
		hist := tx.Bucket(migrations.HistBucket(e.Namespace))
		if hist == nil {
			return 0, false, fmt.Errorf("log revision %d: namespace %s has no history bucket: %w", rev, e.Namespace, errCorrupt)
		}
		if e.Op == OpPut && !supersededBy(hist, e.Key, rev, limit) {
			continue
		}
		if err := logc.Delete(); err != nil {
			return 0, false, err
		}
		if err := hist.Delete(histKey(e.Key, rev)); err != nil {
			return 0, false, err
		}
	}
	return from, true, nil
}

// supersededBy reports whether key changed again after rev and at or below limit.
func supersededBy(hist *bolt.Bucket, key string, rev, limit uint64) bool {
	k, _ := hist.Cursor().Seek(histKey(key, rev+1))
	prefix := histPrefix(key)
	if k == nil || !bytes.HasPrefix(k, prefix) || len(k) != len(prefix)+8 {
		return false
	}
	return binary.BigEndian.Uint64(k[len(prefix):]) <= limit
}
