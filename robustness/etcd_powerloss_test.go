package robustness_test

import (
	"context"
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/framework0/ctxd"
	"github.com/framework0/ctxd/client"
	"github.com/framework0/ctxd/internal/powerfs"
	"github.com/framework0/ctxd/internal/testkit"
)

// Settings of TestEtcdPowerLoss, from the environment (make powerloss
// sets them).
const (
	envEtcdTrials = "CTXD_ETCD_POWERLOSS_TRIALS" // number of trials (default 1)
	envEtcdReport = "CTXD_ETCD_POWERLOSS_REPORT" // file that gets the summary line
)

// TestEtcdPowerLoss runs power-loss trials of ctxd on etcd: the three
// members of a local cluster (`ctxd-cluster member` processes, as make
// cluster runs them) keep their data on one powerfs mount, the disk of
// one machine; writers on three ctxd instances put keys and commit
// transactions through REST; the power is cut for all three members at
// once, every process is killed, the members restart on what the disk
// kept, and a new ctxd instance reads back. Every write an instance
// acknowledged must be there: each key at its last acknowledged value or
// a later one, each acknowledged value in the key's history, the keys of
// a transaction always at the same step.
//
// ctxd answers a write once etcd has committed it, which etcd does once
// a quorum of members has it in its fsynced log: the trial proves that
// chain end to end. Its negative control, TestEtcdPowerLossCatchesUnsyncedEtcd,
// runs the same trial on members that acknowledge before they sync.
func TestEtcdPowerLoss(t *testing.T) {
	if err := powerfs.Available(); err != nil {
		writeEtcdReport(t, "etcd power-loss: skipped: "+err.Error())
		t.Skip("power-loss trials need FUSE: " + err.Error())
	}
	trials := envInt(t, envEtcdTrials, 1)
	base := int64(envInt(t, envSeed, int(time.Now().UnixNano()%1_000_000)))
	var acked, lost, unopenable int
	for i := range trials {
		seed := base + int64(i)
		mode := []powerfs.Mode{powerfs.Strict, powerfs.Torn}[seed%2]
		t.Run(fmt.Sprintf("seed=%d", seed), func(t *testing.T) {
			res := runEtcdPowerLossTrial(t, seed, mode, false)
			snaps := "etcd's default snapshots"
			if res.snapshotCount > 0 {
				snaps = fmt.Sprintf("a snapshot every %d entries", res.snapshotCount)
			}
			t.Logf("trial %d/%d, seed %d, %s mode, %s: %d acknowledged writes checked (%d transactions), %d lost, restart failed: %v",
				i+1, trials, seed, mode, snaps, res.acked, res.txns, res.lost, res.unopenable)
			acked += res.acked
			lost += res.lost
			if res.unopenable {
				unopenable++
			}
			for _, p := range res.problems {
				t.Errorf("%s (rerun: make powerloss-etcd ETCD_TRIALS=1 SEED=%d)", p, seed)
			}
		})
	}
	line := fmt.Sprintf("etcd power-loss: %d trials, %d acknowledged writes checked, %d lost, %d clusters that did not restart",
		trials, acked, lost, unopenable)
	t.Log(line)
	writeEtcdReport(t, line)
}

// TestEtcdPowerLossCatchesUnsyncedEtcd is the negative control of
// TestEtcdPowerLoss: the same trial, on members started with etcd's
// --unsafe-no-fsync (they acknowledge before their log is on disk), must
// be caught: writes acknowledged and gone, or a cluster that cannot
// restart on what is left (what happens: the members never synced even
// the start of their logs). Before localcluster synced the members'
// folders (syncDataFolders), the trial itself caught honest members
// losing every write: their first log file's name was never synced.
func TestEtcdPowerLossCatchesUnsyncedEtcd(t *testing.T) {
	if err := powerfs.Available(); err != nil {
		t.Skip("power-loss trials need FUSE: " + err.Error())
	}
	res := runEtcdPowerLossTrial(t, 2, powerfs.Torn, true)
	t.Logf("%d writes acknowledged, %d lost, restart failed: %v; %s",
		res.acked, res.lost, res.unopenable, strings.Join(res.problems, "; "))
	require.Positive(t, res.acked, "no write was acknowledged: the trial tested nothing")
	require.True(t, res.lost > 0 || res.unopenable,
		"the trial did not catch members that acknowledge writes before they sync them")
}

func writeEtcdReport(t *testing.T, line string) {
	if path := os.Getenv(envEtcdReport); path != "" {
		require.NoError(t, os.WriteFile(path, []byte(line+"\n"), 0o644))
	}
}

// etcdTrialResult is what one trial checked and found.
type etcdTrialResult struct {
	acked, txns, lost int    // writes acknowledged (of them in transactions), and lost
	snapshotCount     uint64 // the members' --snapshot-count (0: etcd's default)
	unopenable        bool
	problems          []string
}

func (r *etcdTrialResult) problem(format string, args ...any) {
	r.problems = append(r.problems, fmt.Sprintf(format, args...))
}

// etcdWriter is one writer of a trial: puts of its own keys, each value
// {"w":writer,"n":step}, n counting up, and every fifth step a
// transaction that puts the same step into its two transaction keys.
type etcdWriter struct {
	id    int
	c     *client.Client
	acked map[string][]int // key -> the steps acknowledged for it, in order
}

const etcdWriterKeys = 4 // plain keys per writer

func (w *etcdWriter) key(n int) string { return fmt.Sprintf("w%d-%d", w.id, n%etcdWriterKeys) }
func (w *etcdWriter) txnKeys() []string {
	return []string{fmt.Sprintf("w%d-t0", w.id), fmt.Sprintf("w%d-t1", w.id)}
}

func stepValue(w, n int) json.RawMessage {
	return json.RawMessage(fmt.Sprintf(`{"w":%d,"n":%d}`, w, n))
}

// run writes until a write fails (the power is cut) or stop closes; it
// marks started once its first 10 writes are acknowledged (or it ends).
func (w *etcdWriter) run(stop <-chan struct{}, started *sync.WaitGroup) {
	var once sync.Once
	defer once.Do(started.Done)
	for n := 1; ; n++ {
		select {
		case <-stop:
			return
		default:
		}
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		var err error
		if n%5 == 0 {
			keys := w.txnKeys()
			ops := make([]ctxd.TxnOp, len(keys))
			for i, k := range keys {
				ops[i] = ctxd.TxnOp{Op: "put", Namespace: "default", Key: k, Value: stepValue(w.id, n)}
			}
			if _, err = w.c.Txn(ctx, ops, client.TxnOptions{}); err == nil {
				for _, k := range keys {
					w.acked[k] = append(w.acked[k], n)
				}
			}
		} else {
			k := w.key(n)
			if _, err = w.c.Put(ctx, "default", k, stepValue(w.id, n), client.PutOptions{}); err == nil {
				w.acked[k] = append(w.acked[k], n)
			}
		}
		cancel()
		if err != nil {
			return
		}
		if n == 10 {
			once.Do(started.Done)
		}
	}
}

// runEtcdPowerLossTrial is one trial (see TestEtcdPowerLoss), with the
// members' fsyncs off for the negative control. res.acked counts the
// acknowledged writes whether or not the cluster came back to check them.
func runEtcdPowerLossTrial(t *testing.T, seed int64, mode powerfs.Mode, unsafeNoFsync bool) *etcdTrialResult {
	rng := rand.New(rand.NewPCG(uint64(seed), 0x6574636470776c))
	res := &etcdTrialResult{}
	fsys, err := powerfs.Mount(filepath.Join(t.TempDir(), "mnt"), powerfs.Options{Mode: mode, Seed: seed})
	require.NoError(t, err)
	t.Cleanup(func() { _ = fsys.Unmount() })
	// Half the trials have the members take a snapshot every 50 applied
	// entries (etcd's default: 10,000), so that cuts land inside etcd's
	// snapshots too: the snapshot file, its WAL record, the commit of the
	// backend, the release of the log before it.
	if !unsafeNoFsync && seed/2%2 == 1 {
		res.snapshotCount = 50
	}
	c := startClusterOf(t, 3, clusterOptions{dir: fsys.Dir(), unsafeNoFsync: unsafeNoFsync, snapshotCount: res.snapshotCount})

	writers := make([]*etcdWriter, 6)
	stop := make(chan struct{})
	var started, done sync.WaitGroup
	for i := range writers {
		cl, err := client.New(c.instances[i%len(c.instances)].URL, client.WithHTTPClient(&http.Client{Timeout: 15 * time.Second}))
		require.NoError(t, err)
		writers[i] = &etcdWriter{id: i, c: cl, acked: map[string][]int{}}
		started.Add(1)
		done.Add(1)
		go func() {
			defer done.Done()
			writers[i].run(stop, &started)
		}()
	}
	// Cut once every writer is under way, after a drawn time more.
	waitOrTimeout(t, &started, testkit.Deadline, "every writer's first 10 writes")
	time.Sleep(time.Duration(100+rng.IntN(900)) * time.Millisecond)
	report, err := fsys.Cut()
	require.NoError(t, err)
	for i, p := range c.procs {
		p.Kill()
		c.procs[i] = nil
	}
	for _, p := range c.instances {
		p.Kill()
	}
	close(stop)
	done.Wait()
	t.Logf("power cut (%s mode): %v; pending: %v", mode, report, report.Pending)

	survivors := filepath.Join(t.TempDir(), "survivors")
	require.NoError(t, fsys.WriteSurvivors(survivors))
	require.NoError(t, fsys.Unmount())
	for i := range c.members {
		c.members[i].Dir = filepath.Join(survivors, c.members[i].Name)
		c.members[i].UnsafeNoFsync = false
	}

	for _, w := range writers {
		for k, steps := range w.acked {
			res.acked += len(steps)
			if slices.Contains(w.txnKeys(), k) {
				res.txns += len(steps)
			}
		}
	}
	// Restart every member on what the disk kept, then a ctxd instance.
	for i := range c.members {
		c.startMember(i)
	}
	for i := range c.members {
		wait := 2 * time.Minute // a member waits as long for a quorum of others (localcluster)
		if unsafeNoFsync {
			// The control's members lost even the start of their logs:
			// they wait for a quorum that never forms. Well within the
			// time an honest member takes, even under make test's load.
			wait = 20 * time.Second
		}
		if err := c.procs[i].WaitReady(wait); err != nil {
			res.unopenable = true
			res.problem("etcd member %s did not restart after the power cut: %v; its log ends:\n%s", c.members[i].Name, err, tail(c.logs[i].String(), 3000))
			return res
		}
	}
	inst, err := testkit.StartServeErr(t, ctxdBin, t.TempDir(), testkit.ServeOptions{Env: c.env})
	if err != nil {
		res.unopenable = true
		res.problem("ctxd did not start on the restarted cluster: %v", err)
		return res
	}
	t.Cleanup(inst.Kill)
	cl, err := client.New(inst.URL)
	require.NoError(t, err)
	for _, w := range writers {
		checkEtcdWriter(t, cl, w, res)
	}
	return res
}

// checkEtcdWriter reads back what w was acknowledged: each key's current
// step must be its last acknowledged one or later, its history must hold
// every acknowledged step, and both transaction keys must be at the same
// step (a transaction is all or nothing).
func checkEtcdWriter(t *testing.T, cl *client.Client, w *etcdWriter, res *etcdTrialResult) {
	ctx := context.Background()
	current := map[string]int{}
	for k, steps := range w.acked {
		rec, err := cl.Get(ctx, "default", k, client.GetOptions{})
		if client.IsNotFound(err) {
			res.lost += len(steps)
			res.problem("lost: %s is gone; steps %v were acknowledged", k, steps)
			continue
		}
		require.NoError(t, err, "read %s", k)
		n := stepOf(t, rec.Value)
		current[k] = n
		if last := steps[len(steps)-1]; n < last {
			res.problem("lost: %s holds step %d; step %d was acknowledged", k, n, last)
		}
		inHistory := map[int]bool{}
		for before := uint64(0); ; {
			page, err := cl.History(ctx, "default", k, client.HistoryOptions{Before: before, Limit: 1000})
			require.NoError(t, err, "history of %s", k)
			for _, ch := range page.Changes {
				if ch.Op == ctxd.OpPut {
					inHistory[stepOf(t, ch.Value)] = true
				}
			}
			if before = page.Next; before == 0 {
				break
			}
		}
		for _, s := range steps {
			if !inHistory[s] {
				res.lost++
				res.problem("lost: step %d of %s was acknowledged and is not in its history", s, k)
			}
		}
	}
	tk := w.txnKeys()
	if a, b := current[tk[0]], current[tk[1]]; a != b {
		res.problem("torn transaction: %s is at step %d, %s at step %d", tk[0], a, tk[1], b)
	}
}

func stepOf(t *testing.T, v json.RawMessage) int {
	var s struct{ N int }
	require.NoError(t, json.Unmarshal(v, &s), "value %s", v)
	return s.N
}

func waitOrTimeout(t *testing.T, wg *sync.WaitGroup, d time.Duration, what string) {
	ch := make(chan struct{})
	go func() { wg.Wait(); close(ch) }()
	select {
	case <-ch:
	case <-time.After(d):
		t.Fatalf("timed out after %v waiting for %s", d, what)
	}
}

func tail(s string, n int) string {
	if len(s) > n {
		return "..." + s[len(s)-n:]
	}
	return s
}
