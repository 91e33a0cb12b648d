package main

import (
	"bufio"
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/framework0/ctxd/internal/testkit"
)

// bin is the ctxd binary built once by TestMain.
var bin string

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "ctxd-cli-test-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	bin = filepath.Join(dir, "ctxd")
	build := exec.Command("go", "build", "-o", bin, "-ldflags", "-X main.version=test", ".")
	build.Stdout, build.Stderr = os.Stderr, os.Stderr
	if err := build.Run(); err != nil {
		fmt.Fprintln(os.Stderr, "build ctxd:", err)
		os.RemoveAll(dir)
		os.Exit(1)
	}
	testkit.VerifyNoLeaks(m, func() { os.RemoveAll(dir) })
}

// testEnv is the environment of every process a test starts: the test's
// own, without CTXD_* settings that would change what is tested, and with a
// known user for --who.
func testEnv(extra ...string) []string {
	var env []string
	for _, kv := range os.Environ() {
		if strings.HasPrefix(kv, "CTXD_") || strings.HasPrefix(kv, "USER=") {
			continue
		}
		env = append(env, kv)
	}
	return append(append(env, "USER=tester"), extra...)
}

// serverProcess is a `ctxd serve` child process.
type serverProcess struct {
	t      *testing.T
	cmd    *exec.Cmd
	addr   string // host:port it listens on
	url    string
	stderr *testkit.SyncBuffer
	done   chan struct{} // closed when the process has exited
	err    error         // cmd.Wait's result, once done is closed
}

// startServer runs `ctxd serve --addr 127.0.0.1:0 --data dataDir args...`
// and waits for its "listening" log line, which gives the port.
func startServer(t *testing.T, dataDir string, args ...string) *serverProcess {
	t.Helper()
	args = append([]string{"serve", "--addr", "127.0.0.1:0", "--data", dataDir}, args...)
	cmd := exec.Command(bin, args...)
	cmd.Env = testEnv()
	pipe, err := cmd.StderrPipe()
	require.NoError(t, err)
	var stdout testkit.SyncBuffer
	cmd.Stdout = &stdout
	require.NoError(t, cmd.Start())

	s := &serverProcess{t: t, cmd: cmd, stderr: &testkit.SyncBuffer{}, done: make(chan struct{})}
	listening := make(chan string, 1)
	go func() {
		sc := bufio.NewScanner(pipe)
		sc.Buffer(make([]byte, 64<<10), 1<<20)
		for sc.Scan() {
			line := sc.Text()
			s.stderr.Write([]byte(line + "\n"))
			var ev struct {
				Message string `json:"message"`
				Addr    string `json:"addr"`
			}
			if json.Unmarshal([]byte(line), &ev) == nil && ev.Message == "listening" {
				select {
				case listening <- ev.Addr:
				default:
				}
			}
		}
		_, _ = io.Copy(io.Discard, pipe)
		s.err = cmd.Wait()
		if stdout.String() != "" {
			s.err = errors.Join(s.err, fmt.Errorf("serve wrote to stdout: %q", stdout.String()))
		}
		close(s.done)
	}()
	t.Cleanup(func() {
		select {
		case <-s.done:
		default:
			_ = cmd.Process.Kill()
			<-s.done
		}
		if t.Failed() {
			t.Logf("server %s stderr:\n%s", s.addr, s.stderr.String())
		}
	})

	select {
	case s.addr = <-listening:
	case <-s.done:
		t.Fatalf("ctxd serve exited before listening: %v\n%s", s.err, s.stderr.String())
	case <-time.After(10 * time.Second):
		t.Fatalf("ctxd serve did not log \"listening\" within 10s:\n%s", s.stderr.String())
	}
	require.NotEmpty(t, s.addr, "the listening line has no addr field")
	s.url = "http://" + s.addr
	return s
}

// signal sends sig to the server process.
func (s *serverProcess) signal(sig syscall.Signal) {
	s.t.Helper()
	require.NoError(s.t, s.cmd.Process.Signal(sig))
}

// wait waits for the process to exit and returns its exit code (-1 when it
// was killed by a signal).
func (s *serverProcess) wait(timeout time.Duration) int {
	s.t.Helper()
	select {
	case <-s.done:
	case <-time.After(timeout):
		s.t.Fatalf("ctxd serve did not exit within %v", timeout)
	}
	return s.cmd.ProcessState.ExitCode()
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
