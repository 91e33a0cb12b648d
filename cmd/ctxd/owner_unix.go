//go:build unix

package main

import (
	"fmt"
	"io/fs"
	"os"
	"syscall"
)

// keepOwner gives the file at path the owner and group before had (the
// file it replaced), when they are not the process's own.
func keepOwner(path string, before fs.FileInfo) error {
	st, ok := before.Sys().(*syscall.Stat_t)
	if !ok || int(st.Uid) == os.Geteuid() && int(st.Gid) == os.Getegid() {
		return nil
	}
	if err := os.Chown(path, int(st.Uid), int(st.Gid)); err != nil {
		return fmt.Errorf("%s: written, but its owner could not be kept (%d:%d): %w", path, st.Uid, st.Gid, err)
	}
	return nil
}
