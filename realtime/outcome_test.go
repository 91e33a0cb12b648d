package realtime_test

import (
	"context"
	"encoding/json"
	"net/url"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/framework0/ctxd"
	"github.com/framework0/ctxd/internal/testkit"
	"github.com/framework0/ctxd/realtime"
	"github.com/framework0/ctxd/store/bolt"
)

// A context_set whose write was queued but not answered within the hub's
// WriteTimeout is reported as outcome_unknown, as over REST. The store's
// writer is held after the commit until the client has the error frame, so
// the timeout always ends the wait first.
func TestContextSetOutcomeUnknown(t *testing.T) {
	hook := &testkit.CommitHook{}
	ts := startTestServer(&testServer{t: t, opts: realtime.Options{WriteTimeout: 200 * time.Millisecond},
		storeOpts: bolt.Options{OnCommit: hook.OnCommit}})

	w := testkit.DialWatch(t, ts.wsURL(url.Values{"ns": {"nothing"}}), nil)
	w.Expect(ctxd.TypeSubscribed)
	release := hook.Hold(t, func() error {
		_, err := ts.st.Put(context.Background(), "held", "h", json.RawMessage(`0`), nil, "t")
		return err
	})
	w.SendJSON(map[string]any{"type": "context_set", "id": "s1", "ns": "team", "key": "k", "value": 1})
	m := w.Expect(ctxd.TypeError)
	release()
	assert.Equal(t, ctxd.CodeOutcomeUnknown, m.Code)
	assert.JSONEq(t, `"s1"`, string(m.ID))
	assert.Contains(t, m.Message, "read the key")

	// Reading the key tells: the write was in the log, and applied.
	rec, err := ts.st.Get("team", "k")
	require.NoError(t, err)
	assert.Equal(t, `1`, string(rec.Value))
}
