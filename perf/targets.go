package perf

import (
	"fmt"
	"strings"
)

// The project's performance targets (issue 6), checked against each run.
const (
	targetWritesPerSec64 = 40000
	targetWriteP99Ms64   = 5
	targetWriteP50Ms1    = 0.3
	targetReadsPerSec64  = 60000
	targetReadP99Ms64    = 5
	targetReadP50Ms1     = 0.1
	targetFanoutP99Ms    = 50
	// targetFanoutRateShare: the fan-out targets are at 1,000 writes/s
	// offered; a run that kept less than this share of it (a server or
	// machine that fell behind) did not run at that rate, whatever its
	// p99 says.
	targetFanoutRateShare = 0.95
)

// The targets of issue 14, as ratios to the peers measured in the same
// run (absolute numbers drift between machines; ratios much less).
const (
	targetPut1P50VsEtcd   = 0.6  // ctxd's 1-client put p50 at most 0.6x etcd's
	targetPut64VsEtcd     = 3.5  // ctxd's 64-client puts/s at least 3.5x etcd's
	targetPut64VsBare     = 0.5  // ... and at least 0.5x the bare handler's
	targetPut64P99Ms      = 5    // ... with a p99 of at most 5 ms
	targetGet64VsBare     = 0.85 // ctxd's 64-client gets/s at least 0.85x the bare handler's
	targetPeerClients     = 64
	targetPeerClientsName = "64 clients"
)

func findComparison(r *Report, name string) *Comparison {
	for i := range r.Comparisons {
		if r.Comparisons[i].Name == name {
			return &r.Comparisons[i]
		}
	}
	return nil
}

// result returns the named server's result (nil when it was not measured).
func (c *Comparison) result(peer string) *PeerResult {
	if c == nil {
		return nil
	}
	for i := range c.Results {
		if c.Results[i].Peer == peer {
			return &c.Results[i]
		}
	}
	return nil
}

func findRun(r *Report, name string) *Measurement {
	for i := range r.Runs {
		if r.Runs[i].Name == name {
			return &r.Runs[i]
		}
	}
	return nil
}

func findFanout(r *Report, subscribers, rate int) *FanoutRun {
	for i := range r.Fanout {
		if f := &r.Fanout[i]; f.Subscribers == subscribers && f.Rate == rate && f.Peer == "" && f.Protocol != protocolSocketIO {
			return f
		}
	}
	return nil
}

// The values of TargetCheck.Met.
const (
	metYes = "yes"
	metNo  = "no"
	metNA  = "n/a"
	// metYesWithErrors: the numbers meet the target, but the runs they
	// come from had errors (TargetCheck.Errors): they are of the requests
	// that succeeded, which does not show the target met.
	metYesWithErrors = "yes, with errors"
)

// verdict is the Met of a measured target: whether its numbers meet it,
// given the errors of the runs they come from.
func verdict(met bool, errs int64) string {
	switch {
	case !met:
		return metNo
	case errs > 0:
		return metYesWithErrors
	}
	return metYes
}

// checkTargets compares the run's numbers with the targets; a target the
// run did not measure is "n/a".
func checkTargets(r *Report) []TargetCheck {
	var out []TargetCheck
	add := func(name, want string, measured bool, got float64, unit string, met bool, errs int64) {
		tc := TargetCheck{Name: name, Want: want, Got: notMeasured, Met: metNA}
		if measured {
			tc.Got = formatValue(got, unit)
			tc.Met, tc.Errors = verdict(met, errs), errs
		}
		out = append(out, tc)
	}
	// A run without one answered request measured nothing: its zero
	// latencies met every latency target (a run whose every request was
	// refused said "yes" to p50 <= 0.1 ms).
	closedLoop := func(name string) *Measurement {
		if x := findRun(r, name); x != nil && x.Rate == 0 && x.Ops > 0 {
			return x
		}
		return nil
	}
	// The request loops' targets: a throughput of at least target ops/s,
	// or a latency percentile of at most target ms.
	for _, t := range []struct {
		name, run string
		atLeast   bool // a throughput; else a latency
		value     func(*Measurement) float64
		target    float64
	}{
		{"durable writes, 64 clients: throughput", "write-throughput/distinct/c=64", true, opsPerSecOf, targetWritesPerSec64},
		{"durable writes, 64 clients: p99", "write-throughput/distinct/c=64", false, p99Of, targetWriteP99Ms64},
		{"durable writes, 1 client: p50", "write-latency", false, p50Of, targetWriteP50Ms1},
		{"reads, 64 clients: throughput", "read-throughput/get/c=64", true, opsPerSecOf, targetReadsPerSec64},
		{"reads, 64 clients: p99", "read-throughput/get/c=64", false, p99Of, targetReadP99Ms64},
		{"reads, 1 client: p50", "read-latency", false, p50Of, targetReadP50Ms1},
	} {
		x := closedLoop(t.run)
		var v float64
		var errs int64
		if x != nil {
			v, errs = t.value(x), x.Errors
		}
		if t.atLeast {
			add(t.name, fmt.Sprintf(">= %d/s", int(t.target)), x != nil, v, "ops/s", x != nil && v >= t.target, errs)
		} else {
			add(t.name, fmt.Sprintf("<= %g ms", t.target), x != nil, v, "ms", x != nil && v <= t.target, errs)
		}
	}
	f := findFanout(r, 1000, 1000)
	var fp99, fmissed float64
	var ferrs int64
	if f != nil {
		fp99, fmissed, ferrs = f.AckToArrival.P99, float64(f.Missed), f.Errors+f.Missed+f.Duplicates
	}
	// No delivery: no latency; no write acknowledged: nothing to miss.
	// Each met its target with a 0 ("yes, with errors").
	delivered, wrote := f != nil && f.AckToArrival.Count > 0, f != nil && f.Writes > 0
	add("fan-out, 1,000 subscribers at 1,000 writes/s: ack-to-arrival p99", fmt.Sprintf("<= %g ms", float64(targetFanoutP99Ms)), delivered,
		fp99, "ms", delivered && f.AckToArrival.P99 <= targetFanoutP99Ms, ferrs)
	add("fan-out, 1,000 subscribers at 1,000 writes/s: missed", "0", wrote, fmissed, "", wrote && f.Missed == 0 && f.Duplicates == 0, ferrs)
	var frate float64
	if wrote {
		frate = f.WritesPerSec
	}
	add("fan-out, 1,000 subscribers at 1,000 writes/s: writes/s sustained", fmt.Sprintf(">= %g/s", targetFanoutRateShare*1000), wrote,
		frate, "/s", wrote && frate >= targetFanoutRateShare*float64(f.Rate), ferrs)
	out = append(out, instanceTargets(r)...)
	out = append(out, peerTargets(r)...)
	return append(out, atScaleTargets(r)...)
}

// peerTargets checks issue 14's targets against the peers scenario: ctxd's
// medians as ratios of a peer's, measured in the same rounds.
func peerTargets(r *Report) []TargetCheck {
	var out []TargetCheck
	c1 := findComparison(r, "peers/put/c=1")
	put := findComparison(r, fmt.Sprintf("peers/put/c=%d", targetPeerClients))
	get := findComparison(r, fmt.Sprintf("peers/get/c=%d", targetPeerClients))
	// ratio checks ctxd's value (of) against factor times the peer's.
	ratio := func(name string, c *Comparison, peer string, of func(*PeerResult) float64, unit string, atMost bool, factor float64) {
		tc := TargetCheck{Name: name, Got: notMeasured, Met: metNA}
		if atMost {
			tc.Want = fmt.Sprintf("<= %gx %s", factor, peer)
		} else {
			tc.Want = fmt.Sprintf(">= %gx %s", factor, peer)
		}
		mine, theirs := c.result(peerCtxd), c.result(peer)
		if mine != nil && theirs != nil && of(mine) > 0 && of(theirs) > 0 {
			x := of(mine) / of(theirs)
			tc.Got = fmt.Sprintf("%.2fx (%s vs %s)", x, formatValue(of(mine), unit), formatValue(of(theirs), unit))
			tc.Errors = mine.Errors + theirs.Errors
			tc.Met = verdict((atMost && x <= factor) || (!atMost && x >= factor), tc.Errors)
		}
		out = append(out, tc)
	}
	p50 := func(p *PeerResult) float64 { return p.P50 }
	ops := func(p *PeerResult) float64 { return p.OpsPerSec }
	ratio("vs etcd: durable put, 1 client: p50", c1, PeerEtcd, p50, "ms", true, targetPut1P50VsEtcd)
	ratio("vs etcd: durable puts, "+targetPeerClientsName+": throughput", put, PeerEtcd, ops, "/s", false, targetPut64VsEtcd)
	ratio("vs nethttp: durable puts, "+targetPeerClientsName+": throughput", put, PeerNetHTTP, ops, "/s", false, targetPut64VsBare)
	tc := TargetCheck{Name: "vs peers: durable puts, " + targetPeerClientsName + ": ctxd's p99", Want: fmt.Sprintf("<= %g ms", float64(targetPut64P99Ms)), Got: notMeasured, Met: metNA}
	if mine := put.result(peerCtxd); mine != nil && mine.P99 > 0 {
		tc.Got, tc.Errors = ms(mine.P99), mine.Errors
		tc.Met = verdict(mine.P99 <= targetPut64P99Ms, tc.Errors)
	}
	out = append(out, tc)
	ratio("vs nethttp: gets, "+targetPeerClientsName+": throughput", get, PeerNetHTTP, ops, "/s", false, targetGet64VsBare)
	return out
}

func opsPerSecOf(x *Measurement) float64 { return x.OpsPerSec }
func p50Of(x *Measurement) float64       { return x.Latency.P50 }
func p99Of(x *Measurement) float64       { return x.Latency.P99 }

// metricsOf flattens the report's numbers for Compare: first the run's
// error count, then each part's numbers, each with its part's errors. A
// number the part could not measure (a latency or a rate with no answer,
// a ratio to a server that answered nothing) is left out, not given as a
// 0 that would compare better or worse: notMeasuredMetrics names it.
func metricsOf(r *Report) []Metric {
	measured, _ := flattenMetrics(r)
	return measured
}

// notMeasuredMetrics are the metrics of r's parts that metricsOf leaves
// out because the part could not measure them: their names, units,
// directions and parts' errors, with no value. Compare says "not
// measured" for them rather than "removed", or a verdict on a 0 (a
// report from before a number was left out still holds its 0).
func notMeasuredMetrics(r *Report) []Metric {
	_, notMeasured := flattenMetrics(r)
	return notMeasured
}

// flattenMetrics returns metricsOf's metrics and notMeasuredMetrics'.
func flattenMetrics(r *Report) (measured, notMeasured []Metric) {
	measured = []Metric{}
	var errs int64 // of the part whose metrics are being added
	// add adds a metric its part measured (ok), else names it among those
	// not measured.
	add := func(ok bool, name, unit string, value, spread float64, better string) {
		m := Metric{Name: name, Unit: unit, Value: value, Spread: spread, Better: better, Errors: errs}
		if !ok {
			m.Value, m.Spread = 0, 0
			notMeasured = append(notMeasured, m)
			return
		}
		measured = append(measured, m)
	}
	errs = r.Errors
	add(true, metricErrors, "", float64(r.Errors), 0, "lower")
	for _, x := range r.Runs {
		errs = x.Errors
		// No answered request, no rate or latency.
		ok := x.Ops > 0
		add(ok, x.Name+" ops/s", "ops/s", x.OpsPerSec, x.OpsPerSecSpread, "higher")
		add(ok, x.Name+" p50", "ms", x.Latency.P50, x.P50Spread, "lower")
		add(ok, x.Name+" p99", "ms", x.Latency.P99, x.P99Spread, "lower")
		if x.CAS != nil { // no CAS completed: 0 conflicts/s is not a measurement either
			add(ok, x.Name+" conflicts/s", "ops/s", x.CAS.ConflictsPerSec, x.CAS.ConflictsPerSecSpread, "lower")
		}
	}
	runErrors := map[string]int64{}
	for _, f := range r.Fanout {
		errs = f.Errors + f.Missed + f.Duplicates
		runErrors[f.Name] = errs
		add(f.WritesPerSec > 0, f.Name+" writes/s", "ops/s", f.WritesPerSec, 0, "higher") // 0: no write acknowledged
		delivered := f.AckToArrival.Count > 0                                             // no delivery, no latency
		add(delivered, f.Name+" ack-to-arrival p50", "ms", f.AckToArrival.P50, f.AckP50Spread, "lower")
		add(delivered, f.Name+" ack-to-arrival p99", "ms", f.AckToArrival.P99, f.AckP99Spread, "lower")
		add(f.SendToArrival.Count > 0, f.Name+" send-to-arrival p99", "ms", f.SendToArrival.P99, f.SendP99Spread, "lower")
		add(f.Writes > 0, f.Name+" missed", "", float64(f.Missed), 0, "lower") // no write acknowledged, nothing to miss
	}
	for _, d := range r.DiskGrowth {
		errs = d.Errors
		runErrors[d.Name] = errs
		var perVersion float64
		if n := len(d.Points); n > 0 {
			perVersion = d.Points[n-1].BytesPerVersion
		}
		add(len(d.Points) > 0, d.Name+" bytes/version", "B", perVersion, 0, "lower")
		defragged := d.AfterDefrag.FileBytes > 0 // 0: the run ended before its defrag
		add(defragged, d.Name+" file after compaction+defrag", "B", float64(d.AfterDefrag.FileBytes), 0, "lower")
		add(defragged, d.Name+" defrag pause", "ms", d.DefragPauseMs, 0, "lower")
	}
	// A growth that was not measurable is 0 (memoryUse).
	memory := func(name string, v int64) {
		add(v != 0, name, "B", float64(v), 0, "lower")
	}
	if m := r.Memory; m.KeysRun != "" {
		errs = runErrors[m.KeysRun]
		memory("memory rss per 10k keys", m.RSSPer10kKeys)
		memory("memory heap per 10k keys", m.HeapPer10kKeys)
	}
	if m := r.Memory; m.SubscribersRun != "" {
		errs = runErrors[m.SubscribersRun]
		memory("memory rss per 1k subscribers", m.RSSPer1kSubscribers)
		memory("memory heap per 1k subscribers", m.HeapPer1kSubscribers)
	}
	for _, c := range r.Comparisons {
		byPeer := map[string]int64{}
		for _, x := range c.Results {
			errs = x.Errors
			byPeer[x.Peer] = x.Errors
			// No round answered a request (the server was down, refused
			// or failed every one): no rate, no latency.
			ok := x.OpsPerSec > 0
			add(ok, c.Name+" "+x.Peer+" ops/s", "ops/s", x.OpsPerSec, x.OpsPerSecSpread, "higher")
			add(ok, c.Name+" "+x.Peer+" p50", "ms", x.P50, x.P50Spread, "lower")
			add(ok, c.Name+" "+x.Peer+" p99", "ms", x.P99, x.P99Spread, "lower")
		}
		for _, x := range c.Ratios {
			errs = byPeer[peerCtxd] + byPeer[x.Peer]
			// A ratio is 0 when a side measured nothing (ratioOf).
			for _, q := range []struct {
				what   string
				v      float64
				better string
			}{{"ops/s", x.OpsPerSec, "higher"}, {"p50", x.P50, "lower"}, {"p99", x.P99, "lower"}} {
				add(q.v > 0, c.Name+" ctxd/"+x.Peer+" "+q.what, "x", q.v, 0, q.better)
			}
		}
	}
	for _, sn := range r.Snapshot {
		errs = sn.Errors
		for _, q := range []struct {
			what          string
			value, spread float64
		}{{"snapshot", sn.SnapshotSeconds, sn.Spread.SnapshotSeconds}, {"dump", sn.DumpSeconds, sn.Spread.DumpSeconds},
			{"export", sn.ExportSeconds, sn.Spread.ExportSeconds}, {"restore", sn.RestoreSeconds, sn.Spread.RestoreSeconds}} {
			add(q.value > 0, sn.Name+" "+q.what, "s", q.value, q.spread, "lower") // 0: not timed (the run failed before)
		}
	}
	errs = 0
	atScaleMetrics(r, add)
	return measured, notMeasured
}

// metricErrors is the metric of the run's error count.
const metricErrors = "errors"

// formatValue prints a number with its unit, readable in a table.
func formatValue(v float64, unit string) string {
	var s string
	switch {
	case unit == "x":
		return fmt.Sprintf("%.2fx", v)
	case unit == "/s":
		return formatValue(v, "") + "/s"
	case unit == "ms" && v > 0 && v < 0.0009995: // not "0 µs" (in tables and hover text)
		return fmt.Sprintf("%.0f ns", v*1e6)
	case unit == "ms" && v < 0.9995:
		return fmt.Sprintf("%.0f µs", v*1000)
	case unit == "s" && v < 1:
		return secs(v) // in ms or µs: a time measured is never 0.00 s
	case unit == "B":
		return byteSize(int64(v))
	case v >= 100 || v == float64(int64(v)):
		s = commas(int64(v + 0.5))
	case v >= 10:
		s = fmt.Sprintf("%.1f", v)
	default:
		s = fmt.Sprintf("%.2f", v)
	}
	if unit == "" {
		return s
	}
	return s + " " + unit
}

// commas formats n with thousands separators.
func commas(n int64) string {
	s := fmt.Sprint(n)
	neg := strings.HasPrefix(s, "-")
	s = strings.TrimPrefix(s, "-")
	var b strings.Builder
	for i, c := range s {
		if i > 0 && (len(s)-i)%3 == 0 {
			b.WriteByte(',')
		}
		b.WriteRune(c)
	}
	if neg {
		return "-" + b.String()
	}
	return b.String()
}

// byteSize formats a byte count with a binary unit.
func byteSize(n int64) string {
	const unit = 1024
	if n < unit {
		return fmt.Sprintf("%d B", n)
	}
	div, exp := int64(unit), 0
	for m := n / unit; m >= unit; m /= unit {
		div *= unit
		exp++
	}
	return fmt.Sprintf("%.1f %ciB", float64(n)/float64(div), "KMGTPE"[exp])
}

// instanceTargets checks issue 16's "reads that grow with instances": the
// median over the rounds of read-instances of GETs/s spread over every
// instance divided by GETs/s on the target alone (none without
// Config.MoreTargets).
func instanceTargets(r *Report) []TargetCheck {
	var one, all []float64
	n := 0
	var errs int64
	for _, x := range r.Runs {
		if x.Scenario != scenarioReadInstances || x.Ops == 0 {
			continue
		}
		errs += x.Errors
		if x.Instances == 1 {
			one = append(one, x.OpsPerSec)
		} else {
			all, n = append(all, x.OpsPerSec), x.Instances
		}
	}
	if len(one) == 0 || len(all) == 0 {
		return nil
	}
	a, b := median(all), median(one)
	tc := TargetCheck{Name: fmt.Sprintf("reads grow with instances: gets on %d instances vs 1", n), Want: "> 1x", Met: verdict(a > b, errs),
		Got: fmt.Sprintf("%.2fx (%s vs %s)", a/b, formatValue(a, "/s"), formatValue(b, "/s")), Errors: errs}
	return []TargetCheck{tc}
}
