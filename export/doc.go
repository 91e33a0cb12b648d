// Package export writes and reads dumps of a namespace: JSON, pretty, CSV
// and TXT, taken from one consistent read of the store.
//
// # Basics
//
// [Write] streams a namespace from a [Source] to an io.Writer in one
// [Format]. A Source is a consistent, read-only view at one revision;
// a backend's store.View is one (see store.Backend), and [AtRevision] turns one into
// a view of an earlier revision. Every dump records the revision it is
// consistent at.
//
// Formats:
//
//	json    {"timestamp","who","revision","namespace","format","include_history",
//	         "context":{key: value},"key_count"[,"history":[...],"history_count"]}
//	pretty  a human-readable report: header, keys sorted, values indented
//	csv     RFC 4180: Key,Value,Type,Version,Revision,Who,Updated_At
//	        (and Action when history is included)
//	txt     key=value lines under a short "#" header
//
// [Dir] is a folder of dump files: [Dir.Create] writes one through a temp
// file that is fsynced and renamed into place, so a crash never leaves a
// partial dump under a dump's name, and [Dir.List] never shows temp files.
// [CheckName] is the filename rule. [ReadJSON] reads a JSON dump back (also
// a Framework0 one) for import.
//
// # Caveats
//
// Writers stream: memory does not grow with the number of keys or changes
// (see BenchmarkWrite). A JSON dump therefore puts "key_count" after
// "context": object members have no order in JSON, but a reader that
// expects the count first must read the whole object. [AtRevision] keeps in
// memory the keys deleted after the revision it reads at.
//
// The package never imports bbolt: it sees the store only through Source.
package export
