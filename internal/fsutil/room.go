package fsutil

import (
	"errors"
	"fmt"
	"os"

	ctxd "github.com/framework0/ctxd"
)

// Reserve is the room kept free on a file system for the store: a file
// written beside it (a snapshot, a dump, a defrag's or a restore's copy of
// the database) stops rather than leave less than that free, so that it
// never takes the space the store's own writes need (the write-ahead
// log's next segment, the database file's growth). Without it a large dump
// filled the data disk, and the store failed until a restart.
//
// Reserve 0 checks nothing; ReserveAuto is decided on each file system by
// its size (AutoReserve).
type Reserve int64

// ReserveAuto is the Reserve decided by each file system's size
// (AutoReserve); written "auto" in the configuration.
const ReserveAuto Reserve = -1

// MaxAutoReserve caps AutoReserve.
const MaxAutoReserve = 1 << 30

// AutoReserve is what ReserveAuto keeps free on a file system of fsBytes
// bytes: a twentieth of it (on a small disk too, to leave the store some
// room), at most MaxAutoReserve (a 64 MiB log segment, and the database
// file's next steps of growth, many times over).
func AutoReserve(fsBytes int64) int64 { return min(max(fsBytes, 0)/20, MaxAutoReserve) }

// ErrReserve matches the error of a write that would eat into a Reserve
// (a *ReserveError).
var ErrReserve = errors.New("the disk space kept free for the store")

// ReserveError is a file that did not fit beside the store's reserve.
type ReserveError struct {
	What    string // the file: its name, never its folder's path (the message reaches clients)
	Free    int64  // the file system's free space when it was checked
	Need    int64  // what was still to be written (a lower bound)
	Reserve int64  // the space kept free
}

func (e *ReserveError) Error() string {
	return fmt.Sprintf("not enough disk space for %s: writing %s more would leave less than the %s kept free for the store (storage.reserve_bytes) on its file system, which has %s free; nothing was kept",
		e.What, ctxd.FormatBytes(e.Need), ctxd.FormatBytes(e.Reserve), ctxd.FormatBytes(e.Free))
}

// Is makes a ReserveError match ErrReserve.
func (e *ReserveError) Is(target error) bool { return target == ErrReserve }

// Fits returns a *ReserveError naming what when writing need more bytes
// in the folder dir would leave less than r free on its file system. A
// file system whose free space cannot be read is not checked (the write
// itself then meets whatever is wrong with it).
func (r Reserve) Fits(dir, what string, need int64) error {
	if r == 0 {
		return nil
	}
	size, free, err := StatFS(dir)
	if err != nil {
		return nil
	}
	return r.fits(what, size, free, need)
}

func (r Reserve) fits(what string, size, free, need int64) error {
	keep := int64(r)
	if r == ReserveAuto {
		keep = AutoReserve(size)
	}
	if keep <= 0 || free-need >= keep {
		return nil
	}
	return &ReserveError{What: what, Free: free, Need: need, Reserve: keep}
}

// roomCheckEvery is how many bytes a Temp writes between two looks at
// its file system's free space: a look is one statfs system call.
const roomCheckEvery = 1 << 20

// room checks a Temp's writes against a Reserve.
type room struct {
	reserve Reserve
	what    string // the file, for the error
	free    int64  // free bytes at the last look
	size    int64  // the file system's size
	since   int64  // bytes written since the last look
	looked  bool
}

// take checks that n more bytes written to f fit beside the reserve.
func (r *room) take(f *os.File, n int) error {
	if r == nil || r.reserve == 0 {
		return nil
	}
	if !r.looked || r.since+int64(n) > roomCheckEvery {
		size, free, err := fstatFS(f)
		if err != nil {
			return nil // not checked, as Reserve.Fits
		}
		r.size, r.free, r.since, r.looked = size, free, 0, true
	}
	if err := r.reserve.fits(r.what, r.size, r.free-r.since, int64(n)); err != nil {
		return err
	}
	r.since += int64(n)
	return nil
}
