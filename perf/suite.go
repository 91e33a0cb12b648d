package perf

import (
	"bufio"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"os"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"time"
)

// Config is what the suite runs and how. DefaultConfig gives the standard
// set; any field may be changed after.
type Config struct {
	// Scenarios to run, by name (see Scenarios); empty means all of them.
	Scenarios []string
	// Warmup runs before each measured window of Duration.
	Duration, Warmup time.Duration
	// Clients are the concurrency levels of write-throughput and
	// read-throughput.
	Clients []int
	// ValueSize is the size of each value written, in bytes of JSON.
	ValueSize int
	// Quick marks the short smoke run (DefaultConfig(true)).
	Quick bool
	// Rate, when > 0, runs write-latency and read-latency at that fixed
	// rate (ops/s), timed as paced says.
	Rate int
	// HotKeys is the number of keys of write-throughput's hot-key runs.
	HotKeys int
	// KeyOrder is the order of the new keys of write-latency and
	// write-throughput's distinct-key runs: KeysSequential, KeysPerClient
	// or KeysRandom.
	KeyOrder string
	// ReadKeys is the number of keys the read scenarios read.
	ReadKeys int
	// ReadOps are the kinds of read of read-throughput: get, list, history.
	ReadOps []string
	// MixedClients and CASClients are the clients of mixed and
	// cas-contention.
	MixedClients, CASClients int
	// FanoutSubscribers are the subscriber counts of fanout; FanoutRate
	// the writes per second, by FanoutWriters writers; FanoutBatch asks the
	// server for batch frames (several changes per frame under load).
	FanoutSubscribers []int
	// FanoutSocketIOSubscribers are the subscriber counts of fanout's
	// Socket.IO runs (the same writes, Socket.IO clients over WebSocket).
	FanoutSocketIOSubscribers []int
	FanoutRate                int
	FanoutWriters             int
	FanoutBatch               bool
	// MoreTargets are more servers of the target's deployment (ctxd
	// instances on the same etcd prefix): fanout's /v1/watch subscribers
	// are spread over the target and them (its writes go to the target),
	// and read-instances compares GETs on the target alone with the same
	// clients spread over all of them.
	MoreTargets []string
	// DiskKeys keys get versions until each has the largest of
	// DiskVersions; the sizes are taken at each of them.
	DiskKeys     int
	DiskVersions []int
	// SnapshotKeys are the database sizes of snapshot, each timed
	// SnapshotRepeats times.
	SnapshotKeys    []int
	SnapshotRepeats int
	// Destructive allows disk-growth and snapshot against a running
	// server (Target.URL): they compact its history and restore its
	// database.
	Destructive bool
	// Compare names the peers of the peers scenario (PeerNames; nethttp,
	// the HTTP floor, is always one); with etcd among them, the fanout
	// scenario also measures etcd's watch beside ctxd's feed (each
	// subscriber count once); Rounds is how many times each of
	// its runs is measured on each server, in turn; CompareClients the
	// concurrency of its runs (besides one client).
	Compare        []string
	Rounds         int
	CompareClients int
	// EtcdPeer is the path of the ctxd-etcd-peer command (for the etcd
	// peer); PeerLog, when set, receives the peers' logs.
	EtcdPeer string
	PeerLog  io.Writer
	// EtcdEndpoints, when set, points the etcd peer at an existing etcd
	// (the one a ctxd-on-etcd target uses) instead of an embedded one.
	EtcdEndpoints []string

	// SettleTimeout is how long disk-growth and snapshot wait for the
	// server to apply the writes it acknowledged to its database file
	// before they read its sizes (0: 5 s); a reading taken without is
	// marked unsettled.
	SettleTimeout time.Duration

	// Preload, when > 0, runs the request-loop scenarios again on a
	// database filled to that many bytes (--preload; atscale.go), and
	// measures its opens; it needs Target.Preload and Target.OnFolder.
	Preload int64

	// Command and CtxdVersion are recorded in the report.
	Command, CtxdVersion string
	// OnStep, when set, is called as each step starts (for a progress bar).
	OnStep func(Step)
	// Notef, when set, receives notes for the person running the suite
	// (a scenario skipped, a server restarted).
	Notef func(format string, args ...any)
}

// Orders of new keys (Config.KeyOrder). Where a new key lands in the
// B-tree decides how many pages a commit rewrites: keys in sequence all go
// to the last leaf; keys per client to one leaf per client; random keys to
// as many leaves as there are writes in the commit.
const (
	KeysSequential = "sequential"
	KeysPerClient  = "per-client"
	KeysRandom     = "random"
)

// DefaultConfig returns the standard set: `make perf`, or with quick the
// smoke run of `make test` (the whole set in well under a minute).
func DefaultConfig(quick bool) Config {
	c := Config{
		Duration:                  5 * time.Second,
		Warmup:                    time.Second,
		Clients:                   []int{1, 8, 64, 256},
		ValueSize:                 256,
		HotKeys:                   16,
		KeyOrder:                  KeysSequential,
		ReadKeys:                  10000,
		ReadOps:                   []string{"get", "list", "history"},
		MixedClients:              64,
		CASClients:                64,
		FanoutSubscribers:         []int{100, 1000, 5000},
		FanoutSocketIOSubscribers: []int{100, 1000},
		FanoutRate:                1000,
		FanoutWriters:             32,
		FanoutBatch:               true,
		DiskKeys:                  10000,
		DiskVersions:              []int{1, 2, 5, 10, 20},
		SnapshotKeys:              []int{10000, 50000, 100000},
		SnapshotRepeats:           3,
		Rounds:                    3,
		CompareClients:            64,
	}
	if quick {
		c.Quick = true
		c.Duration = 400 * time.Millisecond
		c.Warmup = 100 * time.Millisecond
		c.ReadKeys = 2000
		c.DiskKeys = 1000
		c.DiskVersions = []int{1, 2, 5, 10}
		c.SnapshotKeys = []int{1000, 10000}
		c.SnapshotRepeats = 1
		c.Rounds = 1
	}
	return c
}

// Validate checks the configuration: every error found, joined.
func (c Config) Validate() error {
	var errs []error
	bad := func(format string, args ...any) { errs = append(errs, fmt.Errorf(format, args...)) }
	if c.Duration <= 0 {
		bad("duration must be > 0")
	}
	if c.Warmup < 0 {
		bad("warmup must be >= 0")
	}
	if c.SettleTimeout < 0 {
		bad("settle timeout must be >= 0")
	}
	for _, name := range c.Scenarios {
		if findScenario(name) == nil {
			bad("unknown scenario %q: want one of %s", name, strings.Join(ScenarioNames(), ", "))
		}
	}
	positive := func(name string, vs ...int) {
		if len(vs) == 0 {
			bad("%s: give at least one value", name)
		}
		for i, v := range vs {
			if v <= 0 {
				bad("%s must be > 0, not %d", name, v)
			}
			if slices.Contains(vs[:i], v) {
				// Its runs would be made twice, under one name.
				bad("%s: %d given twice", name, v)
			}
		}
	}
	positive("clients", c.Clients...)
	if len(c.ReadOps) == 0 {
		bad("read ops: give at least one of get, list, history")
	}
	for i, op := range c.ReadOps {
		if op != "get" && op != "list" && op != "history" {
			bad("unknown read op %q: want get, list or history", op)
		}
		if slices.Contains(c.ReadOps[:i], op) {
			bad("read ops: %s given twice", op)
		}
	}
	positive("hot keys", c.HotKeys)
	positive("read keys", c.ReadKeys)
	positive("mixed clients", c.MixedClients)
	positive("cas clients", c.CASClients)
	positive("fanout subscribers", c.FanoutSubscribers...)
	if !noSocketIOFanout(c.FanoutSocketIOSubscribers) {
		positive("fanout Socket.IO subscribers", c.FanoutSocketIOSubscribers...)
	}
	positive("fanout rate", c.FanoutRate)
	positive("fanout writers", c.FanoutWriters)
	positive("disk keys", c.DiskKeys)
	positive("disk versions", c.DiskVersions...)
	positive("snapshot keys", c.SnapshotKeys...)
	positive("snapshot repeats", c.SnapshotRepeats)
	if c.KeyOrder != KeysSequential && c.KeyOrder != KeysPerClient && c.KeyOrder != KeysRandom {
		bad("unknown key order %q: want %s, %s or %s", c.KeyOrder, KeysSequential, KeysPerClient, KeysRandom)
	}
	if c.ValueSize < 2 || c.ValueSize > 1<<20 {
		bad("value size must be 2 bytes to 1 MiB, not %d", c.ValueSize)
	}
	if c.Rate < 0 {
		bad("rate must be >= 0")
	}
	for _, p := range c.Compare {
		if !slices.Contains(PeerNames(), p) {
			bad("unknown peer %q: want %s", p, strings.Join(PeerNames(), ", "))
		}
	}
	if slices.Contains(c.Scenarios, scenarioReadInstances) && len(c.MoreTargets) == 0 {
		bad("the %s scenario needs more instances of the target's deployment (--more-targets)", scenarioReadInstances)
	}
	if slices.Contains(c.Scenarios, scenarioPeers) && len(c.Compare) == 0 {
		bad("the %s scenario needs peers to compare with (--compare %s)", scenarioPeers, strings.Join(PeerNames(), ","))
	}
	if len(c.Compare) > 0 && len(c.Scenarios) > 0 && !slices.Contains(c.Scenarios, scenarioPeers) && !slices.Contains(c.Scenarios, scenarioFanout) {
		bad("peers (--compare) are compared in the %s and %s scenarios: name one of them, or no scenario (the %s scenario alone)",
			scenarioPeers, scenarioFanout, scenarioPeers)
	}
	if slices.Contains(c.Compare, PeerEtcd) && c.EtcdPeer == "" {
		bad("the etcd peer needs the ctxd-etcd-peer command")
	}
	if len(c.EtcdEndpoints) > 0 && !slices.Contains(c.Compare, PeerEtcd) {
		bad("etcd endpoints are for the etcd peer (--compare etcd)")
	}
	if c.Preload < 0 || c.Preload > 0 && c.Preload < MinPreload {
		bad("preload must be at least %s (a new database's file is 16 MiB already: a smaller size loads nothing)", formatBytes(MinPreload))
	}
	positive("rounds", c.Rounds)
	positive("compare clients", c.CompareClients)
	return errors.Join(errs...)
}

func (c Config) settings() Settings {
	return Settings{
		Scenarios:                 c.Scenarios,
		DurationSeconds:           c.Duration.Seconds(),
		WarmupSeconds:             c.Warmup.Seconds(),
		Clients:                   c.Clients,
		ValueSize:                 c.ValueSize,
		Quick:                     c.Quick,
		Rate:                      c.Rate,
		HotKeys:                   c.HotKeys,
		KeyOrder:                  c.KeyOrder,
		ReadKeys:                  c.ReadKeys,
		ReadOps:                   c.ReadOps,
		MixedClients:              c.MixedClients,
		CASClients:                c.CASClients,
		FanoutSubscribers:         c.FanoutSubscribers,
		FanoutSocketIOSubscribers: c.FanoutSocketIOSubscribers,
		FanoutRate:                c.FanoutRate,
		FanoutBatch:               c.FanoutBatch,
		FanoutWriters:             c.FanoutWriters,
		DiskKeys:                  c.DiskKeys,
		DiskVersions:              c.DiskVersions,
		SnapshotKeys:              c.SnapshotKeys,
		SnapshotRepeats:           c.SnapshotRepeats,
		Compare:                   append([]string{}, c.Compare...),
		Rounds:                    c.Rounds,
		CompareClients:            c.CompareClients,
		PreloadBytes:              c.Preload,
	}
}

// Server is a server the suite can use: its base URL and how to stop it.
type Server struct {
	URL     string
	DataDir string
	Close   func() error
	// Memory, when set, reads the server's memory after a garbage
	// collection: for a server in a process of its own (ServePeer
	// answers it). Without it the suite reads /metrics.
	Memory func() (MemorySample, error)
	// Kill, when set, ends the server's process at once (SIGKILL), as a
	// crash would: a server in a process of its own.
	Kill func() error
	// Opened, when set, is what the server found at open.
	Opened *Opened
}

// Opened is what a server found at open: the write-ahead log records it
// replayed into its database (acknowledged writes a crash had left in the
// log alone), and how long that took.
type Opened struct {
	ReplayedChanges int64
	ReplaySeconds   float64
}

// Target is the server to measure: a running one at URL, or, when URL is
// empty, servers started by Fresh, each on an empty database of its own.
type Target struct {
	URL   string
	Fresh func() (*Server, error)
	// Isolated, when set, starts a fresh server in a process of its own:
	// disk-growth and fanout run on such servers, so that the memory they
	// report is the server's alone (see memory.go).
	Isolated func() (*Server, error)
	// Preload, when set, creates a new data folder holding a database
	// filled to size bytes by Preload (0: an empty database), stopped,
	// and returns the folder (the suite removes it) with what was
	// written. OnFolder starts a server on such a folder, keeping the
	// folder when it stops: in this process, or alone in a child process
	// (isolated; its Memory and Kill set), holding its committer back when
	// hold (its writes then stay in its write-ahead log alone, for a
	// crash restart). Both are needed by Config.Preload.
	Preload  func(ctx context.Context, size int64) (string, PreloadResult, error)
	OnFolder func(dir string, isolated, hold bool) (*Server, error)
	// Token, when set, is sent as a bearer token (a server with access
	// control); TLSConfig, when set, verifies an https URL's certificate.
	Token     string
	TLSConfig *tls.Config
	// Info is recorded in the report (the suite fills in Mode, URL and
	// ServerVersion).
	Info TargetInfo
}

// Step is one step of the run, for progress: the estimated durations of
// the steps before it (Done), of it, and of all (Total).
type Step struct {
	Index, Count          int
	Name                  string
	Estimate, Done, Total time.Duration
}

// step is a unit of the plan.
type step struct {
	name     string
	estimate time.Duration
	run      func(ctx context.Context) error
}

// scenario is a named part of the suite.
type scenario struct {
	name, about string
	// ownDatabase scenarios run on a fresh server (in-process), or on the
	// target only with Config.Destructive.
	ownDatabase bool
	steps       func(s *suite) []step
}

// scenarios is the standard set, in the order it runs.
var scenarios = []scenario{
	{name: "write-latency", about: "one client, sequential durable PUTs", steps: (*suite).writeLatencySteps},
	{name: "write-throughput", about: "durable PUTs by 1..256 clients, on distinct keys and on a few hot keys", steps: (*suite).writeThroughputSteps},
	{name: "read-latency", about: "one client, GETs of existing keys", steps: (*suite).readLatencySteps},
	{name: "read-throughput", about: "GETs, list pages of 100 and history reads by 1..256 clients", steps: (*suite).readThroughputSteps},
	{name: scenarioReadInstances, about: "with --more-targets: GETs by 64 clients on the target alone, then spread over it and the other instances, in alternating rounds", steps: (*suite).readInstancesSteps},
	{name: "mixed", about: "90% reads / 10% writes and 50/50 by 64 clients", steps: (*suite).mixedSteps},
	{name: "cas-contention", about: "compare-and-swap increments by 64 clients on 1 and 16 keys, counters checked", steps: (*suite).casSteps},
	{name: scenarioFanout, about: "WebSocket subscribers (/v1/watch, then Socket.IO) while writers write at a fixed rate: delivery latency, missed events", steps: (*suite).fanoutSteps},
	{name: "disk-growth", about: "file size as keys get versions, before and after compaction and defrag", ownDatabase: true, steps: (*suite).diskGrowthSteps},
	{name: "snapshot", about: "snapshot, dump, export and restore times as the database grows", ownDatabase: true, steps: (*suite).snapshotSteps},
	{name: scenarioPeers, about: "puts, gets and mixes against ctxd and the peers of --compare (etcd; nethttp, a bare net/http handler) in alternating rounds", steps: (*suite).peersSteps},
}

// scenarioPeers is the comparison with other servers: it runs when peers
// are given (Config.Compare) and no scenario is named, or when it is
// named; it is not part of the standard set. scenarioFanout, given the
// etcd peer, measures etcd's watch beside ctxd's feed.
const (
	scenarioPeers  = "peers"
	scenarioFanout = "fanout"
)

// defaultScenarios is what runs when no scenario is named: the
// comparison alone when peers are given, else the standard set, with
// read-instances when there are more instances to spread reads over.
func defaultScenarios(c Config) []string {
	if len(c.Compare) > 0 {
		return []string{scenarioPeers}
	}
	return slices.DeleteFunc(ScenarioNames(), func(n string) bool {
		return n == scenarioPeers || (n == scenarioReadInstances && len(c.MoreTargets) == 0)
	})
}

// ScenarioNames returns the names of the scenarios, in the order they run.
func ScenarioNames() []string {
	names := make([]string, len(scenarios))
	for i, sc := range scenarios {
		names[i] = sc.name
	}
	return names
}

// ScenarioHelp returns one line per scenario: its name and what it does.
func ScenarioHelp() string {
	var b strings.Builder
	for _, sc := range scenarios {
		fmt.Fprintf(&b, "  %-17s %s\n", sc.name, sc.about)
	}
	return b.String()
}

func findScenario(name string) *scenario {
	for i := range scenarios {
		if scenarios[i].name == name {
			return &scenarios[i]
		}
	}
	return nil
}

// suite is one run.
type suite struct {
	cfg    Config
	target Target
	ep     endpoint // the main server
	main   *Server  // the main server when the suite started it (nil: remote)
	runID  string
	value  []byte // ValueSize bytes of JSON
	report *Report

	readsReady bool   // read scenarios' keys are written
	large      bool   // the runs are on the large database (--preload)
	peers      []peer // of the peers scenario that started, ctxd first
	// peersStarted: startPeers ran (report.Peers says which did not start).
	peersStarted bool
	cleanups     []func() // run when Run returns: servers started by steps
}

// Run runs the scenarios of cfg against target and returns the report. A
// failed request or step is counted in the report (Errors, Failures) and
// does not stop the run; Run returns an error only when it cannot run at
// all, or when ctx is canceled (with the report so far).
func Run(ctx context.Context, cfg Config, target Target) (*Report, error) {
	if err := cfg.Validate(); err != nil {
		return nil, fmt.Errorf("perf: %w", err)
	}
	if target.URL == "" && target.Fresh == nil {
		return nil, errors.New("perf: no target: give a URL or a way to start a server")
	}
	if target.URL == "" && len(cfg.MoreTargets) > 0 {
		return nil, errors.New("perf: more targets are instances of the target's deployment: give the target's URL")
	}
	s := &suite{
		cfg:    cfg,
		target: target,
		runID:  strconv.FormatInt(time.Now().UnixNano()%(1<<40), 36),
		value:  makeValue(cfg.ValueSize),
		report: &Report{
			Format:    ReportFormat,
			StartedAt: time.Now().UTC(),
			Command:   cfg.Command,
			Units:     ReportUnits,
			Machine:   machineInfo(cfg.CtxdVersion),
			Target:    target.Info,
			Settings:  cfg.settings(),
			// Empty lists rather than null, so that readers find every field.
			Failures: []Failure{}, Runs: []Measurement{}, Fanout: []FanoutRun{}, DiskGrowth: []DiskGrowthRun{},
			Snapshot: []SnapshotRun{}, Skipped: []Skip{}, Targets: []TargetCheck{}, Metrics: []Metric{},
			Peers: []PeerInfo{}, Comparisons: []Comparison{},
		},
	}
	defer func() {
		for _, fn := range s.cleanups {
			fn()
		}
	}()
	if len(s.report.Settings.Scenarios) == 0 {
		s.report.Settings.Scenarios = defaultScenarios(cfg)
	}
	url := target.URL
	s.report.Target.Mode = "remote"
	if url == "" {
		srv, err := target.Fresh()
		if err != nil {
			return nil, fmt.Errorf("perf: start server: %w", err)
		}
		defer func() { _ = srv.Close() }()
		s.main = srv
		url = srv.URL
		s.report.Target.Mode = "in-process"
		s.report.Target.DataDir = srv.DataDir
		s.report.Target.Filesystem = filesystemType(srv.DataDir)
	}
	ep, err := s.endpoint(url)
	if err != nil {
		return nil, fmt.Errorf("perf: %w", err)
	}
	s.ep = ep
	s.report.Target.URL = url
	st, err := s.status(ctx, ep)
	if err != nil {
		return nil, fmt.Errorf("perf: server at %s: %w", url, err)
	}
	s.report.Target.ServerVersion = st.Version
	// The other instances too, before anything runs: one that does not
	// answer failed read-instances halfway, after its first half ran.
	for _, more := range s.cfg.MoreTargets {
		mep, err := s.endpoint(more)
		if err == nil {
			_, err = s.status(ctx, mep)
		}
		if err != nil {
			return nil, fmt.Errorf("perf: more target %s: %w", more, err)
		}
	}

	plan := s.plan()
	var total, done time.Duration
	for _, p := range plan {
		total += p.estimate
	}
	start := time.Now()
	for i, p := range plan {
		if s.cfg.OnStep != nil {
			s.cfg.OnStep(Step{Index: i, Count: len(plan), Name: p.name, Estimate: p.estimate, Done: done, Total: total})
		}
		if err := p.run(ctx); err != nil {
			if ctx.Err() != nil {
				s.report.Interrupted = true
				s.finish(start)
				return s.report, ctx.Err()
			}
			s.report.Failures = append(s.report.Failures, Failure{Step: p.name, Error: err.Error()})
		}
		done += p.estimate
	}
	s.finish(start)
	if err := ctx.Err(); err != nil {
		// A step that ended early without saying so (it returned what it
		// had): the run is still an interrupted one.
		s.report.Interrupted = true
		return s.report, err
	}
	return s.report, nil
}

// endpoint is a server's endpoint with the target's credentials.
func (s *suite) endpoint(url string) (endpoint, error) {
	ep, err := parseEndpoint(url)
	if err != nil {
		return endpoint{}, err
	}
	ep.tlsConfig = s.target.TLSConfig
	if s.target.Token != "" {
		ep.authorization = "Bearer " + s.target.Token
	}
	return ep, nil
}

// plan expands the chosen scenarios into steps.
func (s *suite) plan() []step {
	var plan []step
	for _, sc := range scenarios {
		if !slices.Contains(s.report.Settings.Scenarios, sc.name) {
			continue
		}
		if sc.ownDatabase && s.target.Fresh == nil && !s.cfg.Destructive {
			reason := "it compacts, defragments and restores the whole database: run it against a running server only with --destructive"
			s.report.Skipped = append(s.report.Skipped, Skip{Scenario: sc.name, Reason: reason})
			s.notef("skipping %s: %s", sc.name, reason)
			continue
		}
		plan = append(plan, sc.steps(s)...)
	}
	return append(plan, s.atScaleSteps()...)
}

// settleTimeout is Config.SettleTimeout, or its default.
func (s *suite) settleTimeout() time.Duration {
	if s.cfg.SettleTimeout > 0 {
		return s.cfg.SettleTimeout
	}
	return defaultSettleTimeout
}

func (s *suite) notef(format string, args ...any) {
	if s.cfg.Notef != nil {
		s.cfg.Notef(format, args...)
	}
}

// finish totals the errors and derives the targets and the metrics.
func (s *suite) finish(start time.Time) {
	r := s.report
	r.FinishedAt = time.Now().UTC()
	r.Machine.LoadAverageEnd = loadAverage()
	r.ElapsedSeconds = round3(time.Since(start).Seconds())
	r.Errors = int64(len(r.Failures))
	for _, x := range r.Runs {
		r.Errors += x.Errors
	}
	for _, x := range r.Fanout {
		r.Errors += x.Errors + x.Missed + x.Duplicates
	}
	for _, x := range r.DiskGrowth {
		r.Errors += x.Errors
	}
	for _, x := range r.Snapshot {
		r.Errors += x.Errors
	}
	for _, c := range r.Comparisons {
		for _, x := range c.Results {
			r.Errors += x.Errors
		}
	}
	r.Memory = memorySummary(r)
	r.Targets = checkTargets(r)
	r.Metrics = metricsOf(r)
}

// makeValue returns n bytes of JSON: {"v":"xxx..."}, or a string when n is
// too small for an object.
func makeValue(n int) []byte {
	const head, tail = `{"v":"`, `"}`
	if n < len(head)+len(tail) {
		return []byte(`"` + strings.Repeat("x", n-2) + `"`)
	}
	return []byte(head + strings.Repeat("x", n-len(head)-len(tail)) + tail)
}

// machineInfo describes this machine.
func machineInfo(ctxdVersion string) Machine {
	m := Machine{
		Cores:       runtime.NumCPU(),
		GOMAXPROCS:  runtime.GOMAXPROCS(0),
		GoVersion:   runtime.Version(),
		OS:          runtime.GOOS,
		Arch:        runtime.GOARCH,
		CtxdVersion: ctxdVersion,
	}
	m.Hostname, _ = os.Hostname()
	m.LoadAverage = loadAverage()
	m.CPU = procField("/proc/cpuinfo", "model name")
	if kb := procField("/proc/meminfo", "MemTotal"); kb != "" {
		n, _ := strconv.ParseInt(strings.TrimSuffix(kb, " kB"), 10, 64)
		m.MemoryBytes = n << 10
	}
	return m
}

// loadAverage returns the 1-minute load average (0 where unknown).
func loadAverage() float64 {
	b, err := os.ReadFile("/proc/loadavg")
	if err != nil {
		return 0
	}
	first, _, _ := strings.Cut(string(b), " ")
	v, _ := strconv.ParseFloat(first, 64)
	return v
}

// procField returns the value of the first "name: value" line of a /proc
// file ("" when there is none).
func procField(path, name string) string {
	f, err := os.Open(path)
	if err != nil {
		return ""
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		k, v, ok := strings.Cut(sc.Text(), ":")
		if ok && strings.TrimSpace(k) == name {
			return strings.TrimSpace(v)
		}
	}
	return ""
}
