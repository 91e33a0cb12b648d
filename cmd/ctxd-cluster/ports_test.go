package main

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"
)

// TestMain runs `member` as main does: run starts its members with
// os.Executable(), which is this test binary.
func TestMain(m *testing.M) {
	if len(os.Args) > 1 && os.Args[1] == "member" {
		main()
		os.Exit(0)
	}
	code := m.Run()
	if ctxdDir != "" {
		_ = os.RemoveAll(ctxdDir)
	}
	os.Exit(code)
}

var (
	ctxdOnce sync.Once
	ctxdDir  string
	ctxdBin  string
	ctxdErr  error
)

// buildCtxd builds cmd/ctxd once, for the instances.
func buildCtxd(t *testing.T) string {
	t.Helper()
	ctxdOnce.Do(func() {
		if ctxdDir, ctxdErr = os.MkdirTemp("", "ctxd-cluster-test"); ctxdErr != nil {
			return
		}
		_, file, _, _ := runtime.Caller(0)
		ctxdBin = filepath.Join(ctxdDir, "ctxd")
		build := exec.Command("go", "build", "-o", ctxdBin, ".")
		build.Dir = filepath.Join(filepath.Dir(file), "..", "ctxd")
		if out, err := build.CombinedOutput(); err != nil {
			ctxdErr = fmt.Errorf("go build cmd/ctxd: %v: %s", err, out)
		}
	})
	if ctxdErr != nil {
		t.Fatal(ctxdErr)
	}
	return ctxdBin
}

// lockedBuffer is run's output, read by the test while run writes it
// (testkit.SyncBuffer's twin: testkit would bring the test kit's modules,
// testify and others, into this module's go.mod).
type lockedBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (b *lockedBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.b.Write(p)
}

func (b *lockedBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.b.String()
}

// holdPorts makes beforeStart take, with a real listener, the first port
// of the first start of each of whats: another process that took it
// between FreePorts and the child's bind. It returns the ports taken.
func holdPorts(t *testing.T, whats ...string) func() []int {
	var mu sync.Mutex
	var taken []int
	done := map[string]bool{}
	beforeStart = func(what string, ports []int) {
		mu.Lock()
		defer mu.Unlock()
		if done[what] || !strings.Contains(" "+strings.Join(whats, " ")+" ", " "+what+" ") {
			return
		}
		done[what] = true
		ln, err := net.Listen("tcp", net.JoinHostPort("127.0.0.1", strconv.Itoa(ports[0])))
		if err != nil {
			t.Errorf("take port %d: %v", ports[0], err)
			return
		}
		t.Cleanup(func() { _ = ln.Close() })
		taken = append(taken, ports[0])
	}
	t.Cleanup(func() { beforeStart = nil })
	return func() []int {
		mu.Lock()
		defer mu.Unlock()
		return append([]int(nil), taken...)
	}
}

// A free port another process takes before the member or instance binds
// it: the members' whole cluster starts again on new free ports (their
// first data folders removed), the instance alone on a new one, and the
// cluster comes up and prints where it is.
func TestFreePortTakenBeforeTheStart(t *testing.T) {
	ctxd := buildCtxd(t)
	taken := holdPorts(t, "etcd", "ctxd2")
	data := t.TempDir()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	var out lockedBuffer
	done := make(chan error, 1)
	go func() {
		done <- run(ctx, []string{"--data", data, "--ctxd", ctxd, "--etcd-port", "0", "--ctxd-port", "0", "--instances", "2"}, &out)
	}()
	deadline := time.After(5 * time.Minute)
	for !strings.Contains(out.String(), "Ctrl-C stops them all.") {
		select {
		case err := <-done:
			t.Fatalf("ctxd-cluster ended before it was up: %v\n%s", err, out.String())
		case <-deadline:
			t.Fatalf("ctxd-cluster not up after 5 minutes:\n%s", out.String())
		case <-time.After(100 * time.Millisecond):
		}
	}
	printed := out.String()
	t.Log(printed)
	ports := taken()
	if len(ports) != 2 {
		t.Fatalf("ports taken: %v, want the first member's and ctxd2's", ports)
	}
	for i, want := range []string{"etcd member m1: port " + strconv.Itoa(ports[0]) + " is in use",
		"ctxd2: port " + strconv.Itoa(ports[1]) + " is in use"} {
		if !strings.Contains(printed, want+" (taken since it was picked): starting again on other free ports") {
			t.Errorf("port %d taken: want %q said, got\n%s", ports[i], want, printed)
		}
	}
	var urls []string
	for line := range strings.Lines(printed) {
		f := strings.Fields(line)
		if len(f) >= 4 && f[2] == "pid" {
			urls = append(urls, f[1])
			for _, p := range ports {
				if strings.HasSuffix(f[1], ":"+strconv.Itoa(p)) {
					t.Errorf("%s printed on port %d, the one taken", f[0], p)
				}
			}
		}
	}
	if len(urls) != 5 {
		t.Fatalf("want 3 members and 2 instances printed, got %v", urls)
	}
	for _, u := range urls[3:] { // the instances serve, so the members do
		resp, err := http.Get(u + "/readyz")
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			t.Errorf("%s/readyz: %d", u, resp.StatusCode)
		}
	}
	cancel()
	if err := <-done; err != nil {
		t.Fatalf("run after its context ended: %v", err)
	}
}

// Ports given with --etcd-port or --ctxd-port that another process holds
// fail at once, naming the port and the flag, and the members' data of
// an earlier run stays.
func TestFixedPortInUse(t *testing.T) {
	ctxd := buildCtxd(t)
	// The test holds a port and the next one (a member's peer port,
	// which etcd binds first): another process holding the next one
	// would be named instead of this test.
	var port string
	for port == "" {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		defer ln.Close()
		p := ln.Addr().(*net.TCPAddr).Port
		next, err := net.Listen("tcp", "127.0.0.1:"+strconv.Itoa(p+1))
		if err != nil {
			continue
		}
		defer next.Close()
		port = strconv.Itoa(p)
	}
	p, _ := strconv.Atoi(port)
	nextPort := strconv.Itoa(p + 1)
	for _, c := range []struct{ flag, other string }{{"--etcd-port", "--ctxd-port"}, {"--ctxd-port", "--etcd-port"}} {
		data := t.TempDir()
		kept := filepath.Join(data, "etcd", "m1", "member", "kept")
		if err := os.MkdirAll(filepath.Dir(kept), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(kept, nil, 0o644); err != nil {
			t.Fatal(err)
		}
		if c.flag == "--ctxd-port" {
			// Members born on free ports: a new folder.
			if err := os.RemoveAll(filepath.Join(data, "etcd")); err != nil {
				t.Fatal(err)
			}
		}
		args := []string{"--data", data, "--ctxd", ctxd, "--members", "1", "--instances", "1", c.flag, port, c.other, "0"}
		var out lockedBuffer
		err := run(context.Background(), args, &out)
		// Linux tells who holds it: this test.
		holder := "another process listens on it: a ctxd-cluster still running?"
		if runtime.GOOS == "linux" {
			holder = fmt.Sprintf(", pid %d", os.Getpid())
		}
		want := "port " + port + " is in use ("
		if c.flag == "--etcd-port" && err != nil && strings.Contains(err.Error(), "port "+nextPort+" is in use (") {
			want = "port " + nextPort + " is in use (" // the peer port, bound first
		}
		if err == nil || !strings.Contains(err.Error(), want) || !strings.Contains(err.Error(), holder) ||
			!strings.Contains(err.Error(), "): pass "+c.flag+" with other ports, or "+c.flag+" 0 for free ones") {
			t.Errorf("%s %s in use: want an error saying %q and the flag, got %v\n%s", c.flag, port, want, err, out.String())
		}
		if _, err := os.Stat(kept); c.flag == "--etcd-port" && err != nil {
			t.Errorf("the members' data of an earlier run: %v", err)
		}
	}
}

// Ctrl-C while the cluster starts (here once the members are up, before
// the first instance) stops what had started and ends run without an
// error, as Ctrl-C after the start does: "stopped", exit 0, and the
// members no longer listen.
func TestInterruptedWhileStarting(t *testing.T) {
	ctxd := buildCtxd(t)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	var memberPorts []int
	beforeStart = func(what string, ports []int) {
		switch what {
		case "etcd":
			memberPorts = ports[:len(ports)/2]
		case "ctxd1":
			cancel() // the members are up
		}
	}
	t.Cleanup(func() { beforeStart = nil })
	var out lockedBuffer
	err := run(ctx, []string{"--data", t.TempDir(), "--ctxd", ctxd, "--etcd-port", "0", "--ctxd-port", "0", "--members", "1", "--instances", "1"}, &out)
	if err != nil {
		t.Fatalf("run interrupted while starting: want nil (exit 0), got %v\n%s", err, out.String())
	}
	if !strings.HasSuffix(out.String(), "stopped\n") {
		t.Errorf("want the output to end with \"stopped\", got\n%s", out.String())
	}
	if len(memberPorts) == 0 {
		t.Fatal("the members were never started")
	}
	for _, p := range memberPorts {
		if c, err := net.Dial("tcp", net.JoinHostPort("127.0.0.1", strconv.Itoa(p))); err == nil {
			c.Close()
			t.Errorf("member port %d still listens after run returned", p)
		}
	}
}

// An instance that exits at its start says why in run's error, not in
// its log alone: here ctxd's refusal of a --prefix it cannot take. And a
// --log-level etcd does not know is refused before any member starts
// (each member panicked on it).
func TestBadFlagsSayWhy(t *testing.T) {
	ctxd := buildCtxd(t)
	err := run(context.Background(), []string{"--data", t.TempDir(), "--ctxd", ctxd, "--etcd-port", "0", "--ctxd-port", "0",
		"--members", "1", "--instances", "1", "--prefix", "ctxd"}, io.Discard)
	if err == nil || !strings.Contains(err.Error(), `ctxd1: exited: exit status 2: ctxd: config: etcd.prefix (env CTXD_ETCD_PREFIX): invalid prefix "ctxd"`) {
		t.Errorf("--prefix ctxd: want the instance's reason in the error, got %v", err)
	}
	_, err = parse([]string{"--ctxd", ctxd, "--data", t.TempDir(), "--log-level", "bogus"})
	if err == nil || !strings.Contains(err.Error(), "--log-level bogus: give debug, info, warn or error") {
		t.Errorf("--log-level bogus: want a refusal naming the flag, got %v", err)
	}
}
