package perf

import (
	"context"
	"math"
	"math/rand/v2"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

// within checks that got is within rel (relative) of want.
func within(t *testing.T, want, got, rel float64, what string) {
	t.Helper()
	require.InDelta(t, want, got, math.Abs(want)*rel, "%s: want %v, got %v (±%.2f%%)", what, want, got, rel*100)
}

func TestHistogramUniform(t *testing.T) {
	// 1 µs .. 100 ms in steps of 1 µs: percentile p is p% of 100 ms.
	h := newHistogram()
	for us := 1; us <= 100000; us++ {
		h.record(time.Duration(us) * time.Microsecond)
	}
	s := h.summary()
	require.EqualValues(t, 100000, s.Count)
	// Three significant digits: every value within 0.1%.
	within(t, 50, s.P50, 0.001, "p50")
	within(t, 90, s.P90, 0.001, "p90")
	within(t, 95, s.P95, 0.001, "p95")
	within(t, 99, s.P99, 0.001, "p99")
	within(t, 99.9, s.P999, 0.001, "p99.9")
	within(t, 100, s.Max, 0.001, "max")
	within(t, 50.0005, s.Mean, 0.001, "mean")
}

func TestHistogramExponential(t *testing.T) {
	// Exponential with mean 1 ms: the p-quantile is -ln(1-p) ms.
	rng := rand.New(rand.NewPCG(1, 2))
	h := newHistogram()
	for range 1_000_000 {
		h.record(time.Duration(rng.ExpFloat64() * float64(time.Millisecond)))
	}
	s := h.summary()
	within(t, math.Ln2, s.P50, 0.01, "p50")
	within(t, -math.Log(0.1), s.P90, 0.01, "p90")
	within(t, -math.Log(0.05), s.P95, 0.01, "p95")
	within(t, -math.Log(0.01), s.P99, 0.02, "p99")
	within(t, -math.Log(0.001), s.P999, 0.04, "p99.9")
	within(t, 1, s.Mean, 0.01, "mean")
	require.Greater(t, s.Max, s.P999)
}

func TestHistogramConstantAndBounds(t *testing.T) {
	h := newHistogram()
	for range 1000 {
		h.record(250 * time.Microsecond)
	}
	s := h.summary()
	for _, v := range []float64{s.P50, s.P90, s.P99, s.P999, s.Max, s.Mean} {
		within(t, 0.25, v, 0.001, "constant")
	}
	d := h.distribution()
	require.Len(t, d, len(distributionPercentiles))
	require.Equal(t, 0.0, d[0].Percentile)
	require.Equal(t, 100.0, d[len(d)-1].Percentile)

	// A negative duration counts as 0; one beyond the range is clamped.
	h = newHistogram()
	h.record(-time.Second)
	h.record(2 * time.Hour)
	require.EqualValues(t, 2, h.count())
	require.EqualValues(t, 1, h.clamped)
	require.Equal(t, 0.0, h.at(0))
	within(t, float64(histMax)/1e6, h.at(100), 0.001, "clamped max")

	// Minutes are in range: the send-to-arrival of a fan-out far behind
	// its writes (5,000 subscribers took 17 s at p99 in a 5 s run; a
	// longer run, longer) was clamped at 60 s, its p99 and max 60,000 ms.
	h = newHistogram()
	for i := range 100 {
		h.record(time.Duration(i+1) * 3 * time.Second) // 3 s .. 300 s
	}
	require.Zero(t, h.clamped)
	require.Equal(t, 300_000.0, h.summary().Max)
	within(t, 297_000, h.summary().P99, 0.001, "p99 of minutes")

	require.Equal(t, Latency{}, newHistogram().summary())
	require.NotNil(t, newHistogram().distribution(), "[] in the report, not null")
	require.Empty(t, newHistogram().distribution())
}

func TestHistogramMerge(t *testing.T) {
	a, b, all := newHistogram(), newHistogram(), newHistogram()
	for i := 1; i <= 1000; i++ {
		d := time.Duration(i) * time.Microsecond
		all.record(d)
		if i%2 == 0 {
			a.record(d)
		} else {
			b.record(d)
		}
	}
	a.merge(b)
	require.Equal(t, all.summary(), a.summary())
}

func TestMeasureIntervals(t *testing.T) {
	// 1 s window: 100 ops in each of the first five tenths, 300 in each of
	// the last five; every op 1 ms, writes every other one.
	var samples []sample
	for part := range 10 {
		n := 100
		if part >= 5 {
			n = 300
		}
		for i := range n {
			at := int64(part)*int64(100*time.Millisecond) + int64(i)
			samples = append(samples, sample{at: at, dur: int64(time.Millisecond), kind: uint8(i % 2)})
		}
	}
	m := measure(samples, time.Second, time.Second)
	require.InDelta(t, 2000, m.opsPerSec, 0.001)
	require.Len(t, m.intervals, intervals)
	require.InDelta(t, 1000, m.intervals[0].OpsPerSec, 0.1)
	require.InDelta(t, 3000, m.intervals[9].OpsPerSec, 0.1)
	require.InDelta(t, 0.9, m.intervals[9].StartSeconds, 1e-9)
	within(t, 1, m.intervals[3].P99, 0.001, "interval p99")
	require.EqualValues(t, 1000, m.reads.count())
	require.EqualValues(t, 1000, m.writes.count())
	ops, p50, p99 := spreads(m.intervals)
	// Five values of 1000 and five of 3000: sample standard deviation
	// sqrt(10 * 1000^2 / 9).
	require.InDelta(t, 1054.1, ops, 0.1)
	require.Equal(t, 0.0, p50)
	require.Equal(t, 0.0, p99)
}

func TestMeanStddevMedian(t *testing.T) {
	require.Equal(t, 0.0, mean(nil))
	require.Equal(t, 0.0, stddev([]float64{5}))
	require.InDelta(t, 5, mean([]float64{2, 4, 4, 4, 5, 5, 7, 9}), 1e-12)
	require.InDelta(t, 2.138, stddev([]float64{2, 4, 4, 4, 5, 5, 7, 9}), 0.001)
	require.Equal(t, 0.0, median(nil))
	require.Equal(t, 3.0, median([]float64{5, 1, 3}))
	require.Equal(t, 2.5, median([]float64{4, 1, 3, 2}))
}

// A paced sender is timed from the intended send time only when it is late
// for it; an early one from when its sleep ended, so that the sleep's
// overshoot is not counted as the server's latency.
func TestPaced(t *testing.T) {
	ctx := context.Background()
	late := time.Now().Add(-time.Millisecond)
	got, ok := paced(ctx, late)
	require.True(t, ok)
	require.True(t, got.Equal(late), "a late sender is timed from the intended time")

	early := time.Now().Add(2 * time.Millisecond)
	got, ok = paced(ctx, early)
	after := time.Now()
	require.True(t, ok)
	require.False(t, got.Before(early), "paced returned before the intended time")
	require.False(t, got.After(after))
	require.False(t, got.Equal(early), "an early sender is timed from when it woke, not from the intended time")
}

// A peer that ends before it is ready: one clear error, no (%!s(<nil>))
// and no second copy of it under an empty peer name.
func TestAPeerThatEndsAtOnce(t *testing.T) {
	_, err := StartPeerProcess(context.Background(), "/bin/false", nil, nil, nil)
	require.Error(t, err)
	require.Contains(t, err.Error(), "start /bin/false: the process ended")
	require.NotContains(t, err.Error(), "%!")
	require.NotContains(t, err.Error(), "peer :")
}
