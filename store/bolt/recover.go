package bolt

import (
	"bytes"
	"errors"
	"fmt"
	"io/fs"
	"syscall"
	"time"

	bbolt "go.etcd.io/bbolt"

	"github.com/framework0/ctxd"
	"github.com/framework0/ctxd/internal/failpoint"
	"github.com/framework0/ctxd/internal/fsutil"
	"github.com/framework0/ctxd/migrations"
	"github.com/framework0/ctxd/store/wal"
)

// replayBatch bounds the changes of one bbolt transaction of the replay.
const replayBatch = 4096

// openWAL opens the write-ahead log next to the database (creating it for
// a database that never had one: its first record follows meta/wal_seq)
// and replays into the database the records after meta/wal_seq, in
// batches, each recording how far it got. A log that does not verify, or
// that lacks records the database has not applied, stops Open with an
// error naming the file: nothing acknowledged is ever dropped silently.
func (s *Store) openWAL(opts Options) error {
	dir := s.walDir
	if err := fsutil.MkdirAll(dir, 0o700); err != nil {
		return fmt.Errorf("open store %s: write-ahead log: %w", s.path, err)
	}
	if err := s.owner.Give(dir); err != nil {
		return fmt.Errorf("open store %s: write-ahead log: %w", s.path, err)
	}
	lock, err := lockDir(dir)
	if errors.Is(err, fs.ErrPermission) {
		return openDenied(s.path, s.walDir, err)
	}
	if err != nil {
		return fmt.Errorf("open store %s: write-ahead log %s: %w", s.path, dir, err)
	}
	var applied uint64
	if err := s.db.View(func(tx *bbolt.Tx) error {
		applied = metaUint(tx, migrations.KeyWALSeq)
		return nil
	}); err != nil {
		unlockDir(lock)
		return err
	}
	log, err := wal.Open(dir, wal.Options{SegmentSize: opts.WALSegmentSize, FirstSeq: applied + 1, Owner: s.owner, ResourceWait: opts.WALResourceWait})
	if err != nil {
		unlockDir(lock)
		if errors.Is(err, fs.ErrPermission) {
			return openDenied(s.path, s.walDir, err)
		}
		if errors.Is(err, syscall.ENOSPC) {
			// Nothing is wrong with the log but room: its next segment
			// is reserved whole, ahead of the writes.
			return fmt.Errorf("open store %s: no space on the disk for the write-ahead log's next segment "+
				"(%s, wal.segment_bytes, reserved ahead of the writes): free space on the disk, or give a smaller wal.segment_bytes: %w",
				s.path, ctxd.FormatBytes(opts.WALSegmentSize), err)
		}
		return fmt.Errorf("open store %s: the write-ahead log does not open, so acknowledged writes could be missing: "+
			"the server will not start on it (keep the folder for investigation): %w", s.path, err)
	}
	fail := func(err error) error {
		_ = log.Close()
		unlockDir(lock)
		return fmt.Errorf("open store %s: %w", s.path, err)
	}
	if last := log.LastSeq(); last < applied {
		return fail(fmt.Errorf("the write-ahead log in %s ends at record %d, but the database holds records up to %d: "+
			"the log is not this database's: the database file was replaced by hand (use ctxd restore), "+
			"or the disk lost log writes it had reported synced (a write cache without power-loss protection); "+
			"the server will not start on them", dir, last, applied))
	}
	start := time.Now()
	s.recovery = Recovery{Log: log.Recovery(), SchemaFrom: s.upgradedFrom, SchemaUpgradeTook: s.upgradeTook}
	if err := s.replay(log, applied); err != nil {
		if errors.Is(err, wal.ErrReleased) {
			err = fmt.Errorf("the write-ahead log in %s no longer holds record %d, the first the database does not have "+
				"(the log starts at record %d): acknowledged writes are missing, the server will not start: %w",
				dir, applied+1, log.FirstSeq(), err)
		}
		return fail(err)
	}
	s.recovery.Took = time.Since(start)
	if s.recovery.Records > 0 {
		// The replay changed the file: read the state again.
		if err := s.load(); err != nil {
			return fail(err)
		}
	}
	s.recovery.Revision = s.rev
	s.wal, s.walLock = log, lock
	// The log may still hold records the database has. They are released
	// only after a commit of this process (the replay's, or the
	// committer's next one), never on the word of the file alone: a
	// process before this one, in the same boot, may have failed at the
	// fdatasync of bbolt's meta page, which then stays in the page cache
	// (read as committed) without being on the disk; a power cut would
	// take it back, and the records with it. A successful commit makes
	// the disk hold all the page cache showed: the failed commit's data
	// pages were synced before its meta page, and the new meta page
	// replaces it.
	if s.recovery.Records > 0 {
		_ = log.ReleaseBefore(log.LastSeq() + 1)
	}
	return nil
}

// replay applies the log records after applied to the database, in
// transactions of about replayBatch changes. Each record's changes must
// continue the database's revisions exactly.
func (s *Store) replay(log *wal.Log, applied uint64) error {
	next := s.rev + 1
	var b batch
	flush := func() error {
		if len(b.changes) == 0 && len(b.extends) == 0 {
			return nil
		}
		if err := applyChanges(s.db, b); err != nil {
			return fmt.Errorf("replay the write-ahead log into the database: %w", err)
		}
		b = batch{}
		return nil
	}
	err := log.Replay(applied, func(seq uint64, rec []byte) error {
		got, err := decodeWALRecord(seq, append([]byte(nil), rec...))
		if err != nil {
			return fmt.Errorf("%w (in %s)", err, s.walDir)
		}
		id, cs := got.id, got.changes
		if !bytes.Equal(id, s.id) {
			return fmt.Errorf("write-ahead log record %d (in %s) is of store %x, the database is store %x: "+
				"the log is not this database's, the server will not start on them", seq, s.walDir, id, s.id)
		}
		for _, c := range cs {
			if c.Revision != next {
				return fmt.Errorf("write-ahead log record %d (in %s) holds revision %d where the database expects %d: "+
					"the log is not this database's: the database file was replaced by hand (use ctxd restore), or the disk "+
					"lost writes it had reported synced (a write cache without power-loss protection); "+
					"the server will not start on them", seq, s.walDir, c.Revision, next)
			}
			next++
		}
		b.changes = append(b.changes, cs...)
		b.extends = append(b.extends, got.extends...)
		b.seq = seq
		s.recovery.Records++
		s.recovery.Changes += uint64(len(cs))
		if len(b.changes)+len(b.extends) >= replayBatch {
			if err := flush(); err != nil {
				return err
			}
			failpoint.Hit(failpoint.ReplayBetweenBatches)
		}
		return nil
	})
	if err != nil {
		return err
	}
	return flush()
}

// Recovery is what Open found in the write-ahead log and replayed.
func (s *Store) Recovery() Recovery { return s.recovery }
