package realtime_test

import (
	"errors"
	"testing"

	"github.com/gorilla/websocket"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/framework0/ctxd"
	"github.com/framework0/ctxd/internal/testkit"
	"github.com/framework0/ctxd/realtime"
)

// At shutdown every client gets a close frame (1001) naming the revision
// to resume from, after every change it was sent.
func TestShutdownCloseNamesTheResumeRevision(t *testing.T) {
	ts := startServer(t, realtime.Options{})
	c := testkit.DialWatch(t, ts.wsURL(nil), nil)
	c.Expect(ctxd.TypeSubscribed)
	var last uint64
	for i := 0; i < 3; i++ {
		last = ts.put("default", "k", `1`)
	}
	got := c.Changes(last)
	require.Len(t, got, 3)
	ts.stop()
	var err error
	for err == nil {
		_, err = c.NextErr()
	}
	var ce *websocket.CloseError
	require.True(t, errors.As(err, &ce), "want a close frame, got %v", err)
	assert.Equal(t, websocket.CloseGoingAway, ce.Code)
	assert.Contains(t, ce.Text, "from_rev=3")
}
