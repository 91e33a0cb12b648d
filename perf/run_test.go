package perf

import (
	"bytes"
	"context"
	"encoding/json"
	"math"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/framework0/ctxd/auth"
	"github.com/framework0/ctxd/configs"
	"github.com/framework0/ctxd/internal/testkit"
)

// freshServer starts a ctxd server on a new folder under t's temp folder:
// the whole server (testkit.StartServer), as `ctxd serve` runs it. Close
// stops it; the test's cleanup checks its store.
func freshServer(t *testing.T) func() (*Server, error) {
	return func() (*Server, error) { return suiteServer(testkit.StartServer(t)), nil }
}

// suiteServer is s as the suite's server: Close stops it.
func suiteServer(s *testkit.Server) *Server {
	return &Server{URL: s.URL, DataDir: s.DataDir(), Close: func() error {
		s.Stop()
		return nil
	}}
}

// tinyConfig runs every scenario in a few seconds, race detector included.
func tinyConfig() Config {
	c := DefaultConfig(true)
	c.Duration, c.Warmup = 100*time.Millisecond, 20*time.Millisecond
	c.Clients = []int{1, 3}
	c.ReadKeys, c.HotKeys = 150, 4
	c.MixedClients, c.CASClients = 3, 3
	c.FanoutSubscribers, c.FanoutRate, c.FanoutWriters = []int{5}, 100, 2
	c.FanoutSocketIOSubscribers = []int{4}
	c.DiskKeys, c.DiskVersions = 40, []int{1, 2}
	c.SnapshotKeys, c.SnapshotRepeats = []int{50, 120}, 2
	return c
}

// TestRunEveryScenario runs the whole suite, tiny, in-process, and checks
// what each scenario measured.
func TestRunEveryScenario(t *testing.T) {
	var steps []Step
	cfg := tinyConfig()
	cfg.OnStep = func(s Step) { steps = append(steps, s) }
	r, err := Run(context.Background(), cfg, Target{Fresh: freshServer(t)})
	require.NoError(t, err)
	require.Zero(t, r.Errors, "failures %v, runs %v", r.Failures, r.errorSamples())
	require.Equal(t, "in-process", r.Target.Mode)
	require.Equal(t, "test", r.Target.ServerVersion)
	require.True(t, strings.HasPrefix(r.Units.Latency, "milliseconds"), "report.json says its units: %+v", r.Units)
	require.Equal(t, "seconds", r.Units.Duration)
	require.Equal(t, defaultScenarios(Config{}), r.Settings.Scenarios)
	require.NotContains(t, r.Settings.Scenarios, scenarioPeers, "the comparison runs only when asked")
	require.NotEmpty(t, steps)
	require.Equal(t, len(steps), steps[0].Count)
	require.Equal(t, steps[len(steps)-1].Done+steps[len(steps)-1].Estimate, steps[0].Total)

	// 1 write-latency + 2x2 write-throughput + 1 read-latency + 3x2
	// read-throughput + 2 mixed + 2 cas-contention.
	require.Len(t, r.Runs, 16)
	for _, x := range r.Runs {
		require.Positive(t, x.Ops, x.Name)
		require.Positive(t, x.OpsPerSec, x.Name)
		require.Positive(t, x.Latency.P50, x.Name)
		require.GreaterOrEqual(t, x.Latency.Max, x.Latency.P99, x.Name)
		require.Len(t, x.Intervals, intervals, x.Name)
		require.Len(t, x.Distribution, len(distributionPercentiles), x.Name)
	}
	require.NotNil(t, findRun(r, "write-throughput/hot/c=3"))
	require.NotNil(t, findRun(r, "read-throughput/history/c=3"))
	mixed := findRun(r, "mixed/90-10/c=3")
	require.NotNil(t, mixed)
	require.Positive(t, mixed.Reads.Count)
	require.Positive(t, mixed.Writes.Count)
	for _, name := range []string{"cas-contention/keys=1/c=3", "cas-contention/keys=16/c=3"} {
		cas := findRun(r, name)
		require.NotNil(t, cas, name)
		require.Equal(t, "ok", cas.CAS.CounterCheck, name)
		require.Positive(t, cas.CAS.Successes, name)
		require.Equal(t, cas.CAS.TotalSuccesses, cas.CAS.CounterSum, name)
	}

	require.Len(t, r.Fanout, 2)
	f := r.Fanout[0]
	require.Equal(t, "watch", f.Protocol)
	require.EqualValues(t, 10, f.Writes) // 100/s for 100 ms
	require.EqualValues(t, 50, f.Deliveries)
	require.Zero(t, f.Missed)
	require.Zero(t, f.Duplicates)
	require.EqualValues(t, 50, f.SendToArrival.Count)
	require.Positive(t, f.SendToArrival.P50)
	// Batch frames: each carries one change or more.
	require.Positive(t, f.Frames)
	require.LessOrEqual(t, f.Frames, f.Deliveries)
	require.InDelta(t, float64(f.Deliveries)/float64(f.Frames), f.ChangesPerFrame, 0.001)
	f = r.Fanout[1] // the same over Socket.IO, 4 subscribers
	require.Equal(t, "socketio", f.Protocol)
	require.Equal(t, "fanout/socketio/subs=4/rate=100", f.Name)
	require.EqualValues(t, 10, f.Writes)
	require.EqualValues(t, 40, f.Deliveries)
	require.Zero(t, f.Missed)
	require.Zero(t, f.Duplicates)
	require.EqualValues(t, 40, f.SendToArrival.Count)
	require.Positive(t, f.SendToArrival.P50)
	require.EqualValues(t, 40, f.Frames, "one event per Socket.IO frame")
	require.InDelta(t, 1.0, f.ChangesPerFrame, 0.001)
	require.Empty(t, f.ErrorSamples)

	require.Len(t, r.DiskGrowth, 1)
	d := r.DiskGrowth[0]
	require.Len(t, d.Points, 5) // 4, 10, 20 and 40 keys; then 2 versions each
	last := d.Points[len(d.Points)-1]
	require.EqualValues(t, 80, last.Versions)
	require.Positive(t, last.FileBytes)
	require.EqualValues(t, 40, d.AfterDefrag.Versions)
	require.LessOrEqual(t, d.AfterDefrag.FileBytes, last.FileBytes)

	// Memory: the test's servers run in its process ("shared").
	require.NotNil(t, d.Memory)
	require.Equal(t, processShared, d.Memory.Process)
	require.Equal(t, "10000 keys", d.Memory.Per)
	require.Positive(t, d.Memory.Before.RSSBytes)
	require.Positive(t, d.Memory.After.HeapBytes)
	// 40 keys and 4 or 5 subscribers are too few to scale to 10,000 keys
	// and 1,000 subscribers: the memory is given, not a growth per unit.
	require.Zero(t, d.Memory.RSSPer)
	require.Zero(t, d.Memory.HeapPer)
	require.Equal(t, "40 keys, too few to scale to 10,000 (1,000 or more)", d.Memory.Unmeasured)
	for _, f := range r.Fanout {
		require.NotNil(t, f.Memory, f.Name)
		require.Equal(t, "1000 subscribers", f.Memory.Per, f.Name)
		require.Positive(t, f.Memory.After.RSSBytes, f.Name)
		require.Zero(t, f.Memory.RSSPer, f.Name)
		require.Zero(t, f.Memory.HeapPer, f.Name)
		require.Contains(t, f.Memory.Unmeasured, "subscribers, too few to scale to 1,000 (100 or more)", f.Name)
	}
	require.Equal(t, processShared, r.Memory.Process)
	require.Equal(t, d.Name, r.Memory.KeysRun)
	require.Equal(t, r.Fanout[0].Name, r.Memory.SubscribersRun, "the watch run")
	require.Equal(t, r.Fanout[0].Memory.HeapPer, r.Memory.HeapPer1kSubscribers)

	require.Len(t, r.Snapshot, 2)
	for _, s := range r.Snapshot {
		require.Positive(t, s.SnapshotSeconds, s.Name)
		require.Positive(t, s.RestoreSeconds, s.Name)
		require.Positive(t, s.SnapshotBytes, s.Name)
		require.Positive(t, s.DumpBytes, s.Name)
	}

	require.Len(t, r.Targets, 14)
	for _, tc := range r.Targets[9:] { // the comparisons' targets
		require.Equal(t, "n/a", tc.Met, "%s: no comparison ran", tc.Name)
	}
	require.Empty(t, r.Comparisons)
	require.NotEmpty(t, r.Metrics)

	// The reports: JSON round trip, HTML and the table.
	dir := t.TempDir()
	require.NoError(t, r.WriteJSON(filepath.Join(dir, "report.json")))
	back, err := ReadReport(filepath.Join(dir, "report.json"))
	require.NoError(t, err)
	require.Equal(t, r.Metrics, back.Metrics)
	require.NoError(t, r.WriteHTML(filepath.Join(dir, "report.html")))
	var table strings.Builder
	require.NoError(t, r.WriteTable(&table))
	require.Contains(t, table.String(), "cas-contention/keys=16/c=3")
	require.NotContains(t, table.String(), "ERRORS in this run")
}

// TestRunPeersNetHTTP runs the comparison with the bare net/http handler
// (in this process: no peer command to build), two rounds, and checks
// that every run has both servers' medians and the ratios, in the report
// and in its table, HTML and metrics.
func TestRunPeersNetHTTP(t *testing.T) {
	cfg := tinyConfig()
	cfg.Compare = []string{PeerNetHTTP}
	cfg.Rounds, cfg.CompareClients = 2, 3
	r, err := Run(context.Background(), cfg, Target{Fresh: freshServer(t)})
	require.NoError(t, err)
	require.Zero(t, r.Errors, "failures %v, runs %v", r.Failures, r.errorSamples())
	require.Equal(t, []string{scenarioPeers}, r.Settings.Scenarios, "--compare alone runs only the comparison")
	require.Empty(t, r.Runs)
	require.Len(t, r.Peers, 2)
	require.Equal(t, peerCtxd, r.Peers[0].Name)
	require.True(t, r.Peers[0].Durable)
	require.Equal(t, PeerNetHTTP, r.Peers[1].Name)
	require.False(t, r.Peers[1].Durable)

	var names []string
	for _, c := range r.Comparisons {
		names = append(names, c.Name)
		require.Len(t, c.Results, 2, c.Name)
		for _, x := range c.Results {
			require.Len(t, x.Rounds, 2, "%s %s", c.Name, x.Peer)
			require.Positive(t, x.OpsPerSec, "%s %s", c.Name, x.Peer)
			require.Positive(t, x.P50, "%s %s", c.Name, x.Peer)
			require.GreaterOrEqual(t, x.P99, x.P50, "%s %s", c.Name, x.Peer)
			require.NotEmpty(t, x.Distribution, "%s %s", c.Name, x.Peer)
		}
		require.Equal(t, peerCtxd, c.Results[0].Peer)
		require.Len(t, c.Ratios, 1, c.Name)
		q := c.Ratios[0]
		require.Equal(t, PeerNetHTTP, q.Peer)
		require.InDelta(t, c.Results[0].OpsPerSec/c.Results[1].OpsPerSec, q.OpsPerSec, 0.002, c.Name)
		require.InDelta(t, c.Results[0].P50/c.Results[1].P50, q.P50, 0.002, c.Name)
	}
	require.Equal(t, []string{"peers/put/c=1", "peers/put/c=3", "peers/get/c=3", "peers/mixed/90-10/c=3", "peers/mixed/50-50/c=3"}, names)
	require.Equal(t, 0.9, r.Comparisons[3].ReadFraction)

	// The targets are for 64 clients: with 3, only the 1-client one could
	// be measured, and it is against etcd, which did not run.
	for _, tc := range r.Targets[9:] { // the comparisons' targets
		require.Equal(t, "n/a", tc.Met, tc.Name)
	}
	metrics := map[string]bool{}
	for _, m := range r.Metrics {
		metrics[m.Name] = true
	}
	require.True(t, metrics["peers/get/c=3 nethttp ops/s"])
	require.True(t, metrics["peers/get/c=3 ctxd/nethttp ops/s"])

	var table strings.Builder
	require.NoError(t, r.WriteTable(&table))
	require.Contains(t, table.String(), "PEERS")
	require.Contains(t, table.String(), "peers/mixed/50-50/c=3")
	path := filepath.Join(t.TempDir(), "report.html")
	require.NoError(t, r.WriteHTML(path))
	page, err := os.ReadFile(path)
	require.NoError(t, err)
	require.Contains(t, string(page), "Peers: ops/s")
}

// TestRunPeersWithOneThatDoesNotStart: a peer that does not start (an
// etcd peer command that ends at once) does not take the others' numbers
// with it: ctxd and nethttp are compared, and the run says, in the
// report, its table and its HTML, that etcd did not start and why; the
// start counts as a failed step, so the run has an error (ctxd perf
// exits 1). Its fan-out run on etcd says why there is none.
func TestRunPeersWithOneThatDoesNotStart(t *testing.T) {
	cfg := tinyConfig()
	cfg.Compare = []string{PeerEtcd, PeerNetHTTP}
	cfg.Scenarios = []string{scenarioPeers, scenarioFanout}
	cfg.FanoutSocketIOSubscribers = []int{0}
	cfg.EtcdPeer = "/bin/false"
	cfg.CompareClients = 3
	r, err := Run(context.Background(), cfg, Target{Fresh: freshServer(t)})
	require.NoError(t, err)

	require.Len(t, r.Failures, 1, "%v", r.Failures)
	require.Equal(t, "peers: start etcd", r.Failures[0].Step)
	require.Contains(t, r.Failures[0].Error, "/bin/false")
	require.Len(t, r.Peers, 3)
	require.Equal(t, []string{peerCtxd, PeerEtcd, PeerNetHTTP}, []string{r.Peers[0].Name, r.Peers[1].Name, r.Peers[2].Name})
	require.Contains(t, r.Peers[1].Error, "/bin/false", "the failed peer is in the report, with why")
	require.Empty(t, r.Peers[2].Error)
	require.Len(t, r.Comparisons, 5, "the comparison ran with the peers that started")
	for _, c := range r.Comparisons {
		require.Len(t, c.Results, 2, c.Name)
		require.Equal(t, PeerNetHTTP, c.Results[1].Peer)
		require.Positive(t, c.Results[1].OpsPerSec, c.Name)
		require.Len(t, c.Ratios, 1, c.Name)
	}
	require.Len(t, r.Fanout, 2)
	require.Equal(t, PeerEtcd, r.Fanout[1].Peer)
	require.EqualValues(t, 1, r.Fanout[1].Errors)
	require.Contains(t, r.Fanout[1].ErrorSamples[0], "did not start")
	require.EqualValues(t, 2, r.Errors, "the start and the fan-out run on etcd")

	var table strings.Builder
	require.NoError(t, r.WriteTable(&table))
	require.Contains(t, table.String(), "etcd: DID NOT START")
	require.Contains(t, table.String(), "step peers: start etcd failed")
	require.Contains(t, table.String(), "peers/get/c=3")
	path := filepath.Join(t.TempDir(), "report.html")
	require.NoError(t, r.WriteHTML(path))
	page, err := os.ReadFile(path)
	require.NoError(t, err)
	require.Contains(t, string(page), "did not start")
}

// TestRunPeersWithAServerThatAnswersNothing: a server of the comparison
// that answered nothing (ctxd, stopped once the peers had started: its
// port closed, every request failed) has no 0 ops/s or 0 µs anywhere:
// the peers table and report.html say "no op completed" and its ratios
// "-", the metrics leave its numbers out, and perf compare says "not
// measured" for each of them against a run that measured them, either
// way round, with no verdict --fail-on-worse (CountWorse) fails or
// passes on. Its ops/s was a metric of 0: WORSE against a run that
// measured it, and better the other way round. Every request sent to
// it counts as an error (its round counted one, for the first client's
// refused connection).
func TestRunPeersWithAServerThatAnswersNothing(t *testing.T) {
	cfg := tinyConfig()
	cfg.Compare = []string{PeerNetHTTP}
	cfg.CompareClients = 3
	measured, err := Run(context.Background(), cfg, Target{Fresh: freshServer(t)})
	require.NoError(t, err)
	require.Zero(t, measured.Errors, "failures %v, runs %v", measured.Failures, measured.errorSamples())

	srv := testkit.StartServer(t)
	cfg.OnStep = func(s Step) {
		if strings.HasPrefix(s.Name, scenarioPeers+"/") {
			srv.Stop() // the read keys written, the peers started
		}
	}
	r, err := Run(context.Background(), cfg, Target{Fresh: func() (*Server, error) { return suiteServer(srv), nil }})
	require.NoError(t, err)
	require.Len(t, r.Comparisons, 5)
	var gone []string // the metrics of ctxd's numbers in the comparison
	for _, c := range r.Comparisons {
		require.Equal(t, peerCtxd, c.Results[0].Peer)
		require.Zero(t, c.Results[0].OpsPerSec, "%s: ctxd answered nothing", c.Name)
		for i, rd := range c.Results[0].Rounds {
			// Every request failed and is counted: each client's, again
			// and again; the round counted one error, its first connection's.
			require.GreaterOrEqual(t, rd.Errors, int64(2*c.Clients), "%s round %d: every failed request", c.Name, i)
		}
		require.Contains(t, c.Results[0].ErrorSamples[0], "connection refused", c.Name)
		require.Positive(t, c.Results[1].OpsPerSec, "%s: nethttp answered", c.Name)
		for _, what := range []string{"ctxd ops/s", "ctxd p50", "ctxd p99", "ctxd/nethttp ops/s", "ctxd/nethttp p50", "ctxd/nethttp p99"} {
			gone = append(gone, c.Name+" "+what)
		}
	}
	for _, m := range r.Metrics {
		require.NotContains(t, gone, m.Name, "not measured: no metric")
		if m.Unit != "" { // a count (errors, missed) may be 0; a rate, a time, a ratio may not
			require.Positive(t, m.Value, "%s: a 0 that reads as a measurement", m.Name)
		}
	}

	table := tableOf(t, r)
	require.NotRegexp(t, `(?m)^ *peers/.*\b0 µs`, table)
	require.Regexp(t, `(?m)^ +peers/put/c=1 +ctxd +no op completed +[1-9][0-9,]* +$`, table, "ctxd's row")
	require.Regexp(t, `(?m)^ +nethttp +[0-9,.]+ +[0-9,.]+ +[0-9.]+ [mµ]s +[0-9.]+ [mµ]s +0 +- +- +- *$`, table, "ratios to ctxd's nothing: -")
	page := htmlOf(t, r)
	require.Contains(t, page, "<tr><td>peers/get/c=3</td><td>ctxd</td><td>no op completed</td><td></td><td></td><td></td>")
	require.Contains(t, page, "ctxd: no op completed", "ctxd's latency curve says why it has none")
	require.NotRegexp(t, `<td>0 [mµ]s</td>|<td>0\.00x</td>`, page)

	byName := func(ds []Delta) map[string]Delta {
		out := map[string]Delta{}
		for _, d := range ds {
			out[d.Name] = d
		}
		return out
	}
	for _, way := range []struct {
		name     string
		old, new *Report
	}{{"measured, then nothing", measured, r}, {"nothing, then measured", r, measured}, {"nothing, twice", r, r}} {
		ds := Compare(way.old, way.new, DefaultMinChange)
		deltas := byName(ds)
		for _, name := range gone {
			d, ok := deltas[name]
			require.True(t, ok, "%s: %s is in the comparison", way.name, name)
			require.Equal(t, VerdictNotMeasured, d.Verdict, "%s: %s", way.name, name)
			require.True(t, math.IsNaN(d.Change), "%s: %s has no change", way.name, name)
			require.True(t, d.NewNotMeasured || d.OldNotMeasured, "%s: %s", way.name, name)
		}
		for _, d := range ds {
			if d.Verdict == VerdictWorse || d.Verdict == VerdictBetter {
				require.NotContains(t, gone, d.Name, "%s: a verdict on a number not measured", way.name)
			}
		}
		var out bytes.Buffer
		require.NoError(t, WriteComparison(&out, way.old, way.new, ds))
		require.Regexp(t, `(?m)^peers/put/c=1 ctxd ops/s +([0-9,]+ ops/s( ±[0-9,.]+ ops/s)?|not measured) +([0-9,]+ ops/s( ±[0-9,.]+ ops/s)?|not measured) +not measured( +[0-9]+ → [0-9]+)?$`, out.String(), way.name)
		require.NotRegexp(t, `(?m)^peers/\S+ ctxd[ /].*%`, out.String(), "%s: no change of a number not measured", way.name)
		require.Regexp(t, `, 30 not measured\n`, out.String(), way.name)
	}
	// With nothing measured twice, nothing is worse: --fail-on-worse
	// passes on what was measured, and the rest says not measured.
	require.Zero(t, CountWorse(Compare(r, r, DefaultMinChange)))
	require.Equal(t, VerdictWorse, byName(Compare(measured, r, DefaultMinChange))["errors"].Verdict, "the failed requests are the errors metric's")
}

// TestDiskGrowthCountsTheFolderOnDisk: disk-growth says what the data
// folder takes on disk, the write-ahead log's preallocated segments
// included; the database file's size alone hid them (and, sparse, was
// more than the file took).
func TestDiskGrowthCountsTheFolderOnDisk(t *testing.T) {
	cfg := tinyConfig()
	cfg.Scenarios = []string{"disk-growth"}
	r, err := Run(context.Background(), cfg, Target{Fresh: freshServer(t)})
	require.NoError(t, err)
	require.Zero(t, r.Errors, "failures %v, runs %v", r.Failures, r.errorSamples())
	require.Len(t, r.DiskGrowth, 1)
	d := r.DiskGrowth[0]
	for _, p := range append(append([]DiskPoint{}, d.Points...), d.AfterCompaction, d.AfterDefrag) {
		// A segment is preallocated before the first record goes in.
		require.GreaterOrEqual(t, p.WALBytes, int64(testkit.SmallLogSegmentSize), "%s %d", p.Stage, p.VersionsPerKey)
		require.Greater(t, p.DiskBytes, p.WALBytes, "%s %d: the database file too", p.Stage, p.VersionsPerKey)
	}
	var table strings.Builder
	require.NoError(t, r.WriteTable(&table))
	require.Contains(t, table.String(), "OF WHICH WAL")
	require.Contains(t, table.String(), byteSize(d.AfterDefrag.WALBytes))
}

// TestRunCompareWithNamedScenarios: named scenarios run as named, with
// --compare too: fanout alone runs no comparison, and nethttp (which has
// no change feed) adds no fan-out run of its own.
func TestRunCompareWithNamedScenarios(t *testing.T) {
	cfg := tinyConfig()
	cfg.Compare = []string{PeerNetHTTP}
	cfg.Scenarios = []string{scenarioFanout}
	cfg.FanoutSocketIOSubscribers = []int{0}
	r, err := Run(context.Background(), cfg, Target{Fresh: freshServer(t)})
	require.NoError(t, err)
	require.Zero(t, r.Errors, "failures %v, runs %v", r.Failures, r.errorSamples())
	require.Equal(t, []string{scenarioFanout}, r.Settings.Scenarios)
	require.Empty(t, r.Comparisons)
	require.Len(t, r.Fanout, 1)
	require.Empty(t, r.Fanout[0].Peer)
	require.Equal(t, r.Fanout[0].Expected, r.Fanout[0].Deliveries)
}

// TestPeerTargets checks issue 14's ratio targets on made-up medians.
func TestPeerTargets(t *testing.T) {
	res := func(peer string, ops, p50, p99 float64) PeerResult {
		return PeerResult{Peer: peer, OpsPerSec: ops, P50: p50, P99: p99}
	}
	r := &Report{Comparisons: []Comparison{
		{Name: "peers/put/c=1", Results: []PeerResult{res("ctxd", 2000, 0.25, 1), res("etcd", 1500, 0.5, 2), res("nethttp", 15000, 0.06, 0.2)}},
		{Name: "peers/put/c=64", Results: []PeerResult{res("ctxd", 40000, 1, 4.5), res("etcd", 12000, 5, 16), res("nethttp", 70000, 0.8, 3)}},
		{Name: "peers/get/c=64", Results: []PeerResult{res("ctxd", 50000, 1, 3), res("etcd", 8000, 7, 20), res("nethttp", 70000, 0.8, 3)}},
	}}
	got := map[string]TargetCheck{}
	for _, tc := range peerTargets(r) {
		got[tc.Name] = tc
	}
	require.Len(t, got, 5)
	require.Equal(t, "yes", got["vs etcd: durable put, 1 client: p50"].Met)
	require.Equal(t, "0.50x (250 µs vs 500 µs)", got["vs etcd: durable put, 1 client: p50"].Got)
	require.Equal(t, "no", got["vs etcd: durable puts, 64 clients: throughput"].Met, "3.33x < 3.5x")
	require.Equal(t, "yes", got["vs nethttp: durable puts, 64 clients: throughput"].Met)
	require.Equal(t, "yes", got["vs peers: durable puts, 64 clients: ctxd's p99"].Met)
	require.Equal(t, "no", got["vs nethttp: gets, 64 clients: throughput"].Met, "0.71x < 0.85x")
	require.Equal(t, ">= 0.85x nethttp", got["vs nethttp: gets, 64 clients: throughput"].Want)
}

// The peers table and the targets give ctxd's ratio to a peer alike:
// 446 µs against 1.42 ms is 0.31x in both. The table printed the ratio
// rounded to three decimals first (0.315), and said 0.32x.
func TestPeerRatiosAgreeWithTheTargets(t *testing.T) {
	r := &Report{Comparisons: []Comparison{{Name: "peers/put/c=1", Results: []PeerResult{
		{Peer: "ctxd", OpsPerSec: 1330, P50: 0.445695, P99: 4.382719},
		{Peer: "etcd", OpsPerSec: 505, P50: 1.416191, P99: 6.922239},
	}}}}
	c := &r.Comparisons[0]
	c.Ratios = []Ratio{ratioOf(c.Results[0], c.Results[1])}
	r.Targets = peerTargets(r)
	var table bytes.Buffer
	require.NoError(t, r.WriteTable(&table))
	require.Contains(t, table.String(), "0.31x (446 µs vs 1.42 ms)")
	require.Regexp(t, `etcd +505 .* 2\.63x +0\.31x +0\.63x`, table.String())
}

// TestRunRemoteSkipsDestructive: against a running server, disk-growth and
// snapshot run only with Destructive.
func TestRunRemoteSkipsDestructive(t *testing.T) {
	srv, err := freshServer(t)()
	require.NoError(t, err)
	defer srv.Close()
	cfg := tinyConfig()
	cfg.Scenarios = []string{"write-latency", "disk-growth", "snapshot"}
	var notes []string
	cfg.Notef = func(format string, args ...any) { notes = append(notes, format) }
	r, err := Run(context.Background(), cfg, Target{URL: srv.URL})
	require.NoError(t, err)
	require.Equal(t, "remote", r.Target.Mode)
	require.Len(t, r.Runs, 1)
	require.Empty(t, r.DiskGrowth)
	require.Len(t, r.Skipped, 2)
	require.Len(t, notes, 2)

	cfg.Scenarios = []string{"disk-growth"}
	cfg.Destructive = true
	r, err = Run(context.Background(), cfg, Target{URL: srv.URL})
	require.NoError(t, err)
	require.Zero(t, r.Errors)
	require.Len(t, r.DiskGrowth, 1)
}

func TestRunStopsOnCancel(t *testing.T) {
	cfg := tinyConfig()
	cfg.Duration = time.Minute
	cfg.Scenarios = []string{"write-latency", "read-latency"}
	ctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
	defer cancel()
	start := time.Now()
	r, err := Run(ctx, cfg, Target{Fresh: freshServer(t)})
	require.ErrorIs(t, err, context.DeadlineExceeded)
	require.NotNil(t, r, "the report so far")
	require.Less(t, time.Since(start), 10*time.Second)
}

func TestConfigValidate(t *testing.T) {
	require.NoError(t, DefaultConfig(false).Validate())
	require.NoError(t, DefaultConfig(true).Validate())
	c := DefaultConfig(false)
	c.Scenarios = []string{"write-latency", "nope"}
	c.Clients = []int{0}
	c.Duration = 0
	err := c.Validate()
	require.ErrorContains(t, err, `unknown scenario "nope"`)
	require.ErrorContains(t, err, "clients must be > 0")
	require.ErrorContains(t, err, "duration must be > 0")
	c.Clients = []int{2, 2}
	require.ErrorContains(t, c.Validate(), "clients: 2 given twice")
	c.ReadOps = []string{"get", "get"}
	require.ErrorContains(t, c.Validate(), "read ops: get given twice")
	c = DefaultConfig(false)
	c.Preload = 8 << 20
	require.ErrorContains(t, c.Validate(), "preload must be at least 20.0MiB")
	c.Preload = MinPreload
	require.NoError(t, c.Validate())
	c.Scenarios = []string{"write-latency", "nope"}
	_, err = Run(context.Background(), c, Target{URL: "http://127.0.0.1:1"})
	require.Error(t, err)

	c = DefaultConfig(false)
	c.Scenarios = []string{scenarioPeers}
	require.ErrorContains(t, c.Validate(), "needs peers to compare with")
	c.Compare = []string{"redis"}
	require.ErrorContains(t, c.Validate(), `unknown peer "redis"`)
	c.Compare = []string{PeerEtcd}
	require.ErrorContains(t, c.Validate(), "ctxd-etcd-peer")
	c.Compare, c.EtcdEndpoints = []string{PeerNetHTTP}, []string{"http://127.0.0.1:2379"}
	require.ErrorContains(t, c.Validate(), "etcd endpoints are for the etcd peer")
	c.EtcdEndpoints = nil
	c.Compare, c.Scenarios = []string{PeerNetHTTP}, []string{"write-latency"}
	require.ErrorContains(t, c.Validate(), "peers (--compare) are compared in the peers and fanout scenarios")
	c.Scenarios = []string{"write-latency", scenarioFanout}
	require.NoError(t, c.Validate())
	c.Scenarios = []string{scenarioPeers}
	c.Compare, c.Rounds = []string{PeerNetHTTP}, 0
	require.ErrorContains(t, c.Validate(), "rounds must be > 0")

	// Socket.IO fan-out runs: 0 alone means none; a 0 among counts is a
	// mistake.
	c = DefaultConfig(false)
	c.FanoutSocketIOSubscribers = []int{0}
	require.NoError(t, c.Validate())
	var steps []string
	for _, st := range (&suite{cfg: c}).fanoutSteps() {
		steps = append(steps, st.name)
	}
	require.Equal(t, []string{"fanout/subs=100/rate=1000", "fanout/subs=1000/rate=1000", "fanout/subs=5000/rate=1000"}, steps)
	c.FanoutSocketIOSubscribers = []int{100, 0}
	require.ErrorContains(t, c.Validate(), "fanout Socket.IO subscribers must be > 0, not 0")
}

func TestMakeValue(t *testing.T) {
	for _, n := range []int{2, 5, 8, 9, 256, 4096} {
		v := makeValue(n)
		require.Len(t, v, n)
		require.True(t, jsonValid(v), string(v))
	}
}

func TestWriteHTMLSelfContained(t *testing.T) {
	r := &Report{
		Format: ReportFormat, Command: "ctxd perf <b>",
		Runs: []Measurement{
			{Name: "write-throughput/distinct/c=1", Clients: 1, OpsPerSec: 2500, Latency: Latency{P50: 0.4, P99: 1}, Distribution: []Quantile{{0, 0.3}, {50, 0.4}, {99, 1}, {100, 3}}},
			{Name: "write-throughput/distinct/c=64", Clients: 64, OpsPerSec: 40000, Latency: Latency{P50: 1.4, P99: 4}, Distribution: []Quantile{{0, 0.5}, {50, 1.4}, {99, 4}, {100, 9}}},
		},
		Fanout:     []FanoutRun{{Name: "fanout/subs=100/rate=1000", Subscribers: 100, Distribution: []Quantile{{50, 0}, {99, 2}}, SendDistribution: []Quantile{{50, 1}, {99, 3}}}},
		DiskGrowth: []DiskGrowthRun{{Name: "disk-growth/keys=10", Points: []DiskPoint{{Versions: 10, FileBytes: 32768}, {Versions: 20, FileBytes: 65536}}}},
		Snapshot:   []SnapshotRun{{Name: "snapshot/keys=10", Keys: 10, SnapshotSeconds: 0.01}, {Name: "snapshot/keys=100", Keys: 100, SnapshotSeconds: 0.02}},
		Errors:     2,
		Failures:   []Failure{{Step: "fanout", Error: "boom <script>"}},
	}
	page := htmlOf(t, r)
	require.Contains(t, page, "<svg")
	require.Contains(t, page, "Throughput vs clients")
	require.Contains(t, page, "2 ERRORS in this run")
	require.NotContains(t, page, "<script")
	require.NotContains(t, page, "<b>", "text is escaped")
	for _, attr := range []string{`src="http`, `href="http`, `@import`, `url(`} {
		require.NotContains(t, page, attr, "report.html loads nothing")
	}
}

// report.html's memory section names the runs its growths come from:
// only those that ran (it said "per 10,000 keys ... of disk growth ()"
// after a run without disk growth).
func TestWriteHTMLMemoryNamesOnlyTheRunsMeasured(t *testing.T) {
	r := &Report{Format: ReportFormat, Memory: MemorySummary{Process: processOwn, SubscribersRun: "fanout/subs=100/rate=1000"}}
	page := htmlOf(t, r)
	require.Contains(t, page, "end of a fan-out run (fanout/subs=100/rate=1000);")
	require.NotContains(t, page, "disk growth")
	r.Memory = MemorySummary{Process: processOwn, KeysRun: "disk-growth/keys=10000"}
	page = htmlOf(t, r)
	require.Contains(t, page, "end of disk growth\n(disk-growth/keys=10000);")
	require.NotContains(t, page, "fan-out run")
}

func jsonValid(b []byte) bool { return json.Valid(b) }

// A run stopped mid-fan-out (Ctrl-C) says so, and leaves the unfinished
// fan-out run out of its report: it was kept with no deliveries counted
// (expected 0, missed 0), and its targets read as met.
func TestInterruptedFanoutIsLeftOut(t *testing.T) {
	cfg := tinyConfig()
	cfg.Scenarios = []string{scenarioFanout}
	cfg.Duration = 5 * time.Second
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	var once sync.Once
	cfg.OnStep = func(Step) { once.Do(func() { time.AfterFunc(time.Second, cancel) }) }
	r, err := Run(ctx, cfg, Target{Fresh: freshServer(t)})
	require.ErrorIs(t, err, context.Canceled)
	require.True(t, r.Interrupted)
	require.Empty(t, r.Fanout, "the run cut short is not kept")
	var table strings.Builder
	require.NoError(t, r.WriteTable(&table))
	require.Contains(t, table.String(), "INTERRUPTED")
	for _, c := range r.Targets {
		if strings.Contains(c.Name, "fan-out") {
			require.NotEqual(t, "yes", c.Met, "no target is met by a run cut short: %+v", c)
		}
	}
}

// A fixed rate the server cannot sustain: the window takes longer than
// asked, elapsed_seconds says how long, ops/s is what was sustained, and
// the table says the run fell behind (the report said 2 s and ops over
// it, and nothing else, for a run of 10.9 s).
func TestARateThatFallsBehindSaysSo(t *testing.T) {
	cfg := tinyConfig()
	cfg.Scenarios = []string{"write-latency"}
	cfg.Rate = 20_000 // more than one client's durable puts get answered
	cfg.Duration = 50 * time.Millisecond
	r, err := Run(context.Background(), cfg, Target{Fresh: freshServer(t)})
	require.NoError(t, err)
	x := findRun(r, "write-latency")
	require.NotNil(t, x)
	require.Greater(t, x.ElapsedSeconds, x.DurationSeconds)
	require.InDelta(t, float64(x.Ops)/x.ElapsedSeconds, x.OpsPerSec, 1+x.OpsPerSec/100)
	var table strings.Builder
	require.NoError(t, r.WriteTable(&table))
	require.Contains(t, table.String(), "write-latency fell behind its fixed rate: 20000/s offered")
}

// A repeat of a snapshot step whose dump fails (a real full disk under
// the dumps folder: the second dump's file does not fit beside the
// first's) leaves the size of the dump that was made, the one on the
// disk: the failed answer's 0 overwrote it, and report.html said a dump
// file of 0 B beside a dump time.
func TestASnapshotRepeatWhoseDumpFailsKeepsTheDumpMade(t *testing.T) {
	disk := testkit.SmallDisk(t, 256<<10)
	dumps := filepath.Join(disk, "dumps")
	cfg := tinyConfig()
	cfg.Scenarios = []string{"snapshot"}
	cfg.SnapshotKeys, cfg.SnapshotRepeats = []int{600}, 3 // a dump of about 160 KiB: one fits
	start := func() (*Server, error) {
		return suiteServer(testkit.StartServer(t, testkit.WithConfig(func(c *configs.Config) {
			c.Dumps.Dir = dumps
			c.Storage.ReserveBytes = 0 // the disk fills, not the reserve
		}))), nil
	}
	r, err := Run(context.Background(), cfg, Target{Fresh: start})
	require.NoError(t, err)
	require.Len(t, r.Snapshot, 1)
	sr := r.Snapshot[0]
	require.EqualValues(t, 2, sr.Errors, "the second and third dumps: %v", sr.ErrorSamples)
	for _, e := range sr.ErrorSamples {
		require.Contains(t, e, "/dumps?")
		require.Contains(t, e, "insufficient_storage")
	}
	made, err := filepath.Glob(filepath.Join(dumps, "*.json"))
	require.NoError(t, err)
	require.Len(t, made, 1, "the first dump")
	info, err := os.Stat(made[0])
	require.NoError(t, err)
	require.Equal(t, info.Size(), sr.DumpBytes, "the dump made")
	require.Positive(t, sr.DumpSeconds)
	require.Contains(t, htmlOf(t, r), "<td>"+byteSize(info.Size())+"</td><td>"+secs(sr.SnapshotSeconds)+"</td><td>"+secs(sr.DumpSeconds)+"</td>")
}

// A snapshot step stopped between its repeats (Ctrl-C; here the context
// is canceled as the first repeat deletes its snapshot, seen by a proxy
// in front of a real server) says how many repeats it did, and its times
// are theirs: repeats said the configured count, 3 for the 1 done.
func TestAStoppedSnapshotStepSaysTheRepeatsDone(t *testing.T) {
	cfg := tinyConfig()
	cfg.Scenarios = []string{"snapshot"}
	cfg.SnapshotKeys, cfg.SnapshotRepeats = []int{50}, 3
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	start := func() (*Server, error) {
		srv := testkit.StartServer(t)
		target, err := url.Parse(srv.URL)
		require.NoError(t, err)
		proxy := httputil.NewSingleHostReverseProxy(target)
		proxy.ModifyResponse = func(resp *http.Response) error {
			if resp.Request.Method == http.MethodDelete && strings.HasPrefix(resp.Request.URL.Path, "/v1/snapshots/") {
				cancel() // before the suite has the answer: no second repeat starts
			}
			return nil
		}
		front := httptest.NewServer(proxy)
		s := suiteServer(srv)
		s.URL = front.URL
		stop := s.Close
		s.Close = func() error { front.Close(); return stop() }
		return s, nil
	}
	r, err := Run(ctx, cfg, Target{Fresh: start})
	require.ErrorIs(t, err, context.Canceled)
	require.True(t, r.Interrupted)
	require.Len(t, r.Snapshot, 1)
	sr := r.Snapshot[0]
	require.Zero(t, sr.Errors, "%v", sr.ErrorSamples)
	require.Equal(t, 1, sr.Repeats, "the repeats done")
	for what, v := range map[string]float64{"snapshot": sr.SnapshotSeconds, "dump": sr.DumpSeconds, "export": sr.ExportSeconds, "restore": sr.RestoreSeconds} {
		require.Positive(t, v, "%s: the repeat done was timed", what)
	}
	require.Zero(t, sr.Spread, "one repeat: no spread")
	require.Contains(t, htmlOf(t, r), "<td>"+secs(sr.RestoreSeconds)+"</td><td>1</td>", "report.html's Repeats column")
}

// TestCommitsNotMeasuredSayWhy: against a server whose token may write
// but not read /metrics (the admin and metrics roles may), the runs that
// write have no writes/commit, and the table, report.html and
// report.json say why; a run that only reads says nothing. The columns
// were blank with no word why.
func TestCommitsNotMeasuredSayWhy(t *testing.T) {
	writer := auth.NewSecret()
	tokens := filepath.Join(t.TempDir(), "tokens.yaml")
	require.NoError(t, os.WriteFile(tokens, []byte("tokens:\n"+testkit.TokenEntry("writer", writer, "    roles: [read, write]\n")), 0o600))
	srv := testkit.StartServer(t, testkit.WithConfig(func(c *configs.Config) {
		c.Auth.Mode, c.Auth.TokensFile = configs.AuthOn, tokens
	}))
	cfg := tinyConfig()
	cfg.Scenarios = []string{"write-latency", "read-latency"}
	r, err := Run(context.Background(), cfg, Target{URL: srv.URL, Token: writer})
	require.NoError(t, err)
	require.Zero(t, r.Errors)
	require.Len(t, r.Runs, 2)
	write, read := r.Runs[0], r.Runs[1]
	require.Nil(t, write.Commits)
	require.Contains(t, write.CommitsUnmeasured, "the token may not read /metrics")
	require.Contains(t, write.CommitsUnmeasured, "status 403")
	require.Empty(t, read.CommitsUnmeasured, "a run that only reads has no commits to measure")

	var table bytes.Buffer
	require.NoError(t, r.WriteTable(&table))
	require.Contains(t, table.String(), "note: writes/commit and commit not measured (runs that write: 1): the server's metrics could not be read: the token may not read /metrics")
	require.Contains(t, htmlOf(t, r), "Note: writes/commit and commit not measured (runs that write: 1)")
	raw, err := json.Marshal(r)
	require.NoError(t, err)
	require.Contains(t, string(raw), `"commits_unmeasured":"the token may not read /metrics`)
}
