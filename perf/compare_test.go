package perf

import (
	"bytes"
	"math"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"
)

func TestVerdict(t *testing.T) {
	tput := func(v, spread float64) Metric {
		return Metric{Name: "x ops/s", Unit: "ops/s", Value: v, Spread: spread, Better: "higher"}
	}
	lat := func(v, spread float64) Metric {
		return Metric{Name: "x p99", Unit: "ms", Value: v, Spread: spread, Better: "lower"}
	}
	for _, tc := range []struct {
		name     string
		old, new Metric
		want     string
	}{
		// Spreads of 600 and 800: combined 1000, band ±2000 (above 10% of 10,000).
		{"inside the spread", tput(10000, 600), tput(11900, 800), VerdictNoise},
		{"just outside, up", tput(10000, 600), tput(12001, 800), VerdictBetter},
		{"just outside, down", tput(10000, 600), tput(7999, 800), VerdictWorse},
		// No spread: the 10% floor decides.
		{"below the floor", tput(10000, 0), tput(10900, 0), VerdictNoise},
		{"above the floor", tput(10000, 0), tput(8900, 0), VerdictWorse},
		// Lower is better for latencies.
		{"latency up", lat(2, 0.1), lat(3, 0.1), VerdictWorse},
		{"latency down", lat(2, 0.1), lat(1, 0.1), VerdictBetter},
		{"latency noisy", lat(2, 0.5), lat(3, 0.5), VerdictNoise},
		{"latency within the floor", lat(2, 0), lat(2.19, 0), VerdictNoise},
		{"zero to zero", lat(0, 0), lat(0, 0), VerdictNoise},
		{"zero to some", Metric{Value: 0, Better: "lower"}, Metric{Value: 1, Better: "lower"}, VerdictWorse},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, _ := Verdict(tc.old, tc.new, DefaultMinChange)
			require.Equal(t, tc.want, got)
		})
	}
	_, band := Verdict(tput(10000, 600), tput(11900, 800), DefaultMinChange)
	require.InDelta(t, 2000, band, 1e-9)
	_, band = Verdict(tput(10000, 0), tput(11900, 0), 0.25)
	require.InDelta(t, 2500, band, 1e-9, "a larger floor")
}

func TestCompare(t *testing.T) {
	old := &Report{Metrics: []Metric{
		{Name: "a ops/s", Unit: "ops/s", Value: 1000, Spread: 10, Better: "higher"},
		{Name: "b p99", Unit: "ms", Value: 2, Spread: 0.01, Better: "lower"},
		{Name: "gone", Unit: "ms", Value: 1, Better: "lower"},
	}}
	cur := &Report{Metrics: []Metric{
		{Name: "a ops/s", Unit: "ops/s", Value: 500, Spread: 10, Better: "higher"},
		{Name: "b p99", Unit: "ms", Value: 2.01, Spread: 0.01, Better: "lower"},
		{Name: "new", Unit: "ms", Value: 1, Better: "lower"},
	}}
	ds := Compare(old, cur, DefaultMinChange)
	require.Len(t, ds, 5)
	require.Equal(t, "errors", ds[0].Name, "the error count first, from the reports' errors")
	require.Equal(t, VerdictNoise, ds[0].Verdict)
	ds = ds[1:]
	require.Equal(t, "a ops/s", ds[0].Name)
	require.Equal(t, VerdictWorse, ds[0].Verdict)
	require.InDelta(t, -0.5, ds[0].Change, 1e-12)
	require.Equal(t, VerdictNoise, ds[1].Verdict)
	require.Equal(t, VerdictAdded, ds[2].Verdict)
	require.True(t, math.IsNaN(ds[2].Change))
	require.Equal(t, VerdictRemoved, ds[3].Verdict)
	require.Equal(t, 1, CountWorse(ds))

	var out bytes.Buffer
	require.NoError(t, WriteComparison(&out, old, cur, Compare(old, cur, DefaultMinChange)))
	require.Contains(t, out.String(), "a ops/s")
	require.Contains(t, out.String(), "-50.0%")
	require.Contains(t, out.String(), "WORSE")
	require.Contains(t, out.String(), "5 metrics: 1 worse, 0 better, 2 noise, 1 added, 1 removed")
	require.NotContains(t, out.String(), "RUN ERRORS", "no column of errors when there are none")

	// The same report against itself: all noise.
	same := Compare(old, old, DefaultMinChange)
	require.Zero(t, CountWorse(same))
	for _, d := range same {
		require.Equal(t, VerdictNoise, d.Verdict)
	}
}

func TestComparabilityNotes(t *testing.T) {
	a := &Report{Machine: Machine{Cores: 2, GoVersion: "go1.26.8"}}
	b := &Report{Machine: Machine{Cores: 8, GoVersion: "go1.26.8"}, Errors: 3}
	notes := comparability(a, b)
	require.Len(t, notes, 2)
	require.Contains(t, notes[0], "cores differs: 2 (old) vs 8 (new)")
	require.Contains(t, notes[1], "errors")

	// Every setting is compared but the scenarios (clients, key order, ...:
	// only duration, value size and quick were).
	a.Settings = Settings{Scenarios: []string{"read-latency"}, Clients: []int{1, 64}, KeyOrder: "sequential", ValueSize: 100}
	b = &Report{Machine: a.Machine, Settings: Settings{Scenarios: []string{"write-latency"}, Clients: []int{1, 16}, KeyOrder: "random", ValueSize: 100}}
	notes = comparability(a, b)
	require.Equal(t, []string{"clients differs: [1 64] (old) vs [1 16] (new)", "key_order differs: sequential (old) vs random (new)"}, notes)

	// The server's log level: at info an access log line per request.
	b = &Report{Machine: a.Machine, Settings: a.Settings, Target: TargetInfo{ServerLogLevel: "info"}}
	a.Target.ServerLogLevel = "warn"
	notes = comparability(a, b)
	require.Len(t, notes, 1)
	require.Contains(t, notes[0], "server log level")
}

// A run in which no request was answered (every one refused, say) measured
// no latency and no rate: its latency targets are "not measured", not met
// by a p50 of 0; it has no latency metric for compare to call "better"
// and no ops/s metric (a 0 that looked like a measurement); the table
// says "no op completed" where it said 0 ops/s and 0 µs.
func TestRunWithoutAnswersMeasuresNoLatency(t *testing.T) {
	r := &Report{Runs: []Measurement{
		{Name: "write-latency", Ops: 0, RunErrors: RunErrors{Errors: 7}},
		{Name: "read-latency", Ops: 10, Latency: Latency{P50: 0.05, P99: 0.2}},
	}}
	met := map[string]string{}
	for _, tc := range checkTargets(r) {
		met[tc.Name] = tc.Met
	}
	require.Equal(t, "n/a", met["durable writes, 1 client: p50"])
	require.Equal(t, "yes", met["reads, 1 client: p50"])
	names := map[string]bool{}
	for _, m := range metricsOf(r) {
		names[m.Name] = true
	}
	require.False(t, names["write-latency ops/s"])
	require.False(t, names["write-latency p50"])
	require.True(t, names["read-latency ops/s"])
	require.True(t, names["read-latency p50"])
	var table bytes.Buffer
	require.NoError(t, r.WriteTable(&table))
	require.Regexp(t, `write-latency +no op completed +7 `, table.String())
}

// A target met by the numbers of a run with errors is not a plain "yes":
// its numbers are of the requests that succeeded (a run whose slow
// requests failed has a fine p99). It says "yes, with errors" and how
// many, in report.json and the table; a plain yes for runs without, and
// "no" stays no.
func TestATargetMetByARunWithErrorsIsNotAPlainYes(t *testing.T) {
	failed := RunErrors{Errors: 3, ErrorSamples: []string{"PUT: status 503"}}
	r := &Report{
		Runs: []Measurement{
			{Name: "write-latency", Ops: 100, Latency: Latency{P50: 0.2}, RunErrors: failed},
			{Name: "read-latency", Ops: 100, Latency: Latency{P50: 0.05}},
			{Name: "read-throughput/get/c=64", Ops: 100, OpsPerSec: 1000, Latency: Latency{P99: 9}, RunErrors: failed},
		},
		Fanout: []FanoutRun{{Name: "fanout/subs=1000/rate=1000", Subscribers: 1000, Rate: 1000, Protocol: "watch", Writes: 10,
			AckToArrival: Latency{Count: 10, P99: 20}, RunErrors: RunErrors{Errors: 1}}},
		Comparisons: []Comparison{{Name: "peers/put/c=1", Results: []PeerResult{
			{Peer: peerCtxd, OpsPerSec: 2000, P50: 0.25, P99: 1},
			{Peer: PeerEtcd, OpsPerSec: 1500, P50: 0.5, P99: 2, RunErrors: RunErrors{Errors: 2}},
		}}},
	}
	r.Errors = 9
	r.Targets = checkTargets(r)
	got := map[string]TargetCheck{}
	for _, tc := range r.Targets {
		got[tc.Name] = tc
	}
	require.Equal(t, TargetCheck{Name: "durable writes, 1 client: p50", Want: "<= 0.3 ms", Got: "200 µs", Met: "yes, with errors", Errors: 3},
		got["durable writes, 1 client: p50"])
	require.Equal(t, "yes", got["reads, 1 client: p50"].Met)
	require.Zero(t, got["reads, 1 client: p50"].Errors)
	require.Equal(t, "no", got["reads, 64 clients: p99"].Met, "a miss is a miss")
	require.Equal(t, "no", got["reads, 64 clients: throughput"].Met)
	require.Equal(t, "yes, with errors", got["fan-out, 1,000 subscribers at 1,000 writes/s: ack-to-arrival p99"].Met)
	require.Equal(t, "yes, with errors", got["fan-out, 1,000 subscribers at 1,000 writes/s: missed"].Met)
	// Its 10 writes in 1 s are not 1,000 writes/s: the p99 and "none
	// missed" are of a run that did not keep the rate.
	require.Equal(t, "no", got["fan-out, 1,000 subscribers at 1,000 writes/s: writes/s sustained"].Met)
	r.Fanout[0].WritesPerSec = 951
	require.Equal(t, "yes, with errors", fanoutRateTarget(t, r).Met)
	r.Fanout[0].WritesPerSec = 949
	require.Equal(t, "no", fanoutRateTarget(t, r).Met)
	r.Fanout[0].WritesPerSec = 0
	vsEtcd := got["vs etcd: durable put, 1 client: p50"]
	require.Equal(t, "yes, with errors", vsEtcd.Met, "etcd's errors make the ratio suspect too")
	require.EqualValues(t, 2, vsEtcd.Errors)

	var table bytes.Buffer
	require.NoError(t, r.WriteTable(&table))
	require.Regexp(t, `durable writes, 1 client: p50 +<= 0.3 ms +200 µs +yes, with 3 errors\n`, table.String())
	require.Regexp(t, `reads, 1 client: p50 +<= 0.1 ms +50 µs +yes\n`, table.String())
}

// TestCompareMarksErrorsAndMissing: a metric of a run with errors carries
// them, and compare shows them beside it; the run's error count is a
// metric of its own, so errors that appear are WORSE (--fail-on-worse
// fails); a number a run could not measure (a peer with no answered
// round, a fan-out run with no delivery) is not in its metrics, and
// compare says "not measured" rather than "removed" (or, for the etcd
// ops/s of 0 a report held, WORSE), also for a report from before it was
// left out, which holds its 0.
func TestCompareMarksErrorsAndMissing(t *testing.T) {
	good := PeerResult{Peer: PeerEtcd, OpsPerSec: 1000, P50: 1, P99: 3}
	mine := PeerResult{Peer: peerCtxd, OpsPerSec: 2000, P50: 0.5, P99: 2}
	old := &Report{
		Runs:        []Measurement{{Name: "write-latency", Ops: 100, OpsPerSec: 1000, Latency: Latency{P50: 1, P99: 2}}},
		Fanout:      []FanoutRun{{Name: "fanout/subs=5/rate=100", Writes: 100, WritesPerSec: 100, AckToArrival: Latency{Count: 500, P50: 1, P99: 2}, SendToArrival: Latency{Count: 500, P50: 2, P99: 3}}},
		Comparisons: []Comparison{{Name: "peers/put/c=1", Results: []PeerResult{mine, good}, Ratios: []Ratio{ratioOf(mine, good)}}},
	}
	old.Metrics = metricsOf(old)
	// The new run: write-latency had 3 failed requests; etcd answered
	// nothing (its ratios are 0: unknown); the fan-out had no write
	// acknowledged and delivered nothing.
	failed := PeerResult{Peer: PeerEtcd, RunErrors: RunErrors{Errors: 3}}
	cur := &Report{
		Errors:      7,
		Runs:        []Measurement{{Name: "write-latency", Ops: 100, OpsPerSec: 1000, Latency: Latency{P50: 1, P99: 2}, RunErrors: RunErrors{Errors: 3}}},
		Fanout:      []FanoutRun{{Name: "fanout/subs=5/rate=100", RunErrors: RunErrors{Errors: 1}}},
		Comparisons: []Comparison{{Name: "peers/put/c=1", Results: []PeerResult{mine, failed}, Ratios: []Ratio{ratioOf(mine, failed)}}},
	}
	cur.Metrics = metricsOf(cur)
	ds := Compare(old, cur, DefaultMinChange)
	byName := map[string]Delta{}
	for _, d := range ds {
		byName[d.Name] = d
	}
	require.Equal(t, VerdictWorse, byName["errors"].Verdict, "errors that appear are worse")
	require.EqualValues(t, 3, byName["write-latency p50"].New.Errors)
	require.EqualValues(t, 0, byName["write-latency p50"].Old.Errors)
	require.Equal(t, VerdictNoise, byName["write-latency p50"].Verdict)
	for _, name := range []string{"peers/put/c=1 ctxd/etcd p50", "peers/put/c=1 ctxd/etcd ops/s", "peers/put/c=1 etcd p50",
		"fanout/subs=5/rate=100 ack-to-arrival p99", "fanout/subs=5/rate=100 send-to-arrival p99", "fanout/subs=5/rate=100 writes/s",
		"fanout/subs=5/rate=100 missed", "peers/put/c=1 etcd ops/s"} {
		require.Equal(t, VerdictNotMeasured, byName[name].Verdict, "%s: not measured in the new run, not better", name)
		require.True(t, byName[name].NewNotMeasured, name)
	}
	require.EqualValues(t, 3, byName["peers/put/c=1 etcd ops/s"].New.Errors)
	require.EqualValues(t, 1, byName["fanout/subs=5/rate=100 missed"].New.Errors)

	var out bytes.Buffer
	require.NoError(t, WriteComparison(&out, old, cur, ds))
	require.Regexp(t, `write-latency p50 .* noise +0 → 3\n`, out.String())
	require.Regexp(t, `peers/put/c=1 etcd ops/s +1,000 ops/s +not measured +not measured +0 → 3\n`, out.String())
	require.Contains(t, out.String(), ", 11 not measured\n")
	require.Contains(t, out.String(), "RUN ERRORS")
	require.Contains(t, out.String(), "metrics of runs with errors")
	require.Positive(t, CountWorse(ds))

	// A report from before a peer that answered nothing was left out of
	// the metrics holds its ops/s of 0: not measured all the same, either
	// way round, rather than WORSE or better.
	before := *cur
	before.Metrics = append(slices.Clone(cur.Metrics), Metric{Name: "peers/put/c=1 etcd ops/s", Unit: "ops/s", Better: "higher", Errors: 3})
	for _, ds := range [][]Delta{Compare(old, &before, DefaultMinChange), Compare(&before, old, DefaultMinChange)} {
		for _, d := range ds {
			if d.Name == "peers/put/c=1 etcd ops/s" {
				require.Equal(t, VerdictNotMeasured, d.Verdict)
				require.True(t, math.IsNaN(d.Change))
			}
		}
	}

	// An old report without the errors metric (before 2026-12-06): its
	// errors count is compared all the same.
	old.Metrics = old.Metrics[1:]
	require.Equal(t, "errors", metricsOf(old)[0].Name)
	ds = Compare(old, cur, DefaultMinChange)
	require.Equal(t, "errors", ds[0].Name)
	require.Equal(t, VerdictWorse, ds[0].Verdict)
}

// TestTableMarksErrors: every part with errors is marked where it is
// printed, and its errors are listed under the run's ERRORS line: the
// comparisons' (a peer's failed requests) were counted in the total but
// listed nowhere, and the fan-out and snapshot tables had no column.
func TestTableMarksErrors(t *testing.T) {
	r := &Report{
		Fanout:   []FanoutRun{{Name: "fanout/subs=5/rate=100", Subscribers: 5, RunErrors: RunErrors{Errors: 2, ErrorSamples: []string{"put: 503"}}}},
		Snapshot: []SnapshotRun{{Name: "snapshot/keys=50", RunErrors: RunErrors{Errors: 1, ErrorSamples: []string{"restore: 500"}}}},
		Comparisons: []Comparison{{Name: "peers/put/c=1", Results: []PeerResult{
			{Peer: peerCtxd, OpsPerSec: 10},
			{Peer: PeerEtcd, OpsPerSec: 5, RunErrors: RunErrors{Errors: 3, ErrorSamples: []string{"etcd: deadline exceeded"}}},
		}}},
	}
	r.Errors = 6
	var out bytes.Buffer
	require.NoError(t, r.WriteTable(&out))
	table := out.String()
	require.Contains(t, table, "!!! 6 ERRORS")
	require.Contains(t, table, "peers/put/c=1 etcd: 3 errors, e.g. etcd: deadline exceeded")
	require.Contains(t, table, "fanout/subs=5/rate=100: 2 errors, e.g. put: 503")
	require.Regexp(t, `FANOUT .* ERRORS`, table)
	require.Regexp(t, `SNAPSHOT .* ERRORS`, table)
}

// TestSummarySaysTheLoad: the first line of the table and of report.html
// gives the machine's load at the start and at the end; the table said it
// only when the start's was high, never the end's.
func TestSummarySaysTheLoad(t *testing.T) {
	r := &Report{Machine: Machine{Cores: 2, LoadAverage: 0.4, LoadAverageEnd: 2.6}, Settings: Settings{DurationSeconds: 5, WarmupSeconds: 1, ValueSize: 256}}
	require.Contains(t, r.Summary(), "2 cores")
	require.Contains(t, r.Summary(), "load average 0.4 at the start and 2.6 at the end")
	require.Contains(t, r.Summary(), "5s windows after 1s warm-up, 256-byte values")
}

// A run in which no operation completed has no rate or latency: the
// at-scale table, the peers' and the fan-out's, report.html's tables and
// charts, the targets and the metrics say so or leave it out, not a 0
// that reads as a measurement (the main table and perf compare already
// did; the at-scale table said 0 ops/s and 0 ms, and its p99 target was
// met by the 0).
// Nor has a fan-out run with no write acknowledged a missed count (it
// said MISSED 0, and its metric compared as one), or one with no frame
// changes per frame (0.00), or one that connected no subscriber a
// connect time (0.00 s); nor a snapshot step the run ended or failed
// before a time or a file size (0 ms, 0 B). And a time measured under
// half a millisecond is in µs, not 0 ms (nor, in perf compare and the
// snapshot chart, 0.00 s).
func TestANumberNotMeasuredIsNotAZero(t *testing.T) {
	ok := func(name string) Measurement {
		return Measurement{Name: name, Clients: 1, Ops: 100, OpsPerSec: 1000, Latency: Latency{Count: 100, P50: 1, P99: 2}, Distribution: []Quantile{{50, 1}, {99, 2}}}
	}
	none := func(name string) Measurement {
		return Measurement{Name: name, Clients: 64, RunErrors: RunErrors{Errors: 3, ErrorSamples: []string{"put: 503"}}, Distribution: []Quantile{}}
	}
	r := &Report{
		Runs: []Measurement{ok("write-throughput/distinct/c=1"), none("write-throughput/distinct/c=64"),
			ok(largePrefix + "write-throughput/distinct/c=1"), none(largePrefix + "write-throughput/distinct/c=64"),
			{Name: "cas-contention/keys=1/c=64", Clients: 64, CAS: &CASResult{Keys: 1, CounterCheck: "ok"}, RunErrors: RunErrors{Errors: 9}}},
		AtScale: &AtScale{FileBytes: 1 << 30},
		Comparisons: []Comparison{{Name: "peers/put/c=1", Results: []PeerResult{
			{Peer: peerCtxd, OpsPerSec: 10, P50: 1, P99: 2},
			{Peer: PeerEtcd, RunErrors: RunErrors{Errors: 3}},
		}}},
		Fanout: []FanoutRun{{Name: "fanout/subs=5/rate=100", Subscribers: 5, RunErrors: RunErrors{Errors: 500}}},
		// Snapshot steps the run failed before (or, for keys=10, every
		// step after the snapshot): not timed, no file read.
		Snapshot: []SnapshotRun{{Name: "snapshot/keys=10", Keys: 10, FileBytes: 1 << 20, SnapshotBytes: 1 << 20, SnapshotSeconds: 0.25, RunErrors: RunErrors{Errors: 3}},
			{Name: "snapshot/keys=100", Keys: 100, RunErrors: RunErrors{Errors: 1}},
			// Timed, in less than a millisecond but the restore.
			{Name: "snapshot/keys=1", Keys: 1, FileBytes: 32 << 10, SnapshotBytes: 32 << 10, DumpBytes: 300,
				SnapshotSeconds: 0.000999, DumpSeconds: 0.000412, ExportSeconds: 0.000087, RestoreSeconds: 0.0021}},
	}
	c := &r.Comparisons[0]
	c.Ratios = []Ratio{ratioOf(c.Results[0], c.Results[1])}
	r.Runs[2].Database, r.Runs[3].Database = "large", "large"
	table := tableOf(t, r)
	require.Regexp(t, `(?m)^ *write-throughput/distinct/c=64 +no op completed +no op completed +- +$`, table, "the at-scale row")
	require.Regexp(t, `(?m)^ +etcd +no op completed +3 +- +- +- *$`, table, "the peer that answered nothing, and ctxd's ratios to it")
	require.Contains(t, table, "  cas-contention/keys=1/c=64: no op completed; counters add up to 0 of 0 increments: ok\n")
	// The at-scale starts that did not happen (all 0 here).
	require.Contains(t, table, "fresh not measured, large not measured; RSS right after open: fresh not measured, large not measured\n")
	require.Contains(t, table, "  crash restart (killed with 0 acknowledged writes in the log alone): not measured\n")
	// No write acknowledged: nothing to miss; no frame: no changes per
	// frame; no subscriber connected: no connect time.
	require.Regexp(t, `(?m)^ *fanout/subs=5/rate=100 +5 +no write acknowledged +0 +not measured +0 +500 +not measured +not measured *$`, table)
	require.Regexp(t, `(?m)^ *snapshot/keys=10 +1.0 MiB +250 ms +not measured +not measured +not measured +3 *$`, table)
	require.Regexp(t, `(?m)^ *snapshot/keys=100 +not measured +not measured +not measured +not measured +not measured +1 *$`, table)
	require.Regexp(t, `(?m)^ *snapshot/keys=1 +32.0 KiB +999 µs +412 µs +87 µs +2 ms +0 *$`, table)

	for _, tc := range atScaleTargets(r) {
		if tc.Name == "at scale: durable puts, 64 clients: p99" {
			require.Equal(t, metNA, tc.Met, "no p99 to meet the target with: %+v", tc)
		}
	}
	// The fan-out targets of a run none of whose writes was acknowledged:
	// no p99 and nothing to miss, not met by 0s.
	r.Fanout = append(r.Fanout, FanoutRun{Name: "fanout/subs=1000/rate=1000", Subscribers: 1000, Rate: 1000, FailedWrites: 5000, RunErrors: RunErrors{Errors: 5000}})
	fanoutTargets := 0
	for _, tc := range checkTargets(r) {
		if strings.HasPrefix(tc.Name, "fan-out, 1,000 subscribers") {
			fanoutTargets++
			require.Equal(t, metNA, tc.Met, "%+v", tc)
			require.Equal(t, "not measured", tc.Got)
		}
	}
	require.Equal(t, 3, fanoutTargets)
	r.Fanout = r.Fanout[:1]
	for _, m := range metricsOf(r) {
		require.NotContains(t, m.Name, "at-scale", "a step that did not run has no metric")
		require.NotEqual(t, "fanout/subs=5/rate=100 writes/s", m.Name, "no write acknowledged, no rate")
		require.NotContains(t, m.Name, "cas-contention", "no CAS completed: no conflicts/s")
		require.NotContains(t, m.Name, "etcd", "the peer that answered nothing: no ops/s, latency or ratio")
		require.NotEqual(t, "fanout/subs=5/rate=100 missed", m.Name, "no write acknowledged, nothing to miss")
		require.NotContains(t, m.Name, "snapshot/keys=100 ", "no step timed")
		require.False(t, strings.HasPrefix(m.Name, "snapshot/keys=10 ") && m.Name != "snapshot/keys=10 snapshot", "only the snapshot was timed: %s", m.Name)
	}
	named := func(name string) func(Metric) bool { return func(m Metric) bool { return m.Name == name } }
	require.True(t, slices.ContainsFunc(notMeasuredMetrics(r), named("fanout/subs=5/rate=100 missed")), "compare says not measured")
	require.True(t, slices.ContainsFunc(metricsOf(r), named("snapshot/keys=10 snapshot")))

	page := htmlOf(t, r)
	rows := regexp.MustCompile(`(?s)<tr><td>(large/)?write-throughput/distinct/c=64</td>.*?</tr>`).FindAllString(page, -1)
	require.Len(t, rows, 3, "the two runs and the at-scale pair")
	for _, row := range rows {
		require.Contains(t, row, "no op completed")
		require.NotRegexp(t, ` (ms|µs)<`, row, "no latency")
		require.NotContains(t, row, "<td>0</td><td>0</td>", "no 0 ops/s ± 0: %s", row)
	}
	require.Regexp(t, `<tr><td></td><td>etcd</td><td>no op completed</td>`, page)
	require.Contains(t, page, "<td>-</td><td>-</td><td>-</td></tr>", "ctxd's ratios to it")
	require.Contains(t, page, "<td>no write acknowledged</td>")
	require.Contains(t, page, "<td>0</td><td>not measured</td><td>0</td><td class=\"no\">500</td><td>not measured</td>", "delivered, missed, duplicates, errors, connect")
	require.Contains(t, page, "<tr><td>snapshot/keys=10</td><td>1.0 MiB</td><td>1.0 MiB</td><td>not measured</td><td>250 ms</td><td>not measured</td><td>not measured</td><td>not measured</td>")
	require.Contains(t, page, "<tr><td>snapshot/keys=100</td><td>not measured</td><td>not measured</td><td>not measured</td><td>not measured</td><td>not measured</td><td>not measured</td><td>not measured</td>")
	require.Contains(t, page, "<tr><td>snapshot/keys=1</td><td>32.0 KiB</td><td>32.0 KiB</td><td>300 B</td><td>999 µs</td><td>412 µs</td><td>87 µs</td><td>2 ms</td>")
	require.Contains(t, page, "<title>export (JSON): keys 1, time 87 µs</title>", "the snapshot chart's point")
	require.Contains(t, page, "CAS on 1 key(s): no op completed; counters")
	require.Contains(t, page, "<tr><td>large database, after a crash</td><td>not measured</td><td>not measured</td><td>not measured</td><td></td><td></td><td></td></tr>")
	// perf compare prints a time under a second of a metric in ms or µs.
	r.Metrics = metricsOf(r)
	var compared bytes.Buffer
	require.NoError(t, WriteComparison(&compared, r, r, Compare(r, r, DefaultMinChange)))
	require.Regexp(t, `(?m)^snapshot/keys=1 dump +412 µs +412 µs `, compared.String())
	// The throughput chart has a point for each run that completed
	// operations (the two c=1), none at 0 for the others.
	charts := throughputCharts(r)
	require.NotEmpty(t, charts)
	require.Equal(t, 2, strings.Count(string(charts[0].SVG), "<circle"), "%s", charts[0].SVG)
}

// A growth per 1,000 subscribers is not scaled up from one subscriber,
// and a shrink or a growth within the noise is not a cost: seen with one
// Socket.IO subscriber on a remote server whose baseline still held the
// previous run's memory, "-16.9 GiB RSS, -13.3 GiB heap per 1,000
// subscribers". The memory itself is given, the growth is "not
// measurable" and why, in the table, report.html and report.json, and
// perf compare has no metric of it; the headline takes the run closest
// to 1,000 whose growth was measurable.
func TestMemoryGrowthFromTooLittleIsNotMeasurable(t *testing.T) {
	const mib = 1 << 20
	before := MemorySample{RSSBytes: 92*mib + mib/2, HeapBytes: 37*mib + mib/2}
	after := MemorySample{RSSBytes: 75*mib + mib/2, HeapBytes: 24*mib + mib/5}

	one := memoryUse(processRemote, before, after, 1, 1000, "subscribers")
	require.Zero(t, one.RSSPer)
	require.Zero(t, one.HeapPer)
	require.Equal(t, "1 subscriber, too few to scale to 1,000 (100 or more)", one.Unmeasured)

	shrunk := memoryUse(processRemote, before, after, 1000, 1000, "subscribers")
	require.Zero(t, shrunk.RSSPer)
	require.Zero(t, shrunk.HeapPer)
	require.Contains(t, shrunk.Unmeasured, "RSS -17.0 MiB, heap -13.3 MiB in all: no growth above the noise")

	// 100 subscribers, +4.5 MiB RSS (x10: +45 MiB), heap +0.5 MiB (noise).
	grown := memoryUse(processOwn, MemorySample{RSSBytes: 20 * mib, HeapBytes: 4 * mib},
		MemorySample{RSSBytes: 24*mib + mib/2, HeapBytes: 4*mib + mib/2}, 100, 1000, "subscribers")
	require.EqualValues(t, 45*mib, grown.RSSPer)
	require.Zero(t, grown.HeapPer)
	require.Equal(t, "heap +512.0 KiB in all: no growth above the noise (1 MiB, or 5% of the memory before)", grown.Unmeasured)

	r := &Report{Fanout: []FanoutRun{
		{Name: "fanout/subs=100/rate=1000", Protocol: protocolWatch, Subscribers: 100, Memory: grown},
		{Name: "fanout/subs=1000/rate=1000", Protocol: protocolWatch, Subscribers: 1000, Memory: shrunk},
		{Name: "fanout/socketio/subs=1/rate=1000", Protocol: protocolSocketIO, Subscribers: 1, Memory: one},
	}}
	r.Memory = memorySummary(r)
	require.Equal(t, "fanout/subs=100/rate=1000", r.Memory.SubscribersRun, "the closest to 1,000 of the runs measured")
	require.EqualValues(t, 45*mib, r.Memory.RSSPer1kSubscribers)
	require.Zero(t, r.Memory.HeapPer1kSubscribers)
	names := map[string]float64{}
	for _, m := range metricsOf(r) {
		names[m.Name] = m.Value
	}
	require.EqualValues(t, 45*mib, names["memory rss per 1k subscribers"])
	require.NotContains(t, names, "memory heap per 1k subscribers", "not measured: no metric")

	table := tableOf(t, r)
	require.NotContains(t, table, "GiB")
	require.Contains(t, table, "fanout/socketio/subs=1/rate=1000: server memory per 1,000 subscribers: RSS not measurable, heap not measurable (75.5 MiB RSS, 24.2 MiB heap with them; 92.5 MiB RSS, 37.5 MiB heap before;")
	require.Contains(t, table, "    not measurable: 1 subscriber, too few to scale to 1,000 (100 or more)\n")
	require.Contains(t, table, "fanout/subs=100/rate=1000: server memory per 1,000 subscribers: RSS +45.0 MiB, heap not measurable (")

	page := htmlOf(t, r)
	require.NotContains(t, page, "GiB")
	require.Contains(t, page, "<tr><td>1,000 subscribers</td><td>&#43;45.0 MiB</td><td>not measurable</td></tr>")
	require.Contains(t, page, "fanout/socketio/subs=1/rate=1000: server memory 75.5 MiB RSS, 24.2 MiB Go heap with the subscribers (92.5 MiB and 37.5 MiB before;")
	require.Contains(t, page, "per 1,000 subscribers not measurable: 1 subscriber, too few to scale to 1,000 (100 or more).")
}

// A mixed run one of whose sides had no request answered (every PUT
// refused, say) says so, in the table and in report.html, where it gave
// that side's p50 and p99 as 0 µs; a mixed run with no op completed at
// all said 0 µs four times.
func TestAMixedRunSaysWhichSideWasNotAnswered(t *testing.T) {
	reads, none := Latency{Count: 90, P50: 0.2, P99: 0.9}, Latency{}
	r := &Report{Runs: []Measurement{
		{Name: "mixed/read=90", Clients: 8, Ops: 90, OpsPerSec: 900, Latency: reads, ReadFraction: 0.9, Reads: &reads, Writes: &none,
			RunErrors: RunErrors{Errors: 10}, Distribution: []Quantile{}},
		{Name: "mixed/read=50", Clients: 8, ReadFraction: 0.5, Reads: &none, Writes: &none, RunErrors: RunErrors{Errors: 100}, Distribution: []Quantile{}},
	}}
	table := tableOf(t, r)
	require.Contains(t, table, "  mixed/read=90: reads p50 200 µs p99 900 µs, no writes answered\n")
	require.Contains(t, table, "  mixed/read=50: no reads answered, no writes answered\n")
	page := htmlOf(t, r)
	require.Contains(t, page, "<p>mixed/read=90: reads p50 200 µs p99 900 µs; no writes answered.</p>")
	require.Contains(t, page, "<p>mixed/read=50: no reads answered; no writes answered.</p>")
}

// tableOf is r's table, as `ctxd perf` prints it.
func tableOf(t *testing.T, r *Report) string {
	var out bytes.Buffer
	require.NoError(t, r.WriteTable(&out))
	return out.String()
}

// htmlOf is r's report.html, written to a file and read back.
func htmlOf(t *testing.T, r *Report) string {
	path := filepath.Join(t.TempDir(), "report.html")
	require.NoError(t, r.WriteHTML(path))
	b, err := os.ReadFile(path)
	require.NoError(t, err)
	return string(b)
}

// fanoutRateTarget is r's target check of the fan-out's sustained rate.
func fanoutRateTarget(t *testing.T, r *Report) TargetCheck {
	t.Helper()
	for _, tc := range checkTargets(r) {
		if tc.Name == "fan-out, 1,000 subscribers at 1,000 writes/s: writes/s sustained" {
			return tc
		}
	}
	t.Fatal("no target of the fan-out's sustained rate")
	return TargetCheck{}
}
