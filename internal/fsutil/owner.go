package fsutil

import (
	"errors"
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

// OtherGroup reports whether o gives files a group other than the
// process's: root writing in a folder of the service's group (/etc/ctxd,
// root:ctxd), whose files that group must be able to read.
func (o Owner) OtherGroup() bool { return o.set && o.gid != os.Getegid() }

// Give makes o the owner of the file or folder at path (the link itself,
// if it is a symbolic link: never what it names). It does nothing for the
// zero Owner.
func (o Owner) Give(path string) error {
	if !o.set {
		return nil
	}
	if err := chown(path, o.uid, o.gid); err != nil {
		return fmt.Errorf("give %s the owner %d:%d: %w", path, o.uid, o.gid, err)
	}
	return nil
}

// GiveOpen makes o the owner of the open file f, through its descriptor:
// the file itself, whatever its name has become since it was opened. It
// does nothing for the zero Owner.
func (o Owner) GiveOpen(f *os.File) error {
	if !o.set {
		return nil
	}
	if err := f.Chown(o.uid, o.gid); err != nil {
		return fmt.Errorf("give %s the owner %d:%d: %w", f.Name(), o.uid, o.gid, err)
	}
	return nil
}

// SoleNameForRoot refuses, for a process running as root, a regular file
// open as f that has other names (hard links): root is about to write
// into a file of a folder another user may write (the log's last
// segment), who could have linked one of the system's files there on a
// system without fs.protected_hardlinks. Other processes, and files of one
// name, pass.
func SoleNameForRoot(f *os.File) error {
	if os.Geteuid() != 0 {
		return nil
	}
	fi, err := f.Stat()
	if err != nil {
		return err
	}
	if fi.Mode().IsRegular() && linkCount(fi) > 1 {
		return hardLinked(f.Name(), linkCount(fi), "root does not write into it")
	}
	return nil
}

// hardLinked is the refusal of a file at path with links names, which may
// be another user's file linked there: what says what root refuses.
func hardLinked(path string, links uint64, what string) error {
	return fmt.Errorf("%s has %d names (hard links): %s (remove the other names, or the file)", path, links, what)
}

// notGivable refuses to give away what ctxd never makes: a device node or
// a FIFO linked in.
func notGivable(path string) error {
	return fmt.Errorf("%s is not a file, a folder or a symbolic link: not given away", path)
}

// OpenNoFollow is os.OpenFile that fails on a symbolic link at name (where
// the system can tell): for files a process running as root opens in a
// folder another user may write, who could have put a link to any file
// of the system there.
func OpenNoFollow(name string, flag int, perm os.FileMode) (*os.File, error) {
	return os.OpenFile(name, flag|noFollow, perm)
}

// giveFolderOwner gives the file or folder at path, which this process
// just created, the owner of the folder holding it (FolderOwner): a
// server or a command run as root in a service user's folder leaves
// files that user can open (snapshots, dumps, their folders, lock and
// claim files), where root's would stop the service at its next start.
// The path is not followed if it is a symbolic link (the folder's owner
// may have swapped one in since the creation: only the link is given).
// It is best-effort: where root may not give files away (NFS's
// root_squash, an unmapped owner in a user namespace) the file stays
// root's, as before this rule, rather than fail the write.
func giveFolderOwner(path string) error {
	if os.Geteuid() != 0 {
		return nil
	}
	fi, err := os.Stat(filepath.Dir(path))
	if err != nil {
		return err
	}
	return bestEffort(FolderOwner(fi).Give(path))
}

// GiveFile is giveFolderOwner of the open file f, through its descriptor:
// the file itself, whatever its name has become since it was created.
func GiveFile(f *os.File) error {
	if os.Geteuid() != 0 {
		return nil
	}
	fi, err := os.Stat(filepath.Dir(f.Name()))
	if err != nil {
		return err
	}
	return bestEffort(FolderOwner(fi).GiveOpen(f))
}

// giveLockFile gives a lock file opened (or created) by root the folder's
// owner (giveFile), unless it is someone else's already. It must be a
// regular file with one link: not another file of the system linked into
// the folder by its owner.
func giveLockFile(f *os.File) error {
	fi, err := f.Stat()
	if err != nil {
		return err
	}
	if !fi.Mode().IsRegular() || linkCount(fi) > 1 {
		return fmt.Errorf("%s is not a lock file (not a regular file of one link): remove it", f.Name())
	}
	if os.Geteuid() != 0 || ownerOf(fi).set {
		return nil // someone's already
	}
	return GiveFile(f)
}

// KeepOwner gives the file at path the owner of before, the file it
// replaced, when that is not the process's own, or, as root, whoever's
// it was (root's too: the new file may have been given the folder's
// owner). Unlike a new file in a folder, a replaced file was someone's: a
// process that may not give it back (not root) gets an error, since its
// user may no longer read it.
func KeepOwner(path string, before fs.FileInfo) error {
	o := ownerOf(before)
	if os.Geteuid() == 0 {
		o = exactOwner(before)
	}
	return o.Give(path)
}

// ReadDenied is err, from reading a file of the configuration (the config
// file, the tokens file, a TLS or etcd certificate or key), with what to
// do when this process may not read it. Such files are root's and
// readable by the service's group (the systemd unit's /etc/ctxd): one
// made without the group's read said only "permission denied", where the
// database's owner error names the process and the fix.
func ReadDenied(err error) error {
	if !errors.Is(err, fs.ErrPermission) {
		return err
	}
	file := "FILE"
	var pe *fs.PathError
	if errors.As(err, &pe) {
		file = pe.Path
	}
	return fmt.Errorf("%w: this process (uid %d, gid %d) may not read it: the server's user or group must be able to, e.g. chgrp ctxd %s && chmod g+r %s",
		err, os.Geteuid(), os.Getegid(), file, file)
}
