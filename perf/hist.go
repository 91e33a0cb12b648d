package perf

import (
	"math"
	"time"

	hdrhistogram "github.com/HdrHistogram/hdrhistogram-go"
)

// histMax is the largest latency a histogram tells apart; longer ones are
// recorded as histMax (and counted in histogram.clamped). An hour: a
// fan-out run far behind its writes has send-to-arrival latencies of
// minutes (at 60 s they were clamped, p99 and max 60,000 ms); the range
// costs 48 KiB more per histogram (264 KiB; 36 KiB at two digits).
const histMax = int64(time.Hour)

// histogram is an HDR histogram of durations in nanoseconds, with three
// significant digits, and the exact smallest and largest values recorded.
// It is not safe for concurrent use.
//
// The buckets: below 2,048 ns every nanosecond is a bucket of its own;
// from there, each doubling of the value (2,048-4,095 ns, 4,096-8,191 ns,
// ...) is cut into 1,024 buckets of equal width, a width of at most 1/1024
// of the values it holds. A percentile is the nearest rank (the smallest
// recorded value with at least p percent of the values at most it: the
// k-th smallest of n, k = ceil(p/100 x n)), reported as the highest value
// of that value's bucket, and never above the exact largest value: it is
// never below the exact percentile, and above it by less than 1/1024
// (0.098%) of it; exact below 2,048 ns. The largest value (p100, Max) and
// the smallest (p0) are exact; the mean is within 0.05%.
type histogram struct {
	h        *hdrhistogram.Histogram
	clamped  int64
	min, max int64 // of the values recorded (after clamping); valid when count() > 0
}

func newHistogram() *histogram {
	return &histogram{h: hdrhistogram.New(1, histMax, 3)}
}

// newCoarseHistogram has two significant digits (buckets of at most 1/128
// of their values) and takes a tenth of the memory: for the many
// per-interval histograms whose only use is the spread between intervals.
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
	h.note(v, v)
	_ = h.h.RecordValue(v) // cannot fail: v is within [0, histMax]
}

// note widens the exact range to lo..hi (before the values are counted).
func (h *histogram) note(lo, hi int64) {
	if h.count() == 0 {
		h.min, h.max = lo, hi
		return
	}
	h.min, h.max = min(h.min, lo), max(h.max, hi)
}

// merge adds every value of o.
func (h *histogram) merge(o *histogram) {
	if o.count() == 0 {
		return
	}
	h.note(o.min, o.max)
	h.h.Merge(o.h)
	h.clamped += o.clamped
}

func (h *histogram) count() int64 { return h.h.TotalCount() }

// atNs returns the value at percentile p (0 to 100) in nanoseconds: the
// nearest rank, as the type's comment says (0 when empty).
func (h *histogram) atNs(p float64) int64 {
	n := h.count()
	switch {
	case n == 0:
		return 0
	case p <= 0:
		return h.min
	case p >= 100:
		return h.max
	}
	// The rank k = ceil(p/100 x n), less a hair for p/100 x n that
	// floating point puts just above an integer (99.9/100 x 1000 is
	// 999.0000000000001). hdrhistogram-go rounds the rank to the nearest
	// instead (k = floor(p/100 x n + 0.5)), a rank too low when the
	// fraction is below one half: the p99 of 160 values was the 158th
	// and the p99.9 of 750 the 749th, one value under the tail. Asking
	// it for the percentile k/n x 100 gives rank k exactly.
	k := int64(math.Ceil(p / 100 * float64(n) * (1 - 1e-12)))
	k = min(max(k, 1), n)
	return min(h.h.ValueAtPercentile(float64(k)/float64(n)*100), h.max)
}

// at returns the value at percentile p (0 to 100) in milliseconds.
func (h *histogram) at(p float64) float64 { return nsToMs(h.atNs(p)) }

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
		Mean:  nsToMs(int64(math.Round(h.h.Mean()))),
		P50:   h.at(50),
		P90:   h.at(90),
		P95:   h.at(95),
		P99:   h.at(99),
		P999:  h.at(99.9),
		Max:   nsToMs(h.max),
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

// nsToMs returns ns in milliseconds, to the nanosecond (six decimals):
// rounded to the microsecond, a 20 µs GET's percentiles were 2.5% off,
// far coarser than the histograms' 0.1%, and latencies below 0.5 µs 0.
func nsToMs(ns int64) float64 { return round6(float64(ns) / 1e6) }

// round3 rounds to three decimals (a microsecond, for milliseconds).
func round3(v float64) float64 { return math.Round(v*1000) / 1000 }

// round6 rounds to six decimals: a microsecond for seconds, a nanosecond
// for milliseconds.
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
