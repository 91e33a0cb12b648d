package realtime

import (
	"net/http/httptest"
	"net/url"
	"path/filepath"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/rs/zerolog"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/framework0/ctxd"
	"github.com/framework0/ctxd/httpapi"
	"github.com/framework0/ctxd/store"
	"github.com/framework0/ctxd/store/bolt"
)

// A context_set whose write was queued but not answered within the hub's
// WriteTimeout is reported as outcome_unknown, as over REST. The store's
// writer is held after the commit until the client has the error frame, so
// the timeout always ends the wait first.
func TestContextSetOutcomeUnknown(t *testing.T) {
	var hook atomic.Pointer[func()]
	st, err := bolt.Open(filepath.Join(t.TempDir(), "ctxd.db"), bolt.Options{OnCommit: func(store.CommitInfo) {
		if f := hook.Swap(nil); f != nil {
			(*f)()
		}
	}})
	require.NoError(t, err)
	hub := New(st, Options{WriteTimeout: 200 * time.Millisecond}, zerolog.Nop())
	api := httpapi.New(st, httpapi.Config{Version: "test", Clients: hub.Clients}, zerolog.Nop())
	api.Echo().GET("/v1/watch", hub.Serve)
	ts := &testServer{t: t, st: st, hub: hub, srv: httptest.NewServer(api.Handler()), once: &sync.Once{}}
	t.Cleanup(ts.stop)

	w := dial(t, ts.wsURL(url.Values{"ns": {"nothing"}}), nil)
	w.expect(ctxd.TypeSubscribed)
	answered := make(chan struct{})
	release := func() { <-answered }
	hook.Store(&release)
	w.sendJSON(map[string]any{"type": "context_set", "id": "s1", "ns": "team", "key": "k", "value": 1})
	m := w.expect(ctxd.TypeError)
	close(answered)
	assert.Equal(t, ctxd.CodeOutcomeUnknown, m.Code)
	assert.JSONEq(t, `"s1"`, string(m.ID))
	assert.Contains(t, m.Message, "read the key")

	// Reading the key tells: the write was committed before the hook ran.
	rec, err := st.Get("team", "k")
	require.NoError(t, err)
	assert.Equal(t, `1`, string(rec.Value))
}
