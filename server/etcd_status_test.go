package server_test

import (
	"encoding/json"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/framework0/ctxd"
	"github.com/framework0/ctxd/configs"
	"github.com/framework0/ctxd/internal/testkit"
	"github.com/framework0/ctxd/internal/testkit/etcdkit"
)

// The first of etcd.endpoints dead (nothing listens there) while etcd
// answers at the others: /readyz, /v1/status and a /metrics scrape
// answer 200 at once, the status with the database size a live member
// reported. The request timeout is long (30 s), and the client's 5 s is
// only a hang guard: asking the members in turn gave the dead one half
// of it (15 s) on every status and scrape, and /readyz waited for the
// status. (An embedded cluster of 3 members leaves its peers'
// connections behind, which the package's leak check refuses; a dead
// endpoint is what the instance sees of a dead member.)
func TestEtcdStatusWithTheFirstEndpointDead(t *testing.T) {
	srv := testkit.StartServer(t, testkit.WithConfig(func(c *configs.Config) {
		c.Store.Backend = configs.BackendEtcd
		c.Etcd.Endpoints = []string{"http://" + testkit.FreeAddr(t), etcdkit.Shared(t).Endpoint}
		c.Etcd.Prefix = etcdkit.Prefix(etcdkit.Name(t))
		c.Etcd.RequestTimeout = 30 * time.Second
	}))
	hc := &http.Client{}
	t.Cleanup(hc.CloseIdleConnections)
	resp, body := testkit.Send(t, hc, testkit.NewRequest(t, http.MethodPut, srv.URL+"/v1/ns/default/keys/app", `1`))
	require.Equal(t, http.StatusOK, resp.StatusCode, string(body))

	guarded := &http.Client{Timeout: 5 * time.Second}
	t.Cleanup(guarded.CloseIdleConnections)
	for range 3 {
		resp, body := testkit.Send(t, guarded, testkit.NewRequest(t, http.MethodGet, srv.URL+"/readyz", ""))
		assert.Equal(t, http.StatusOK, resp.StatusCode, "/readyz: %s", body)
		resp, body = testkit.Send(t, guarded, testkit.NewRequest(t, http.MethodGet, srv.URL+"/v1/status", ""))
		require.Equal(t, http.StatusOK, resp.StatusCode, "/v1/status: %s", body)
		var st ctxd.ServerStatus
		require.NoError(t, json.Unmarshal(body, &st))
		assert.Positive(t, st.DBSizeBytes, "a live member's size")
		assert.Equal(t, uint64(1), st.Keys)
		resp, body = testkit.Send(t, guarded, testkit.NewRequest(t, http.MethodGet, srv.URL+"/metrics", ""))
		require.Equal(t, http.StatusOK, resp.StatusCode)
		assert.Contains(t, strings.Split(string(body), "\n"), "ctxd_store_up 1")
	}
}
