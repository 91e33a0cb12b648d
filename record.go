package ctxd

import (
	"encoding/json"
	"slices"
	"time"
)

// Op is the kind of a change.
type Op uint8

const (
	// OpPut sets a key's value.
	OpPut Op = 1
	// OpDelete ends a key's life.
	OpDelete Op = 2
	// OpPatch changes part of a live key's value (Write.Patch). It is a
	// write only: the backend applies the patch to the value current when
	// the write commits, and records the result as a put, so a change
	// (history, the log, the feed) is never a patch.
	OpPatch Op = 3
)

// String returns "put", "delete" or "patch".
func (o Op) String() string {
	switch o {
	case OpPut:
		return "put"
	case OpDelete:
		return "delete"
	case OpPatch:
		return "patch"
	}
	return "unknown"
}

// MarshalText encodes the op as "put", "delete" or "patch".
func (o Op) MarshalText() ([]byte, error) { return []byte(o.String()), nil }

// UnmarshalText decodes "put", "delete" or "patch".
func (o *Op) UnmarshalText(b []byte) error {
	switch string(b) {
	case "put":
		*o = OpPut
	case "delete":
		*o = OpDelete
	case "patch":
		*o = OpPatch
	default:
		return Invalidf("unknown op %q: want put, delete or patch", b)
	}
	return nil
}

// Record is a key's state: its current value, or its value at a past revision.
type Record struct {
	Namespace string          `json:"ns"`
	Key       string          `json:"key"`
	Value     json.RawMessage `json:"value"`
	Version   uint64          `json:"version"`
	CreateRev uint64          `json:"create_revision"`
	// ModRev is the revision of the change that produced this state.
	ModRev    uint64    `json:"revision"`
	Who       string    `json:"who"`
	UpdatedAt time.Time `json:"updated_at"`
	// ExpiresAt is when the key expires (zero: never). A keepalive moves
	// it without a new version. At a past revision (GetAt) it is the
	// deadline the put in effect then set.
	ExpiresAt time.Time `json:"expires_at,omitzero"`
}

// Change is one committed change, as recorded in the log.
type Change struct {
	Revision  uint64 `json:"revision"`
	Namespace string `json:"ns"`
	Key       string `json:"key"`
	Op        Op     `json:"op"`
	// Value is the value after the change; nil for a delete (JSON null
	// over the API: a client decodes json.RawMessage("null")).
	Value json.RawMessage `json:"value"`
	// Version is the key's version after a put, or the version that was
	// deleted for a delete.
	Version uint64 `json:"version"`
	// PrevRev is the revision of the change this one replaced while the key
	// was live: the previous put for an update, the removed value's put for
	// a delete. It is 0 when the key did not exist before (a create, also
	// after a delete), so "the value before" is always the key's change at
	// PrevRev (on etcd other keys' changes may share that revision).
	PrevRev uint64    `json:"prev_revision,omitempty"`
	Who     string    `json:"who"`
	Time    time.Time `json:"time"`
	// ExpiresAt is the deadline a put with a TTL set (zero: the key is
	// permanent after it).
	ExpiresAt time.Time `json:"expires_at,omitzero"`
	// Expired marks the delete that ended a key at its deadline; its Who
	// is WhoTTL.
	Expired bool `json:"expired,omitempty"`
}

// RevisionEnd is the end of the revision of changes[first]: the index
// after its last change in changes (on etcd a transaction's changes share
// one revision; on bolt each change has its own).
func RevisionEnd(changes []Change, first int) int {
	end := first + 1
	for end < len(changes) && changes[end].Revision == changes[first].Revision {
		end++
	}
	return end
}

// WhoTTL is the author of the delete that expires a key.
const WhoTTL = "ctxd:ttl"

// Write is one put, delete or patch of a transaction (store.Backend's
// Txn), or the one write of a Put, Delete or Patch.
type Write struct {
	Namespace string
	Key       string
	Op        Op
	// Value is the JSON value to store for a put; ignored otherwise.
	Value json.RawMessage
	// Patch is what a patch changes; ignored for a put or delete.
	Patch Patch
	// Expect, when non-nil, is the version the key must have for the write
	// to apply; 0 means "the key must not exist".
	Expect *uint64
	Who    string
	// TTL, for a put, makes the key expire that long after the write (0:
	// the key is permanent, also if it had a deadline before).
	TTL time.Duration
}

// ListOptions selects a page of keys.
type ListOptions struct {
	Prefix string
	// After is the cursor: only keys strictly greater than it are listed.
	After string
	// Limit is the page size; 0 means the default (100), larger than
	// MaxListLimit is capped.
	Limit int
	// NoValues lists the keys with their versions, revisions, who and
	// time but leaves every Record.Value nil: the backend need not read
	// or copy the values (a listing of keys with large values).
	NoValues bool
}

// ListPage is one page of a listing.
type ListPage struct {
	Records []Record `json:"keys"`
	// Next is the cursor for the next page ("" when this is the last one).
	Next string `json:"next,omitempty"`
}

// HistoryOptions selects a page of one key's history, newest first.
type HistoryOptions struct {
	// Before, when non-zero, lists only changes with a revision below it.
	Before uint64
	// Limit is the page size; 0 means the default (100).
	Limit int
}

// HistoryPage is one page of a key's history, newest first.
type HistoryPage struct {
	Changes []Change `json:"changes"`
	// Next is the Before value for the next page (0 when this is the last).
	Next uint64 `json:"next,omitempty"`
	// Truncated, on the last page (Next 0), says that the change before
	// the key's oldest kept one was discarded (compaction or retention):
	// that change is an update or a delete whose predecessor is gone. Not
	// set, the page ends at a create. A key deleted and created again
	// whose earlier lives were discarded whole shows no sign of them.
	Truncated bool `json:"truncated,omitempty"`
}

// Namespace describes one namespace.
type Namespace struct {
	Name string `json:"name"`
	Keys uint64 `json:"keys"`
}

// Status is a summary of the store.
type Status struct {
	Revision          uint64 `json:"revision"`
	CompactedRevision uint64 `json:"compacted_revision"`
	Keys              uint64 `json:"keys"`
	Namespaces        int    `json:"namespaces"`
	// DBSizeBytes is bbolt's high-water mark; FileSizeBytes what the file
	// takes (bbolt grows it ahead); InUseBytes the pages holding data, the
	// rest being FreePages that a defrag gives back.
	DBSizeBytes   int64  `json:"db_size_bytes"`
	FileSizeBytes int64  `json:"file_size_bytes"`
	InUseBytes    int64  `json:"in_use_bytes"`
	FreePages     int    `json:"free_pages"`
	SchemaVersion int    `json:"schema_version"`
	Path          string `json:"path"`
	// QuotaBytes is the storage quota (0: none); UsedBytes what counts
	// against it: InUseBytes plus the acknowledged writes not yet in the
	// file (bolt: in its write-ahead log only).
	QuotaBytes int64 `json:"quota_bytes"`
	UsedBytes  int64 `json:"used_bytes"`
	// QuotaAlarm, when not empty, says that writes adding data are refused
	// now (the quota is reached, or the last write refused would still
	// be), and what to do: a *QuotaError's message.
	QuotaAlarm string `json:"quota_alarm,omitempty"`
	// ReadCache is the backend's read cache: the etcd instance's copy of
	// its prefix, or bolt's cache of the keys GETs read (nil: a backend
	// without one).
	ReadCache *ReadCacheStatus `json:"read_cache,omitempty"`
	// LastRestore is the last whole restore, whose discarded revisions
	// answer compacted although they are above CompactedRevision (nil:
	// none).
	LastRestore *RestoreMark `json:"last_restore,omitempty"`
}

// RestoreMark says which revisions a whole restore discarded: those from
// DiscardedFrom up to Revision, the restored state's, excluded. A read at
// one answers compacted, as a follower that had one is told.
type RestoreMark struct {
	Revision         uint64 `json:"revision"`
	SnapshotRevision uint64 `json:"snapshot_revision"`
	DiscardedFrom    uint64 `json:"discarded_from"`
}

// States of a read cache (ReadCacheStatus.State).
const (
	ReadCacheOff      = "off"      // etcd.read_cache: false (store.read_cache_bytes: 0 on bolt): every read goes to the store
	ReadCacheFilling  = "filling"  // being filled (or refilled): reads go to etcd meanwhile
	ReadCacheReady    = "ready"    // serving reads
	ReadCacheDisabled = "disabled" // gave up (over its memory bound) until the instance restarts
)

// ReadCacheStatus describes a backend's read cache, in /v1/status and
// /metrics: an etcd instance's, or bolt's Get cache (which has no fill:
// its Fill fields stay 0).
type ReadCacheStatus struct {
	State string `json:"state"`
	// Reason says why the cache is disabled.
	Reason string `json:"reason,omitempty"`
	// Revision (etcd only: 0, absent, on bolt) is the revision the cache
	// reflects: while it is ready, the status's keys and namespaces are
	// its counts, at this revision.
	Revision uint64 `json:"revision,omitempty"`
	// Keys and Bytes are what it holds (Bytes counts keys, values and a
	// fixed overhead per entry); MaxBytes is its bound,
	// etcd.read_cache_max_bytes.
	Keys     int64 `json:"keys"`
	Bytes    int64 `json:"bytes"`
	MaxBytes int64 `json:"max_bytes"`
	// FillKeys is how many keys the fill in progress has read so far;
	// once it is done, how many the last fill read.
	FillKeys int64 `json:"fill_keys"`
	// Fills counts the completed fills; LastFillSeconds is how long the
	// last one took.
	Fills           uint64  `json:"fills"`
	LastFillSeconds float64 `json:"last_fill_seconds"`
	// Hits are reads it served; Fallbacks reads that went to etcd
	// instead (not ready, or not caught up within a second), on bolt
	// GETs that missed it and read the database.
	Hits      uint64 `json:"hits"`
	Fallbacks uint64 `json:"fallbacks"`
	// Confirmations (etcd only: nil on bolt) are the requests that
	// confirmed etcd's current revision before cached reads: one serves
	// every read waiting when it is sent. A pointer, so that 0 shows on
	// etcd and bolt shows none.
	Confirmations *uint64 `json:"confirmations,omitempty"`
}

// Alarm values of ServerStatus.
const (
	// AlarmNone: writes are accepted.
	AlarmNone = ""
	// AlarmInsufficientStorage: the storage quota is reached; writes that
	// add data answer 507 insufficient_storage.
	AlarmInsufficientStorage = CodeInsufficientStorage
	// AlarmStoreFailed: the store failed (its data disk filled or failed
	// under the running server): every write answers 503 unavailable, and
	// /readyz 503, until the server is restarted.
	AlarmStoreFailed = "store_failed"
)

// ServerStatus is the server's summary, the body of GET /v1/status: the
// storage backend's Status with the server's own version, clients and uptime.
type ServerStatus struct {
	Version           string `json:"version"`
	Revision          uint64 `json:"revision"`
	CompactedRevision uint64 `json:"compacted_revision"`
	Keys              uint64 `json:"keys"`
	Namespaces        int    `json:"namespaces"`
	DBSizeBytes       int64  `json:"db_size_bytes"`
	FileSizeBytes     int64  `json:"file_size_bytes"`
	InUseBytes        int64  `json:"in_use_bytes"`
	FreePages         int    `json:"free_pages"`
	SchemaVersion     int    `json:"schema_version"`
	// QuotaBytes and UsedBytes are the storage quota (0: none) and what
	// counts against it (Status); Alarm is AlarmStoreFailed once the store
	// failed, with AlarmMessage saying why, AlarmInsufficientStorage
	// while the quota is reached, with AlarmMessage saying what to do,
	// and AlarmNone ("") otherwise.
	QuotaBytes    int64     `json:"quota_bytes"`
	UsedBytes     int64     `json:"used_bytes"`
	Alarm         string    `json:"alarm"`
	AlarmMessage  string    `json:"alarm_message"`
	Clients       int       `json:"clients"`
	UptimeSeconds int64     `json:"uptime_seconds"`
	StartedAt     time.Time `json:"started_at"`
	// ReadCache is the store's read cache (Status.ReadCache).
	ReadCache *ReadCacheStatus `json:"read_cache,omitempty"`
	// LastRestore is the last whole restore (Status.LastRestore).
	LastRestore *RestoreMark `json:"last_restore,omitempty"`
}

// TokenInfo is what the token of a request may do, the body of GET
// /v1/auth/self (auth.Token.Info): what a client asks before it offers
// what its token may not do. Never the token's secret or hash.
type TokenInfo struct {
	// AccessControl is false on a server without access control: then
	// every request may do everything (Roles admin, every right, no
	// limits) and Name is empty.
	AccessControl bool   `json:"access_control"`
	Name          string `json:"name,omitempty"`
	// Roles are the roles the tokens file gives the token (read, write,
	// metrics, admin); Rights the same with what they imply (write
	// includes read, admin everything), in that order: what to test.
	Roles  []string `json:"roles"`
	Rights []string `json:"rights"`
	// Namespaces and Prefixes, when present, are the only namespaces and
	// key prefixes the token may use; absent, it is not limited.
	Namespaces []string `json:"namespaces,omitempty"`
	Prefixes   []string `json:"prefixes,omitempty"`
}

// May reports whether the token has the right named role ("read",
// "write", "metrics" or "admin"), given or implied.
func (i TokenInfo) May(role string) bool { return slices.Contains(i.Rights, role) }

// TxnResult is the outcome of a committed write or transaction.
type TxnResult struct {
	// Revision is the revision of the last change in the transaction (the
	// store's revision right after it committed).
	Revision uint64 `json:"revision"`
	// Records holds, per write and in order, the key's new state; for a
	// delete it holds the deleted key's last version with a nil value
	// (JSON null over the API).
	Records []Record `json:"results"`
}

// Limits bound what one request may write.
type Limits struct {
	MaxKeyBytes   int `yaml:"max_key_bytes"`   // at most 1024
	MaxValueBytes int `yaml:"max_value_bytes"` // bytes of JSON text
	MaxTxnOps     int `yaml:"max_txn_ops"`     // writes in one transaction
	// MinTTL and MaxTTL bound a put's or a keepalive's TTL.
	MinTTL time.Duration `yaml:"min_ttl"`
	MaxTTL time.Duration `yaml:"max_ttl"`
	// importing (ForImport) keeps a who as recorded: dumps and snapshots
	// of data written before who had to be text still import and restore.
	importing bool
}

// DefaultLimits are the limits a backend uses when it is given none.
var DefaultLimits = Limits{MaxKeyBytes: 1024, MaxValueBytes: 1 << 20, MaxTxnOps: 128, MinTTL: time.Second, MaxTTL: 365 * 24 * time.Hour}

// MaxKeyBytes is the hard upper bound on a key's length.
const MaxKeyBytes = 1024

// MaxListLimit caps a list or history page.
const MaxListLimit = 1000

// DefaultNamespace always exists.
const DefaultNamespace = "default"

// TxnRequest is the body of POST /v1/txn.
type TxnRequest struct {
	// Who is recorded on every change (default: the request's who).
	Who string  `json:"who,omitempty"`
	Ops []TxnOp `json:"ops"`
}

// TxnOp is one write of a transaction.
type TxnOp struct {
	// Op is "put", "delete" or "patch".
	Op string `json:"op"`
	// Namespace defaults to "default".
	Namespace string `json:"ns,omitempty"`
	Key       string `json:"key"`
	// Value is the JSON value of a put.
	Value json.RawMessage `json:"value,omitempty"`
	// IfVersion, when set, is the version the key must have (0: must not exist).
	IfVersion *uint64 `json:"if_version,omitempty"`
	// Patch is the document of a "patch" op, PatchType its kind ("merge"
	// or "json"; default: by its shape, ParsePatchType).
	Patch     json.RawMessage `json:"patch,omitempty"`
	PatchType string          `json:"patch_type,omitempty"`
	// TTL, for a put, makes the key expire: a duration ("30s", "1h") or
	// a number of seconds (see ParseTTL).
	TTL json.RawMessage `json:"ttl,omitempty"`
}

// PatchType is the kind of a patch document, named by its media type.
type PatchType string

const (
	// MergePatch is a JSON Merge Patch (RFC 7396): an object whose members
	// replace the value's, null removing one, objects merging
	// recursively; anything else replaces the whole value.
	MergePatch PatchType = "application/merge-patch+json"
	// JSONPatch is a JSON Patch (RFC 6902): an array of operations (add,
	// remove, replace, move, copy, test) applied in order, all or none.
	JSONPatch PatchType = "application/json-patch+json"
)

// ParsePatchType names a patch's kind from what a client wrote: "merge"
// or "json", or their media types; "" chooses by the document's shape: a
// JSON Patch is an array, and a merge patch that is an array would only
// replace the whole value, so an array is read as a JSON Patch and
// anything else as a merge patch.
func ParsePatchType(name string, doc []byte) (PatchType, error) {
	switch name {
	case "merge", string(MergePatch):
		return MergePatch, nil
	case "json", string(JSONPatch):
		return JSONPatch, nil
	case "":
		for _, c := range doc {
			switch c {
			case ' ', '\t', '\r', '\n':
				continue
			case '[':
				return JSONPatch, nil
			}
			return MergePatch, nil
		}
		return MergePatch, nil
	}
	return "", Invalidf("patch type is merge or json; got %q", name)
}

// Patch is a patch document and its kind.
type Patch struct {
	Type PatchType
	Doc  json.RawMessage
}
