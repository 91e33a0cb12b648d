// Package snapshots keeps ctxd's snapshot files: creating them from the
// live store, listing, verifying, uploading, pruning on a schedule, and
// handing a verified file to the store for a restore or an export.
//
// Each snapshot is two files in the snapshots folder: <id>.db, a consistent
// copy of the database at one revision, and <id>.json, its metadata (id,
// revision, time, size, sha256, schema version, keys per namespace). Both
// are written to a temporary file, fsynced and renamed, the metadata last:
// a snapshot is listed only once its metadata exists, so a crash never
// leaves a partial snapshot that is listed. Leftovers are removed when the
// folder is opened.
//
// Every use of a snapshot (restore, export, download) first checks its
// sha256 against the metadata, then its structure (the backend's OpenSnapshot).
package snapshots
