package perf

import (
	"html"
	"regexp"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"
)

// chartTicks are the y and x axis labels of report.html's chart titled
// title (tests' report pages).
func chartTicks(t *testing.T, page, title string) (y, x []string) {
	t.Helper()
	start := strings.Index(page, `aria-label="`+html.EscapeString(title)+`"`)
	require.NotEqual(t, -1, start, "no chart %q", title)
	svg := page[start:]
	svg = svg[:strings.Index(svg, "</svg>")]
	for _, m := range regexp.MustCompile(`class="(ytick|xtick)">([^<]*)<`).FindAllStringSubmatch(svg, -1) {
		if m[1] == "ytick" {
			y = append(y, html.UnescapeString(m[2]))
		} else {
			x = append(x, html.UnescapeString(m[2]))
		}
	}
	return y, x
}

// Every chart labels its axes through one function: times with their
// unit, scaled (10 µs, 1 ms), counts with k, M and G, never a number in
// exponent form. The snapshot chart's time axis read 1e-05, 0.0001,
// 0.001, 0.01 (seconds), the latency charts' 0.0001 ... 1 (ms).
func TestChartAxesAreReadableNumbersWithUnits(t *testing.T) {
	r := &Report{
		Format: ReportFormat,
		Runs: []Measurement{
			{Name: "read-throughput/get/c=1", Clients: 1, Ops: 1, OpsPerSec: 2500, Latency: Latency{P50: 0.004, P99: 0.03}, Distribution: []Quantile{{0, 0.0008}, {50, 0.004}, {99, 0.03}, {100, 0.2}}},
			{Name: "read-throughput/get/c=64", Clients: 64, Ops: 1, OpsPerSec: 40000, Latency: Latency{P50: 0.006, P99: 0.09}, Distribution: []Quantile{{0, 0.001}, {50, 0.006}, {99, 0.09}, {100, 0.5}}},
		},
		Snapshot: []SnapshotRun{
			{Name: "snapshot/keys=50", Keys: 50, SnapshotSeconds: 0.00002, DumpSeconds: 0.00004, ExportSeconds: 0.00003, RestoreSeconds: 0.0004},
			{Name: "snapshot/keys=120", Keys: 120, SnapshotSeconds: 0.0015, DumpSeconds: 0.0002, ExportSeconds: 0.0001, RestoreSeconds: 0.0009},
		},
	}
	page := htmlOf(t, r)

	y, x := chartTicks(t, page, "Snapshot, dump, export and restore time vs keys")
	require.Equal(t, []string{"10 µs", "100 µs", "1 ms", "10 ms"}, y)
	require.Equal(t, []string{"10", "20", "50", "100", "200", "500", "1k"}, x)
	y, _ = chartTicks(t, page, "read-throughput/get: latency by percentile")
	require.Equal(t, []string{"100 ns", "1 µs", "10 µs", "100 µs", "1 ms"}, y)
	y, _ = chartTicks(t, page, "p99 latency vs clients")
	require.Equal(t, []string{"10 µs", "20 µs", "50 µs", "100 µs"}, y)
	y, x = chartTicks(t, page, "Throughput vs clients")
	require.Equal(t, []string{"0", "10k", "20k", "30k", "40k"}, y)
	require.Equal(t, []string{"1", "64"}, x)

	for _, m := range regexp.MustCompile(`class="[xy]tick">([^<]*)<`).FindAllStringSubmatch(page, -1) {
		require.NotRegexp(t, `[0-9]e[-+]?[0-9]`, m[1], "a tick in exponent form")
	}
	require.Equal(t, "0.005", axisNumber(0.005, ""), "three significant digits below 1")
	require.Equal(t, "0.3", axisNumber(0.1+0.2, ""), "no float noise")
	require.Equal(t, "1.5 s", axisNumber(1.5, "s"))
	require.Equal(t, "250 µs", axisNumber(0.25, "ms"))

	// A point's hover text under a microsecond is in ns (it read "0 µs").
	page = htmlOf(t, &Report{Format: ReportFormat, Runs: []Measurement{
		{Name: "read-throughput/cached/c=1", Clients: 1, Ops: 1, OpsPerSec: 9e5, Latency: Latency{P50: 0.0003, P90: 0.0003, P95: 0.0003, P99: 0.0004, P999: 0.0004, Max: 0.0004}, Distribution: []Quantile{{50, 0.0003}, {99, 0.0004}}},
		{Name: "read-throughput/cached/c=2", Clients: 2, Ops: 1, OpsPerSec: 1e6, Latency: Latency{P50: 0.0003, P90: 0.0003, P95: 0.0003, P99: 0.0006, P999: 0.0006, Max: 0.0006}, Distribution: []Quantile{{50, 0.0003}, {99, 0.0006}}},
	}})
	require.NotContains(t, page, " 0 µs<")
	require.Contains(t, page, "p99 latency 400 ns</title>")
}
