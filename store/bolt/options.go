package bolt

import (
	"errors"
	"time"

	"github.com/framework0/ctxd"
	"github.com/framework0/ctxd/store"
)

// Options configure Open.
type Options struct {
	Limits ctxd.Limits
	// OpenTimeout bounds the wait for the file lock (default 5s).
	OpenTimeout time.Duration
	// MaxBatch caps how many queued requests one commit takes (default 1024).
	MaxBatch int
	// Now returns the time recorded on changes (default time.Now).
	Now func() time.Time
	// OnCommit, when set, is called by the writer after each commit, before
	// the next one starts: it must be quick (metrics).
	OnCommit func(store.CommitInfo)
}

// ErrLocked is returned by Open (and CompactFile) when another process,
// usually a running server, holds the database file.
var ErrLocked = errors.New("database is in use by another process (is a server running on it?)")
