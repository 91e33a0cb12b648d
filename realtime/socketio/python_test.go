package socketio_test

import (
	"context"
	"encoding/json"
	"os"
	"os/exec"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/framework0/ctxd/internal/testkit"
)

// TestPythonAsyncClient runs Framework0's client library, python-socketio's
// AsyncClient with its default transports, against the server
// (testdata/f0_async_client.py), with the first of $CTXD_PYTHON, python3
// and /usr/bin/python3 that has them. make test installs python3-socketio and
// python3-aiohttp; without them the test fails, saying how to install them
// (as the dashboard tests do without Chromium): a skipped test proves nothing.
func TestPythonAsyncClient(t *testing.T) {
	python := ""
	for _, p := range []string{os.Getenv("CTXD_PYTHON"), "python3", "/usr/bin/python3"} {
		if p != "" && exec.Command(p, "-c", "import socketio, aiohttp").Run() == nil {
			python = p
			break
		}
	}
	if python == "" {
		t.Fatal("python3 with socketio and aiohttp is missing: make test-tools installs python3-socketio and python3-aiohttp (CTXD_PYTHON names another interpreter)")
	}
	// default: Framework0's (polling, then the upgrade); websocket and
	// polling: a client configured with transports=['websocket'] or
	// ['polling'] (whose burst of 100 changes python-engineio refused,
	// and dropped, in poll answers of more than 16 packets).
	for _, transports := range []string{"default", "websocket", "polling"} {
		t.Run(transports, func(t *testing.T) {
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
