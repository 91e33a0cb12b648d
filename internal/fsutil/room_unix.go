//go:build unix

package fsutil

import (
	"os"

	"golang.org/x/sys/unix"
)

// StatFS returns the size in bytes of the file system holding path, and the
// space an unprivileged process may still write on it.
func StatFS(path string) (size, free int64, err error) {
	var st unix.Statfs_t
	if err := unix.Statfs(path, &st); err != nil {
		return 0, 0, err
	}
	return int64(st.Blocks) * int64(st.Bsize), int64(st.Bavail) * int64(st.Bsize), nil
}

// fstatFS is StatFS of the file system holding the open file f.
func fstatFS(f *os.File) (size, free int64, err error) {
	var st unix.Statfs_t
	if err := unix.Fstatfs(int(f.Fd()), &st); err != nil {
		return 0, 0, err
	}
	return int64(st.Blocks) * int64(st.Bsize), int64(st.Bavail) * int64(st.Bsize), nil
}
