package perf

import (
	"context"
	"math/rand/v2"
	"slices"
	"sync"
	"sync/atomic"
	"time"
)

// intervals is how many equal parts a measured window is cut into; the
// spread of the per-part values is the run's noise (see Compare).
const intervals = 10

// Op kinds, for scenarios that mix two kinds of requests.
const (
	kindRead  uint8 = 0
	kindWrite uint8 = 1
	// kindConflict is a compare-and-swap that lost (409).
	kindConflict uint8 = 2
)

// opFunc is one request (or one logical operation) of a scenario, done by
// worker w on its connection. It returns the kind of the operation.
type opFunc func(w *worker) (kind uint8, err error)

// worker is one client of a load: one connection, one request at a time.
type worker struct {
	id      int
	conn    *httpConn
	rng     *rand.Rand
	n       int64  // operations started by this worker
	buf     []byte // scratch for paths and bodies
	samples []sample
	// state is free for the scenario (the CAS scenario keeps its counts).
	state any
}

// sample is one measured operation: when it started (intended to start,
// for a fixed rate), relative to the window's start, and how long it took.
type sample struct {
	at, dur int64 // nanoseconds
	kind    uint8
}

// load describes one measured run of a request loop.
type load struct {
	clients int
	// rate, when > 0, sends rate operations per second in all, at fixed
	// intended times, and times each as paced says.
	rate             int
	warmup, duration time.Duration
	// setup runs once per worker before the clock starts.
	setup func(w *worker) error
	op    opFunc
	// noConn: the workers do not talk HTTP (a peer's own client does the
	// requests), so they get no connection.
	noConn bool
	// spread, when set, are the servers the workers connect to in turn
	// (worker i to spread[i%len(spread)]) instead of runLoad's one.
	spread []endpoint
}

// loadResult is what runLoad measured.
type loadResult struct {
	samples []sample
	// elapsed is the window, or longer for a fixed rate that fell behind:
	// until the last operation intended inside the window completed.
	elapsed time.Duration
	errs    *errorLog
	workers []*worker
}

// runLoad runs l: a warm-up, then the measured window. Operations that
// start (or, at a fixed rate, are intended to start) inside the window are
// measured; errors are counted throughout.
func runLoad(ctx context.Context, ep endpoint, l load) (*loadResult, error) {
	res := &loadResult{errs: &errorLog{}}
	workers := make([]*worker, l.clients)
	for i := range workers {
		w := &worker{id: i, rng: rand.New(rand.NewPCG(uint64(i)+1, uint64(time.Now().UnixNano())))}
		if !l.noConn {
			to := ep
			if len(l.spread) > 0 {
				to = l.spread[i%len(l.spread)]
			}
			w.conn = newHTTPConn(to)
			if err := w.conn.connect(); err != nil {
				closeWorkers(workers[:i])
				return nil, err
			}
		}
		if l.setup != nil {
			if err := l.setup(w); err != nil {
				closeWorkers(workers[:i+1])
				return nil, err
			}
		}
		workers[i] = w
	}
	defer closeWorkers(workers)
	res.workers = workers

	var stop atomic.Bool
	watchDone := make(chan struct{})
	defer close(watchDone)
	go func() {
		select {
		case <-ctx.Done():
			stop.Store(true)
		case <-watchDone:
		}
	}()

	start := time.Now()
	windowStart := start.Add(l.warmup)
	windowEnd := windowStart.Add(l.duration)
	var lastDone atomic.Int64 // for a fixed rate: when the last measured op completed
	var next atomic.Int64     // for a fixed rate: the next operation's index
	interval := float64(0)
	if l.rate > 0 {
		interval = float64(time.Second) / float64(l.rate)
	}
	var wg sync.WaitGroup
	for _, w := range workers {
		wg.Go(func() {
			for !stop.Load() {
				var t0, sent time.Time // intended (the window's clock), timed from
				if l.rate > 0 {
					i := next.Add(1) - 1
					t0 = start.Add(time.Duration(float64(i) * interval))
					if !t0.Before(windowEnd) {
						return
					}
					sent = paced(t0)
				} else {
					t0 = time.Now()
					if !t0.Before(windowEnd) {
						return
					}
					sent = t0
				}
				w.n++
				kind, err := l.op(w)
				t1 := time.Now()
				if err != nil {
					// Counted, not measured: ops/s and latencies are of
					// the requests that succeeded.
					res.errs.add(err)
					continue
				}
				if t0.Before(windowStart) {
					continue
				}
				w.samples = append(w.samples, sample{at: int64(t0.Sub(windowStart)), dur: int64(t1.Sub(sent)), kind: kind})
				if l.rate > 0 {
					atomicMax(&lastDone, int64(t1.Sub(windowStart)))
				}
			}
		})
	}
	wg.Wait()
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	res.elapsed = l.duration
	if l.rate > 0 {
		res.elapsed = max(res.elapsed, time.Duration(lastDone.Load()))
	}
	n := 0
	for _, w := range workers {
		n += len(w.samples)
	}
	res.samples = make([]sample, 0, n)
	for _, w := range workers {
		res.samples = append(res.samples, w.samples...)
		w.samples = nil
	}
	return res, nil
}

// paced waits for an operation's intended send time and returns the time
// to measure it from. A sender that is late (every worker was busy: the
// server is behind) measures from the intended time, so the wait the
// server caused counts (no coordinated omission). A sender that is early
// sleeps, and measures from when it woke: the sleep's own overshoot (about
// 0.65 ms on a shared VM, more than a GET takes) is the load generator's,
// not the server's.
func paced(intended time.Time) time.Time {
	d := time.Until(intended)
	if d <= 0 {
		return intended
	}
	time.Sleep(d)
	return time.Now()
}

func closeWorkers(ws []*worker) {
	for _, w := range ws {
		if w != nil && w.conn != nil {
			_ = w.conn.Close()
		}
	}
}

func atomicMax(a *atomic.Int64, v int64) {
	for {
		cur := a.Load()
		if v <= cur || a.CompareAndSwap(cur, v) {
			return
		}
	}
}

// loadStats are the histograms and rates of a load's samples.
type loadStats struct {
	all, reads, writes *histogram
	opsPerSec          float64
	intervals          []Interval
}

// measure builds the histograms of samples over a window of length window
// (elapsed: the time the ops per second are computed over).
func measure(samples []sample, window, elapsed time.Duration) loadStats {
	m := loadStats{all: newHistogram(), reads: newHistogram(), writes: newHistogram()}
	parts := make([]*histogram, intervals)
	for i := range parts {
		parts[i] = newHistogram()
	}
	partLen := max(int64(window)/intervals, 1)
	for _, s := range samples {
		d := time.Duration(s.dur)
		m.all.record(d)
		switch s.kind {
		case kindWrite:
			m.writes.record(d)
		case kindRead:
			m.reads.record(d)
		}
		parts[min(int(s.at/partLen), intervals-1)].record(d)
	}
	if elapsed > 0 {
		m.opsPerSec = float64(len(samples)) / elapsed.Seconds()
	}
	for i, p := range parts {
		iv := Interval{
			StartSeconds: round3(time.Duration(int64(i) * partLen).Seconds()),
			OpsPerSec:    round1(float64(p.count()) / time.Duration(partLen).Seconds()),
		}
		if p.count() > 0 {
			iv.P50, iv.P99 = p.at(50), p.at(99)
		}
		m.intervals = append(m.intervals, iv)
	}
	return m
}

// spreads returns the standard deviation over the intervals of the ops per
// second, p50 and p99. Intervals without a sample are left out.
func spreads(ivs []Interval) (ops, p50, p99 float64) {
	var o, a, b []float64
	for _, iv := range ivs {
		o = append(o, iv.OpsPerSec)
		if iv.P50 > 0 || iv.P99 > 0 {
			a = append(a, iv.P50)
			b = append(b, iv.P99)
		}
	}
	return round1(stddev(o)), round6(stddev(a)), round6(stddev(b))
}

func round1(v float64) float64 { return float64(int64(v*10+0.5)) / 10 }

// errorLog counts errors and keeps the first few distinct messages.
type errorLog struct {
	mu      sync.Mutex
	n       int64
	samples []string
}

const maxErrorSamples = 5

func (e *errorLog) add(err error) {
	e.mu.Lock()
	defer e.mu.Unlock()
	e.n++
	msg := err.Error()
	if len(msg) > 300 {
		msg = msg[:300] + "..."
	}
	if len(e.samples) < maxErrorSamples && !slices.Contains(e.samples, msg) {
		e.samples = append(e.samples, msg)
	}
}

// result is the log as it stands, for the report.
func (e *errorLog) result() RunErrors {
	e.mu.Lock()
	defer e.mu.Unlock()
	return RunErrors{
		Errors:       e.n,
		ErrorSamples: append([]string{}, e.samples...), // [] rather than null in report.json
	}
}
