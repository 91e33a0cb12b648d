package perf

import (
	"context"
	"fmt"
	"net/http"
	"net/url"
	"strconv"
	"time"
)

// History reads read the newest historyPage changes of one of historyKeys
// keys, each with historyVersions versions.
const (
	historyKeys     = 16
	historyVersions = 100
	historyPage     = 100
	listPage        = 100
)

// readKey is the name of the i-th key the read scenarios read.
func readKey(i int) string { return fmt.Sprintf("key-%06d", i) }

func histKey(i int) string { return fmt.Sprintf("hist-%02d", i) }

// prepareStep writes the keys the read scenarios read, once per run:
// ReadKeys keys in perf-read, and historyKeys keys with historyVersions
// versions each in perf-hist.
func (s *suite) prepareStep() step {
	return step{name: "prepare read data", estimate: time.Second, run: func(context.Context) error {
		if s.readsReady {
			return nil
		}
		c := newHTTPConn(s.ep)
		defer c.Close()
		keys := make([]string, s.cfg.ReadKeys)
		for i := range keys {
			keys[i] = readKey(i)
		}
		if err := importKeys(c, nsRead, keys, s.value); err != nil {
			return fmt.Errorf("prepare read data: %w", err)
		}
		for range historyVersions {
			ops := make([]txnOp, historyKeys)
			for k := range ops {
				ops[k] = txnOp{Op: "put", NS: nsHist, Key: histKey(k), Value: s.value}
			}
			if err := txn(c, ops); err != nil {
				return fmt.Errorf("prepare history data: %w", err)
			}
		}
		s.readsReady = true
		return nil
	}}
}

// readPaths are the request paths of the read scenarios, built once.
type readPaths struct {
	get, list, history []string
}

func (s *suite) readPaths() readPaths {
	var p readPaths
	for i := range s.cfg.ReadKeys {
		p.get = append(p.get, keyPath(nsRead, readKey(i)))
	}
	// Pages start after a random key early enough for a full page.
	for i := range max(s.cfg.ReadKeys-listPage, 1) {
		q := url.Values{"limit": {strconv.Itoa(listPage)}, "after": {readKey(i)}}
		p.list = append(p.list, "/v1/ns/"+nsRead+"/keys?"+q.Encode())
	}
	for i := range historyKeys {
		p.history = append(p.history, keyPath(nsHist, histKey(i))+"/history?limit="+strconv.Itoa(historyPage))
	}
	return p
}

func (s *suite) readLatencySteps() []step {
	return []step{s.prepareStep(), {name: "read-latency", estimate: s.loadEstimate(), run: func(ctx context.Context) error {
		return s.readRun(ctx, "read-latency", "read-latency", "get", 1, s.cfg.Rate)
	}}}
}

func (s *suite) readThroughputSteps() []step {
	steps := []step{s.prepareStep()}
	for _, op := range s.cfg.ReadOps {
		for _, c := range s.cfg.Clients {
			name := fmt.Sprintf("read-throughput/%s/c=%d", op, c)
			steps = append(steps, step{name: name, estimate: s.loadEstimate(), run: func(ctx context.Context) error {
				return s.readRun(ctx, name, "read-throughput", op, c, 0)
			}})
		}
	}
	return steps
}

// readRun measures reads of one kind: get (a random existing key), list (a
// page of 100 keys after a random key) or history (the newest 100 changes
// of a key).
func (s *suite) readRun(ctx context.Context, name, scenario, op string, clients, rate int) error {
	paths := s.readPaths()
	r := Measurement{Name: name, Scenario: scenario, Op: op}
	var choices []string
	switch op {
	case "get":
		choices, r.Keys = paths.get, "existing-"+strconv.Itoa(s.cfg.ReadKeys)
	case "list":
		choices, r.Keys = paths.list, fmt.Sprintf("pages-of-%d-of-%d", listPage, s.cfg.ReadKeys)
	case "history":
		choices, r.Keys = paths.history, fmt.Sprintf("history-%d-of-%dx%d", historyPage, historyKeys, historyVersions)
	}
	l := load{clients: clients, rate: rate, warmup: s.cfg.Warmup, duration: s.cfg.Duration}
	l.op = func(w *worker) (uint8, error) {
		return kindRead, w.conn.expect(http.StatusOK, http.MethodGet, choices[w.rng.IntN(len(choices))], nil)
	}
	return s.measured(ctx, r, l, nil)
}

// scenarioReadInstances compares reads served by one instance of a
// deployment with the same load spread over several (Config.MoreTargets):
// whether reads grow with instances.
const scenarioReadInstances = "read-instances"

// readInstancesSteps measures GETs by CompareClients clients on the target
// alone and spread over it and Config.MoreTargets, alternating Rounds
// times so that whatever else the machine does falls on both alike.
func (s *suite) readInstancesSteps() []step {
	steps := []step{s.prepareStep()}
	c := s.cfg.CompareClients
	for round := range s.cfg.Rounds {
		for _, n := range []int{1, 1 + len(s.cfg.MoreTargets)} {
			name := readInstancesName(n, c, round, s.cfg.Rounds)
			steps = append(steps, step{name: name, estimate: s.loadEstimate(), run: func(ctx context.Context) error {
				spread := []endpoint{s.ep}
				for _, u := range s.cfg.MoreTargets[:n-1] {
					ep, err := s.endpoint(u)
					if err != nil {
						return err
					}
					spread = append(spread, ep)
				}
				paths := s.readPaths().get
				r := Measurement{Name: name, Scenario: scenarioReadInstances, Op: "get", Instances: n, Keys: "existing-" + strconv.Itoa(s.cfg.ReadKeys)}
				l := load{clients: c, warmup: s.cfg.Warmup, duration: s.cfg.Duration, spread: spread}
				l.op = func(w *worker) (uint8, error) {
					return kindRead, w.conn.expect(http.StatusOK, http.MethodGet, paths[w.rng.IntN(len(paths))], nil)
				}
				return s.measured(ctx, r, l, nil)
			}})
		}
	}
	return steps
}

// readInstancesName names a run of read-instances: with the round when
// there are several.
func readInstancesName(instances, clients, round, rounds int) string {
	name := fmt.Sprintf("%s/get/instances=%d/c=%d", scenarioReadInstances, instances, clients)
	if rounds > 1 {
		name += fmt.Sprintf("/round=%d", round+1)
	}
	return name
}

func (s *suite) mixedSteps() []step {
	steps := []step{s.prepareStep()}
	for _, readPct := range []int{90, 50} {
		name := fmt.Sprintf("mixed/%d-%d/c=%d", readPct, 100-readPct, s.cfg.MixedClients)
		steps = append(steps, step{name: name, estimate: s.loadEstimate(), run: func(ctx context.Context) error {
			return s.mixedRun(ctx, name, readPct)
		}})
	}
	return steps
}

// mixedRun measures GETs and durable PUTs of the same existing keys, readPct
// percent of them reads.
func (s *suite) mixedRun(ctx context.Context, name string, readPct int) error {
	paths := s.readPaths().get
	r := Measurement{Name: name, Scenario: "mixed", Op: "mixed", Keys: "existing-" + strconv.Itoa(s.cfg.ReadKeys), ReadFraction: float64(readPct) / 100}
	l := load{clients: s.cfg.MixedClients, warmup: s.cfg.Warmup, duration: s.cfg.Duration}
	l.op = func(w *worker) (uint8, error) {
		path := paths[w.rng.IntN(len(paths))]
		if w.rng.IntN(100) < readPct {
			return kindRead, w.conn.expect(http.StatusOK, http.MethodGet, path, nil)
		}
		return kindWrite, w.conn.expect(http.StatusOK, http.MethodPut, path, s.value)
	}
	return s.measured(ctx, r, l, func(_ *loadResult, m loadStats, r *Measurement) error {
		reads, writes := m.reads.summary(), m.writes.summary()
		r.Reads, r.Writes = &reads, &writes
		return nil
	})
}
