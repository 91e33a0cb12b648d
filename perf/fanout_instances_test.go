package perf

import (
	"context"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/framework0/ctxd/internal/testkit"
	"github.com/framework0/ctxd/internal/testkit/etcdkit"
)

// Fan-out over several instances of one deployment (three ctxd servers
// on one etcd prefix, Config.FanoutTargets): the subscribers are spread
// over the three, the writes go to the first, and every subscriber gets
// every change once. (Socket.IO subscribers stay on the target.)
func TestFanoutOverInstances(t *testing.T) {
	e, err := etcdkit.Start()
	require.NoError(t, err)
	t.Cleanup(e.Close) // after the servers' cleanups: they run first
	var urls []string
	for range 3 {
		srv := testkit.StartServer(t, testkit.WithEtcd(e.Endpoint, etcdkit.Prefix(t.Name())))
		urls = append(urls, srv.URL)
	}
	cfg := tinyConfig()
	cfg.Scenarios = []string{"fanout"}
	cfg.FanoutSubscribers, cfg.FanoutSocketIOSubscribers = []int{10}, []int{2}
	cfg.FanoutTargets = urls[1:]
	r, err := Run(context.Background(), cfg, Target{URL: urls[0]})
	require.NoError(t, err)
	require.Zero(t, r.Errors, "failures %v, runs %v", r.Failures, r.errorSamples())
	require.Len(t, r.Fanout, 2) // /v1/watch, then Socket.IO (on the target alone)
	f := r.Fanout[0]
	require.Equal(t, 3, f.Instances)
	require.Positive(t, f.Writes)
	require.Equal(t, f.Writes*10, f.Expected)
	require.Equal(t, f.Expected, f.Deliveries)
	require.Zero(t, f.Missed)
	require.Zero(t, f.Duplicates)

	// Fan-out targets belong to a target given by URL.
	_, err = Run(context.Background(), cfg, Target{Fresh: freshServer(t)})
	require.ErrorContains(t, err, "fan-out targets")
}
