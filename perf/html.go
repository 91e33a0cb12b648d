package perf

import (
	"bytes"
	_ "embed"
	"encoding/json"
	"fmt"
	"html/template"
	"reflect"
	"slices"
	"strconv"
	"strings"
	"sync"

	"github.com/framework0/ctxd/internal/fsutil"
)

//go:embed report.html.tmpl
var reportTemplate string

// reportPage is parsed at its first use, not when the program starts:
// every ctxd command links this package, and the parse was 2 ms and 4,000
// allocations of each `ctxd get`'s start.
var reportPage = sync.OnceValue(func() *template.Template {
	return template.Must(template.New("report").Funcs(template.FuncMap{
		"ms":            ms,
		"secs":          secs,
		"bytes":         byteSize,
		"commas":        commas,
		"num":           func(v float64) string { return formatValue(v, "") },
		"per":           perBytes,
		"ratio":         ratio,
		"ops":           opsCell,
		"latency":       latencyCell,
		"opsRatio":      opsRatio,
		"lat":           latencyOf,
		"side":          sideLatency,
		"writes":        writesCell,
		"missed":        missedCell,
		"measuredSecs":  measuredSecs,
		"measuredBytes": measuredBytes,
		"where":         processAbout,
		"ratioOf": func(c Comparison, peer string) *Ratio {
			for i := range c.Ratios {
				if c.Ratios[i].Peer == peer {
					return &c.Ratios[i]
				}
			}
			return nil
		},
	}).Parse(reportTemplate))
})

// chartBlock is one chart of the page.
type chartBlock struct {
	Title string
	SVG   template.HTML
}

// htmlPage is what report.html.tmpl renders.
type htmlPage struct {
	R       *Report
	Summary string
	LatencyCharts,
	ThroughputCharts,
	FanoutCharts,
	DiskCharts,
	SnapshotCharts,
	PeerCharts []chartBlock
	// AtScalePairs: each run on the fresh database and its twin on the
	// large one (--preload).
	AtScalePairs [][2]*Measurement
	ErrorLines   []string
	Settings     []settingRow
	// CommitNotes say why runs that write have no writes/commit.
	CommitNotes []string
}

// settingRow is one setting, named as in report.json, its value as JSON.
type settingRow struct{ Name, Value string }

// settingRows lists the settings in their declaration order.
func settingRows(st Settings) []settingRow {
	var rows []settingRow
	v := reflect.ValueOf(st)
	for i := range v.NumField() {
		name, _, _ := strings.Cut(v.Type().Field(i).Tag.Get("json"), ",")
		b, err := json.Marshal(v.Field(i).Interface())
		if err != nil {
			continue
		}
		rows = append(rows, settingRow{Name: name, Value: string(b)})
	}
	return rows
}

// WriteHTML writes report.html: the report's tables and charts in one file
// that opens offline (inline SVG and CSS, no script, nothing fetched).
func (r *Report) WriteHTML(path string) error {
	p := htmlPage{R: r, Summary: r.Summary(), ErrorLines: r.errorSamples(), Settings: settingRows(r.Settings), AtScalePairs: r.atScalePairs(),
		CommitNotes: r.commitNotes()}
	p.LatencyCharts = latencyCharts(r)
	p.ThroughputCharts = throughputCharts(r)
	p.FanoutCharts = fanoutCharts(r)
	p.DiskCharts = diskCharts(r)
	p.SnapshotCharts = snapshotCharts(r)
	p.PeerCharts = peerCharts(r)
	var b bytes.Buffer
	if err := reportPage().Execute(&b, p); err != nil {
		return fmt.Errorf("render report.html: %w", err)
	}
	return fsutil.WriteFileBytes(path, 0o644, b.Bytes())
}

// runGroup is the runs of one scenario and op at several concurrency
// levels: the run names without their last "/c=N" part.
type runGroup struct {
	name string
	runs []Measurement
}

func groupRuns(runs []Measurement) []runGroup {
	var groups []runGroup
	for _, x := range runs {
		name := x.Name
		if i := strings.LastIndex(name, "/c="); i >= 0 {
			name = name[:i]
		}
		j := slices.IndexFunc(groups, func(g runGroup) bool { return g.name == name })
		if j < 0 {
			groups = append(groups, runGroup{name: name})
			j = len(groups) - 1
		}
		groups[j].runs = append(groups[j].runs, x)
	}
	return groups
}

func distributionPoints(qs []Quantile) []xy {
	var pts []xy
	for _, q := range qs {
		pts = append(pts, xy{q.Percentile, q.Ms})
	}
	return pts
}

// latencyCharts: for each group of runs, the latency distribution of each
// concurrency level.
func latencyCharts(r *Report) []chartBlock {
	var out []chartBlock
	for _, g := range groupRuns(r.Runs) {
		c := chart{title: g.name + ": latency by percentile", xLabel: "percentile", yLabel: "latency", x: axisNines, y: axisLog}
		for _, x := range g.runs {
			name := strconv.Itoa(x.Clients) + " clients"
			if x.Clients == 1 {
				name = "1 client"
			}
			if x.Ops == 0 {
				name += ": " + noOpCompleted
			}
			c.series = append(c.series, series{name: name, points: distributionPoints(x.Distribution)})
		}
		out = append(out, chartBlock{Title: c.title, SVG: c.svg("", "ms")})
	}
	return out
}

// throughputCharts: ops/s against clients for every group measured at more
// than one level, and the p99 against clients.
func throughputCharts(r *Report) []chartBlock {
	tput := chart{title: "Throughput vs clients", xLabel: "clients", yLabel: "ops/s", x: axisLog, y: axisLinear}
	p99 := chart{title: "p99 latency vs clients", xLabel: "clients", yLabel: "p99 latency", x: axisLog, y: axisLog}
	var levels []float64
	for _, x := range r.Runs {
		if !slices.Contains(levels, float64(x.Clients)) {
			levels = append(levels, float64(x.Clients))
		}
	}
	slices.Sort(levels)
	tput.xTicks, p99.xTicks = levels, levels
	for _, g := range groupRuns(r.Runs) {
		if len(g.runs) < 2 {
			continue
		}
		var a, b []xy
		for _, x := range g.runs {
			if x.Ops == 0 {
				continue // no point: a 0 would read as a measurement
			}
			a = append(a, xy{float64(x.Clients), x.OpsPerSec})
			b = append(b, xy{float64(x.Clients), x.Latency.P99})
		}
		tput.series = append(tput.series, series{name: g.name, points: a})
		p99.series = append(p99.series, series{name: g.name, points: b})
	}
	if len(tput.series) == 0 {
		return nil
	}
	return []chartBlock{{tput.title, tput.svg("", "ops/s")}, {p99.title, p99.svg("", "ms")}}
}

// fanoutCharts: the delivery latency distributions per subscriber count.
func fanoutCharts(r *Report) []chartBlock {
	if len(r.Fanout) == 0 {
		return nil
	}
	ack := chart{title: "Fan-out: write acknowledged → arrival, by percentile", xLabel: "percentile", yLabel: "latency", x: axisNines, y: axisLog}
	send := chart{title: "Fan-out: send → arrival, by percentile", xLabel: "percentile", yLabel: "latency", x: axisNines, y: axisLog}
	for _, f := range r.Fanout {
		name := fmt.Sprintf("%s subscribers", commas(int64(f.Subscribers)))
		ack.series = append(ack.series, series{name: name, points: distributionPoints(f.Distribution)})
		send.series = append(send.series, series{name: name, points: distributionPoints(f.SendDistribution)})
	}
	return []chartBlock{{ack.title, ack.svg("", "ms")}, {send.title, send.svg("", "ms")}}
}

// diskCharts: file, in-use and logical bytes against the versions held,
// with the sizes after compaction and defrag as markers.
func diskCharts(r *Report) []chartBlock {
	var out []chartBlock
	for _, d := range r.DiskGrowth {
		c := chart{title: d.Name + ": database size", xLabel: "versions held", yLabel: "bytes", x: axisLinear, y: axisLinear}
		var file, inUse, logical []xy
		for _, p := range d.Points {
			file = append(file, xy{float64(p.Versions), float64(p.FileBytes)})
			inUse = append(inUse, xy{float64(p.Versions), float64(p.InUseBytes)})
			logical = append(logical, xy{float64(p.Versions), float64(p.LogicalBytes)})
		}
		c.series = []series{
			{name: "file", points: file},
			{name: "in use", points: inUse},
			{name: "logical (keys+values)", points: logical},
			{name: "file after compaction", markers: true, points: []xy{{float64(d.AfterCompaction.Versions), float64(d.AfterCompaction.FileBytes)}}},
			{name: "file after defrag", markers: true, points: []xy{{float64(d.AfterDefrag.Versions), float64(d.AfterDefrag.FileBytes)}}},
		}
		out = append(out, chartBlock{Title: c.title, SVG: c.svg("", "B")})
		per := chart{title: d.Name + ": file bytes per version", xLabel: "versions held", yLabel: "bytes/version", x: axisLinear, y: axisLinear}
		var pts []xy
		for _, p := range d.Points {
			pts = append(pts, xy{float64(p.Versions), p.BytesPerVersion})
		}
		per.series = []series{{name: "file / versions", points: pts}}
		out = append(out, chartBlock{Title: per.title, SVG: per.svg("", "B")})
	}
	return out
}

// snapshotCharts: the times against the number of keys.
func snapshotCharts(r *Report) []chartBlock {
	if len(r.Snapshot) == 0 {
		return nil
	}
	c := chart{title: "Snapshot, dump, export and restore time vs keys", xLabel: "keys", yLabel: "time", x: axisLog, y: axisLog}
	var snap, dump, export, restore []xy
	for _, s := range r.Snapshot {
		k := float64(s.Keys)
		snap = append(snap, xy{k, s.SnapshotSeconds})
		dump = append(dump, xy{k, s.DumpSeconds})
		export = append(export, xy{k, s.ExportSeconds})
		restore = append(restore, xy{k, s.RestoreSeconds})
	}
	c.series = []series{{name: "snapshot", points: snap}, {name: "dump (JSON file)", points: dump}, {name: "export (JSON)", points: export}, {name: "restore", points: restore}}
	return []chartBlock{{c.title, c.svg("", "s")}}
}

// peerCharts: ops/s of every comparison with the servers' bars side by
// side, then each comparison's latency curves, one per server.
func peerCharts(r *Report) []chartBlock {
	if len(r.Comparisons) == 0 {
		return nil
	}
	bars := barChart{title: "Peers: ops/s (medians of the rounds)", yLabel: "ops/s", unit: ""}
	for _, p := range r.Peers {
		if p.Error == "" { // a peer that did not start has no bars
			bars.series = append(bars.series, p.Name)
		}
	}
	bars.values = make([][]float64, len(bars.series))
	for _, c := range r.Comparisons {
		bars.groups = append(bars.groups, strings.TrimPrefix(c.Name, scenarioPeers+"/"))
		for i, name := range bars.series {
			v := 0.0
			if x := c.result(name); x != nil {
				v = x.OpsPerSec
			}
			bars.values[i] = append(bars.values[i], v)
		}
	}
	out := []chartBlock{{bars.title, bars.svg()}}
	for _, c := range r.Comparisons {
		ch := chart{title: c.Name + ": latency by percentile", xLabel: "percentile", yLabel: "latency", x: axisNines, y: axisLog}
		for _, x := range c.Results {
			name := x.Peer
			if x.OpsPerSec == 0 { // no curve: say why, as latencyCharts
				name += ": " + noOpCompleted
			}
			ch.series = append(ch.series, series{name: name, points: distributionPoints(x.Distribution)})
		}
		out = append(out, chartBlock{Title: ch.title, SVG: ch.svg("", "ms")})
	}
	return out
}
