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
	// VerdictNotMeasured: a run could not measure the metric (a server
	// that answered nothing has no rate or latency), so there is nothing
	// to compare, rather than a 0 that compares better or worse.
	VerdictNotMeasured = "not measured"
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
	// OldNotMeasured and NewNotMeasured: that run could not measure the
	// metric (its Metric has no value); the verdict is then
	// VerdictNotMeasured.
	OldNotMeasured bool
	NewNotMeasured bool
	// Change is (new - old) / old; NaN when old is 0 or a side is missing
	// or not measured.
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
// report's order, then those only the old one has. A metric either run
// could not measure (notMeasuredMetrics: a report from before such a
// number was left out still holds its 0) is "not measured", whatever the
// other run measured.
func Compare(old, new *Report, minChange float64) []Delta {
	olds, oldOrder := comparedMetrics(old)
	news, newOrder := comparedMetrics(new)
	var out []Delta
	for _, name := range newOrder {
		n, o := news[name], olds[name]
		d := Delta{Name: name, Unit: n.metric.Unit, New: n.metric, NewNotMeasured: n.notMeasured, Change: math.NaN()}
		if o != nil {
			d.Old, d.OldNotMeasured = o.metric, o.notMeasured
		}
		switch {
		case d.OldNotMeasured || d.NewNotMeasured:
			d.Verdict = VerdictNotMeasured
		case o == nil:
			d.Verdict = VerdictAdded
		default:
			if o.metric.Value != 0 {
				d.Change = (n.metric.Value - o.metric.Value) / o.metric.Value
			}
			d.Verdict, d.Threshold = Verdict(o.metric, n.metric, minChange)
		}
		out = append(out, d)
	}
	for _, name := range oldOrder {
		if o := olds[name]; news[name] == nil {
			d := Delta{Name: name, Unit: o.metric.Unit, Old: o.metric, OldNotMeasured: o.notMeasured, Change: math.NaN(), Verdict: VerdictRemoved}
			if o.notMeasured {
				d.Verdict = VerdictNotMeasured
			}
			out = append(out, d)
		}
	}
	return out
}

// comparedMetric is a report's metric for Compare, or one its run could
// not measure.
type comparedMetric struct {
	metric      Metric
	notMeasured bool
}

// comparedMetrics returns r's metrics by name, and their names in order:
// those r holds (withErrorsMetric), then those its parts could not
// measure (notMeasuredMetrics), which count as not measured where r holds
// a 0 for them (a report from before they were left out); a value other
// than 0 that r holds stands.
func comparedMetrics(r *Report) (map[string]*comparedMetric, []string) {
	byName := map[string]*comparedMetric{}
	var order []string
	for _, m := range withErrorsMetric(r) {
		if byName[m.Name] == nil {
			order = append(order, m.Name)
		}
		byName[m.Name] = &comparedMetric{metric: m}
	}
	for _, m := range notMeasuredMetrics(r) {
		held := byName[m.Name]
		if held != nil && held.metric.Value != 0 {
			continue
		}
		if held == nil {
			order = append(order, m.Name)
		}
		byName[m.Name] = &comparedMetric{metric: m, notMeasured: true}
	}
	return byName, order
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
		oldS, newS, change, band := sideOf(d.Old, d.OldNotMeasured), sideOf(d.New, d.NewNotMeasured), "", ""
		if !math.IsNaN(d.Change) {
			change = fmt.Sprintf("%+.1f%%", d.Change*100)
		}
		if d.Threshold > 0 {
			band = "±" + formatValue(d.Threshold, d.Unit)
		}
		line := fmt.Sprintf("%s\t%s\t%s\t%s\t%s\t%s", d.Name, oldS, newS, change, band, d.Verdict)
		if withErrors > 0 && d.Name != metricErrors && (d.Old.Errors > 0 || d.New.Errors > 0) {
			line += fmt.Sprintf("\t%s → %s", errorCount(d.Old), errorCount(d.New))
		}
		fmt.Fprintln(tw, line)
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	_, err := fmt.Fprintf(w, "%d metrics: %d worse, %d better, %d noise, %d added, %d removed, %d not measured\n",
		len(ds), counts[VerdictWorse], counts[VerdictBetter], counts[VerdictNoise], counts[VerdictAdded], counts[VerdictRemoved], counts[VerdictNotMeasured])
	if err == nil && withErrors > 0 {
		_, err = fmt.Fprintf(w, "%d metrics of runs with errors (RUN ERRORS): their numbers are of the requests that succeeded, and suspect\n", withErrors)
	}
	return err
}

// errorCount prints a metric's run errors ("-" when the run has no such
// metric).
func errorCount(m Metric) string {
	if m.Name == "" {
		return "-"
	}
	return fmt.Sprint(m.Errors)
}

// sideOf prints one run's side of a delta: its value, "not measured", or
// "-" when the run has no such metric (added, removed).
func sideOf(m Metric, notMeasured bool) string {
	switch {
	case notMeasured:
		return VerdictNotMeasured
	case m.Name == "":
		return "-"
	}
	return formatWithSpread(m)
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
