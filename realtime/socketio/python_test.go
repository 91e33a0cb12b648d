package socketio_test

import (
	"bufio"
	"context"
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/framework0/ctxd"
	"github.com/framework0/ctxd/auth"
	"github.com/framework0/ctxd/configs"
	"github.com/framework0/ctxd/internal/testkit"
)

// TestPythonAsyncClient runs Framework0's client library, python-socketio's
// AsyncClient with its default transports, against the server
// (testdata/f0_async_client.py), with the first of $CTXD_PYTHON, python3
// and /usr/bin/python3 that has them. make test installs python3-socketio and
// python3-aiohttp; without them the test fails, saying how to install them
// (as the dashboard tests do without Chromium): a skipped test proves nothing.
func TestPythonAsyncClient(t *testing.T) {
	python := findPython(t)
	// default: Framework0's (polling, then the upgrade); websocket and
	// polling: a client configured with transports=['websocket'] or
	// ['polling'] (whose burst of 100 changes python-engineio refused,
	// and dropped, in poll answers of more than 16 packets).
	for _, transports := range []string{"default", "websocket", "polling"} {
		t.Run(transports, func(t *testing.T) {
			t.Parallel() // a server and a python process of its own: mostly waits on the client
			srv := testkit.StartServer(t)
			_, err := srv.Backend().Put(context.Background(), "default", "seed", json.RawMessage(`{"n":1}`), nil, "seed")
			require.NoError(t, err)
			ctx, cancel := context.WithTimeout(context.Background(), testkit.Deadline)
			defer cancel()
			out, err := exec.CommandContext(ctx, python, "testdata/f0_async_client.py", srv.URL, transports).CombinedOutput()
			require.NoError(t, err, "python client:\n%s", out)
			assert.True(t, strings.HasPrefix(strings.TrimSpace(string(out)), "OK"), string(out))
			rec, err := srv.Backend().Get("default", "py")
			require.NoError(t, err)
			assert.JSONEq(t, `{"a":1}`, string(rec.Value))
			assert.Equal(t, "python", rec.Who)
			testkit.Eventually(t, func() bool { return srv.Server().SocketIO().Clients() == 0 })
		})
	}
}

// findPython returns the first of $CTXD_PYTHON, python3 and
// /usr/bin/python3 that has socketio and aiohttp, or fails the test.
func findPython(t *testing.T) string {
	t.Helper()
	p := pythonWithSocketIO()
	if p == "" {
		t.Fatal("python3 with socketio and aiohttp is missing: make test-tools installs python3-socketio and python3-aiohttp (CTXD_PYTHON names another interpreter)")
	}
	return p
}

// pythonWithSocketIO is findPython's search, done once for the package's
// tests: each try starts an interpreter that imports both (a pyenv shim
// without them took 0.7 s to say so).
var pythonWithSocketIO = sync.OnceValue(func() string {
	for _, p := range []string{os.Getenv("CTXD_PYTHON"), "python3", "/usr/bin/python3"} {
		if p != "" && exec.Command(p, "-c", "import socketio, aiohttp").Run() == nil {
			return p
		}
	}
	return ""
})

// TestPythonReconnects: Framework0's client, python-socketio's AsyncClient
// with reconnection on, comes back by itself with a new snapshot and gets
// the later changes after a graceful restart (SIGTERM: Shutdown, then a
// new server on the same port) and after it was cut as lagged
// (testdata/f0_reconnect.py). A Socket.IO DISCONNECT from the server, or
// an Engine.IO close packet, tells it not to come back (negative control:
// with Close and lagged sending "41", as they did, no case comes BACK).
func TestPythonReconnects(t *testing.T) {
	python := findPython(t)
	for _, cut := range []string{"restart", "lagged"} {
		for _, transports := range []string{"default", "websocket", "polling"} {
			t.Run(cut+"/"+transports, func(t *testing.T) {
				t.Parallel() // a server (Restart: on its own port) and a python process of its own
				const maxLag, burst = 10, 300
				srv := testkit.StartServer(t, testkit.WithConfig(func(c *configs.Config) {
					c.WebSocket.MaxLag = maxLag
					c.WebSocket.LagGrace = 0
					c.Limits.MaxTxnOps = burst
				}))
				py := startPython(t, python, "testdata/f0_reconnect.py", srv.URL, transports)
				py.expect("READY")
				if cut == "restart" {
					srv.Restart() // the same port
				} else {
					ops := make([]ctxd.Write, burst)
					for i := range ops {
						ops[i] = ctxd.Write{Namespace: "default", Key: "burst/" + strconv.Itoa(i), Op: ctxd.OpPut, Value: []byte(strconv.Itoa(i)), Who: "t"}
					}
					_, err := srv.Backend().Txn(context.Background(), ops)
					require.NoError(t, err)
					testkit.Eventually(t, func() bool { return srv.Server().SocketIO().Lagged() == 1 }, "the burst cuts the client")
				}
				py.expect("BACK")
				_, err := srv.Backend().Put(context.Background(), "default", "after", json.RawMessage(`1`), nil, "t")
				require.NoError(t, err)
				py.expect("OK")
				py.wait()
				testkit.Eventually(t, func() bool { return srv.Server().SocketIO().Clients() == 0 })
			})
		}
	}
}

// TestPythonRevokedToken: Framework0's client, python-socketio's
// AsyncClient with reconnection on, connected to namespace x with a token
// that a reload of the tokens file (SIGHUP) revokes (testdata/f0_revoked.py).
// changed: the token is given namespace y and key prefix b/ besides a/;
// the client must come back by itself, see b/ in its new snapshot and get
// the next change under b/ (a Socket.IO DISCONNECT, as every revocation
// sent, tells it not to come back: no case comes BACK). removed, and cut
// (the token no longer allowed namespace x): the client must end, without
// retrying a reconnection the server would refuse (python-socketio 5.7
// retries a refused CONNECT for good: sent without the DISCONNECT, no case
// ENDS).
func TestPythonRevokedToken(t *testing.T) {
	python := findPython(t)
	entry := testkit.ReaderEntry
	for _, change := range []string{"changed", "removed", "cut"} {
		for _, transports := range []string{"default", "websocket", "polling"} {
			t.Run(change+"/"+transports, func(t *testing.T) {
				t.Parallel() // a tokens file, a server and a python process of its own
				secret := auth.NewSecret()
				tokens := filepath.Join(t.TempDir(), "tokens.yaml")
				require.NoError(t, os.WriteFile(tokens, []byte("tokens:\n"+entry("f0", secret, "x", "a/")), 0o600))
				srv := testkit.StartServer(t, testkit.WithConfig(func(c *configs.Config) {
					c.Auth.Mode, c.Auth.TokensFile = configs.AuthOn, tokens
				}))
				for _, key := range []string{"a/seed", "b/seed"} {
					_, err := srv.Backend().Put(context.Background(), "x", key, json.RawMessage(`1`), nil, "t")
					require.NoError(t, err)
				}
				py := startPython(t, python, "testdata/f0_revoked.py", srv.URL, transports, secret, change)
				assert.Equal(t, "a/seed", py.expect("READY"), "the snapshot: what the token may read")

				next := map[string]string{
					"changed": entry("f0", secret, "x, y", "a/, b/"),
					"removed": entry("ops", auth.NewSecret(), "x", "a/"),
					"cut":     entry("f0", secret, "y", "a/"),
				}[change]
				require.NoError(t, os.WriteFile(tokens, []byte("tokens:\n"+next), 0o600))
				_, revoked, err := srv.Server().Access().Reload()
				require.NoError(t, err)
				require.Equal(t, 1, revoked)

				if change == "changed" {
					assert.Equal(t, "a/seed,b/seed", py.expect("BACK"), "the new snapshot: the new rights")
					_, err = srv.Backend().Put(context.Background(), "x", "b/after", json.RawMessage(`1`), nil, "t")
					require.NoError(t, err)
					py.expect("OK")
				} else {
					py.expect("ENDED")
				}
				py.wait()
				testkit.Eventually(t, func() bool { return srv.Server().SocketIO().Clients() == 0 })
				assert.Equal(t, uint64(1), srv.Server().SocketIO().Revoked(), "one session revoked: none came back to be revoked again")
			})
		}
	}
}

// pythonClient is a python script run by a test, which prints a line at
// each step it reaches.
type pythonClient struct {
	t      *testing.T
	cmd    *exec.Cmd
	lines  *bufio.Scanner
	out    []string
	stderr strings.Builder
}

// startPython runs script with python and args, for at most twice
// testkit.Deadline.
func startPython(t *testing.T, python, script string, args ...string) *pythonClient {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 2*testkit.Deadline)
	t.Cleanup(cancel)
	p := &pythonClient{t: t, cmd: exec.CommandContext(ctx, python, append([]string{script}, args...)...)}
	p.cmd.Stderr = &p.stderr
	stdout, err := p.cmd.StdoutPipe()
	require.NoError(t, err)
	require.NoError(t, p.cmd.Start())
	p.lines = bufio.NewScanner(stdout)
	return p
}

// expect reads the script's lines until one starting with prefix, and
// returns the rest of it; the test fails if the script ends first.
func (p *pythonClient) expect(prefix string) string {
	p.t.Helper()
	for p.lines.Scan() {
		p.out = append(p.out, p.lines.Text())
		if rest, ok := strings.CutPrefix(p.lines.Text(), prefix); ok {
			return strings.TrimSpace(rest)
		}
	}
	_ = p.cmd.Wait()
	p.t.Fatalf("python client: no %s:\n%s\n%s", prefix, strings.Join(p.out, "\n"), p.stderr.String())
	return ""
}

// wait waits for the script to exit, and fails the test unless it
// succeeded.
func (p *pythonClient) wait() {
	p.t.Helper()
	require.NoError(p.t, p.cmd.Wait(), "python client:\n%s\n%s", strings.Join(p.out, "\n"), p.stderr.String())
}
