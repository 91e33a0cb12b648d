package testkit

import (
	"bufio"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

// BuildCtxd compiles the ctxd command into dir/name, with the given build
// tags (none for the production binary), and returns its path. A test
// package's TestMain builds once and runs the binary as many times as it
// needs: the binary is what users run, so crash and power-loss tests kill
// it, not a goroutine.
func BuildCtxd(dir, name string, tags ...string) (string, error) {
	return BuildCommand(dir, name, "cmd/ctxd", tags...)
}

// BuildCommand compiles the command in cmdDir, a folder of the repository
// such as "cmd/ctxd" or "cmd/ctxd-etcd-peer" (a module of its own is built
// with its own go.mod), into dir/name, stamped with version "test", and
// returns its path. Without DWARF (-w): the link is 0.6 s of CPU shorter,
// and a crash's stack trace, all a test reads, does not need it.
func BuildCommand(dir, name, cmdDir string, tags ...string) (string, error) {
	out, err := filepath.Abs(filepath.Join(dir, name))
	if err != nil {
		return "", err
	}
	args := []string{"build", "-o", out, "-ldflags", "-w -X main.version=test"}
	if len(tags) > 0 {
		args = append(args, "-tags", strings.Join(tags, ","))
	}
	build := exec.Command("go", append(args, ".")...)
	build.Dir = filepath.Join(repoRoot(), filepath.FromSlash(cmdDir))
	build.Stdout, build.Stderr = os.Stderr, os.Stderr
	if err := build.Run(); err != nil {
		return "", fmt.Errorf("build %s (tags %v): %w", cmdDir, tags, err)
	}
	return out, nil
}

// repoRoot is the repository's folder: two up from this file's.
func repoRoot() string {
	_, file, _, _ := runtime.Caller(0)
	return filepath.Join(filepath.Dir(file), "..", "..")
}

// CleanEnv is the environment of every process a test starts: the test's
// own without CTXD_* settings that would change what is tested, with a known
// user for --who, and extra appended.
func CleanEnv(extra ...string) []string {
	var env []string
	for _, kv := range os.Environ() {
		if strings.HasPrefix(kv, "CTXD_") || strings.HasPrefix(kv, "USER=") {
			continue
		}
		env = append(env, kv)
	}
	return append(append(env, "USER=tester"), extra...)
}

// Process is a running `ctxd serve` child process.
type Process struct {
	t      testing.TB
	Cmd    *exec.Cmd
	Addr   string      // host:port it listens on
	URL    string      // http://Addr
	Stderr *SyncBuffer // its log, line by line
	done   chan struct{}
	err    error // cmd.Wait's result, once done is closed
}

// ServeOptions are what StartServe needs besides the data folder.
type ServeOptions struct {
	Env  []string // the whole environment; nil: CleanEnv()
	Args []string // extra flags after --data
	// Addr is the listen address; empty: 127.0.0.1:0 (the log line gives
	// the port).
	Addr string
	// SysProcAttr, when set, is the process's (a Credential runs it as
	// another user, as systemd's User= does).
	SysProcAttr *syscall.SysProcAttr
	// Dir is the folder it runs in (relative paths of its flags and
	// variables are read from there); empty: the test's.
	Dir string
}

// StartServe runs `bin serve --addr ADDR --data dataDir args...` and waits
// for its "listening" log line. The process is killed when the test ends
// if it still runs; its log is printed if the test failed.
func StartServe(t testing.TB, bin, dataDir string, o ServeOptions) *Process {
	t.Helper()
	p, err := StartServeErr(t, bin, dataDir, o)
	require.NoError(t, err)
	return p
}

// StartServeErr is StartServe for a server that may refuse to start: the
// error says why and holds its log.
func StartServeErr(t testing.TB, bin, dataDir string, o ServeOptions) (*Process, error) {
	t.Helper()
	addr := o.Addr
	if addr == "" {
		addr = "127.0.0.1:0"
	}
	cmd := exec.Command(bin, append([]string{"serve", "--addr", addr, "--data", dataDir}, o.Args...)...)
	cmd.Env = o.Env
	if cmd.Env == nil {
		cmd.Env = CleanEnv()
	}
	cmd.SysProcAttr, cmd.Dir = o.SysProcAttr, o.Dir
	pipe, err := cmd.StderrPipe()
	if err != nil {
		return nil, err
	}
	var stdout SyncBuffer
	cmd.Stdout = &stdout
	if err := cmd.Start(); err != nil {
		return nil, err
	}

	p := &Process{t: t, Cmd: cmd, Stderr: &SyncBuffer{}, done: make(chan struct{})}
	listening := make(chan string, 1)
	go func() {
		sc := bufio.NewScanner(pipe)
		sc.Buffer(make([]byte, 64<<10), 1<<20)
		for sc.Scan() {
			line := sc.Text()
			p.Stderr.Write([]byte(line + "\n"))
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
		p.err = cmd.Wait()
		if stdout.String() != "" {
			p.err = errors.Join(p.err, fmt.Errorf("serve wrote to stdout: %q", stdout.String()))
		}
		close(p.done)
	}()
	t.Cleanup(func() {
		p.Kill()
		LogOnFailure(t, "server "+p.Addr+" stderr", p.Stderr.String())
	})

	select {
	case p.Addr = <-listening:
	case <-p.done:
		return nil, fmt.Errorf("ctxd serve exited before listening: %v\n%s", p.err, p.Stderr.String())
	case <-time.After(20 * time.Second):
		p.Kill()
		return nil, fmt.Errorf("ctxd serve did not log \"listening\" within 20s:\n%s", p.Stderr.String())
	}
	if p.Addr == "" {
		return nil, errors.New("the listening line has no addr field")
	}
	p.URL = "http://" + p.Addr
	return p, nil
}

// Signal sends sig to the process.
func (p *Process) Signal(sig syscall.Signal) {
	p.t.Helper()
	require.NoError(p.t, p.Cmd.Process.Signal(sig))
}

// Kill sends SIGKILL (when the process still runs) and waits for it to exit.
func (p *Process) Kill() {
	select {
	case <-p.done:
	default:
		_ = p.Cmd.Process.Kill()
		<-p.done
	}
}

// Quit sends SIGQUIT, on which a Go program writes the stack of every
// goroutine to stderr and exits, and waits up to timeout for it to exit:
// what a test that found the server stuck leaves in its log (Stderr,
// printed when the test fails). It does nothing when the process has
// exited.
func (p *Process) Quit(timeout time.Duration) {
	select {
	case <-p.done:
		return
	default:
	}
	_ = p.Cmd.Process.Signal(syscall.SIGQUIT)
	select {
	case <-p.done:
	case <-time.After(timeout):
	}
}

// Done is closed when the process has exited.
func (p *Process) Done() <-chan struct{} { return p.done }

// Err is cmd.Wait's result (plus anything written to stdout, which serve
// must never do); call it after Done is closed.
func (p *Process) Err() error { return p.err }

// Wait waits for the process to exit and returns its exit code (-1 when it
// was killed by a signal).
func (p *Process) Wait(timeout time.Duration) int {
	p.t.Helper()
	select {
	case <-p.done:
	case <-time.After(timeout):
		p.t.Fatalf("ctxd serve did not exit within %v", timeout)
	}
	return p.Cmd.ProcessState.ExitCode()
}
