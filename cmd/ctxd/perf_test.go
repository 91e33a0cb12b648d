package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/framework0/ctxd/auth"
	"github.com/framework0/ctxd/internal/testkit"
)

// TestPerfQuick runs `ctxd perf --quick`, with windows and sizes cut down
// further to keep `make test` short, and checks that report.json has every
// field perf/REPORT.md documents, non-zero unless documented "may be 0";
// that report.html is there and self-contained; that the CPU profile is
// written whole; and that `ctxd perf compare` of the report with itself
// finds nothing worse.
func TestPerfQuick(t *testing.T) {
	out, profDir := t.TempDir(), t.TempDir()
	prof := filepath.Join(profDir, "cpu.pprof")
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	// Every scenario, named, and the comparison with the bare net/http
	// handler (in process; the etcd peer has its own test).
	scenarios := []string{"write-latency", "write-throughput", "read-latency", "read-throughput", "mixed", "cas-contention", "fanout", "disk-growth", "snapshot", "peers"}
	cmd := exec.CommandContext(ctx, bin, append(append([]string{"perf"}, scenarios...), "--quick", "--out", out,
		"--compare", "nethttp", "--compare-clients", "4",
		"--duration", "150ms", "--warmup", "30ms", "--clients", "1,4",
		"--read-keys", "300", "--mixed-clients", "4", "--cas-clients", "4",
		"--fanout-subscribers", "100", "--fanout-socketio-subscribers", "20", "--fanout-rate", "200", "--fanout-writers", "4",
		"--disk-keys", "1000", "--disk-versions", "1,3", "--snapshot-keys", "200,500", "--data-parent", t.TempDir(), "--cpuprofile", prof)...)
	cmd.Env = testEnv()
	output, err := cmd.CombinedOutput()
	require.NoError(t, err, "ctxd perf --quick:\n%s", output)
	// 100 /v1/watch subscribers and 1,000 keys: the least a growth per
	// 1,000 subscribers and per 10,000 keys is scaled from; 20 Socket.IO
	// subscribers are too few, and say so.
	for _, want := range []string{"write-throughput/distinct/c=4", "fanout/subs=100/rate=200", "fanout/socketio/subs=20/rate=200", "DISK-GROWTH/KEYS=1000", "snapshot/keys=500",
		"PEERS", "peers/get/c=4", "per 1,000 subscribers", "per 10,000 keys", "not measurable: 20 subscribers, too few to scale to 1,000", "TARGET", "report.json"} {
		require.Contains(t, string(output), want)
	}
	require.NotContains(t, string(output), "ERRORS in this run")
	st, err := os.Stat(prof)
	require.NoError(t, err, "the CPU profile is written")
	require.NotZero(t, st.Size())
	entries, err := os.ReadDir(profDir)
	require.NoError(t, err)
	require.Len(t, entries, 1, "no temp file is left beside the CPU profile")

	reports, err := filepath.Glob(filepath.Join(out, "*", "report.json"))
	require.NoError(t, err)
	require.Len(t, reports, 1)
	raw, err := os.ReadFile(reports[0])
	require.NoError(t, err)
	var doc map[string]any
	require.NoError(t, json.Unmarshal(raw, &doc))

	fields := documentedFields(t, filepath.Join("..", "..", "perf", "REPORT.md"))
	require.Greater(t, len(fields), 100, "REPORT.md documents the fields")
	for _, f := range fields {
		if f.preload {
			continue // TestPerfPreload
		}
		values := lookupField(doc, f.path)
		require.NotEmpty(t, values, "documented field %s is missing from report.json", f.path)
		if f.mayBeZero {
			continue
		}
		for _, v := range values {
			require.False(t, isZero(v), "documented field %s is zero (%v)", f.path, v)
		}
	}
	require.EqualValues(t, 0, doc["errors"])
	require.NotContains(t, doc, "at_scale", "no at-scale half without --preload")
	require.Equal(t, "in-process", lookupField(doc, "target.mode")[0])
	// The servers of disk-growth and fanout ran alone in a process of
	// their own: the memory is theirs.
	for _, p := range append(lookupField(doc, "disk_growth[].memory.process"), lookupField(doc, "fanout[].memory.process")...) {
		require.Equal(t, "own", p)
	}
	for _, f := range []string{"memory.heap_bytes_per_1k_subscribers", "memory.rss_bytes_per_1k_subscribers", "fanout[].memory.after.heap_bytes", "disk_growth[].memory.after.rss_bytes"} {
		for _, v := range lookupField(doc, f) {
			require.Positive(t, v, f)
		}
	}

	page, err := os.ReadFile(filepath.Join(filepath.Dir(reports[0]), "report.html"))
	require.NoError(t, err)
	html := string(page)
	require.Contains(t, html, "<svg")
	require.NotContains(t, html, "<script")
	require.NotRegexp(t, `(src|href)=["']?(https?:)?//`, html, "report.html fetches nothing")

	cmp := exec.CommandContext(ctx, bin, "perf", "compare", reports[0], filepath.Dir(reports[0]), "--fail-on-worse")
	cmp.Env = testEnv()
	cmpOut, err := cmp.CombinedOutput()
	require.NoError(t, err, "perf compare:\n%s", cmpOut)
	require.Contains(t, string(cmpOut), " 0 worse, 0 better,")
}

// TestPerfPreload runs `ctxd perf --preload 20MiB` on a few scenarios with
// short windows: report.json has every at_scale field REPORT.md documents,
// non-zero unless "may be 0"; each run on the fresh database has its twin
// on the large one; the crash restart replayed exactly the writes
// acknowledged before the kill; the at-scale targets were measured; the
// printed table has the side-by-side section; no data folder is left.
func TestPerfPreload(t *testing.T) {
	out, parent := t.TempDir(), t.TempDir()
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, bin, "perf", "write-latency", "write-throughput", "read-throughput", "--quick", "--preload", "20MiB",
		"--out", out, "--duration", "150ms", "--warmup", "30ms", "--clients", "4", "--read-ops", "get", "--read-keys", "300",
		"--data-parent", parent)
	cmd.Env = testEnv()
	output, err := cmd.CombinedOutput()
	require.NoError(t, err, "ctxd perf --preload:\n%s", output)
	for _, want := range []string{"AT SCALE: FRESH VS", "committer batches of", "open to /readyz", "crash restart", "at scale (", "report.json"} {
		require.Contains(t, string(output), want)
	}
	reports, err := filepath.Glob(filepath.Join(out, "*", "report.json"))
	require.NoError(t, err)
	require.Len(t, reports, 1)
	raw, err := os.ReadFile(reports[0])
	require.NoError(t, err)
	var doc map[string]any
	require.NoError(t, json.Unmarshal(raw, &doc))
	require.EqualValues(t, 0, doc["errors"])

	n := 0
	for _, f := range documentedFields(t, filepath.Join("..", "..", "perf", "REPORT.md")) {
		if !f.preload {
			continue
		}
		n++
		values := lookupField(doc, f.path)
		require.NotEmpty(t, values, "documented field %s is missing from report.json", f.path)
		for _, v := range values {
			require.True(t, f.mayBeZero || !isZero(v), "documented field %s is zero (%v)", f.path, v)
		}
	}
	require.Greater(t, n, 15, "REPORT.md documents the at_scale fields")
	require.EqualValues(t, 20<<20, lookupField(doc, "settings.preload_bytes")[0])
	require.GreaterOrEqual(t, lookupField(doc, "at_scale.file_bytes")[0], float64(20<<20))
	require.Equal(t, lookupField(doc, "at_scale.crash.writes")[0], lookupField(doc, "at_scale.crash.replayed_changes")[0],
		"the restart after the kill replayed every write acknowledged before it, from the log")

	names := map[string]string{}
	for _, r := range lookupField(doc, "runs[]") {
		m := r.(map[string]any)
		names[m["name"].(string)] = m["database"].(string)
	}
	fresh := 0
	for name, db := range names {
		if db == "fresh" {
			fresh++
			require.Equal(t, "large", names["large/"+name], "run %s has its twin on the large database", name)
		}
	}
	require.Equal(t, len(names), 2*fresh)
	measured := 0
	for _, tc := range lookupField(doc, "targets[]") {
		m := tc.(map[string]any)
		if strings.HasPrefix(m["name"].(string), "at scale") && m["met"] != "n/a" {
			measured++
		}
	}
	require.GreaterOrEqual(t, measured, 4, "open, memory, crash restart and the 1-client put were checked")

	page, err := os.ReadFile(filepath.Join(filepath.Dir(reports[0]), "report.html"))
	require.NoError(t, err)
	require.Contains(t, string(page), "At scale: a fresh database and one of")
	require.Contains(t, string(page), "large database, after a crash")

	left, err := os.ReadDir(parent)
	require.NoError(t, err)
	require.Empty(t, left, "the data folders are removed")
}

// documentedField is a row of a field table of REPORT.md.
type documentedField struct {
	path      string // e.g. runs[].latency.p50, runs[op=mixed].reads.p99
	mayBeZero bool
	preload   bool // only in a run with --preload
}

var fieldRow = regexp.MustCompile("^\\| `([a-z_0-9.\\[\\]=]+)` \\|(.*)\\|$")

func documentedFields(t *testing.T, path string) []documentedField {
	t.Helper()
	f, err := os.Open(path)
	require.NoError(t, err)
	defer f.Close()
	var out []documentedField
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		m := fieldRow.FindStringSubmatch(sc.Text())
		if m == nil {
			continue
		}
		out = append(out, documentedField{path: m[1], mayBeZero: strings.Contains(m[2], "may be 0"), preload: strings.Contains(m[2], "with --preload")})
	}
	require.NoError(t, sc.Err())
	return out
}

// lookupField returns every value at path: "a.b" walks objects, "a[]"
// every element of a list, "a[k=v]" the elements whose k is v.
func lookupField(doc any, path string) []any {
	values := []any{doc}
	for _, seg := range strings.Split(path, ".") {
		name, filter, isList := seg, "", false
		if i := strings.Index(seg, "["); i >= 0 {
			name, filter, isList = seg[:i], strings.TrimSuffix(seg[i+1:], "]"), true
		}
		var next []any
		for _, v := range values {
			obj, ok := v.(map[string]any)
			if !ok {
				continue
			}
			child, ok := obj[name]
			if !ok {
				continue
			}
			if !isList {
				next = append(next, child)
				continue
			}
			list, _ := child.([]any)
			for _, el := range list {
				if k, want, ok := strings.Cut(filter, "="); ok {
					if m, _ := el.(map[string]any); m == nil || m[k] != want {
						continue
					}
				}
				next = append(next, el)
			}
		}
		values = next
	}
	return values
}

func isZero(v any) bool {
	switch x := v.(type) {
	case nil:
		return true
	case float64:
		return x == 0
	case string:
		return x == ""
	case bool:
		return !x
	case []any:
		return len(x) == 0
	case map[string]any:
		return len(x) == 0
	}
	return false
}

// etcdPeer is the ctxd-etcd-peer command, built beside bin on first use
// (it compiles etcd, so only the tests that need it pay for it).
var etcdPeer = sync.OnceValues(func() (string, error) {
	return testkit.BuildCommand(filepath.Dir(bin), "ctxd-etcd-peer", "cmd/ctxd-etcd-peer")
})

// TestPerfCompareEtcd runs `ctxd perf fanout peers --compare etcd` with short
// windows (long enough for a durable put on a busy machine to start in
// each): the peer command is found beside the ctxd binary and starts a
// real embedded etcd; the report holds ctxd's, etcd's and the bare
// handler's numbers side by side, the ratios and the targets checked on
// them; the fan-out ran on ctxd's feed and on etcd's watch, every change
// reaching every subscriber of both once; the etcd data folder was beside
// ctxd's and is gone.
func TestPerfCompareEtcd(t *testing.T) {
	if _, err := etcdPeer(); err != nil {
		t.Fatalf("build the etcd peer: %v", err)
	}
	out, parent := t.TempDir(), t.TempDir()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, bin, "perf", "fanout", "peers", "--compare", "etcd", "--out", out, "--data-parent", parent,
		"--duration", "150ms", "--warmup", "30ms", "--rounds", "1", "--read-keys", "200",
		"--fanout-subscribers", "20", "--fanout-rate", "200", "--fanout-socketio-subscribers", "0")
	cmd.Env = testEnv()
	output, err := cmd.CombinedOutput()
	require.NoError(t, err, "ctxd perf --compare etcd:\n%s", output)
	require.Contains(t, string(output), "PEERS")
	require.Contains(t, string(output), "vs etcd: durable put, 1 client: p50")
	require.Contains(t, string(output), "fanout/subs=20/rate=200 vs etcd's feed: ack→arrival p99")

	reports, err := filepath.Glob(filepath.Join(out, "*", "report.json"))
	require.NoError(t, err)
	require.Len(t, reports, 1)
	raw, err := os.ReadFile(reports[0])
	require.NoError(t, err)
	var r struct {
		Errors   int64
		Settings struct{ Scenarios []string }
		Runs     []json.RawMessage
		Fanout   []struct {
			Name, Protocol, Peer                 string
			Subscribers, Rate                    int
			Writes, Deliveries, Expected, Missed int64
			Duplicates, Frames, Errors           int64
			AckToArrival                         struct{ P50, P99 float64 } `json:"ack_to_arrival"`
		}
		Peers []struct {
			Name, Version, Process string
			DataDir                string `json:"data_dir"`
			Durable                bool
		}
		Comparisons []struct {
			Name    string
			Results []struct {
				Peer      string
				OpsPerSec float64 `json:"ops_per_sec"`
				P50, P99  float64
				Rounds    []json.RawMessage
				Errors    int64
			}
			Ratios []struct {
				Peer      string
				OpsPerSec float64 `json:"ops_per_sec"`
				P50, P99  float64
			}
		}
		Targets []struct{ Name, Got, Met string }
	}
	require.NoError(t, json.Unmarshal(raw, &r))
	require.Zero(t, r.Errors)
	require.Equal(t, []string{"fanout", "peers"}, r.Settings.Scenarios, "the scenarios named")
	require.Empty(t, r.Runs)

	// The fan-out on ctxd's feed, then on etcd's watch: the same writes,
	// every one at every subscriber once.
	require.Len(t, r.Fanout, 2)
	for i, f := range r.Fanout {
		require.Equal(t, []string{"fanout/subs=20/rate=200", "fanout/etcd/subs=20/rate=200"}[i], f.Name)
		require.Equal(t, []string{"watch", "peer-watch"}[i], f.Protocol)
		require.Equal(t, []string{"", "etcd"}[i], f.Peer)
		require.Equal(t, 20, f.Subscribers, f.Name)
		require.Equal(t, 200, f.Rate, f.Name)
		require.EqualValues(t, 30, f.Writes, f.Name) // 200/s for 150ms
		require.Equal(t, f.Writes*20, f.Expected, f.Name)
		require.Equal(t, f.Expected, f.Deliveries, f.Name)
		require.Zero(t, f.Missed+f.Duplicates+f.Errors, f.Name)
		require.Positive(t, f.Frames, f.Name)
		require.Positive(t, f.AckToArrival.P99, f.Name)
	}

	require.Len(t, r.Peers, 3)
	require.Equal(t, "ctxd", r.Peers[0].Name)
	etcd := r.Peers[1]
	require.Equal(t, "etcd", etcd.Name)
	require.True(t, etcd.Durable)
	require.Equal(t, "own", etcd.Process)
	require.True(t, strings.HasPrefix(etcd.Version, "3."), etcd.Version)
	require.Equal(t, parent, filepath.Dir(etcd.DataDir), "etcd's data is beside ctxd's")
	require.Equal(t, "nethttp", r.Peers[2].Name)

	require.Len(t, r.Comparisons, 5)
	for _, c := range r.Comparisons {
		require.Len(t, c.Results, 3, c.Name)
		for i, x := range c.Results {
			require.Equal(t, r.Peers[i].Name, x.Peer, c.Name)
			require.Positive(t, x.OpsPerSec, "%s %s", c.Name, x.Peer)
			require.Positive(t, x.P50, "%s %s", c.Name, x.Peer)
			require.Len(t, x.Rounds, 1)
			require.Zero(t, x.Errors)
		}
		require.Len(t, c.Ratios, 2, c.Name)
		for i, q := range c.Ratios {
			require.Equal(t, c.Results[i+1].Peer, q.Peer)
			require.InDelta(t, c.Results[0].OpsPerSec/c.Results[i+1].OpsPerSec, q.OpsPerSec, 0.002, "%s %s", c.Name, q.Peer)
			require.InDelta(t, c.Results[0].P99/c.Results[i+1].P99, q.P99, 0.002, "%s %s", c.Name, q.Peer)
		}
	}
	checked := 0
	for _, tc := range r.Targets {
		if strings.HasPrefix(tc.Name, "vs ") {
			require.Contains(t, []string{"yes", "no"}, tc.Met, "%s: measured (%s)", tc.Name, tc.Got)
			checked++
		}
	}
	require.Equal(t, 5, checked)

	left, err := os.ReadDir(parent)
	require.NoError(t, err)
	require.Empty(t, left, "every data folder is removed")
	log, err := os.ReadFile(filepath.Join(filepath.Dir(reports[0]), "peers.log"))
	require.NoError(t, err)
	require.NotEmpty(t, log, "etcd's log")

	// Without the peer command: a clear usage error.
	missing := cli(t, nil, "", "perf", "--compare", "etcd", "--etcd-peer", filepath.Join(parent, "nope"), "--out", out)
	require.Equal(t, 2, missing.code)
	require.Contains(t, missing.stderr, "--etcd-peer")
}

// TestPerfCompareAServerThatAnsweredNothing: `ctxd perf peers` against a
// real ctxd whose token may read only another namespace (every request
// of the comparison refused, 403) prints "no op completed" for ctxd, no 0 ops/s
// or 0 µs, and writes no metric of ctxd's numbers; `ctxd perf compare
// --fail-on-worse` says "not measured" for each of them against a run
// that measured them, either way round, and gives none a verdict: the
// run that answered nothing compared with itself passes, and against the
// measured one only its errors are worse. Its ops/s was a metric of 0,
// WORSE against the measured run.
func TestPerfCompareAServerThatAnsweredNothing(t *testing.T) {
	dir := t.TempDir()
	ops, elsewhere := auth.NewSecret(), auth.NewSecret()
	tokens := writeFile(t, filepath.Join(dir, "tokens.yaml"), "tokens:\n"+testkit.TokenEntry("ops", ops, "    roles: [admin]\n")+
		testkit.TokenEntry("elsewhere", elsewhere, "    roles: [read]\n    namespaces: [elsewhere]\n"))
	srv := startServer(t, filepath.Join(dir, "data"), "--config",
		writeFile(t, filepath.Join(dir, "ctxd.yaml"), "auth:\n  mode: on\n  tokens_file: "+tokens+"\n"))
	run := func(token string) (string, result) {
		out := t.TempDir()
		r := cli(t, nil, "", "perf", "peers", "--compare", "nethttp", "--target", srv.URL, "--token", token, "--out", out,
			"--duration", "80ms", "--warmup", "20ms", "--rounds", "1", "--compare-clients", "2", "--read-keys", "50")
		reports, err := filepath.Glob(filepath.Join(out, "*", "report.json"))
		require.NoError(t, err)
		require.Len(t, reports, 1, "ctxd perf: %s", r.stderr)
		return reports[0], r
	}
	measured, r := run(ops)
	require.Equal(t, 0, r.code, "ctxd perf: %s", r.stderr)
	nothing, r := run(elsewhere)
	require.Equal(t, 1, r.code, "a run with errors exits 1: %s", r.stderr)
	require.Regexp(t, `(?m)^ +peers/get/c=2 +ctxd +no op completed +[1-9][0-9,]* *$`, r.stdout)
	require.NotRegexp(t, `(?m)^ *(peers/\S+ +)?ctxd .*\b0 µs`, r.stdout)

	var doc struct {
		Metrics []struct {
			Name  string
			Unit  string
			Value float64
		}
	}
	raw, err := os.ReadFile(nothing)
	require.NoError(t, err)
	require.NoError(t, json.Unmarshal(raw, &doc))
	require.NotEmpty(t, doc.Metrics)
	for _, m := range doc.Metrics {
		require.NotRegexp(t, ` ctxd[ /]`, m.Name, "ctxd measured nothing: no metric")
		if m.Unit != "" {
			require.Positive(t, m.Value, m.Name)
		}
	}

	ctxdLines := regexp.MustCompile(`(?m)^peers/\S+ ctxd[ /].*$`)
	compare := func(old, new string) result {
		r := cli(t, nil, "", "perf", "compare", old, new, "--fail-on-worse")
		lines := ctxdLines.FindAllString(r.stdout, -1)
		require.Len(t, lines, 30, "ctxd's ops/s, p50, p99 and its three ratios to nethttp in five runs:\n%s", r.stdout)
		for _, line := range lines {
			require.Regexp(t, `^\S+ \S+ \S+ +.+ +not measured( +\d+ → \d+)?$`, line)
			require.Contains(t, line, "not measured  ", "a side not measured")
			require.NotContains(t, line, "%", "no change")
		}
		require.Contains(t, r.stdout, ", 30 not measured\n")
		return r
	}
	r = compare(nothing, nothing)
	require.Equal(t, 0, r.code, "nothing worse: %s", r.stderr)
	require.Contains(t, r.stdout, " 0 worse, 0 better,")
	r = compare(measured, nothing)
	require.Equal(t, 1, r.code)
	require.Regexp(t, `(?m)^errors +0 +[1-9][0-9,]* +WORSE`, r.stdout, "the refused requests are the errors metric's")
	compare(nothing, measured)
}

// Runs started in the same second get folders of their own: the later
// report was written over the earlier one.
func TestResultsFoldersOfRunsInTheSameSecond(t *testing.T) {
	parent := filepath.Join(t.TempDir(), "results")
	at := time.Date(2026, 12, 6, 7, 25, 28, 0, time.UTC)
	var dirs []string
	for range 3 {
		dir, err := newResultsFolder(parent, at)
		require.NoError(t, err)
		dirs = append(dirs, filepath.Base(dir))
	}
	require.Equal(t, []string{"20261206T072528Z", "20261206T072528Z-2", "20261206T072528Z-3"}, dirs)
}

// --target takes host:port, as --server does: it was refused with url's
// parse error ("first path segment in URL cannot contain colon").
func TestPerfTargetTakesHostPort(t *testing.T) {
	t.Parallel()
	out := t.TempDir()
	r := cli(t, nil, "", "perf", "--target", "127.0.0.1:1", "--out", out, "write-latency")
	require.Equal(t, 1, r.code, r.stderr)
	require.Contains(t, r.stderr, "server at http://127.0.0.1:1: connect")
	require.Empty(t, testkit.DirNames(t, out), "a run that measured nothing leaves no empty results folder")
}

// --more-targets naming the target, or an instance twice, is refused:
// read-instances measured one server as two.
func TestPerfMoreTargetsGivenTwice(t *testing.T) {
	t.Parallel()
	out := t.TempDir()
	r := cli(t, nil, "", "perf", "--target", "127.0.0.1:1", "--more-targets", "http://127.0.0.1:1", "--out", out, "read-instances")
	require.Equal(t, 2, r.code, r.stderr)
	require.Contains(t, r.stderr, "--more-targets: http://127.0.0.1:1 is given twice")
	r = cli(t, nil, "", "perf", "--target", "127.0.0.1:1", "--more-targets", "127.0.0.1:2,127.0.0.1:2", "--out", out, "read-instances")
	require.Equal(t, 2, r.code, r.stderr)
}

// --etcd-peer without --compare etcd is refused, as --etcd-endpoints is:
// it ran the scenarios without the comparison it was given for.
func TestPerfEtcdPeerWithoutCompareEtcd(t *testing.T) {
	t.Parallel()
	out := t.TempDir()
	r := cli(t, nil, "", "perf", "--etcd-peer", "/bin/true", "--target", "127.0.0.1:1", "--out", out, "write-latency")
	require.Equal(t, 2, r.code, r.stderr)
	require.Contains(t, r.stderr, "--etcd-peer")
	require.Contains(t, r.stderr, "--compare etcd")
}

// Ctrl-C stops a run: its reports are written, marked interrupted, and
// it exits 1 (an incomplete run, as a stopped dump), saying it was
// interrupted: it said "perf stopped early: context canceled".
func TestPerfInterrupted(t *testing.T) {
	t.Parallel()
	srv := startServer(t, filepath.Join(t.TempDir(), "data"))
	out := t.TempDir()
	cmd := exec.Command(bin, "perf", "write-latency", "--target", srv.URL, "--warmup", "0s", "--duration", "1m", "--out", out)
	cmd.Env = testEnv()
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	require.NoError(t, cmd.Start())
	t.Cleanup(func() { _ = cmd.Process.Kill() })
	done := make(chan struct{})
	go func() {
		_ = cmd.Wait()
		close(done)
	}()
	// Once a key is written, the request loop runs: stopped then, the
	// run has a report.
	testkit.Eventually(t, func() bool {
		r := cli(t, nil, "", "ls", "-n", "perf-write", "--server", srv.URL, "--limit", "1")
		return r.code == 0 && strings.Count(r.stdout, "\n") > 1
	}, "the run wrote no key")
	require.NoError(t, cmd.Process.Signal(os.Interrupt))
	select {
	case <-done:
	case <-time.After(testkit.Deadline):
		t.Fatal("Ctrl-C did not stop the run")
	}
	require.Equal(t, 1, cmd.ProcessState.ExitCode(), stderr.String())
	require.Contains(t, stdout.String(), "INTERRUPTED")
	require.Contains(t, stderr.String(), "perf interrupted (Ctrl-C or SIGTERM): the reports above hold what was measured before the stop")
	reports, err := filepath.Glob(filepath.Join(out, "*", "report.json"))
	require.NoError(t, err)
	require.Len(t, reports, 1)
	raw, err := os.ReadFile(reports[0])
	require.NoError(t, err)
	var doc struct{ Interrupted bool }
	require.NoError(t, json.Unmarshal(raw, &doc))
	require.True(t, doc.Interrupted)
}
