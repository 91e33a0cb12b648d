package ctxd

import "time"

// DumpInfo describes a finished dump: a file written to the dump folder, or
// an export streamed to a client (then Filename and Path are empty). It is
// what ctxd passes to its dump hook (the API server's dump hook), for the
// WebSocket "context_dumped" message.
type DumpInfo struct {
	// Filename and Path name the dump file; empty for a streamed export.
	Filename string `json:"filename,omitempty"`
	Path     string `json:"path,omitempty"`
	Format   string `json:"format"` // json, pretty, csv or txt
	// Namespace is the namespace dumped.
	Namespace string `json:"namespace"`
	// Revision is the revision the dump is consistent at.
	Revision uint64 `json:"revision"`
	// KeyCount is the number of keys in the dump.
	KeyCount int `json:"key_count"`
	// IncludeHistory says whether the dump holds the namespace's history,
	// and HistoryCount how many changes.
	IncludeHistory bool `json:"include_history"`
	HistoryCount   int  `json:"history_count"`
	// SpreadsheetSafe says whether a CSV dump's text cells that a
	// spreadsheet would take for a formula were prefixed with a quote.
	SpreadsheetSafe bool `json:"spreadsheet_safe,omitempty"`
	// FileSize is the dump's size in bytes.
	FileSize int64 `json:"file_size"`
	// Who asked for the dump.
	Who string `json:"who"`
	// Timestamp is the time recorded in the dump.
	Timestamp time.Time `json:"timestamp"`
}

// DumpFile is a dump file in the server's dump folder.
type DumpFile struct {
	Filename string    `json:"filename"`
	Path     string    `json:"path"`
	Size     int64     `json:"size"`
	Created  time.Time `json:"created"`
	Modified time.Time `json:"modified"`
}

// DumpList is the server's dump folder and its dump files, newest first:
// the body of GET /v1/dumps.
type DumpList struct {
	Directory string     `json:"dump_directory"`
	Dumps     []DumpFile `json:"dumps"`
}
