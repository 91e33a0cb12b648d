package perf

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/framework0/ctxd/configs"
	"github.com/framework0/ctxd/internal/testkit"
)

// importSettleKeys connects to the server at url and imports n keys of
// 200-byte values into the namespace settle; the connection closes when
// the test ends.
func importSettleKeys(t *testing.T, url string, n int) (*httpConn, []string) {
	ep, err := parseEndpoint(url)
	require.NoError(t, err)
	c := newHTTPConn(ep)
	t.Cleanup(func() { _ = c.Close() })
	keys := make([]string, n)
	for i := range keys {
		keys[i] = fmt.Sprintf("k%05d", i)
	}
	require.NoError(t, importKeys(c, "settle", keys, makeValue(200)))
	return c, keys
}

// settledStatus waits for the committer: right after an import the
// database file does not hold the acknowledged writes yet (here the
// committer waits a second between commits), and its sizes lag them.
func TestSettledStatusWaitsForTheCommitter(t *testing.T) {
	srv := testkit.StartServer(t, testkit.WithConfig(func(c *configs.Config) { c.WAL.CommitInterval = time.Second }))
	c, _ := importSettleKeys(t, srv.URL, 2000)
	st, err := getStatus(c)
	require.NoError(t, err)
	require.Greater(t, st.UsedBytes, st.InUseBytes, "the file lags the writes (the case settledStatus is for)")
	st, settled, err := settledStatus(c, time.Minute)
	require.NoError(t, err)
	require.True(t, settled)
	require.LessOrEqual(t, st.UsedBytes, st.InUseBytes, "settled: the file holds every write")
	require.Greater(t, st.InUseBytes, int64(2000*200))
}

// A server that has not applied its acknowledged writes to its database
// file when disk-growth and snapshot read its sizes (its committer held
// back for an hour; the wait cut to 50 ms): the sizes are of the file
// before the writes, and the report says so, point by point in
// report.json (unsettled) and in capitals in the table. It said nothing:
// the sizes read after 5 s looked like any others.
func TestSizesReadBeforeTheWritesAppliedAreMarked(t *testing.T) {
	cfg := tinyConfig()
	cfg.Scenarios = []string{"disk-growth", "snapshot"}
	cfg.SnapshotKeys, cfg.SnapshotRepeats = []int{50}, 1
	cfg.SettleTimeout = 50 * time.Millisecond
	held := func() (*Server, error) {
		s := testkit.StartServer(t, testkit.WithConfig(func(c *configs.Config) {
			c.WAL.CommitInterval, c.WAL.CommitChanges = time.Hour, 1<<20
		}))
		return &Server{URL: s.URL, DataDir: s.DataDir(), Close: func() error { s.Stop(); return nil }}, nil
	}
	r, err := Run(context.Background(), cfg, Target{Fresh: held})
	require.NoError(t, err)
	require.Zero(t, r.Errors, "failures %v, runs %v", r.Failures, r.errorSamples())
	require.Len(t, r.DiskGrowth, 1)
	d := r.DiskGrowth[0]
	for _, p := range d.Points {
		require.True(t, p.Unsettled, "%s %d keys %d versions", p.Stage, p.Keys, p.VersionsPerKey)
	}
	require.Len(t, r.Snapshot, 1)
	require.True(t, r.Snapshot[0].Unsettled)
	var table strings.Builder
	require.NoError(t, r.WriteTable(&table))
	require.Contains(t, table.String(), "WARNING: disk-growth/keys=40: at ")
	require.Contains(t, table.String(), "WARNING: snapshot/keys=50: the server had not applied every write it acknowledged")
	require.Contains(t, table.String(), "write, 40 keys (unsettled)")

	// The same run on a server that applies them: no mark, no warning.
	cfg.SettleTimeout = 0
	r, err = Run(context.Background(), cfg, Target{Fresh: freshServer(t)})
	require.NoError(t, err)
	for _, p := range append(append([]DiskPoint{}, r.DiskGrowth[0].Points...), r.DiskGrowth[0].AfterCompaction, r.DiskGrowth[0].AfterDefrag) {
		require.False(t, p.Unsettled, "%s %d keys", p.Stage, p.Keys)
	}
	require.False(t, r.Snapshot[0].Unsettled)
	table.Reset()
	require.NoError(t, r.WriteTable(&table))
	require.NotContains(t, table.String(), "unsettled")
}

// On etcd nothing waits to be applied (no committer: an acknowledged
// write is in etcd's database), but the status's used bytes are etcd's
// file, free pages included, never "in use": by the status alone the
// sizes never settled, each disk-growth point waited the whole 5 s, and
// would have been marked unsettled. The server's pending changes (0)
// settle it at once.
func TestSettledStatusOnEtcd(t *testing.T) {
	c, keys := importSettleKeys(t, startInstances(t, 1)[0], 300)
	// Versions compacted away leave free pages in etcd's file, which
	// count in its used bytes, not in use (once etcd's next commit says).
	for i := range 100 {
		require.NoError(t, c.expect(http.StatusOK, http.MethodPut, keyPath("settle", keys[i]), makeValue(300)))
	}
	st, err := getStatus(c)
	require.NoError(t, err)
	_, err = compact(c, st.Revision, 1)
	require.NoError(t, err)
	// The pages the compaction's last commit freed are free once etcd
	// commits again, which it does only for a write: one per look.
	testkit.Eventually(t, func() bool {
		require.NoError(t, c.expect(http.StatusOK, http.MethodPut, keyPath("settle", "nudge"), makeValue(10)))
		st, err := getStatus(c)
		return err == nil && st.UsedBytes > st.InUseBytes
	}, "the case: used is etcd's file, free pages too")

	st, settled, err := settledStatus(c, 2*time.Second)
	require.NoError(t, err)
	require.True(t, settled)
	require.Greater(t, st.UsedBytes, st.InUseBytes)
}

// A server older than ctxd_store_pending_changes has the commit counters
// without it (here: a real server, its committer held back, behind a
// proxy that drops the metric from /metrics): its pending changes are
// not known, and the status's used and in-use bytes say whether the file
// holds the writes. They were taken for 0 pending: sizes read before the
// writes were applied counted as settled, unmarked.
func TestSettledStatusWithoutThePendingMetric(t *testing.T) {
	srv := testkit.StartServer(t, testkit.WithConfig(func(c *configs.Config) {
		c.WAL.CommitInterval, c.WAL.CommitChanges = time.Hour, 1<<20
	}))
	target, err := url.Parse(srv.URL)
	require.NoError(t, err)
	proxy := httputil.NewSingleHostReverseProxy(target)
	proxy.ModifyResponse = func(resp *http.Response) error {
		if resp.Request.URL.Path != "/metrics" {
			return nil
		}
		body, err := io.ReadAll(resp.Body)
		if err != nil {
			return err
		}
		resp.Body.Close()
		var kept []byte
		for line := range bytes.Lines(body) {
			if !bytes.Contains(line, []byte("ctxd_store_pending_changes")) {
				kept = append(kept, line...)
			}
		}
		resp.Body = io.NopCloser(bytes.NewReader(kept))
		resp.ContentLength = int64(len(kept))
		resp.Header.Set("Content-Length", strconv.Itoa(len(kept)))
		return nil
	}
	front := httptest.NewServer(proxy)
	t.Cleanup(front.Close)

	c, _ := importSettleKeys(t, front.URL, 500)
	cc, err := scrapeCommits(c)
	require.NoError(t, err, "the commit counters, as an older server has them")
	require.False(t, cc.hasPending)
	st, settled, err := settledStatus(c, 50*time.Millisecond)
	require.NoError(t, err)
	require.Greater(t, st.UsedBytes, st.InUseBytes, "the file lags the writes")
	require.False(t, settled)
}
