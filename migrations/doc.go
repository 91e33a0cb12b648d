// Package migrations owns ctxd's on-disk schema: the names of the bbolt
// buckets, the schema version stored in the database, and the ordered steps
// that upgrade a database written by an older ctxd.
//
// The store calls [Migrate] when it opens a database. A fresh file is
// initialised at [Current]; an older one is upgraded one version step at a
// time, all steps inside one bbolt transaction, so a failed step leaves the
// file exactly as it was; a newer one is refused with an error naming both
// versions. `ctxd migrate --dry-run` prints the plan without changing the file
// (see [PlanFile]).
//
// Schema history:
//
//   - 1: buckets "meta" (schema, compacted revision), "log" (revision ->
//     change), "kv:<ns>" (key -> current record) and "hist:<ns>"
//     (key 0x00 revision -> empty), per store/bolt/DESIGN.md.
//   - 2: adds "nskeys" (namespace -> live key count, 8-byte big-endian), so
//     status and the namespace listing do not scan every key.
//   - 3: kv records (format 2) hold only the version and revisions; the
//     value, who and time are read from the log entry at mod_rev, so each
//     current value is stored once instead of twice.
//   - 4: writes are acknowledged once durable in the data folder's
//     write-ahead log (wal/) and applied to the file later; meta/wal_seq
//     (8-byte big-endian, absent means 0) is the last log record the file
//     holds, meta/store_id (8 random bytes) the store whose log records
//     it takes. The layout is otherwise that of 3: the step is there so
//     that a ctxd without the log refuses a file that may lack some writes.
package migrations
