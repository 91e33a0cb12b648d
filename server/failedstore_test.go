package server_test

import (
	"encoding/json"
	"fmt"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/framework0/ctxd"
	"github.com/framework0/ctxd/client"
	"github.com/framework0/ctxd/internal/testkit"
)

// A store that failed (its data disk filled under the running server)
// shows where operators look, until a restart clears it: ctxd_store_up 0,
// /v1/status's alarm store_failed saying why, and one error line in the
// log when it failed, not one more per refused write or /readyz probe
// (each still has its access line, at info). /healthz stays 200: the
// process is up. Before, the gauge said 1, the alarm nothing, and the
// log held no line of the failure but an error line per refusal.
func TestAFailedStoreShowsUntilARestart(t *testing.T) {
	full := fillDataDisk(t)
	srv, cl := full.srv, full.cl
	ctx := t.Context()

	const tries = 5
	var refused error
	for i := range tries {
		_, refused = cl.Put(ctx, "default", fmt.Sprint("after", i), json.RawMessage(`1`), client.PutOptions{})
		require.ErrorIs(t, refused, ctxd.ErrUnavailable)
		require.Error(t, cl.Ready(ctx), "/readyz")
	}
	require.NoError(t, cl.Health(ctx), "/healthz: the process is up")

	assert.Equal(t, 0.0, testkit.Scrape(t, srv.URL)["ctxd_store_up"])
	st, err := cl.Status(ctx)
	require.NoError(t, err)
	assert.Equal(t, ctxd.AlarmStoreFailed, st.Alarm)
	assert.Contains(t, st.AlarmMessage, "the store takes no more writes until it is restarted: ")
	assert.Contains(t, refused.Error(), st.AlarmMessage, "the alarm says why, as the refused writes do")

	var failed, notReady int
	refusals := 0 // access lines of the refused writes and probes
	for _, l := range srv.Logs.Lines(t) {
		msg, _ := l["message"].(string)
		path, _ := l["path"].(string)
		switch {
		case l["level"] == "error" && strings.HasPrefix(msg, "the store failed: "):
			failed++
			assert.Contains(t, l["error"], st.AlarmMessage, "the line says why")
		case l["level"] == "warn" && msg == "not ready":
			notReady++
		case msg == "request" && (strings.HasPrefix(path, "/v1/ns/default/keys/after") || path == "/readyz"):
			refusals++
			assert.Equal(t, "info", l["level"], "a refusal's access line: %v", l)
			assert.Equal(t, ctxd.CodeUnavailable, l["error"], "it says why: %v", l)
		case l["level"] == "error":
			// The write that met the full disk may have its own line:
			// its outcome, not the store's failure.
			assert.Equal(t, fmt.Sprintf("/v1/ns/default/keys/k%d", full.acked), path, "an error line: %v", l)
		case l["level"] == "warn":
			t.Errorf("a warning: %v", l)
		}
	}
	assert.Equal(t, 1, failed, "one error line when the store failed")
	assert.Equal(t, 1, notReady, "/readyz says why once, not at every probe")
	assert.Equal(t, 2*tries, refusals)

	// A restart, the disk with room again, clears it.
	testkit.GrowSmallDisk(t, full.disk, 128<<20)
	srv.StopFailed(ctxd.ErrUnavailable)
	srv.Start()
	require.NoError(t, cl.Ready(ctx))
	assert.Equal(t, 1.0, testkit.Scrape(t, srv.URL)["ctxd_store_up"])
	st, err = cl.Status(ctx)
	require.NoError(t, err)
	assert.Equal(t, ctxd.AlarmNone, st.Alarm)
	assert.Empty(t, st.AlarmMessage)
}
