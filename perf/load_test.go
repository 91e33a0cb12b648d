package perf

import (
	"context"
	"encoding/json"
	"errors"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/framework0/ctxd/internal/testkit"
)

// sleepOp is an operation that takes d (a server that answers in d).
func sleepOp(d time.Duration) opFunc {
	return func(*worker) (uint8, error) {
		time.Sleep(d)
		return kindWrite, nil
	}
}

// A window shorter than a request: the request that started in the
// warm-up ended after the window, and the window measured nothing (0 ops,
// "0 ops/s"; TestRunEveryScenario's write-throughput/distinct/c=1 on a
// loaded machine). The window now lasts until a request started in it
// was answered, and says it was extended.
func TestAWindowNoRequestFitsInIsExtended(t *testing.T) {
	l := load{clients: 1, warmup: 20 * time.Millisecond, duration: 10 * time.Millisecond, op: sleepOp(50 * time.Millisecond), noConn: true}
	res, err := runLoad(context.Background(), endpoint{}, l)
	require.NoError(t, err)
	require.Len(t, res.samples, 1, "the request that started after the warm-up's")
	s := res.samples[0]
	require.True(t, res.extended)
	require.Equal(t, time.Duration(s.at+s.dur), res.window, "the window ends at its answer")
	require.Equal(t, res.window, res.elapsed)
	require.Greater(t, res.window, l.duration)

	// The same at a fixed rate with no send intended inside the window
	// (10/s: one every 100 ms, a 50 ms window 10 ms after the first): the
	// first one after it is sent, and its answer ends the window.
	l = load{clients: 2, rate: 10, warmup: 10 * time.Millisecond, duration: 50 * time.Millisecond, op: sleepOp(5 * time.Millisecond), noConn: true}
	res, err = runLoad(context.Background(), endpoint{}, l)
	require.NoError(t, err)
	require.Len(t, res.samples, 1)
	require.True(t, res.extended)
	require.EqualValues(t, 90*time.Millisecond, res.samples[0].at, "intended 100 ms after the start")
	require.GreaterOrEqual(t, res.window, time.Duration(res.samples[0].at+res.samples[0].dur))

	// A window in which requests are answered is not extended.
	l = load{clients: 2, warmup: 5 * time.Millisecond, duration: 30 * time.Millisecond, op: sleepOp(time.Millisecond), noConn: true}
	res, err = runLoad(context.Background(), endpoint{}, l)
	require.NoError(t, err)
	require.False(t, res.extended)
	require.Equal(t, l.duration, res.window)
}

// The suite with a window far shorter than any request (1 µs): every run
// measured at least one request, with a rate and a latency, and the table
// says its window was extended. Before, such runs had 0 ops and said
// 0 ops/s, as write-throughput/distinct/c=1 did once in CI on a loaded
// machine with the tiny config's 100 ms windows.
func TestRunWithAWindowShorterThanARequest(t *testing.T) {
	cfg := tinyConfig()
	cfg.Scenarios = []string{"write-latency", "write-throughput", "read-latency"}
	cfg.Clients = []int{1, 3}
	cfg.Warmup, cfg.Duration = 5*time.Millisecond, time.Microsecond
	r, err := Run(context.Background(), cfg, Target{Fresh: freshServer(t)})
	require.NoError(t, err)
	require.Zero(t, r.Errors, "failures %v, runs %v", r.Failures, r.errorSamples())
	require.Len(t, r.Runs, 6)
	for _, x := range r.Runs {
		require.Positive(t, x.Ops, x.Name)
		require.Positive(t, x.OpsPerSec, x.Name)
		require.Positive(t, x.Latency.P50, x.Name)
		require.True(t, x.WindowExtended, x.Name)
		require.Greater(t, x.ElapsedSeconds, x.DurationSeconds, x.Name)
	}
	var table strings.Builder
	require.NoError(t, r.WriteTable(&table))
	require.Contains(t, table.String(), "write-throughput/distinct/c=1: no request started in its 1µs window was answered by its end; the window was extended")
}

// A fixed rate the sender keeps up with, of requests longer than the
// interval (100 ms at 50/s, 8 clients): ops/s is the rate. The window
// used to run until the last answer, 100 ms after the last send, and
// said 10 ops in 0.28 s: 36/s.
func TestAFixedRateIsNotLoweredByTheLastLatency(t *testing.T) {
	const latency = 100 * time.Millisecond
	l := load{clients: 8, rate: 50, duration: 200 * time.Millisecond, op: sleepOp(latency), noConn: true}
	res, err := runLoad(context.Background(), endpoint{}, l)
	require.NoError(t, err)
	require.Len(t, res.samples, 10, "one intended every 20 ms of the window")
	require.False(t, res.extended)
	require.GreaterOrEqual(t, res.elapsed, l.duration)
	require.Less(t, res.elapsed, l.duration+latency/2, "the last answer's latency is not part of the window")
}

// A fixed rate the server cannot sustain: ops/s is the rate it sustained
// while the window's requests were sent. It was the window's requests
// over the time from the window's start to the last answer, which
// counted the backlog the warm-up left before the first of them (here
// twice as long as their own sending) and said a third of it.
func TestAFixedRateThatFallsBehindSaysWhatWasSustained(t *testing.T) {
	var took []time.Duration // each request's time, in the order sent (one client)
	l := load{clients: 1, rate: 2000, warmup: 50 * time.Millisecond, duration: 25 * time.Millisecond, noConn: true}
	l.op = func(*worker) (uint8, error) {
		t0 := time.Now()
		time.Sleep(2 * time.Millisecond)
		took = append(took, time.Since(t0))
		return kindWrite, nil
	}
	res, err := runLoad(context.Background(), endpoint{}, l)
	require.NoError(t, err)
	n := len(res.samples)
	require.Equal(t, 50, n, "one intended every 0.5 ms of the window")
	require.Greater(t, res.elapsed, l.duration, "it fell behind")
	// The window's requests are the last n sent, back to back: the
	// server's rate is n-1 of them over their time (the n-1 gaps between
	// the n sends, less what the client did between two).
	var busy time.Duration
	for _, d := range took[len(took)-n : len(took)-1] {
		busy += d
	}
	sustained := float64(n-1) / busy.Seconds()
	got := measure(res.samples, res.window, res.elapsed).opsPerSec
	require.Greater(t, got, 0.8*sustained, "ops/s %.0f, the server's rate %.0f", got, sustained)
	require.LessOrEqual(t, got, sustained*1.000001)
}

// Fan-out's writers at a fixed rate they keep up with (20/s for 500 ms:
// a write every 50 ms, each answered in a few): writes/s is the rate. It
// was the writes over the time to the last acknowledgement, 450 ms and
// a latency, and said 22/s.
func TestFanoutWritesPerSecIsTheRateKept(t *testing.T) {
	cfg := tinyConfig()
	cfg.Scenarios = []string{scenarioFanout}
	cfg.FanoutSubscribers, cfg.FanoutSocketIOSubscribers = []int{3}, []int{0}
	cfg.FanoutRate, cfg.FanoutWriters, cfg.Duration = 20, 2, 500*time.Millisecond
	r, err := Run(context.Background(), cfg, Target{Fresh: freshServer(t)})
	require.NoError(t, err)
	require.Zero(t, r.Errors, "failures %v, runs %v", r.Failures, r.errorSamples())
	require.Len(t, r.Fanout, 1)
	f := r.Fanout[0]
	require.EqualValues(t, 10, f.Writes)
	require.InDelta(t, 20, f.WritesPerSec, 1.5, "%+v", f.WriteLatency)
}

// Ctrl-C during a fixed rate's wait for the next send: the wait ends at
// once and the operation is not sent. At 1/s, the second client slept
// until its send time (1 s after the cancel) and then sent its request
// to a run already stopped.
func TestAPacedWaitEndsOnCancel(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	var mu sync.Mutex
	sent := 0
	l := load{clients: 2, rate: 1, duration: time.Hour, noConn: true}
	l.op = func(*worker) (uint8, error) {
		mu.Lock()
		defer mu.Unlock()
		sent++
		cancel() // the first request, sent at once: the other client waits for its second
		return kindWrite, nil
	}
	_, err := runLoad(ctx, endpoint{}, l)
	require.ErrorIs(t, err, context.Canceled)
	require.Equal(t, 1, sent, "no request is sent after the cancel")
}

// serverFeed is ctxd's feed to a server of its own.
func serverFeed(t *testing.T) *wsFeed {
	srv := testkit.StartServer(t)
	ep, err := parseEndpoint(srv.URL)
	require.NoError(t, err)
	feed := &wsFeed{ep: ep, bases: []string{ep.base}}
	t.Cleanup(feed.closeWriters)
	return feed
}

// runFanout measures spec on feed, its errors in the result.
func runFanout(t *testing.T, feed FanoutFeed, spec FanoutSpec) FanoutRun {
	var fr FanoutRun
	fr.describe(spec)
	errs := &errorLog{}
	require.NoError(t, measureFanout(context.Background(), feed, spec, makeValue(64), &fr, errs, nil))
	fr.RunErrors = errs.result()
	return fr
}

// halfFailingFeed is ctxd's feed whose odd writes put a value that is
// not JSON: the server refuses them (400).
type halfFailingFeed struct{ *wsFeed }

func (f halfFailingFeed) Put(ctx context.Context, w int, key string, value []byte) error {
	if i, _ := strconv.Atoi(key[strings.LastIndexByte(key, '-')+1:]); i%2 == 1 {
		value = []byte("not json")
	}
	return f.wsFeed.Put(ctx, w, key, value)
}

// A fan-out run some of whose writes failed: writes/s counts only the
// acknowledged ones, and the run says how many failed, in report.json
// (failed_writes) and beside the rate in the tables. It gave the rate
// alone, which read as the server's pace with nothing failing.
func TestFanoutSaysHowManyWritesFailed(t *testing.T) {
	feed := serverFeed(t)
	spec := FanoutSpec{Name: "fanout/subs=2/rate=200", Subscribers: 2, Rate: 200, Writers: 2, Duration: 200 * time.Millisecond, KeyPrefix: "half-"}
	fr := runFanout(t, halfFailingFeed{feed}, spec)
	require.EqualValues(t, 20, fr.Writes, "the even writes of 40")
	require.EqualValues(t, 20, fr.FailedWrites)
	require.EqualValues(t, 20, fr.Errors)
	require.EqualValues(t, 40, fr.Deliveries, "each acknowledged write to each subscriber")
	require.Zero(t, fr.Missed)
	require.LessOrEqual(t, fr.WritesPerSec, 100.0, "20 acknowledged over the 0.2 s they were meant to take, at most")

	r := &Report{Fanout: []FanoutRun{fr}}
	require.Regexp(t, `fanout/subs=2/rate=200 +2 +[0-9.]+ \(20 failed\) `, tableOf(t, r))
	require.Regexp(t, `<td>[0-9.]+ \(20 failed\)</td>`, htmlOf(t, r))
	raw, err := json.Marshal(fr)
	require.NoError(t, err)
	require.Contains(t, string(raw), `"failed_writes":20`)
}

// lossyFeed is ctxd's feed where write 3's answer is lost after the
// server applied it (the write fails, its change is delivered), and the
// first subscriber loses the change of write 5 (a frame lost on the way).
type lossyFeed struct{ *wsFeed }

func (f lossyFeed) Put(ctx context.Context, w int, key string, value []byte) error {
	err := f.wsFeed.Put(ctx, w, key, value)
	if err == nil && strings.HasSuffix(key, "-3") {
		return errors.New("answer lost after the server applied the write")
	}
	return err
}

func (f lossyFeed) Subscribe(ctx context.Context, n int, prefix string) ([]FanoutSubscriber, error) {
	subs, err := f.wsFeed.Subscribe(ctx, n, prefix)
	if err == nil {
		subs[0] = droppingSubscriber{subs[0], prefix + `5"`}
	}
	return subs, err
}

type droppingSubscriber struct {
	FanoutSubscriber
	drop string // the key, and its closing quote, of the change lost
}

func (d droppingSubscriber) Receive(change func(rev uint64, key []byte)) error {
	return d.FanoutSubscriber.Receive(func(rev uint64, key []byte) {
		if !strings.HasPrefix(string(key), d.drop) {
			change(rev, key)
		}
	})
}

// A change that did not reach a subscriber is missed even when the
// change of a failed write reached it: missed deliveries were counted as
// the acknowledged writes less the changes received, and the failed
// write's change made up for the lost one (0 missed).
func TestFanoutMissedIsCountedWriteByWrite(t *testing.T) {
	feed := serverFeed(t)
	// The lost change never comes: the wait for it is cut to a second.
	spec := FanoutSpec{Name: "fanout/subs=2/rate=100", Subscribers: 2, Rate: 100, Writers: 1, Duration: 100 * time.Millisecond, KeyPrefix: "lossy-", Drain: time.Second}
	fr := runFanout(t, lossyFeed{feed}, spec)
	require.EqualValues(t, 9, fr.Writes, "10 writes, the 4th failed")
	require.EqualValues(t, 1, fr.FailedWrites)
	require.EqualValues(t, 18, fr.Expected)
	require.EqualValues(t, 19, fr.Deliveries, "10 changes to the second subscriber, 9 to the first (the wait is for every acknowledged change)")
	require.EqualValues(t, 1, fr.Missed, "write 5's change to the first subscriber")
}

// Ack-to-arrival is timed only for acknowledged writes: the change of a
// write that failed after the server applied it has no acknowledgement
// to time from. It was recorded as 0 (as a change that arrives before
// its acknowledgement is), which pulled the p50 and p99 down and, in a
// run whose every answer was lost, met the p99 target with 0s.
func TestFanoutAckToArrivalIsOfAcknowledgedWritesOnly(t *testing.T) {
	feed := serverFeed(t)
	spec := FanoutSpec{Name: "fanout/subs=2/rate=100", Subscribers: 2, Rate: 100, Writers: 1, Duration: 100 * time.Millisecond, KeyPrefix: "lossy-", Drain: time.Second}
	fr := runFanout(t, lossyFeed{feed}, spec)
	require.EqualValues(t, 19, fr.Deliveries, "write 3's change arrives too")
	require.EqualValues(t, 17, fr.AckToArrival.Count, "9 acknowledged writes to the second subscriber, 8 to the first (write 5 lost): not write 3's")
	require.EqualValues(t, 19, fr.SendToArrival.Count, "every change was sent")
}
