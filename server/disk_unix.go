//go:build unix

package server

import "golang.org/x/sys/unix"

// fileSystemSize is the size in bytes of the file system holding dir.
func fileSystemSize(dir string) (int64, error) {
	var st unix.Statfs_t
	if err := unix.Statfs(dir, &st); err != nil {
		return 0, err
	}
	return int64(st.Blocks) * int64(st.Bsize), nil
}

// fileSystemFree is the space in bytes that an unprivileged process may
// still write on the file system holding dir.
func fileSystemFree(dir string) (int64, error) {
	var st unix.Statfs_t
	if err := unix.Statfs(dir, &st); err != nil {
		return 0, err
	}
	return int64(st.Bavail) * int64(st.Bsize), nil
}
