package main

import (
	"bufio"
	"context"
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
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
	scenarios := []string{"write-latency", "write-throughput", "read-latency", "read-throughput", "mixed", "cas-contention", "fanout", "disk-growth", "snapshot"}
	cmd := exec.CommandContext(ctx, bin, append(append([]string{"perf"}, scenarios...), "--quick", "--out", out,
		"--compare", "nethttp", "--compare-clients", "4",
		"--duration", "150ms", "--warmup", "50ms", "--clients", "1,4",
		"--read-keys", "300", "--mixed-clients", "4", "--cas-clients", "4",
		"--fanout-subscribers", "20", "--fanout-socketio-subscribers", "20", "--fanout-rate", "200", "--fanout-writers", "4",
		"--disk-keys", "200", "--disk-versions", "1,3", "--snapshot-keys", "200,500", "--data-parent", t.TempDir(), "--cpuprofile", prof)...)
	cmd.Env = testEnv()
	output, err := cmd.CombinedOutput()
	require.NoError(t, err, "ctxd perf --quick:\n%s", output)
	for _, want := range []string{"write-throughput/distinct/c=4", "fanout/subs=20/rate=200", "fanout/socketio/subs=20/rate=200", "DISK-GROWTH/KEYS=200", "snapshot/keys=500",
		"PEERS", "peers/get/c=4", "per 1,000 subscribers", "per 10,000 keys", "TARGET", "report.json"} {
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

// documentedField is a row of a field table of REPORT.md.
type documentedField struct {
	path      string // e.g. runs[].latency.p50, runs[op=mixed].reads.p99
	mayBeZero bool
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
		out = append(out, documentedField{path: m[1], mayBeZero: strings.Contains(m[2], "may be 0")})
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
