package perf

import (
	"fmt"
	"math"
	"math/rand/v2"
	"slices"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

// exactAt is the nearest-rank percentile of sorted values: the smallest
// value such that at least p percent of the values are at most it (the
// first one for p = 0).
func exactAt(sorted []int64, p float64) int64 {
	k := int(math.Ceil(p / 100 * float64(len(sorted)) * (1 - 1e-12)))
	return sorted[min(max(k, 1), len(sorted))-1]
}

// checkBound checks a reported latency (ms) against the exact value (ns):
// never below it, above it by less than 1/1024 of it (the bucket width at
// three significant digits), and never above the exact max.
func checkBound(t *testing.T, what string, exact, maxNs int64, gotMs float64) {
	t.Helper()
	got := gotMs * 1e6
	// The report's millisecond value is rounded to the nanosecond.
	require.GreaterOrEqual(t, got, float64(exact)-0.5, "%s: %v ms is below the exact %d ns", what, gotMs, exact)
	require.LessOrEqual(t, got, float64(exact)+float64(exact)/1024+0.5, "%s: %v ms is above the exact %d ns by more than the bucket width", what, gotMs, exact)
	require.LessOrEqual(t, got, float64(maxNs)+0.5, "%s: %v ms is above the max %d ns", what, gotMs, maxNs)
}

// TestHistogramPercentilesAgainstExact records random and adversarial
// distributions, each in one histogram and spread over several (one per
// worker, merged), and checks every percentile of the summary and of the
// distribution, the max and the mean against the values computed from the
// raw samples.
func TestHistogramPercentilesAgainstExact(t *testing.T) {
	rng := rand.New(rand.NewPCG(7, 11))
	type dist struct {
		name string
		gen  func(n int) []int64
	}
	fill := func(n int, f func(i int) int64) []int64 {
		out := make([]int64, n)
		for i := range out {
			out[i] = f(i)
		}
		return out
	}
	dists := []dist{
		{"uniform 10µs-10ms", func(n int) []int64 {
			return fill(n, func(int) int64 { return 10_000 + rng.Int64N(10_000_000) })
		}},
		{"log-uniform 100ns-10s", func(n int) []int64 {
			return fill(n, func(int) int64 { return int64(math.Exp(math.Log(100) + rng.Float64()*(math.Log(1e10)-math.Log(100)))) })
		}},
		{"all equal", func(n int) []int64 { return fill(n, func(int) int64 { return 250_001 }) }},
		{"bimodal 98/2", func(n int) []int64 {
			return fill(n, func(i int) int64 {
				if i%50 == 0 {
					return 50_000_000 + rng.Int64N(1000)
				}
				return 100_000 + rng.Int64N(1000)
			})
		}},
		{"bimodal 99.5/0.5", func(n int) []int64 {
			return fill(n, func(i int) int64 {
				if i%200 == 0 {
					return 20_000_000
				}
				return 300_000
			})
		}},
		{"a single outlier", func(n int) []int64 {
			return fill(n, func(i int) int64 {
				if i == n/2 {
					return 30 * int64(time.Second)
				}
				return 40_000 + rng.Int64N(100)
			})
		}},
		{"very small (below 2 µs)", func(n int) []int64 { return fill(n, func(int) int64 { return 1 + rng.Int64N(2000) }) }},
		{"very large (1-59 s)", func(n int) []int64 {
			return fill(n, func(int) int64 { return int64(time.Second) + rng.Int64N(58*int64(time.Second)) })
		}},
		{"zeros and a few", func(n int) []int64 {
			return fill(n, func(i int) int64 {
				if i%3 == 0 {
					return 0
				}
				return 17
			})
		}},
	}
	// Counts around the ranks where rounding and the nearest rank part:
	// 160 samples (p99 at rank 158.4), 750 (p99.9 at 749.25), 7 (p90 at 6.3).
	counts := []int{1, 2, 3, 7, 10, 99, 160, 750, 999, 1000, 1001, 8699, 20000}
	percentiles := append([]float64{50, 90, 95, 99, 99.9}, distributionPercentiles...)
	for _, d := range dists {
		for _, n := range counts {
			t.Run(fmt.Sprintf("%s/n=%d", d.name, n), func(t *testing.T) {
				vals := d.gen(n)
				rng.Shuffle(len(vals), func(i, j int) { vals[i], vals[j] = vals[j], vals[i] })
				one := newHistogram()
				workers := make([]*histogram, 1+rng.IntN(8))
				for i := range workers {
					workers[i] = newHistogram()
				}
				var sum float64
				for _, v := range vals {
					one.record(time.Duration(v))
					workers[rng.IntN(len(workers))].record(time.Duration(v))
					sum += float64(v)
				}
				merged := newHistogram()
				for _, w := range workers {
					merged.merge(w)
				}
				sorted := slices.Clone(vals)
				slices.Sort(sorted)
				maxNs := sorted[len(sorted)-1]
				for _, h := range []*histogram{one, merged} {
					require.EqualValues(t, n, h.count())
					for _, p := range percentiles {
						checkBound(t, fmt.Sprintf("p%g", p), exactAt(sorted, p), maxNs, h.at(p))
					}
					s := h.summary()
					require.EqualValues(t, n, s.Count)
					require.InDelta(t, float64(maxNs)/1e6, s.Max, 1e-9, "max is exact")
					checkBound(t, "summary p50", exactAt(sorted, 50), maxNs, s.P50)
					checkBound(t, "summary p90", exactAt(sorted, 90), maxNs, s.P90)
					checkBound(t, "summary p95", exactAt(sorted, 95), maxNs, s.P95)
					checkBound(t, "summary p99", exactAt(sorted, 99), maxNs, s.P99)
					checkBound(t, "summary p99.9", exactAt(sorted, 99.9), maxNs, s.P999)
					mean := sum / float64(n)
					require.InDelta(t, mean/1e6, s.Mean, mean/1e6/1024+1e-6, "mean")
					dist := h.distribution()
					require.Len(t, dist, len(distributionPercentiles))
					require.InDelta(t, float64(sorted[0])/1e6, dist[0].Ms, 1e-9, "p0 is the exact min")
					require.InDelta(t, float64(maxNs)/1e6, dist[len(dist)-1].Ms, 1e-9, "p100 is the exact max")
					for i := 1; i < len(dist); i++ {
						require.GreaterOrEqual(t, dist[i].Ms, dist[i-1].Ms, "the curve never goes down")
					}
				}
				require.Equal(t, one.summary(), merged.summary(), "merging per-worker histograms changes nothing")
				require.Equal(t, one.distribution(), merged.distribution())
			})
		}
	}
}

// TestLoadWindowAndErrors runs a request loop whose operations take 4 ms,
// one in three failing at once: ops/s counts the successful operations
// that started in the window (none of the warm-up's) over the window's
// length, those still in flight at its end included; the failures are
// counted as errors and none of their (0 ms) durations is a latency.
func TestLoadWindowAndErrors(t *testing.T) {
	const clients, opTime = 3, 4 * time.Millisecond
	l := load{clients: clients, warmup: 40 * time.Millisecond, duration: 200 * time.Millisecond, noConn: true}
	var failed [clients]int
	l.op = func(w *worker) (uint8, error) {
		if w.n%3 == 0 {
			failed[w.id]++
			return kindWrite, fmt.Errorf("refused")
		}
		time.Sleep(opTime)
		return kindWrite, nil
	}
	res, err := runLoad(t.Context(), endpoint{}, l)
	require.NoError(t, err)
	require.NotEmpty(t, res.samples)
	endsAfter := 0
	for _, s := range res.samples {
		require.GreaterOrEqual(t, s.at, int64(0), "a request started in the warm-up is not measured")
		require.Less(t, s.at, int64(l.duration), "no request starts after the window")
		require.GreaterOrEqual(t, s.dur, int64(opTime), "a failure's duration is not a latency")
		if s.at+s.dur > int64(l.duration) {
			endsAfter++
		}
	}
	require.Positive(t, endsAfter, "requests in flight at the end of the window are measured")
	st := measure(res.samples, l.duration, res.elapsed)
	require.Equal(t, l.duration, res.elapsed)
	require.InDelta(t, float64(len(res.samples))/l.duration.Seconds(), st.opsPerSec, 1e-9)
	require.GreaterOrEqual(t, st.all.atNs(0), int64(opTime))
	total := 0
	for _, n := range failed {
		total += n
	}
	require.EqualValues(t, total, res.errs.result().Errors, "every failure is counted, warm-up included")
}
