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
)

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
		if f := &r.Fanout[i]; f.Subscribers == subscribers && f.Rate == rate && f.Protocol != protocolSocketIO {
			return f
		}
	}
	return nil
}

// checkTargets compares the run's numbers with the targets; a target the
// run did not measure is "n/a".
func checkTargets(r *Report) []TargetCheck {
	var out []TargetCheck
	add := func(name, want string, measured bool, got float64, unit string, met bool) {
		tc := TargetCheck{Name: name, Want: want, Got: "not measured", Met: "n/a"}
		if measured {
			tc.Got = formatValue(got, unit)
			tc.Met = "no"
			if met {
				tc.Met = "yes"
			}
		}
		out = append(out, tc)
	}
	closedLoop := func(name string) *Measurement {
		if x := findRun(r, name); x != nil && x.Rate == 0 {
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
		if x != nil {
			v = t.value(x)
		}
		if t.atLeast {
			add(t.name, fmt.Sprintf(">= %d/s", int(t.target)), x != nil, v, "ops/s", x != nil && v >= t.target)
		} else {
			add(t.name, fmt.Sprintf("<= %g ms", t.target), x != nil, v, "ms", x != nil && v <= t.target)
		}
	}
	f := findFanout(r, 1000, 1000)
	var fp99, fmissed float64
	if f != nil {
		fp99, fmissed = f.AckToArrival.P99, float64(f.Missed)
	}
	add("fan-out, 1,000 subscribers at 1,000 writes/s: ack-to-arrival p99", fmt.Sprintf("<= %g ms", float64(targetFanoutP99Ms)), f != nil,
		fp99, "ms", f != nil && f.AckToArrival.P99 <= targetFanoutP99Ms)
	add("fan-out, 1,000 subscribers at 1,000 writes/s: missed", "0", f != nil, fmissed, "", f != nil && f.Missed == 0 && f.Duplicates == 0)
	return out
}

func opsPerSecOf(x *Measurement) float64 { return x.OpsPerSec }
func p50Of(x *Measurement) float64       { return x.Latency.P50 }
func p99Of(x *Measurement) float64       { return x.Latency.P99 }

// metricsOf flattens the report's numbers for Compare.
func metricsOf(r *Report) []Metric {
	out := []Metric{}
	add := func(name, unit string, value, spread float64, better string) {
		out = append(out, Metric{Name: name, Unit: unit, Value: value, Spread: spread, Better: better})
	}
	for _, x := range r.Runs {
		add(x.Name+" ops/s", "ops/s", x.OpsPerSec, x.OpsPerSecSpread, "higher")
		add(x.Name+" p50", "ms", x.Latency.P50, x.P50Spread, "lower")
		add(x.Name+" p99", "ms", x.Latency.P99, x.P99Spread, "lower")
		if x.CAS != nil {
			add(x.Name+" conflicts/s", "ops/s", x.CAS.ConflictsPerSec, x.CAS.ConflictsPerSecSpread, "lower")
		}
	}
	for _, f := range r.Fanout {
		add(f.Name+" writes/s", "ops/s", f.WritesPerSec, 0, "higher")
		add(f.Name+" ack-to-arrival p50", "ms", f.AckToArrival.P50, f.AckP50Spread, "lower")
		add(f.Name+" ack-to-arrival p99", "ms", f.AckToArrival.P99, f.AckP99Spread, "lower")
		add(f.Name+" send-to-arrival p99", "ms", f.SendToArrival.P99, f.SendP99Spread, "lower")
		add(f.Name+" missed", "", float64(f.Missed), 0, "lower")
	}
	for _, d := range r.DiskGrowth {
		if n := len(d.Points); n > 0 {
			add(d.Name+" bytes/version", "B", d.Points[n-1].BytesPerVersion, 0, "lower")
		}
		add(d.Name+" file after compaction+defrag", "B", float64(d.AfterDefrag.FileBytes), 0, "lower")
		add(d.Name+" defrag pause", "ms", d.DefragPauseMs, 0, "lower")
	}
	for _, sn := range r.Snapshot {
		add(sn.Name+" snapshot", "s", sn.SnapshotSeconds, sn.Spread.SnapshotSeconds, "lower")
		add(sn.Name+" dump", "s", sn.DumpSeconds, sn.Spread.DumpSeconds, "lower")
		add(sn.Name+" export", "s", sn.ExportSeconds, sn.Spread.ExportSeconds, "lower")
		add(sn.Name+" restore", "s", sn.RestoreSeconds, sn.Spread.RestoreSeconds, "lower")
	}
	return out
}

// formatValue prints a number with its unit, readable in a table.
func formatValue(v float64, unit string) string {
	var s string
	switch {
	case unit == "ms" && v < 0.9995:
		return fmt.Sprintf("%.0f µs", v*1000)
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
