package perf

import (
	"fmt"
	"html"
	"html/template"
	"math"
	"strconv"
	"strings"
)

// Charts for report.html, drawn as inline SVG: the page needs no script and
// nothing from the network.

// xy is one point of a series.
type xy struct{ x, y float64 }

type series struct {
	name   string
	points []xy
	// markers only: no line between the points.
	markers bool
}

// axisKind is how an axis maps values.
type axisKind int

const (
	axisLinear axisKind = iota
	axisLog
	// axisNines maps a percentile p to -log10(1 - p/100), so 90, 99, 99.9
	// and 99.99 are evenly spaced; 100 (the maximum) goes at the end.
	axisNines
)

type chart struct {
	title, xLabel, yLabel string
	x, y                  axisKind
	series                []series
	// xTicks, when set, are the x axis's ticks (values, not transformed),
	// e.g. the concurrency levels measured.
	xTicks []float64
}

// Layout, in SVG user units.
const (
	chartW, chartH                     = 760, 340
	padLeft, padRight, padTop, padBott = 78, 190, 34, 48
)

var palette = []string{"#1f77b4", "#d62728", "#2ca02c", "#ff7f0e", "#9467bd", "#8c564b", "#e377c2", "#17becf", "#7f7f7f", "#bcbd22"}

// ninesMax is where axisNines puts the maximum (percentile 100).
const ninesMax = 5

func (k axisKind) transform(v float64) float64 {
	switch k {
	case axisLog:
		return math.Log10(v)
	case axisNines:
		if v >= 100 {
			return ninesMax
		}
		return math.Min(-math.Log10(1-v/100), ninesMax-0.5)
	}
	return v
}

// usable reports whether v can be drawn on the axis (log axes drop <= 0).
func (k axisKind) usable(v float64) bool {
	if math.IsNaN(v) || math.IsInf(v, 0) {
		return false
	}
	return k != axisLog || v > 0
}

// tick is a labelled position on an axis (in transformed units).
type tick struct {
	at    float64
	label string
}

// ticks returns the ticks of an axis over [lo, hi] (transformed units) and
// the range widened to them.
func (k axisKind) ticks(lo, hi float64, unit string) ([]tick, float64, float64) {
	switch k {
	case axisNines:
		var ts []tick
		for i, l := range []string{"p0", "p90", "p99", "p99.9", "p99.99"} {
			ts = append(ts, tick{float64(i), l})
		}
		return append(ts, tick{ninesMax, "max"}), 0, ninesMax
	case axisLog:
		lo, hi = math.Floor(lo), math.Ceil(hi)
		if hi <= lo {
			hi = lo + 1
		}
		var ts []tick
		for e := lo; e <= hi; e++ {
			ts = append(ts, tick{e, axisNumber(math.Pow(10, e), unit)})
			if hi-lo <= 2 && e < hi {
				for _, m := range []float64{2, 5} {
					ts = append(ts, tick{e + math.Log10(m), axisNumber(m*math.Pow(10, e), unit)})
				}
			}
		}
		return ts, lo, hi
	}
	if lo > 0 {
		lo = 0 // linear axes start at zero: differences are not exaggerated
	}
	if hi <= lo {
		hi = lo + 1
	}
	step := niceStep((hi - lo) / 5)
	hi = math.Ceil(hi/step) * step
	var ts []tick
	for v := lo; v <= hi+step/2; v += step {
		ts = append(ts, tick{v, axisNumber(v, unit)})
	}
	return ts, lo, hi
}

// niceStep rounds a step up to 1, 2 or 5 times a power of ten.
func niceStep(raw float64) float64 {
	p := math.Pow(10, math.Floor(math.Log10(raw)))
	for _, m := range []float64{1, 2, 5, 10} {
		if m*p >= raw {
			return m * p
		}
	}
	return 10 * p
}

// axisNumber labels a tick, for every chart: a number in plain
// decimals, never in exponent form, with its unit where the unit scales
// along the axis (times in ns, µs, ms or s; bytes in B, KiB, MiB...), and
// else k, M and G suffixes (the axis's title has the unit). The
// snapshot chart's axis read "1e-05" for 10 µs, and the latency charts'
// "0.01" for 10 µs under a title in ms.
func axisNumber(v float64, unit string) string {
	switch unit {
	case "B":
		return strings.ReplaceAll(byteSize(int64(v)), ".0 ", " ")
	case "s":
		return timeLabel(v)
	case "ms":
		return timeLabel(v / 1e3)
	}
	a := math.Abs(v)
	switch {
	case a >= 1e9:
		return plainNumber(v/1e9) + "G"
	case a >= 1e6:
		return plainNumber(v/1e6) + "M"
	case a >= 1e3:
		return plainNumber(v/1e3) + "k"
	}
	return plainNumber(v)
}

// timeLabel is a time given in seconds, in the largest of s, ms, µs and
// ns in which it is at least 1: 10 µs, 2.5 ms, 1 s.
func timeLabel(sec float64) string {
	a := math.Abs(sec)
	switch {
	case a == 0:
		return "0"
	case a >= 1:
		return plainNumber(sec) + " s"
	case a >= 1e-3:
		return plainNumber(sec*1e3) + " ms"
	case a >= 1e-6:
		return plainNumber(sec*1e6) + " µs"
	}
	return plainNumber(sec*1e9) + " ns"
}

// plainNumber prints v in decimals without trailing zeros: to the
// hundredth, and below 1 to three significant digits (0.005, not 0.01;
// 0.00001, not 1e-05); the float noise of a tick's sum (0.30000000000000004)
// goes with the digits dropped.
func plainNumber(v float64) string {
	decimals := 2
	if a := math.Abs(v); a > 0 && a < 1 {
		decimals = max(decimals, 2-int(math.Floor(math.Log10(a))))
	}
	s := strconv.FormatFloat(v, 'f', decimals, 64)
	if strings.Contains(s, ".") {
		s = strings.TrimRight(strings.TrimRight(s, "0"), ".")
	}
	if s == "-0" {
		return "0"
	}
	return s
}

// svg draws the chart. Each point carries a tooltip with its values.
func (c chart) svg(xUnit, yUnit string) template.HTML {
	xlo, xhi, ylo, yhi := math.Inf(1), math.Inf(-1), math.Inf(1), math.Inf(-1)
	n := 0
	for _, s := range c.series {
		for _, p := range s.points {
			if !c.x.usable(p.x) || !c.y.usable(p.y) {
				continue
			}
			x, y := c.x.transform(p.x), c.y.transform(p.y)
			xlo, xhi = math.Min(xlo, x), math.Max(xhi, x)
			ylo, yhi = math.Min(ylo, y), math.Max(yhi, y)
			n++
		}
	}
	var b strings.Builder
	fmt.Fprintf(&b, `<svg class="chart" viewBox="0 0 %d %d" width="%d" height="%d" role="img" aria-label="%s" xmlns="http://www.w3.org/2000/svg">`,
		chartW, chartH, chartW, chartH, html.EscapeString(c.title))
	fmt.Fprintf(&b, `<text x="%d" y="20" class="title">%s</text>`, padLeft, html.EscapeString(c.title))
	if n == 0 {
		fmt.Fprintf(&b, `<text x="%d" y="%d">no data</text></svg>`, padLeft, chartH/2)
		return template.HTML(b.String()) //nolint:gosec // built from escaped text
	}
	xt, xlo, xhi := c.x.ticks(xlo, xhi, xUnit)
	if len(c.xTicks) > 0 {
		xt = xt[:0]
		xlo, xhi = math.Inf(1), math.Inf(-1)
		for _, v := range c.xTicks {
			if c.x.usable(v) {
				t := c.x.transform(v)
				xt = append(xt, tick{t, axisNumber(v, xUnit)})
				xlo, xhi = math.Min(xlo, t), math.Max(xhi, t)
			}
		}
		pad := math.Max((xhi-xlo)*0.04, 0.1) // room around the first and last tick
		xlo, xhi = xlo-pad, xhi+pad
	}
	yt, ylo, yhi := c.y.ticks(ylo, yhi, yUnit)
	plotW, plotH := float64(chartW-padLeft-padRight), float64(chartH-padTop-padBott)
	px := func(v float64) float64 { return padLeft + (v-xlo)/(xhi-xlo)*plotW }
	py := func(v float64) float64 { return padTop + plotH - (v-ylo)/(yhi-ylo)*plotH }

	for _, t := range yt {
		y := py(t.at)
		fmt.Fprintf(&b, `<line x1="%d" x2="%.1f" y1="%.1f" y2="%.1f" class="grid"/>`, padLeft, padLeft+plotW, y, y)
		fmt.Fprintf(&b, `<text x="%d" y="%.1f" class="ytick">%s</text>`, padLeft-6, y+4, html.EscapeString(t.label))
	}
	for _, t := range xt {
		x := px(t.at)
		fmt.Fprintf(&b, `<line x1="%.1f" x2="%.1f" y1="%d" y2="%.1f" class="grid"/>`, x, x, padTop, padTop+plotH)
		fmt.Fprintf(&b, `<text x="%.1f" y="%.1f" class="xtick">%s</text>`, x, padTop+plotH+16, html.EscapeString(t.label))
	}
	fmt.Fprintf(&b, `<rect x="%d" y="%d" width="%.1f" height="%.1f" class="frame"/>`, padLeft, padTop, plotW, plotH)
	fmt.Fprintf(&b, `<text x="%.1f" y="%d" class="xlabel">%s</text>`, padLeft+plotW/2, chartH-8, html.EscapeString(c.xLabel))
	fmt.Fprintf(&b, `<text transform="translate(16 %.1f) rotate(-90)" class="ylabel">%s</text>`, padTop+plotH/2, html.EscapeString(c.yLabel))

	for i, s := range c.series {
		color := palette[i%len(palette)]
		var path strings.Builder
		var dots strings.Builder
		for _, p := range s.points {
			if !c.x.usable(p.x) || !c.y.usable(p.y) {
				continue
			}
			x, y := px(c.x.transform(p.x)), py(c.y.transform(p.y))
			if path.Len() == 0 {
				fmt.Fprintf(&path, "M%.1f %.1f", x, y)
			} else {
				fmt.Fprintf(&path, " L%.1f %.1f", x, y)
			}
			tip := fmt.Sprintf("%s: %s %s, %s %s", s.name, c.xLabel, pointLabel(c.x, p.x, xUnit), c.yLabel, pointLabel(c.y, p.y, yUnit))
			fmt.Fprintf(&dots, `<circle cx="%.1f" cy="%.1f" r="3.5" fill="%s"><title>%s</title></circle>`, x, y, color, html.EscapeString(tip))
		}
		if !s.markers && path.Len() > 0 {
			fmt.Fprintf(&b, `<path d="%s" stroke="%s" class="line"/>`, path.String(), color)
		}
		b.WriteString(dots.String())
		ly := padTop + 8 + i*18
		fmt.Fprintf(&b, `<rect x="%.1f" y="%d" width="12" height="12" fill="%s"/>`, padLeft+plotW+14, ly-9, color)
		fmt.Fprintf(&b, `<text x="%.1f" y="%d" class="legend">%s</text>`, padLeft+plotW+32, ly+1, html.EscapeString(s.name))
	}
	b.WriteString(`</svg>`)
	return template.HTML(b.String()) //nolint:gosec // every text in it is escaped
}

func pointLabel(k axisKind, v float64, unit string) string {
	if k == axisNines {
		if v >= 100 {
			return "max"
		}
		return fmt.Sprintf("p%g", v)
	}
	if unit == "B" {
		return byteSize(int64(v))
	}
	return formatValue(v, unit)
}

// barChart is a grouped bar chart: one group per x label, one bar per
// series in each group, on a linear axis from zero.
type barChart struct {
	title, yLabel, unit string
	groups              []string
	series              []string
	values              [][]float64 // [series][group]; <= 0: no bar
}

func (c barChart) svg() template.HTML {
	var b strings.Builder
	fmt.Fprintf(&b, `<svg class="chart" viewBox="0 0 %d %d" width="%d" height="%d" role="img" aria-label="%s" xmlns="http://www.w3.org/2000/svg">`,
		chartW, chartH, chartW, chartH, html.EscapeString(c.title))
	fmt.Fprintf(&b, `<text x="%d" y="20" class="title">%s</text>`, padLeft, html.EscapeString(c.title))
	hi := 0.0
	for _, vs := range c.values {
		for _, v := range vs {
			hi = math.Max(hi, v)
		}
	}
	if hi <= 0 || len(c.groups) == 0 {
		fmt.Fprintf(&b, `<text x="%d" y="%d">no data</text></svg>`, padLeft, chartH/2)
		return template.HTML(b.String()) //nolint:gosec // built from escaped text
	}
	yt, ylo, yhi := axisLinear.ticks(0, hi, c.unit)
	plotW, plotH := float64(chartW-padLeft-padRight), float64(chartH-padTop-padBott)
	py := func(v float64) float64 { return padTop + plotH - (v-ylo)/(yhi-ylo)*plotH }
	for _, t := range yt {
		y := py(t.at)
		fmt.Fprintf(&b, `<line x1="%d" x2="%.1f" y1="%.1f" y2="%.1f" class="grid"/>`, padLeft, padLeft+plotW, y, y)
		fmt.Fprintf(&b, `<text x="%d" y="%.1f" class="ytick">%s</text>`, padLeft-6, y+4, html.EscapeString(t.label))
	}
	fmt.Fprintf(&b, `<rect x="%d" y="%d" width="%.1f" height="%.1f" class="frame"/>`, padLeft, padTop, plotW, plotH)
	fmt.Fprintf(&b, `<text transform="translate(16 %.1f) rotate(-90)" class="ylabel">%s</text>`, padTop+plotH/2, html.EscapeString(c.yLabel))
	groupW := plotW / float64(len(c.groups))
	barW := groupW * 0.8 / float64(max(len(c.series), 1))
	for g, label := range c.groups {
		x0 := padLeft + float64(g)*groupW + groupW*0.1
		// Every other label a line lower, so that long ones do not meet.
		fmt.Fprintf(&b, `<text x="%.1f" y="%.1f" class="xtick">%s</text>`, x0+groupW*0.4, padTop+plotH+16+float64(g%2)*14, html.EscapeString(label))
		for i := range c.series {
			v := c.values[i][g]
			if v <= 0 {
				continue
			}
			y := py(v)
			tip := fmt.Sprintf("%s, %s: %s", label, c.series[i], formatValue(v, c.unit))
			fmt.Fprintf(&b, `<rect x="%.1f" y="%.1f" width="%.1f" height="%.1f" fill="%s"><title>%s</title></rect>`,
				x0+float64(i)*barW, y, barW*0.92, padTop+plotH-y, palette[i%len(palette)], html.EscapeString(tip))
		}
	}
	for i, name := range c.series {
		ly := padTop + 8 + i*18
		fmt.Fprintf(&b, `<rect x="%.1f" y="%d" width="12" height="12" fill="%s"/>`, padLeft+plotW+14, ly-9, palette[i%len(palette)])
		fmt.Fprintf(&b, `<text x="%.1f" y="%d" class="legend">%s</text>`, padLeft+plotW+32, ly+1, html.EscapeString(name))
	}
	b.WriteString(`</svg>`)
	return template.HTML(b.String()) //nolint:gosec // every text in it is escaped
}
