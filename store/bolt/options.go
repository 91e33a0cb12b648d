package bolt

import (
	"cmp"
	"errors"
	"time"

	"github.com/framework0/ctxd"
	"github.com/framework0/ctxd/internal/fsutil"
	"github.com/framework0/ctxd/store"
	"github.com/framework0/ctxd/store/wal"
)

// Options configure Open.
type Options struct {
	Limits ctxd.Limits
	// OpenTimeout bounds the wait for the file lock (default
	// migrations.LockTimeout; migrations.NoLockWait: one try).
	OpenTimeout time.Duration
	// MaxBatch caps how many queued requests one commit takes (default 1024).
	MaxBatch int
	// Now returns the time recorded on changes (default time.Now).
	Now func() time.Time
	// OnCommit, when set, is called after each commit (the group is
	// durable and readable, its callers not yet answered), one commit at
	// a time, in order: it must be quick (metrics).
	OnCommit func(store.CommitInfo)
	// OnSchemaUpgrade, when set, is told before Open (or a restore of an
	// older snapshot) upgrades a database of an older schema, from and to
	// which version: one write transaction over the whole file, which a
	// large database takes a while to make (a log line, so that a server
	// that does not listen yet says why).
	OnSchemaUpgrade func(from, to int)
	// OnClockStep, when set, is told when the writer found that the wall
	// clock stepped (Now moved apart from the monotonic clock) and moved
	// the deadlines of moved expiring keys by step: a log line. It runs on
	// the writer: it must be quick.
	OnClockStep func(step time.Duration, moved int)
	// OnFail, when set, is told once, when the store fails (its disk
	// failed under it: see Ready), with the error its writes and Ready
	// answer from then on, which says why: a log line, since the store
	// stays failed until it is restarted. It runs on the goroutine that
	// met the failure (the writer, the committer, a restore): it must be
	// quick.
	OnFail func(err error)

	// WALSegmentSize is the size of the write-ahead log's segment files
	// (default wal.DefaultSegmentSize, 64 MiB). Tests make it small so
	// that the log rotates and releases segments often.
	WALSegmentSize int64
	// WALResourceWait is how long the log's rotation waits, retrying,
	// for disk space or file descriptors to come back before the log
	// fails (wal.Options.ResourceWait: 0 is wal.DefaultResourceWait).
	// Tests that fill a disk on purpose make it short.
	WALResourceWait time.Duration
	// CommitInterval is how long the committer lets acknowledged changes
	// gather before it applies them to the database in one transaction
	// (DefaultCommitInterval), unless CommitChanges are waiting or a checkpoint
	// asks (snapshots, restores, defrag, compaction, views).
	CommitInterval time.Duration
	// CommitChanges: the committer applies at once when this many changes
	// wait (DefaultCommitChanges). It applies at most 4 times as many in one
	// transaction.
	CommitChanges int
	// MaxPending and MaxPendingBytes bound the acknowledged changes not
	// yet applied to the database (default 65536 changes, 64 MiB of log
	// values): beyond them the writer waits for the committer.
	MaxPending      int
	MaxPendingBytes int64
	// DirectBytes: a request whose changes take about this many bytes or
	// more is committed to the database directly, after a checkpoint,
	// instead of going through the write-ahead log and the overlay
	// (DefaultDirectBytes, and never more than half a segment, so that a
	// log record always fits).
	DirectBytes int
	// QuotaBytes is the storage quota (0: none): a write that adds data
	// (a put, or a transaction or import with one) is refused with a
	// *ctxd.QuotaError when the bytes in use (quota.go) plus what it adds
	// would pass it. Deletes, maintenance and restores are never refused.
	QuotaBytes int64
	// Reserve is the disk space that a defrag's and an online restore's
	// copy of the database leave free on the data folder's file system:
	// one that would take it is refused (a *fsutil.ReserveError) before
	// it starts.
	Reserve fsutil.Reserve
	// GetCacheBytes bounds the cache of current key state that Get serves
	// from (getcache.go): 0 is DefaultGetCacheBytes, a negative size turns
	// it off. It counts keys, values and a fixed overhead per entry.
	GetCacheBytes int64

	// freelist is how bbolt keeps its freelist: the store's choice unless
	// a measurement sets another (largedb_bench_test.go).
	freelist freelistMode
	// afterCompactChunk, when set, is called after each committed chunk
	// of a compaction but the last, where the compact-between-chunks
	// failpoint is: a test stops a compaction there
	// (compact_internal_test.go).
	afterCompactChunk func()
	// hooks are set by tests only (export_test.go).
	hooks pipelineHooks
}

// pipelineHooks let a test hold the pipeline where a group is written to
// the log and not yet durable. Each may be nil.
type pipelineHooks struct {
	// written is called after a group is written to the log, before it
	// lands; beforeSync before each fdatasync that lands groups.
	written, beforeSync func()
	// skipCacheInvalidation makes the Get cache ignore every
	// invalidation and hold: the negative control of its tests.
	skipCacheInvalidation bool
	// elapsed replaces the monotonic clock the TTL clock moves on
	// (elapsedOn(Now)): a test steps Now apart from it.
	elapsed func() time.Duration
}

// flightsQueued bounds the groups written to the log and waiting for the
// syncer: the writer waits beyond it.
const flightsQueued = 64

// The defaults of Options, chosen by measurement (DESIGN.md); the server's
// wal.* settings default to them.
const (
	DefaultCommitInterval = 50 * time.Millisecond
	DefaultCommitChanges  = 4096
	DefaultDirectBytes    = 16 << 20
	DefaultMaxPending     = 65536
)

// getCache is the Get cache Options ask for (nil: off).
func (o Options) getCache() *getCache {
	if o.GetCacheBytes < 0 {
		return nil
	}
	c := newGetCache(cmp.Or(o.GetCacheBytes, DefaultGetCacheBytes))
	c.skipInvalidation = o.hooks.skipCacheInvalidation
	return c
}

// elapsed is what the TTL clock moves on (Store.ttlClock).
func (o Options) elapsed() func() time.Duration {
	if o.hooks.elapsed != nil {
		return o.hooks.elapsed
	}
	return elapsedOn(o.Now)
}

func (o Options) withDefaults() Options {
	if o.Now == nil {
		o.Now = time.Now
	}
	if o.MaxBatch <= 0 {
		o.MaxBatch = 1024
	}
	if o.WALSegmentSize == 0 {
		o.WALSegmentSize = wal.DefaultSegmentSize
	}
	if o.CommitInterval == 0 {
		o.CommitInterval = DefaultCommitInterval
	}
	if o.CommitChanges <= 0 {
		o.CommitChanges = DefaultCommitChanges
	}
	if o.MaxPending <= 0 {
		o.MaxPending = DefaultMaxPending
	}
	// More never wait (and 4 times a huge count overflowed, so that the
	// committer applied nothing and spun).
	o.CommitChanges = min(o.CommitChanges, o.MaxPending)
	if o.MaxPendingBytes <= 0 {
		o.MaxPendingBytes = 64 << 20
	}
	if o.DirectBytes <= 0 {
		o.DirectBytes = DefaultDirectBytes
	}
	// A record holds the segment less its header (24 bytes) and the
	// record's own framing.
	o.DirectBytes = int(min(int64(o.DirectBytes), o.WALSegmentSize/2))
	return o
}

// ErrLocked is returned by Open (and CompactFile) when another process,
// usually a running server, holds the database file.
var ErrLocked = errors.New("database is in use by another process (is a server running on it?)")

// ErrDamaged is returned by Open for a database file whose meta or
// freelist pages are damaged (a disk that lied about a sync, a file
// copied while written): bbolt would fault or panic on it.
var ErrDamaged = errors.New("database file is damaged")
