package main

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/framework0/ctxd/internal/testkit"
	"github.com/framework0/ctxd/internal/testkit/etcdkit"
)

// bin is the ctxd binary built once by TestMain.
var bin string

func TestMain(m *testing.M) {
	testkit.SmallLogSegments()
	dir, err := os.MkdirTemp("", "ctxd-cli-test-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	// The CLI remembers the instance of a --server list that answered in
	// the user's cache folder (preferred.go): the tests' is their own.
	// go build keeps its cache there too unless GOCACHE says where: pin
	// it first, or every run compiles ctxd and etcd from nothing.
	gocache, err := exec.Command("go", "env", "GOCACHE").Output()
	if err == nil {
		err = os.Setenv("GOCACHE", strings.TrimSpace(string(gocache)))
	}
	if err == nil {
		err = os.Setenv("XDG_CACHE_HOME", filepath.Join(dir, "cache"))
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	if bin, err = testkit.BuildCtxd(dir, "ctxd"); err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.RemoveAll(dir)
		os.Exit(1)
	}
	testkit.VerifyNoLeaks(m, func() {
		etcdkit.Stop()
		os.RemoveAll(dir)
	})
}

// testEnv is the environment of every process a test starts
// (testkit.CleanEnv).
func testEnv(extra ...string) []string { return testkit.CleanEnv(extra...) }

// serverProcess is a `ctxd serve` child process.
type serverProcess = testkit.Process

// startServer runs `ctxd serve --addr 127.0.0.1:0 --data dataDir args...`
// and waits for its "listening" log line, which gives the port.
func startServer(t *testing.T, dataDir string, args ...string) *serverProcess {
	t.Helper()
	return testkit.StartServe(t, bin, dataDir, testkit.ServeOptions{Args: args})
}

// checkedURL is a URL of the server p that checks every exchange against
// the OpenAPI document (testkit.OpenAPI.Proxy): a CLI command pointed at
// it fails the test when it uses a route, parameter, field or status that
// httpapi/openapi.yaml does not document.
func checkedURL(t *testing.T, p *serverProcess) string {
	t.Helper()
	return testkit.NewOpenAPI(t).Proxy(t, p.URL)
}

// result is the outcome of one CLI run.
type result struct {
	stdout, stderr string
	code           int
}

// cliOK is cli for a run that must exit 0: it returns stdout.
func cliOK(t *testing.T, env []string, stdin string, args ...string) string {
	t.Helper()
	r := cli(t, env, stdin, args...)
	require.Equal(t, 0, r.code, "ctxd %v: stderr %s", args, r.stderr)
	return r.stdout
}

// fromJSON decodes out, the JSON a command printed, into a T.
func fromJSON[T any](t *testing.T, out string) T {
	t.Helper()
	var v T
	require.NoError(t, json.Unmarshal([]byte(out), &v), out)
	return v
}

// cli runs the binary with args, env added to the test environment and
// stdin as standard input, and returns what it printed and its exit code.
func cli(t *testing.T, env []string, stdin string, args ...string) result {
	t.Helper()
	cmd := exec.Command(bin, args...)
	cmd.Env = testEnv(env...)
	cmd.Stdin = strings.NewReader(stdin)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	err := cmd.Run()
	var ee *exec.ExitError
	if err != nil && !errors.As(err, &ee) {
		t.Fatalf("run ctxd %v: %v", args, err)
	}
	return result{stdout: stdout.String(), stderr: stderr.String(), code: cmd.ProcessState.ExitCode()}
}

// repeat runs step(0), step(1), ... in a goroutine of wg until stop is
// closed or step returns false.
func repeat(wg *sync.WaitGroup, stop <-chan struct{}, step func(n int) bool) {
	wg.Go(func() {
		for n := 0; ; n++ {
			select {
			case <-stop:
				return
			default:
			}
			if !step(n) {
				return
			}
		}
	})
}
