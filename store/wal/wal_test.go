package wal_test

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/framework0/ctxd/store/wal"
)

// small is the segment size of most tests: 4 KiB holds 14 records of
// 256 bytes, so rotation is exercised often.
const small = wal.MinSegmentSize

// openLog opens the log in dir and closes it when the test ends.
func openLog(t testing.TB, dir string, opts wal.Options) *wal.Log {
	t.Helper()
	l, err := wal.Open(dir, opts)
	require.NoError(t, err)
	t.Cleanup(func() { l.Close() })
	return l
}

// payload is record i's content: its length varies from 150 to 349
// bytes, so that a 4 KiB segment holds 14 records.
func payload(i int) []byte {
	return bytes.Repeat([]byte{byte('a' + i%26)}, 150+i*37%200)
}

type entry struct {
	seq uint64
	rec string
}

// replayAll returns every record after after.
func replayAll(t testing.TB, l *wal.Log, after uint64) []entry {
	t.Helper()
	var out []entry
	require.NoError(t, l.Replay(after, func(seq uint64, rec []byte) error {
		out = append(out, entry{seq, string(rec)})
		return nil
	}))
	return out
}

// want is the entries of records first..last made by payload.
func want(first, last int) []entry {
	var out []entry
	for i := first; i <= last; i++ {
		out = append(out, entry{uint64(i), string(payload(i))})
	}
	return out
}

// appendEach appends records first..last of payload, one Append each.
func appendEach(t testing.TB, l *wal.Log, first, last int) {
	t.Helper()
	for i := first; i <= last; i++ {
		seq, err := l.Append(payload(i))
		require.NoError(t, err)
		require.Equal(t, uint64(i), seq)
	}
}

// recordSize is what a record with an n-byte payload takes on disk.
func recordSize(n int) int64 { return (24 + int64(n) + 7) &^ 7 }

// segments lists the segment files of dir.
func segments(t testing.TB, dir string) []string {
	t.Helper()
	entries, err := os.ReadDir(dir)
	require.NoError(t, err)
	var out []string
	for _, e := range entries {
		if strings.HasSuffix(e.Name(), ".wal") {
			out = append(out, e.Name())
		}
	}
	return out
}

func segName(seq uint64) string { return fmt.Sprintf("%020d.wal", seq) }

// copyDir copies the segment files of src into a new temp folder.
func copyDir(t testing.TB, src string) string {
	t.Helper()
	dst := t.TempDir()
	for _, name := range segments(t, src) {
		b, err := os.ReadFile(filepath.Join(src, name))
		require.NoError(t, err)
		require.NoError(t, os.WriteFile(filepath.Join(dst, name), b, 0o600))
	}
	return dst
}

func TestAppendCloseReopenReplay(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "wal")
	l := openLog(t, dir, wal.Options{})
	assert.Equal(t, uint64(0), l.LastSeq())
	assert.Equal(t, uint64(1), l.FirstSeq())
	assert.Empty(t, replayAll(t, l, 0))
	assert.Equal(t, []string{segName(1)}, segments(t, dir))

	seq, err := l.Append()
	require.NoError(t, err)
	assert.Equal(t, uint64(0), seq, "an empty append writes nothing")
	appendEach(t, l, 1, 10)
	var group [][]byte
	for i := 11; i <= 42; i++ {
		group = append(group, payload(i))
	}
	seq, err = l.Append(group...)
	require.NoError(t, err)
	assert.Equal(t, uint64(42), seq, "a group's records get consecutive numbers; Append returns the last")
	assert.Equal(t, uint64(42), l.LastSeq())
	assert.Equal(t, want(1, 42), replayAll(t, l, 0))
	assert.Equal(t, want(31, 42), replayAll(t, l, 30))
	assert.Empty(t, replayAll(t, l, 42))
	assert.Empty(t, replayAll(t, l, 100))

	require.NoError(t, l.Close())
	require.NoError(t, l.Close(), "Close is idempotent")
	_, err = l.Append(payload(43))
	assert.ErrorIs(t, err, wal.ErrClosed)
	assert.ErrorIs(t, l.Replay(0, func(uint64, []byte) error { return nil }), wal.ErrClosed)
	assert.ErrorIs(t, l.ReleaseBefore(1), wal.ErrClosed)
	assert.Equal(t, []string{segName(1)}, testNames(t, dir), "Close removes the spare segment")

	l = openLog(t, dir, wal.Options{})
	assert.Equal(t, uint64(42), l.LastSeq())
	assert.Equal(t, wal.Recovery{Segments: 1, Records: 42}, l.Recovery())
	assert.Equal(t, want(1, 42), replayAll(t, l, 0))
	appendEach(t, l, 43, 50)
	require.NoError(t, l.Close())

	l = openLog(t, dir, wal.Options{})
	assert.Equal(t, want(1, 50), replayAll(t, l, 0))
	info, err := os.Stat(filepath.Join(dir, segName(1)))
	require.NoError(t, err)
	assert.Equal(t, int64(wal.DefaultSegmentSize), info.Size(), "segments are preallocated")
}

// testNames lists every file of dir.
func testNames(t testing.TB, dir string) []string {
	t.Helper()
	entries, err := os.ReadDir(dir)
	require.NoError(t, err)
	var out []string
	for _, e := range entries {
		out = append(out, e.Name())
	}
	return out
}

func TestReplayStopsOnCallbackError(t *testing.T) {
	l := openLog(t, t.TempDir(), wal.Options{SegmentSize: small})
	appendEach(t, l, 1, 40)
	boom := errors.New("boom")
	var seen []uint64
	err := l.Replay(5, func(seq uint64, _ []byte) error {
		seen = append(seen, seq)
		if seq == 20 {
			return boom
		}
		return nil
	})
	require.ErrorIs(t, err, boom)
	assert.Len(t, seen, 15)
	assert.Equal(t, uint64(20), seen[len(seen)-1])
}

// A new log's first segment (and each spare) is created afresh, never
// through what is at its name: a symbolic link planted there, by the owner
// of a folder a root-run process writes in, is replaced, and the file it
// names is neither truncated nor filled.
func TestNewSegmentIsNotWrittenThroughALink(t *testing.T) {
	dir := t.TempDir()
	victim := filepath.Join(t.TempDir(), "victim")
	require.NoError(t, os.WriteFile(victim, []byte("precious"), 0o600))
	require.NoError(t, os.Symlink(victim, filepath.Join(dir, segName(1))))
	l := openLog(t, dir, wal.Options{SegmentSize: small})
	_, err := l.Append([]byte("a"))
	require.NoError(t, err)
	b, err := os.ReadFile(victim)
	require.NoError(t, err)
	assert.Equal(t, "precious", string(b), "the linked file is untouched")
	fi, err := os.Lstat(filepath.Join(dir, segName(1)))
	require.NoError(t, err)
	assert.True(t, fi.Mode().IsRegular(), "the segment is a file of its own: %v", fi.Mode())
}

// Run as root, the log does not write into a last segment that has other
// names: a folder's owner could have linked a file of root's there, whose
// bytes (not records) would be zeroed as a torn tail.
func TestRootDoesNotWriteIntoAHardLinkedSegment(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("the check is root's")
	}
	dir := t.TempDir()
	victim := filepath.Join(t.TempDir(), "victim")
	require.NoError(t, os.WriteFile(victim, []byte("root's precious data"), 0o600))
	require.NoError(t, os.Link(victim, filepath.Join(dir, segName(1))))
	_, err := wal.Open(dir, wal.Options{SegmentSize: small})
	require.Error(t, err)
	assert.Contains(t, err.Error(), "hard links")
	b, err := os.ReadFile(victim)
	require.NoError(t, err)
	assert.Equal(t, "root's precious data", string(b), "the linked file is untouched")
}

func TestFirstSeq(t *testing.T) {
	dir := t.TempDir()
	l := openLog(t, dir, wal.Options{FirstSeq: 1000, SegmentSize: small})
	assert.Equal(t, uint64(999), l.LastSeq())
	assert.Equal(t, uint64(1000), l.FirstSeq())
	seq, err := l.Append([]byte("a"), []byte("b"))
	require.NoError(t, err)
	assert.Equal(t, uint64(1001), seq)
	assert.Equal(t, []entry{{1000, "a"}, {1001, "b"}}, replayAll(t, l, 999))
	err = l.Replay(0, func(uint64, []byte) error { return nil })
	assert.ErrorIs(t, err, wal.ErrReleased, "records before the first are not in the log")
	assert.Equal(t, []string{segName(1000)}, segments(t, dir))
	require.NoError(t, l.Close())

	l = openLog(t, dir, wal.Options{FirstSeq: 5, SegmentSize: small})
	assert.Equal(t, uint64(1001), l.LastSeq(), "FirstSeq only applies to a new log")
}

func TestOptions(t *testing.T) {
	for _, size := range []int64{wal.MinSegmentSize - 8, wal.MinSegmentSize + 4, -1} {
		_, err := wal.Open(t.TempDir(), wal.Options{SegmentSize: size})
		assert.ErrorContains(t, err, "segment size", "size %d", size)
	}
}

func TestTooLarge(t *testing.T) {
	dir := t.TempDir()
	l := openLog(t, dir, wal.Options{SegmentSize: small})
	appendEach(t, l, 1, 3)
	_, err := l.Append([]byte("fits"), make([]byte, small-23))
	require.ErrorIs(t, err, wal.ErrTooLarge)
	assert.Equal(t, uint64(3), l.LastSeq(), "nothing of the group was written")
	full := bytes.Repeat([]byte("f"), small-24)
	seq, err := l.Append(full)
	require.NoError(t, err, "a record that fills a whole segment fits")
	assert.Equal(t, uint64(4), seq)
	appendEach(t, l, 5, 6)
	require.NoError(t, l.Close())
	l = openLog(t, dir, wal.Options{SegmentSize: small})
	got := replayAll(t, l, 0)
	require.Len(t, got, 6)
	assert.Equal(t, string(full), got[3].rec)
	assert.Equal(t, []string{segName(1), segName(4), segName(5)}, segments(t, dir))
}

// TestTornTailEveryOffset cuts the last record at every byte: by
// truncating the file there (a crash before a size change was durable),
// and by zeroing the rest of the record (a preallocated file whose pages
// were not all written). Every record before it is recovered, and the log
// takes appends after it.
func TestTornTailEveryOffset(t *testing.T) {
	src := t.TempDir()
	opts := wal.Options{SegmentSize: 4 * small} // less than half full: no spare to prepare
	l := openLog(t, src, opts)
	appendEach(t, l, 1, 9) // 9 is the victim
	require.NoError(t, l.Close())
	var start int64
	for i := 1; i <= 8; i++ {
		start += recordSize(len(payload(i)))
	}
	seg := segName(1)
	end := start + 24 + int64(len(payload(9))) // the padding after it is not part of the record
	for cut := start; cut < end; cut++ {
		for _, how := range []string{"truncate", "zero"} {
			dir := copyDir(t, src)
			path := filepath.Join(dir, seg)
			if how == "truncate" {
				require.NoError(t, os.Truncate(path, cut))
			} else {
				zeroRange(t, path, cut, end)
			}
			l, err := wal.Open(dir, opts)
			require.NoError(t, err, "%s at %d", how, cut)
			require.Equal(t, uint64(8), l.LastSeq(), "%s at %d", how, cut)
			require.Equal(t, want(1, 8), replayAll(t, l, 0))
			seq, err := l.Append([]byte("after the cut"))
			require.NoError(t, err)
			require.Equal(t, uint64(9), seq)
			require.NoError(t, l.Close())

			l, err = wal.Open(dir, opts)
			require.NoError(t, err)
			require.Equal(t, append(want(1, 8), entry{9, "after the cut"}), replayAll(t, l, 0), "%s at %d", how, cut)
			require.NoError(t, l.Close())
		}
	}
}

func zeroRange(t testing.TB, path string, from, to int64) {
	t.Helper()
	f, err := os.OpenFile(path, os.O_RDWR, 0)
	require.NoError(t, err)
	defer f.Close()
	_, err = f.WriteAt(make([]byte, to-from), from)
	require.NoError(t, err)
}

func flipByte(t testing.TB, path string, off int64) {
	t.Helper()
	f, err := os.OpenFile(path, os.O_RDWR, 0)
	require.NoError(t, err)
	defer f.Close()
	b := make([]byte, 1)
	_, err = f.ReadAt(b, off)
	require.NoError(t, err)
	b[0] ^= 0x40
	_, err = f.WriteAt(b, off)
	require.NoError(t, err)
}

// offsetOf is where record i of a segment whose first record is first
// starts, when every record came from payload.
func offsetOf(first, i int) int64 {
	var off int64
	for j := first; j < i; j++ {
		off += recordSize(len(payload(j)))
	}
	return off
}

func TestFlippedByteInLastRecordIsCut(t *testing.T) {
	dir := t.TempDir()
	l := openLog(t, dir, wal.Options{SegmentSize: small})
	appendEach(t, l, 1, 20) // two segments: 1..14 and 15..20
	require.NoError(t, l.Close())
	require.Equal(t, []string{segName(1), segName(15)}, segments(t, dir))
	last := filepath.Join(dir, segName(15))
	off := offsetOf(15, 20)
	flipByte(t, last, off+24+int64(len(payload(20)))/2)

	l = openLog(t, dir, wal.Options{SegmentSize: small})
	assert.Equal(t, want(1, 19), replayAll(t, l, 0))
	rec := l.Recovery()
	assert.Equal(t, last, rec.CutFile)
	assert.Equal(t, off, rec.CutOffset)
	assert.Contains(t, rec.CutReason, "checksum mismatch")
	assert.Positive(t, rec.ZeroedBytes)
	appendEach(t, l, 20, 21)
	require.NoError(t, l.Close())
	l = openLog(t, dir, wal.Options{SegmentSize: small})
	assert.Equal(t, want(1, 21), replayAll(t, l, 0))
	assert.Empty(t, l.Recovery().CutFile)
}

// corruptOpen opens dir and returns the *CorruptError it must fail with.
func corruptOpen(t testing.TB, dir string) *wal.CorruptError {
	t.Helper()
	_, err := wal.Open(dir, wal.Options{SegmentSize: small})
	require.ErrorIs(t, err, wal.ErrCorrupt)
	var ce *wal.CorruptError
	require.ErrorAs(t, err, &ce)
	assert.Contains(t, err.Error(), ce.File)
	assert.Contains(t, err.Error(), fmt.Sprintf("offset %d", ce.Offset))
	return ce
}

func TestDamageOutsideTheTailIsAnError(t *testing.T) {
	src := t.TempDir()
	l := openLog(t, src, wal.Options{SegmentSize: small})
	appendEach(t, l, 1, 33) // segments 1..14, 15..28, 29..33
	require.NoError(t, l.Close())
	require.Equal(t, []string{segName(1), segName(15), segName(29)}, segments(t, src))

	t.Run("flipped byte in an earlier segment", func(t *testing.T) {
		for _, i := range []int{1, 5, 14} { // first, middle, last record of the segment
			dir := copyDir(t, src)
			path := filepath.Join(dir, segName(1))
			off := offsetOf(1, i)
			flipByte(t, path, off+24+int64(len(payload(i)))/2)
			ce := corruptOpen(t, dir)
			assert.Equal(t, path, ce.File, "record %d", i)
			assert.Equal(t, off, ce.Offset, "record %d", i)
			assert.Contains(t, ce.Reason, "checksum mismatch")
		}
	})
	t.Run("flipped header byte in an earlier segment", func(t *testing.T) {
		dir := copyDir(t, src)
		path := filepath.Join(dir, segName(15))
		off := offsetOf(15, 17)
		flipByte(t, path, off+9) // the sequence number
		ce := corruptOpen(t, dir)
		assert.Equal(t, path, ce.File)
		assert.Equal(t, off, ce.Offset)
	})
	t.Run("zeroed record in an earlier segment", func(t *testing.T) {
		dir := copyDir(t, src)
		path := filepath.Join(dir, segName(1))
		off := offsetOf(1, 14)
		zeroRange(t, path, off, off+recordSize(len(payload(14))))
		ce := corruptOpen(t, dir)
		assert.Equal(t, filepath.Join(dir, segName(15)), ce.File, "the next segment does not follow")
		assert.Contains(t, ce.Reason, "ends after record 13")
	})
	t.Run("missing segment", func(t *testing.T) {
		dir := copyDir(t, src)
		require.NoError(t, os.Remove(filepath.Join(dir, segName(15))))
		ce := corruptOpen(t, dir)
		assert.Equal(t, filepath.Join(dir, segName(29)), ce.File)
		assert.Equal(t, int64(0), ce.Offset)
		assert.Contains(t, ce.Reason, "starts at record 29")
		assert.Contains(t, ce.Reason, segName(1)+" ends after record 14")
	})
	t.Run("overlapping segments", func(t *testing.T) {
		dir := copyDir(t, src)
		require.NoError(t, os.Rename(filepath.Join(dir, segName(29)), filepath.Join(dir, segName(27))))
		ce := corruptOpen(t, dir)
		assert.Equal(t, filepath.Join(dir, segName(27)), ce.File)
		assert.Contains(t, ce.Reason, "starts at record 27")
		assert.Contains(t, ce.Reason, segName(15)+" ends after record 28")
	})
	t.Run("acknowledged record in the last segment", func(t *testing.T) {
		// Records 29..33 were each acknowledged: damage to 31 is not a
		// torn tail, since 32 and 33 were written once 31 was durable.
		for _, damage := range []string{"flip", "zero"} {
			dir := copyDir(t, src)
			path := filepath.Join(dir, segName(29))
			off := offsetOf(29, 31)
			if damage == "flip" {
				flipByte(t, path, off+30)
			} else {
				zeroRange(t, path, off, off+recordSize(len(payload(31))))
			}
			ce := corruptOpen(t, dir)
			assert.Equal(t, path, ce.File, damage)
			assert.Equal(t, off, ce.Offset, damage)
			assert.Contains(t, ce.Reason, "record 32, written after them once they were durable, is intact", damage)
		}
	})
	t.Run("unknown record kind", func(t *testing.T) {
		dir := copyDir(t, src)
		path := filepath.Join(dir, segName(1))
		flipByte(t, path, offsetOf(1, 3)+20)
		ce := corruptOpen(t, dir)
		assert.Contains(t, ce.Reason, "unknown record kind")
	})
}

// TestTornGroupIsCut: the records of the last Append, which never
// returned, may reach the disk in any order. A hole in them cuts the log
// there, and the records of the group after the hole are cleared.
func TestTornGroupIsCut(t *testing.T) {
	dir := t.TempDir()
	l := openLog(t, dir, wal.Options{SegmentSize: small})
	appendEach(t, l, 1, 2)
	_, err := l.Append(payload(3), payload(4), payload(5), payload(6), payload(7))
	require.NoError(t, err)
	require.NoError(t, l.Close())
	path := filepath.Join(dir, segName(1))
	off := offsetOf(1, 5)
	zeroRange(t, path, off, off+recordSize(len(payload(5))))

	l = openLog(t, dir, wal.Options{SegmentSize: small})
	assert.Equal(t, want(1, 4), replayAll(t, l, 0))
	assert.Positive(t, l.Recovery().ZeroedBytes, "records 6 and 7 were cleared")
	b, err := os.ReadFile(path)
	require.NoError(t, err)
	assert.Equal(t, make([]byte, small-off), b[off:], "everything past the cut is zero")
}

// TestStaleRecordAfterCutIsNeverReplayed: a group [5, 6, 7] is torn at 6.
// A new record 6 of the same size as the old one is appended at the cut;
// the old record 7 right after it would verify (its number comes next),
// so it must be gone.
func TestStaleRecordAfterCutIsNeverReplayed(t *testing.T) {
	dir := t.TempDir()
	l := openLog(t, dir, wal.Options{SegmentSize: small})
	appendEach(t, l, 1, 4)
	_, err := l.Append([]byte("five"), []byte("old six!"), []byte("seven"))
	require.NoError(t, err)
	require.NoError(t, l.Close())
	path := filepath.Join(dir, segName(1))
	flipByte(t, path, offsetOf(1, 5)+recordSize(4)+24+2) // in "old six!"

	l = openLog(t, dir, wal.Options{SegmentSize: small})
	assert.Equal(t, append(want(1, 4), entry{5, "five"}), replayAll(t, l, 0))
	seq, err := l.Append([]byte("new six!"))
	require.NoError(t, err)
	require.Equal(t, uint64(6), seq)
	require.NoError(t, l.Close())

	l = openLog(t, dir, wal.Options{SegmentSize: small})
	assert.Equal(t, append(want(1, 4), entry{5, "five"}, entry{6, "new six!"}), replayAll(t, l, 0))
	assert.Equal(t, uint64(6), l.LastSeq())
	seq, err = l.Append([]byte("new seven"))
	require.NoError(t, err)
	assert.Equal(t, uint64(7), seq)
}

func TestRotationAndRelease(t *testing.T) {
	for _, fallocOnly := range []bool{false, true} {
		t.Run(fmt.Sprintf("fallocateonly=%v", fallocOnly), func(t *testing.T) {
			dir := t.TempDir()
			opts := wal.Options{SegmentSize: small, FallocateOnly: fallocOnly}
			l := openLog(t, dir, opts)
			appendEach(t, l, 1, 20)
			var group [][]byte
			for i := 21; i <= 60; i++ { // a group across several segments
				group = append(group, payload(i))
			}
			seq, err := l.Append(group...)
			require.NoError(t, err)
			require.Equal(t, uint64(60), seq)
			appendEach(t, l, 61, 70)
			names := segments(t, dir)
			require.GreaterOrEqual(t, len(names), 5)
			firsts := segmentFirsts(t, names)
			for _, name := range names {
				info, err := os.Stat(filepath.Join(dir, name))
				require.NoError(t, err)
				assert.Equal(t, int64(small), info.Size(), name)
			}
			assert.Equal(t, want(1, 70), replayAll(t, l, 0))

			// Release before the third segment's second record: the first
			// two segments go, the third stays.
			require.NoError(t, l.ReleaseBefore(firsts[2]+1))
			assert.Equal(t, names[2:], segments(t, dir))
			assert.Equal(t, firsts[2], l.FirstSeq())
			assert.Equal(t, want(int(firsts[2]), 70), replayAll(t, l, firsts[2]-1))
			err = l.Replay(firsts[2]-2, func(uint64, []byte) error { return nil })
			assert.ErrorIs(t, err, wal.ErrReleased)
			require.NoError(t, l.ReleaseBefore(firsts[2]), "nothing more to release")
			assert.Equal(t, names[2:], segments(t, dir))
			assert.ErrorContains(t, l.ReleaseBefore(72), "the last record is 70")

			require.NoError(t, l.Close())
			l = openLog(t, dir, opts)
			assert.Equal(t, firsts[2], l.FirstSeq())
			assert.Equal(t, want(int(firsts[2]), 70), replayAll(t, l, firsts[2]-1))

			// Releasing everything keeps the current segment.
			require.NoError(t, l.ReleaseBefore(71))
			assert.Equal(t, names[len(names)-1:], segments(t, dir))
			appendEach(t, l, 71, 75)
			require.NoError(t, l.Close())
			l = openLog(t, dir, opts)
			assert.Equal(t, want(int(firsts[len(firsts)-1]), 75), replayAll(t, l, firsts[len(firsts)-1]-1))
		})
	}
}

func segmentFirsts(t testing.TB, names []string) []uint64 {
	var out []uint64
	for _, name := range names {
		var seq uint64
		_, err := fmt.Sscanf(name, "%020d.wal", &seq)
		require.NoError(t, err)
		out = append(out, seq)
	}
	return out
}

func TestOpenClearsTheSpareAndGrowsAShortSegment(t *testing.T) {
	dir := t.TempDir()
	l := openLog(t, dir, wal.Options{SegmentSize: small})
	appendEach(t, l, 1, 3)
	require.NoError(t, l.Close())
	require.NoError(t, os.WriteFile(filepath.Join(dir, "spare.tmp"), []byte("half a spare"), 0o600))
	require.NoError(t, os.WriteFile(filepath.Join(dir, "notes.txt"), []byte("not ours"), 0o600))
	path := filepath.Join(dir, segName(1))
	require.NoError(t, os.Truncate(path, offsetOf(1, 4)))

	l = openLog(t, dir, wal.Options{SegmentSize: small})
	assert.Equal(t, want(1, 3), replayAll(t, l, 0))
	info, err := os.Stat(path)
	require.NoError(t, err)
	assert.Equal(t, int64(small), info.Size())
	b, err := os.ReadFile(filepath.Join(dir, "notes.txt"))
	require.NoError(t, err)
	assert.Equal(t, "not ours", string(b), "other files are left alone")
	require.NoError(t, l.Close())
	assert.Equal(t, []string{segName(1), "notes.txt"}, testNames(t, dir))
}

// A log reopened with a smaller segment size rotates once its records
// pass the new size (the power-loss trials lower it on a log made with the
// default), and every record stays readable.
func TestSmallerSegmentSizeTakesEffect(t *testing.T) {
	dir := t.TempDir()
	l := openLog(t, dir, wal.Options{SegmentSize: 4 * small})
	appendEach(t, l, 1, 3)
	require.NoError(t, l.Close())

	l = openLog(t, dir, wal.Options{SegmentSize: small})
	appendEach(t, l, 4, 20) // 20 records of 150-349 bytes: more than a small segment
	assert.Len(t, segments(t, dir), 2, "rotated once past the new size")
	assert.Equal(t, want(1, 20), replayAll(t, l, 0))
	require.NoError(t, l.Close())
	l = openLog(t, dir, wal.Options{SegmentSize: small})
	assert.Equal(t, want(1, 20), replayAll(t, l, 0))
}

// TestConcurrentReplayAndRelease runs Replay and ReleaseBefore while the
// writer appends (go test -race).
func TestConcurrentReplayAndRelease(t *testing.T) {
	l := openLog(t, t.TempDir(), wal.Options{SegmentSize: small})
	const n = 400
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		for i := 1; i <= n; i += 4 {
			if _, err := l.Append(payload(i), payload(i+1), payload(i+2), payload(i+3)); err != nil {
				t.Error(err)
				return
			}
		}
	}()
	for l.LastSeq() < n {
		first, last := l.FirstSeq(), l.LastSeq()
		next := first
		err := l.Replay(first-1, func(seq uint64, rec []byte) error {
			if seq != next || !bytes.Equal(rec, payload(int(seq))) {
				return fmt.Errorf("record %d: %q, want record %d", seq, rec, next)
			}
			next++
			return nil
		})
		if errors.Is(err, wal.ErrReleased) {
			continue
		}
		require.NoError(t, err)
		require.GreaterOrEqual(t, next, last+1)
		require.NoError(t, l.ReleaseBefore(last/2+1))
	}
	wg.Wait()
}

// TestRecordsNeverSpanSegments checks the file contents directly: each
// segment's records start at offset 0 and run in order.
func TestRecordsNeverSpanSegments(t *testing.T) {
	dir := t.TempDir()
	l := openLog(t, dir, wal.Options{SegmentSize: small})
	appendEach(t, l, 1, 30)
	require.NoError(t, l.Close())
	for _, name := range segments(t, dir) {
		first := segmentFirsts(t, []string{name})[0]
		f, err := os.Open(filepath.Join(dir, name))
		require.NoError(t, err)
		hdr := make([]byte, 24)
		_, err = io.ReadFull(f, hdr)
		f.Close()
		require.NoError(t, err)
		assert.Equal(t, first, leUint64(hdr[8:]), "%s starts with its first record", name)
	}
}

func leUint64(b []byte) uint64 {
	var v uint64
	for i := 7; i >= 0; i-- {
		v = v<<8 | uint64(b[i])
	}
	return v
}

// TestReleaseFailureKeepsOldestFirst: a segment that cannot be deleted
// stays the start of the log, and the next release deletes it first, so
// that no gap is ever left on disk.
func TestReleaseFailureKeepsOldestFirst(t *testing.T) {
	dir := t.TempDir()
	l := openLog(t, dir, wal.Options{SegmentSize: small})
	appendEach(t, l, 1, 40) // segments 1, 15, 29
	// Make the oldest segment undeletable: a folder that is not empty
	// (a file the log had open stays readable through its handle).
	first := filepath.Join(dir, segName(1))
	require.NoError(t, os.Remove(first))
	require.NoError(t, os.MkdirAll(filepath.Join(first, "x"), 0o700))

	err := l.ReleaseBefore(30)
	require.Error(t, err)
	assert.Contains(t, err.Error(), segName(1))
	assert.Equal(t, uint64(1), l.FirstSeq(), "the segment that was not deleted is still the start")
	assert.Equal(t, []string{segName(1), segName(15), segName(29)}, testNamesWal(t, dir))

	require.NoError(t, os.RemoveAll(first))
	require.NoError(t, l.ReleaseBefore(30))
	assert.Equal(t, uint64(29), l.FirstSeq())
	assert.Equal(t, []string{segName(29)}, testNamesWal(t, dir))
}

// testNamesWal lists the names of dir ending in .wal, folders included.
func testNamesWal(t testing.TB, dir string) []string {
	t.Helper()
	var out []string
	for _, name := range testNames(t, dir) {
		if strings.HasSuffix(name, ".wal") {
			out = append(out, name)
		}
	}
	return out
}

// TestWriteThenSync: Write leaves records not durable (LastSeq, and so
// ReleaseBefore, stay behind) until a Sync; Writes pipelined behind Syncs
// in another goroutine, across rotations, keep every record in order.
func TestWriteThenSync(t *testing.T) {
	dir := t.TempDir()
	l := openLog(t, dir, wal.Options{SegmentSize: small})
	last, err := l.Write(payload(1), payload(2))
	require.NoError(t, err)
	assert.Equal(t, uint64(2), last)
	assert.Equal(t, uint64(0), l.LastSeq(), "written, not durable")
	require.Error(t, l.ReleaseBefore(3), "records not yet durable cannot be released")
	synced, err := l.Sync()
	require.NoError(t, err)
	assert.Equal(t, uint64(2), synced)
	assert.Equal(t, uint64(2), l.LastSeq())

	// A syncer goroutine syncs while this one writes 200 records (about
	// 14 segments of 4 KiB: every rotation waits for a Sync in flight).
	wrote := make(chan struct{}, 1)
	done := make(chan error)
	go func() {
		for range wrote {
			if _, err := l.Sync(); err != nil {
				done <- err
				return
			}
		}
		done <- nil
	}()
	for i := 3; i <= 200; i++ {
		last, err := l.Write(payload(i))
		require.NoError(t, err)
		require.Equal(t, uint64(i), last)
		select {
		case wrote <- struct{}{}:
		default:
		}
	}
	close(wrote)
	require.NoError(t, <-done)
	synced, err = l.Sync()
	require.NoError(t, err)
	assert.Equal(t, uint64(200), synced)
	require.NoError(t, l.Close())
	l = openLog(t, dir, wal.Options{SegmentSize: small})
	assert.Equal(t, want(1, 200), replayAll(t, l, 0))
}

// A Write that cannot prepare the next segment (a full disk) fails the
// log, even when it wrote nothing: its owner has taken the records' place
// (the store numbered their changes), so a later Write that succeeded
// would leave a hole in what the records say, and the next Open would
// refuse the log. Before, a Write that wrote nothing left the log open.
func TestAFailedRotationFailsTheLog(t *testing.T) {
	dir := t.TempDir()
	l := openLog(t, dir, wal.Options{SegmentSize: small})
	blocker := filepath.Join(dir, "spare.tmp")
	require.NoError(t, os.MkdirAll(filepath.Join(blocker, "x"), 0o700)) // the spare cannot be created
	var err error
	for i := 1; err == nil; i++ {
		require.Less(t, i, 100, "a segment holds 14 records")
		_, err = l.Append(payload(i))
	}
	require.ErrorContains(t, err, "prepare the next segment")
	require.NoError(t, os.RemoveAll(blocker)) // the disk has room again
	_, err = l.Append(payload(99))
	require.Error(t, err, "the log takes no more appends until it is reopened")
}

// Releasing before a segment's last record keeps that segment: the record is
// still needed.
func TestReleaseBeforeASegmentsLastRecordKeepsIt(t *testing.T) {
	dir := t.TempDir()
	l := openLog(t, dir, wal.Options{SegmentSize: small})
	appendEach(t, l, 1, 70)
	names := segments(t, dir)
	require.GreaterOrEqual(t, len(names), 3)
	firsts := segmentFirsts(t, names)
	last := firsts[1] - 1 // the first segment's last record
	require.NoError(t, l.ReleaseBefore(last))
	assert.Equal(t, names, segments(t, dir), "record %d is still needed", last)
	assert.Equal(t, want(int(last), 70), replayAll(t, l, last-1))
}

// A rotation that finds the process out of file descriptors (a flood of
// connections took them) waits for some to come back, up to
// Options.ResourceWait, and the log carries on; without the wait the same
// rotation fails the log for good, which shows the descriptors really ran
// out. Before, the store then refused every write until a restart.
func TestARotationWaitsForFileDescriptors(t *testing.T) {
	for _, tc := range []struct {
		name string
		wait time.Duration
	}{{"waits", time.Minute}, {"no wait", -1}} {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			l := openLog(t, dir, wal.Options{SegmentSize: small, ResourceWait: tc.wait})
			release := useUpFileDescriptors(t)
			timer := time.AfterFunc(200*time.Millisecond, release)
			t.Cleanup(func() { timer.Stop() })
			var err error
			i := 1
			for ; i <= 20 && err == nil; i++ { // a segment holds 14 records
				_, err = l.Append(payload(i))
			}
			if tc.wait < 0 {
				require.ErrorIs(t, err, syscall.EMFILE)
				require.ErrorContains(t, err, "prepare the next segment")
				return
			}
			require.NoError(t, err)
			require.NoError(t, l.Close())
			l = openLog(t, dir, wal.Options{SegmentSize: small})
			assert.Equal(t, want(1, 20), replayAll(t, l, 0))
		})
	}
}

// useUpFileDescriptors lowers the process's soft limit of open files to a
// few more than it has open, opens files until the next open fails with
// EMFILE, and returns a function that closes them and restores the limit
// (also called when the test ends).
func useUpFileDescriptors(t *testing.T) (release func()) {
	var orig syscall.Rlimit
	require.NoError(t, syscall.Getrlimit(syscall.RLIMIT_NOFILE, &orig))
	open, err := os.ReadDir("/proc/self/fd")
	require.NoError(t, err)
	lower := orig
	lower.Cur = uint64(len(open) + 16)
	require.NoError(t, syscall.Setrlimit(syscall.RLIMIT_NOFILE, &lower))
	var hogs []*os.File
	var once sync.Once
	release = func() {
		once.Do(func() {
			for _, f := range hogs {
				f.Close()
			}
			assert.NoError(t, syscall.Setrlimit(syscall.RLIMIT_NOFILE, &orig))
		})
	}
	t.Cleanup(release)
	for {
		f, err := os.Open(os.DevNull)
		if err != nil {
			require.ErrorIs(t, err, syscall.EMFILE)
			return release
		}
		hogs = append(hogs, f)
	}
}

// A spare segment that could not be prepared for want of file
// descriptors is prepared again, once they are back, while the current
// segment still has room: the rotation then finds it ready and does not
// have to wait (ResourceWait -1 here: a rotation that found the failed
// spare would fail the log, which is what happens without the retry).
func TestAFailedSpareIsPreparedAgainBeforeTheRotation(t *testing.T) {
	dir := t.TempDir()
	l := openLog(t, dir, wal.Options{SegmentSize: small, ResourceWait: -1})
	release := useUpFileDescriptors(t)
	for i := 1; i <= 8; i++ { // past half of the segment: the spare is started, and fails
		_, err := l.Append(payload(i))
		require.NoError(t, err)
	}
	release()
	// A failed spare is prepared again at most once a second: let one
	// pass, so that the next append starts it again.
	time.Sleep(1100 * time.Millisecond)
	for i := 9; i <= 20; i++ {
		_, err := l.Append(payload(i))
		require.NoError(t, err, "record %d", i)
	}
	require.NoError(t, l.Close())
	l = openLog(t, dir, wal.Options{SegmentSize: small})
	assert.Equal(t, want(1, 20), replayAll(t, l, 0))
}
