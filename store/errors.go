package store

import (
	"errors"
	"fmt"
)

var (
	// ErrNotFound is returned when a key (or a key at the requested revision)
	// does not exist.
	ErrNotFound = errors.New("not found")
	// ErrConflict is returned when a write carried an expected version that
	// differs from the key's current version. The error is a *ConflictError.
	ErrConflict = errors.New("version conflict")
	// ErrCompacted is returned when a read asks for a revision older than the
	// oldest one history still holds.
	ErrCompacted = errors.New("revision compacted")
	// ErrFutureRevision is returned when a read asks for a revision that has
	// not been committed yet.
	ErrFutureRevision = errors.New("revision not yet committed")
	// ErrTooLarge is returned when a key, value or transaction exceeds the
	// configured limits.
	ErrTooLarge = errors.New("too large")
	// ErrInvalid is returned for malformed input: an empty key, control
	// characters, a bad namespace name, a value that is not JSON.
	ErrInvalid = errors.New("invalid input")
	// ErrLocked is returned by Open (and CompactFile) when another process,
	// usually a running server, holds the database file.
	ErrLocked = errors.New("database is in use by another process (is a server running on it?)")
	// ErrClosed is returned by operations on a closed store.
	ErrClosed = errors.New("store closed")
	// ErrSchemaTooNew is returned by Open when the database was written by a
	// newer ctxd than this binary.
	ErrSchemaTooNew = errors.New("database schema is newer than this binary supports")
)

// ConflictError reports a failed compare-and-swap. It matches ErrConflict
// with errors.Is.
type ConflictError struct {
	Namespace string
	Key       string
	Expected  uint64 // the version the caller expected (0: must not exist)
	Current   uint64 // the key's version now (0: it does not exist)
}

func (e *ConflictError) Error() string {
	return fmt.Sprintf("version conflict on %s/%s: expected version %d, current version %d",
		e.Namespace, e.Key, e.Expected, e.Current)
}

// Is makes errors.Is(err, ErrConflict) true.
func (e *ConflictError) Is(target error) bool { return target == ErrConflict }

// CompactedError reports a read below the compacted revision. It matches
// ErrCompacted with errors.Is.
type CompactedError struct {
	Requested uint64 // the revision asked for
	Compacted uint64 // the oldest revision history still answers for
	// RestoredFrom is set when the revision was discarded by a full restore
	// from a snapshot taken at that revision, rather than by compaction.
	RestoredFrom uint64
}

func (e *CompactedError) Error() string {
	if e.RestoredFrom > 0 {
		return fmt.Sprintf("revision %d is not in history: the database was restored from a snapshot at revision %d; read the current state",
			e.Requested, e.RestoredFrom)
	}
	return fmt.Sprintf("revision %d is compacted: history starts at revision %d", e.Requested, e.Compacted)
}

// Is makes errors.Is(err, ErrCompacted) true.
func (e *CompactedError) Is(target error) bool { return target == ErrCompacted }

// invalidf returns an error matching ErrInvalid with a message a person can act on.
func invalidf(format string, args ...any) error {
	return fmt.Errorf("%w: %s", ErrInvalid, fmt.Sprintf(format, args...))
}

// tooLargef returns an error matching ErrTooLarge.
func tooLargef(format string, args ...any) error {
	return fmt.Errorf("%w: %s", ErrTooLarge, fmt.Sprintf(format, args...))
}
