package main

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"strconv"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/framework0/ctxd/client"
	"github.com/framework0/ctxd/internal/testkit"
	"github.com/framework0/ctxd/internal/testkit/etcdkit"
)

// envRollingDrain overrides the rolling restart's shutdown_drain (the
// negative control, run by hand: CTXD_TEST_ROLLING_DRAIN=0).
const envRollingDrain = "CTXD_TEST_ROLLING_DRAIN"

// A rolling restart of a deployment's instances (each in turn stopped with
// SIGTERM and started again on its address) under writers on a client of
// both: with shutdown_drain, every write is acknowledged, none ends outcome
// unknown, and each is read back. Without the drain, a stopping instance
// closes its idle kept-alive connections and resets those in its
// listener's backlog, and a write the client sent on one ends outcome
// unknown: the control (CTXD_TEST_ROLLING_DRAIN=0) fails this test, as
// does a drain that serves on without telling the client to leave.
func TestRollingRestartLeavesNoWriteUnknown(t *testing.T) {
	t.Parallel()
	drain := "1500ms"
	if v := os.Getenv(envRollingDrain); v != "" {
		drain = v
	}
	endpoint, prefix := etcdkit.Shared(t).Endpoint, etcdkit.Prefix(t.TempDir())
	env := testEnv("CTXD_STORE_BACKEND=etcd", "CTXD_ETCD_ENDPOINTS="+endpoint, "CTXD_ETCD_PREFIX="+prefix,
		"CTXD_SHUTDOWN_DRAIN="+drain)
	inst := []*testkit.Process{
		testkit.StartServe(t, bin, t.TempDir(), testkit.ServeOptions{Env: env}),
		testkit.StartServe(t, bin, t.TempDir(), testkit.ServeOptions{Env: env}),
	}
	c, err := client.New(inst[0].URL + "," + inst[1].URL)
	require.NoError(t, err)

	var (
		mu     sync.Mutex
		acked  = map[string]string{}
		failed []string
		wg     sync.WaitGroup
	)
	stop := make(chan struct{})
	for w := range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for n := 0; ; n++ {
				select {
				case <-stop:
					return
				default:
				}
				key, value := fmt.Sprintf("w%d-%d", w, n), strconv.Itoa(n)
				ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
				_, err := c.Put(ctx, "", key, json.RawMessage(value), client.PutOptions{})
				cancel()
				mu.Lock()
				if err != nil {
					failed = append(failed, fmt.Sprintf("%s: outcome unknown %v: %v", key, client.IsOutcomeUnknown(err), err))
				} else {
					acked[key] = value
				}
				mu.Unlock()
			}
		}()
	}
	for cycle := range 4 {
		time.Sleep(300 * time.Millisecond)
		i := cycle % 2
		inst[i].Signal(syscall.SIGTERM)
		require.Equal(t, 0, inst[i].Wait(30*time.Second), "instance %d stopped gracefully", i)
		inst[i] = testkit.StartServe(t, bin, t.TempDir(), testkit.ServeOptions{Env: env, Addr: inst[i].Addr})
	}
	time.Sleep(300 * time.Millisecond)
	close(stop)
	wg.Wait()

	assert.Empty(t, failed, "writes that failed during the rolling restart")
	require.NotEmpty(t, acked)
	// Read back in pages of a listing: a GET per key took seconds.
	records, err := c.ListAll(context.Background(), "", "")
	require.NoError(t, err)
	stored := map[string]string{}
	for _, rec := range records {
		stored[rec.Key] = string(rec.Value)
	}
	for key, value := range acked {
		got, ok := stored[key]
		require.True(t, ok, "acknowledged write %s is not stored", key)
		require.JSONEq(t, value, got, key)
	}
	t.Logf("%d writes acknowledged over 4 graceful restarts (shutdown_drain %s)", len(acked), drain)
}
