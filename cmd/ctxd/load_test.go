package main

import (
	"context"
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/framework0/ctxd/client"
	"github.com/framework0/ctxd/internal/testkit"
)

// Load test shape: 256 concurrent clients on loopback against the built
// `ctxd serve`, for loadDuration (CTXD_LONG_LOAD=1: 60 s).
const (
	loadWriters  = 96
	loadReaders  = 96
	loadWatchers = 64
	loadNS       = "load"
)

func loadDuration() time.Duration {
	if os.Getenv("CTXD_LONG_LOAD") == "1" {
		return 60 * time.Second
	}
	return 3 * time.Second
}

// loadAcks are the acknowledged writes: key -> value (the last one for a
// key written several times), and the highest revision acknowledged.
type loadAcks struct {
	mu     sync.Mutex
	values map[string]int
	keys   []string // for readers to pick from
	maxRev uint64
	first  chan struct{} // closed at the first acknowledged write
}

func (a *loadAcks) add(key string, value int, rev uint64) {
	a.mu.Lock()
	defer a.mu.Unlock()
	if len(a.keys) == 0 {
		close(a.first)
	}
	if _, ok := a.values[key]; !ok {
		a.keys = append(a.keys, key)
	}
	a.values[key] = value
	a.maxRev = max(a.maxRev, rev)
}

func (a *loadAcks) pick(r *rand.Rand) (string, int, bool) {
	a.mu.Lock()
	defer a.mu.Unlock()
	if len(a.keys) == 0 {
		return "", 0, false
	}
	k := a.keys[r.IntN(len(a.keys))]
	return k, a.values[k], true
}

// watchTally checks one watcher's stream: every revision once, in order.
type watchTally struct {
	mu      sync.Mutex
	last    uint64
	count   int
	errs    []string
	connect int
}

// 256 concurrent clients mixing writes (puts and compare-and-swap
// updates), reads (gets of acknowledged keys, listings, status) and
// watches, for a few seconds (60 with CTXD_LONG_LOAD=1): no request fails,
// every watcher gets every change once and in order, and after a SIGKILL
// and a restart every acknowledged write is there.
func TestLoadMixedClients(t *testing.T) {
	if testing.Short() {
		t.Skip("load test")
	}
	dir := filepath.Join(t.TempDir(), "data")
	srv := startServer(t, dir)
	tr := http.DefaultTransport.(*http.Transport).Clone()
	tr.MaxIdleConns, tr.MaxIdleConnsPerHost = 512, 512
	hc := &http.Client{Transport: tr, Timeout: 30 * time.Second}
	t.Cleanup(tr.CloseIdleConnections)
	cl, err := client.New(srv.URL, client.WithHTTPClient(hc), client.WithWho("load"))
	require.NoError(t, err)
	ctx, cancel := context.WithTimeout(context.Background(), loadDuration()+2*time.Minute)
	defer cancel()
	st, err := cl.Status(ctx)
	require.NoError(t, err)
	start := st.Revision

	var (
		acks   = &loadAcks{values: map[string]int{}, first: make(chan struct{})}
		failed atomic.Int64
		errMu  sync.Mutex
		errs   []string
		ops    atomic.Int64
	)
	fail := func(format string, args ...any) {
		if failed.Add(1) <= 10 {
			errMu.Lock()
			errs = append(errs, fmt.Sprintf(format, args...))
			errMu.Unlock()
		}
	}

	// Watchers first, from the start revision, so that they must see every
	// change of the run.
	watchCtx, stopWatch := context.WithCancel(ctx)
	var watchWG sync.WaitGroup
	defer func() { // also when a check fails: no watcher outlives the test
		stopWatch()
		watchWG.Wait()
	}()
	tallies := make([]*watchTally, loadWatchers)
	for i := range tallies {
		tl := &watchTally{last: start}
		tallies[i] = tl
		from := start
		watchWG.Add(1)
		go func() {
			defer watchWG.Done()
			err := cl.Watch(watchCtx, client.WatchOptions{Namespaces: []string{loadNS}, FromRev: &from,
				OnConnect: func(uint64) { tl.mu.Lock(); tl.connect++; tl.mu.Unlock() }},
				func(ev client.WatchEvent) error {
					tl.mu.Lock()
					defer tl.mu.Unlock()
					if ev.Type != client.EventChange || ev.Rev != tl.last+1 {
						tl.errs = append(tl.errs, fmt.Sprintf("%s at revision %d after %d", ev.Type, ev.Rev, tl.last))
					}
					tl.last = max(tl.last, ev.Rev)
					tl.count++
					return nil
				})
			if err != nil && watchCtx.Err() == nil {
				fail("watch: %v", err)
			}
		}()
	}

	// worker repeats step, each counted as an op, until stop is closed.
	stop := make(chan struct{})
	var wg sync.WaitGroup
	worker := func(step func(n int) bool) {
		repeat(&wg, stop, func(n int) bool {
			ops.Add(1)
			return step(n)
		})
	}
	for w := range loadWriters {
		counter := "c" + strconv.Itoa(w)
		var version uint64
		worker(func(n int) bool {
			if n%5 == 4 {
				// Compare-and-swap on the writer's own counter.
				rec, err := cl.Put(ctx, loadNS, counter, json.RawMessage(strconv.Itoa(n)), client.PutOptions{IfVersion: client.Expect(version)})
				if err != nil {
					fail("cas %s at version %d: %v", counter, version, err)
					return false
				}
				version = rec.Version
				acks.add(counter, n, rec.ModRev)
				return true
			}
			key := fmt.Sprintf("w%d/%d", w, n)
			rec, err := cl.Put(ctx, loadNS, key, json.RawMessage(strconv.Itoa(n)), client.PutOptions{})
			if err != nil {
				fail("put %s: %v", key, err)
				return false
			}
			acks.add(key, n, rec.ModRev)
			return true
		})
	}
	for r := range loadReaders {
		rnd := rand.New(rand.NewPCG(uint64(r), 7))
		worker(func(n int) bool {
			switch n % 10 {
			case 8:
				if _, err := cl.List(ctx, loadNS, client.ListOptions{Prefix: "w" + strconv.Itoa(rnd.IntN(loadWriters)) + "/", Limit: 50}); err != nil {
					fail("list: %v", err)
					return false
				}
			case 9:
				if _, err := cl.Status(ctx); err != nil {
					fail("status: %v", err)
					return false
				}
			default:
				key, atLeast, ok := acks.pick(rnd)
				if !ok { // nothing acknowledged yet: wait for the first write
					select {
					case <-acks.first:
						return true
					case <-stop:
						return false
					}
				}
				rec, err := cl.Get(ctx, loadNS, key, client.GetOptions{})
				if err != nil {
					fail("get acknowledged %s: %v", key, err)
					return false
				}
				if v, _ := strconv.Atoi(string(rec.Value)); v < atLeast {
					fail("get %s: %s, older than the acknowledged %d", key, rec.Value, atLeast)
				}
			}
			return true
		})
	}

	time.Sleep(loadDuration()) // time is the subject: the load runs for loadDuration
	close(stop)
	wg.Wait()
	final := acks.maxRev
	t.Logf("%d clients, %v: %d requests, %d writes acknowledged up to revision %d", loadWriters+loadReaders+loadWatchers,
		loadDuration(), ops.Load(), final-start, final)

	// Every watcher gets everything up to the last acknowledged write (the
	// counts are checked below).
	testkit.Eventually(t, func() bool {
		for _, tl := range tallies {
			tl.mu.Lock()
			last := tl.last
			tl.mu.Unlock()
			if last < final {
				return false
			}
		}
		return true
	}, "every watcher reaches revision %d", final)
	stopWatch()
	watchWG.Wait()
	reconnects := 0
	for i, tl := range tallies {
		assert.Empty(t, tl.errs, "watcher %d: gaps or duplicates", i)
		assert.Equal(t, int(final-start), tl.count, "watcher %d: changes received", i)
		reconnects += tl.connect - 1
	}
	t.Logf("watchers: %d reconnections (a watcher that fell behind is closed with lagged and resumes)", reconnects)
	require.Zero(t, failed.Load(), "failed requests: %v", errs)
	assert.Zero(t, testkit.Scrape(t, srv.URL)[`ctxd_ws_frames_dropped_total{protocol="watch"}`], "frames dropped by the WebSocket library")

	// SIGKILL, restart: every acknowledged write is there.
	require.NoError(t, srv.Cmd.Process.Kill())
	srv.Wait(20 * time.Second)
	srv = startServer(t, dir)
	cl, err = client.New(srv.URL, client.WithHTTPClient(hc))
	require.NoError(t, err)
	all, err := cl.ListAll(ctx, loadNS, "")
	require.NoError(t, err)
	got := make(map[string]string, len(all))
	for _, r := range all {
		got[r.Key] = string(r.Value)
	}
	missing := 0
	for k, v := range acks.values {
		if got[k] != strconv.Itoa(v) {
			if missing++; missing <= 5 {
				t.Errorf("acknowledged %s=%d, after the restart %q", k, v, got[k])
			}
		}
	}
	assert.Zero(t, missing, "acknowledged writes missing after SIGKILL")
	st, err = cl.Status(ctx)
	require.NoError(t, err)
	assert.GreaterOrEqual(t, st.Revision, final)
}
