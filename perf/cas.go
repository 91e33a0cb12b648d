package perf

import (
	"context"
	"fmt"
	"net/http"
	"strconv"
	"time"
)

func (s *suite) casSteps() []step {
	var steps []step
	for _, keys := range []int{1, 16} {
		name := fmt.Sprintf("cas-contention/keys=%d/c=%d", keys, s.cfg.CASClients)
		steps = append(steps, step{name: name, estimate: s.loadEstimate(), run: func(ctx context.Context) error {
			return s.casRun(ctx, name, keys)
		}})
	}
	return steps
}

// casCounts is a CAS worker's tally, warm-up included.
type casCounts struct{ successes, conflicts int64 }

// casRun has CASClients clients increment counters with compare-and-swap:
// read the counter, put counter+1 with If-Match: its version. A 409 is a
// conflict; the next operation reads again. At the end the counters must
// add up to the number of successful increments.
func (s *suite) casRun(ctx context.Context, name string, keys int) error {
	c := newHTTPConn(s.ep)
	defer c.Close()
	paths := make([]string, keys)
	ops := make([]txnOp, keys)
	for i := range keys {
		key := fmt.Sprintf("%s-%d-counter-%d", s.runID, len(s.report.Runs), i)
		paths[i] = keyPath(nsCAS, key)
		ops[i] = txnOp{Op: "put", NS: nsCAS, Key: key, Value: []byte("0")}
	}
	if err := txn(c, ops); err != nil {
		return fmt.Errorf("create counters: %w", err)
	}

	r := Measurement{Name: name, Scenario: "cas-contention", Op: "cas", Keys: strconv.Itoa(keys)}
	l := load{clients: s.cfg.CASClients, warmup: s.cfg.Warmup, duration: s.cfg.Duration}
	l.setup = func(w *worker) error { w.state = &casCounts{}; return nil }
	l.op = func(w *worker) (uint8, error) {
		tally := w.state.(*casCounts)
		path := paths[w.rng.IntN(keys)]
		if err := w.conn.expect(http.StatusOK, http.MethodGet, path, nil); err != nil {
			return kindWrite, err
		}
		version, ok1 := jsonUint(w.conn.body.Bytes(), "version")
		value, ok2 := jsonUint(w.conn.body.Bytes(), "value")
		if !ok1 || !ok2 {
			return kindWrite, fmt.Errorf("GET %s: no version or counter in %.200q", path, w.conn.body.String())
		}
		w.buf = strconv.AppendUint(w.buf[:0], value+1, 10)
		status, err := w.conn.do(http.MethodPut, path, w.buf, header{"If-Match", strconv.FormatUint(version, 10)})
		switch {
		case err != nil:
			return kindWrite, err
		case status == http.StatusOK:
			tally.successes++
			return kindWrite, nil
		case status == http.StatusConflict:
			tally.conflicts++
			return kindConflict, nil
		}
		return kindWrite, newStatusError(http.MethodPut, path, status, w.conn.body.String())
	}
	return s.measured(ctx, r, l, func(res *loadResult, _ loadStats, r *Measurement) error {
		cr := &CASResult{Keys: keys}
		var perPart [intervals]float64
		partLen := max(int64(res.window)/intervals, 1)
		for _, sm := range res.samples {
			switch sm.kind {
			case kindWrite:
				cr.Successes++
			case kindConflict:
				cr.Conflicts++
				perPart[min(int(sm.at/partLen), intervals-1)]++
			}
		}
		for i := range perPart {
			perPart[i] /= time.Duration(partLen).Seconds()
		}
		cr.ConflictsPerSecSpread = round1(stddev(perPart[:]))
		secs := res.elapsed.Seconds()
		cr.SuccessesPerSec = round1(float64(cr.Successes) / secs)
		cr.ConflictsPerSec = round1(float64(cr.Conflicts) / secs)
		for _, w := range res.workers {
			cr.TotalSuccesses += w.state.(*casCounts).successes
		}
		r.CAS = cr
		for _, p := range paths {
			if err := c.expect(http.StatusOK, http.MethodGet, p, nil); err != nil {
				cr.CounterCheck = "mismatch"
				return fmt.Errorf("read counter back: %w", err)
			}
			v, ok := jsonUint(c.body.Bytes(), "value")
			if !ok {
				cr.CounterCheck = "mismatch"
				return fmt.Errorf("read counter back: no counter in %.200q", c.body.String())
			}
			cr.CounterSum += int64(v)
		}
		cr.CounterCheck = "ok"
		if cr.CounterSum != cr.TotalSuccesses {
			cr.CounterCheck = "mismatch"
			res.errs.add(fmt.Errorf("counters add up to %d but %d increments succeeded", cr.CounterSum, cr.TotalSuccesses))
		}
		return nil
	})
}
