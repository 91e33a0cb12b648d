package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/signal"
	"path/filepath"
	"slices"
	"syscall"

	"github.com/framework0/ctxd/export"
	"github.com/framework0/ctxd/internal/fsutil"
)

// checkOutFile refuses a -o FILE of dump or snapshot get (what says what
// is written to it; hint, when set, where the format is chosen) that is
// the name of an output format: every other command's -o is one, and
// 'ctxd snapshot get ID -o json' wrote the snapshot to a file named json
// where -o json was meant. A file of that name is given as ./json.
func checkOutFile(file, what, hint string) error {
	if !slices.Contains([]string{outJSON, outTable, outValue}, file) && !slices.Contains(export.Formats, export.Format(file)) {
		return nil
	}
	if hint != "" {
		hint = " (" + hint + ")"
	}
	return usagef("-o %s: here -o is the FILE to write %s to, not an output format%s; for a file named %s, give ./%s",
		file, what, hint, file, file)
}

// writeOutFile writes the file a command's -o names (FILE of dump and
// snapshot get). A regular file, or one not there yet, is written whole or
// not at all (fsutil.WriteFile: a temp file renamed over it); through a
// symbolic link, its target is (the rename replaced the link). Anything
// else (/dev/null, a named pipe, a terminal) is written straight into: the
// rename replaced /dev/null itself with a file, as root. regular says which
// it was (size is then 0: not counted); target is the file written (the
// link's target). While a temp file is written, the first Ctrl-C or
// SIGTERM stops the write and takes the temp file away (it stayed, as
// large as what had come); a second one ends the process, as does the
// first while anything else is written (a pipe may block its writer
// where no context reaches).
func writeOutFile(ctx context.Context, path string, perm os.FileMode, write func(ctx context.Context, w io.Writer) error) (size int64, regular bool, target string, err error) {
	if target, err = linkTarget(path); err != nil {
		return 0, false, path, err
	}
	fi, err := os.Stat(target)
	replaced := err == nil
	switch {
	case err == nil && fi.IsDir():
		return 0, false, target, fmt.Errorf("%s is a folder: give a file name", path)
	case err == nil && !fi.Mode().IsRegular():
		f, err := os.OpenFile(target, os.O_WRONLY, 0)
		if err != nil {
			return 0, false, target, err
		}
		err = write(ctx, f)
		return 0, false, target, errors.Join(err, f.Close())
	}
	sctx, stop := signal.NotifyContext(ctx, os.Interrupt, syscall.SIGTERM)
	defer stop()
	context.AfterFunc(sctx, stop) // the next signal has its default effect
	size, err = fsutil.WriteFile(target, perm, func(w io.Writer) error { return write(sctx, w) })
	if err != nil && sctx.Err() != nil && ctx.Err() == nil {
		err = fmt.Errorf("interrupted: %s not written", path)
	}
	if err == nil && replaced && os.Geteuid() == 0 {
		// As root, the file it replaced keeps its owner (the new file was
		// the folder owner's, fsutil.CreateTemp). Another user's file
		// replaced by a user who may write the folder becomes theirs, as
		// any rename makes it: that user may not give it back.
		err = fsutil.KeepOwner(target, fi)
	}
	return size, true, target, err
}

// linkTarget is the file that a write of path replaces: path itself, or
// the file a symbolic link at path leads to. The whole-file write renames
// a temp file over its name, which would replace the link itself with a
// regular file and leave its target (one that configuration management
// keeps, say) as it was. A link to nothing is an error.
func linkTarget(path string) (string, error) {
	fi, err := os.Lstat(path)
	if err != nil || fi.Mode()&os.ModeSymlink == 0 {
		return path, nil
	}
	target, err := filepath.EvalSymlinks(path)
	if err != nil {
		return path, fmt.Errorf("%s: a symbolic link to nothing: %w", path, err)
	}
	return target, nil
}
