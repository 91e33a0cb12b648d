package export

import (
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
)

// TempPrefix starts the name of every temp file written by this package.
// Dump names never start with a dot, so a temp file is never taken for a
// dump, and [OpenDir] removes those a crash left behind.
const TempPrefix = ".tmp-"

// WriteFileAtomic writes the file at path with fn, so that path holds
// either its old content or all of the new one, even across a crash: fn
// writes a temp file in the same folder, which is fsynced, closed and
// renamed over path, then the folder is fsynced so the rename is durable.
// On any error the temp file is removed and path is left alone. It returns
// the size written. The file gets permissions perm.
func WriteFileAtomic(path string, perm os.FileMode, fn func(w io.Writer) error) (size int64, err error) {
	dir, base := filepath.Split(path)
	if dir == "" {
		dir = "."
	}
	f, err := os.CreateTemp(dir, TempPrefix+base+"-*")
	if err != nil {
		return 0, fmt.Errorf("create temp file: %w", err)
	}
	tmp := f.Name()
	defer func() {
		if err != nil {
			_ = f.Close()
			_ = os.Remove(tmp)
		}
	}()
	cw := &countingWriter{w: f}
	if err = fn(cw); err != nil {
		return 0, err
	}
	if err = f.Sync(); err != nil {
		return 0, fmt.Errorf("fsync %s: %w", tmp, err)
	}
	if err = f.Chmod(perm); err != nil {
		return 0, fmt.Errorf("chmod %s: %w", tmp, err)
	}
	if err = f.Close(); err != nil {
		return 0, fmt.Errorf("close %s: %w", tmp, err)
	}
	if err = os.Rename(tmp, path); err != nil {
		return 0, fmt.Errorf("rename into place: %w", err)
	}
	if err = syncDir(dir); err != nil {
		// The file is complete and in place; only the rename's
		// durability is in doubt. Do not remove the renamed file.
		return cw.n, err
	}
	return cw.n, nil
}

// syncDir fsyncs a folder, making the renames in it durable.
func syncDir(dir string) error {
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

// removeTemps removes the temp files left in dir by an earlier process.
func removeTemps(dir string) error {
	entries, err := os.ReadDir(dir)
	if err != nil {
		return err
	}
	var errs []error
	for _, e := range entries {
		if strings.HasPrefix(e.Name(), TempPrefix) && e.Type().IsRegular() {
			if err := os.Remove(filepath.Join(dir, e.Name())); err != nil && !errors.Is(err, os.ErrNotExist) {
				errs = append(errs, err)
			}
		}
	}
	return errors.Join(errs...)
}
