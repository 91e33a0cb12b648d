//go:build unix

package fsutil

import (
	"io/fs"
	"os"
	"syscall"
)

// ownerOf is the owner of fi when it is not the process's own, else the
// zero Owner.
func ownerOf(fi fs.FileInfo) Owner {
	st, ok := fi.Sys().(*syscall.Stat_t)
	if !ok || int(st.Uid) == os.Geteuid() && int(st.Gid) == os.Getegid() {
		return Owner{}
	}
	return Owner{uid: int(st.Uid), gid: int(st.Gid), set: true}
}

func chown(path string, uid, gid int) error { return os.Chown(path, uid, gid) }
