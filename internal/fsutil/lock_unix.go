//go:build unix

package fsutil

import (
	"errors"
	"os"
	"syscall"
)

// lockFile flocks f, shared or exclusive, waiting for it when wait is
// set; held is false when another holds it and wait is not set.
func lockFile(f *os.File, shared, wait bool) (held bool, err error) {
	how := syscall.LOCK_EX
	if shared {
		how = syscall.LOCK_SH
	}
	if !wait {
		how |= syscall.LOCK_NB
	}
	for {
		err = syscall.Flock(int(f.Fd()), how)
		switch {
		case errors.Is(err, syscall.EINTR):
			continue
		case errors.Is(err, syscall.EWOULDBLOCK):
			return false, nil
		}
		return err == nil, err
	}
}
