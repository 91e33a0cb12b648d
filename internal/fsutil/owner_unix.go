//go:build unix

package fsutil

import (
	"errors"
	"io/fs"
	"os"
	"syscall"
)

// noFollow makes an open fail on a symbolic link.
const noFollow = syscall.O_NOFOLLOW

// ownerOf is the owner of fi when it is not the process's own, else the
// zero Owner.
func ownerOf(fi fs.FileInfo) Owner {
	st, ok := fi.Sys().(*syscall.Stat_t)
	if !ok || int(st.Uid) == os.Geteuid() && int(st.Gid) == os.Getegid() {
		return Owner{}
	}
	return Owner{uid: int(st.Uid), gid: int(st.Gid), set: true}
}

// exactOwner is the owner of fi, the process's own included.
func exactOwner(fi fs.FileInfo) Owner {
	st, ok := fi.Sys().(*syscall.Stat_t)
	if !ok {
		return Owner{}
	}
	return Owner{uid: int(st.Uid), gid: int(st.Gid), set: true}
}

// linkCount is how many names the file of fi has.
func linkCount(fi fs.FileInfo) uint64 {
	if st, ok := fi.Sys().(*syscall.Stat_t); ok {
		return uint64(st.Nlink)
	}
	return 1
}

// bestEffort drops the errors of a process that may not give files away
// although it is root: NFS's root_squash (EPERM), an owner a user
// namespace does not map (EINVAL).
func bestEffort(err error) error {
	if errors.Is(err, syscall.EPERM) || errors.Is(err, syscall.EINVAL) {
		return nil
	}
	return err
}
