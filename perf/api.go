package perf

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"strconv"
	"time"
)

// The setup and maintenance requests of the scenarios: off the measured
// paths, so plain encoding/json.

// serverStatus is the part of GET /v1/status the suite reads.
type serverStatus struct {
	Version       string `json:"version"`
	Revision      uint64 `json:"revision"`
	Keys          uint64 `json:"keys"`
	DBSizeBytes   int64  `json:"db_size_bytes"`
	FileSizeBytes int64  `json:"file_size_bytes"`
	InUseBytes    int64  `json:"in_use_bytes"`
	// UsedBytes is InUseBytes plus the acknowledged writes the committer
	// has not put in the database file yet (bolt's write-ahead log).
	UsedBytes int64 `json:"used_bytes"`
}

// call sends a request, expects status want, and decodes the answer into
// out (when not nil).
func call(c *httpConn, want int, method, path string, body []byte, out any) error {
	if err := c.expect(want, method, path, body); err != nil {
		return err
	}
	if out == nil {
		return nil
	}
	if err := json.Unmarshal(c.body.Bytes(), out); err != nil {
		return fmt.Errorf("%s %s: decode answer: %w", method, path, err)
	}
	return nil
}

// decoded sends a request without a body, expects status want, and
// returns the answer decoded.
func decoded[T any](c *httpConn, want int, method, path string) (T, error) {
	var out T
	err := call(c, want, method, path, nil, &out)
	return out, err
}

// status reads ep's status; ctx ends the request (a stopped run does not
// wait for a server that answers nothing).
func (s *suite) status(ctx context.Context, ep endpoint) (serverStatus, error) {
	c := newHTTPConn(ep)
	c.ctx = ctx
	defer c.Close()
	return getStatus(c)
}

func getStatus(c *httpConn) (serverStatus, error) {
	return decoded[serverStatus](c, http.StatusOK, http.MethodGet, "/v1/status")
}

// defaultSettleTimeout is how long settledStatus waits by default
// (Config.SettleTimeout).
const defaultSettleTimeout = 5 * time.Second

// settledStatus is /v1/status once the database file holds every write
// acknowledged so far, or after wait; settled says which (false: the
// sizes lag the writes, and the report must say so). The writes are
// acknowledged once in the write-ahead log; the committer puts them in
// the file a moment later, and until then the file's sizes lag them
// (16 KiB after 750 keys written; a snapshot table showed the size the
// file had before an import of 10,000 keys). Nothing is pending when the
// server's /metrics says so (ctxd_store_pending_changes: 0 on etcd,
// which has no committer), or, when it cannot be read or has no such
// metric (a server older than it), when used is in use (bolt's used
// bytes count the pending writes; etcd's are its file, and never settle
// by this).
func settledStatus(c *httpConn, wait time.Duration) (st serverStatus, settled bool, err error) {
	for deadline := time.Now().Add(wait); ; {
		cc, metricsErr := scrapeCommits(c) // before the status: what it read applied is in the status
		if st, err = getStatus(c); err != nil {
			return st, false, err
		}
		settled = st.UsedBytes <= st.InUseBytes
		if metricsErr == nil && cc.hasPending {
			settled = cc.pending == 0
		}
		if settled || time.Now().After(deadline) {
			return st, settled, nil
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// keyPath is the escaped path of a key.
func keyPath(ns, key string) string {
	return "/v1/ns/" + url.PathEscape(ns) + "/keys/" + url.PathEscape(key)
}

// txnOp is one op of POST /v1/txn.
type txnOp struct {
	Op    string          `json:"op"`
	NS    string          `json:"ns"`
	Key   string          `json:"key"`
	Value json.RawMessage `json:"value,omitempty"`
}

// txn writes ops in one transaction (at most limits.max_txn_ops, 128 by
// default).
func txn(c *httpConn, ops []txnOp) error {
	body, err := json.Marshal(map[string]any{"who": "perf", "ops": ops})
	if err != nil {
		return fmt.Errorf("encode txn: %w", err)
	}
	return call(c, http.StatusOK, http.MethodPost, "/v1/txn", body, nil)
}

// importKeys puts keys[i] = value for every i into ns with POST
// /v1/ns/{ns}/import, in bodies of at most ~1 MiB (the server's body limit
// is 2 MiB by default); each body is one transaction.
func importKeys(c *httpConn, ns string, keys []string, value []byte) error {
	const maxBody = 1 << 20
	path := "/v1/ns/" + url.PathEscape(ns) + "/import?who=perf"
	body := []byte(`{"context":{`)
	n := 0
	flush := func() error {
		if n == 0 {
			return nil
		}
		body = append(body, "}}"...)
		if err := c.expect(http.StatusOK, http.MethodPost, path, body); err != nil {
			return fmt.Errorf("import into %s: %w", ns, err)
		}
		body, n = append(body[:0], `{"context":{`...), 0
		return nil
	}
	for _, k := range keys {
		if n > 0 {
			body = append(body, ',')
		}
		kb, _ := json.Marshal(k) // a string always encodes
		body = append(append(append(body, kb...), ':'), value...)
		n++
		if len(body) > maxBody {
			if err := flush(); err != nil {
				return err
			}
		}
	}
	return flush()
}

// compactResult is POST /v1/compact's answer.
type compactResult struct {
	Revision uint64 `json:"compacted_revision"`
	Removed  int    `json:"removed"`
}

func compact(c *httpConn, rev uint64, keepVersions int) (compactResult, error) {
	q := url.Values{"rev": {strconv.FormatUint(rev, 10)}, "keep_versions": {strconv.Itoa(keepVersions)}}
	return decoded[compactResult](c, http.StatusOK, http.MethodPost, "/v1/compact?"+q.Encode())
}

// defragResult is POST /v1/defrag's answer.
type defragResult struct {
	SizeBefore int64   `json:"size_before"`
	SizeAfter  int64   `json:"size_after"`
	PauseMs    float64 `json:"pause_ms"`
}

func defrag(c *httpConn) (defragResult, error) {
	return decoded[defragResult](c, http.StatusOK, http.MethodPost, "/v1/defrag")
}

// snapshotMeta is the part of a snapshot's metadata the suite reads.
type snapshotMeta struct {
	ID   string `json:"id"`
	Size int64  `json:"size"`
}

func createSnapshot(c *httpConn) (snapshotMeta, error) {
	return decoded[snapshotMeta](c, http.StatusCreated, http.MethodPost, "/v1/snapshots")
}

func deleteSnapshot(c *httpConn, id string) error {
	return call(c, http.StatusOK, http.MethodDelete, "/v1/snapshots/"+url.PathEscape(id), nil, nil)
}

func restoreSnapshot(c *httpConn, id string) error {
	return call(c, http.StatusOK, http.MethodPost, "/v1/snapshots/"+url.PathEscape(id)+"/restore", nil, nil)
}

// dumpInfo is the part of a server-side dump's answer the suite reads.
type dumpInfo struct {
	FileSize int64 `json:"file_size"`
	KeyCount int   `json:"key_count"`
}

func dumpNamespace(c *httpConn, ns, filename string) (dumpInfo, error) {
	q := url.Values{"format": {"json"}, "filename": {filename}, "who": {"perf"}}
	return decoded[dumpInfo](c, http.StatusOK, http.MethodPost, "/v1/ns/"+url.PathEscape(ns)+"/dumps?"+q.Encode())
}

// exportNamespace reads a JSON export of ns to the end and returns its size.
func exportNamespace(c *httpConn, ns string) (int64, error) {
	err := c.expect(http.StatusOK, http.MethodGet, "/v1/ns/"+url.PathEscape(ns)+"/export?format=json", nil)
	return int64(c.body.Len()), err
}
