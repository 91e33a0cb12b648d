package fsutil

import (
	"fmt"
	"os"
	"path/filepath"
)

// Folders shared by processes. Several ctxd instances may share one folder
// (the snapshots or dumps folder of the instances of one etcd deployment): a file
// one of them is still writing must not be taken by another for a crash's
// leftover. Each writer holds the folder's lock file shared while it
// writes; a cleaner removes leftovers only while it holds it exclusively,
// when no process writes there. The lock is advisory (flock on Unix: the
// kernel releases it when the process dies, so a crashed writer holds
// nothing). Elsewhere the lock is taken at once and locks nothing: a
// folder has one process, as before.

// WritersLock is the name of a shared folder's lock file (it stays
// there). Its leading dot keeps it out of every listing of the folder's
// files (dump and snapshot names never start with one).
const WritersLock = ".writers.lock"

// CreateSharedTemp is CreateTemp in a folder that processes may share: it
// holds the folder's WritersLock shared until release, which the caller
// calls once the file is committed or discarded (and whatever it writes
// beside it is written).
func CreateSharedTemp(dir, name string, perm os.FileMode) (tmp *Temp, release func(), err error) {
	unlock, err := LockShared(filepath.Join(dir, WritersLock))
	if err != nil {
		return nil, nil, err
	}
	tmp, err = CreateTemp(dir, name, perm)
	if err != nil {
		unlock()
		return nil, nil, err
	}
	return tmp, unlock, nil
}

// WhenIdle runs clean while no process writes in the shared folder dir
// (it holds the folder's WritersLock exclusively meanwhile), and reports
// whether it ran: when one does, cleaning waits for the next call.
func WhenIdle(dir string, clean func() error) (ran bool, err error) {
	unlock, held, err := TryLockExclusive(filepath.Join(dir, WritersLock))
	if err != nil || !held {
		return false, err
	}
	defer unlock()
	return true, clean()
}

// LockShared takes the lock file at path (created if missing) shared,
// waiting while a process holds it exclusively. unlock releases it.
func LockShared(path string) (unlock func(), err error) {
	unlock, _, err = lock(path, true, true)
	return unlock, err
}

// TryLockExclusive takes the lock file at path (created if missing)
// exclusively if no process holds it; held is false when one does.
func TryLockExclusive(path string) (unlock func(), held bool, err error) {
	return lock(path, false, false)
}

func lock(path string, shared, wait bool) (func(), bool, error) {
	// Open for writing: NFS emulates flock with locks that need it. Never
	// through a symbolic link: the folder's owner (the service user) may
	// put one there, and a root-run server would then open, and give the
	// user, whatever file it names.
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE|noFollow, 0o600)
	if err != nil {
		return nil, false, fmt.Errorf("lock %s: %w", path, err)
	}
	if err := giveLockFile(f); err != nil {
		_ = f.Close()
		return nil, false, fmt.Errorf("lock %s: %w", path, err)
	}
	held, err := lockFile(f, shared, wait)
	if err != nil || !held {
		_ = f.Close()
		if err != nil {
			return nil, false, fmt.Errorf("lock %s: %w", path, err)
		}
		return nil, false, nil
	}
	return func() { _ = f.Close() }, true, nil
}
