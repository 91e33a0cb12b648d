package perf

import (
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/gorilla/websocket"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// A subscriber scans each frame once: the changes of a batch, in order,
// then an error frame is the run's error, whether its type comes first
// (as ctxd writes it) or not.
func TestSubscriberReceive(t *testing.T) {
	frames := []string{
		`{"type":"batch","messages":[{"type":"context_updated","rev":7,"ns":"default","key":"fan/3","op":"put","value":{"rev":1},"version":1,"who":"w","timestamp":"t"},` +
			`{"type":"context_updated","rev":8,"ns":"default","key":"fan/4","op":"put","value":"x","version":1,"who":"w","timestamp":"t"}]}`,
		`{"type":"error","code":"lagged","message":"too slow","from_rev":8}`,
		`{"code":"lagged","type":"error"}`,
	}
	upgrader := websocket.Upgrader{}
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		conn, err := upgrader.Upgrade(w, r, nil)
		if err != nil {
			return
		}
		defer conn.Close()
		for _, f := range frames {
			if conn.WriteMessage(websocket.TextMessage, []byte(f)) != nil {
				return
			}
		}
		_, _, _ = conn.ReadMessage() // until the client closes
	}))
	defer srv.Close()
	conn, _, err := websocket.DefaultDialer.Dial("ws"+strings.TrimPrefix(srv.URL, "http"), nil)
	require.NoError(t, err)
	sub := &subscriber{conn: conn}
	defer sub.Close()

	type change struct {
		rev uint64
		key string
	}
	var got []change
	require.NoError(t, sub.Receive(func(rev uint64, key []byte) {
		k, _, _ := strings.Cut(string(key), `"`)
		got = append(got, change{rev, k})
	}))
	assert.Equal(t, []change{{7, "fan/3"}, {8, "fan/4"}}, got)
	for range 2 {
		err := sub.Receive(func(uint64, []byte) { t.Error("no change in an error frame") })
		require.Error(t, err)
		assert.Contains(t, err.Error(), "server sent")
		assert.Contains(t, err.Error(), "lagged")
	}
}
