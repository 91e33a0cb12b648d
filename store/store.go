package store

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"time"

	"github.com/framework0/ctxd"
)

// Backend is everything ctxd's server needs from storage. The HTTP API,
// the WebSocket hub, snapshots, dumps and maintenance see a Backend and
// nothing else; store/bolt implements it over one bbolt file. Every
// implementation runs the conformance suite in store/storetest.
//
// Errors are the data model's (ctxd.ErrNotFound, *ctxd.ConflictError,
// *ctxd.CompactedError, ...): the API turns them into statuses with one
// table (ctxd.Classify). An operation a backend cannot do answers
// ctxd.ErrNotSupported.
type Backend interface {
	Writer
	Reader
	Feed
	Snapshotter
	Maintainer
	// Close stops the backend after every write already accepted is
	// committed. Later calls return the first call's result.
	Close() error
}

// Writer changes data. A write returns only once it is durable; if ctx
// ends after the write was handed over but before its outcome is known,
// the error matches ctxd.ErrOutcomeUnknown (the write may have applied),
// while a write refused before that matches ctxd.ErrClosed (the backend
// is closed), ctxd.ErrUnavailable or the context's error and changed
// nothing.
//
// Expiring keys: a put whose Write.TTL is set makes the key expire that
// long after the write (Record.ExpiresAt); a later put without one makes
// it permanent. The backend expires a key in its own way (the bolt store
// with a deadline index and a writer-side check, etcd with leases) but
// always as a change: a delete with its own revision, Who ctxd.WhoTTL and
// Expired set, in history and the feed, within about a second of the
// deadline, and at start-up for deadlines that passed while it was down.
// Until then the key reads as live.
type Writer interface {
	// Put sets a key's value. With expect non-nil it applies only if the
	// key's version equals *expect (0: the key must not exist).
	Put(ctx context.Context, ns, key string, value json.RawMessage, expect *uint64, who string) (ctxd.Record, error)
	// KeepAlive moves the deadline of a live key that expires to ttl from
	// now, durably, without a new version: no revision, no history entry,
	// no feed event. With expect non-nil the key must be at that version
	// (*ctxd.ConflictError otherwise); a missing key is ctxd.ErrNotFound,
	// a key without a deadline ctxd.ErrInvalid. The record is the key's
	// state with its new ExpiresAt.
	KeepAlive(ctx context.Context, ns, key string, ttl time.Duration, expect *uint64) (ctxd.Record, error)
	// Delete ends a key's life; the record is the deleted key's last
	// version with ModRev set to the delete's revision and no value.
	Delete(ctx context.Context, ns, key string, expect *uint64, who string) (ctxd.Record, error)
	// Patch changes part of a live key's value: the backend applies p
	// (with package patch) to the value current when the write commits,
	// atomically, as a compare-and-swap would, so that concurrent patches
	// of one value never lose each other's changes; expect works as for
	// Put. The result is stored, logged and fed as a put of the new value:
	// no change is ever a patch. A key that is not live is
	// ctxd.ErrNotFound; a patch that does not apply is a *ctxd.PatchError
	// (or ctxd.ErrInvalid for a malformed one, ctxd.ErrTooLarge for a
	// result over the limit or a patch over its work bound), and nothing
	// is written.
	Patch(ctx context.Context, ns, key string, p ctxd.Patch, expect *uint64, who string) (ctxd.Record, error)
	// Txn applies writes all or nothing, within the limits' MaxTxnOps.
	// Each change gets its own consecutive revision (bolt), or all share
	// the transaction's one revision (etcd): storetest.RevisionRule. A
	// write may be a patch (ctxd.OpPatch), applied as Patch applies it,
	// after the writes before it in the transaction; the transaction's
	// patches share one work bound (a patch.Budget), and a transaction
	// over it is ctxd.ErrTooLarge and writes nothing.
	//
	// Every write goes through ctxd.Limits.PrepareWrites first: a put's
	// value is stored in canonical (compact) form, the same bytes on
	// every backend.
	Txn(ctx context.Context, writes []ctxd.Write) (ctxd.TxnResult, error)
	// Import is Txn without the limit on the number of writes, for loads
	// that are one transaction by design (a dump), checked against
	// ctxd.Limits.ForImport: an imported put's TTL (what remained of the
	// dump's deadline) may be below limits.min_ttl.
	Import(ctx context.Context, writes []ctxd.Write) (ctxd.TxnResult, error)
}

// WriteOne makes one write through txn, a backend's Txn, and returns its
// record: Put, Delete and Patch are Txn with one write on every backend.
func WriteOne(ctx context.Context, txn func(context.Context, []ctxd.Write) (ctxd.TxnResult, error), w ctxd.Write) (ctxd.Record, error) {
	res, err := txn(ctx, []ctxd.Write{w})
	if err != nil {
		return ctxd.Record{}, err
	}
	return res.Records[0], nil
}

// Reader reads committed data.
type Reader interface {
	// Get returns a key's current state.
	Get(ns, key string) (ctxd.Record, error)
	// GetAt returns what a key held at revision rev: ctxd.ErrCompacted
	// below the compacted revision, ctxd.ErrFutureRevision above the
	// current one.
	GetAt(ns, key string, rev uint64) (ctxd.Record, error)
	// List returns a page of a namespace's live keys in byte order;
	// with opts.NoValues, without their values.
	List(ns string, opts ctxd.ListOptions) (ctxd.ListPage, error)
	// Count returns the number of a namespace's live keys that start
	// with prefix, without reading their values.
	Count(ns, prefix string) (uint64, error)
	// History returns a page of one key's changes, newest first, across
	// its lives.
	History(ns, key string, opts ctxd.HistoryOptions) (ctxd.HistoryPage, error)
	// Namespaces lists every namespace with its live key count, by name;
	// "default" always exists.
	Namespaces() ([]ctxd.Namespace, error)
	// Status summarises the backend.
	Status() (ctxd.Status, error)
	// Revision is the last committed revision.
	Revision() uint64
	// CheckRevision is nil when history at rev can be read exactly, and
	// otherwise the error a read at rev gets: ctxd.ErrFutureRevision, a
	// *ctxd.CompactedError (compacted, or discarded by a full restore), or
	// ctxd.ErrInvalid for 0, which is no revision.
	CheckRevision(rev uint64) error
	// View calls fn with a consistent read of everything at one revision.
	View(fn func(v View) error) error
}

// Feed is the change feed's one mechanism: a "committed up to" mark and
// log reads from any revision. Live delivery, catch-up of a slow follower
// and replay for a resuming one are the same ReadLog.
type Feed interface {
	// Committed returns the last committed revision and a channel closed
	// when a later revision commits (or a restore replaces the data).
	// Followers compare revisions rather than count wake-ups.
	Committed() (rev uint64, changed <-chan struct{})
	// Generation changes when a full restore replaced the data: a
	// follower re-reads current state and tells its clients "reset".
	Generation() uint64
	// ReadLog returns up to limit changes with a revision greater than
	// after, in revision order, or a *ctxd.CompactedError when changes
	// the caller has not seen are gone. A page never ends inside a
	// revision (it exceeds limit to finish one), so that a follower that
	// resumes after the last revision it read misses nothing. It never returns a change above
	// Committed's revision: a follower is told only of durable changes.
	ReadLog(after uint64, limit int) ([]ctxd.Change, error)
	// ChangesPerRevision bounds how many changes one revision holds: 1
	// where each change has its own (bolt); where a transaction's changes
	// share one (etcd), the larger of limits.max_txn_ops and the most
	// this instance has seen in one revision. A follower that bounds its
	// lag in changes (Socket.IO's max_lag) knows from it when the distance
	// in revisions may hide more changes than that and must count them.
	ChangesPerRevision() uint64
}

// View is a consistent, read-only view of all data at one revision. It is
// valid only inside the function it is given to; what it yields may be kept.
type View interface {
	// Revision is the revision everything read through the view is at.
	Revision() uint64
	// Namespaces lists the namespaces with their live key counts, by name.
	Namespaces() []ctxd.Namespace
	// ForEach calls fn for every live key of ns that starts with prefix,
	// in key order, streaming: memory does not grow with the keys.
	ForEach(ns, prefix string, fn func(ctxd.Record) error) error
	// ForEachChange calls fn for every retained change of ns (every
	// namespace when ns is ""), oldest first.
	ForEachChange(ns string, fn func(ctxd.Change) error) error
	// Change returns the change of ns/key at revision rev, or
	// ctxd.ErrNotFound when history no longer holds it (or ns/key has no
	// change there). It names the key because on etcd the changes of one
	// transaction share its revision: a revision alone does not say which.
	Change(ns, key string, rev uint64) (ctxd.Change, error)
}

// Snapshotter writes, opens and restores whole-data snapshot files.
type Snapshotter interface {
	// WriteSnapshot writes a consistent copy of all data, at one
	// revision, to w. Writers keep writing meanwhile.
	WriteSnapshot(w io.Writer) (ctxd.SnapshotInfo, error)
	// OpenSnapshot opens a snapshot file for reading, after checking its
	// structure: a file that is not a usable snapshot of this backend is
	// ctxd.ErrBadSnapshot. The file itself is never changed.
	OpenSnapshot(path string) (Snapshot, error)
	// Restore replaces the live data with the snapshot at path after
	// verifying it (or part of it, opts.IsPartial). A full restore is
	// atomic, never moves the revision back, and changes the Generation.
	Restore(ctx context.Context, path string, opts ctxd.RestoreOptions) (ctxd.RestoreResult, error)
}

// PastViewer is a backend that reads an earlier revision directly, as
// it reads the current one (etcd: its MVCC keeps every revision since its
// compaction). A dump at a revision uses it where it exists; otherwise it
// reads each key back through its history (export.AtRevision), which on
// etcd would cost reads per change.
type PastViewer interface {
	// ViewAt calls fn with a view at revision rev, which CheckRevision
	// accepts: the same errors where it does not.
	ViewAt(rev uint64, fn func(v View) error) error
}

// Snapshot is a snapshot file opened for reading.
type Snapshot interface {
	// View calls fn with a consistent view of the snapshot's content.
	View(fn func(v View) error) error
	// Verify reads every record and checks that they agree with each other.
	Verify() error
	// SchemaVersion is the layout version the snapshot was written with.
	SchemaVersion() int
	// Revision is the revision of the store the snapshot was taken of
	// (ctxd.SnapshotInfo.Revision when it was written): the snapshot
	// holds every change of that store up to it and none after. It is
	// the view's revision, except in a snapshot of etcd whose
	// transactions' changes the file numbered apart (one per revision):
	// the view's revision is then above it.
	Revision() (uint64, error)
	Close() error
}

// Maintainer keeps history and files in shape, and reports readiness.
type Maintainer interface {
	// CompactKeep discards history below rev, keeping for each key the
	// keep newest changes at or below rev (at least 1: a key live at rev
	// keeps the change in effect at rev; a key deleted at rev may keep
	// nothing, since reads at rev find it absent either way). Reads below
	// the mark then fail with ctxd.ErrCompacted.
	CompactKeep(ctx context.Context, rev uint64, keep int) (ctxd.CompactResult, error)
	// ApplyRetention compacts history as the policy allows.
	ApplyRetention(ctx context.Context, p RetentionPolicy) (ctxd.CompactResult, error)
	// Defrag gives free space back to the file system while serving;
	// ctxd.ErrNotSupported where the backend has no such thing.
	Defrag(ctx context.Context) (ctxd.DefragResult, error)
	// Ready is nil when the backend serves requests, and otherwise says
	// why not, with an error matching ctxd.ErrUnavailable (and
	// ErrRestoring while a restore replaces the data, ErrFailed once the
	// backend failed): /readyz answers 503 with it.
	Ready() error
	// Stats counts the backend's work since it was opened.
	Stats() Stats
}

// What Ready's error matches, besides ctxd.ErrUnavailable, when the
// backend is not ready for one of the two reasons an operator must tell
// apart: a restore passes by itself, a failed backend needs a restart.
var (
	// ErrFailed: the backend's storage failed under it (bolt: an append to
	// its write-ahead log, or a commit to its database, returned an error)
	// and it takes no more writes until it is restarted; its writes are
	// refused with it too.
	ErrFailed = errors.New("the store takes no more writes until it is restarted")
	// ErrRestoring: a full restore is replacing the data; the backend is
	// ready again when it is done.
	ErrRestoring = errors.New("a restore is replacing the database")
)

// RetentionPolicy is the history kept by ApplyRetention.
type RetentionPolicy struct {
	// KeepVersions caps the changes kept per key (0: no cap), except within
	// the newest KeepRevisions revisions, which are always kept whole so
	// that watchers can resume and recent point-in-time reads work.
	KeepVersions  int
	KeepRevisions uint64
	// KeepFor drops changes older than this (0: no age limit); the change
	// in effect at the cut-off is kept, and so are the newest
	// KeepRevisions revisions, however old.
	KeepFor time.Duration
}

// Stats counts a backend's work since it was opened, for metrics and
// benchmarks. A backend leaves at zero what it does not measure.
type Stats struct {
	Commits  uint64        // durable commits of the writer
	Requests uint64        // requests answered by those commits (including failed checks)
	Changes  uint64        // revisions written
	Commit   time.Duration // total time spent in commits, fsync included
	// Transactions counts the write transactions sent to etcd (etcd
	// only), failed ones included: several requests may share one.
	Transactions uint64
	// PatchRetries counts the patches applied again because another
	// write changed their key between their read and their commit (etcd
	// only): many mean writers racing on the same keys.
	PatchRetries uint64
	// Applies counts the transactions in which a backend with a
	// write-ahead log applied acknowledged changes to its database
	// afterwards, Applied the changes they held, Apply their total time.
	Applies, Applied uint64
	Apply            time.Duration
	// Pending is the number of acknowledged changes not yet applied to
	// the database, now (a gauge, not a count since open).
	Pending uint64
	// DiskWrite is the time spent writing pages and syncing them, over
	// every write transaction (maintenance included).
	DiskWrite time.Duration
	// PageWrites counts the pages written by those transactions: per
	// apply, how much of the file a batch of the committer rewrites.
	PageWrites uint64
	// Compactions and Compacted count compaction runs and the changes they
	// removed; Defrags and LastDefragPause the online defragmentations.
	Compactions, Compacted uint64
	// CompactExamined counts the log entries compactions examined: each
	// run examines what was written since the last one, not all history.
	CompactExamined uint64
	Defrags         uint64
	LastDefragPause time.Duration
	// QuotaRefused counts the writes refused by the storage quota.
	QuotaRefused uint64
}

// CommitInfo describes one commit of a backend's writer, for a commit hook
// (metrics): it must be quick.
type CommitInfo struct {
	Requests int           // requests in the group, including those that failed their checks
	Changes  int           // revisions written
	Duration time.Duration // the commit, its fsync included
}
