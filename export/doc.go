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
//	         "context":{key: value},"key_count"[,"expires_at":{key: deadline}]
//	         [,"history":[...],"history_count"]}
//	pretty  a human-readable report: header, keys sorted, values indented
//	csv     RFC 4180: Key,Value,Type,Version,Revision,Who,Updated_At,Expires_At
//	        (and Action when history is included)
//	txt     key=value lines under a short "#" header; an expiring key's
//	        line is followed by "# expires_at <deadline>"
//
// Every format carries each expiring key's deadline (ctxd.Record's
// ExpiresAt), so that an import can give it back (the API's import puts
// such a key with the time left as its TTL).
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
// "context" (and "expires_at" too, written from a second read of the keys
// when, and only when, one of them expires): object members have no order
// in JSON, but a reader that expects them first must read the whole object. [AtRevision] keeps in
// memory the keys deleted after the revision it reads at.
//
// The package never imports bbolt: it sees the store only through Source.
package export
