package perf

import (
	"context"
	"math"
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
	// began is when it was sent, relative to the window's start.
	began int64
	kind  uint8
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
	// window is the measured window: l.duration, or longer when no
	// operation started in it had been answered by its end (extended).
	window   time.Duration
	extended bool
	// elapsed is what the ops per second are computed over: the window,
	// or, for a fixed rate that fell behind, how long its operations took
	// to be sent (see sendSpan).
	elapsed time.Duration
	errs    *errorLog
	workers []*worker
}

// runLoad runs l: a warm-up, then the measured window. Operations that
// start (or, at a fixed rate, are intended to start) inside the window are
// measured; errors are counted throughout.
//
// The window ends only once an operation started in it was answered
// (or failed): one whose every operation outlasted it (a server slower
// than the window is long, or a fixed rate slower than it) measured
// nothing, and said 0 ops/s. It is then extended until the first such
// answer, and the operations started before that count.
func runLoad(ctx context.Context, ep endpoint, l load) (*loadResult, error) {
	res := &loadResult{errs: &errorLog{}}
	workers := make([]*worker, l.clients)
	// unreachable: the endpoints a connection attempt failed to, before
	// the run. Their other clients connect at their first request: one
	// after the other here, a server that answers no attempt held the
	// start clients times dialTimeout.
	unreachable := map[string]bool{}
	for i := range workers {
		w := &worker{id: i, rng: rand.New(rand.NewPCG(uint64(i)+1, uint64(time.Now().UnixNano())))}
		if !l.noConn {
			to := ep
			if len(l.spread) > 0 {
				to = l.spread[i%len(l.spread)]
			}
			w.conn = newHTTPConn(to)
			w.conn.ctx = ctx
			// Connected before the clock starts. A server that cannot be
			// reached does not end the run: each request tries again (after
			// redialWait) and each that fails is an error, as when the
			// server goes away during the run. Stopping here counted one
			// error for a whole run (a comparison's round) against a
			// server no request could reach.
			if !unreachable[to.addr] && w.conn.connect() != nil {
				unreachable[to.addr] = true
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
	// firstDone: when the first operation started in the window was
	// answered, from the window's start; a closed loop's window lasts
	// until then at least.
	var firstDone atomic.Int64
	firstDone.Store(math.MaxInt64)
	var next atomic.Int64 // for a fixed rate: the next operation's index
	interval := float64(0)
	// onlyOne is, for a fixed rate whose window holds no intended send
	// (a rate below one per window), the first operation intended after
	// the window's start: sent, it extends the window. -1: none.
	onlyOne := int64(-1)
	intended := func(i int64) time.Time { return start.Add(time.Duration(float64(i) * interval)) }
	if l.rate > 0 {
		interval = float64(time.Second) / float64(l.rate)
		i := int64(float64(l.warmup) / interval)
		for i > 0 && !intended(i-1).Before(windowStart) {
			i--
		}
		for intended(i).Before(windowStart) {
			i++
		}
		if !intended(i).Before(windowEnd) {
			onlyOne = i
		}
	}
	var wg sync.WaitGroup
	for _, w := range workers {
		wg.Go(func() {
			for !stop.Load() {
				var t0, sent time.Time // intended (the window's clock), timed from
				if l.rate > 0 {
					// The operations intended in the window, however
					// late the sender is for them.
					i := next.Add(1) - 1
					if t0 = intended(i); !t0.Before(windowEnd) && i != onlyOne {
						return
					}
					var ok bool
					if sent, ok = paced(ctx, t0); !ok {
						return
					}
				} else {
					// Until the window's end, and past it until an
					// operation started in it was answered.
					t0 = time.Now()
					if !t0.Before(windowEnd) && int64(t0.Sub(windowStart)) >= firstDone.Load() {
						return
					}
					sent = t0
				}
				w.n++
				began := time.Now()
				kind, err := l.op(w)
				t1 := time.Now()
				inWindow := !t0.Before(windowStart)
				if inWindow {
					atomicMin(&firstDone, int64(t1.Sub(windowStart)))
				}
				if err != nil {
					// Counted, not measured: ops/s and latencies are of
					// the requests that succeeded.
					res.errs.add(err)
					continue
				}
				if !inWindow {
					continue
				}
				w.samples = append(w.samples, sample{at: int64(t0.Sub(windowStart)), dur: int64(t1.Sub(sent)), began: int64(began.Sub(windowStart)), kind: kind})
			}
		})
	}
	wg.Wait()
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	res.window = l.duration
	if fd := time.Duration(firstDone.Load()); fd != math.MaxInt64 && fd > l.duration && (l.rate == 0 || onlyOne >= 0) {
		res.window, res.extended = fd, true
	}
	n := 0
	for _, w := range workers {
		n += len(w.samples)
	}
	res.samples = make([]sample, 0, n)
	for _, w := range workers {
		for _, sm := range w.samples {
			// One that started after the window's end, as the first
			// answer came, is not of the window.
			if sm.at < int64(res.window) {
				res.samples = append(res.samples, sm)
			}
		}
		w.samples = nil
	}
	res.elapsed = res.window
	if l.rate > 0 && len(res.samples) > 0 {
		first, last := res.samples[0].began, res.samples[0].began
		for _, sm := range res.samples[1:] {
			first, last = min(first, sm.began), max(last, sm.began)
		}
		res.elapsed = max(res.elapsed, sendSpan(time.Duration(first), time.Duration(last), len(res.samples)))
	}
	return res, nil
}

// sendSpan is how long n operations of a fixed rate, sent first to
// last, took to be sent: from the first send to the last, plus the mean
// gap between two (n sends span n-1 gaps), so that sends made at the
// intended rate span the window. Less than the window when the sender
// kept up; longer when it fell behind, and then the rate sustained is n
// over it. Neither the last answer's latency (the wait for it is not a
// send) nor the backlog a warm-up left (the window's first sends come
// late) counts, and both did: until 2026-12-06 this was until the last
// answer, from the window's start.
func sendSpan(first, last time.Duration, n int) time.Duration {
	if n < 2 {
		return 0
	}
	return (last - first) * time.Duration(n) / time.Duration(n-1)
}

// paced waits for an operation's intended send time and returns the time
// to measure it from. A sender that is late (every worker was busy: the
// server is behind) measures from the intended time, so the wait the
// server caused counts (no coordinated omission). A sender that is early
// sleeps, and measures from when it woke: the sleep's own overshoot (about
// 0.65 ms on a shared VM, more than a GET takes) is the load generator's,
// not the server's. It returns false, at once, when ctx ends first
// (Ctrl-C): the operation is then not to be sent. A plain sleep held the
// sender up to an interval (1 s at a rate of 1/s) after the cancel.
func paced(ctx context.Context, intended time.Time) (time.Time, bool) {
	d := time.Until(intended)
	if d <= 0 {
		return intended, ctx.Err() == nil
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return time.Now(), true
	case <-ctx.Done():
		return time.Now(), false
	}
}

func closeWorkers(ws []*worker) {
	for _, w := range ws {
		if w != nil && w.conn != nil {
			_ = w.conn.Close()
		}
	}
}

func atomicMin(a *atomic.Int64, v int64) {
	for {
		cur := a.Load()
		if v >= cur || a.CompareAndSwap(cur, v) {
			return
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
