package wal

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/framework0/ctxd/internal/failpoint"
	"github.com/framework0/ctxd/internal/fsutil"
)

// DefaultSegmentSize is the size of a segment file when
// Options.SegmentSize is 0, and the default of wal.segment_bytes: 64 MiB.
// It is a variable, as etcd's wal.SegmentSizeBytes is, only so that a test
// package can lower it for the stores it opens in its own process
// (testkit.SmallLogSegments): opening a log reads its last segment whole,
// and under the race detector every byte read is costly.
var DefaultSegmentSize int64 = 64 << 20

// MinSegmentSize is the smallest Options.SegmentSize.
const MinSegmentSize = 4096

// Options configure Open.
type Options struct {
	// SegmentSize is the size of each segment file: a multiple of 8, at
	// least MinSegmentSize (default DefaultSegmentSize). A record must fit
	// in one segment: its payload has at most SegmentSize - 24 bytes.
	SegmentSize int64
	// FirstSeq is the sequence number of the first record of a log that
	// has no segment yet (default 1). It is ignored when segments exist.
	FirstSeq uint64
	// FallocateOnly prepares segments with fallocate(2) alone, without
	// then writing zeros over them: half the disk writes, but on ext4 an
	// fdatasync after writing into never-written blocks also commits
	// their conversion, which made appends of 32 records 1.4x slower here
	// (see DESIGN.md). Where fallocate is not available, zeros are
	// written anyway.
	FallocateOnly bool
	// ResourceWait bounds how long a rotation waits, retrying, for a
	// next segment that could not be prepared for want of a resource
	// that comes back (file descriptors, disk space; see
	// resourceExhausted) before it fails the log (default
	// DefaultResourceWait; negative: no wait).
	ResourceWait time.Duration
	// Owner is given every file and folder the log creates: the data
	// folder's user when root opens a service user's log (an offline
	// command), whose server must still open them.
	Owner fsutil.Owner
}

// DefaultResourceWait is Options.ResourceWait when that is 0: long enough
// for a burst of connections or a large temporary file to go, short
// enough that the writes waiting behind the rotation answer within a
// client's usual timeout.
const DefaultResourceWait = 5 * time.Second

var (
	// ErrClosed is returned by every method but Close once the log is closed.
	ErrClosed = errors.New("wal: closed")
	// ErrTooLarge is returned by Append, which wrote nothing, when a record
	// does not fit in a segment.
	ErrTooLarge = errors.New("wal: record does not fit in a segment")
	// ErrCorrupt matches (errors.Is) every *CorruptError.
	ErrCorrupt = errors.New("wal: corrupt log")
	// ErrReleased is returned by Replay when records it should return were
	// released (ReleaseBefore) already.
	ErrReleased = errors.New("wal: records released")
)

// CorruptError is a record that does not verify where records must be
// whole (any segment but the last), or records missing between two
// segments: Open refuses the log with it, and Replay stops with it.
type CorruptError struct {
	File   string // the segment file
	Offset int64  // where in it
	Reason string
}

func (e *CorruptError) Error() string {
	return fmt.Sprintf("wal: corrupt log: %s at offset %d: %s", e.File, e.Offset, e.Reason)
}

// Is makes errors.Is(err, ErrCorrupt) true.
func (e *CorruptError) Is(target error) bool { return target == ErrCorrupt }

// Recovery is what Open found in the folder.
type Recovery struct {
	Segments int    // segment files read
	Records  uint64 // records verified
	// CutFile is the last segment when its records ended with a record
	// that does not verify (a torn write, cut off); "" when they ended
	// cleanly. CutOffset is where, and CutReason what was wrong.
	CutFile   string
	CutOffset int64
	CutReason string
	// ZeroedBytes counts the bytes past the end of the records that Open
	// overwrote with zeros (the rest of a torn write), so that they can
	// never be read as records.
	ZeroedBytes int64
}

// Log is an open write-ahead log. Append is for one goroutine at a time
// (the owner's writer); every other method is safe to call from any
// goroutine, also while an Append runs.
type Log struct {
	dir  string
	opts Options

	// wmu is held by Write (so Append) and Close; it guards the fields
	// below it.
	wmu   sync.Mutex
	cur   current
	buf   []byte
	spare chan spareResult // the next segment being prepared; nil when none is

	// smu is held by Sync during its fdatasync, and by a rotation while it
	// syncs the full segment and makes the next one current: a Write into
	// the current segment never waits for a Sync (that is the point of
	// splitting Append in two), a rotation does. syncFile is the current
	// segment's file, for Sync.
	smu      sync.Mutex
	syncFile *os.File
	// syncData is fdatasync; the power-cut test replaces it with a no-op
	// to prove that it catches a log that does not sync.
	syncData func(*os.File) error
	// failed is sticky: set by a failed write or fdatasync.
	failed atomic.Pointer[error]

	// relMu serialises ReleaseBefore, so that segments are always
	// deleted oldest first.
	relMu sync.Mutex
	// mu guards segs and closed (which is set holding wmu too).
	mu     sync.Mutex
	segs   []segment
	closed bool

	// last is the sequence number of the last durable record (FirstSeq-1
	// in a new log), stored after the fdatasync that made it durable.
	// written is the last record written (Write returned), durable or not.
	last, written atomic.Uint64

	recovery Recovery
}

// segment is a segment file and the sequence number of its first record.
type segment struct {
	first uint64
	path  string
}

// current is the segment being appended to.
type current struct {
	f     *os.File
	path  string
	first uint64 // the segment's first record
	size  int64
	off   int64 // where the next record goes
}

type spareResult struct {
	f   *os.File
	err error
	at  time.Time // when it was ready
}

const (
	segmentSuffix = ".wal"
	spareName     = "spare.tmp"
)

// segmentName is the file name of the segment whose first record is seq:
// 20 decimal digits, so that names sort in order.
func segmentName(seq uint64) string { return fmt.Sprintf("%020d%s", seq, segmentSuffix) }

func parseSegmentName(name string) (uint64, bool) {
	digits, ok := strings.CutSuffix(name, segmentSuffix)
	if !ok || len(digits) != 20 {
		return 0, false
	}
	seq, err := strconv.ParseUint(digits, 10, 64)
	if err != nil || segmentName(seq) != name {
		return 0, false
	}
	return seq, true
}

// Open opens the log in dir, creating dir and a first segment when there
// is none, and recovers it: it verifies every record of every segment, cuts
// a torn tail off the last segment (see the package comment), and
// returns a *CorruptError, naming the file and offset, when records that
// must be whole are not.
func Open(dir string, opts Options) (*Log, error) {
	if opts.SegmentSize == 0 {
		opts.SegmentSize = DefaultSegmentSize
	}
	if err := CheckSegmentSize(opts.SegmentSize); err != nil {
		return nil, fmt.Errorf("wal: segment size %d: %w", opts.SegmentSize, err)
	}
	if opts.FirstSeq == 0 {
		opts.FirstSeq = 1
	}
	if err := makeDir(dir, opts.Owner); err != nil {
		return nil, err
	}
	l := &Log{dir: dir, opts: opts, syncData: fdatasync}
	if err := os.Remove(l.sparePath()); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return nil, fmt.Errorf("wal: remove the unused spare segment: %w", err)
	}
	if err := l.checkCreate(); err != nil {
		return nil, err
	}
	segs, err := listSegments(dir)
	if err != nil {
		return nil, err
	}
	if len(segs) == 0 {
		path := filepath.Join(dir, segmentName(opts.FirstSeq))
		f, err := l.createFile(path, false) // the caller waits: no zeros
		if err != nil {
			return nil, err
		}
		if err := f.Close(); err != nil {
			return nil, fmt.Errorf("wal: %w", err)
		}
		segs = []segment{{first: opts.FirstSeq, path: path}}
	}
	if err := l.recover(segs); err != nil {
		return nil, err
	}
	l.segs = segs
	l.maybeStartSpare()
	return l, nil
}

// checkCreate creates and removes the spare segment's file, empty: a log
// whose folder takes no new file (its mode, a read-only mount) would take
// appends until its first segment filled, and then fail for good.
func (l *Log) checkCreate() error {
	f, err := os.OpenFile(l.sparePath(), os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return fmt.Errorf("wal: the log's folder %s must take new files, for its next segments: %w", l.dir, err)
	}
	_ = f.Close()
	if err := os.Remove(l.sparePath()); err != nil {
		return fmt.Errorf("wal: %w", err)
	}
	return nil
}

// CheckSegmentSize returns an error saying what is wrong with n as
// Options.SegmentSize, or nil when Open accepts it.
func CheckSegmentSize(n int64) error {
	if n < MinSegmentSize || n%align != 0 {
		return fmt.Errorf("must be a multiple of %d and at least %d", align, MinSegmentSize)
	}
	return nil
}

// makeDir creates dir when it does not exist, gives it owner, and then
// fsyncs its parent so that the new folder survives a power cut.
func makeDir(dir string, owner fsutil.Owner) error {
	if _, err := os.Stat(dir); err == nil {
		return nil
	} else if !errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("wal: %w", err)
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return fmt.Errorf("wal: %w", err)
	}
	if err := owner.Give(dir); err != nil {
		return fmt.Errorf("wal: %w", err)
	}
	return fsutil.SyncDir(filepath.Dir(filepath.Clean(dir)))
}

func listSegments(dir string) ([]segment, error) {
	entries, err := os.ReadDir(dir) // sorted by name, so by first record
	if err != nil {
		return nil, fmt.Errorf("wal: %w", err)
	}
	var segs []segment
	for _, e := range entries {
		if seq, ok := parseSegmentName(e.Name()); ok && e.Type().IsRegular() {
			segs = append(segs, segment{first: seq, path: filepath.Join(dir, e.Name())})
		}
	}
	return segs, nil
}

func (l *Log) sparePath() string { return filepath.Join(l.dir, spareName) }

// createFile creates the file at path, preallocated to the segment size
// (with zeros written over it when zeros is set), gives it Options.Owner,
// and makes it and its name durable. A file already there (a leftover:
// nothing the log holds) is removed first, and the new one is created
// exclusively, never through a link: a process running as root in another
// user's folder would otherwise truncate and fill whatever file of the
// system that user linked there.
func (l *Log) createFile(path string, zeros bool) (f *os.File, err error) {
	if err := os.Remove(path); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return nil, fmt.Errorf("wal: %w", err)
	}
	f, err = fsutil.OpenNoFollow(path, os.O_RDWR|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return nil, fmt.Errorf("wal: %w", err)
	}
	defer func() {
		if err != nil {
			f.Close()
			os.Remove(path)
		}
	}()
	if err := preallocate(f, 0, l.opts.SegmentSize, zeros); err != nil {
		return nil, err
	}
	if err := l.opts.Owner.GiveOpen(f); err != nil {
		return nil, fmt.Errorf("wal: %w", err)
	}
	if err := f.Sync(); err != nil {
		return nil, fmt.Errorf("wal: fsync %s: %w", path, err)
	}
	if err := fsutil.SyncDir(l.dir); err != nil {
		return nil, fmt.Errorf("wal: %w", err)
	}
	return f, nil
}

// preallocate gives f the blocks of [from, to) with fallocate, and then,
// when zeros is set or fallocate is not available, writes zeros over
// them, so that appends only ever overwrite written blocks. The caller
// fsyncs.
func preallocate(f *os.File, from, to int64, zeros bool) error {
	ok, err := allocate(f, from, to)
	if err != nil {
		return fmt.Errorf("wal: fallocate %s: %w", f.Name(), err)
	}
	if ok && !zeros {
		return nil
	}
	return writeZeros(f, from, to)
}

// writeZeros writes zeros over [from, to) of f, 1 MiB at a time, and
// fdatasyncs after each MiB: a spare segment is prepared while appends
// run, and one fsync of 64 MiB at the end kept the disk busy for so long
// that the appends' fdatasyncs waited behind it (a stall of 120-160 ms,
// once per segment; see DESIGN.md).
func writeZeros(f *os.File, from, to int64) error {
	zeros := make([]byte, min(to-from, 1<<20))
	for off := from; off < to; off += int64(len(zeros)) {
		if _, err := f.WriteAt(zeros[:min(int64(len(zeros)), to-off)], off); err != nil {
			return fmt.Errorf("wal: preallocate %s: %w", f.Name(), err)
		}
		if err := fdatasync(f); err != nil {
			return fmt.Errorf("wal: preallocate %s: fdatasync: %w", f.Name(), err)
		}
	}
	return nil
}

// recover reads every segment and leaves the last one open as l.cur.
func (l *Log) recover(segs []segment) error {
	next := segs[0].first
	var prev segment
	var prevEnd int64
	for i, sg := range segs {
		if i > 0 && sg.first != next {
			return &CorruptError{File: sg.path, Offset: 0, Reason: fmt.Sprintf(
				"the segment starts at record %d, but %s ends after record %d (at offset %d)",
				sg.first, filepath.Base(prev.path), next-1, prevEnd)}
		}
		last := i == len(segs)-1
		flag := os.O_RDONLY
		if last {
			flag = os.O_RDWR
		}
		f, err := fsutil.OpenNoFollow(sg.path, flag, 0)
		if err != nil {
			return fmt.Errorf("wal: %w", err)
		}
		if last {
			// Its torn tail is zeroed and appends go on in it.
			if err := fsutil.SoleNameForRoot(f); err != nil {
				f.Close()
				return fmt.Errorf("wal: %w", err)
			}
		}
		size, e, sc, err := scanAll(f, sg)
		l.recovery.Segments++
		l.recovery.Records += sc.next - sg.first
		if err == nil && !last && e == endBad {
			err = &CorruptError{File: sg.path, Offset: sc.off, Reason: sc.reason}
		}
		if err == nil && last {
			err = l.recoverLast(f, sg, size, e, sc)
		}
		if err != nil || !last {
			f.Close()
		}
		if err != nil {
			return err
		}
		next, prev, prevEnd = sc.next, sg, sc.off
	}
	return nil
}

// scanAll reads the records of segment sg, open as f, up to where they
// end, and returns the file's size, why they end, and the scanner there.
func scanAll(f *os.File, sg segment) (int64, end, *scanner, error) {
	st, err := f.Stat()
	if err != nil {
		return 0, endNone, &scanner{next: sg.first}, fmt.Errorf("wal: %w", err)
	}
	sc := newScanner(f, sg.path, st.Size(), sg.first)
	for {
		_, e, err := sc.scan()
		if err != nil || e != endNone {
			return st.Size(), e, sc, err
		}
	}
}

// recoverLast makes the last segment ready for appends after its records,
// which end where sc stopped for reason e: it clears what lies past them
// (repairTail), grows the file to the segment size when it is smaller,
// and makes it l.cur.
func (l *Log) recoverLast(f *os.File, sg segment, size int64, e end, sc *scanner) error {
	if e == endBad {
		l.recovery.CutFile, l.recovery.CutOffset, l.recovery.CutReason = sg.path, sc.off, sc.reason
	}
	zeroed, err := repairTail(f, sg, size, sc.off, sc.next, e, sc.reason)
	if err != nil {
		return err
	}
	l.recovery.ZeroedBytes = zeroed
	if size < l.opts.SegmentSize {
		if err := preallocate(f, size, l.opts.SegmentSize, false); err != nil {
			return err
		}
		size = l.opts.SegmentSize
		if err := f.Sync(); err != nil {
			return fmt.Errorf("wal: fsync %s: %w", sg.path, err)
		}
	} else if zeroed > 0 {
		if err := fdatasync(f); err != nil {
			return fmt.Errorf("wal: fdatasync %s: %w", sg.path, err)
		}
	}
	// A log reopened with a smaller SegmentSize keeps its last file, and
	// rotates once its records pass the new size: the setting takes
	// effect at once, not after the old size is filled.
	cur := size
	if size > l.opts.SegmentSize {
		cur = max(l.opts.SegmentSize, sc.off)
	}
	l.cur = current{f: f, path: sg.path, first: sg.first, size: cur, off: sc.off}
	l.syncFile = f
	l.last.Store(sc.next - 1)
	l.written.Store(sc.next - 1)
	return nil
}

// maybeStartSpare starts preparing the next segment once the current one
// is half full, so that it is ready before the current one fills, and a
// log that is opened and closed with few appends makes none. A
// preparation that failed for want of a resource that comes back is
// started again (at most once a second) while the current segment still
// has room, so that a passing shortage does not reach the rotation.
func (l *Log) maybeStartSpare() {
	if l.spare == nil {
		if l.cur.off >= l.cur.size/2 {
			l.startSpare()
		}
		return
	}
	select {
	case r := <-l.spare:
		if r.err != nil && resourceExhausted(r.err) && time.Since(r.at) >= time.Second {
			l.startSpare()
			return
		}
		l.spare <- r // the channel has room for its one result
	default:
	}
}

// startSpare starts preparing the next segment, under a temporary name.
func (l *Log) startSpare() {
	ch := make(chan spareResult, 1)
	l.spare = ch
	go func() {
		f, err := l.createFile(l.sparePath(), !l.opts.FallocateOnly)
		ch <- spareResult{f: f, err: err, at: time.Now()}
	}()
}

// nextSegment is the prepared next segment: the spare when it is ready,
// or, when its preparation failed for want of a resource that comes back
// (resourceExhausted), a new one prepared again (waitForResources). The
// log fails only when that does not help: before the spare is renamed
// into place nothing of it belongs to the log, so a new attempt can start
// from scratch.
func (l *Log) nextSegment() (*os.File, error) {
	if l.spare == nil {
		l.startSpare()
	}
	r := <-l.spare
	l.spare = nil
	if r.err == nil || !resourceExhausted(r.err) {
		return r.f, r.err
	}
	err := l.waitForResources(r.err, resourceExhausted, func() error {
		r.f, r.err = l.createFile(l.sparePath(), !l.opts.FallocateOnly)
		return r.err
	})
	return r.f, err
}

// waitForResources calls try again and again, with pauses of 10 ms
// doubling to 1 s, while its error is one that again accepts, for up to
// Options.ResourceWait in all, and returns the last error (err, the
// first one's, when there is no time for a second try).
func (l *Log) waitForResources(err error, again func(error) bool, try func() error) error {
	wait := l.opts.ResourceWait
	if wait == 0 {
		wait = DefaultResourceWait
	}
	deadline := time.Now().Add(wait)
	for pause := 10 * time.Millisecond; err != nil && again(err) && time.Now().Add(pause).Before(deadline); pause = min(2*pause, time.Second) {
		time.Sleep(pause)
		err = try()
	}
	return err
}

// resourceExhausted reports whether err is the want of a resource that
// other work may give back: disk space, or file descriptors (of the
// process or of the system). Only preparing a spare segment retries
// them, also when an fsync of the spare returned ENOSPC: a retry makes a
// new file from scratch (the failed one is removed), so nothing of the
// failed fsync is trusted. An I/O error is never retried.
func resourceExhausted(err error) bool {
	return outOfDescriptors(err) || errors.Is(err, syscall.ENOSPC) || errors.Is(err, syscall.EDQUOT)
}

// outOfDescriptors reports whether err is the want of a file descriptor:
// an open that failed, which can be tried again (an fsync that failed
// cannot, so a rotation retries opening the folder and nothing else).
func outOfDescriptors(err error) bool {
	return errors.Is(err, syscall.EMFILE) || errors.Is(err, syscall.ENFILE)
}

// Dir is the log's folder.
func (l *Log) Dir() string { return l.dir }

// Recovery is what Open found.
func (l *Log) Recovery() Recovery { return l.recovery }

// LastSeq is the sequence number of the last durable record: the last
// record of the last Append that returned without error (of one that
// failed, some records may be durable too). In a log that never had a
// record it is the first sequence number minus one.
func (l *Log) LastSeq() uint64 { return l.last.Load() }

// FirstSeq is the sequence number of the oldest record the log holds, or
// LastSeq()+1 when it holds none.
func (l *Log) FirstSeq() uint64 {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.segs[0].first
}

// Append writes recs as records with the next sequence numbers, in order,
// then makes them durable with one fdatasync (two when they cross into a
// new segment), and returns the sequence number of the last one; the
// first is that minus len(recs)-1. Append with no record returns
// LastSeq(). It is Write, then Sync.
//
// When Append returns an error, the records may or may not be durable;
// after a failed write or fdatasync (the kernel may have dropped the
// unwritten pages) every later Write, Sync and Append fails too, until
// the log is reopened. ErrTooLarge and ErrClosed are returned before
// anything is written.
func (l *Log) Append(recs ...[]byte) (uint64, error) {
	last, err := l.Write(recs...)
	if err != nil {
		return 0, err
	}
	if len(recs) == 0 {
		return l.LastSeq(), nil
	}
	if _, err := l.Sync(); err != nil {
		return 0, err
	}
	return last, nil
}

// Write writes recs as records with the next sequence numbers, in order,
// without making them durable (Sync does), and returns the sequence
// number of the last one. Write and Sync may run at the same time, so an
// owner can write the next records while the previous ones are being
// synced (a pipeline); a record is durable once a Sync that began after
// its Write returned has returned. When records cross into a new segment,
// Write waits for a Sync in progress and makes the full segment durable
// before it starts the next one.
//
// Write is for one goroutine at a time. Its errors are Append's.
func (l *Log) Write(recs ...[]byte) (uint64, error) {
	l.wmu.Lock()
	defer l.wmu.Unlock()
	if l.closed {
		return 0, ErrClosed
	}
	if err := l.failed.Load(); err != nil {
		return 0, *err
	}
	last := l.written.Load()
	if len(recs) == 0 {
		return last, nil
	}
	maxPayload := l.opts.SegmentSize - headerSize
	for i, r := range recs {
		if int64(len(r)) > maxPayload {
			return 0, fmt.Errorf("%w: record %d of %d has %d bytes, a segment holds at most %d", ErrTooLarge, i+1, len(recs), len(r), maxPayload)
		}
	}
	if uint64(len(recs)) > 1<<32 {
		return 0, fmt.Errorf("%w: %d records in one append", ErrTooLarge, len(recs))
	}
	first := last + 1
	// The group of these records starts at the first record not durable
	// now: Writes pipelined behind a Sync share the group of the records
	// that Sync is making durable, since a power cut may keep any of
	// them and not the others (repairTail).
	group := l.last.Load() + 1
	buf := l.buf[:0]
	start := l.cur.off
	for i, r := range recs {
		seq := first + uint64(i)
		if start+int64(len(buf))+recordSize(len(r)) > l.cur.size {
			if len(buf) > 0 {
				if err := l.write(buf, start, seq-1); err != nil {
					return 0, err
				}
			}
			if err := l.rotate(seq); err != nil {
				return 0, err
			}
			buf, start = buf[:0], 0
		}
		buf = appendRecord(buf, l.cur.first, seq, uint32(seq-group), r)
	}
	err := l.write(buf, start, first+uint64(len(recs))-1)
	if cap(buf) <= 4<<20 {
		l.buf = buf[:0]
	}
	if err != nil {
		return 0, err
	}
	return first + uint64(len(recs)) - 1, nil
}

// write writes buf at off in the current segment and raises the last
// written record to last.
func (l *Log) write(buf []byte, off int64, last uint64) error {
	if _, err := l.cur.f.WriteAt(buf, off); err != nil {
		return l.fail(err)
	}
	l.cur.off = off + int64(len(buf))
	l.written.Store(last)
	l.maybeStartSpare()
	return nil
}

// Sync makes every record written before it began durable, with one
// fdatasync of the current segment (none when they are all durable
// already), and returns the last durable record. Sync is for one
// goroutine at a time, and may run while Write does.
func (l *Log) Sync() (uint64, error) {
	l.smu.Lock()
	defer l.smu.Unlock()
	l.mu.Lock()
	closed := l.closed
	l.mu.Unlock()
	if closed {
		return 0, ErrClosed
	}
	if err := l.failed.Load(); err != nil {
		return 0, *err
	}
	// Every record up to upTo was written before this load, into the
	// current segment or one that a rotation synced whole before it
	// made syncFile current (holding smu).
	upTo := l.written.Load()
	if upTo <= l.last.Load() {
		return l.last.Load(), nil
	}
	if err := l.syncData(l.syncFile); err != nil {
		return 0, l.fail(fmt.Errorf("fdatasync %s: %w", l.syncFile.Name(), err))
	}
	l.last.Store(upTo)
	return upTo, nil
}

// fail makes the log refuse every later Write and Sync with an error
// wrapping err, which it returns (the first failure's).
func (l *Log) fail(err error) error {
	failed := fmt.Errorf("wal: append failed, the log takes no more appends until it is reopened: %w", err)
	if l.failed.CompareAndSwap(nil, &failed) {
		return failed
	}
	return *l.failed.Load()
}

// rotate makes the spare segment the current one, named for its first
// record seq, once the current one is durable: it waits for a Sync in
// progress and fdatasyncs the current segment itself. Any error fails the
// log (once a want of file descriptors or disk space, which comes back,
// has been waited out for up to Options.ResourceWait: see nextSegment),
// also when nothing of this Write was written: its owner has given
// the records their place (the store numbered their changes), and a later
// Write that succeeded would leave a hole that the next Open refuses.
func (l *Log) rotate(seq uint64) error {
	next, err := l.nextSegment()
	if err != nil {
		return l.fail(fmt.Errorf("wal: prepare the next segment: %w", err))
	}
	l.smu.Lock()
	defer l.smu.Unlock()
	if err := l.failed.Load(); err != nil {
		next.Close()
		os.Remove(l.sparePath())
		return *err
	}
	if upTo := l.written.Load(); upTo > l.last.Load() {
		if err := l.syncData(l.cur.f); err != nil {
			next.Close()
			return l.fail(fmt.Errorf("fdatasync %s: %w", l.cur.path, err))
		}
		l.last.Store(upTo)
	}
	path := filepath.Join(l.dir, segmentName(seq))
	if err := os.Rename(l.sparePath(), path); err != nil {
		next.Close()
		return l.fail(err)
	}
	failpoint.Hit(failpoint.WALRotate)
	syncDir := func() error { return fsutil.SyncDir(l.dir) }
	if err := l.waitForResources(syncDir(), outOfDescriptors, syncDir); err != nil {
		next.Close()
		return l.fail(err)
	}
	old := l.cur
	l.cur = current{f: next, path: path, first: seq, size: l.opts.SegmentSize}
	l.syncFile = next
	l.mu.Lock()
	l.segs = append(l.segs, segment{first: seq, path: path})
	l.mu.Unlock()
	old.f.Close() // fully synced: a close error loses nothing
	return nil
}

// ReleaseBefore deletes the segments whose records all have sequence
// numbers below seq (the owner has them elsewhere now), oldest first, then
// fsyncs the folder. It never deletes the segment being appended to, so
// records below seq may remain. seq may be at most LastSeq()+1. When it
// returns an error, some of those segments may be gone all the same: call
// it only for records that are safe elsewhere.
func (l *Log) ReleaseBefore(seq uint64) error {
	l.relMu.Lock()
	defer l.relMu.Unlock()
	l.mu.Lock()
	if l.closed {
		l.mu.Unlock()
		return ErrClosed
	}
	if last := l.last.Load(); seq > last+1 {
		l.mu.Unlock()
		return fmt.Errorf("wal: release before record %d: the last record is %d", seq, last)
	}
	n := 0
	for n+1 < len(l.segs) && l.segs[n+1].first <= seq {
		n++
	}
	gone := slices.Clone(l.segs[:n])
	l.segs = slices.Clone(l.segs[n:])
	l.mu.Unlock()
	if n == 0 {
		return nil
	}
	for i, sg := range gone {
		if err := os.Remove(sg.path); err != nil && !errors.Is(err, fs.ErrNotExist) {
			// Keep the segments left in the list, so that the next
			// release deletes them first: a gap on disk would make the
			// next Open refuse the log.
			l.mu.Lock()
			l.segs = append(slices.Clone(gone[i:]), l.segs...)
			l.mu.Unlock()
			return fmt.Errorf("wal: release %s: %w", filepath.Base(sg.path), err)
		}
	}
	return fsutil.SyncDir(l.dir)
}

// Close waits for an Append in progress, closes the files and removes the
// spare segment. Close is idempotent; every other method then returns
// ErrClosed.
func (l *Log) Close() error {
	l.wmu.Lock()
	defer l.wmu.Unlock()
	l.smu.Lock()
	defer l.smu.Unlock()
	l.mu.Lock()
	if l.closed {
		l.mu.Unlock()
		return nil
	}
	l.closed = true
	l.mu.Unlock()
	if l.spare != nil {
		r := <-l.spare
		l.spare = nil
		if r.err == nil {
			r.f.Close()
			os.Remove(l.sparePath())
		}
	}
	if err := l.cur.f.Close(); err != nil {
		return fmt.Errorf("wal: %w", err)
	}
	return nil
}
