package perf

import (
	"context"
	"errors"
	"fmt"
	"math"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync/atomic"
	"time"
)

// The peers scenario: the same request loops against ctxd and against
// other servers in the same run, in alternating rounds (ctxd, etcd,
// nethttp, ctxd, etcd, nethttp, ...), so that whatever else the machine
// does falls on every server alike; each server's numbers are the medians
// of its rounds, and the report gives ctxd's as ratios of each peer's.

// Peers (Config.Compare).
const (
	// PeerEtcd is an embedded single-member etcd in a process of its own
	// (the ctxd-etcd-peer command, Config.EtcdPeer), loaded by etcd's Go
	// client in that process.
	PeerEtcd = "etcd"
	// PeerNetHTTP is a bare Go net/http handler over an in-memory map, not
	// durable: the floor of an HTTP key-value server on this machine. It is
	// part of every comparison.
	PeerNetHTTP = "nethttp"
	// PeerWALHTTP is nethttp's handler whose puts are durable in ctxd's
	// write-ahead log (store/wal), grouped as ctxd's writer groups them,
	// and nothing else: the floor of a durable put on this machine.
	PeerWALHTTP = "walhttp"

	peerCtxd = "ctxd"
)

// PeerNames are the peers Config.Compare may name.
func PeerNames() []string { return []string{PeerEtcd, PeerNetHTTP, PeerWALHTTP} }

// PeerInfo describes one server of the comparison.
type PeerInfo struct {
	// Name is ctxd, etcd or nethttp; About says what it is.
	Name    string `json:"name"`
	About   string `json:"about"`
	Version string `json:"version"`
	// Durable: a write is answered only once it is on disk.
	Durable bool `json:"durable"`
	// Process is where the server runs: "in-process" (the suite's),
	// "own" (a child process of its own) or "remote".
	Process string `json:"process"`
	// Client is what sends the requests.
	Client string `json:"client"`
	URL    string `json:"url"`
	// DataDir and Filesystem: where a durable server keeps its data.
	DataDir    string `json:"data_dir,omitempty"`
	Filesystem string `json:"filesystem,omitempty"`
	// ReplayedChanges and ReplaySeconds: what a ctxd server in a child
	// process replayed from its write-ahead log at open (--preload's
	// crash restart).
	ReplayedChanges int64   `json:"replayed_changes,omitempty"`
	ReplaySeconds   float64 `json:"replay_seconds,omitempty"`
	// Error is why the peer did not start (empty: it ran). A peer that
	// did not start has no results in comparisons; its start is a failed
	// step of the run.
	Error string `json:"error"`
}

// PeerRun is one measured run of the comparison, as every peer performs it.
type PeerRun struct {
	// Name is e.g. "peers/put/c=64"; Op is put (new keys), get (existing
	// keys) or mixed (gets and puts of the existing keys).
	Name         string        `json:"name"`
	Op           string        `json:"op"`
	Clients      int           `json:"clients"`
	ReadFraction float64       `json:"read_fraction,omitempty"`
	Warmup       time.Duration `json:"warmup"`
	Duration     time.Duration `json:"duration"`
	ValueSize    int           `json:"value_size"`
	// KeyPrefix: put writes the keys KeyPrefix + a 10-digit sequence
	// number, in namespace perf-write; ReadKeys: get and mixed use the
	// prepared keys key-000000... of namespace perf-read.
	KeyPrefix string `json:"key_prefix"`
	ReadKeys  int    `json:"read_keys"`
}

// Comparison is one run of the peers scenario: each server's medians side
// by side, and ctxd's as ratios of the others'.
type Comparison struct {
	Name         string  `json:"name"`
	Op           string  `json:"op"`
	Clients      int     `json:"clients"`
	ReadFraction float64 `json:"read_fraction,omitempty"`
	// Results: ctxd first, then each peer.
	Results []PeerResult `json:"results"`
	// Ratios: ctxd's numbers divided by each peer's.
	Ratios []Ratio `json:"ratios"`
}

// PeerResult is one server's rounds of a comparison.
type PeerResult struct {
	Peer string `json:"peer"`
	// OpsPerSec, P50 and P99 are the medians over the rounds (each one
	// taken on its own); Spread their standard deviations.
	OpsPerSec       float64 `json:"ops_per_sec"`
	P50             float64 `json:"p50"`
	P99             float64 `json:"p99"`
	OpsPerSecSpread float64 `json:"ops_per_sec_spread"`
	P50Spread       float64 `json:"p50_spread"`
	P99Spread       float64 `json:"p99_spread"`
	Rounds          []Round `json:"rounds"`
	// Distribution is the latency curve of the round with the median
	// ops/s.
	Distribution []Quantile `json:"distribution"`
	RunErrors
}

// Round is one server's numbers in one round.
type Round struct {
	OpsPerSec float64 `json:"ops_per_sec"`
	P50       float64 `json:"p50"`
	P99       float64 `json:"p99"`
	Errors    int64   `json:"errors"`
}

// Ratio is ctxd's medians divided by a peer's: ops/s above 1 and
// latencies below 1 are ctxd ahead. 0 when the peer measured nothing.
type Ratio struct {
	Peer      string  `json:"peer"`
	OpsPerSec float64 `json:"ops_per_sec"`
	P50       float64 `json:"p50"`
	P99       float64 `json:"p99"`
}

// peer is a server of the comparison.
type peer interface {
	info() PeerInfo
	run(ctx context.Context, r PeerRun) (Measurement, error)
	close() error
}

// peerSpecs are the comparison's runs: durable puts by 1 and by
// CompareClients clients, gets and the two mixes by CompareClients.
func (s *suite) peerSpecs() []PeerRun {
	c := s.cfg.CompareClients
	base := PeerRun{Warmup: s.cfg.Warmup, Duration: s.cfg.Duration, ValueSize: s.cfg.ValueSize, ReadKeys: s.cfg.ReadKeys}
	spec := func(name, op string, clients int, readFraction float64) PeerRun {
		r := base
		r.Name, r.Op, r.Clients, r.ReadFraction = name, op, clients, readFraction
		return r
	}
	return []PeerRun{
		spec("peers/put/c=1", "put", 1, 0),
		spec(fmt.Sprintf("peers/put/c=%d", c), "put", c, 0),
		spec(fmt.Sprintf("peers/get/c=%d", c), "get", c, 0),
		spec(fmt.Sprintf("peers/mixed/90-10/c=%d", c), "mixed", c, 0.9),
		spec(fmt.Sprintf("peers/mixed/50-50/c=%d", c), "mixed", c, 0.5),
	}
}

// comparePeers returns the peers of a comparison in their order: those of
// Config.Compare, then nethttp if it was not named.
func comparePeers(names []string) []string {
	var out []string
	for _, n := range names {
		if !slices.Contains(out, n) {
			out = append(out, n)
		}
	}
	if !slices.Contains(out, PeerNetHTTP) {
		out = append(out, PeerNetHTTP)
	}
	return out
}

func (s *suite) peersSteps() []step {
	peers := comparePeers(s.cfg.Compare)
	steps := []step{s.prepareStep(), {name: "peers: start " + fmt.Sprint(peers), estimate: 3 * time.Second, run: s.startPeers}}
	for i, sp := range s.peerSpecs() {
		est := time.Duration(s.cfg.Rounds*(1+len(peers))) * s.loadEstimate()
		steps = append(steps, step{name: sp.Name, estimate: est, run: func(ctx context.Context) error {
			return s.compareRun(ctx, i, sp)
		}})
	}
	return steps
}

// startPeers starts the peers and writes the keys the reads read into
// each (ctxd's were written by the prepare step). A peer that does not
// start is left out of the comparisons, and said so in the report (its
// PeerInfo's Error) and as a failed step of its own ("peers: start
// etcd"), which makes the run one with errors; the others are compared.
// It returns an error only when the run is canceled.
func (s *suite) startPeers(ctx context.Context) error {
	if s.peersStarted {
		return nil
	}
	ctxdInfo := PeerInfo{
		Name: peerCtxd, About: "ctxd, the server measured", Version: s.report.Target.ServerVersion, Durable: true,
		Process: "in-process", Client: httpClientAbout, URL: s.report.Target.URL,
		DataDir: s.report.Target.DataDir, Filesystem: s.report.Target.Filesystem,
	}
	if s.report.Target.Mode == "remote" {
		ctxdInfo.Process = "remote"
	}
	s.peers = []peer{&httpPeer{ep: s.ep, about: ctxdInfo}}
	s.cleanups = append(s.cleanups, s.closePeers)
	s.report.Peers = append(s.report.Peers[:0], ctxdInfo)
	value := makeValue(s.cfg.ValueSize)
	for _, name := range comparePeers(s.cfg.Compare) {
		var p peer
		var err error
		switch name {
		case PeerNetHTTP:
			p, err = startBarePeer(s.cfg.ReadKeys, value)
		case PeerEtcd:
			p, err = s.startEtcdPeer(ctx)
		case PeerWALHTTP:
			p, err = startWALPeer(s.peerDataParent(), s.cfg.ReadKeys, value)
		default:
			err = fmt.Errorf("unknown peer %q", name)
		}
		if err != nil {
			if ctx.Err() != nil {
				s.closePeers()
				return ctx.Err()
			}
			// The others are compared without it (they were all dropped:
			// a missing ctxd-etcd-peer lost the nethttp numbers too).
			step := "peers: start " + name
			s.report.Failures = append(s.report.Failures, Failure{Step: step, Error: err.Error()})
			s.report.Peers = append(s.report.Peers, PeerInfo{Name: name, Error: err.Error()})
			s.notef("%s failed, the comparison goes on without it: %v", step, err)
			continue
		}
		s.peers = append(s.peers, p)
		s.report.Peers = append(s.report.Peers, p.info())
	}
	s.peersStarted = true
	return nil
}

// peerError is why the named peer did not start ("" when it did, or was
// not asked for).
func (s *suite) peerError(name string) string {
	for _, p := range s.report.Peers {
		if p.Name == name {
			return p.Error
		}
	}
	return ""
}

func (s *suite) closePeers() {
	for _, p := range s.peers {
		if err := p.close(); err != nil {
			s.notef("stop peer %s: %v", p.info().Name, err)
		}
	}
	s.peers = nil
}

// startEtcdPeer starts the etcd peer command on a fresh folder beside
// ctxd's data folder (the same file system), and writes the read keys.
func (s *suite) startEtcdPeer(ctx context.Context) (peer, error) {
	if s.cfg.EtcdPeer == "" {
		return nil, fmt.Errorf("no etcd peer command (Config.EtcdPeer)")
	}
	if len(s.cfg.EtcdEndpoints) > 0 {
		endpoints := strings.Join(s.cfg.EtcdEndpoints, ",")
		p, err := StartPeerProcess(ctx, s.cfg.EtcdPeer, []string{"--endpoints", endpoints}, nil, s.cfg.PeerLog)
		if err != nil {
			return nil, fmt.Errorf("etcd at %s (--etcd-endpoints): %w", endpoints, err)
		}
		if err := p.prepare(ctx, s.cfg.ReadKeys, s.cfg.ValueSize); err != nil {
			return nil, errors.Join(fmt.Errorf("write the read keys: %w", err), p.close())
		}
		return p, nil
	}
	dir, err := os.MkdirTemp(s.peerDataParent(), "ctxd-perf-etcd-")
	if err != nil {
		return nil, fmt.Errorf("create data folder: %w", err)
	}
	p, err := StartPeerProcess(ctx, s.cfg.EtcdPeer, []string{"--data", dir}, nil, s.cfg.PeerLog)
	if err != nil {
		return nil, errors.Join(err, os.RemoveAll(dir))
	}
	p.removeDir = dir
	p.about.DataDir = dir
	p.about.Filesystem = filesystemType(dir)
	if err := p.prepare(ctx, s.cfg.ReadKeys, s.cfg.ValueSize); err != nil {
		return nil, errors.Join(fmt.Errorf("write the read keys: %w", err), p.close())
	}
	return p, nil
}

// compareRun measures spec on every server, Rounds times in turn, and adds
// the comparison to the report.
func (s *suite) compareRun(ctx context.Context, index int, spec PeerRun) error {
	if len(s.peers) == 0 {
		return fmt.Errorf("no servers: the run was stopped while they started")
	}
	rounds := make([][]Measurement, len(s.peers))
	for round := range s.cfg.Rounds {
		for i, p := range s.peers {
			r := spec
			r.KeyPrefix = fmt.Sprintf("%s-peers-%d-%d-%s-", s.runID, index, round, p.info().Name)
			m, err := p.run(ctx, r)
			if err != nil {
				if ctx.Err() != nil {
					return ctx.Err()
				}
				m = Measurement{Name: r.Name, RunErrors: RunErrors{Errors: 1, ErrorSamples: []string{err.Error()}}}
			}
			rounds[i] = append(rounds[i], m)
		}
	}
	c := Comparison{Name: spec.Name, Op: spec.Op, Clients: spec.Clients, Ratios: []Ratio{}}
	if spec.Op == "mixed" {
		c.ReadFraction = spec.ReadFraction
	}
	for i, p := range s.peers {
		c.Results = append(c.Results, peerResult(p.info().Name, rounds[i]))
	}
	for _, pr := range c.Results[1:] {
		c.Ratios = append(c.Ratios, ratioOf(c.Results[0], pr))
	}
	s.report.Comparisons = append(s.report.Comparisons, c)
	return nil
}

// peerResult takes the medians of a server's rounds.
func peerResult(name string, rounds []Measurement) PeerResult {
	pr := PeerResult{Peer: name, Rounds: []Round{}, RunErrors: RunErrors{ErrorSamples: []string{}}}
	var ops, p50, p99 []float64
	for _, m := range rounds {
		pr.Rounds = append(pr.Rounds, Round{OpsPerSec: m.OpsPerSec, P50: m.Latency.P50, P99: m.Latency.P99, Errors: m.Errors})
		pr.Errors += m.Errors
		for _, e := range m.ErrorSamples {
			if len(pr.ErrorSamples) < maxErrorSamples && !slices.Contains(pr.ErrorSamples, e) {
				pr.ErrorSamples = append(pr.ErrorSamples, e)
			}
		}
		if m.Ops > 0 {
			ops, p50, p99 = append(ops, m.OpsPerSec), append(p50, m.Latency.P50), append(p99, m.Latency.P99)
		}
	}
	pr.OpsPerSec, pr.P50, pr.P99 = round1(median(ops)), round6(median(p50)), round6(median(p99))
	pr.OpsPerSecSpread, pr.P50Spread, pr.P99Spread = round1(stddev(ops)), round6(stddev(p50)), round6(stddev(p99))
	// The curve of the round whose ops/s is closest to the median.
	best := math.Inf(1)
	for _, m := range rounds {
		if d := math.Abs(m.OpsPerSec - pr.OpsPerSec); m.Ops > 0 && d < best {
			best, pr.Distribution = d, m.Distribution
		}
	}
	if pr.Distribution == nil {
		pr.Distribution = []Quantile{}
	}
	return pr
}

// ratioOf divides ctxd's medians by a peer's.
func ratioOf(ctxd, p PeerResult) Ratio {
	div := func(a, b float64) float64 {
		if a <= 0 || b <= 0 {
			return 0
		}
		// Six decimals, not three: the tables print two, and a ratio
		// rounded twice (0.3147 to 0.315 to 0.32x) disagreed with the
		// targets, which divide the medians themselves (0.31x).
		return round6(a / b)
	}
	return Ratio{Peer: p.Peer, OpsPerSec: div(ctxd.OpsPerSec, p.OpsPerSec), P50: div(ctxd.P50, p.P50), P99: div(ctxd.P99, p.P99)}
}

// kvOps are a server's three requests, for peerLoad: a put of a new key
// (the seq-th), a get of read key i, and a put of read key i.
type kvOps struct {
	put    func(w *worker, seq uint64) error
	get    func(w *worker, i int) error
	update func(w *worker, i int) error
}

// peerLoad is the load of a comparison run over a server's ops.
func peerLoad(r PeerRun, ops kvOps) load {
	l := load{clients: r.Clients, warmup: r.Warmup, duration: r.Duration}
	readPct := int(math.Round(r.ReadFraction * 100))
	var seq atomic.Uint64
	switch r.Op {
	case "put":
		l.op = func(w *worker) (uint8, error) { return kindWrite, ops.put(w, seq.Add(1)) }
	case "get":
		l.op = func(w *worker) (uint8, error) { return kindRead, ops.get(w, w.rng.IntN(r.ReadKeys)) }
	default: // mixed, as mixedRun
		l.op = func(w *worker) (uint8, error) {
			i := w.rng.IntN(r.ReadKeys)
			if w.rng.IntN(100) < readPct {
				return kindRead, ops.get(w, i)
			}
			return kindWrite, ops.update(w, i)
		}
	}
	return l
}

// peerMeasurement runs l and builds its measurement for r.
func peerMeasurement(ctx context.Context, ep endpoint, r PeerRun, l load) (Measurement, error) {
	res, err := runLoad(ctx, ep, l)
	if err != nil {
		return Measurement{}, err
	}
	m := Measurement{Name: r.Name, Scenario: "peers", Op: r.Op, Keys: "distinct-" + KeysSequential}
	if r.Op != "put" {
		m.Keys = "existing-" + strconv.Itoa(r.ReadKeys)
	}
	st := fillMeasurement(&m, l, res)
	if r.Op == "mixed" {
		m.ReadFraction = r.ReadFraction
		reads, writes := st.reads.summary(), st.writes.summary()
		m.Reads, m.Writes = &reads, &writes
	}
	return m, nil
}

// httpClientAbout says how the HTTP servers are loaded.
const httpClientAbout = "ctxd perf's HTTP/1.1 client (perf/httpconn.go) in the suite's process, one keep-alive connection per client"

// httpPeer is a server with ctxd's REST paths: ctxd itself, or the bare
// net/http handler.
type httpPeer struct {
	ep    endpoint
	about PeerInfo
	stop  func() error
	paths []string // of the read keys, built once
}

func (h *httpPeer) info() PeerInfo { return h.about }

func (h *httpPeer) close() error {
	if h.stop == nil {
		return nil
	}
	return h.stop()
}

func (h *httpPeer) run(ctx context.Context, r PeerRun) (Measurement, error) {
	if len(h.paths) != r.ReadKeys {
		h.paths = make([]string, r.ReadKeys)
		for i := range h.paths {
			h.paths[i] = keyPath(nsRead, readKey(i))
		}
	}
	value := makeValue(r.ValueSize)
	prefix := keyPath(nsWrite, r.KeyPrefix)
	paths := h.paths
	l := peerLoad(r, kvOps{
		put: func(w *worker, seq uint64) error {
			w.buf = appendPadded(append(w.buf[:0], prefix...), seq, 10)
			return w.conn.expect(http.StatusOK, http.MethodPut, string(w.buf), value)
		},
		get:    func(w *worker, i int) error { return w.conn.expect(http.StatusOK, http.MethodGet, paths[i], nil) },
		update: func(w *worker, i int) error { return w.conn.expect(http.StatusOK, http.MethodPut, paths[i], value) },
	})
	return peerMeasurement(ctx, h.ep, r, l)
}

// peerDataParent is where a durable peer's data folder goes: beside
// ctxd's data folder (the same file system), else the system's temp
// folder.
func (s *suite) peerDataParent() string {
	if d := s.report.Target.DataDir; d != "" {
		return filepath.Dir(d)
	}
	return os.TempDir()
}
