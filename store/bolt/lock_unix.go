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
