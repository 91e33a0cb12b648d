package export

import (
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/framework0/ctxd/internal/fsutil"
)

// MaxNameLen is the longest dump filename, extension included.
const MaxNameLen = 128

// TempPrefix starts the name of every temp file written in a dump folder
// (those of package fsutil, which writes the dumps). Dump names never start
// with a dot, so a temp file is never taken for a dump, and [OpenDir]
// removes those a crash left behind.
const TempPrefix = fsutil.TempPrefix

var (
	// ErrBadName is returned for a dump filename that breaks the rule of
	// CheckName.
	ErrBadName = errors.New("bad dump filename")
	// ErrNoDump is returned when a dump file does not exist.
	ErrNoDump = errors.New("no such dump")
)

// CheckName checks a dump filename: 1 to MaxNameLen characters among
// A-Z a-z 0-9 . _ -, not starting with a dot and without "..". Such a name
// is one plain file name in the dump folder: it cannot name a folder, a
// hidden or temp file, or anything outside the folder. Everything else
// (slashes, backslashes, "..", absolute paths, NUL, %-encodings, spaces,
// non-ASCII) is refused with an error matching ErrBadName.
func CheckName(name string) error {
	if name == "" {
		return fmt.Errorf("%w: the filename is empty", ErrBadName)
	}
	if len(name) > MaxNameLen {
		return fmt.Errorf("%w: %d characters, at most %d allowed", ErrBadName, len(name), MaxNameLen)
	}
	for i := 0; i < len(name); i++ {
		c := name[i]
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '.' || c == '_' || c == '-') {
			return fmt.Errorf("%w: %q: only letters, digits, '.', '_' and '-' are allowed", ErrBadName, name)
		}
	}
	if name[0] == '.' {
		return fmt.Errorf("%w: %q must not start with '.'", ErrBadName, name)
	}
	if strings.Contains(name, "..") {
		return fmt.Errorf("%w: %q must not contain \"..\"", ErrBadName, name)
	}
	return nil
}

// DumpName returns the filename of a dump in format f asked for as name:
// name with f's extension added when it does not already end with it,
// checked by CheckName.
func DumpName(name string, f Format) (string, error) {
	if name != "" && !strings.HasSuffix(name, f.Ext()) {
		name += f.Ext()
	}
	if err := CheckName(name); err != nil {
		return "", err
	}
	return name, nil
}

// DefaultName is the filename of a dump in format f taken at t when none is
// given, as Framework0 named them: context_dump_YYYYMMDD_HHMMSS.<format>.
func DefaultName(f Format, t time.Time) string {
	return "context_dump_" + t.UTC().Format("20060102_150405") + f.Ext()
}

// FileInfo describes a dump file.
type FileInfo struct {
	// Name is the filename.
	Name string
	// Path is the file's absolute path.
	Path string
	// Size is its size in bytes.
	Size int64
	// Modified is when it was written. Dumps are written once, so it is also
	// when the dump was created.
	Modified time.Time
}

// Dir is a folder of dump files. It is safe for concurrent use, and
// processes may share the folder (the instances of one etcd deployment,
// dumps.dir): each writer holds the folder's fsutil.WritersLock shared
// while it writes, temp files are removed only under it exclusively, and
// a dump without a name to replace claims a free one by linking its file
// under it, which fails when the name is taken.
type Dir struct {
	path string
	// Reserve, when set before use, is the disk space that dumps leave
	// free on the folder's file system: a dump that would take it fails
	// with a *fsutil.ReserveError, and nothing is kept.
	Reserve fsutil.Reserve
}

// OpenDir opens the dump folder at path, creating it if needed, and removes
// the temp files a crash may have left in it, unless another process is
// writing a dump there (the next OpenDir does).
func OpenDir(path string) (*Dir, error) {
	abs, err := filepath.Abs(path)
	if err != nil {
		return nil, fmt.Errorf("dump folder: %w", err)
	}
	if err := fsutil.MkdirAll(abs, 0o750); err != nil {
		return nil, fmt.Errorf("dump folder: %w", err)
	}
	if _, err := fsutil.WhenIdle(abs, func() error { return fsutil.RemoveTemps(abs) }); err != nil {
		return nil, fmt.Errorf("dump folder: remove temp files: %w", err)
	}
	return &Dir{path: abs}, nil
}

// Path is the folder's absolute path.
func (d *Dir) Path() string { return d.path }

// Create writes the dump file name (checked by CheckName) with fn,
// atomically and durably (see package fsutil). With replace, an existing
// file of that name is replaced; without, a free name is picked by adding
// _2, _3, ... before the extension. It returns the file written.
func (d *Dir) Create(name string, replace bool, fn func(w io.Writer) error) (FileInfo, error) {
	if err := CheckName(name); err != nil {
		return FileInfo{}, err
	}
	tmp, release, err := fsutil.CreateSharedTemp(d.path, name, 0o600)
	if err != nil {
		return FileInfo{}, fmt.Errorf("write dump %s: %w", name, err)
	}
	defer release()
	defer tmp.Discard()
	tmp.KeepFree(d.Reserve)
	if err := fn(tmp); err != nil {
		return FileInfo{}, fmt.Errorf("write dump %s: %w", name, err)
	}
	if replace {
		err = tmp.Commit(filepath.Join(d.path, name))
	} else {
		name, err = d.commitNew(tmp, name)
	}
	if err != nil {
		return FileInfo{}, fmt.Errorf("write dump %s: %w", name, err)
	}
	return d.Stat(name)
}

// maxNameTries bounds the names a dump without one to replace tries.
const maxNameTries = 1000

// commitNew commits tmp under the first free name among name, then name
// with _2, _3, ... before its extension. The link that commits it fails
// when the name exists, so that processes sharing the folder never take
// the same name, where a look for a free one would give both the same.
func (d *Dir) commitNew(tmp *fsutil.Temp, name string) (string, error) {
	ext := filepath.Ext(name)
	stem := strings.TrimSuffix(name, ext)
	for i := 1; i <= maxNameTries; i++ {
		n := name
		if i > 1 {
			n = stem + "_" + strconv.Itoa(i) + ext
		}
		if err := CheckName(n); err != nil {
			return name, err
		}
		err := tmp.CommitNew(filepath.Join(d.path, n))
		if errors.Is(err, fs.ErrExist) {
			continue
		}
		return n, err
	}
	return name, fmt.Errorf("no free name after %d tries", maxNameTries)
}

// isDumpName reports a name CheckName accepts that a dump format's
// extension ends: the folder's other files (shared by mistake, or copied
// in by hand) are never listed, served or removed.
func isDumpName(name string) bool {
	_, ok := FormatOfName(name)
	return ok && CheckName(name) == nil
}

// Stat describes the dump file name, or returns an error matching
// ErrNoDump (also for a file that is not a dump: isDumpName).
func (d *Dir) Stat(name string) (FileInfo, error) {
	if err := CheckName(name); err != nil {
		return FileInfo{}, err
	}
	if !isDumpName(name) {
		return FileInfo{}, fmt.Errorf("%w: %s is not a dump file (%s)", ErrNoDump, name, dumpExtensions())
	}
	path := filepath.Join(d.path, name)
	fi, err := os.Lstat(path)
	if errors.Is(err, os.ErrNotExist) || err == nil && !fi.Mode().IsRegular() {
		return FileInfo{}, fmt.Errorf("%w: %s", ErrNoDump, name)
	}
	if err != nil {
		return FileInfo{}, err
	}
	return FileInfo{Name: name, Path: path, Size: fi.Size(), Modified: fi.ModTime().UTC()}, nil
}

// Open opens the dump file name for reading.
func (d *Dir) Open(name string) (*os.File, FileInfo, error) {
	info, err := d.Stat(name)
	if err != nil {
		return nil, FileInfo{}, err
	}
	f, err := os.Open(info.Path)
	if errors.Is(err, os.ErrNotExist) {
		return nil, FileInfo{}, fmt.Errorf("%w: %s", ErrNoDump, name)
	}
	if err != nil {
		return nil, FileInfo{}, err
	}
	return f, info, nil
}

// List returns the dump files, newest first (then by name). Temp files,
// folders and any file that is not a dump (isDumpName) are never listed.
func (d *Dir) List() ([]FileInfo, error) {
	entries, err := os.ReadDir(d.path)
	if err != nil {
		return nil, fmt.Errorf("list dumps: %w", err)
	}
	out := []FileInfo{}
	for _, e := range entries {
		if !e.Type().IsRegular() || !isDumpName(e.Name()) {
			continue
		}
		fi, err := e.Info()
		if err != nil {
			continue // removed meanwhile
		}
		out = append(out, FileInfo{
			Name: e.Name(), Path: filepath.Join(d.path, e.Name()), Size: fi.Size(), Modified: fi.ModTime().UTC(),
		})
	}
	sort.Slice(out, func(i, j int) bool {
		if !out[i].Modified.Equal(out[j].Modified) {
			return out[i].Modified.After(out[j].Modified)
		}
		return out[i].Name < out[j].Name
	})
	return out, nil
}

// Remove deletes the dump file name (checked by CheckName, and named
// with a dump format's extension: a folder shared by mistake with other
// files never loses one through it) and syncs the folder, so that the
// removal survives a crash; a missing file is an error matching
// ErrNoDump.
func (d *Dir) Remove(name string) error {
	if _, ok := FormatOfName(name); !ok {
		if err := CheckName(name); err != nil {
			return err
		}
		return fmt.Errorf("%w: %q is not a dump file (%s)", ErrBadName, name, dumpExtensions())
	}
	info, err := d.Stat(name)
	if err != nil {
		return err
	}
	if err := os.Remove(info.Path); err != nil {
		if errors.Is(err, os.ErrNotExist) {
			return fmt.Errorf("%w: %s", ErrNoDump, name) // removed meanwhile
		}
		return fmt.Errorf("remove dump %s: %w", name, err)
	}
	if err := fsutil.SyncDir(d.path); err != nil {
		return fmt.Errorf("remove dump %s: %w", name, err)
	}
	return nil
}

func dumpExtensions() string {
	var exts []string
	for _, f := range Formats {
		exts = append(exts, f.Ext())
	}
	return strings.Join(exts, " ")
}

// Retention bounds a dump folder: the newest Keep files (0: any number)
// whose sizes add up to at most MaxBytes (0: any size).
type Retention struct {
	Keep     int
	MaxBytes int64
}

// Prune removes the dump files beyond r: the folder keeps its newest
// files as long as they number at most r.Keep and add up to at most
// r.MaxBytes, and every older one goes. Only files named with a dump
// format's extension are dumps (a folder shared by mistake with a
// database or snapshots loses none of them). The file named keep (the
// dump just written) counts but is never removed, nor any file as new
// as it (another instance's dump, written meanwhile): a dump larger than
// MaxBytes is kept, alone. Pruning runs only while no dump is being
// written into the folder (it holds the folder's writers lock
// exclusively, so that no file it lists is replaced under its name
// before it removes it); otherwise it removes nothing and reports
// ran false, and the next dump prunes. It returns the files removed; a
// file that cannot be removed does not stop the others.
func (d *Dir) Prune(r Retention, keep string) (removed []string, ran bool, err error) {
	if r.Keep <= 0 && r.MaxBytes <= 0 {
		return nil, true, nil
	}
	ran, err = fsutil.WhenIdle(d.path, func() error {
		removed, err = d.prune(r, keep, time.Now())
		return err
	})
	return removed, ran, err
}

func (d *Dir) prune(r Retention, keep string, now time.Time) ([]string, error) {
	all, err := d.List()
	if err != nil {
		return nil, err
	}
	var keptAt time.Time
	files := slices.DeleteFunc(all, func(f FileInfo) bool {
		if f.Name == keep {
			keptAt = f.Modified
		}
		_, dump := FormatOfName(f.Name)
		return !dump
	})
	// Newest first, those dated ahead of the clock last.
	fsutil.AheadLast(files, func(f FileInfo) time.Time { return f.Modified }, now)
	var removed []string
	var errs []error
	count, bytes, full := 0, int64(0), false
	for _, f := range files {
		count++
		bytes += f.Size
		full = full || r.Keep > 0 && count > r.Keep || r.MaxBytes > 0 && bytes > r.MaxBytes
		recent := !keptAt.IsZero() && !f.Modified.Before(keptAt) && !fsutil.DatedAhead(f.Modified, now)
		if !full || f.Name == keep || recent {
			continue
		}
		if err := os.Remove(f.Path); err != nil && !errors.Is(err, os.ErrNotExist) {
			errs = append(errs, fmt.Errorf("prune dumps: %w", err))
			continue
		}
		removed = append(removed, f.Name)
	}
	if len(removed) > 0 {
		if err := fsutil.SyncDir(d.path); err != nil {
			errs = append(errs, fmt.Errorf("prune dumps: %w", err))
		}
	}
	return removed, errors.Join(errs...)
}

// Spool returns a new temp file in the folder, already removed from it: it
// holds data only while open and never survives a crash or shows in List.
func (d *Dir) Spool() (*os.File, error) {
	f, err := os.CreateTemp(d.path, TempPrefix+"spool-*")
	if err != nil {
		return nil, fmt.Errorf("spool: %w", err)
	}
	if err := os.Remove(f.Name()); err != nil {
		_ = f.Close()
		return nil, fmt.Errorf("spool: %w", err)
	}
	return f, nil
}
