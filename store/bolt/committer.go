package bolt

import (
	"fmt"
	"time"

	"github.com/framework0/ctxd"
	"github.com/framework0/ctxd/internal/failpoint"
)

// committer applies acknowledged changes (the overlay) to bbolt in the
// background, in batches: once CommitInterval has passed since it found
// changes waiting, or at once when CommitChanges wait or a checkpoint
// asks. Each batch is one bbolt transaction with bbolt's own fsyncs,
// which also records the last write-ahead log record it holds
// (meta/wal_seq). Once that commit has returned, the changes leave the
// overlay and the log segments they were in are released.
//
// After Close has stopped the writer, the committer applies everything
// left and exits. A failed commit fails the store (fail): the changes are
// in the log, and the next Open replays them.
func (s *Store) committer() {
	defer close(s.commitDone)
	timer := time.NewTimer(time.Hour)
	timer.Stop()
	stopping := false
	for {
		n := int(s.ov.size.Load())
		if n == 0 {
			if stopping {
				return
			}
			// Idle, announced before the size is read again: a publish
			// after the read sees the flag and wakes it (wakeAfterPublish).
			s.commitIdle.Store(true)
			if s.ov.size.Load() == 0 {
				select {
				case <-s.commitWake:
				case <-s.commitStop:
					stopping = true
				}
			}
			s.commitIdle.Store(false)
			continue
		}
		if !stopping && n < s.commitChanges && s.urgent.Load() == 0 {
			timer.Reset(s.commitInterval)
		wait:
			for {
				select {
				case <-timer.C:
					break wait
				case <-s.commitWake:
					if int(s.ov.size.Load()) >= s.commitChanges || s.urgent.Load() > 0 {
						timer.Stop()
						break wait
					}
				case <-s.commitStop:
					stopping = true
					timer.Stop()
					break wait
				}
			}
		}
		if err := s.applyPending(); err != nil {
			s.fail(err)
			// Nothing more can be applied: let the writer and the
			// checkpoints see the failure, and wait for Close.
			if !stopping {
				<-s.commitStop
			}
			return
		}
	}
}

// applyPending applies the oldest changes of the overlay to bbolt in one
// transaction, then removes them from the overlay and releases the log
// segments that held only them.
func (s *Store) applyPending() error {
	b := s.ov.pending(4 * s.commitChanges)
	if len(b.changes) == 0 && len(b.extends) == 0 {
		return nil
	}
	var first, last uint64
	if len(b.changes) > 0 {
		first, last = b.changes[0].Revision, b.changes[len(b.changes)-1].Revision
	}
	start := time.Now()
	s.applyMu.Lock()
	s.dbMu.RLock()
	err := applyChanges(s.db, b)
	if err == nil {
		s.measure()
	}
	s.dbMu.RUnlock()
	s.applyMu.Unlock()
	if err != nil {
		return fmt.Errorf("apply revisions %d to %d and %d keepalives to the database: %w", first, last, len(b.extends), err)
	}
	s.stats.applies.Add(1)
	s.stats.applied.Add(uint64(len(b.changes)))
	s.stats.applyNanos.Add(int64(time.Since(start)))
	failpoint.Hit(failpoint.CommitterBeforeRelease)
	// bbolt has the batch: the cached state of its keys goes before the
	// overlay stops answering for them (getcache.go).
	s.cache.invalidateBatch(b)
	s.ov.drop(last, b.seq)
	// A release that fails deletes nothing or some segments, oldest
	// first; the next one retries. The records are in the database.
	_ = s.wal.ReleaseBefore(b.seq + 1)
	return nil
}

// checkpoint waits until bbolt holds every change acknowledged so far
// (snapshots, views, restores, defrag, compaction work on bbolt alone).
func (s *Store) checkpoint() error {
	return s.checkpointTo(s.Revision())
}

// checkpointTo waits until bbolt holds every change up to rev, and every
// keepalive acknowledged so far.
func (s *Store) checkpointTo(rev uint64) error {
	s.urgent.Add(1)
	defer s.urgent.Add(-1)
	xseq := s.ov.lastExtendSeq()
	for {
		base, _, _, _, drained := s.ov.state()
		if base >= rev && !s.ov.extendsUpTo(xseq) {
			return nil
		}
		select {
		case s.commitWake <- struct{}{}:
		default:
		}
		select {
		case <-drained:
		case <-s.failed:
			return *s.failure.Load()
		case <-s.commitDone:
			if base, _, _, _, _ := s.ov.state(); base >= rev && !s.ov.extendsUpTo(xseq) {
				return nil
			}
			return ctxd.ErrClosed
		}
	}
}
