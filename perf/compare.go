package perf

import (
	"fmt"
	"io"
	"math"
	"reflect"
	"strings"
	"text/tabwriter"
)

// Verdicts of Compare.
const (
	VerdictBetter  = "better"
	VerdictWorse   = "WORSE"
	VerdictNoise   = "noise"
	VerdictAdded   = "added"
	VerdictRemoved = "removed"
)

// DefaultMinChange is the smallest relative change Compare takes for more
// than noise, whatever the spreads: two runs of the same build on the same
// (shared, virtual) machine were seen to differ by up to ~10% on metrics
// whose spread is small or unknown.
const DefaultMinChange = 0.10

// Delta is one metric of two reports.
type Delta struct {
	Name string
	Unit string
	Old  Metric
	New  Metric
	// Change is (new - old) / old; NaN when old is 0 or a side is missing.
	Change float64
	// Threshold is the difference below which the change is noise.
	Threshold float64
	Verdict   string
}

// Verdict judges the change from old to new. The change is noise when it is
// within twice the combined spread of the two runs (the standard deviation
// of each metric over its run's intervals or repeats), or within minChange
// (relative) of old; otherwise it is better or worse according to which
// direction is better for the metric. It returns the verdict and the
// threshold it used.
func Verdict(old, new Metric, minChange float64) (string, float64) {
	threshold := max(2*math.Hypot(old.Spread, new.Spread), minChange*math.Abs(old.Value))
	diff := new.Value - old.Value
	if math.Abs(diff) <= threshold {
		return VerdictNoise, threshold
	}
	if (diff > 0) == (old.Better != "lower") {
		return VerdictBetter, threshold
	}
	return VerdictWorse, threshold
}

// Compare sets the metrics of two reports side by side, in the new
// report's order, then those only the old one has.
func Compare(old, new *Report, minChange float64) []Delta {
	olds := map[string]Metric{}
	for _, m := range withErrorsMetric(old) {
		olds[m.Name] = m
	}
	seen := map[string]bool{}
	var out []Delta
	for _, n := range withErrorsMetric(new) {
		seen[n.Name] = true
		o, ok := olds[n.Name]
		d := Delta{Name: n.Name, Unit: n.Unit, Old: o, New: n, Change: math.NaN()}
		if !ok {
			d.Verdict = VerdictAdded
			out = append(out, d)
			continue
		}
		if o.Value != 0 {
			d.Change = (n.Value - o.Value) / o.Value
		}
		d.Verdict, d.Threshold = Verdict(o, n, minChange)
		out = append(out, d)
	}
	for _, o := range withErrorsMetric(old) {
		if !seen[o.Name] {
			out = append(out, Delta{Name: o.Name, Unit: o.Unit, Old: o, Change: math.NaN(), Verdict: VerdictRemoved})
		}
	}
	return out
}

// withErrorsMetric returns r's metrics, led by the run's error count:
// reports from before it was a metric (2026-12-06) get it from their
// errors field.
func withErrorsMetric(r *Report) []Metric {
	for _, m := range r.Metrics {
		if m.Name == metricErrors {
			return r.Metrics
		}
	}
	return append([]Metric{{Name: metricErrors, Value: float64(r.Errors), Better: "lower", Errors: r.Errors}}, r.Metrics...)
}

// CountWorse returns how many deltas are worse.
func CountWorse(ds []Delta) int {
	n := 0
	for _, d := range ds {
		if d.Verdict == VerdictWorse {
			n++
		}
	}
	return n
}

// WriteComparison prints the deltas as a table, preceded by what differs
// between the two runs' machines and settings (which makes a comparison
// doubtful), and followed by a summary line.
func WriteComparison(w io.Writer, old, new *Report, ds []Delta) error {
	for _, warn := range comparability(old, new) {
		fmt.Fprintf(w, "note: %s\n", warn)
	}
	// The errors of the runs the metrics come from, when there are any:
	// their numbers are suspect.
	withErrors := 0
	for _, d := range ds {
		if d.Name != metricErrors && (d.Old.Errors > 0 || d.New.Errors > 0) {
			withErrors++
		}
	}
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	header := "METRIC\tOLD\tNEW\tCHANGE (NEW VS OLD)\tNOISE BAND\tVERDICT"
	if withErrors > 0 {
		header += "\tRUN ERRORS (OLD → NEW)"
	}
	fmt.Fprintln(tw, header)
	counts := map[string]int{}
	for _, d := range ds {
		counts[d.Verdict]++
		oldS, newS, change, band := "-", "-", "", ""
		if d.Verdict != VerdictAdded {
			oldS = formatWithSpread(d.Old)
		}
		if d.Verdict != VerdictRemoved {
			newS = formatWithSpread(d.New)
		}
		if !math.IsNaN(d.Change) {
			change = fmt.Sprintf("%+.1f%%", d.Change*100)
		}
		if d.Threshold > 0 {
			band = "±" + formatValue(d.Threshold, d.Unit)
		}
		line := fmt.Sprintf("%s\t%s\t%s\t%s\t%s\t%s", d.Name, oldS, newS, change, band, d.Verdict)
		if withErrors > 0 && d.Name != metricErrors && (d.Old.Errors > 0 || d.New.Errors > 0) {
			line += fmt.Sprintf("\t%s → %s", errorCount(d.Old, d.Verdict == VerdictAdded), errorCount(d.New, d.Verdict == VerdictRemoved))
		}
		fmt.Fprintln(tw, line)
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	_, err := fmt.Fprintf(w, "%d metrics: %d worse, %d better, %d noise, %d added, %d removed\n",
		len(ds), counts[VerdictWorse], counts[VerdictBetter], counts[VerdictNoise], counts[VerdictAdded], counts[VerdictRemoved])
	if err == nil && withErrors > 0 {
		_, err = fmt.Fprintf(w, "%d metrics of runs with errors (RUN ERRORS): their numbers are of the requests that succeeded, and suspect\n", withErrors)
	}
	return err
}

// errorCount prints a metric's run errors ("-" when the side is missing).
func errorCount(m Metric, missing bool) string {
	if missing {
		return "-"
	}
	return fmt.Sprint(m.Errors)
}

func formatWithSpread(m Metric) string {
	s := formatValue(m.Value, m.Unit)
	if m.Spread > 0 {
		s += " ±" + formatValue(m.Spread, m.Unit)
	}
	return s
}

// comparability lists the differences between two runs that make their
// numbers hard to compare.
func comparability(old, new *Report) []string {
	var out []string
	diff := func(what string, a, b any) {
		if fmt.Sprint(a) != fmt.Sprint(b) {
			out = append(out, fmt.Sprintf("%s differs: %v (old) vs %v (new)", what, a, b))
		}
	}
	diff("cores", old.Machine.Cores, new.Machine.Cores)
	diff("CPU", old.Machine.CPU, new.Machine.CPU)
	diff("Go version", old.Machine.GoVersion, new.Machine.GoVersion)
	diff("target mode", old.Target.Mode, new.Target.Mode)
	diff("server log level (an access log line per request costs about a tenth of GET throughput)", old.Target.ServerLogLevel, new.Target.ServerLogLevel)
	// Every setting, by its name in the report (clients, warm-up, key
	// order, peers, ...): the scenarios aside, whose difference shows as
	// metrics added and removed. Named one by one, only duration, value
	// size and quick were.
	ov, nv := reflect.ValueOf(old.Settings), reflect.ValueOf(new.Settings)
	for i := range ov.NumField() {
		name, _, _ := strings.Cut(ov.Type().Field(i).Tag.Get("json"), ",")
		if name != "" && name != "-" && name != "scenarios" {
			diff(name, ov.Field(i).Interface(), nv.Field(i).Interface())
		}
	}
	diff("interrupted (Ctrl-C: its unfinished runs are missing)", old.Interrupted, new.Interrupted)
	if old.Errors > 0 || new.Errors > 0 {
		out = append(out, fmt.Sprintf("errors: %d (old), %d (new): numbers of runs with errors are suspect", old.Errors, new.Errors))
	}
	return out
}
