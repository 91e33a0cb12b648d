package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/signal"
	"path/filepath"
	"syscall"

	"github.com/framework0/ctxd/internal/fsutil"
)

// writeOutFile writes the file a command's -o names (FILE of dump and
// snapshot get). A regular file, or one not there yet, is written whole or
// not at all (fsutil.WriteFile: a temp file renamed over it); through a
// symbolic link, its target is (the rename replaced the link). Anything
// else (/dev/null, a named pipe, a terminal) is written straight into: the
// rename replaced /dev/null itself with a file, as root. regular says which
// it was (size is then 0: not counted). Ctrl-C or SIGTERM while it writes stops it, and takes the temp
// file away (it stayed, as large as what had come).
func writeOutFile(ctx context.Context, path string, perm os.FileMode, write func(ctx context.Context, w io.Writer) error) (size int64, regular bool, err error) {
	sctx, stop := signal.NotifyContext(ctx, os.Interrupt, syscall.SIGTERM)
	defer stop()
	defer func() {
		if err != nil && sctx.Err() != nil && ctx.Err() == nil {
			err = fmt.Errorf("interrupted: %s not written", path)
		}
	}()
	target := path
	if fi, err := os.Lstat(path); err == nil && fi.Mode()&os.ModeSymlink != 0 {
		if target, err = filepath.EvalSymlinks(path); err != nil {
			return 0, false, fmt.Errorf("%s: a symbolic link to nothing: %w", path, err)
		}
	}
	fi, err := os.Stat(target)
	switch {
	case err == nil && fi.IsDir():
		return 0, false, fmt.Errorf("%s is a folder: give a file name", path)
	case err == nil && !fi.Mode().IsRegular():
		f, err := os.OpenFile(target, os.O_WRONLY, 0)
		if err != nil {
			return 0, false, err
		}
		err = write(sctx, f)
		return 0, false, errors.Join(err, f.Close())
	}
	size, err = fsutil.WriteFile(target, perm, func(w io.Writer) error { return write(sctx, w) })
	return size, true, err
}
