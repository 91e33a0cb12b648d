// Package bolt is ctxd's embedded storage backend: a durable, versioned
// key-value store in one bbolt file, implementing store.Backend.
//
// # Basics
//
// A namespace holds keys; a key holds one JSON value. Every committed change
// gets the next global revision (starting at 1, never reused); each key has a
// version that is 1 on create and grows by one per change. A delete ends a
// key's life: a later put starts it again at version 1. Every change is
// appended to one log, keyed by revision, that serves history, point-in-time
// reads and the change feed.
//
// Writes go through a single writer goroutine that takes the first queued
// request, drains every other request already queued, checks them against
// the current state, appends them to a write-ahead log (package store/wal,
// in the folder wal next to the database file) with one fdatasync, and
// answers each caller only then. A lone write therefore costs one
// fdatasync, and under load one fdatasync serves everyone who queued
// meanwhile. A request whose preconditions fail (version conflict, bad
// input) fails alone; the others in its group still commit. A committer
// goroutine applies the acknowledged writes to the bbolt file in batches
// afterwards, and every read sees them meanwhile (an in-memory overlay);
// Open replays what the log holds beyond the file.
//
// After each commit the store raises its "committed up to revision R" mark
// (see [Store.Committed]); followers such as the WebSocket hub read the log
// from the revision they last saw with [Store.ReadLog].
//
// # Caveats
//
// Only one process may open a data file at a time; bbolt holds an exclusive
// file lock and Open fails after Options.OpenTimeout, and the wal folder is
// locked too (one database file per folder). Values are stored as
// given after validation: the store does not re-encode JSON, so the bytes a
// client sent are the bytes it gets back.
//
// The on-disk layout is described in DESIGN.md in this folder.
package bolt
