package main

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"runtime/pprof"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/spf13/cobra"

	"github.com/framework0/ctxd/configs"
	"github.com/framework0/ctxd/internal/fsutil"
	"github.com/framework0/ctxd/perf"
)

// perfFlags are the flags of `ctxd perf`.
type perfFlags struct {
	target, token, caCert                                   string
	out, cpuProfile, configPath, serverLogLevel, dataParent string
	etcdPeer, preload, dataDir                              string
	quick, destructive, holdCommits                         bool
}

func (a *app) perfCmd() *cobra.Command {
	def := perf.DefaultConfig(false)
	quick := perf.DefaultConfig(true)
	var pf perfFlags
	cfg := def // the flags write into it; quick defaults are applied to the unset ones
	cmd := &cobra.Command{
		Use:   "perf [SCENARIO...]",
		Short: "Run the performance suite against an in-process or a running server",
		Long: `Run the performance suite: latency percentiles, throughput by concurrency,
WebSocket fan-out, disk growth and snapshot times, measured end to end over
HTTP and WebSocket on loopback.

Without --target it starts its own server in this process, on a temporary
folder with the real HTTP stack and real fsync (the default configuration,
or --config FILE); with --target URL it measures a running server.
Without SCENARIO it runs the standard set, all of:

` + perf.ScenarioHelp() + `
Results go to OUT/<time>/: report.json (fields: perf/REPORT.md), report.html
(charts, opens offline) and, in-process, server.log; a table is printed.
--quick is the smoke run of the whole set, well under a minute: ` + fmt.Sprintf("%s windows\nafter %s warm-up, %d read keys, disk growth of %d keys, snapshots of %v keys;",
			quick.Duration, quick.Warmup, quick.ReadKeys, quick.DiskKeys, quick.SnapshotKeys) + `
flags given explicitly override it.

--compare etcd runs the same puts, gets and mixes against ctxd and against
an embedded single-member etcd (the ` + etcdPeerCommand + ` command, beside this
binary: 'make build' builds both), in alternating rounds, with a bare Go
net/http handler over an in-memory map as the HTTP floor; the report gives
ctxd's numbers as ratios of theirs. Alone it runs only that comparison (the
peers scenario); with fanout named, fanout also measures etcd's watch with
the same subscribers and writes (each subscriber an etcd client of its own).
Named scenarios run as named: --compare goes with peers or fanout.

The servers of disk-growth and fanout run alone in a child process
('ctxd perf serve'), so that the memory they report is the server's own.

--preload SIZE (e.g. 1GiB) then runs the request-loop scenarios again on a
database filled to SIZE by a direct bulk load, side by side with the fresh
runs, and times its open (cold page cache when root) and a restart after a
crash (the write-ahead log's replay), with the server's memory after each.

A run with errors (failed requests, missed events, a failed step) says so
loudly and exits with code 1, after writing its reports; so does a run
stopped by Ctrl-C or SIGTERM (its reports hold what was measured, marked
interrupted).
Compare two runs with 'ctxd perf compare OLD.json NEW.json'.`,
		Args: cobra.ArbitraryArgs,
	}
	f := cmd.Flags()
	f.StringVar(&pf.target, "target", "", "measure the running server at `URL` (or host:port) instead of an in-process one")
	f.StringVar(&pf.token, "token", a.getenv(envToken), "access `token` for a server with access control: --target, or --config with auth.* (env CTXD_TOKEN)")
	f.StringVar(&pf.caCert, "cacert", a.getenv(envCACert), "with --target: PEM `file` of the CA that signed an https server's certificate (env CTXD_CACERT)")
	f.BoolVar(&pf.quick, "quick", false, "the short smoke run of the whole set: windows of 0.4s after 0.1s of warm-up, 2,000 read keys, disk-growth on 1,000 keys to 10 versions, snapshots of 1,000 and 10,000 keys once each, 1 round (a flag given beside it wins)")
	f.DurationVar(&cfg.Duration, "duration", def.Duration, "measured window of each run")
	f.DurationVar(&cfg.Warmup, "warmup", def.Warmup, "warm-up before each measured window")
	f.IntSliceVar(&cfg.Clients, "clients", def.Clients, "concurrency levels of write-throughput and read-throughput")
	f.IntVar(&cfg.ValueSize, "value-size", def.ValueSize, "bytes of JSON per value written")
	f.IntVar(&cfg.Rate, "rate", def.Rate, "run write-latency and read-latency at this fixed `rate` (ops/s), timed from the intended send times (0: closed loop)")
	f.IntVar(&cfg.HotKeys, "hot-keys", def.HotKeys, "keys of write-throughput's hot-key runs")
	f.StringVar(&cfg.KeyOrder, "key-order", def.KeyOrder, "order of the new keys of the distinct-key writes: sequential (one sequence), per-client (a range per client) or random")
	f.IntVar(&cfg.ReadKeys, "read-keys", def.ReadKeys, "keys the read scenarios read")
	f.StringSliceVar(&cfg.ReadOps, "read-ops", def.ReadOps, "reads of read-throughput: get, list (pages of 100), history (100 changes)")
	f.IntVar(&cfg.MixedClients, "mixed-clients", def.MixedClients, "clients of mixed")
	f.IntVar(&cfg.CASClients, "cas-clients", def.CASClients, "clients of cas-contention")
	f.IntSliceVar(&cfg.FanoutSubscribers, "fanout-subscribers", def.FanoutSubscribers, "subscriber counts of fanout")
	f.IntSliceVar(&cfg.FanoutSocketIOSubscribers, "fanout-socketio-subscribers", def.FanoutSocketIOSubscribers, "subscriber counts of fanout's Socket.IO runs (Socket.IO clients over WebSocket); 0 alone: none")
	f.IntVar(&cfg.FanoutRate, "fanout-rate", def.FanoutRate, "writes per second during fanout")
	f.IntVar(&cfg.FanoutWriters, "fanout-writers", def.FanoutWriters, "writer connections during fanout")
	f.BoolVar(&cfg.FanoutBatch, "fanout-batch", def.FanoutBatch, "subscribe with batch=true (several changes per frame under load)")
	f.StringSliceVar(&cfg.MoreTargets, "more-targets", nil, "with --target: more instances of its deployment (`URLs`, ctxd on the same etcd prefix): fanout's subscribers are spread over the target and them (its writes go to the target), and read-instances compares GETs on the target alone with GETs spread over all")
	f.StringSliceVar(&cfg.MoreTargets, "fanout-targets", nil, "the old name of --more-targets")
	_ = f.MarkDeprecated("fanout-targets", "use --more-targets")
	f.IntVar(&cfg.DiskKeys, "disk-keys", def.DiskKeys, "keys of disk-growth")
	f.IntSliceVar(&cfg.DiskVersions, "disk-versions", def.DiskVersions, "versions per key at which disk-growth takes the size")
	f.IntSliceVar(&cfg.SnapshotKeys, "snapshot-keys", def.SnapshotKeys, "database sizes (keys) of snapshot")
	f.IntVar(&cfg.SnapshotRepeats, "snapshot-repeats", def.SnapshotRepeats, "times each snapshot operation is timed (the median is reported)")
	f.BoolVar(&pf.destructive, "destructive", false, "with --target, also run disk-growth and snapshot (they compact history and restore the whole database)")
	f.StringSliceVar(&cfg.Compare, "compare", nil, "compare with these `peers`: "+strings.Join(perf.PeerNames(), ", ")+" (nethttp, the HTTP floor, is always one); alone, runs only the comparison; with etcd, fanout also measures etcd's watch")
	f.IntVar(&cfg.Rounds, "rounds", def.Rounds, "with --compare: rounds of each run on each server, in turn (medians are reported)")
	f.IntVar(&cfg.CompareClients, "compare-clients", def.CompareClients, "with --compare: clients of the comparison's runs (besides one client); also read-instances' clients")
	f.StringSliceVar(&cfg.EtcdEndpoints, "etcd-endpoints", nil, "with --compare etcd: load this existing etcd (client `URLs`, the one a ctxd-on-etcd --target uses) instead of an embedded one")
	f.StringVar(&pf.etcdPeer, "etcd-peer", "", "with --compare etcd: path of the "+etcdPeerCommand+" command (default: beside this binary, else on PATH)")
	f.StringVar(&pf.preload, "preload", "", "also run the request-loop scenarios on a database filled to `SIZE` (e.g. 1GiB, 200MiB) (at least 20MiB) by a direct bulk load, side by side with the fresh one, and time its open (cold page cache when root), its memory after, and a restart after a crash")
	f.StringVar(&pf.out, "out", "perf-results", "results `folder`: each run writes into OUT/<time>/")
	f.StringVar(&pf.cpuProfile, "cpuprofile", "", "write a CPU profile of the whole run (load and in-process server; not the servers in their own process) to `FILE` (go tool pprof FILE)")
	f.StringVar(&pf.configPath, "config", "", "in-process server: YAML configuration `file` (as for serve; its addr and data_dir are ignored)")
	f.StringVar(&pf.serverLogLevel, "server-log-level", "warn", "in-process server: log level (info writes one access log line per request) into OUT/<time>/server.log")
	f.StringVar(&pf.dataParent, "data-parent", "", "in-process server: create its temporary data folders in `DIR` (default: the system's temp folder)")
	cmd.RunE = a.action(func(cmd *cobra.Command, args []string) error {
		if pf.quick {
			applyQuickDefaults(&cfg, quick, cmd.Flags().Changed)
		}
		cfg.Scenarios = args
		cfg.Destructive = pf.destructive
		if pf.preload != "" {
			n, err := configs.ParseSize(pf.preload)
			if err != nil {
				return usagef("--preload: %v", err)
			}
			if pf.target != "" {
				return usagef("--preload fills the in-process server's database: it does not go with --target")
			}
			cfg.Preload = n
		}
		if pf.etcdPeer != "" && !slices.Contains(cfg.Compare, perf.PeerEtcd) {
			// As --etcd-endpoints: a path given for nothing is a mistake
			// the user should hear of (a forgotten --compare etcd).
			return usagef("--etcd-peer is the etcd peer's command: it goes with --compare etcd")
		}
		if slices.Contains(cfg.Compare, perf.PeerEtcd) {
			path, err := findEtcdPeer(pf.etcdPeer)
			if err != nil {
				return err
			}
			cfg.EtcdPeer = path
		}
		if err := cfg.Validate(); err != nil {
			return &usageError{fmt.Errorf("perf: %w", err)}
		}
		if pf.target == "" && len(cfg.MoreTargets) > 0 {
			return usagef("--more-targets are instances of --target's deployment: give --target")
		}
		if pf.target != "" && cmd.Flags().Changed("server-log-level") {
			// It sets the in-process server's log: a running server's is
			// its own (it was accepted and did nothing).
			return usagef("--server-log-level sets the in-process server's log: it does not go with --target")
		}
		if pf.target == "" && pf.destructive {
			return usagef("--destructive applies to a --target (the in-process server always runs disk-growth and snapshot)")
		}
		if pf.target != "" {
			pf.target = serverURL(pf.target)
		}
		for i, u := range cfg.MoreTargets {
			cfg.MoreTargets[i] = serverURL(strings.TrimSpace(u))
		}
		for i, u := range append([]string{pf.target}, cfg.MoreTargets...) {
			if err := perf.CheckURL(u); u != "" && err != nil {
				return usagef("%v", err)
			}
			// The target again, or one instance twice, measured one
			// server as two: read-instances' ratio said nothing.
			if i > 0 && slices.Contains(append([]string{pf.target}, cfg.MoreTargets[:i-1]...), u) {
				return usagef("--more-targets: %s is given twice (or is --target): give the other instances", u)
			}
		}
		return a.runPerf(cmd.Context(), cfg, pf)
	})
	cmd.AddCommand(a.perfCompareCmd(), a.perfServeCmd())
	return cmd
}

// etcdPeerCommand is the command that holds the embedded etcd of --compare
// etcd (cmd/ctxd-etcd-peer): the ctxd binary does not link etcd.
const etcdPeerCommand = "ctxd-etcd-peer"

// findEtcdPeer returns the etcd peer command: given, else beside this
// binary, else on PATH.
func findEtcdPeer(given string) (string, error) {
	if given != "" {
		if fi, err := os.Stat(given); err != nil || fi.IsDir() {
			return "", usagef("--etcd-peer %s: not a command file", given)
		}
		return given, nil
	}
	var beside string
	if exe, err := os.Executable(); err == nil {
		beside = filepath.Join(filepath.Dir(exe), etcdPeerCommand)
		if fi, err := os.Stat(beside); err == nil && !fi.IsDir() {
			return beside, nil
		}
	}
	if path, err := exec.LookPath(etcdPeerCommand); err == nil {
		return path, nil
	}
	return "", usagef("--compare etcd needs the %s command, which holds the embedded etcd (the ctxd binary does not link etcd): "+
		"it is neither at %s nor on PATH; 'make build' builds it into bin/ beside ctxd, or give its path with --etcd-peer", etcdPeerCommand, beside)
}

// applyQuickDefaults puts quick's values into the settings whose flag was
// not given (changed tells which were).
func applyQuickDefaults(cfg *perf.Config, quick perf.Config, changed func(flag string) bool) {
	set := func(name string, apply func()) {
		if !changed(name) {
			apply()
		}
	}
	cfg.Quick = true
	set("duration", func() { cfg.Duration = quick.Duration })
	set("warmup", func() { cfg.Warmup = quick.Warmup })
	set("clients", func() { cfg.Clients = quick.Clients })
	set("read-keys", func() { cfg.ReadKeys = quick.ReadKeys })
	set("fanout-subscribers", func() { cfg.FanoutSubscribers = quick.FanoutSubscribers })
	set("fanout-socketio-subscribers", func() { cfg.FanoutSocketIOSubscribers = quick.FanoutSocketIOSubscribers })
	set("disk-keys", func() { cfg.DiskKeys = quick.DiskKeys })
	set("disk-versions", func() { cfg.DiskVersions = quick.DiskVersions })
	set("snapshot-keys", func() { cfg.SnapshotKeys = quick.SnapshotKeys })
	set("snapshot-repeats", func() { cfg.SnapshotRepeats = quick.SnapshotRepeats })
	set("rounds", func() { cfg.Rounds = quick.Rounds })
}

// runPerf runs the suite, writes the reports and prints the table.
func (a *app) runPerf(ctx context.Context, cfg perf.Config, pf perfFlags) error {
	if pf.target != "" && pf.configPath != "" {
		return usagef("--config configures the in-process server: it does not go with --target")
	}
	if _, err := parseLevel(pf.serverLogLevel); err != nil {
		return usagef("--server-log-level: %v", err)
	}
	// Ctrl-C stops the run: the report so far is written, the servers
	// stopped and their folders removed.
	ctx, stop := signal.NotifyContext(ctx, os.Interrupt, syscall.SIGTERM)
	defer stop()
	started := time.Now().UTC()
	outDir, err := newResultsFolder(pf.out, started)
	if err != nil {
		return fmt.Errorf("create results folder: %w", err)
	}
	// A run that ends before it has a report (a bad flag found later, a
	// server that does not start, an unreachable target) leaves no empty
	// folder. Deferred first, it runs last: after the servers, whose log
	// is in the folder, are stopped.
	reported := false
	defer func() {
		if !reported {
			removeIfEmpty(outDir)
		}
	}()
	cfg.Command = "ctxd " + strings.Join(os.Args[1:], " ")
	cfg.CtxdVersion = version

	target := perf.Target{URL: pf.target, Token: pf.token}
	if pf.caCert != "" {
		pem, err := os.ReadFile(pf.caCert)
		if err != nil {
			return usagef("--cacert: %v", err)
		}
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(pem) {
			return usagef("--cacert: %s holds no PEM certificate", pf.caCert)
		}
		target.TLSConfig = &tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS12}
	}
	if pf.target == "" {
		servers, err := a.inProcessServers(pf, outDir)
		if err != nil {
			return err
		}
		defer servers.close()
		target.Fresh = servers.start
		target.Isolated = servers.startIsolated
		target.Preload = servers.preload
		target.OnFolder = servers.onFolder
		target.Info.ServerLogLevel = pf.serverLogLevel
	}
	if len(cfg.Compare) > 0 {
		peerLog, err := os.OpenFile(filepath.Join(outDir, "peers.log"), os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
		if err != nil {
			return fmt.Errorf("peers log: %w", err)
		}
		defer peerLog.Close()
		cfg.PeerLog = peerLog
	}

	onStep, stopProgress := a.perfProgress()
	cfg.OnStep = onStep
	cfg.Notef = func(format string, args ...any) {
		a.clearProgressLine()
		fmt.Fprintf(a.stderr, "ctxd perf: "+format+"\n", args...)
	}
	var profile *fsutil.Temp // the CPU profile, committed once the run ends
	if pf.cpuProfile != "" {
		var err error
		profile, err = fsutil.CreateTemp(filepath.Dir(pf.cpuProfile), filepath.Base(pf.cpuProfile), 0o644)
		if err != nil {
			stopProgress()
			return fmt.Errorf("cpu profile: %w", err)
		}
		defer profile.Discard()
		if err := pprof.StartCPUProfile(profile); err != nil {
			stopProgress()
			return fmt.Errorf("cpu profile: %w", err)
		}
		defer pprof.StopCPUProfile()
	}
	report, runErr := perf.Run(ctx, cfg, target)
	stopProgress()
	if profile != nil {
		pprof.StopCPUProfile()
		if err := profile.Commit(pf.cpuProfile); err != nil {
			return errors.Join(runErr, fmt.Errorf("cpu profile: %w", err))
		}
	}
	if report == nil {
		return runErr
	}
	reported = true
	// The table is made first and printed after the files are written,
	// whatever became of them: a results folder that cannot take the
	// report (a full disk) loses the files, not the numbers of a run that
	// may have taken minutes, and a standard output that is a closed pipe
	// (SIGPIPE ends the process) loses the table, not the files.
	var table bytes.Buffer
	if err := report.WriteTable(&table); err != nil {
		return err
	}
	jsonPath, htmlPath := filepath.Join(outDir, "report.json"), filepath.Join(outDir, "report.html")
	saveErr := report.WriteJSON(jsonPath)
	if saveErr == nil {
		saveErr = report.WriteHTML(htmlPath)
	}
	if _, err := a.stdout.Write(table.Bytes()); err != nil {
		return errors.Join(err, saveErr)
	}
	if saveErr != nil {
		return fmt.Errorf("the results above were not saved: %w", saveErr)
	}
	fmt.Fprintf(a.stdout, "\nreports: %s\n         %s\n", jsonPath, htmlPath)
	if pf.cpuProfile != "" {
		fmt.Fprintf(a.stdout, "cpu profile: %s (go tool pprof -top %s)\n", pf.cpuProfile, pf.cpuProfile)
	}
	if runErr != nil && report.Interrupted && ctx.Err() != nil {
		// Exit 1, as a stopped dump: the run is incomplete (watch and
		// serve run until stopped, and exit 0). "context canceled"
		// said nothing of why.
		return fmt.Errorf("perf interrupted (Ctrl-C or SIGTERM): the reports above hold what was measured before the stop")
	}
	if runErr != nil {
		return fmt.Errorf("perf stopped early: %w", runErr)
	}
	if report.Errors > 0 {
		return fmt.Errorf("perf: %d errors in this run (see the report): its numbers are suspect", report.Errors)
	}
	return nil
}

func (a *app) perfCompareCmd() *cobra.Command {
	var minChange float64
	var failOnWorse bool
	cmd := &cobra.Command{
		Use:   "compare OLD.json NEW.json",
		Short: "Compare two perf reports metric by metric, with a noise-aware verdict",
		Long: `Compare two perf reports (report.json, or the folders holding them) metric
by metric. A difference within twice the runs' combined spread (each metric's
standard deviation over its run's intervals or repeats), or within
--min-change percent, is marked noise; beyond it the metric is better or
WORSE. The change is the new value against the old, in percent of the old.
The first metric is each run's error count: errors that appear are WORSE.
A metric whose run had errors shows them (RUN ERRORS, old → new); one
in one report only is added or removed; one that a run could not measure
(a server that answered nothing) is "not measured", with no verdict, and
neither fails nor passes --fail-on-worse. Differences between the two
machines or settings are noted first.`,
		Args: cobra.ExactArgs(2),
	}
	cmd.Flags().Float64Var(&minChange, "min-change", perf.DefaultMinChange*100, "smallest change, in `percent`, that is more than noise")
	cmd.Flags().BoolVar(&failOnWorse, "fail-on-worse", false, "exit with code 1 when a metric is worse")
	cmd.RunE = a.action(func(cmd *cobra.Command, args []string) error {
		if minChange < 0 {
			return usagef("--min-change must be >= 0")
		}
		before, err := perf.ReadReport(reportPath(args[0]))
		if err != nil {
			return err
		}
		after, err := perf.ReadReport(reportPath(args[1]))
		if err != nil {
			return err
		}
		deltas := perf.Compare(before, after, minChange/100)
		if err := perf.WriteComparison(a.stdout, before, after, deltas); err != nil {
			return err
		}
		if n := perf.CountWorse(deltas); failOnWorse && n > 0 {
			return fmt.Errorf("perf compare: %d metrics worse", n)
		}
		return nil
	})
	return cmd
}

// reportPath accepts a report.json or a results folder holding one.
func reportPath(p string) string {
	if fi, err := os.Stat(p); err == nil && fi.IsDir() {
		return filepath.Join(p, "report.json")
	}
	return p
}

var errNoLevel = errors.New("want trace, debug, info, warn or error")

func parseLevel(s string) (string, error) {
	switch s {
	case "trace", "debug", "info", "warn", "error":
		return s, nil
	}
	return "", errNoLevel
}

// newResultsFolder creates the folder of a run started at started in
// parent: named by the time to the second, with -2, -3, ... added when a
// run that started in the same second has it (two runs wrote into one
// folder, the later report over the earlier one).
func newResultsFolder(parent string, started time.Time) (string, error) {
	if err := os.MkdirAll(parent, 0o755); err != nil {
		return "", err
	}
	base := filepath.Join(parent, started.Format("20060102T150405Z"))
	dir := base
	for n := 2; ; n++ {
		err := os.Mkdir(dir, 0o755)
		if err == nil || !errors.Is(err, fs.ErrExist) || n > 1000 {
			return dir, err
		}
		dir = base + "-" + strconv.Itoa(n)
	}
}

// removeIfEmpty removes the results folder of a run that failed before
// it measured anything, when it holds nothing but empty files (the
// server's log of a server that logged nothing): an unreachable target
// left an empty folder per attempt.
func removeIfEmpty(dir string) {
	entries, err := os.ReadDir(dir)
	if err != nil {
		return
	}
	for _, e := range entries {
		if fi, err := e.Info(); err != nil || !fi.Mode().IsRegular() || fi.Size() > 0 {
			return
		}
	}
	_ = os.RemoveAll(dir)
}
