package bolt

import (
	"bytes"
	"context"
	"fmt"
	"time"

	bbolt "go.etcd.io/bbolt"

	"github.com/framework0/ctxd"
	"github.com/framework0/ctxd/internal/failpoint"
	"github.com/framework0/ctxd/migrations"
	"github.com/framework0/ctxd/store"
)

// Restore replaces the live data with the snapshot at path, after
// verifying it. A full restore swaps the database file atomically: requests
// in flight finish first, none sees a half-restored state, the revision
// never goes back, and followers see a new Generation. A partial restore
// is one transaction of ordinary puts and deletes.
func (s *Store) Restore(ctx context.Context, path string, opts ctxd.RestoreOptions) (ctxd.RestoreResult, error) {
	snap, err := openVerified(path, 0)
	if err != nil {
		return ctxd.RestoreResult{}, err
	}
	defer snap.Close()
	return s.restore(ctx, snap, opts, "")
}

// openVerified opens the snapshot file at path (migrating an older schema
// in a temporary copy) and verifies every page and record of it; it waits
// up to lockTimeout (as Options.OpenTimeout) for the file's lock.
func openVerified(path string, lockTimeout time.Duration) (*Snapshot, error) {
	snap, err := openSnapshot(path, lockTimeout)
	if err != nil {
		return nil, err
	}
	if err := snap.Verify(); err != nil {
		_ = snap.Close()
		return nil, err
	}
	return snap, nil
}

// restore is Restore from a verified snapshot. With keep set, a full
// restore keeps the replaced file under that name (in the database's
// folder) instead of removing it.
func (s *Store) restore(ctx context.Context, snap *Snapshot, opts ctxd.RestoreOptions, keep string) (ctxd.RestoreResult, error) {
	for _, ns := range opts.Namespaces {
		if err := ctxd.ValidateNamespace(ns); err != nil {
			return ctxd.RestoreResult{}, err
		}
	}
	res := ctxd.RestoreResult{DryRun: opts.DryRun, Partial: opts.IsPartial()}
	var writes []ctxd.Write
	err := snap.readView(func(sv *View) error {
		res.SnapshotRevision = snapshotRevision(sv.tx)
		return s.readView(func(lv *View) error {
			var err error
			res.Namespaces, writes, err = store.RestoreDiff(sv, lv, opts, !opts.DryRun && opts.IsPartial())
			return err
		})
	})
	if err != nil {
		return ctxd.RestoreResult{}, fmt.Errorf("restore: compare with snapshot: %w", err)
	}
	if opts.DryRun {
		res.Revision = s.Revision()
		return res, nil
	}
	if opts.IsPartial() {
		if len(writes) > 0 {
			// An ordinary write: the storage quota applies (a full
			// restore, which replaces the file, is maintenance).
			r := newRequest(writes, s.limits)
			err := s.checkQuota(r)
			var out ctxd.TxnResult
			if err == nil {
				out, err = s.submit(ctx, r)
			}
			if err != nil {
				return ctxd.RestoreResult{}, fmt.Errorf("restore: %w", err)
			}
			res.Revision = out.Revision
		} else {
			res.Revision = s.Revision()
		}
		return res, nil
	}
	s.maint.Lock()
	defer s.maint.Unlock()
	s.restoring.Store(true)
	defer s.restoring.Store(false)
	next := s.path + suffixRestore
	if err := s.copyFits("the restore's copy of the snapshot", fileSize(snap.file())); err != nil {
		return ctxd.RestoreResult{}, fmt.Errorf("restore: %w", err)
	}
	if err := copyFile(next, snap.file()); err != nil {
		return ctxd.RestoreResult{}, fmt.Errorf("restore: copy snapshot: %w", err)
	}
	defer func() { _ = removeIfExists(next) }()
	if err := s.owner.Give(next); err != nil {
		return ctxd.RestoreResult{}, fmt.Errorf("restore: %w", err)
	}
	failpoint.Hit(failpoint.RestoreAfterCopy)
	backup := s.path + suffixBackup
	if keep != "" {
		backup = keep
	}
	var floor uint64
	err = s.exclusive(func() error {
		// Everything is in the live file (the writer checkpoints before
		// an exclusive request): the restored file holds every record of
		// the log, as far as the replay at the next Open is concerned.
		var err error
		if floor, err = setFloor(next, s.rev, s.wal.LastSeq(), s.id); err != nil {
			return err
		}
		return s.replaceFile(next, backup, swapRestore)
	})
	if keep == "" {
		s.removeBackup()
	}
	if err != nil {
		return ctxd.RestoreResult{}, fmt.Errorf("restore: %w", err)
	}
	// The restored state's revision, not the current one: writes made
	// since the swap may have moved it on (from_rev = the answer's
	// revision must not skip them).
	res.Revision = floor
	return res, nil
}

// errRestoring is why the store is not ready while a restore runs.
var errRestoring = fmt.Errorf("%w: %w", ctxd.ErrUnavailable, store.ErrRestoring)

// Ready is nil unless a full restore is replacing the database (from the
// copy of the snapshot to the swap: store.ErrRestoring), or the store
// failed (its write-ahead log or a commit to its database failed: it
// takes no more writes until a restart, store.ErrFailed): /readyz answers
// 503 then.
func (s *Store) Ready() error {
	select {
	case <-s.stop:
		return ctxd.ErrClosed
	default:
	}
	if err := s.failure.Load(); err != nil {
		return *err
	}
	if s.restoring.Load() {
		return errRestoring
	}
	return nil
}

// setFloor makes the prepared file the live store's after a full
// restore: its revision above every one the live store had (live), so
// revisions never go back and the restored state has a revision no
// earlier state had here; the revisions the restore discarded recorded;
// and the file the live store's in the eyes of its write-ahead log: its
// store id is id, and walSeq the last record it holds (the records of the
// log were applied to the file it replaces, and must never be replayed
// onto this one).
//
// A snapshot of this store (its store id is id) shares the live store's
// history up to its revision: the restored state takes live+1, and only
// the revisions after the snapshot's are discarded. Any other snapshot (of
// another server, of etcd, of this data before an offline restore gave it
// a new id) shares none of it, as far as this store can tell: every
// revision below the restored state's answers compacted, as after an
// offline restore into a new folder (newStore), and the restored state
// takes the snapshot's own revision when that is above live.
//
// It always commits, through openCopy, so that the file carries a freelist
// and opening it during the swap does not walk every page.
func setFloor(path string, live, walSeq uint64, id []byte) (floor uint64, err error) {
	db, err := openCopy(path)
	if err != nil {
		return 0, err
	}
	err = db.Update(func(tx *bbolt.Tx) error {
		meta := tx.Bucket(migrations.BucketMeta)
		if meta == nil || tx.Bucket(migrations.BucketLog) == nil {
			// openCopy creates a file that is gone: removed while it was
			// prepared (by hand; Open removes such files only in a folder
			// no server holds).
			return fmt.Errorf("the restored copy %s is not a ctxd database any more: was it removed while it was prepared?", path)
		}
		snapRev := lastRevision(tx)
		// A snapshot built from etcd numbered its changes itself
		// (source_revision), and one above live cannot be this store's
		// (its revision never goes back).
		ours := bytes.Equal(meta.Get(migrations.KeyStoreID), id) &&
			meta.Get(migrations.KeySourceRevision) == nil && snapRev <= live
		var discardFrom uint64
		floor, discardFrom = live+1, snapRev+1
		if !ours {
			floor, discardFrom = max(live+1, snapRev), 1
		}
		// The discarded revisions end below the floor, the restored
		// state's revision, which is above live: revision live named
		// the replaced state, and a read at it, or a watcher that had it,
		// must not be given the restored state under that number (a read
		// at live answered the replaced value before the restore and the
		// restored one after; a watcher resuming from live went on past
		// the restore unaware).
		for _, kv := range []struct {
			key []byte
			rev uint64
		}{
			{migrations.KeyWALSeq, walSeq},
			{migrations.KeyFloor, floor},
			{migrations.KeyRestoredFrom, snapRev},
			{migrations.KeyDiscardedFrom, discardFrom},
		} {
			if err := meta.Put(kv.key, encodeRevision(kv.rev)); err != nil {
				return err
			}
		}
		if err := meta.Put(migrations.KeyStoreID, id); err != nil {
			return err
		}
		// The file's revisions are the live store's from now on, even
		// where they numbered an etcd transaction's changes apart.
		return meta.Delete(migrations.KeySourceRevision)
	})
	if cerr := db.Close(); err == nil {
		err = cerr
	}
	return floor, err
}
