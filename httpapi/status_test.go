package httpapi_test

import (
	"net/http"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/framework0/ctxd"
	"github.com/framework0/ctxd/httpapi"
)

func TestStatus(t *testing.T) {
	e := newEnv(t, envOptions{cfg: httpapi.Config{Version: "v9.8.7"}})
	e.put("a", "1")
	e.put("b", "2")
	r := e.do(http.MethodPut, keyPath("other", "c"), "3")
	require.Equal(t, http.StatusOK, r.status)

	r = e.do(http.MethodGet, "/v1/status", "")
	require.Equal(t, http.StatusOK, r.status, string(r.body))
	st := decode[ctxd.ServerStatus](t, r)
	assert.Equal(t, "v9.8.7", st.Version)
	assert.Equal(t, uint64(3), st.Revision)
	assert.Equal(t, uint64(0), st.CompactedRevision)
	assert.Equal(t, uint64(3), st.Keys)
	assert.Equal(t, 2, st.Namespaces)
	assert.Positive(t, st.DBSizeBytes)
	assert.Positive(t, st.SchemaVersion)
	assert.Equal(t, 0, st.Clients)
	assert.GreaterOrEqual(t, st.UptimeSeconds, int64(0))
	assert.WithinDuration(t, time.Now(), st.StartedAt, time.Minute)
}

func TestHealthAndReadiness(t *testing.T) {
	e := newEnv(t, envOptions{})

	r := e.do(http.MethodGet, "/healthz", "")
	require.Equal(t, http.StatusOK, r.status)
	assert.JSONEq(t, `{"status":"ok"}`, string(r.body))
	r = e.do(http.MethodGet, "/readyz", "")
	require.Equal(t, http.StatusOK, r.status)
	assert.JSONEq(t, `{"status":"ready"}`, string(r.body))

	e.st.CloseChecked() // the API still holds the closed store

	// Closed store: not ready, but alive.
	requireError(t, e.do(http.MethodGet, "/readyz", ""), http.StatusServiceUnavailable, "unavailable")
	r = e.do(http.MethodGet, "/healthz", "")
	require.Equal(t, http.StatusOK, r.status)
	requireError(t, e.do(http.MethodGet, "/v1/status", ""), http.StatusServiceUnavailable, "unavailable")
	requireError(t, e.do(http.MethodGet, keyPath("default", "a"), ""), http.StatusServiceUnavailable, "unavailable")
	requireError(t, e.do(http.MethodPut, keyPath("default", "a"), "1"), http.StatusServiceUnavailable, "unavailable")
	requireError(t, e.do(http.MethodGet, "/v1/ns/default/keys", ""), http.StatusServiceUnavailable, "unavailable")
	requireError(t, e.do(http.MethodGet, "/v1/ns", ""), http.StatusServiceUnavailable, "unavailable")
	requireError(t, e.do(http.MethodPost, "/v1/txn", `{"ops":[{"op":"put","key":"a","value":1}]}`), http.StatusServiceUnavailable, "unavailable")
}
