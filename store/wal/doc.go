// Package wal is ctxd's write-ahead log: an append-only log of opaque
// records, durable when Append returns, for the acknowledgement path of a
// store that applies them to its database later (the store puts encoded
// write groups, with their revisions, in the records).
//
// # Basics
//
// Records get consecutive sequence numbers (uint64, from
// Options.FirstSeq, never reused). Append(recs...) writes a group of
// records with one write and makes them durable with one fdatasync: the
// caller, a store's single writer, batches. Replay(after, fn) reads the
// records after a sequence number, in order; ReleaseBefore(seq) deletes
// the segments whose records the store has in its database now.
//
// # Files
//
// The log is a folder of segment files, each named by the sequence number
// of its first record in 20 decimal digits (00000000000000000001.wal), so
// that names sort in order. A segment is preallocated to
// Options.SegmentSize (64 MiB by default), and fsynced, and the folder
// fsynced, before any record goes in: an fdatasync after an append then
// never commits a change of the file's size. The next segment is prepared
// in the background, under the name spare.tmp, once the current one is
// half full: its blocks are reserved with fallocate and then written with
// zeros, so that appends only overwrite written blocks and an fdatasync
// commits no block conversion either (Options.FallocateOnly skips the
// zeros; DESIGN.md has the numbers). The first segment of a new log, made
// while Open waits, is only fallocated. When a group does not fit in the
// rest of the current segment, the records that fit are written and
// fdatasynced, the spare is renamed after the next record and the folder
// fsynced, and the rest goes there. A record never spans two segments, and
// a segment is never written before the one before it is durable.
//
// # Record format
//
// Records follow each other from offset 0 of a segment, each starting at a
// multiple of 8 bytes; integers are little-endian.
//
//	offset  size  field
//	0       4     CRC-32C (Castagnoli) of the segment's first sequence
//	              number (8 bytes), bytes 4..24 and the payload
//	4       4     payload length
//	8       8     sequence number
//	16      4     group offset: sequence number minus that of the first
//	              record of the same Append
//	20      1     kind: 1 (a payload); other kinds are reserved and refused
//	21      3     zero
//	24      n     payload, then zeros up to a multiple of 8
//
// The records of a segment end at an all-zero header, or where fewer than
// 24 bytes are left. The segment's first sequence number in the checksum
// ties a record to its segment: whatever a file held before it became this
// segment (were segment files ever reused) never verifies in it.
//
// # Recovery
//
// Open reads every segment in order and verifies every record: its
// checksum, and that its sequence number is the next one (the first
// record of a segment must have the number in the segment's name).
//
// The last segment may end with the records of an Append that never
// returned, partly written: a record cut short, or with a bad checksum, or
// zeros where records should be, and after it perhaps some later records
// of the same group. Open cuts the records there, and overwrites with
// zeros (and fsyncs) everything after the cut that is not zero, so that
// when a new record, maybe shorter, is appended at the cut, what follows
// it can never be read as a record, even one whose sequence number would
// fit. Recovery() reports where a cut was made. Since each record carries
// the start of its group (the first record that was not durable yet when
// it was written: the group of a Write pipelined behind a Sync includes
// the records that Sync covers), Open tells such a torn group from
// damage: a record of a later group, intact after the cut, means that the
// cut record had been made durable, so acknowledged records are lost, and
// Open refuses the log instead of cutting it.
//
// A record that does not verify in any other segment, a segment that does
// not start with the record after the last of the one before it (a gap or
// an overlap), or an unknown record kind, is a *CorruptError naming the
// file and the offset; Open refuses the log with it, and the server will
// not start. Nothing is repaired silently.
//
// # Guarantees
//
//   - A record is durable once the Append that wrote it has returned
//     without error: it is returned by every later Replay after a crash or
//     a power cut, in order, with no gap, until it is released.
//   - A record of an Append that did not return may or may not be there
//     after a crash; when it is, so is every record before it.
//   - A record is never returned with bytes other than those appended (the
//     checksum), and never out of its place (the sequence numbers).
//
// # Caveats
//
// Append is for one goroutine at a time (the owner's writer); Replay,
// ReleaseBefore, FirstSeq, LastSeq and Close may be called from any
// goroutine, also while an Append runs. Only one process may open a
// folder at a time, which the log does not check: its owner (the bolt
// store, whose database file is locked) makes sure. After a failed write
// or fdatasync, Append fails until the log is reopened: the kernel may have
// dropped the pages it could not write, so nothing written since can be
// trusted as durable. A want of file descriptors or disk space while the
// next segment is prepared (before it belongs to the log) is different:
// those come back, so a rotation tries again for up to
// Options.ResourceWait before it fails the log.
//
// A payload is opaque, and a crafted one could contain bytes that look
// like a record of a later Append; if such a payload is torn by a power
// cut, Open refuses the log (as damaged) rather than cut it. Refusing is
// the safe side: no record is ever invented or lost silently.
package wal
