package robustness_test

import (
	"context"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/framework0/ctxd"
	"github.com/framework0/ctxd/client"
	"github.com/framework0/ctxd/internal/powerfs"
	"github.com/framework0/ctxd/internal/testkit"
	"github.com/framework0/ctxd/store/bolt"
)

// Settings of TestPowerLoss, from the environment (make powerloss sets
// them).
const (
	envTrials = "CTXD_POWERLOSS_TRIALS"   // number of trials (default 6, as make test runs)
	envSeed   = "CTXD_POWERLOSS_SEED"     // seed of the first trial (default: from the clock); trial i has seed+i
	envReport = "CTXD_POWERLOSS_REPORT"   // file that gets the two summary lines
	envCut    = "CTXD_POWERLOSS_CUTPOINT" // run only this cut point (default: each in turn)
)

// TestPowerLoss runs power-loss trials against the production binary:
// each runs ctxd serve on a powerfs mount under concurrent writers,
// watchers and one maintenance operation (the cut point), cuts the power,
// restarts ctxd on what survived and checks that nothing acknowledged was
// lost, that the server opens, that history and the change feed have no
// gap, and that no file is half-written. Each mount draws its mode
// (Strict or Torn) and whether the cut keeps a prefix of the folder
// changes not synced (KeepUnsyncedNames), as ext4 and xfs may. Some trials
// restart on a new mount and cut the power a second time. A failing trial prints how to run
// it again (make powerloss TRIALS=1 SEED=<seed>: the same cut point, modes
// and draws; the timing is the machine's).
func TestPowerLoss(t *testing.T) {
	if err := powerfs.Available(); err != nil {
		writeReport(t, "power-loss: skipped: "+err.Error())
		t.Skip("power-loss trials need FUSE: " + err.Error())
	}
	trials := envInt(t, envTrials, 6)
	base := int64(envInt(t, envSeed, int(time.Now().UnixNano()%1_000_000)))
	start := time.Now()
	var sum summary
	for i := range trials {
		seed := base + int64(i)
		t.Run(fmt.Sprintf("seed=%d", seed), func(t *testing.T) {
			finished := false
			defer func() {
				if !finished { // the harness itself failed (t.Fatal): the test fails
					sum.mu.Lock()
					sum.aborted++
					sum.mu.Unlock()
				}
			}()
			res := runTrial(t, ctxdProgram, seed)
			finished = true
			sum.add(res)
			t.Logf("trial %d/%d, seed %d: cut points %s; %d acknowledged writes and %d watched changes checked; %d lost, %d unopenable, %d torn, %d other problems",
				i+1, trials, seed, strings.Join(res.cutPoints, ", "), res.acked, res.watched, res.lost, res.unopenable, res.torn, res.inconsistent)
			rerun := fmt.Sprintf("make powerloss TRIALS=1 SEED=%d", seed)
			if c := os.Getenv(envCut); c != "" {
				rerun = envCut + "=" + c + " " + rerun
			}
			for _, p := range res.problems {
				t.Errorf("%s (rerun: %s)", p, rerun)
			}
		})
	}
	details, line := sum.lines(trials, time.Since(start))
	t.Log(details)
	t.Log(line)
	writeReport(t, details, line)
	if sum.lost+sum.unopenable+sum.torn+sum.inconsistent > 0 {
		t.Errorf("%s; %d other problems", line, sum.inconsistent)
	}
}

func envInt(t *testing.T, name string, def int) int {
	s := os.Getenv(name)
	if s == "" {
		return def
	}
	n, err := strconv.Atoi(s)
	require.NoError(t, err, "%s", name)
	return n
}

func writeReport(t *testing.T, lines ...string) {
	if path := os.Getenv(envReport); path != "" {
		require.NoError(t, os.WriteFile(path, []byte(strings.Join(lines, "\n")+"\n"), 0o644))
	}
}

// program is what a trial runs on the mount: ctxd, or the negative
// control's toy server.
type program struct {
	name string
	// full: the program is ctxd, with transactions, compare-and-swap,
	// watchers, maintenance and files; otherwise only puts are sent and
	// read back.
	full bool
	// start starts it on dataDir, with settings (CTXD_* variables) for
	// the cut point to come.
	start func(t *testing.T, dataDir string, settings []string) (server, error)
}

type server interface {
	URL() string
	Kill()       // SIGKILL, or what comes closest
	Stop() error // a clean stop
	Log() string // what it wrote to stderr
	// Exited is "" while the program runs, else how it ended.
	Exited() string
}

var ctxdProgram = program{name: "ctxd", full: true, start: func(t *testing.T, dataDir string, settings []string) (server, error) {
	p, err := testkit.StartServeErr(t, ctxdBin, dataDir, testkit.ServeOptions{Env: testkit.CleanEnv(settings...)})
	if err != nil {
		return nil, err
	}
	return ctxdServer{p}, nil
}}

type ctxdServer struct{ p *testkit.Process }

func (s ctxdServer) URL() string { return s.p.URL }
func (s ctxdServer) Kill()       { s.p.Kill() }
func (s ctxdServer) Log() string { return s.p.Stderr.String() }

// Quit ends ctxd with its goroutines' stacks in its log (quitIfStuck).
func (s ctxdServer) Quit() { s.p.Quit(10 * time.Second) }

func (s ctxdServer) Exited() string {
	select {
	case <-s.p.Done():
		msg := fmt.Sprint(s.p.Err())
		if c := crashed(s.Log()); c != "" {
			msg += ": " + c
		}
		return msg
	default:
		return ""
	}
}

func (s ctxdServer) Stop() error {
	select {
	case <-s.p.Done():
		return fmt.Errorf("ctxd exited before it was stopped: %v", s.p.Err())
	default:
	}
	if err := s.p.Cmd.Process.Signal(syscall.SIGTERM); err != nil {
		return err
	}
	select {
	case <-s.p.Done():
	case <-time.After(30 * time.Second):
		s.p.Kill()
		return fmt.Errorf("ctxd did not stop within 30s of SIGTERM")
	}
	return s.p.Err()
}

// quitIfStuck ends srv with its goroutines' stacks in its log (printed as
// the test fails) when err is a request that timed out: a server that
// stopped answering says where it waited. (A setup snapshot once took
// over the client's 30 s in CI, and nothing told why.)
func quitIfStuck(srv server, err error) {
	var ne net.Error
	if q, ok := srv.(interface{ Quit() }); ok && errors.As(err, &ne) && ne.Timeout() {
		q.Quit()
	}
}

// trialResult is what one trial checked and found.
type trialResult struct {
	mu                                   sync.Mutex
	cutPoints                            []string // one per power cut: "<cut point>" or "<cut point> (inside)"
	acked                                int      // acknowledged writes checked after a restart
	workload                             int      // those of them made by the writers (the others: the setup's)
	watched                              int      // changes seen by watchers, checked after a restart
	restarts                             int
	problems                             []string
	lost, unopenable, torn, inconsistent int
}

func (r *trialResult) problem(kind, format string, args ...any) {
	r.mu.Lock()
	defer r.mu.Unlock()
	switch kind {
	case probLost:
		r.lost++
	case probUnopenable:
		r.unopenable++
	case probTorn:
		r.torn++
	default:
		r.inconsistent++
	}
	r.problems = append(r.problems, fmt.Sprintf("%s (restart %d): ", kind, r.restarts)+fmt.Sprintf(format, args...))
}

type summary struct {
	mu                                   sync.Mutex
	cuts, acked, workload, watched       int
	restarts, aborted                    int
	lost, unopenable, torn, inconsistent int
	cutPoints                            map[string]int
}

func (s *summary) add(r *trialResult) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.cutPoints == nil {
		s.cutPoints = map[string]int{}
	}
	for _, c := range r.cutPoints {
		s.cutPoints[c]++
	}
	s.cuts += len(r.cutPoints)
	s.acked += r.acked
	s.workload += r.workload
	s.watched += r.watched
	s.restarts += r.restarts
	s.lost += r.lost
	s.unopenable += r.unopenable
	s.torn += r.torn
	s.inconsistent += r.inconsistent
}

// lines are the report: the details, then the summary line.
func (s *summary) lines(trials int, took time.Duration) (string, string) {
	var hit []string
	for _, c := range append(slices.Clone(cutPoints), cutLongLog) {
		n, in := s.cutPoints[c], s.cutPoints[c+" (inside)"]
		if n+in == 0 {
			continue
		}
		if c == cutCommits || c == cutLongLog {
			hit = append(hit, fmt.Sprintf("%s %d", c, n+in))
		} else {
			hit = append(hit, fmt.Sprintf("%s %d (%d inside the operation)", c, n+in, in))
		}
	}
	details := fmt.Sprintf("power-loss: %d power cuts, %d restarts, %d acknowledged writes checked (%d by concurrent writers, %d by the setups), %d changes seen by watchers checked, %d other problems, %d trials aborted by a harness error, %s; cut points: %s",
		s.cuts, s.restarts, s.acked, s.workload, s.acked-s.workload, s.watched, s.inconsistent, s.aborted, took.Round(100*time.Millisecond), strings.Join(hit, ", "))
	line := fmt.Sprintf("power-loss: %d trials, %d acknowledged writes lost, %d unopenable files, %d torn files",
		trials, s.lost, s.unopenable, s.torn)
	return details, line
}

// trial is one power-loss trial: one or two phases, each a run of the
// program on a powerfs mount ended by a power cut, each followed by a
// restart on what survived and its checks.
type trial struct {
	t    *testing.T
	prog program
	seed int64
	rng  *rand.Rand
	res  *trialResult

	// What earlier phases left, to check again after the next cut.
	earlier   []known             // every change read back after the last restart
	gapRevs   []uint64            // snapshot revisions of the full restores attempted
	snapshots map[string]snapWant // snapshot id -> whether it must be listed
	dumps     map[string]int64    // dump file -> its size (-1: any size)
	tokens    map[string]string   // token name -> secret
	last      *phaseLog           // the phase just cut
}

// snapWant is what a restart must show of a snapshot.
type snapWant int

const (
	snapListed snapWant = iota // its creation was acknowledged
	snapGone                   // its delete was acknowledged
	snapEither                 // a delete was sent but not answered
)

// trialOptions change a trial for a test of the harness itself.
type trialOptions struct {
	mode      *powerfs.Mode // the mount's mode; nil: drawn
	keepNames *bool         // the mount's KeepUnsyncedNames; nil: drawn
}

func runTrial(t *testing.T, prog program, seed int64, opts ...trialOptions) *trialResult {
	rng := rand.New(rand.NewPCG(uint64(seed), 0x706f7765726c6f73))
	tr := &trial{t: t, prog: prog, seed: seed, rng: rng, res: &trialResult{},
		snapshots: map[string]snapWant{}, dumps: map[string]int64{}, tokens: map[string]string{}}
	cuts := 1
	if prog.full && rng.IntN(2) == 0 {
		cuts = 2
	}
	var survivors string
	for phase := 0; phase <= cuts; phase++ {
		root := survivors // the last restart is on the plain folder
		var fsys *powerfs.FS
		fsOpts := powerfs.Options{Mode: powerfs.Strict, Seed: seed*16 + int64(phase), From: survivors}
		if rng.IntN(2) == 0 {
			fsOpts.Mode = powerfs.Torn
		}
		fsOpts.KeepUnsyncedNames = rng.IntN(2) == 0
		if len(opts) > 0 && opts[0].mode != nil {
			fsOpts.Mode = *opts[0].mode
		}
		if len(opts) > 0 && opts[0].keepNames != nil {
			fsOpts.KeepUnsyncedNames = *opts[0].keepNames
		}
		if phase < cuts {
			mnt := filepath.Join(t.TempDir(), "mnt")
			var err error
			fsys, err = powerfs.Mount(mnt, fsOpts)
			require.NoError(t, err)
			t.Cleanup(func() { _ = fsys.Unmount() })
			root = mnt
		}
		scenario := cutCommits
		if prog.full && phase < cuts {
			scenario = cutPoints[(uint64(seed)+uint64(phase))%uint64(len(cutPoints))]
			if c := os.Getenv(envCut); c != "" {
				require.Contains(t, cutPoints, c, "%s", envCut)
				scenario = c
			}
		}
		var segsBefore []string
		if phase < cuts {
			segsBefore = walSegments(filepath.Join(root, "data"))
		}
		srv, err := prog.start(t, filepath.Join(root, "data"), scenarioSettings(scenario))
		if phase > 0 {
			if !tr.verify(srv, err, root) {
				return tr.res
			}
		} else {
			require.NoError(t, err, "first start")
		}
		if phase == cuts {
			tr.finish(srv, root)
			return tr.res
		}
		tr.runPhase(srv, fsys, root, phase, scenario, fsOpts)
		survivors = t.TempDir()
		require.NoError(t, fsys.WriteSurvivors(survivors))
		require.NoError(t, fsys.Unmount())
		applied, err := checkBoltRaw(filepath.Join(survivors, "data", "ctxd.db"), t.TempDir())
		if err != nil {
			tr.res.problem(probUnopenable, "after power cut %d, bbolt on data/ctxd.db: %v", phase+1, err)
			continue
		}
		if scenario == cutWALRotate || scenario == cutCommitter {
			// Not a durability problem, but the cut point was not
			// exercised: wal.segment_bytes did not reach the store.
			if after := walSegments(filepath.Join(survivors, "data")); slices.Equal(after, segsBefore) {
				tr.res.problem(probInconsistent, "phase %d (%s): the write-ahead log never rotated (segments %v before and after)", phase+1, scenario, after)
			}
		}
		if scenario == cutReplay {
			survivors = tr.replayCut(survivors, applied, fsOpts)
		}
	}
	return tr.res
}

// replayCut is the replay cut point's second power cut: ctxd restarts on
// a new mount of survivors, whose write-ahead log holds the last phase's
// writes unapplied (the database holds records up to applied), and the
// file system cuts the power right after a drawn request on the database
// file; the server is killed, and what survived is returned, for the
// restart that checks. The cut fell inside the replay when the trigger
// fired, or the database had a batch written and not synced, or holds
// more records than before while the server had not finished opening.
// The mount has the last phase's mode and KeepUnsyncedNames (fsOpts).
func (tr *trial) replayCut(survivors string, applied uint64, fsOpts powerfs.Options) string {
	t := tr.t
	mnt := filepath.Join(t.TempDir(), "mnt")
	fsOpts.Seed, fsOpts.From = tr.seed*16+15, survivors
	fsys, err := powerfs.Mount(mnt, fsOpts)
	require.NoError(t, err)
	t.Cleanup(func() { _ = fsys.Unmount() })
	trig := tr.drawTrigger(cutReplay)
	require.NoError(t, fsys.CutOn(*trig))

	start := time.Now()
	srv, err := tr.prog.start(t, filepath.Join(mnt, "data"), nil)
	took := time.Since(start)
	fired, cerr := fsys.PowerCut()
	require.NoError(t, cerr)
	report, cerr := fsys.Cut()
	require.NoError(t, cerr)
	log := ""
	if err != nil {
		log = err.Error() // it died of the cut (or before it: the restart that checks will tell)
	} else {
		log = srv.Log()
		srv.Kill()
	}
	finished := strings.Contains(log, `"message":"store opened"`)

	out := t.TempDir()
	require.NoError(t, fsys.WriteSurvivors(out))
	require.NoError(t, fsys.Unmount())
	after, err := checkBoltRaw(filepath.Join(out, "data", "ctxd.db"), t.TempDir())
	if err != nil {
		tr.res.problem(probUnopenable, "after the power cut during the replay, bbolt on data/ctxd.db: %v", err)
	}
	op := internalOp(cutReplay, report.Pending)
	inside := fired || op != "" || after > applied && !finished
	point := cutReplay
	if inside {
		point += " (inside)"
	}
	tr.res.cutPoints = append(tr.res.cutPoints, point)
	when := "on the " + trig.String()
	if !fired {
		when = "after the start (the " + trig.String() + " was not reached)"
	}
	t.Logf("replay: %s, %s, cut %s, %v after the start: the database holds record %d before, %d after, finished opening: %v; %v",
		point, fsMode(fsOpts), when, took.Round(time.Millisecond), applied, after, finished, report)
	return out
}

// fsMode is what a trial line says of a mount's options: "torn mode,
// unsynced names kept in part".
func fsMode(o powerfs.Options) string {
	names := "unsynced names lost"
	if o.KeepUnsyncedNames {
		names = "unsynced names kept in part"
	}
	return fmt.Sprintf("%s mode, %s", o.Mode, names)
}

// checkDirect proves that the direct cut point takes the direct path: one
// transaction of its size, sent at a quiet moment, adds changes that the
// committer never applies (the store's counters on /metrics: changes
// made, applied by the committer, pending).
func (tr *trial) checkDirect(ctx context.Context, hc *http.Client, url string, c *client.Client, phase int, log *phaseLog) {
	t := tr.t
	direct := func() float64 {
		var m map[string]float64
		testkit.Eventually(t, func() bool {
			var err error
			m, err = scrapeMetrics(ctx, hc, url)
			require.NoError(t, err)
			return m["ctxd_store_pending_changes"] == 0
		}, "the committer applies what setup wrote")
		return m["ctxd_store_changes_total"] - m["ctxd_store_applied_changes_total"]
	}
	before := direct()
	m := &maintenance{scenario: cutDirect, phase: phase, c: c, log: log, n: -1}
	require.NoError(t, m.txn(ctx, "direct", 0, directPuts, directValue))
	if got := direct() - before; got != directPuts {
		tr.res.problem(probInconsistent, "phase %d: a transaction of %d puts of %d bytes made %v changes the committer did not apply, want %d: it did not take the direct path (wal.direct_bytes %d)",
			phase+1, directPuts, directValue, got, directPuts, directBytes)
	}
}

// scrapeMetrics reads the server's /metrics: each sample without labels.
func scrapeMetrics(ctx context.Context, hc *http.Client, url string) (map[string]float64, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url+"/metrics", nil)
	if err != nil {
		return nil, err
	}
	resp, err := hc.Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		return nil, err
	}
	out := map[string]float64{}
	for _, line := range strings.Split(string(body), "\n") {
		name, v, ok := strings.Cut(line, " ")
		if !ok || strings.HasPrefix(line, "#") || strings.Contains(name, "{") {
			continue
		}
		if f, err := strconv.ParseFloat(v, 64); err == nil {
			out[name] = f
		}
	}
	return out, nil
}

// drawTrigger draws the request right after which the file system cuts
// the power, for the cut points of the log's own steps (nil: the cut is
// timed). Count is drawn in 1..the Count given.
func (tr *trial) drawTrigger(scenario string) *powerfs.Trigger {
	pick := func(ts ...powerfs.Trigger) *powerfs.Trigger {
		t := ts[tr.rng.IntN(len(ts))]
		t.Count = 1 + tr.rng.IntN(t.Count)
		return &t
	}
	switch scenario {
	case cutWALRotate:
		return pick(
			powerfs.Trigger{Op: powerfs.OpRename, Name: "*.wal", Count: 10},     // a rotation: the spare renamed, the folder not synced
			powerfs.Trigger{Op: powerfs.OpCreate, Name: "spare.tmp", Count: 10}, // a spare segment created
			powerfs.Trigger{Op: powerfs.OpWrite, Name: "spare.tmp", Count: 10},  // being zero-filled
			powerfs.Trigger{Op: powerfs.OpFsync, Name: "spare.tmp", Count: 20},  // synced, its name not yet
		)
	case cutCommitter:
		return pick(
			powerfs.Trigger{Op: powerfs.OpWrite, Name: "ctxd.db", Count: 2000}, // a commit's pages written, not synced
			powerfs.Trigger{Op: powerfs.OpFsync, Name: "ctxd.db", Count: 40},   // between bbolt's two syncs, or before the release
			powerfs.Trigger{Op: powerfs.OpUnlink, Name: "*.wal", Count: 20},    // a release: deleted, the folder not synced
		)
	case cutReplay:
		return pick(
			powerfs.Trigger{Op: powerfs.OpWrite, Name: "ctxd.db", Count: 1000}, // inside a replay batch
			powerfs.Trigger{Op: powerfs.OpFsync, Name: "ctxd.db", Count: 6},    // between a batch's syncs, or between batches
		)
	}
	return nil
}

// hasOps reports whether the maintenance of scenario sends requests (the
// cut may then aim at one).
func hasOps(scenario string) bool {
	switch scenario {
	case cutCommits, cutWALRotate, cutReplay:
		return false
	}
	return true
}

// walSegments lists the write-ahead log's segment files in dataDir/wal.
func walSegments(dataDir string) []string {
	names, _ := filepath.Glob(filepath.Join(dataDir, "wal", "*.wal"))
	for i, n := range names {
		names[i] = filepath.Base(n)
	}
	return names
}

// internalOp names the write-ahead log path's operations of scenario that
// a power cut fell inside, from what was not yet durable at the cut
// (powerfs.Report.Pending, paths from the mount's root): "" for none.
func internalOp(scenario string, pending []string) string {
	var ops []string
	add := func(op string) {
		if !slices.Contains(ops, op) {
			ops = append(ops, op)
		}
	}
	for _, p := range pending {
		name := strings.TrimLeft(p, "+-")
		segment := strings.HasPrefix(name, "data/wal/") && strings.HasSuffix(name, ".wal")
		switch {
		case scenario == cutWALRotate && name == "data/wal/spare.tmp":
			add("spare segment") // created, zero-filled, or renamed into place: not yet synced
		case scenario == cutWALRotate && segment && p[0] == '+':
			add("rotation") // renamed from the spare, the folder not yet synced
		case (scenario == cutCommitter || scenario == cutReplay) && name == "data/ctxd.db":
			add("bbolt commit") // written, not yet synced
		case scenario == cutCommitter && segment && p[0] == '-':
			add("release") // deleted, the folder not yet synced
		}
	}
	return strings.Join(ops, ", ")
}

// runPhase runs the workload on srv until the power cut, then kills srv.
func (tr *trial) runPhase(srv server, fsys *powerfs.FS, root string, phase int, scenario string, fsOpts powerfs.Options) {
	t := tr.t
	hc := newHTTPClient()
	defer hc.CloseIdleConnections()
	c, err := client.New(srv.URL(), client.WithHTTPClient(hc), client.WithWho("powerloss"))
	require.NoError(t, err)
	log := newPhaseLog()
	tr.last = log
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()

	t0 := time.Now()
	if tr.prog.full {
		err := setup(ctx, c, phase, scenario, log)
		quitIfStuck(srv, err)
		require.NoError(t, err)
	}
	if scenario == cutDirect {
		tr.checkDirect(ctx, hc, srv.URL(), c, phase, log)
	}
	tSetup := time.Since(t0)
	st, err := c.Status(ctx)
	require.NoError(t, err)
	var trig *powerfs.Trigger
	if scenario == cutWALRotate || scenario == cutCommitter {
		trig = tr.drawTrigger(scenario)
		require.NoError(t, fsys.CutOn(*trig))
	}

	var wg sync.WaitGroup
	if tr.prog.full {
		log.watched = make([][]known, 1+tr.rng.IntN(2))
		for i := range log.watched {
			wg.Go(func() { watch(ctx, c, st.Revision, log, i) })
		}
	}
	for i := range 4 {
		w := &writer{id: i, phase: phase, c: c, rng: rand.New(rand.NewPCG(tr.rng.Uint64(), uint64(i))), log: log, full: tr.prog.full}
		wg.Go(func() { w.run(ctx) })
	}
	m := &maintenance{scenario: scenario, phase: phase, c: c, rng: rand.New(rand.NewPCG(tr.rng.Uint64(), 99)), log: log, root: root}
	wg.Go(func() { m.run(ctx) })

	// The cut: at a random moment, or right after the k-th maintenance
	// operation was started, or right after the request the trigger names
	// (the file system cuts the power itself).
	delay := time.Duration(80+tr.rng.IntN(520)) * time.Millisecond
	when := fmt.Sprintf("after %v", delay)
	if hasOps(scenario) && tr.rng.IntN(2) == 0 {
		k := 1 + tr.rng.IntN(3)
		delay = time.Duration(tr.rng.IntN(15)) * time.Millisecond
		when = fmt.Sprintf("%v after operation %d started", delay, k)
		timeout := time.After(20 * time.Second)
	wait:
		for range k {
			select {
			case <-log.opsStart:
			case <-timeout:
				when += " (it never started)"
				break wait
			}
		}
	}
	fired := false
	if trig != nil {
		when = "on the " + trig.String()
		// A bound, not an assertion: a trigger drawn too far is not
		// reached, and the power is cut then.
		for deadline := time.Now().Add(3 * time.Second); !fired && time.Now().Before(deadline); {
			time.Sleep(5 * time.Millisecond)
			fired, err = fsys.PowerCut()
			require.NoError(t, err)
		}
		if !fired {
			when += " (not reached within 3s: cut then)"
		}
	} else {
		time.Sleep(delay)
	}
	log.cut.Store(true)
	inside := log.inOp.Load()
	if why := srv.Exited(); why != "" && !fired { // after a cut, a crash is no news (SIGBUS on bbolt's map)
		tr.res.problem(probInconsistent, "phase %d: the server exited before the power cut: %s", phase+1, why)
	}
	report, err := fsys.Cut()
	require.NoError(t, err)
	srv.Kill()
	cancel()
	wg.Wait()

	point := scenario
	switch scenario {
	case cutWALRotate, cutCommitter:
		op := internalOp(scenario, report.Pending)
		inside = fired || op != ""
		if op != "" {
			when += ", not yet durable: " + op
		}
	case cutReplay:
		point, inside = cutLongLog, false // the replay's own cut follows (replayCut)
	}
	if inside && scenario != cutCommits {
		point += " (inside)"
	}
	tr.res.cutPoints = append(tr.res.cutPoints, point)
	log.mu.Lock()
	defer log.mu.Unlock()
	ops := ""
	if scenario != cutCommits {
		ops = fmt.Sprintf(", %d %s operations (%d succeeded", log.ops.Load(), scenario, log.opsOK.Load())
		if log.opErr != "" {
			ops += ", first failure: " + log.opErr
		}
		ops += ")"
	}
	t.Logf("phase %d: %s, %s, cut %s: %d writes acknowledged%s; %v; setup %v",
		phase+1, point, fsMode(fsOpts), when, len(log.acked), ops, report, tSetup.Round(time.Millisecond))
}

// verify checks the program restarted on what the last cut left. It
// returns false when the trial cannot go on (the program did not start).
func (tr *trial) verify(srv server, startErr error, root string) bool {
	res := tr.res
	res.restarts++
	if startErr != nil {
		msg := startErr.Error()
		if c := crashed(msg); c != "" {
			res.problem(probUnopenable, "the restart crashed: %s", c)
		} else {
			first, rest, _ := strings.Cut(msg, "\n")
			// The server's last line says why.
			lines := strings.Split(strings.TrimSpace(rest), "\n")
			why := lines[len(lines)-1]
			if len(why) > 500 {
				why = why[:500] + "..."
			}
			res.problem(probUnopenable, "the restart was refused: %s: %s", first, why)
		}
		return false
	}
	hc := newHTTPClient()
	defer hc.CloseIdleConnections()
	c, err := client.New(srv.URL(), client.WithHTTPClient(hc))
	require.NoError(tr.t, err)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()

	log := tr.last
	universe := map[nsKey]bool{}
	newest := map[nsKey]uint64{}
	var all []known
	all = append(all, tr.earlier...)
	all = append(all, log.acked...)
	for _, w := range log.watched {
		all = append(all, w...)
	}
	for _, k := range all {
		universe[k.nsKey()] = true
		newest[k.nsKey()] = max(newest[k.nsKey()], k.Revision)
	}
	for k := range log.attempted {
		universe[k] = true
	}
	var restores []*restoreOp
	for _, r := range log.restores {
		if !r.partial && (r.acked || r.end.IsZero()) {
			restores = append(restores, r)
			tr.gapRevs = append(tr.gapRevs, r.snapRev)
		}
	}

	t0 := time.Now()
	rb, err := readState(ctx, c, universe)
	tRead := time.Since(t0)
	if err != nil {
		res.problem(probInconsistent, "read back after the restart: %v", err)
		return false
	}
	v := &verifier{rb: rb, res: res, restores: restores, gapRevs: tr.gapRevs, unknown: log.unknown, newest: newest}
	for _, k := range tr.earlier {
		v.checkKnown(k)
	}
	for _, k := range log.acked {
		v.checkKnown(k)
		res.acked++
		if k.from == "write" {
			res.workload++
		}
	}
	for _, w := range log.watched {
		for _, k := range w {
			v.checkKnown(k)
			res.watched++
		}
	}
	for _, e := range log.watchErrs {
		if strings.HasPrefix(e, "note:") {
			tr.t.Log(e)
		} else {
			res.problem(probInconsistent, "%s", e)
		}
	}
	v.checkState()
	v.checkGaps()
	tr.checkPartialRestores(rb)

	if tr.prog.full {
		from := rb.status.CompactedRevision
		if from > 0 {
			from--
		}
		if err := checkFeed(ctx, srv.URL(), from, rb.after(from)); err != nil {
			res.problem(probInconsistent, "%v", err)
		}
		for i, w := range log.watched {
			if len(w) == 0 {
				continue
			}
			p := w[len(w)-1].Revision
			if _, ok := rb.log[p]; !ok || p < rb.status.CompactedRevision || tr.restoredAtOrBelow(p) {
				continue // lost (reported above), compacted, or a restore's jump follows
			}
			if err := checkFeed(ctx, srv.URL(), p, rb.after(p)); err != nil {
				res.problem(probInconsistent, "watcher %d resuming: %v", i, err)
			}
		}
		log.mu.Lock()
		for _, s := range log.snapshots {
			switch {
			case s.deleted:
				tr.snapshots[s.meta.ID] = snapGone
			case s.deleting:
				tr.snapshots[s.meta.ID] = snapEither // a delete without an answer may have applied
			default:
				tr.snapshots[s.meta.ID] = snapListed
			}
		}
		for _, d := range log.dumps {
			if d.acked {
				tr.dumps[d.info.Filename] = d.info.FileSize
			}
		}
		for _, d := range log.dumps {
			if !d.acked && d.filename != "" {
				// An unanswered dump of the same name may have replaced it.
				for name := range tr.dumps {
					if strings.TrimSuffix(name, filepath.Ext(name)) == d.filename {
						tr.dumps[name] = -1
					}
				}
			}
		}
		for _, tok := range log.tokens {
			if tok.acked {
				tr.tokens[tok.name] = tok.secret
			}
		}
		log.mu.Unlock()
		tr.checkFiles(ctx, c, root)
	}
	if c := crashed(srv.Log()); c != "" {
		res.problem(probUnopenable, "the restarted server crashed: %s", c)
	}

	tr.t.Logf("restart %d: read back %d keys and %d changes in %v, checked in %v", res.restarts, len(universe), len(rb.log), tRead.Round(time.Millisecond), (time.Since(t0) - tRead).Round(time.Millisecond))
	tr.earlier = tr.earlier[:0]
	for _, r := range rb.revs {
		tr.earlier = append(tr.earlier, known{Change: rb.log[r], from: "earlier"})
	}
	return true
}

// restoredAtOrBelow reports whether a full restore of the trial restored a
// snapshot at revision rev or below: a watcher that resumes from rev may
// then be told "compacted", rightly.
func (tr *trial) restoredAtOrBelow(rev uint64) bool {
	return slices.ContainsFunc(tr.gapRevs, func(s uint64) bool { return s <= rev })
}

// checkPartialRestores: a partial restore is one transaction: all of its
// changes are in the log or none, consecutive, each setting a key to its
// value in the snapshot (or deleting a key the snapshot does not have);
// an acknowledged one is there whole.
func (tr *trial) checkPartialRestores(rb *readBack) {
	log := tr.last
	byWho := map[string][]ctxd.Change{}
	for _, r := range rb.revs {
		ch := rb.log[r]
		if strings.HasPrefix(ch.Who, "plrestore-") {
			byWho[ch.Who] = append(byWho[ch.Who], ch)
		}
	}
	for _, r := range log.restores {
		if !r.partial {
			continue
		}
		got := byWho[r.who]
		if r.acked {
			want := 0
			for _, d := range r.res.Namespaces {
				want += d.Added + d.Removed + d.Changed
			}
			if len(got) != want {
				tr.res.problem(probLost, "acknowledged partial restore %s: %d of its %d changes in the log", r.who, len(got), want)
			}
			if want > 0 && len(got) > 0 && got[len(got)-1].Revision != r.res.Revision {
				tr.res.problem(probInconsistent, "partial restore %s ends at revision %d, its answer said %d", r.who, got[len(got)-1].Revision, r.res.Revision)
			}
		}
		for i, ch := range got {
			if i > 0 && ch.Revision != got[i-1].Revision+1 {
				tr.res.problem(probInconsistent, "partial restore %s is not one transaction: revisions %d then %d", r.who, got[i-1].Revision, ch.Revision)
			}
			want, inSnap := log.baseNS[ch.Key]
			switch {
			case ch.Namespace != restoredNS:
				tr.res.problem(probInconsistent, "partial restore %s changed %s/%s", r.who, ch.Namespace, ch.Key)
			case ch.Op == ctxd.OpPut && (!inSnap || normJSON(want) != normJSON(ch.Value)):
				tr.res.problem(probInconsistent, "partial restore %s: %s, the snapshot has %s", r.who, describe(ch), normJSON(want))
			case ch.Op == ctxd.OpDelete && inSnap:
				tr.res.problem(probInconsistent, "partial restore %s deleted %s, which the snapshot has", r.who, ch.Key)
			}
		}
	}
}

// finish stops the program after the last restart and runs bbolt's
// consistency check on the database file it leaves.
func (tr *trial) finish(srv server, root string) {
	if err := srv.Stop(); err != nil {
		tr.res.problem(probInconsistent, "stop after the last restart: %v", err)
	}
	if c := crashed(srv.Log()); c != "" {
		tr.res.problem(probUnopenable, "the restarted server crashed: %s", c)
	}
	if !tr.prog.full {
		return
	}
	path := filepath.Join(root, "data", "ctxd.db")
	st, err := bolt.Open(path, bolt.Options{})
	if err != nil {
		tr.res.problem(probUnopenable, "store/bolt does not open data/ctxd.db: %v", err)
		return
	}
	if err := st.Check(); err != nil {
		tr.res.problem(probUnopenable, "data/ctxd.db: %v", err)
	}
	require.NoError(tr.t, st.Close())
}

// sortedKeys is for stable messages.
func sortedKeys[V any](m map[string]V) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}
