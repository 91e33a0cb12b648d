package perf

import (
	"bufio"
	"context"
	"net/http"
	"strconv"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/framework0/ctxd/internal/testkit"
	"github.com/framework0/ctxd/internal/testkit/etcdkit"
)

// Fan-out over several instances of one deployment (three ctxd servers
// on one etcd prefix, Config.MoreTargets): the subscribers are spread
// over the three, the writes go to the first, and every subscriber gets
// every change once. (Socket.IO subscribers stay on the target.)
func TestFanoutOverInstances(t *testing.T) {
	urls := startInstances(t, 3)
	cfg := tinyConfig()
	cfg.Scenarios = []string{"fanout"}
	cfg.FanoutSubscribers, cfg.FanoutSocketIOSubscribers = []int{10}, []int{2}
	cfg.MoreTargets = urls[1:]
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
	// The memory is the target's: per its share of the subscribers.
	require.NotNil(t, f.Memory)
	require.Contains(t, f.Memory.Unmeasured, "4 subscribers, too few")

	// Fan-out targets belong to a target given by URL.
	_, err = Run(context.Background(), cfg, Target{Fresh: freshServer(t)})
	require.ErrorContains(t, err, "more targets are instances of the target's deployment")

	// One that does not answer is found before anything runs.
	cfg.MoreTargets = []string{urls[1], "http://127.0.0.1:1"}
	r, err = Run(context.Background(), cfg, Target{URL: urls[0]})
	require.ErrorContains(t, err, "more target http://127.0.0.1:1")
	require.Nil(t, r)
}

// Reads over several instances (read-instances): GETs on the target
// alone, then the same clients spread over the three, in alternating
// rounds; every instance serves its share, and the report compares them.
func TestReadsOverInstances(t *testing.T) {
	urls := startInstances(t, 3)
	cfg := tinyConfig()
	cfg.Scenarios = []string{scenarioReadInstances}
	cfg.CompareClients, cfg.Rounds = 6, 2
	cfg.MoreTargets = urls[1:]
	before := []float64{keyGets(t, urls[0]), keyGets(t, urls[1]), keyGets(t, urls[2])}
	r, err := Run(context.Background(), cfg, Target{URL: urls[0]})
	require.NoError(t, err)
	require.Zero(t, r.Errors, "failures %v, runs %v", r.Failures, r.errorSamples())
	var names []string
	for _, x := range r.Runs {
		names = append(names, x.Name)
		require.Positive(t, x.Ops, x.Name)
		require.Equal(t, 6, x.Clients)
	}
	require.Equal(t, []string{
		"read-instances/get/instances=1/c=6/round=1", "read-instances/get/instances=3/c=6/round=1",
		"read-instances/get/instances=1/c=6/round=2", "read-instances/get/instances=3/c=6/round=2",
	}, names)
	require.Equal(t, []int{1, 3, 1, 3}, []int{r.Runs[0].Instances, r.Runs[1].Instances, r.Runs[2].Instances, r.Runs[3].Instances})
	for i, u := range urls[1:] {
		// Only the spread runs read from the other instances: two of the
		// six clients each, in two rounds.
		require.Greater(t, keyGets(t, u), before[i+1], "instance %d served GETs", i+2)
	}
	var check *TargetCheck
	for i := range r.Targets {
		if strings.HasPrefix(r.Targets[i].Name, "reads grow with instances") {
			check = &r.Targets[i]
		}
	}
	require.NotNil(t, check, "the report compares 3 instances with 1: %v", r.Targets)
	require.Contains(t, check.Got, "x (")

	// Without more instances the scenario is refused, and the standard
	// set leaves it out.
	cfg.MoreTargets = nil
	_, err = Run(context.Background(), cfg, Target{URL: urls[0]})
	require.ErrorContains(t, err, "--more-targets")
	require.NotContains(t, defaultScenarios(Config{}), scenarioReadInstances)
	require.Contains(t, defaultScenarios(Config{MoreTargets: urls[1:]}), scenarioReadInstances)
}

// startInstances starts n ctxd servers on one prefix of an embedded etcd:
// n instances of one deployment.
func startInstances(t *testing.T, n int) []string {
	e, err := etcdkit.Start()
	require.NoError(t, err)
	t.Cleanup(e.Close) // after the servers' cleanups: they run first
	var urls []string
	for range n {
		srv := testkit.StartServer(t, testkit.WithEtcd(e.Endpoint, etcdkit.Prefix(etcdkit.Name(t))))
		urls = append(urls, srv.URL)
	}
	return urls
}

// keyGets is how many GETs of a key the server at base answered, from its
// /metrics.
func keyGets(t *testing.T, base string) float64 {
	t.Helper()
	resp, err := http.Get(base + "/metrics")
	require.NoError(t, err)
	defer resp.Body.Close()
	var n float64
	sc := bufio.NewScanner(resp.Body)
	for sc.Scan() {
		line := sc.Text()
		if strings.HasPrefix(line, "ctxd_http_requests_total{") && strings.Contains(line, `method="GET"`) &&
			strings.Contains(line, `route="/v1/ns/:ns/keys/*"`) {
			v, err := strconv.ParseFloat(line[strings.LastIndexByte(line, ' ')+1:], 64)
			require.NoError(t, err)
			n += v
		}
	}
	require.NoError(t, sc.Err())
	return n
}
