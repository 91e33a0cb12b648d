package httpapi_test

import (
	"bufio"
	"bytes"
	"crypto/sha256"
	"encoding/csv"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/rs/zerolog"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/framework0/ctxd"
	"github.com/framework0/ctxd/httpapi"
	"github.com/framework0/ctxd/store/snapshots"
)

// newSnapshotEnv is an env whose server also serves snapshots, compaction
// and defrag, over a manager in the store's folder.
func newSnapshotEnv(t *testing.T) (*env, *snapshots.Manager) {
	t.Helper()
	e := newEnv(t, envOptions{})
	m, err := snapshots.Open(filepath.Join(filepath.Dir(e.st.Path()), "snapshots"), e.store)
	require.NoError(t, err)
	srv := httpapi.New(e.store, httpapi.Config{Version: "test", Snapshots: m, MaxUploadBytes: 1 << 20}, zerolog.New(e.logs))
	e.ts.Config.Handler = srv.Handler()
	e.srv = srv
	return e, m
}

// A snapshot's export takes spreadsheet_safe as the live export does:
// csv quotes the cells a spreadsheet would take for a formula, another
// format refuses it.
func TestSnapshotExportSpreadsheetSafe(t *testing.T) {
	e, _ := newSnapshotEnv(t)
	e.put("=f", `"@x"`)
	r := e.do(http.MethodPost, "/v1/snapshots", "")
	require.Equal(t, http.StatusCreated, r.status, string(r.body))
	var meta ctxd.SnapshotMeta
	require.NoError(t, json.Unmarshal(r.body, &meta))
	r = e.do(http.MethodGet, "/v1/snapshots/"+meta.ID+"/export?format=csv&spreadsheet_safe=true", "")
	require.Equal(t, http.StatusOK, r.status, string(r.body))
	rows, err := csv.NewReader(bytes.NewReader(r.body)).ReadAll()
	require.NoError(t, err)
	require.Len(t, rows, 2)
	assert.Equal(t, []string{"'=f", "'@x"}, rows[1][:2])
	requireError(t, e.do(http.MethodGet, "/v1/snapshots/"+meta.ID+"/export?format=json&spreadsheet_safe=true", ""), http.StatusBadRequest, "bad_request")
}

func TestSnapshotLifecycle(t *testing.T) {
	e, _ := newSnapshotEnv(t)
	e.put("app.config", `{"debug":true}`)
	e.put("name", `"before"`)

	r := e.do(http.MethodPost, "/v1/snapshots", "")
	require.Equal(t, http.StatusCreated, r.status, string(r.body))
	var meta ctxd.SnapshotMeta
	require.NoError(t, json.Unmarshal(r.body, &meta))
	assert.Equal(t, "/v1/snapshots/"+meta.ID, r.header.Get("Location"))
	escaped := strings.ReplaceAll(meta.ID, "-", "%2D") // a client escaping every segment
	assert.Equal(t, http.StatusOK, e.do(http.MethodGet, "/v1/snapshots/"+escaped, "").status)
	twice := strings.ReplaceAll(meta.ID, "-", "%252D") // the id holds "%2D": unescaped once, no such snapshot
	r = e.do(http.MethodGet, "/v1/snapshots/"+twice, "")
	requireError(t, r, http.StatusNotFound, "not_found")
	assert.Contains(t, string(r.body), strings.ReplaceAll(meta.ID, "-", "%2D"))
	assert.Equal(t, uint64(2), meta.Revision)
	assert.Equal(t, []ctxd.Namespace{{Name: "default", Keys: 2}}, meta.Namespaces)

	r = e.do(http.MethodGet, "/v1/snapshots", "")
	require.Equal(t, http.StatusOK, r.status)
	var list struct{ Snapshots []ctxd.SnapshotMeta }
	require.NoError(t, json.Unmarshal(r.body, &list))
	require.Len(t, list.Snapshots, 1)

	r = e.do(http.MethodGet, "/v1/snapshots/"+meta.ID, "")
	require.Equal(t, http.StatusOK, r.status)
	sum := sha256.Sum256(r.body)
	assert.Equal(t, meta.SHA256, hex.EncodeToString(sum[:]))
	assert.Equal(t, meta.SHA256, r.header.Get("X-Ctxd-Sha256"))
	downloaded := r.body

	// Export from the snapshot, while the live value has moved on.
	e.put("name", `"after"`)
	r = e.do(http.MethodGet, "/v1/snapshots/"+meta.ID+"/export?format=csv", "")
	require.Equal(t, http.StatusOK, r.status, string(r.body))
	rows, err := csv.NewReader(bytes.NewReader(r.body)).ReadAll()
	require.NoError(t, err)
	require.Len(t, rows, 3)
	assert.Equal(t, []string{"name", "before", "string"}, rows[2][:3])
	assert.Equal(t, "2", r.header.Get("X-Ctxd-Revision"))

	// Dry run, then restore.
	r = e.do(http.MethodPost, "/v1/snapshots/"+meta.ID+"/restore?dry_run=true", "")
	require.Equal(t, http.StatusOK, r.status, string(r.body))
	var dry ctxd.RestoreResult
	require.NoError(t, json.Unmarshal(r.body, &dry))
	assert.Equal(t, []ctxd.NamespaceDiff{{Namespace: "default", Changed: 1, Unchanged: 1}}, dry.Namespaces)
	assert.Equal(t, `"after"`, string(mustGet(t, e, "name")))

	r = e.do(http.MethodPost, "/v1/snapshots/"+meta.ID+"/restore", "")
	require.Equal(t, http.StatusOK, r.status, string(r.body))
	var restored ctxd.RestoreResult
	require.NoError(t, json.Unmarshal(r.body, &restored))
	assert.Equal(t, uint64(4), restored.Revision, "the restored state takes a revision of its own, above the 3 before")
	assert.Equal(t, `"before"`, string(mustGet(t, e, "name")))
	// Revision 3 named the replaced state: a read at it is refused, not
	// answered with the restored one.
	requireError(t, e.do(http.MethodGet, keyPath("default", "name")+"?rev=3", ""), http.StatusGone, "compacted")
	// The status says so (compacted_revision, 0, does not).
	st := decode[ctxd.ServerStatus](t, e.do(http.MethodGet, "/v1/status", ""))
	if assert.NotNil(t, st.LastRestore) {
		assert.Equal(t, ctxd.RestoreMark{Revision: 4, SnapshotRevision: 2, DiscardedFrom: 3}, *st.LastRestore)
	}
	next := e.put("x", `1`)
	assert.Equal(t, uint64(5), next.ModRev, "the revision never goes back")

	// Upload what was downloaded: verified and listed.
	r = e.do(http.MethodPost, "/v1/snapshots/upload", string(downloaded), "Content-Type", "application/octet-stream", "X-Ctxd-Sha256", meta.SHA256)
	require.Equal(t, http.StatusCreated, r.status, string(r.body))
	var up ctxd.SnapshotMeta
	require.NoError(t, json.Unmarshal(r.body, &up))
	assert.Equal(t, "upload", up.Origin)
	assert.Equal(t, "/v1/snapshots/"+up.ID, r.header.Get("Location"))

	r = e.do(http.MethodDelete, "/v1/snapshots/"+meta.ID, "", "X-Ctxd-Who", "cleanup.sh")
	require.Equal(t, http.StatusOK, r.status)
	assert.True(t, slices.ContainsFunc(e.logs.Lines(t), func(l map[string]any) bool {
		return l["message"] == "snapshot deleted" && l["id"] == meta.ID && l["who"] == "cleanup.sh"
	}), "the deletion is logged, with who")
	requireError(t, e.do(http.MethodGet, "/v1/snapshots/"+meta.ID, ""), http.StatusNotFound, "not_found")
	list.Snapshots = nil
	require.NoError(t, json.Unmarshal(e.do(http.MethodGet, "/v1/snapshots", "").body, &list))
	assert.Len(t, list.Snapshots, 1)
}

func TestSnapshotErrors(t *testing.T) {
	e, m := newSnapshotEnv(t)
	e.put("k", `1`)
	meta, err := m.Create(bg, "api")
	require.NoError(t, err)
	e.put("k2", `1`)
	other, err := m.Create(bg, "api") // made into no snapshot below
	require.NoError(t, err)
	rev := e.revision()

	requireError(t, e.do(http.MethodGet, "/v1/snapshots/nope", ""), http.StatusNotFound, "not_found")
	requireError(t, e.do(http.MethodGet, "/v1/snapshots/..%2F..%2Fctxd", ""), http.StatusNotFound, "not_found")
	requireError(t, e.do(http.MethodPost, "/v1/snapshots/20990101T000000Z-r1/restore", ""), http.StatusNotFound, "not_found")
	requireError(t, e.do(http.MethodPost, "/v1/snapshots/"+meta.ID+"/restore?ns=bad%20ns", ""), http.StatusBadRequest, "bad_request")
	requireError(t, e.do(http.MethodPost, "/v1/snapshots/"+meta.ID+"/restore?dry_run=maybe", ""), http.StatusBadRequest, "bad_request")
	requireError(t, e.do(http.MethodGet, "/v1/snapshots/"+meta.ID+"/export?format=xml", ""), http.StatusBadRequest, "bad_request")
	// The messages name the upload and snapshots by what the client
	// knows them as, never by the server's files.
	ae := requireError(t, e.do(http.MethodPost, "/v1/snapshots/upload", "garbage", "Content-Type", "application/octet-stream"), http.StatusUnprocessableEntity, "bad_snapshot")
	assert.Contains(t, ae.Error.Message, "the upload")
	assert.NotContains(t, ae.Error.Message, m.Dir())
	ae = requireError(t, e.do(http.MethodPost, "/v1/snapshots/upload", strings.Repeat("\x00", 16<<10), "Content-Type", "application/octet-stream"), http.StatusUnprocessableEntity, "bad_snapshot")
	assert.NotContains(t, ae.Error.Message, m.Dir())
	requireError(t, e.do(http.MethodPost, "/v1/snapshots/upload", "x", "Content-Type", "application/json"), http.StatusBadRequest, "bad_request")
	// The media type counts, in any case and with parameters, as for a
	// PATCH: such an upload is read (before, it was refused as not
	// application/octet-stream).
	for _, ct := range []string{"application/octet-stream; charset=binary", "Application/Octet-Stream"} {
		requireError(t, e.do(http.MethodPost, "/v1/snapshots/upload", "garbage", "Content-Type", ct), http.StatusUnprocessableEntity, "bad_snapshot")
	}
	for _, sum := range []string{"xyz", "sha256:" + meta.SHA256, meta.SHA256[:63], meta.SHA256 + "0"} {
		ae := requireError(t, e.do(http.MethodPost, "/v1/snapshots/upload", "x", "Content-Type", "application/octet-stream", "X-Ctxd-Sha256", sum), http.StatusBadRequest, "bad_request")
		assert.Contains(t, ae.Error.Message, "64 hexadecimal digits", "a malformed checksum is said so, not a mismatch")
	}
	requireError(t, e.do(http.MethodPost, "/v1/snapshots/upload", strings.Repeat("x", 2<<20), "Content-Type", "application/octet-stream"), http.StatusRequestEntityTooLarge, "too_large")

	// A stored file that matches its recorded sha256 but is no snapshot
	// (written so by hand, or recorded after the damage) is refused when
	// opened, by export and restore alike, and named by its id too.
	garbage := bytes.Repeat([]byte("not a snapshot "), 4096)
	require.NoError(t, os.WriteFile(filepath.Join(m.Dir(), other.ID+".db"), garbage, 0o600))
	sum := sha256.Sum256(garbage)
	other.SHA256 = hex.EncodeToString(sum[:])
	recorded, err := json.Marshal(other)
	require.NoError(t, err)
	require.NoError(t, os.WriteFile(filepath.Join(m.Dir(), other.ID+".json"), recorded, 0o600))
	for _, r := range []response{
		e.do(http.MethodGet, "/v1/snapshots/"+other.ID+"/export?format=json", ""),
		e.do(http.MethodPost, "/v1/snapshots/"+other.ID+"/restore", ""),
		e.do(http.MethodPost, "/v1/snapshots/"+other.ID+"/restore?dry_run=true", ""),
	} {
		ae := requireError(t, r, http.StatusUnprocessableEntity, "bad_snapshot")
		assert.Contains(t, ae.Error.Message, "snapshot "+other.ID)
		assert.NotContains(t, ae.Error.Message, m.Dir())
	}
	assert.Equal(t, rev, e.revision(), "nothing changed")

	// A stored snapshot that was damaged is refused at restore.
	path := filepath.Join(m.Dir(), meta.ID+".db")
	b, err := os.ReadFile(path)
	require.NoError(t, err)
	b[len(b)-1] ^= 0xff
	require.NoError(t, os.WriteFile(path, b, 0o600))
	ae = requireError(t, e.do(http.MethodPost, "/v1/snapshots/"+meta.ID+"/restore", ""), http.StatusUnprocessableEntity, "bad_snapshot")
	assert.Contains(t, ae.Error.Message, meta.ID)
	assert.NotContains(t, ae.Error.Message, m.Dir())
	require.NoError(t, os.Remove(path))
	ae = requireError(t, e.do(http.MethodPost, "/v1/snapshots/"+meta.ID+"/restore", ""), http.StatusUnprocessableEntity, "bad_snapshot")
	assert.Contains(t, ae.Error.Message, "snapshot "+meta.ID)
	assert.NotContains(t, ae.Error.Message, m.Dir(), "a missing file is named by its snapshot's id")
	assert.Equal(t, rev, e.revision(), "nothing changed")
}

func TestCompactAndDefragRoutes(t *testing.T) {
	e, _ := newSnapshotEnv(t)
	for i := 0; i < 5; i++ {
		e.put("k", `"`+strings.Repeat("v", 2000)+`"`)
	}
	r := e.do(http.MethodPost, "/v1/compact?rev=4", "")
	require.Equal(t, http.StatusOK, r.status, string(r.body))
	var cr ctxd.CompactResult
	require.NoError(t, json.Unmarshal(r.body, &cr))
	assert.Equal(t, uint64(4), cr.Revision)
	assert.Equal(t, 3, cr.Removed)
	requireError(t, e.do(http.MethodGet, keyPath("default", "k")+"?rev=2", ""), http.StatusGone, "compacted")
	requireError(t, e.do(http.MethodPost, "/v1/compact?rev=99", ""), http.StatusBadRequest, "future_revision")
	requireError(t, e.do(http.MethodPost, "/v1/compact?rev=x", ""), http.StatusBadRequest, "bad_request")

	r = e.do(http.MethodPost, "/v1/defrag", "")
	require.Equal(t, http.StatusOK, r.status, string(r.body))
	var dr map[string]any
	require.NoError(t, json.Unmarshal(r.body, &dr))
	assert.Contains(t, dr, "pause_ms")
	assert.Equal(t, `"`+strings.Repeat("v", 2000)+`"`, string(mustGet(t, e, "k")))
	st := decode[ctxd.ServerStatus](t, e.do(http.MethodGet, "/v1/status", ""))
	assert.Positive(t, st.FileSizeBytes)
	assert.Equal(t, uint64(4), st.CompactedRevision)
}

func mustGet(t *testing.T, e *env, key string) json.RawMessage {
	t.Helper()
	r := e.do(http.MethodGet, keyPath("default", key), "")
	require.Equal(t, http.StatusOK, r.status, string(r.body))
	return decode[ctxd.Record](t, r).Value
}

// An upload whose body ends before its Content-Length (the client went
// away mid-upload) is answered 400 and stores nothing; it was 500
// internal, the store's "unexpected EOF".
func TestUploadCutShort(t *testing.T) {
	e, m := newSnapshotEnv(t)
	e.put("k", `1`)
	meta, err := m.Create(bg, "api")
	require.NoError(t, err)
	file, err := os.ReadFile(filepath.Join(m.Dir(), meta.ID+".db"))
	require.NoError(t, err)

	conn, err := net.Dial("tcp", strings.TrimPrefix(e.url, "http://"))
	require.NoError(t, err)
	defer conn.Close()
	_, err = fmt.Fprintf(conn, "POST /v1/snapshots/upload HTTP/1.1\r\nHost: x\r\nContent-Type: application/octet-stream\r\nContent-Length: %d\r\n\r\n", len(file))
	require.NoError(t, err)
	_, err = conn.Write(file[:len(file)/2])
	require.NoError(t, err)
	require.NoError(t, conn.(*net.TCPConn).CloseWrite())
	res, err := http.ReadResponse(bufio.NewReader(conn), nil)
	require.NoError(t, err)
	body, err := io.ReadAll(res.Body)
	require.NoError(t, err)
	requireError(t, response{status: res.StatusCode, header: res.Header, body: body}, http.StatusBadRequest, "bad_request")
	list, err := m.List()
	require.NoError(t, err)
	assert.Len(t, list, 1, "nothing stored")
}

// File downloads (snapshots, dumps) take Range and conditional requests
// (a large download resumes), and answer their refusals in the API's
// JSON: http.ServeContent wrote a 412 with no body and a 416 as text (and
// a 416 to a Range of a unit it does not know, which it must ignore).
func TestFileDownloadsTakeRangesAndAnswerRefusalsInJSON(t *testing.T) {
	e, m := newSnapshotEnv(t)
	e.put("k", `1`)
	meta, err := m.Create(bg, "api")
	require.NoError(t, err)
	path := "/v1/snapshots/" + meta.ID
	whole := e.do(http.MethodGet, path, "")
	require.Equal(t, http.StatusOK, whole.status)

	part := e.do(http.MethodGet, path, "", "Range", "bytes=10-19")
	require.Equal(t, http.StatusPartialContent, part.status)
	assert.Equal(t, whole.body[10:20], part.body)

	// A unit other than bytes is ignored (RFC 9110, 14.2): the whole
	// file, not 416; a unit's case does not matter.
	other := e.do(http.MethodGet, path, "", "Range", "lines=1-2")
	require.Equal(t, http.StatusOK, other.status, string(other.body))
	assert.Equal(t, whole.body, other.body)
	part = e.do(http.MethodGet, path, "", "Range", "Bytes=10-19")
	require.Equal(t, http.StatusPartialContent, part.status)
	assert.Equal(t, whole.body[10:20], part.body)

	r := e.do(http.MethodGet, path, "", "Range", "bytes=99999999-")
	requireError(t, r, http.StatusRequestedRangeNotSatisfiable, ctxd.CodeRangeNotSatisfiable)
	assert.Equal(t, fmt.Sprintf("bytes */%d", len(whole.body)), r.header.Get("Content-Range"))
	assert.Empty(t, r.header.Get("Content-Disposition"), "an error is not an attachment")
	r = e.do(http.MethodGet, path, "", "If-Match", `"x"`)
	requireError(t, r, http.StatusPreconditionFailed, ctxd.CodePreconditionFailed)
	// The ETag is the file's sha256: If-Match with it holds (only
	// If-Match: * could, without an ETag), If-None-Match gives 304, and
	// a resumed download (If-Range) gets its part.
	etag := `"` + meta.SHA256 + `"`
	assert.Equal(t, etag, whole.header.Get("ETag"))
	assert.Equal(t, http.StatusOK, e.do(http.MethodGet, path, "", "If-Match", etag).status)
	assert.Equal(t, http.StatusNotModified, e.do(http.MethodGet, path, "", "If-None-Match", etag).status)
	part = e.do(http.MethodGet, path, "", "Range", "bytes=10-19", "If-Range", etag)
	require.Equal(t, http.StatusPartialContent, part.status)
	assert.Equal(t, whole.body[10:20], part.body)

	d := newDumpEnv(t, httpapi.Config{})
	d.do(http.MethodPost, "/ctx/dump", `{"filename":"nightly","format":"csv"}`)
	d.api.Skip("/ctx")
	ce := requireCtxError(t, d.do(http.MethodGet, "/ctx/dump/nightly.csv", "", "If-Match", `"x"`), http.StatusPreconditionFailed, ctxd.CodePreconditionFailed)
	assert.Contains(t, ce.Error.Message, "If-Match")
	assert.Equal(t, http.StatusPartialContent, d.do(http.MethodGet, "/v1/dumps/nightly.csv", "", "Range", "bytes=0-3").status)
}

// Every GET route answers HEAD with the GET's status and headers and no
// body (a load balancer's probe, a download's size); it was 405 on all
// but a key's route.
func TestGetRoutesAnswerHead(t *testing.T) {
	e, m := newSnapshotEnv(t)
	e.put("k", `1`)
	meta, err := m.Create(bg, "api")
	require.NoError(t, err)
	e.api.Skip("/ctx")
	// timed are answers that carry the time they were made: their length
	// may differ by a digit between two requests.
	timed := []string{"/v1/status", "/v1/ns/default/export", "/ctx/all", "/ctx/k"}
	for _, path := range []string{"/healthz", "/readyz", "/v1/status", "/v1/ns", "/v1/ns/default/keys", "/v1/openapi.json",
		"/v1/snapshots", "/v1/snapshots/" + meta.ID, "/v1/ns/default/export", "/ctx/all", "/ctx/k"} {
		get := e.do(http.MethodGet, path, "")
		head := e.do(http.MethodHead, path, "")
		require.Equal(t, get.status, head.status, path)
		assert.Empty(t, head.body, path)
		assert.Equal(t, get.header.Get("Content-Type"), head.header.Get("Content-Type"), path)
		if n := get.header.Get("Content-Length"); n != "" && !slices.Contains(timed, path) {
			assert.Equal(t, n, head.header.Get("Content-Length"), path)
		}
	}
}
