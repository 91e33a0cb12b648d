package fsutil

import (
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
)

// Owner is the user and group a file is given by a process that writes
// it for another user: root running an offline command in the data folder
// of a service user, or appending to a tokens file the server reads. The
// server opens those files as itself, and cannot open one left to root
// (its mode is 0600). The zero Owner changes nothing.
type Owner struct {
	uid, gid int
	set      bool
}

// FolderOwner is the owner to give the files the process creates in the
// folder dir: the folder's, when the process runs as root and the folder
// is another user's; else the zero Owner. Only root may give a file away;
// any other process makes its files for itself, as it always did (a
// server run by hand in a folder open to all, say).
func FolderOwner(dir fs.FileInfo) Owner {
	if os.Geteuid() != 0 {
		return Owner{}
	}
	return ownerOf(dir)
}

// Give makes o the owner of the file or folder at path. It does nothing
// for the zero Owner.
func (o Owner) Give(path string) error {
	if !o.set {
		return nil
	}
	if err := chown(path, o.uid, o.gid); err != nil {
		return fmt.Errorf("give %s the owner %d:%d: %w", path, o.uid, o.gid, err)
	}
	return nil
}

// GiveFolderOwner gives the file or folder at path, which this process
// just created, the owner of the folder holding it (FolderOwner): a
// server or a command run as root in a service user's folder leaves
// files that user can open (snapshots, dumps, their folders, lock and
// claim files), where root's would stop the service at its next start.
func GiveFolderOwner(path string) error {
	if os.Geteuid() != 0 {
		return nil
	}
	fi, err := os.Stat(filepath.Dir(path))
	if err != nil {
		return err
	}
	return FolderOwner(fi).Give(path)
}

// KeepOwner gives the file at path the owner of before, the file it
// replaced, when that is not the process's own. Unlike a new file in a
// folder, a replaced file was someone's: a process that may not give it
// back (not root) gets an error, since its user may no longer read it.
func KeepOwner(path string, before fs.FileInfo) error { return ownerOf(before).Give(path) }

// giveIfNew gives the file f at path, opened with O_CREATE, the owner of
// its folder (GiveFolderOwner) when it is root's own: a file root made
// now, or earlier (a lock file left by a root-run server before this
// rule), which the folder's owner could not open.
func giveIfNew(f *os.File, path string) error {
	if os.Geteuid() != 0 {
		return nil
	}
	fi, err := f.Stat()
	if err != nil {
		return err
	}
	if ownerOf(fi).set {
		return nil // someone's already
	}
	return GiveFolderOwner(path)
}
