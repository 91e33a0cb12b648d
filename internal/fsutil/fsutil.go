// Package fsutil writes files that must survive a crash whole: every file
// ctxd keeps (dumps, snapshots and their metadata, the tokens file, perf
// reports) goes through it.
//
// A file is written to a temp file in the folder of its final name, the
// temp file is fsynced, closed and renamed over the final name, then the
// folder is fsynced so that the rename itself is durable. A reader, or the
// process after a crash, sees the old file or the whole new one, never a
// part. On any error before the rename the temp file is removed and the
// final name is left alone.
//
// Temp files are named TempPrefix + the final name + "-" + random digits
// (see IsTemp); a folder's owner removes those a crash left with
// RemoveTemps.
//
// The folders' retention (dumps, scheduled snapshots) shares one rule for
// files dated ahead of the clock: AheadLast.
//
// Two rules keep a file from hurting what it sits beside. A Reserve keeps
// disk space free for the store (Temp.KeepFree, Reserve.Fits): a snapshot
// or a dump stops rather than fill the data disk. And a process run as
// root in another user's folder gives what it creates there that user
// (CreateTemp, MkdirAll, lock files: GiveFile), never through a link, so
// that the service finds its files openable and no planted link makes
// root give away a file of the system.
package fsutil

import (
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"syscall"
)

// TempPrefix starts the name of every temp file made by this package. It
// starts with a dot, so a temp file is hidden and never taken for a kept
// file by a folder listing that skips dot files.
const TempPrefix = ".tmp-"

// IsTemp reports whether name (a file name, not a path) is that of a temp
// file made by this package.
func IsTemp(name string) bool { return strings.HasPrefix(name, TempPrefix) }

// WriteFile writes the file at path with write, atomically and durably (see
// the package doc), and gives it permissions perm. It returns the number of
// bytes written. An error from write is returned as it is; path is then
// left as it was and no temp file remains.
func WriteFile(path string, perm os.FileMode, write func(w io.Writer) error) (size int64, err error) {
	t, err := CreateTemp(filepath.Dir(path), filepath.Base(path), perm)
	if err != nil {
		return 0, err
	}
	defer t.Discard()
	if err := write(t); err != nil {
		return 0, err
	}
	if err := t.Commit(path); err != nil {
		return 0, err
	}
	return t.Size(), nil
}

// WriteFileBytes writes data to the file at path as WriteFile does.
func WriteFileBytes(path string, perm os.FileMode, data []byte) error {
	_, err := WriteFile(path, perm, func(w io.Writer) error {
		_, err := w.Write(data)
		return err
	})
	return err
}

// SyncDir fsyncs the folder dir, making durable the renames, creations and
// removals of files in it.
func SyncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return fmt.Errorf("open folder %s: %w", dir, err)
	}
	err = d.Sync()
	if cerr := d.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return fmt.Errorf("fsync folder %s: %w", dir, err)
	}
	return nil
}

// MkdirAll creates the folder dir with permissions perm, and any missing
// parents, as os.MkdirAll does, but durably: it fsyncs the parent of every
// folder it creates, and the parent of dir even when dir exists (a folder
// made by an earlier run that crashed before syncing it is in the kernel's
// cache, not yet on disk). Without that, a power cut can take back a new
// folder with every file synced inside it: their names are in the folder,
// and the folder's name is not on disk.
func MkdirAll(dir string, perm os.FileMode) error {
	dir = filepath.Clean(dir)
	if fi, err := os.Stat(dir); err == nil {
		if !fi.IsDir() {
			return fmt.Errorf("create folder %s: %w", dir, syscall.ENOTDIR)
		}
		return SyncDir(filepath.Dir(dir))
	}
	if parent := filepath.Dir(dir); parent != dir {
		if _, err := os.Stat(parent); err != nil {
			if err := MkdirAll(parent, perm); err != nil {
				return err
			}
		}
	}
	if err := os.Mkdir(dir, perm); err != nil && !errors.Is(err, fs.ErrExist) {
		return fmt.Errorf("create folder %s: %w", dir, err)
	} else if err == nil {
		if err := giveFolderOwner(dir); err != nil {
			return fmt.Errorf("create folder %s: %w", dir, err)
		}
	}
	return SyncDir(filepath.Dir(dir))
}

// RemoveTemps removes the temp files (see IsTemp) left in dir, by a crash
// or by an earlier process. Only the owner of the folder may call it, when
// nothing else writes there.
func RemoveTemps(dir string) error {
	entries, err := os.ReadDir(dir)
	if err != nil {
		return err
	}
	var errs []error
	for _, e := range entries {
		if IsTemp(e.Name()) && e.Type().IsRegular() {
			if err := os.Remove(filepath.Join(dir, e.Name())); err != nil && !errors.Is(err, os.ErrNotExist) {
				errs = append(errs, err)
			}
		}
	}
	return errors.Join(errs...)
}

// Temp is a temp file being written, to be committed under its final name
// in the same folder. It is for writers that must see the file between
// writing and committing it (to verify it) or that learn its final name only
// once it is written; WriteFile suits the others.
//
// Use: CreateTemp, defer Discard, Write, then Commit (or Close first, look
// at the file by Name, and Commit). Discard after Commit does nothing. A
// Temp is not safe for concurrent use.
type Temp struct {
	f         *os.File
	dir       string
	name      string // what it is to be, for messages
	perm      os.FileMode
	size      int64
	closed    bool
	closeErr  error
	committed bool
	room      *room
}

// CreateTemp creates a temp file in dir for a file that will be committed
// in dir with permissions perm. name (usually the final file name) goes
// into the temp file's name, for whoever looks at the folder.
func CreateTemp(dir, name string, perm os.FileMode) (*Temp, error) {
	if dir == "" {
		dir = "."
	}
	f, err := os.CreateTemp(dir, TempPrefix+name+"-*")
	if err != nil {
		return nil, fmt.Errorf("create temp file: %w", err)
	}
	if err := GiveFile(f); err != nil {
		_ = f.Close()
		_ = os.Remove(f.Name())
		return nil, fmt.Errorf("create temp file: %w", err)
	}
	return &Temp{f: f, dir: filepath.Clean(dir), name: name, perm: perm}, nil
}

// Name is the temp file's path.
func (t *Temp) Name() string { return t.f.Name() }

// Size is the number of bytes written so far.
func (t *Temp) Size() int64 { return t.size }

// KeepFree makes the writes that follow refuse, with a *ReserveError,
// to leave less than r free on the temp file's file system.
func (t *Temp) KeepFree(r Reserve) { t.room = &room{reserve: r, what: t.name} }

// Write writes to the temp file.
func (t *Temp) Write(p []byte) (int, error) {
	if err := t.room.take(t.f, len(p)); err != nil {
		return 0, err
	}
	n, err := t.f.Write(p)
	t.size += int64(n)
	return n, err
}

// Close fsyncs the temp file, gives it its permissions and closes it, so
// that it can be read whole by Name before Commit. It returns the same
// error when called again.
func (t *Temp) Close() error {
	if t.closed {
		return t.closeErr
	}
	t.closed = true
	name := t.f.Name()
	err := t.f.Sync()
	if err != nil {
		err = fmt.Errorf("fsync %s: %w", name, err)
	} else if err = t.f.Chmod(t.perm); err != nil {
		err = fmt.Errorf("chmod %s: %w", name, err)
	}
	if cerr := t.f.Close(); cerr != nil && err == nil {
		err = fmt.Errorf("close %s: %w", name, cerr)
	}
	t.closeErr = err
	return err
}

// Commit closes the temp file (see Close) if needed, renames it over path,
// which must be in the temp file's folder, and fsyncs the folder. If the
// rename fails, the temp file is left for Discard. If only the folder's
// fsync fails, the file is in place but its rename may not survive a
// crash: the error says so, and Discard leaves the file alone.
func (t *Temp) Commit(path string) error {
	return t.commit(path, func(tmp string) error {
		if err := os.Rename(tmp, path); err != nil {
			return fmt.Errorf("rename into place: %w", err)
		}
		return nil
	})
}

// CommitNew is Commit for a file that must not exist yet: the temp file is
// linked under path, which fails with an error matching fs.ErrExist when
// something created path meanwhile (a rename would replace it), then its
// temp name is removed and the folder fsynced. A crash between the link
// and the removal leaves the temp name too, linked to the same file.
func (t *Temp) CommitNew(path string) error {
	return t.commit(path, func(tmp string) error {
		if err := os.Link(tmp, path); err != nil {
			return fmt.Errorf("link into place: %w", err)
		}
		t.committed = true // path is the file now, whatever follows
		if err := os.Remove(tmp); err != nil {
			return fmt.Errorf("remove temp name: %w", err)
		}
		return nil
	})
}

// commit closes the temp file, puts it in place at path with place (given
// the temp file's path), and fsyncs the folder.
func (t *Temp) commit(path string, place func(tmp string) error) error {
	if t.committed {
		return errors.New("fsutil: temp file committed twice")
	}
	if dir := filepath.Dir(path); dir != t.dir {
		return fmt.Errorf("fsutil: commit %s: not in the temp file's folder %s", path, t.dir)
	}
	if err := t.Close(); err != nil {
		return err
	}
	if err := place(t.f.Name()); err != nil {
		return err
	}
	t.committed = true
	return SyncDir(t.dir)
}

// Discard closes the temp file if it is open and removes it, unless it was
// committed. It is meant to be deferred right after CreateTemp.
func (t *Temp) Discard() {
	if t.committed {
		return
	}
	if !t.closed {
		t.closed = true
		t.closeErr = os.ErrClosed
		_ = t.f.Close()
	}
	_ = os.Remove(t.f.Name())
}
