package ctxd

import "time"

// Results of the maintenance operations: snapshots, restores, compaction
// and defragmentation.

// SnapshotInfo describes a snapshot as it was written.
type SnapshotInfo struct {
	Revision      uint64      `json:"revision"`
	Size          int64       `json:"size"`
	SchemaVersion int         `json:"schema_version"`
	Namespaces    []Namespace `json:"namespaces"`
}

// RestoreOptions select what a restore replaces.
type RestoreOptions struct {
	// Namespaces and Prefix, when set, make the restore partial: only
	// those namespaces (all when empty) and keys starting with Prefix are
	// restored, as one ordinary transaction with new revisions. When both
	// are empty the whole database is replaced.
	Namespaces []string
	Prefix     string
	// DryRun verifies the snapshot and reports the differences without
	// changing anything.
	DryRun bool
	// Who is recorded on the changes of a partial restore.
	Who string
}

// IsPartial reports whether the restore replaces only some namespaces or
// keys (one ordinary transaction) rather than the whole database.
func (o RestoreOptions) IsPartial() bool { return len(o.Namespaces) > 0 || o.Prefix != "" }

// NamespaceDiff counts what a restore changes in one namespace, seen from
// the live database: keys the snapshot adds, removes, changes or leaves.
type NamespaceDiff struct {
	Namespace string `json:"ns"`
	Added     int    `json:"added"`
	Removed   int    `json:"removed"`
	Changed   int    `json:"changed"`
	Unchanged int    `json:"unchanged"`
}

// RestoreResult reports a restore or a dry run.
type RestoreResult struct {
	DryRun           bool            `json:"dry_run"`
	Partial          bool            `json:"partial"`
	SnapshotRevision uint64          `json:"snapshot_revision"`
	Revision         uint64          `json:"revision"` // the store's revision after the restore
	Namespaces       []NamespaceDiff `json:"namespaces"`
}

// DefragResult reports a defragmentation.
type DefragResult struct {
	SizeBefore int64         `json:"size_before"`
	SizeAfter  int64         `json:"size_after"`
	Revision   uint64        `json:"revision"`
	Pause      time.Duration `json:"pause_ns"` // how long writes waited for the final catch-up and swap
}

// CompactResult reports what a compaction removed.
type CompactResult struct {
	Revision uint64 `json:"compacted_revision"` // the compaction mark after it
	Removed  int    `json:"removed"`            // changes removed from history
}

// SnapshotMeta describes one snapshot kept by the server: what
// GET /v1/snapshots lists and every snapshot route answers.
type SnapshotMeta struct {
	ID            string      `json:"id"`
	Revision      uint64      `json:"revision"`
	Created       time.Time   `json:"created"`
	Size          int64       `json:"size"`
	SHA256        string      `json:"sha256"`
	SchemaVersion int         `json:"schema_version"`
	Namespaces    []Namespace `json:"namespaces"`
	// Origin is "api", "schedule" or "upload".
	Origin string `json:"origin"`
}
