package server_test

import (
	"bytes"
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/framework0/ctxd"
	"github.com/framework0/ctxd/configs"
	"github.com/framework0/ctxd/internal/testkit"
)

// quotaServer is a whole server with a small storage quota, and the
// requests the quota tests send it.
type quotaServer struct {
	*testkit.Server
	t *testing.T
}

func startQuotaServer(t *testing.T, quota int64) quotaServer {
	s := testkit.StartServer(t, testkit.WithConfig(func(c *configs.Config) { c.Storage.QuotaBytes = quota }))
	return quotaServer{Server: s, t: t}
}

// do sends a request and returns the status and body.
func (s quotaServer) do(method, path, body string) (int, []byte) {
	s.t.Helper()
	res, b := testkit.Send(s.t, http.DefaultClient, testkit.NewRequest(s.t, method, s.URL+path, body))
	return res.StatusCode, b
}

// status reads /v1/status, strictly.
func (s quotaServer) status() ctxd.ServerStatus {
	s.t.Helper()
	code, body := s.do(http.MethodGet, "/v1/status", "")
	require.Equal(s.t, http.StatusOK, code, "%s", body)
	var st ctxd.ServerStatus
	dec := json.NewDecoder(bytes.NewReader(body))
	dec.DisallowUnknownFields()
	require.NoError(s.t, dec.Decode(&st))
	return st
}

// applied waits until the committer has applied every acknowledged write
// to the database file: what counts against the quota is then measured on
// the file alone, and stays put while nothing is written.
func (s quotaServer) applied() {
	s.t.Helper()
	testkit.Eventually(s.t, func() bool { return s.Backend().Stats().Pending == 0 }, "the committer applies every write")
}

// requireRefused checks a 507 insufficient_storage whose message says
// what to do.
func requireRefused(t *testing.T, code int, body []byte, what string) {
	t.Helper()
	require.Equal(t, http.StatusInsufficientStorage, code, "%s: %s", what, body)
	var e struct {
		Error struct{ Code, Message string } `json:"error"`
	}
	require.NoError(t, json.Unmarshal(body, &e), "%s", body)
	assert.Equal(t, ctxd.CodeInsufficientStorage, e.Error.Code, what)
	for _, hint := range []string{"storage.quota_bytes", "POST /v1/compact", "POST /v1/defrag", "delete keys"} {
		assert.Contains(t, e.Error.Message, hint, "%s: the message says what to do", what)
	}
}

// bigValue is a JSON string of n bytes.
func bigValue(n int) string { return `"` + strings.Repeat("q", n-2) + `"` }

// Past the storage quota, every write that adds data (put, transaction,
// import, /ctx, WebSocket context_set) answers 507 insufficient_storage
// and changes nothing; reads, deletes, snapshots, compaction and defrag
// keep working, /readyz stays ready, the status, the metrics and the
// dashboard's data say why; once compaction has freed space, writes work
// again.
func TestQuotaRefusesWritesPastIt(t *testing.T) {
	const quota = 1 << 20
	s := startQuotaServer(t, quota)
	st := s.status()
	assert.Equal(t, int64(quota), st.QuotaBytes)
	assert.Equal(t, ctxd.AlarmNone, st.Alarm)
	assert.Positive(t, st.UsedBytes)

	code, body := s.do(http.MethodPut, "/v1/ns/default/keys/keep", `"small"`)
	require.Equal(t, http.StatusOK, code, "%s", body)

	// Fill with 64 KiB values until one is refused with nothing pending,
	// so that the refusal stays as long as nothing is freed.
	value := bigValue(64 << 10)
	var filled []string
	for i := 0; ; i++ {
		require.Less(t, i, 100, "the quota never refused a write")
		key := fmt.Sprintf("fill-%03d", i)
		code, body := s.do(http.MethodPut, "/v1/ns/default/keys/"+key, value)
		if code == http.StatusOK {
			filled = append(filled, key)
			continue
		}
		requireRefused(t, code, body, "a put past the quota")
		s.applied()
		if code, _ := s.do(http.MethodPut, "/v1/ns/default/keys/"+key, value); code == http.StatusInsufficientStorage {
			break
		}
		filled = append(filled, key) // the committer's batch took less room than its changes did waiting
	}
	require.NotEmpty(t, filled)
	before := s.status()
	assert.Equal(t, ctxd.AlarmInsufficientStorage, before.Alarm, "the status says why writes are refused")
	assert.Contains(t, before.AlarmMessage, "storage.quota_bytes")
	assert.Contains(t, before.AlarmMessage, "POST /v1/compact")
	m := testkit.Scrape(t, s.URL)
	assert.Equal(t, float64(quota), m["ctxd_storage_quota_bytes"])
	assert.Equal(t, 1.0, m["ctxd_storage_quota_exceeded"])
	assert.Positive(t, m["ctxd_storage_used_bytes"])
	assert.Positive(t, m["ctxd_storage_quota_refused_writes_total"])

	// Every way of adding data is refused, and changes nothing.
	code, body = s.do(http.MethodPut, "/v1/ns/default/keys/refused", value)
	requireRefused(t, code, body, "PUT")
	code, body = s.do(http.MethodPut, "/v1/ns/default/keys/keep", value)
	requireRefused(t, code, body, "PUT over a live key")
	code, body = s.do(http.MethodPost, "/v1/txn", `{"ops":[{"op":"delete","key":"keep"},{"op":"put","key":"refused","value":`+value+`}]}`)
	requireRefused(t, code, body, "a transaction with a put")
	code, body = s.do(http.MethodPost, "/v1/ns/default/import", `{"context":{"refused":`+value+`}}`)
	requireRefused(t, code, body, "import")
	code, body = s.do(http.MethodPost, "/ctx", `{"key":"refused","value":`+value+`,"who":"f0"}`)
	requireRefused(t, code, body, "POST /ctx")
	assert.Contains(t, string(body), `"status":"error"`, "the /ctx routes keep Framework0's error shape")
	ws := testkit.DialWatch(t, s.WatchURL(nil), nil)
	ws.Expect(ctxd.TypeSubscribed)
	ws.SendJSON(map[string]any{"type": "context_set", "id": 1, "key": "refused", "value": json.RawMessage(value)})
	f := ws.Expect(ctxd.TypeError)
	assert.Equal(t, ctxd.CodeInsufficientStorage, f.Code, "%+v", f)
	assert.Contains(t, f.Message, "storage.quota_bytes")
	assert.Equal(t, before.Revision, s.status().Revision, "a refused write changed nothing")
	code, _ = s.do(http.MethodGet, "/v1/ns/default/keys/refused", "")
	assert.Equal(t, http.StatusNotFound, code)

	// Reads, readiness, snapshots, deletes, compaction and defrag work.
	code, body = s.do(http.MethodGet, "/v1/ns/default/keys/keep", "")
	require.Equal(t, http.StatusOK, code, "%s", body)
	assert.Contains(t, string(body), `"value":"small"`)
	code, body = s.do(http.MethodGet, "/v1/ns/default/keys?limit=1000", "")
	require.Equal(t, http.StatusOK, code, "%s", body)
	assert.Contains(t, string(body), filled[len(filled)-1])
	code, body = s.do(http.MethodGet, "/readyz", "")
	assert.Equal(t, http.StatusOK, code, "reads work, so the server stays ready: %s", body)
	code, body = s.do(http.MethodPost, "/v1/snapshots", "")
	require.Equal(t, http.StatusCreated, code, "%s", body)
	code, body = s.do(http.MethodDelete, "/v1/ns/default/keys/keep", "")
	require.Equal(t, http.StatusOK, code, "a delete past the quota: %s", body)
	var ops []string
	for _, k := range filled {
		ops = append(ops, `{"op":"delete","key":"`+k+`"}`)
	}
	code, body = s.do(http.MethodPost, "/v1/txn", `{"ops":[`+strings.Join(ops, ",")+`]}`)
	require.Equal(t, http.StatusOK, code, "a transaction of deletes past the quota: %s", body)
	code, body = s.do(http.MethodPost, "/v1/compact?keep_versions=1", "")
	require.Equal(t, http.StatusOK, code, "%s", body)
	code, body = s.do(http.MethodPost, "/v1/defrag", "")
	require.Equal(t, http.StatusOK, code, "%s", body)

	// The space freed, the alarm is gone and writes work again.
	after := s.status()
	assert.Less(t, after.UsedBytes, before.UsedBytes/2, "compaction freed the deleted keys' history")
	assert.Equal(t, ctxd.AlarmNone, after.Alarm, "%s", after.AlarmMessage)
	assert.Empty(t, after.AlarmMessage)
	assert.Equal(t, 0.0, testkit.Scrape(t, s.URL)["ctxd_storage_quota_exceeded"])
	code, body = s.do(http.MethodPut, "/v1/ns/default/keys/refused", value)
	require.Equal(t, http.StatusOK, code, "%s", body)
}

// Compaction alone lifts the quota: the pages it frees count as free
// (bbolt reuses them before it grows the file), so no defrag is needed
// before writes resume.
func TestQuotaLiftedByCompactionAlone(t *testing.T) {
	const quota = 1 << 20
	s := startQuotaServer(t, quota)
	value := bigValue(32 << 10)
	var refused bool
	for i := 0; i < 200 && !refused; i++ {
		// The same key again and again: its history fills the quota.
		code, body := s.do(http.MethodPut, "/v1/ns/default/keys/hot", value)
		if code == http.StatusInsufficientStorage {
			s.applied()
			code, body = s.do(http.MethodPut, "/v1/ns/default/keys/hot", value)
			refused = code == http.StatusInsufficientStorage
		}
		if !refused {
			require.Equal(t, http.StatusOK, code, "%s", body)
		}
	}
	require.True(t, refused, "the quota never refused a write")
	fileBefore := s.status().FileSizeBytes
	code, body := s.do(http.MethodPost, "/v1/compact?keep_versions=1", "")
	require.Equal(t, http.StatusOK, code, "%s", body)
	st := s.status()
	assert.Equal(t, ctxd.AlarmNone, st.Alarm, "%s", st.AlarmMessage)
	assert.Equal(t, fileBefore, st.FileSizeBytes, "no defrag ran: the file is as large as before")
	code, body = s.do(http.MethodPut, "/v1/ns/default/keys/hot", value)
	require.Equal(t, http.StatusOK, code, "%s", body)
}

// Without a quota (storage.quota_bytes: 0) nothing is refused and the
// status says there is none.
func TestNoQuota(t *testing.T) {
	s := startQuotaServer(t, 0)
	st := s.status()
	assert.Zero(t, st.QuotaBytes)
	assert.Equal(t, ctxd.AlarmNone, st.Alarm)
	value := bigValue(256 << 10)
	for i := range 8 { // 2 MiB, past the quota of the tests above
		code, body := s.do(http.MethodPut, "/v1/ns/default/keys/"+url.PathEscape(fmt.Sprint("k", i)), value)
		require.Equal(t, http.StatusOK, code, "%s", body)
	}
	assert.Zero(t, testkit.Scrape(t, s.URL)["ctxd_storage_quota_bytes"])
}
