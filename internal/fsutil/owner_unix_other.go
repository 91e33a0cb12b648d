//go:build unix && !linux

package fsutil

import "os"

// chown changes the owner of path itself, never following a symbolic
// link: a link the folder's owner put where a file of ours was gets
// nothing but its own owner changed. A regular file with other names
// (hard links) is refused, as on Linux (owner_linux.go), though here
// between a look and the change (no O_PATH).
func chown(path string, uid, gid int) error {
	fi, err := os.Lstat(path)
	if err != nil {
		return err
	}
	switch {
	case fi.IsDir(), fi.Mode()&os.ModeSymlink != 0:
	case !fi.Mode().IsRegular():
		return notGivable(path)
	case linkCount(fi) > 1:
		return hardLinked(path, linkCount(fi), "not given away")
	}
	return os.Lchown(path, uid, gid)
}
