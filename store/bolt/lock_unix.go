//go:build unix

package bolt

import (
	"errors"
	"fmt"
	"os"
	"syscall"
)

// lockDir takes an exclusive lock on the folder dir (flock), so that two
// stores never share a write-ahead log: each database file is locked by
// bbolt, but two database files in one folder would share its wal folder.
func lockDir(dir string) (*os.File, error) {
	f, err := os.Open(dir)
	if err != nil {
		return nil, err
	}
	if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB); err != nil {
		f.Close()
		if errors.Is(err, syscall.EWOULDBLOCK) {
			return nil, fmt.Errorf("%w: another store in this folder uses the write-ahead log", ErrLocked)
		}
		return nil, fmt.Errorf("lock: %w", err)
	}
	return f, nil
}

// unlockDir releases a lockDir lock (closing the folder releases it).
func unlockDir(f *os.File) {
	if f != nil {
		_ = f.Close()
	}
}

// lockedByOther reports whether another process holds the lock bbolt
// takes on the database file at path (a running server): its pages may
// then change under a reader, so what a read of them finds proves
// nothing about damage.
func lockedByOther(path string) bool {
	f, err := os.Open(path)
	if err != nil {
		return false
	}
	defer f.Close()
	return errors.Is(syscall.Flock(int(f.Fd()), syscall.LOCK_SH|syscall.LOCK_NB), syscall.EWOULDBLOCK)
}
