package perf

import (
	"context"
	"fmt"
	"net/http"
	"strconv"
	"sync/atomic"
	"time"
)

// Namespaces the scenarios write to, so that a run against a running
// server leaves its other data alone. Keys carry the run's id.
const (
	nsWrite  = "perf-write"
	nsRead   = "perf-read"
	nsHist   = "perf-hist"
	nsCAS    = "perf-cas"
	nsFanout = "perf-fanout"
	nsDisk   = "perf-disk"
	nsSnap   = "perf-snapshot"
)

// stepOverhead is added to each measured step's estimate: connecting,
// building the histograms.
const stepOverhead = 200 * time.Millisecond

// startCPUWatch starts measuring the CPU that other processes use; the
// function it returns gives their average number of busy cores since.
// Only an in-process run can tell (against a running server, the server
// is one of the other processes): it returns 0 otherwise.
func (s *suite) startCPUWatch() func() float64 {
	all0, self0, ok := cpuTicks()
	start := time.Now()
	if !ok || s.target.Fresh == nil {
		return func() float64 { return 0 }
	}
	return func() float64 {
		all1, self1, ok := cpuTicks()
		secs := time.Since(start).Seconds()
		if !ok || secs <= 0 {
			return 0
		}
		other := float64((all1-all0)-(self1-self0)) / ticksPerSecond / secs
		return max(round3(other), 0)
	}
}

func (s *suite) loadEstimate() time.Duration { return s.cfg.Warmup + s.cfg.Duration + stepOverhead }

// measured runs l and adds its numbers to the report as r. after, when
// set, adds what is particular to the scenario.
func (s *suite) measured(ctx context.Context, r Measurement, l load, after func(*loadResult, loadStats, *Measurement) error) error {
	r.Database = "fresh"
	if s.large {
		r.Name, r.Database = largePrefix+r.Name, "large"
	}
	mc := newHTTPConn(s.ep)
	defer mc.Close()
	before, metricsErr := scrapeCommits(mc)
	cpu := s.startCPUWatch()
	res, err := runLoad(ctx, s.ep, l)
	if err != nil {
		return err
	}
	r.OtherCPUCores = cpu()
	if metricsErr == nil {
		var now commitCounters
		if now, metricsErr = scrapeCommits(mc); metricsErr == nil {
			r.Commits = commitStats(before, now)
		}
	}
	if metricsErr != nil && r.Op != "get" && r.Op != "list" && r.Op != "history" {
		// Its writes/commit and commit are blank: say why, once per
		// reason in the table (a write token may not read /metrics).
		r.CommitsUnmeasured = metricsErr.Error()
	}
	m := fillMeasurement(&r, l, res)
	if after != nil {
		err = after(res, m, &r)
		r.RunErrors = res.errs.result() // with what after found
	}
	s.report.Runs = append(s.report.Runs, r)
	return err
}

// fillMeasurement puts what res measured of l into r: rates, latencies,
// intervals and spreads, errors.
func fillMeasurement(r *Measurement, l load, res *loadResult) loadStats {
	m := measure(res.samples, res.window, res.elapsed)
	r.Clients, r.Rate = l.clients, l.rate
	r.WarmupSeconds, r.DurationSeconds = l.warmup.Seconds(), l.duration.Seconds()
	r.ElapsedSeconds = round6(res.elapsed.Seconds())
	r.WindowExtended = res.extended
	r.Ops = int64(len(res.samples))
	r.OpsPerSec = round1(m.opsPerSec)
	r.Latency = m.all.summary()
	r.Distribution = m.all.distribution()
	r.Intervals = m.intervals
	r.OpsPerSecSpread, r.P50Spread, r.P99Spread = spreads(m.intervals)
	r.RunErrors = res.errs.result()
	return m
}

func (s *suite) writeLatencySteps() []step {
	return []step{{name: "write-latency", estimate: s.loadEstimate(), run: func(ctx context.Context) error {
		return s.putRun(ctx, "write-latency", "write-latency", 1, s.cfg.Rate, 0)
	}}}
}

func (s *suite) writeThroughputSteps() []step {
	var steps []step
	for _, hot := range []int{0, s.cfg.HotKeys} {
		for _, c := range s.cfg.Clients {
			keys := "distinct"
			if hot > 0 {
				keys = "hot"
			}
			name := fmt.Sprintf("write-throughput/%s/c=%d", keys, c)
			steps = append(steps, step{name: name, estimate: s.loadEstimate(), run: func(ctx context.Context) error {
				return s.putRun(ctx, name, "write-throughput", c, 0, hot)
			}})
		}
	}
	return steps
}

// putRun measures durable PUTs of the configured value by clients clients:
// each on a key no one wrote before (hot == 0), in Config.KeyOrder, or all
// on the same hot keys.
func (s *suite) putRun(ctx context.Context, name, scenario string, clients, rate, hot int) error {
	r := Measurement{Name: name, Scenario: scenario, Op: "put", Keys: "distinct-" + s.cfg.KeyOrder}
	var hotPaths []string
	if hot > 0 {
		r.Keys = "hot-" + strconv.Itoa(hot)
		for i := range hot {
			hotPaths = append(hotPaths, keyPath(nsWrite, s.runID+"-hot-"+strconv.Itoa(i)))
		}
	}
	prefix := keyPath(nsWrite, s.runID+"-"+strconv.Itoa(len(s.report.Runs))) + "-"
	var seq atomic.Int64
	l := load{clients: clients, rate: rate, warmup: s.cfg.Warmup, duration: s.cfg.Duration}
	l.op = func(w *worker) (uint8, error) {
		var path string
		if hot > 0 {
			path = hotPaths[w.rng.IntN(hot)]
		} else {
			w.buf = append(w.buf[:0], prefix...)
			switch s.cfg.KeyOrder {
			case KeysSequential: // one sequence for all: each key sorts after the last
				w.buf = appendPadded(w.buf, uint64(seq.Add(1)), 10)
			case KeysPerClient: // a sequence per client, in a range of its own
				w.buf = appendPadded(w.buf, uint64(w.id), 3)
				w.buf = append(w.buf, '-')
				w.buf = appendPadded(w.buf, uint64(w.n), 10)
			default: // random: anywhere in the key space
				w.buf = appendPadded(w.buf, w.rng.Uint64()%1e15, 15)
			}
			path = string(w.buf)
		}
		return kindWrite, w.conn.expect(http.StatusOK, http.MethodPut, path, s.value)
	}
	return s.measured(ctx, r, l, nil)
}

// appendPadded appends v in decimal, zero-padded to width digits, so that
// keys sort in the numbers' order.
func appendPadded(b []byte, v uint64, width int) []byte {
	var d [20]byte
	n := strconv.AppendUint(d[:0], v, 10)
	for i := len(n); i < width; i++ {
		b = append(b, '0')
	}
	return append(b, n...)
}
