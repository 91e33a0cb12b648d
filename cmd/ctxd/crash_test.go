package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"path/filepath"
	"sort"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/framework0/ctxd"
	"github.com/framework0/ctxd/client"
	"github.com/framework0/ctxd/internal/testkit"
	"github.com/framework0/ctxd/store/bolt"
)

// ack is a write the server acknowledged with 200.
type ack struct {
	key, value string
	rev        uint64
}

// load runs writers concurrent HTTP writers against url, each putting
// distinct keys with distinct values, until stop is closed or the server
// stops answering. It returns every acknowledged write; acked, when set,
// counts them as they come.
func load(t *testing.T, url string, writers int, stop <-chan struct{}, acked *atomic.Int64) []ack {
	t.Helper()
	hc := &http.Client{
		Timeout:   5 * time.Second,
		Transport: &http.Transport{MaxIdleConnsPerHost: writers},
	}
	defer hc.CloseIdleConnections()
	var (
		mu   sync.Mutex
		acks []ack
		wg   sync.WaitGroup
	)
	for w := range writers {
		repeat(&wg, stop, func(n int) bool {
			key := fmt.Sprintf("w%02d/k%06d", w, n)
			value := fmt.Sprintf(`{"writer":%d,"n":%d}`, w, n)
			req, err := http.NewRequest(http.MethodPut, url+"/v1/ns/default/keys/"+key, bytes.NewBufferString(value))
			if err != nil {
				t.Error(err)
				return false
			}
			resp, err := hc.Do(req)
			if err != nil {
				return false // the server is gone
			}
			body, err := io.ReadAll(resp.Body)
			resp.Body.Close()
			if err != nil || resp.StatusCode != http.StatusOK {
				if err == nil && resp.StatusCode < 500 {
					t.Errorf("put %s: %d %s", key, resp.StatusCode, body)
				}
				return false
			}
			var rec client.Record
			if err := json.Unmarshal(body, &rec); err != nil {
				t.Errorf("put %s: decode %q: %v", key, body, err)
				return false
			}
			mu.Lock()
			acks = append(acks, ack{key: key, value: value, rev: rec.ModRev})
			mu.Unlock()
			if acked != nil {
				acked.Add(1)
			}
			return true
		})
	}
	wg.Wait()
	return acks
}

// loadThenSignal runs load with writers against srv until n writes are
// acknowledged, then sends sig while writes are in flight. It returns the
// server's exit code and the writes acknowledged before it went.
func loadThenSignal(t *testing.T, srv *serverProcess, writers int, n int64, sig syscall.Signal) (code int, acks []ack) {
	t.Helper()
	stop := make(chan struct{})
	done := make(chan []ack)
	var acked atomic.Int64
	go func() { done <- load(t, srv.URL, writers, stop, &acked) }()
	testkit.Eventually(t, func() bool { return acked.Load() >= n }, "%d writes acknowledged", n)
	srv.Signal(sig)
	code = srv.Wait(10 * time.Second)
	close(stop)
	return code, <-done
}

// checkAcked checks, through a running server, that every acknowledged
// write is there with its value and revision, and that the revisions of all
// keys are exactly 1..current: gap-free, each used once.
func checkAcked(t *testing.T, url string, acks []ack) {
	t.Helper()
	ctx := context.Background()
	c, err := client.New(url)
	require.NoError(t, err)
	for _, a := range acks {
		rec, err := c.Get(ctx, "", a.key, client.GetOptions{})
		require.NoError(t, err, "acknowledged write of %s lost", a.key)
		assert.JSONEq(t, a.value, string(rec.Value), a.key)
		assert.Equal(t, a.rev, rec.ModRev, a.key)
		assert.Equal(t, uint64(1), rec.Version, a.key)
	}
	st, err := c.Status(ctx)
	require.NoError(t, err)
	all, err := c.ListAll(ctx, "", "")
	require.NoError(t, err)
	require.Len(t, all, int(st.Revision), "every change created one key: as many keys as revisions")
	revs := make([]uint64, 0, len(all))
	for _, r := range all {
		revs = append(revs, r.ModRev)
	}
	sort.Slice(revs, func(i, j int) bool { return revs[i] < revs[j] })
	for i, r := range revs {
		require.Equal(t, uint64(i+1), r, "revisions must be 1..%d with no gap and no repeat", st.Revision)
	}
}

// checkLog opens the stopped server's database and checks that its log is
// revisions 1..N in order, that it holds every acknowledged write, and that
// the file passes bbolt's consistency check.
func checkLog(t *testing.T, dataDir string, acks []ack) {
	t.Helper()
	st, err := bolt.Open(filepath.Join(dataDir, dbFile), bolt.Options{})
	require.NoError(t, err)
	defer func() { require.NoError(t, st.Close()) }()
	require.NoError(t, st.Check())

	byRev := make(map[uint64]ctxd.Change)
	var last uint64
	for {
		changes, err := st.ReadLog(last, 1000)
		require.NoError(t, err)
		if len(changes) == 0 {
			break
		}
		for _, ch := range changes {
			require.Equal(t, last+1, ch.Revision, "log revisions must increase by one")
			last = ch.Revision
			byRev[ch.Revision] = ch
		}
	}
	assert.Equal(t, st.Revision(), last)
	for _, a := range acks {
		ch, ok := byRev[a.rev]
		if assert.True(t, ok, "revision %d of %s not in the log", a.rev, a.key) {
			assert.Equal(t, a.key, ch.Key)
			assert.Equal(t, ctxd.OpPut, ch.Op)
			assert.JSONEq(t, a.value, string(ch.Value))
		}
	}
}

// TestCrashKeepsAcknowledgedWrites kills the server with SIGKILL in the
// middle of concurrent writes: after a restart on the same folder every
// write that got a 200 is there, and the revisions have no gap.
func TestCrashKeepsAcknowledgedWrites(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	srv := startServer(t, dir)

	code, acks := loadThenSignal(t, srv, 16, 1000, syscall.SIGKILL)
	assert.Equal(t, -1, code, "killed by a signal")
	require.NotEmpty(t, acks)
	t.Logf("%d writes acknowledged before SIGKILL", len(acks))

	srv = startServer(t, dir)
	checkAcked(t, srv.URL, acks)
	srv.Signal(syscall.SIGTERM)
	require.Equal(t, 0, srv.Wait(10*time.Second))
	checkLog(t, dir, acks)
}

// TestGracefulShutdown sends SIGTERM under load: the server finishes the
// requests in flight, exits 0, and everything acknowledged is back after a
// restart.
func TestGracefulShutdown(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	srv := startServer(t, dir, "--log-level", "debug")

	code, acks := loadThenSignal(t, srv, 8, 300, syscall.SIGTERM)
	require.Equal(t, 0, code, "stderr:\n%s", srv.Stderr.String())
	require.NoError(t, srv.Err())
	require.NotEmpty(t, acks)

	srv = startServer(t, dir)
	checkAcked(t, srv.URL, acks)
	srv.Signal(syscall.SIGINT)
	require.Equal(t, 0, srv.Wait(10*time.Second))
	assert.Contains(t, srv.Stderr.String(), `"message":"stopped"`)
	checkLog(t, dir, acks)
}
