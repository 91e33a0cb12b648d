//go:build linux

package wal

import (
	"errors"
	"os"

	"golang.org/x/sys/unix"
)

// allocate gives f the blocks of [from, to) with fallocate(2), growing
// its size to to; it reports false when the file system cannot, so that
// the caller writes zeros instead.
func allocate(f *os.File, from, to int64) (bool, error) {
	err := ignoringEINTR(func() error { return unix.Fallocate(int(f.Fd()), 0, from, to-from) })
	if errors.Is(err, unix.EOPNOTSUPP) || errors.Is(err, unix.ENOSYS) {
		return false, nil
	}
	return err == nil, err
}

// fdatasync flushes f's data and the metadata needed to read it back
// (not its times).
func fdatasync(f *os.File) error {
	return ignoringEINTR(func() error { return unix.Fdatasync(int(f.Fd())) })
}

func ignoringEINTR(fn func() error) error {
	for {
		if err := fn(); err != unix.EINTR {
			return err
		}
	}
}
