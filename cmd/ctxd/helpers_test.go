package main

import (
	"bytes"
	"context"
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
	r, err := runCLI(exec.Command(bin, args...), env, stdin)
	if err != nil {
		t.Fatalf("run ctxd %v: %v", args, err)
	}
	return r
}

// cliAsync is cli in the background: the result comes on the channel when
// the process exits (exit code -1 and the error as stderr when it could not
// run). One still running when the test ends is killed.
func cliAsync(t *testing.T, env []string, args ...string) <-chan result {
	ctx, cancel := context.WithCancel(context.Background())
	cmd := exec.CommandContext(ctx, bin, args...)
	out := make(chan result, 1)
	done := make(chan struct{})
	go func() {
		defer close(done)
		r, err := runCLI(cmd, env, "")
		if err != nil {
			r = result{stderr: err.Error(), code: -1}
		}
		out <- r
	}()
	t.Cleanup(func() {
		cancel()
		<-done
	})
	return out
}

// runCLI runs cmd (the binary) as cli does.
func runCLI(cmd *exec.Cmd, env []string, stdin string) (result, error) {
	cmd.Env = testEnv(env...)
	cmd.Stdin = strings.NewReader(stdin)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	err := cmd.Run()
	var ee *exec.ExitError
	if err != nil && !errors.As(err, &ee) {
		return result{}, err
	}
	return result{stdout: stdout.String(), stderr: stderr.String(), code: cmd.ProcessState.ExitCode()}, nil
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
