package main

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/framework0/ctxd"
	"github.com/framework0/ctxd/client"
	"github.com/framework0/ctxd/internal/testkit"
	"github.com/framework0/ctxd/internal/testkit/etcdkit"
	"github.com/framework0/ctxd/store/bolt"
)

// watchLine is one line of `ctxd watch -o json`.
type watchLine struct {
	Type  string          `json:"type"`
	Rev   uint64          `json:"rev"`
	NS    string          `json:"ns"`
	Key   string          `json:"key"`
	Op    string          `json:"op"`
	Value json.RawMessage `json:"value"`
}

// parseWatch parses the complete lines of out (a line being written is
// left for later).
func parseWatch(out string) ([]watchLine, error) {
	var lines []watchLine
	if i := strings.LastIndexByte(out, '\n'); i >= 0 {
		out = out[:i]
	} else {
		return nil, nil
	}
	for _, l := range strings.Split(out, "\n") {
		var w watchLine
		if err := json.Unmarshal([]byte(l), &w); err != nil {
			return lines, fmt.Errorf("line %q: %w", l, err)
		}
		lines = append(lines, w)
	}
	return lines, nil
}

// printed returns how many complete lines the watch printed and the
// revision of the last one.
func printed(out *testkit.SyncBuffer) (n int, last uint64) {
	lines, _ := parseWatch(out.String())
	if len(lines) == 0 {
		return 0, 0
	}
	return len(lines), lines[len(lines)-1].Rev
}

// `ctxd watch` keeps printing across a SIGKILL of the server in the middle
// of concurrent writes and its restart: its output is every change of the
// log, each once, in order.
func TestWatchExactlyOnceAcrossKill(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	addr := testkit.FreeAddr(t)
	srv := startServer(t, dir, "--addr", addr)

	watch := exec.Command(bin, "watch", "-o", "json", "--server", srv.URL)
	watch.Env = testEnv()
	var out, errOut testkit.SyncBuffer
	watch.Stdout, watch.Stderr = &out, &errOut
	require.NoError(t, watch.Start())
	exited := make(chan error, 1)
	go func() { exited <- watch.Wait() }()
	t.Cleanup(func() {
		_ = watch.Process.Kill()
		testkit.LogOnFailure(t, "watch stderr", errOut.String())
	})
	c, err := client.New(srv.URL)
	require.NoError(t, err)
	testkit.Eventually(t, func() bool {
		st, err := c.Status(context.Background())
		return err == nil && st.Clients == 1
	}, "ctxd watch did not connect")

	// Writes in flight when the server is killed.
	stop := make(chan struct{})
	done := make(chan []ack)
	go func() { done <- load(t, srv.URL, 4, stop, nil) }()
	testkit.Eventually(t, func() bool { n, _ := printed(&out); return n >= 200 })
	srv.Signal(syscall.SIGKILL)
	srv.Wait(10 * time.Second)
	close(stop)
	acks := <-done

	srv = startServer(t, dir, "--addr", addr)
	for i := range 100 {
		_, err := c.Put(context.Background(), "", fmt.Sprintf("after/%d", i), json.RawMessage(fmt.Sprint(i)), client.PutOptions{})
		require.NoError(t, err)
	}
	st, err := c.Status(context.Background())
	require.NoError(t, err)
	final := st.Revision
	testkit.Eventually(t, func() bool { _, last := printed(&out); return last >= final },
		"ctxd watch did not print revision %d", final)

	// Ctrl-C ends the watch with exit code 0.
	require.NoError(t, watch.Process.Signal(syscall.SIGINT))
	select {
	case err := <-exited:
		require.NoError(t, err, "stderr: %s", errOut.String())
	case <-time.After(time.Minute):
		t.Fatal("ctxd watch did not exit on SIGINT")
	}
	assert.Contains(t, errOut.String(), "reconnecting", "the watch said it lost the server")

	srv.Signal(syscall.SIGTERM)
	require.Equal(t, 0, srv.Wait(10*time.Second))
	st2, err := bolt.Open(filepath.Join(dir, dbFile), bolt.Options{})
	require.NoError(t, err)
	defer st2.Close()
	log, err := st2.ReadLog(0, int(final)+10)
	require.NoError(t, err)
	require.Len(t, log, int(final))

	lines, err := parseWatch(out.String())
	require.NoError(t, err)
	require.Len(t, lines, int(final), "one line per change of the log: no gap, no duplicate")
	for i, l := range lines {
		ch := log[i]
		require.Equal(t, ch.Revision, l.Rev, "line %d", i)
		require.Equal(t, "context_updated", l.Type)
		require.Equal(t, ch.Key, l.Key)
		require.Equal(t, ch.Namespace, l.NS)
		require.JSONEq(t, string(ch.Value), string(l.Value))
	}
	t.Logf("%d changes printed once each; %d writes acknowledged before SIGKILL", len(lines), len(acks))
}

func TestWatchTableAndErrors(t *testing.T) {
	t.Parallel()
	srv := startServer(t, t.TempDir())
	c, err := client.New(srv.URL)
	require.NoError(t, err)
	for _, kv := range [][2]string{{"app/a", `"x"`}, {"other", "1"}, {"app/b", `{"n":1}`}} {
		_, err := c.Put(context.Background(), "", kv[0], json.RawMessage(kv[1]), client.PutOptions{Who: "alice"})
		require.NoError(t, err)
	}
	_, err = c.Delete(context.Background(), "", "app/a", client.DeleteOptions{})
	require.NoError(t, err)

	// Replay with a prefix, as a table; stop it once it printed revision 4.
	watch := exec.Command(bin, "watch", "app/", "--from-rev", "0", "--server", srv.URL)
	watch.Env = testEnv()
	var out testkit.SyncBuffer
	watch.Stdout = &out
	require.NoError(t, watch.Start())
	testkit.Eventually(t, func() bool { return strings.Count(out.String(), "\n") >= 4 })
	require.NoError(t, watch.Process.Signal(syscall.SIGINT))
	require.NoError(t, watch.Wait())
	lines := strings.Split(strings.TrimSpace(out.String()), "\n")
	require.Len(t, lines, 4)
	assert.Regexp(t, `^REVISION\s+NS\s+KEY\s+OP\s+VERSION\s+WHO\s+TIME\s+VALUE$`, lines[0])
	assert.Regexp(t, `^1\s+default\s+app/a\s+put\s+1\s+alice\s+\S+Z\s+"x"$`, lines[1])
	assert.Regexp(t, `^3\s+default\s+app/b\s+put\s+1\s+alice\s+\S+Z\s+\{"n":1\}$`, lines[2])
	assert.Regexp(t, `^4\s+default\s+app/a\s+delete\s+1\s+\S+\s+\S+Z\s+\(deleted\)$`, lines[3])

	// Refusals and an absent server.
	r := cli(t, nil, "", "watch", "-n", "bad ns", "--server", srv.URL)
	assert.Equal(t, exitError, r.code)
	assert.Contains(t, r.stderr, "bad_request")
	r = cli(t, nil, "", "watch", "-o", "value", "--server", srv.URL)
	assert.Equal(t, exitUsage, r.code)
	r = cli(t, nil, "", "watch", "a", "b", "--server", srv.URL)
	assert.Equal(t, exitUsage, r.code)
	r = cli(t, nil, "", "watch", "--server", "http://"+testkit.FreeAddr(t))
	assert.Equal(t, exitUnreachable, r.code, r.stderr)
}

// `ctxd watch -o json` prints each value, key and who as the server has
// them, as `ctxd get -o json` does: <, > and & stay themselves (they came
// out as \u003c, \u003e and \u0026, the HTML escapes of encoding/json
// that the printer turned off), large numbers keep every digit.
func TestWatchJSONPrintsValuesAsStored(t *testing.T) {
	t.Parallel()
	srv := startServer(t, t.TempDir())
	c, err := client.New(srv.URL)
	require.NoError(t, err)
	values := map[string]string{
		"a<b>&c":  `{"html":"<p>a & b</p>","url":"https://x.example/?a=1&b=2","snow":"☃"}`,
		"big":     `123456789012345678901234567890.5e400`,
		"unicode": `"héllo \u2028 <&>"`,
	}
	for k, v := range values {
		_, err := c.Put(context.Background(), "", k, json.RawMessage(v), client.PutOptions{Who: "a&b"})
		require.NoError(t, err)
	}
	watch := exec.Command(bin, "watch", "--from-rev", "0", "-o", "json", "--server", srv.URL)
	watch.Env = testEnv()
	var out testkit.SyncBuffer
	watch.Stdout = &out
	require.NoError(t, watch.Start())
	testkit.Eventually(t, func() bool { return strings.Count(out.String(), "\n") >= len(values) })
	require.NoError(t, watch.Process.Signal(syscall.SIGINT))
	require.NoError(t, watch.Wait())
	lines := strings.Split(strings.TrimSpace(out.String()), "\n")
	require.Len(t, lines, len(values))
	for _, line := range lines {
		var ev struct {
			Key   string          `json:"key"`
			Value json.RawMessage `json:"value"`
		}
		require.NoError(t, json.Unmarshal([]byte(line), &ev), line)
		assert.Equal(t, values[ev.Key], string(ev.Value), "the value of %s, as stored", ev.Key)
		assert.NotContains(t, line, `\u00`, "no HTML escapes")
		assert.Contains(t, line, `"who":"a&b"`)
	}
}

// A reset prints a line that says what it means, whatever caused it: a
// --from-rev past every revision of the database (another deployment's,
// one restored from an older backup) is no restore, which the line said.
func TestWatchResetLineSaysWhatItMeans(t *testing.T) {
	t.Parallel()
	srv := startServer(t, t.TempDir())
	c, err := client.New(srv.URL)
	require.NoError(t, err)
	_, err = c.Put(context.Background(), "", "k", json.RawMessage(`1`), client.PutOptions{})
	require.NoError(t, err)
	watch := exec.Command(bin, "watch", "--from-rev", "999", "--server", srv.URL)
	watch.Env = testEnv()
	var out, stderr testkit.SyncBuffer
	watch.Stdout, watch.Stderr = &out, &stderr
	require.NoError(t, watch.Start())
	testkit.Eventually(t, func() bool { return strings.Count(out.String(), "\n") >= 2 })
	require.NoError(t, watch.Process.Signal(syscall.SIGINT))
	require.NoError(t, watch.Wait())
	lines := strings.Split(strings.TrimSpace(out.String()), "\n")
	require.Len(t, lines, 2)
	assert.Equal(t, "-- reset: what was read before is stale; changes continue after revision 1", lines[1])
	assert.Contains(t, stderr.String(), "past this database's last revision (1)", "why, on stderr")
}

// The serve wiring: a dump written through POST /ctx/dump is announced to
// WebSocket clients as context_dumped, and /v1/status counts the clients.
func TestServeWiresDumpsAndClients(t *testing.T) {
	t.Parallel()
	srv := startServer(t, t.TempDir())
	ws := testkit.DialWatch(t, "ws://"+srv.Addr+"/v1/watch?ns=none", nil)
	ws.Expect("subscribed")

	c, err := client.New(srv.URL)
	require.NoError(t, err)
	st, err := c.Status(context.Background())
	require.NoError(t, err)
	assert.Equal(t, 1, st.Clients)

	body := strings.NewReader(`{"format":"csv","filename":"nightly","who":"cron"}`)
	r, err := http.Post(srv.URL+"/ctx/dump", "application/json", body)
	require.NoError(t, err)
	r.Body.Close()
	require.Equal(t, http.StatusOK, r.StatusCode)

	m := ws.Expect("context_dumped")
	assert.Equal(t, "nightly.csv", m.Filename)
	assert.Equal(t, "csv", m.Format)
	assert.Equal(t, "cron", m.Who)
}

// `ctxd watch --from-rev R --from-index I` on etcd prints the changes of
// transaction revision R from index I on, with their index and count in
// -o json, then the later ones; --from-index 0 prints the whole of R
// (before, it was passed to the Go client, whose FromIndex 0 means R was
// handled whole, and R was skipped); --from-index without --from-rev is
// a usage error.
func TestWatchFromIndexOnEtcd(t *testing.T) {
	t.Parallel()
	e, err := etcdkit.Start()
	require.NoError(t, err)
	t.Cleanup(e.Close)
	srv := testkit.StartServer(t, testkit.WithEtcd(e.Endpoint, etcdkit.Prefix(etcdkit.Name(t))))
	ctx := context.Background()
	var writes []ctxd.Write
	for _, k := range []string{"t0", "t1", "t2"} {
		writes = append(writes, ctxd.Write{Namespace: "default", Key: k, Op: ctxd.OpPut, Value: json.RawMessage(`1`), Who: "t"})
	}
	res, err := srv.Backend().Txn(ctx, writes)
	require.NoError(t, err)
	next, err := srv.Backend().Put(ctx, "default", "next", json.RawMessage(`2`), nil, "t")
	require.NoError(t, err)

	watchFromIndex := func(index string) []string {
		watch := exec.Command(bin, "watch", "--from-rev", strconv.FormatUint(res.Revision, 10), "--from-index", index, "-o", "json", "--server", srv.URL)
		watch.Env = testEnv()
		var out testkit.SyncBuffer
		watch.Stdout = &out
		require.NoError(t, watch.Start())
		testkit.Eventually(t, func() bool { _, last := printed(&out); return last >= next.ModRev }, "the watch printed the write after the transaction")
		require.NoError(t, watch.Process.Signal(syscall.SIGINT))
		require.NoError(t, watch.Wait())
		var got []string
		for _, l := range strings.Split(strings.TrimSpace(out.String()), "\n") {
			var ev client.WatchEvent
			require.NoError(t, json.Unmarshal([]byte(l), &ev))
			got = append(got, fmt.Sprintf("%d %s %d/%d", ev.Rev, ev.Key, ev.Index, ev.Count))
		}
		return got
	}
	r := res.Revision
	assert.Equal(t, []string{fmt.Sprintf("%d t1 1/3", r), fmt.Sprintf("%d t2 2/3", r), fmt.Sprintf("%d next 0/0", next.ModRev)}, watchFromIndex("1"))
	assert.Equal(t, []string{fmt.Sprintf("%d t0 0/3", r), fmt.Sprintf("%d t1 1/3", r), fmt.Sprintf("%d t2 2/3", r), fmt.Sprintf("%d next 0/0", next.ModRev)},
		watchFromIndex("0"), "--from-index 0: none of the revision was printed")

	u := cli(t, nil, "", "watch", "--from-index", "1", "--server", srv.URL)
	assert.Equal(t, exitUsage, u.code, u.stderr)
}

// Issue #16: `ctxd watch --server A,B` (two instances on one etcd prefix)
// follows A; when A is killed it resumes on B, and its output is every
// change once, in order; the writes go on through B with the same
// --server list. The negative control, a watch given A alone, stays
// behind.
func TestWatchMovesToAnotherInstance(t *testing.T) {
	t.Parallel()
	endpoint, prefix := etcdkit.Shared(t).Endpoint, etcdkit.Prefix(t.TempDir())
	env := append(testEnv(), "CTXD_STORE_BACKEND=etcd", "CTXD_ETCD_ENDPOINTS="+endpoint, "CTXD_ETCD_PREFIX="+prefix)
	a := testkit.StartServe(t, bin, t.TempDir(), testkit.ServeOptions{Env: env})
	b := testkit.StartServe(t, bin, t.TempDir(), testkit.ServeOptions{Env: env})
	servers := a.URL + "," + b.URL

	watch := func(server string) *testkit.SyncBuffer {
		cmd := exec.Command(bin, "watch", "-o", "json", "--from-rev", "0", "--server", server)
		cmd.Env = testEnv()
		var out testkit.SyncBuffer
		cmd.Stdout = &out
		require.NoError(t, cmd.Start())
		t.Cleanup(func() { _ = cmd.Process.Kill(); _ = cmd.Wait() })
		return &out
	}
	both, aOnly := watch(servers), watch(a.URL)
	put := func(i int) {
		t.Helper()
		cliOK(t, nil, "", "put", fmt.Sprintf("k%d", i), strconv.Itoa(i), "--server", servers)
	}
	for i := range 5 {
		put(i)
	}
	testkit.Eventually(t, func() bool { n, _ := printed(both); m, _ := printed(aOnly); return n == 5 && m == 5 }, "both watches printed the first 5 changes")
	a.Signal(syscall.SIGKILL)
	a.Wait(10 * time.Second)
	for i := 5; i < 10; i++ {
		put(i)
	}
	testkit.Eventually(t, func() bool { n, _ := printed(both); return n >= 10 }, "the watch of both instances printed the changes made after A died")
	lines, err := parseWatch(both.String())
	require.NoError(t, err)
	var got []string
	for _, l := range lines {
		got = append(got, l.Key)
	}
	assert.Equal(t, []string{"k0", "k1", "k2", "k3", "k4", "k5", "k6", "k7", "k8", "k9"}, got, "every change once, in order")
	n, _ := printed(aOnly)
	assert.Equal(t, 5, n, "negative control: the watch of A alone has nothing after A died")
}
