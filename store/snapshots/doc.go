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
// Several processes may share the folder (the instances of one etcd
// deployment, snapshots.dir): each writer holds the folder's lock file
// (fsutil.WritersLock) shared while it writes, leftovers are removed only under
// it exclusively, and a snapshot claims its id by linking its file under
// it, which fails when the name is taken. A snapshot taken through one
// instance is then listed, downloaded and restored through any other.
//
// Every use of a snapshot (restore, export, download) first checks its
// sha256 against the metadata, then its structure (the backend's OpenSnapshot).
package snapshots
