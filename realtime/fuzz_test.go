package realtime_test

import (
	"testing"

	"github.com/gorilla/websocket"

	"github.com/framework0/ctxd"
	"github.com/framework0/ctxd/realtime"
)

// FuzzMessage sends arbitrary client messages over a real WebSocket: each
// must leave the connection open and answering, whatever it holds (bad
// JSON, unknown types, bad subscriptions, writes through context_set).
func FuzzMessage(f *testing.F) {
	for _, seed := range []string{
		`{"type":"subscribe","ns":"team","prefix":"app/","from_rev":0}`,
		`{"type":"unsubscribe","ns":"team"}`,
		`{"type":"context_set","id":1,"key":"k","value":{"a":1},"if_version":0}`,
		`{"type":"context_set","key":"","value":1}`,
		`{"type":"client_register","client_type":"dashboard","name":"x"}`,
		`{"type":"client_stats"}`, `{"type":"ping","id":"p"}`, `{"type":"nope"}`, `{}`, `[]`, `"x"`, `{`, ``,
		`{"type":"subscribe","ns":"bad ns!"}`, `{"type":"subscribe","from_rev":-1}`, "{\"type\":\"\xff\"}",
	} {
		f.Add([]byte(seed))
	}
	ts := startServer(f, realtime.Options{})
	c, _, err := websocket.DefaultDialer.Dial(ts.wsURL(nil), nil)
	if err != nil {
		f.Fatal(err)
	}
	f.Cleanup(func() { c.Close() })
	f.Fuzz(func(t *testing.T, data []byte) {
		if err := c.WriteMessage(websocket.TextMessage, data); err != nil {
			t.Fatalf("write: %v", err)
		}
		if err := c.WriteJSON(map[string]string{"type": "ping", "id": "alive"}); err != nil {
			t.Fatalf("write ping: %v", err)
		}
		for {
			var m struct {
				Type string `json:"type"`
				ID   any    `json:"id"`
			}
			if err := c.ReadJSON(&m); err != nil {
				t.Fatalf("after %q the connection failed: %v", data, err)
			}
			if m.Type == ctxd.TypePong && m.ID == "alive" {
				return
			}
		}
	})
}
