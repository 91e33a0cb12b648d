package store

import (
	"fmt"
	"os"
)

// Preallocation.
//
// bbolt grows its file with ftruncate, which leaves holes. The first write
// into a hole allocates blocks, and the fdatasync after it must then also
// commit the filesystem journal: measured here, a commit's two fdatasyncs
// cost ~330 µs into fresh holes and ~250 µs over blocks already written.
// So the store keeps some real, zero-filled space beyond bbolt's high-water
// mark. bbolt never reads past its high-water mark and only calls ftruncate
// when the file is too small, so the zeros are invisible to it; they are
// written while the store holds bbolt's write lock, so no commit can be
// writing pages there at the same time.

const (
	// preallocChunk is how much zeroed space is added at a time.
	preallocChunk = 4 << 20
	// preallocEvery is how many commits pass between headroom checks. One
	// commit writes at most a few pages per request, so the headroom
	// cannot run out between checks under any realistic batch.
	preallocEvery = 64
)

var zeros = make([]byte, 1<<20)

// ensureHeadroom extends the file with zeros when fewer than
// preallocChunk bytes of written space remain past the high-water mark.
func (s *Store) ensureHeadroom() error {
	tx, err := s.db.Begin(true) // holds bbolt's write lock; rolled back, writes nothing
	if err != nil {
		return err
	}
	defer func() { _ = tx.Rollback() }()
	used := tx.Size()
	f, err := os.OpenFile(s.path, os.O_WRONLY, 0)
	if err != nil {
		return fmt.Errorf("preallocate: %w", err)
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return fmt.Errorf("preallocate: %w", err)
	}
	size := fi.Size()
	if size-used >= preallocChunk {
		return nil
	}
	// Write zeros from the high-water mark (bbolt's own ftruncate may have
	// left a hole there) up to one chunk past the current end.
	for off := used; off < size+preallocChunk; off += int64(len(zeros)) {
		if _, err := f.WriteAt(zeros, off); err != nil {
			return fmt.Errorf("preallocate: %w", err)
		}
	}
	if err := f.Sync(); err != nil {
		return fmt.Errorf("preallocate: %w", err)
	}
	return nil
}
