package server_test

import (
	"net/http"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/framework0/ctxd/configs"
	"github.com/framework0/ctxd/internal/testkit"
	"github.com/framework0/ctxd/internal/testkit/etcdkit"
)

// store.backend etcd: the server serves from a real etcd, /readyz says
// 503 once etcd is gone, and writes then fail fast with "unavailable"
// (nothing was sent) rather than wait for the request timeout.
func TestEtcdBackendReadinessAndFailFast(t *testing.T) {
	e, err := etcdkit.Start()
	require.NoError(t, err)
	stopped := false
	t.Cleanup(func() {
		if !stopped {
			e.Close()
		}
	})
	srv := testkit.StartServer(t, testkit.WithConfig(func(c *configs.Config) {
		c.Store.Backend = configs.BackendEtcd
		c.Etcd.Endpoints = []string{e.Endpoint}
		c.Etcd.Prefix = etcdkit.Prefix(t.Name())
		c.Etcd.RequestTimeout = 2 * time.Second
	}))
	hc := &http.Client{}
	resp, body := testkit.Send(t, hc, testkit.NewRequest(t, http.MethodPut, srv.URL+"/v1/ns/default/keys/app", `{"on":true}`))
	require.Equal(t, http.StatusOK, resp.StatusCode, string(body))
	resp, body = testkit.Send(t, hc, testkit.NewRequest(t, http.MethodGet, srv.URL+"/v1/ns/default/keys/app", ""))
	require.Equal(t, http.StatusOK, resp.StatusCode)
	assert.Contains(t, string(body), `"value":{"on":true}`)
	resp, _ = testkit.Send(t, hc, testkit.NewRequest(t, http.MethodGet, srv.URL+"/readyz", ""))
	assert.Equal(t, http.StatusOK, resp.StatusCode)

	e.Close()
	stopped = true
	testkit.Eventually(t, func() bool {
		resp, _ := testkit.Send(t, hc, testkit.NewRequest(t, http.MethodGet, srv.URL+"/readyz", ""))
		return resp.StatusCode == http.StatusServiceUnavailable
	}, "/readyz answers 503 once etcd is gone")
	resp, body = testkit.Send(t, hc, testkit.NewRequest(t, http.MethodPut, srv.URL+"/v1/ns/default/keys/app", `2`))
	assert.Equal(t, http.StatusServiceUnavailable, resp.StatusCode)
	assert.Contains(t, string(body), `"code":"unavailable"`, "a write etcd never received is unavailable, not outcome_unknown")
}
