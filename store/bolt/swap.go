package bolt

import (
	"fmt"
	"io"
	"os"
	"path/filepath"

	"github.com/framework0/ctxd/internal/failpoint"
	"github.com/framework0/ctxd/internal/fsutil"
)

// Suffixes of the files a restore or defrag prepares next to the live
// database. They are only ever renamed over the live file whole; any left
// behind by a crash is removed at Open.
const (
	suffixRestore = ".restore.tmp"
	suffixDefrag  = ".defrag.tmp"
	suffixBackup  = ".swap-backup"
)

func removeLeftovers(path string) {
	for _, suffix := range []string{suffixRestore, suffixDefrag, suffixBackup} {
		_ = os.Remove(path + suffix)
	}
}

// swapKind is what a replaceFile is for.
type swapKind uint8

const (
	swapDefrag  swapKind = iota + 1
	swapRestore          // followers must re-read state: a new Generation
)

// failpoints are the points that mark the swap's steps.
func (k swapKind) failpoints() (beforeRename, afterRename failpoint.Name) {
	if k == swapRestore {
		return failpoint.RestoreBeforeRename, failpoint.RestoreAfterRename
	}
	return failpoint.DefragBeforeRename, failpoint.DefragAfterRename
}

// replaceFile swaps the live database for the prepared file at next, which
// must be in the same folder. It must run in the writer goroutine (see
// exclusive). It waits for every reader, closes the database, renames next
// over it (atomic: a crash leaves the old file or the new one, whole),
// and opens it. If the new file cannot be opened, the old one is put back.
// The old file stays linked at backup (in the same folder): at
// s.path+suffixBackup the caller removes it with removeBackup once writers
// run again (unlinking a large file takes tens of milliseconds that
// writers need not wait for); under another name it is kept.
func (s *Store) replaceFile(next, backup string, kind swapKind) error {
	beforeRename, afterRename := kind.failpoints()
	s.dbMu.Lock()
	defer s.dbMu.Unlock()
	// Released before dbMu: no Get sees the new file before the cache
	// has forgotten the old one.
	s.cache.hold()
	defer s.cache.release()
	if err := s.closeFile(); err != nil {
		return fmt.Errorf("close database: %w", err)
	}
	if backup == s.path+suffixBackup {
		_ = os.Remove(backup)
	}
	if err := os.Link(s.path, backup); err != nil {
		return s.reopenAfterFailure(fmt.Errorf("keep the old file: %w", err))
	}
	failpoint.Hit(beforeRename)
	if err := os.Rename(next, s.path); err != nil {
		_ = os.Remove(backup)
		return s.reopenAfterFailure(fmt.Errorf("install the new file: %w", err))
	}
	if err := fsutil.SyncDir(filepath.Dir(s.path)); err != nil {
		return s.rollBack(backup, err)
	}
	failpoint.Hit(afterRename)
	db, err := openBolt(s.path, 0)
	if err != nil {
		return s.rollBack(backup, err)
	}
	s.db = db
	if err := s.load(); err != nil {
		_ = db.Close()
		return s.rollBack(backup, err)
	}
	if kind == swapRestore {
		s.generation.Add(1)
	}
	s.raiseMark(s.rev)
	return nil
}

// rollBack puts the old file back after a failed swap and reopens it.
func (s *Store) rollBack(backup string, cause error) error {
	if err := os.Rename(backup, s.path); err != nil {
		return fmt.Errorf("replace database: %w; and restoring the old file failed: %w", cause, err)
	}
	if err := fsutil.SyncDir(filepath.Dir(s.path)); err != nil {
		// After a power cut the name could still be the new file's, and
		// Open would remove the old one with every write committed from
		// now on: take no more writes.
		failure := s.fail(fmt.Errorf("the old database file was put back after a failed swap, but its folder could not be synced: %w", err))
		// The store's failure is the answer (503), not the swap's cause
		// (a full disk's would read as 507, as if only space were short).
		return fmt.Errorf("%w (replace database: %v)", failure, s.reopenAfterFailure(cause))
	}
	return s.reopenAfterFailure(cause)
}

func (s *Store) reopenAfterFailure(cause error) error {
	db, err := openBolt(s.path, 0)
	if err != nil {
		return fmt.Errorf("replace database: %w; and reopening the old file failed: %w", cause, err)
	}
	s.db = db
	if err := s.load(); err != nil {
		return fmt.Errorf("replace database: %w; and reloading the old file failed: %w", cause, err)
	}
	return fmt.Errorf("replace database (the old one is back): %w", cause)
}

// raiseMark raises the committed mark to rev and wakes every follower.
func (s *Store) raiseMark(rev uint64) { close(s.setMark(rev)) }

// setMark raises the committed mark to rev and returns the channel whose
// close wakes the followers waiting for it. The syncer closes it after
// answering the writes that raised the mark: the wake costs a system call
// when a follower's goroutine sleeps, and a lone write need not wait for
// it. A follower that read the mark before it moved waits on that channel
// and is woken then; one that reads the mark after sees rev.
func (s *Store) setMark(rev uint64) (wake chan struct{}) {
	s.mu.Lock()
	s.committed = rev
	wake = s.changed
	s.changed = make(chan struct{})
	s.mu.Unlock()
	return wake
}

// copyFile copies src to dst (created or truncated) and fsyncs it.
func copyFile(dst, src string) (err error) {
	in, err := os.Open(src)
	if err != nil {
		return err
	}
	defer in.Close()
	out, err := os.OpenFile(dst, os.O_CREATE|os.O_TRUNC|os.O_WRONLY, 0o600)
	if err != nil {
		return err
	}
	defer func() {
		if cerr := out.Close(); err == nil {
			err = cerr
		}
		if err != nil {
			_ = os.Remove(dst)
		}
	}()
	if _, err = io.Copy(out, in); err != nil {
		return err
	}
	return out.Sync()
}

func removeIfExists(path string) error {
	err := os.Remove(path)
	if os.IsNotExist(err) {
		return nil
	}
	return err
}

// removeBackup removes the old file a replaceFile left.
func (s *Store) removeBackup() { _ = os.Remove(s.path + suffixBackup) }
