package realtime

import (
	"encoding/json"
	"strconv"
	"time"

	"github.com/framework0/ctxd"
	"github.com/framework0/ctxd/internal/jsontext"
)

// DumpInfo describes a dump that was written; NotifyDumped sends it to every
// client as a "context_dumped" frame.
type DumpInfo struct {
	Filename string `json:"filename"`
	Format   string `json:"format"`
	Path     string `json:"path,omitempty"`
	// Namespace is the namespace dumped.
	Namespace string `json:"ns,omitempty"`
	// Revision is the revision the dump is consistent at.
	Revision       uint64    `json:"rev,omitempty"`
	KeyCount       int       `json:"key_count"`
	IncludeHistory bool      `json:"include_history"`
	FileSize       int64     `json:"file_size"`
	Who            string    `json:"who,omitempty"`
	Timestamp      time.Time `json:"timestamp"`
}

// inMessage is any message a client sends; which fields count depends on
// Type. Unknown fields are ignored, so that Framework0 clients that send
// more than ctxd reads still work.
type inMessage struct {
	Type string `json:"type"`
	// ID, when given (a string or a number), is echoed in the answer.
	ID json.RawMessage `json:"id"`

	// subscribe, unsubscribe
	NS      nsList  `json:"ns"`
	Prefix  string  `json:"prefix"`
	FromRev *uint64 `json:"from_rev"`
	// FromIndex, with FromRev: how many changes of that revision the
	// client has (store.ResumeFrom).
	FromIndex *uint64 `json:"from_index"`
	Snapshot  bool    `json:"snapshot"`

	// context_set, context_patch
	Key       string          `json:"key"`
	Value     json.RawMessage `json:"value"`
	IfVersion *uint64         `json:"if_version"`
	Who       string          `json:"who"`
	// context_patch: the patch document, and its kind ("merge", "json" or
	// their media types; default json for an array, merge otherwise).
	Patch     json.RawMessage `json:"patch"`
	PatchType string          `json:"patch_type"`

	// client_register
	ClientType string `json:"client_type"`
	Name       string `json:"name"`
}

// nsList accepts "ns" as one string or a list of strings.
type nsList []string

func (l *nsList) UnmarshalJSON(b []byte) error {
	if len(b) > 0 && b[0] == '"' {
		var s string
		if err := json.Unmarshal(b, &s); err != nil {
			return err
		}
		*l = nsList{s}
		return nil
	}
	var ss []string
	if err := json.Unmarshal(b, &ss); err != nil {
		return err
	}
	*l = ss
	return nil
}

// Outgoing messages other than context_updated, which is encoded by hand
// (appendChange) because it is the hot path.
type (
	subscribedMsg struct {
		Type     string          `json:"type"`
		ID       json.RawMessage `json:"id,omitempty"`
		ClientID string          `json:"client_id"`
		Rev      uint64          `json:"rev"`
		// Index, when not 0, says the changes that follow start inside
		// revision Rev, at that place (its first Index changes are not
		// sent): the resume point is (Rev, Index).
		Index         int                 `json:"index,omitempty"`
		Subscriptions []ctxd.Subscription `json:"subscriptions"`
		Batch         bool                `json:"batch"`
	}
	snapshotMsg struct {
		Type     string          `json:"type"`
		ID       json.RawMessage `json:"id,omitempty"`
		Rev      uint64          `json:"rev"`
		Keys     []ctxd.Record   `json:"keys"`
		Complete bool            `json:"complete"`
	}
	statsMsg struct {
		Type             string          `json:"type"`
		ID               json.RawMessage `json:"id,omitempty"`
		ConnectedClients int             `json:"connected_clients"`
		ClientsByType    map[string]int  `json:"clients_by_type"`
		Rev              uint64          `json:"rev"`
		Timestamp        time.Time       `json:"timestamp"`
	}
	registeredMsg struct {
		Type       string          `json:"type"`
		ID         json.RawMessage `json:"id,omitempty"`
		ClientID   string          `json:"client_id"`
		ClientType string          `json:"client_type"`
		Name       string          `json:"name"`
		Timestamp  time.Time       `json:"timestamp"`
	}
	setConfirmedMsg struct {
		Type      string          `json:"type"`
		ID        json.RawMessage `json:"id,omitempty"`
		NS        string          `json:"ns"`
		Key       string          `json:"key"`
		Version   uint64          `json:"version"`
		Rev       uint64          `json:"rev"`
		Who       string          `json:"who"`
		Timestamp time.Time       `json:"timestamp"`
	}
	// patchConfirmedMsg answers a context_patch with the value it left.
	patchConfirmedMsg struct {
		Type      string          `json:"type"`
		ID        json.RawMessage `json:"id,omitempty"`
		NS        string          `json:"ns"`
		Key       string          `json:"key"`
		Value     json.RawMessage `json:"value"`
		Version   uint64          `json:"version"`
		Rev       uint64          `json:"rev"`
		Who       string          `json:"who"`
		Timestamp time.Time       `json:"timestamp"`
	}
	dumpedMsg struct {
		Type string `json:"type"`
		DumpInfo
	}
	compactedMsg struct {
		Type              string          `json:"type"`
		ID                json.RawMessage `json:"id,omitempty"`
		FromRev           uint64          `json:"from_rev"`
		CompactedRevision uint64          `json:"compacted_revision"`
		Rev               uint64          `json:"rev"`
		Message           string          `json:"message"`
	}
	resetMsg struct {
		Type    string          `json:"type"`
		ID      json.RawMessage `json:"id,omitempty"` // of a subscribe whose from_rev is ahead
		Rev     uint64          `json:"rev"`
		Message string          `json:"message"`
	}
	pongMsg struct {
		Type string          `json:"type"`
		ID   json.RawMessage `json:"id,omitempty"`
		Rev  uint64          `json:"rev"`
	}
	errorMsg struct {
		Type    string          `json:"type"`
		ID      json.RawMessage `json:"id,omitempty"`
		Code    string          `json:"code"`
		Message string          `json:"message"`
		// FromRev is, for lagged, the revision to reconnect with (a
		// whole revision: lagged waits for the session to finish one).
		FromRev *uint64 `json:"from_rev,omitempty"`
		// FromIndex goes with FromRev when the client resumed inside that
		// revision and has not got the rest of it yet.
		FromIndex int `json:"from_index,omitempty"`
		// Conflict details.
		NS             string  `json:"ns,omitempty"`
		Key            string  `json:"key,omitempty"`
		CurrentVersion *uint64 `json:"current_version,omitempty"`
		// Compacted details.
		CompactedRevision uint64 `json:"compacted_revision,omitempty"`
		// Patch failure details: the failing operation and JSON pointer.
		OpIndex *int    `json:"op_index,omitempty"`
		Op      string  `json:"op,omitempty"`
		Pointer *string `json:"pointer,omitempty"`
		// RetryAfterMS is, for rate_limited, when the client may send
		// again (milliseconds, at least 1).
		RetryAfterMS int64 `json:"retry_after_ms,omitempty"`
	}
)

// encode marshals one of the message structs above. They hold only
// strings, numbers, times and raw JSON that was validated, so it cannot fail.
func encode(v any) []byte {
	b, err := json.Marshal(v)
	if err != nil {
		// Only a RawMessage that is not JSON could fail, and ids and values
		// are validated before they get here.
		b, _ = json.Marshal(errorMsg{Type: ctxd.TypeError, Code: ctxd.CodeInternal, Message: "encode: " + err.Error()})
	}
	return b
}

// appendChange appends a context_updated message for c:
// {"type","rev","ns","key","op","value","version","who","timestamp"}, and
// "expires_at" for a put that set a deadline, "expired": true for an expiry.
// A change that shares its revision with others (an etcd transaction's)
// also carries "index" (its place among them, from 0) and "count" (how
// many there are), so that a client can resume inside the revision
// (from_index); a revision of one change (every bolt revision) has
// neither, as before.
func appendChange(b []byte, c *ctxd.Change, idx, count int) []byte {
	b = append(b, `{"type":"context_updated","rev":`...)
	b = strconv.AppendUint(b, c.Revision, 10)
	if count > 1 {
		b = append(b, `,"index":`...)
		b = strconv.AppendInt(b, int64(idx), 10)
		b = append(b, `,"count":`...)
		b = strconv.AppendInt(b, int64(count), 10)
	}
	b = append(b, `,"ns":`...)
	b = jsontext.AppendString(b, c.Namespace)
	b = append(b, `,"key":`...)
	b = jsontext.AppendString(b, c.Key)
	b = append(b, `,"op":"`...)
	b = append(b, c.Op.String()...)
	b = append(b, `","value":`...)
	if c.Op == ctxd.OpDelete || len(c.Value) == 0 {
		b = append(b, "null"...)
	} else {
		b = append(b, c.Value...)
	}
	b = append(b, `,"version":`...)
	b = strconv.AppendUint(b, c.Version, 10)
	b = append(b, `,"who":`...)
	b = jsontext.AppendString(b, c.Who)
	b = append(b, `,"timestamp":"`...)
	b = c.Time.UTC().AppendFormat(b, time.RFC3339Nano)
	b = append(b, '"')
	if !c.ExpiresAt.IsZero() {
		b = append(b, `,"expires_at":"`...)
		b = c.ExpiresAt.UTC().AppendFormat(b, time.RFC3339Nano)
		b = append(b, '"')
	}
	if c.Expired {
		b = append(b, `,"expired":true`...)
	}
	return append(b, '}')
}

// batchHead and batchTail frame the messages of a batch.
const (
	batchHead = `{"type":"batch","messages":[`
	batchTail = `]}`
)
