package robustness_test

import (
	"errors"
	"fmt"
	"net"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/framework0/ctxd/internal/testkit"
)

// clusterLoad is the load every cluster fault test runs: one writer per
// ctxd instance, each putting keys of its own (w<i>/<n>, once each; every
// other write a transaction of three) and moving to the next instance
// when a write fails, and two /v1/watch clients per instance, all from
// one revision, one of them dropping its connection inside every
// transaction's revision and resuming on the next instance. finish checks what every
// fault promises: each watcher saw every change once, in order, the same
// sequence; every acknowledged write is in it and readable with the
// revision it was acknowledged with; every failed write got an answer the
// client can act on (503 unavailable or outcome_unknown) or no answer from
// an instance that was dead or paused — never a hang of a live instance.
type clusterLoad struct {
	t  *testing.T
	c  *testCluster
	hc *http.Client
	ns string
	// urls are the instances' URLs when the load started: a restarted
	// instance keeps its address (restartInstance), and the writers must
	// not read c.instances, which the test changes meanwhile.
	urls     []string
	perStep  int // acknowledged writes per writer between two progress calls
	start    clusterChange
	watchers []*clusterWatcher

	mu     sync.Mutex
	acked  []ackedWrite
	failed map[string]int // failed writes by what the client got
	bad    []string       // answers no fault excuses
	paused map[int]bool   // instances stopped by the test (SIGSTOP) now
	absent []string       // keys of writes answered unavailable: never applied

	stop   atomic.Bool
	wg     sync.WaitGroup
	target int
	began  time.Time
}

// clusterClientTimeout bounds each request of the load's clients: longer
// than the instances' etcd.request_timeout (clusterRequestTimeout) with a
// write's wait for the instance's watch, so that a client timeout means
// an instance that did not answer in time, never a slow etcd.
const (
	clusterRequestTimeout = 2 * time.Second
	clusterClientTimeout  = 3 * clusterRequestTimeout
)

// startClusterLoad starts the writers and watchers on c's instances.
func startClusterLoad(t *testing.T, c *testCluster, perStep int) *clusterLoad {
	t.Helper()
	l := &clusterLoad{t: t, c: c, hc: &http.Client{Timeout: clusterClientTimeout}, ns: "cluster", perStep: perStep,
		failed: map[string]int{}, paused: map[int]bool{}, urls: c.urls()}
	l.start = putValue(t, l.hc, l.urls[0], l.ns, "start", "0")
	for i := range 2 * len(l.urls) {
		w := &clusterWatcher{urls: l.urls, cur: i % len(l.urls), ns: l.ns, last: l.start.Rev, done: make(chan struct{}),
			cutInside: i%2 == 1}
		l.watchers = append(l.watchers, w)
		go w.run()
	}
	l.began = time.Now()
	for wi := range l.urls {
		l.wg.Go(func() { l.write(wi) })
	}
	t.Cleanup(func() { l.stop.Store(true); l.wg.Wait() })
	return l
}

// write is writer wi's loop.
func (l *clusterLoad) write(wi int) {
	cur := wi
	for n := 0; !l.stop.Load(); n++ {
		// Every other write is a transaction of three puts: on etcd its
		// changes share one revision, inside which watchers resume.
		key, value := fmt.Sprintf("w%d/%d", wi, n), strconv.Itoa(n)
		keys := []string{key}
		if n%2 == 1 {
			keys = []string{key + "/a", key + "/b", key + "/c"}
		}
		pausedBefore := l.isPaused(cur)
		sent := time.Now()
		rec, err := tryPuts(l.hc, l.urls[cur], l.ns, keys, value)
		l.mu.Lock()
		if err == nil {
			for _, k := range keys {
				l.acked = append(l.acked, ackedWrite{Key: k, Value: value, Rev: rec.Rev})
			}
			l.mu.Unlock()
			continue
		}
		got := failedAnswer(err)
		l.failed[got]++
		switch {
		case got == "503 unavailable" || got == "503 outcome_unknown" || got == "no answer":
		case got == "client timeout" && (pausedBefore || l.paused[cur]):
		default:
			l.bad = append(l.bad, fmt.Sprintf("put %s through instance %d, sent at %v: %v", key, cur+1, sent.Sub(l.began).Round(time.Millisecond), err))
		}
		l.mu.Unlock()
		cur = (cur + 1) % len(l.urls) // that instance may be down: the next one
	}
}

// failedAnswer names what a failed request got: "<status> <code>" for an
// answer, "client timeout", or "no answer" (refused, reset: a dead
// instance).
func failedAnswer(err error) string {
	var answer *answerError
	var netErr net.Error
	switch {
	case errors.As(err, &answer):
		return fmt.Sprintf("%d %s", answer.Status, answer.Code)
	case errors.As(err, &netErr) && netErr.Timeout():
		return "client timeout"
	}
	return "no answer"
}

func (l *clusterLoad) isPaused(i int) bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.paused[i]
}

func (l *clusterLoad) count() int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return len(l.acked)
}

// progress waits for perStep more acknowledged writes per writer.
func (l *clusterLoad) progress(what string) {
	l.t.Helper()
	l.target += l.perStep * len(l.urls)
	testkit.Eventually(l.t, func() bool { return l.count() >= l.target }, "%d acknowledged writes (%s)", l.target, what)
	l.t.Logf("%d acknowledged writes %s (at %v)", l.target, what, time.Since(l.began).Round(time.Millisecond))
}

// pauseInstance stops instance i with SIGSTOP (a process the scheduler,
// a debugger or a VM freeze holds: its sockets stay open, nothing is
// answered) and returns the SIGCONT that lets it go on.
func (l *clusterLoad) pauseInstance(i int) (resume func()) {
	l.t.Helper()
	l.mu.Lock()
	l.paused[i] = true
	l.mu.Unlock()
	resumeProc := pauseProcess(l.t, l.c.instances[i].Cmd.Process.Pid)
	return func() {
		resumeProc()
		l.mu.Lock()
		l.paused[i] = false
		l.mu.Unlock()
	}
}

// pauseProcess sends SIGSTOP to pid and returns the SIGCONT (also sent
// when the test ends first, so that nothing stays stopped).
func pauseProcess(t *testing.T, pid int) (resume func()) {
	t.Helper()
	require.NoError(t, syscall.Kill(pid, syscall.SIGSTOP))
	var once sync.Once
	resume = func() { once.Do(func() { _ = syscall.Kill(pid, syscall.SIGCONT) }) }
	t.Cleanup(resume)
	return resume
}

// failingPut puts key (a w key, so that the feed check takes it as a
// write of unknown outcome) through instance u during a fault that must
// make it fail with 503 unavailable (then finish checks it was never
// applied) or outcome_unknown (applied or not, whole).
func (l *clusterLoad) failingPut(u, key, during string) {
	l.t.Helper()
	_, err := tryPut(l.hc, u, l.ns, key, "0")
	require.Error(l.t, err, "a put through %s %s", u, during)
	got := failedAnswer(err)
	require.Contains(l.t, []string{"503 unavailable", "503 outcome_unknown"}, got, "a put through %s %s: %v", u, during, err)
	if got == "503 unavailable" {
		l.mu.Lock()
		l.absent = append(l.absent, key)
		l.mu.Unlock()
	}
}

// finish stops the writers, puts the end key through live, waits for
// every watcher to see it, and checks the feeds, the acknowledged writes
// and the failed writes' answers.
func (l *clusterLoad) finish(live string) {
	t := l.t
	t.Helper()
	l.stop.Store(true)
	l.wg.Wait()
	end := putValue(t, l.hc, live, l.ns, "end", "0")
	for _, w := range l.watchers {
		select {
		case <-w.done:
		case <-time.After(testkit.Deadline):
			w.mu.Lock()
			reconnects, cuts, lastEnd := w.reconnects, w.cuts, w.lastEnd
			var probes []string
			for i := range w.urls {
				u := w.watchURLAtLocked(i)
				probes = append(probes, u+": "+firstFrames(u, 5))
			}
			w.mu.Unlock()
			// The instance it waits on writes every goroutine's stack to
			// its log (printed with the failure): a read or a wait that
			// never ends shows there.
			stuck := ""
			for _, p := range l.c.instances {
				if strings.Contains(w.watchURL(), strings.TrimPrefix(p.URL, "http://")) {
					p.Quit(5 * time.Second)
					stuck = " (its goroutines are in " + p.URL + "'s log below)"
				}
			}
			t.Fatalf("a watcher did not see the last write (rev %d) within %v; it is at %d, waiting on %s%s after %d reconnections and %d cuts; its last session ended with %v; what each instance sends it now:\n%s",
				end.Rev, testkit.Deadline, w.position(), w.watchURL(), stuck, reconnects, cuts, lastEnd, strings.Join(probes, "\n"))
		}
	}
	t.Logf("%d acknowledged writes, failed: %v; %d watchers, reconnections %v; all seen at %v",
		len(l.acked), l.failed, len(l.watchers), reconnections(l.watchers), time.Since(l.began).Round(time.Millisecond))
	require.Empty(t, l.bad, "failed writes with an answer no fault excuses")
	for i, w := range l.watchers {
		require.NoError(t, w.err, "watcher %d", i)
		require.NoError(t, checkClusterFeed(w.seen, l.acked, l.start.Rev, end), "watcher %d", i)
		require.Equal(t, l.watchers[0].seen, w.seen, "watcher %d saw another sequence than watcher 0", i)
	}
	for _, key := range l.absent {
		_, err := untilAvailable(func() (wireRecord, error) { return tryGet(l.hc, live, l.ns, key) })
		require.Equal(t, "404 not_found", failedAnswer(err), "%s was answered unavailable, then applied", key)
	}
	// Every acknowledged write is still there, as acknowledged (each key
	// is written once).
	for _, a := range l.acked {
		rec, err := untilAvailable(func() (wireRecord, error) { return tryGet(l.hc, live, l.ns, a.Key) })
		require.NoError(t, err, "acknowledged %s", a.Key)
		require.Equal(t, a.Value, string(rec.Value), "acknowledged %s", a.Key)
		require.Equal(t, a.Rev, rec.Rev, "acknowledged %s", a.Key)
	}
}

// firstFrames describes the first n frames a watch at u gets within a
// few seconds (a failure's message: what a stuck watcher is sent).
func firstFrames(u string, n int) string {
	conn, resp, err := testkit.DialWatchErr(u, nil)
	if resp != nil && resp.Body != nil {
		resp.Body.Close()
	}
	if err != nil {
		return err.Error()
	}
	defer conn.Close()
	// Long enough to tell a stuck instance from a slow read of etcd's
	// history (a watch from an old revision waits for etcd's resync).
	_ = conn.SetReadDeadline(time.Now().Add(10 * time.Second))
	ws := &testkit.WS{Conn: conn}
	var out []string
	for range n {
		f, err := ws.NextErr()
		if err != nil {
			out = append(out, err.Error())
			break
		}
		out = append(out, fmt.Sprintf("%s rev %d index %d/%d %s/%s %s %s", f.Type, f.Rev, f.Index, f.Count, f.NS, f.Key, f.Code, f.Message))
	}
	return strings.Join(out, "; ")
}
