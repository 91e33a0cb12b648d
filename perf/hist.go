package perf

import (
	"math"
	"time"

	hdrhistogram "github.com/HdrHistogram/hdrhistogram-go"
)

// histMax is the largest latency a histogram tells apart; longer ones are
// recorded as histMax (and counted in histogram.clamped).
const histMax = int64(60 * time.Second)

// histogram is an HDR histogram of durations in nanoseconds, with three
// significant digits: every percentile it reports is within 0.1% of the
// recorded value it stands for. It is not safe for concurrent use.
type histogram struct {
	h       *hdrhistogram.Histogram
	clamped int64
}

func newHistogram() *histogram {
	return &histogram{h: hdrhistogram.New(1, histMax, 3)}
}

// newCoarseHistogram has two significant digits (values within 1%) and
// takes a tenth of the memory: for the many per-interval histograms whose
// only use is the spread between intervals.
func newCoarseHistogram() *histogram {
	return &histogram{h: hdrhistogram.New(1, histMax, 2)}
}

// record adds one duration; a negative one counts as 0.
func (h *histogram) record(d time.Duration) {
	v := max(int64(d), 0)
	if v > histMax {
		v = histMax
		h.clamped++
	}
	_ = h.h.RecordValue(v) // cannot fail: v is within [0, histMax]
}

// merge adds every value of o.
func (h *histogram) merge(o *histogram) {
	h.h.Merge(o.h)
	h.clamped += o.clamped
}

func (h *histogram) count() int64 { return h.h.TotalCount() }

// at returns the value at percentile p (0 to 100) in milliseconds.
func (h *histogram) at(p float64) float64 {
	return nsToMs(h.h.ValueAtPercentile(p))
}

// Latency summarizes a distribution of latencies. Every time is in
// milliseconds.
type Latency struct {
	// Count is the number of latencies recorded.
	Count int64   `json:"count"`
	Mean  float64 `json:"mean"`
	P50   float64 `json:"p50"`
	P90   float64 `json:"p90"`
	P95   float64 `json:"p95"`
	P99   float64 `json:"p99"`
	P999  float64 `json:"p999"`
	Max   float64 `json:"max"`
}

// summary returns the histogram's percentiles.
func (h *histogram) summary() Latency {
	if h.count() == 0 {
		return Latency{}
	}
	return Latency{
		Count: h.count(),
		Mean:  round3(h.h.Mean() / 1e6),
		P50:   h.at(50),
		P90:   h.at(90),
		P95:   h.at(95),
		P99:   h.at(99),
		P999:  h.at(99.9),
		Max:   nsToMs(h.h.Max()),
	}
}

// Quantile is one point of a latency distribution: Percentile percent of
// the latencies are at most Ms milliseconds.
type Quantile struct {
	Percentile float64 `json:"percentile"`
	Ms         float64 `json:"ms"`
}

// distributionPercentiles are the points of a distribution curve, denser
// towards the tail, where the differences are.
var distributionPercentiles = []float64{0, 10, 25, 50, 75, 90, 95, 99, 99.5, 99.9, 99.95, 99.99, 100}

// distribution returns the latency at each of distributionPercentiles.
func (h *histogram) distribution() []Quantile {
	if h.count() == 0 {
		return []Quantile{} // a list is [] when empty, never null (REPORT.md)
	}
	out := make([]Quantile, len(distributionPercentiles))
	for i, p := range distributionPercentiles {
		out[i] = Quantile{Percentile: p, Ms: h.at(p)}
	}
	return out
}

func nsToMs(ns int64) float64 { return round3(float64(ns) / 1e6) }

// round3 rounds to three decimals (a microsecond, for milliseconds), which
// is below the histograms' precision anyway and keeps report.json readable.
func round3(v float64) float64 { return math.Round(v*1000) / 1000 }

// round6 rounds to six decimals (a microsecond, for seconds).
func round6(v float64) float64 { return math.Round(v*1e6) / 1e6 }

// mean returns the arithmetic mean of vs (0 for none).
func mean(vs []float64) float64 {
	if len(vs) == 0 {
		return 0
	}
	var sum float64
	for _, v := range vs {
		sum += v
	}
	return sum / float64(len(vs))
}

// stddev returns the sample standard deviation of vs (0 for fewer than two).
func stddev(vs []float64) float64 {
	if len(vs) < 2 {
		return 0
	}
	m := mean(vs)
	var ss float64
	for _, v := range vs {
		ss += (v - m) * (v - m)
	}
	return math.Sqrt(ss / float64(len(vs)-1))
}
