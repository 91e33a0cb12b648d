package fsutil

import (
	"io/fs"

	"golang.org/x/sys/unix"
)

// chown changes the owner of path itself, never following a symbolic
// link: a link the folder's owner put where a file of ours was gets
// nothing but its own owner changed. It works through a descriptor of
// what path names (O_PATH: nothing is opened for reading), so that the
// file checked is the file given: a regular file with other names (hard
// links) is refused, since on a system without fs.protected_hardlinks
// the folder's owner could have linked another user's file (root's) in
// place of ours between its creation and this call; so is anything but a
// regular file, a folder or a symbolic link (a device node or a FIFO of
// root's linked in the same way).
func chown(path string, uid, gid int) error {
	fd, err := unix.Open(path, unix.O_PATH|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0)
	if err != nil {
		return &fs.PathError{Op: "open", Path: path, Err: err}
	}
	defer unix.Close(fd)
	var st unix.Stat_t
	if err := unix.Fstat(fd, &st); err != nil {
		return &fs.PathError{Op: "stat", Path: path, Err: err}
	}
	flags := unix.AT_EMPTY_PATH
	switch st.Mode & unix.S_IFMT {
	case unix.S_IFDIR:
	case unix.S_IFLNK:
		flags |= unix.AT_SYMLINK_NOFOLLOW
	case unix.S_IFREG:
		if st.Nlink > 1 {
			return hardLinked(path, uint64(st.Nlink), "not given away")
		}
	default:
		return notGivable(path)
	}
	if err := unix.Fchownat(fd, "", uid, gid, flags); err != nil {
		return &fs.PathError{Op: "chown", Path: path, Err: err}
	}
	return nil
}
