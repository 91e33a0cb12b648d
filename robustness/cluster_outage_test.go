package robustness_test

import (
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/framework0/ctxd/internal/testkit/etcdkit"
	"github.com/framework0/ctxd/store/etcd"
)

// TestClusterReadyAfterAnEtcdOutage: an instance whose etcd was down for
// a while is ready again within a few seconds of etcd's return. gRPC's
// reconnect backoff grows to 120 s by default: after a 2-minute outage
// an instance took about 80 s more to be ready (found by a TTL
// walkthrough). The store bounds it (etcd.reconnectMaxDelay). Here etcd
// is down 30 s, after which the default backoff's next attempt is
// 10-16 s away; the bound is 8 s.
func TestClusterReadyAfterAnEtcdOutage(t *testing.T) {
	if !longCluster {
		t.Skip("a 30 s outage: runs in make cluster-test (CTXD_LONG_CLUSTER=1)")
	}
	srv, err := etcdkit.Start()
	require.NoError(t, err)
	t.Cleanup(srv.Close)
	s, err := etcd.Open(etcd.Options{Endpoints: []string{srv.Endpoint}, Prefix: etcdkit.Prefix(etcdkit.Name(t))})
	require.NoError(t, err)
	t.Cleanup(func() { _ = s.Close() })
	require.NoError(t, s.Ready())

	srv.Stop()
	outage := time.Now()
	for time.Since(outage) < 30*time.Second {
		assert.Error(t, s.Ready(), "etcd is down")
		time.Sleep(time.Second)
	}
	require.NoError(t, srv.Start())
	back := time.Now()
	for s.Ready() != nil {
		if time.Since(back) > 8*time.Second {
			t.Fatalf("not ready %s after etcd came back from a 30 s outage", time.Since(back).Round(time.Millisecond))
		}
		time.Sleep(100 * time.Millisecond)
	}
	t.Logf("ready %s after etcd came back", time.Since(back).Round(time.Millisecond))
	_, err = s.Put(t.Context(), "default", "after", []byte(`1`), nil, "test")
	require.NoError(t, err, "writes go on")
}
