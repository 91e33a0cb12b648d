package server_test

import (
	"encoding/json"
	"net/http"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/framework0/ctxd"
	"github.com/framework0/ctxd/configs"
	"github.com/framework0/ctxd/internal/testkit"
)

// readCacheStatus is read_cache of the server's /v1/status.
func readCacheStatus(t *testing.T, hc *http.Client, url string) ctxd.ReadCacheStatus {
	t.Helper()
	resp, body := testkit.Send(t, hc, testkit.NewRequest(t, http.MethodGet, url+"/v1/status", ""))
	require.Equal(t, http.StatusOK, resp.StatusCode, string(body))
	var st ctxd.ServerStatus
	require.NoError(t, json.Unmarshal(body, &st))
	require.NotNil(t, st.ReadCache, "read_cache in %s", body)
	return *st.ReadCache
}

// On bolt, the Get cache is read_cache in /v1/status and ctxd_read_cache_*
// in /metrics: ready, the keys it holds, the GETs it served and those that
// read the database; "off" with store.read_cache_bytes 0, and GETs answer
// the same.
func TestBoltReadCacheInStatusAndMetrics(t *testing.T) {
	t.Parallel()
	for _, size := range []int64{configs.Defaults().Store.ReadCacheBytes, 0} {
		srv := testkit.StartServer(t, testkit.WithConfig(func(c *configs.Config) { c.Store.ReadCacheBytes = size }))
		hc := &http.Client{}
		resp, body := testkit.Send(t, hc, testkit.NewRequest(t, http.MethodPut, srv.URL+"/v1/ns/default/keys/a", `{"n":1}`))
		require.Equal(t, http.StatusOK, resp.StatusCode, string(body))
		get := func() {
			resp, body := testkit.Send(t, hc, testkit.NewRequest(t, http.MethodGet, srv.URL+"/v1/ns/default/keys/a", ""))
			require.Equal(t, http.StatusOK, resp.StatusCode, string(body))
			var rec ctxd.Record
			require.NoError(t, json.Unmarshal(body, &rec))
			require.JSONEq(t, `{"n":1}`, string(rec.Value))
		}
		if size == 0 {
			get()
			require.Equal(t, ctxd.ReadCacheStatus{State: ctxd.ReadCacheOff}, readCacheStatus(t, hc, srv.URL))
			require.Equal(t, 1.0, testkit.Scrape(t, srv.URL)[`ctxd_read_cache_state{state="off"}`])
			continue
		}
		// The committer applies the put within wal.commit_interval; until
		// then the overlay answers.
		testkit.Eventually(t, func() bool {
			get()
			return readCacheStatus(t, hc, srv.URL).Hits > 0
		}, "a GET served from the cache")
		st := readCacheStatus(t, hc, srv.URL)
		require.Equal(t, ctxd.ReadCacheReady, st.State)
		require.Equal(t, int64(1), st.Keys)
		require.Positive(t, st.Bytes)
		require.Positive(t, st.Fallbacks, "the first GET after the commit read the database")
		require.Equal(t, size, st.MaxBytes)
		m := testkit.Scrape(t, srv.URL)
		require.Equal(t, 1.0, m[`ctxd_read_cache_state{state="ready"}`])
		require.Equal(t, 1.0, m["ctxd_read_cache_keys"])
		require.Positive(t, m["ctxd_read_cache_hits_total"])
		require.Positive(t, m["ctxd_read_cache_fallbacks_total"])
	}
}
