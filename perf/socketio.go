package perf

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"time"

	"github.com/gorilla/websocket"
)

// A minimal Socket.IO v5 client over Engine.IO v4's WebSocket transport
// (no polling, no upgrade): enough for fanout's subscribers. The test
// client of realtime/socketio (helpers_test.go) covers the whole
// protocol; this one only connects to the main namespace and reads events.
// Each Engine.IO packet comes in one WebSocket frame: "2" is a ping
// (answered "3"), "4" a message, whose Socket.IO packet "42[...]" is an
// event, "44{...}" a connect error, "41" a disconnect; "1" is close.

// Protocols of fanout's subscribers (FanoutRun.Protocol).
const (
	protocolWatch    = "watch"
	protocolSocketIO = "socketio"
	// protocolPeerWatch: a peer's own change feed (etcd's watch, over
	// gRPC), FanoutRun.Peer names the peer.
	protocolPeerWatch = "peer-watch"
)

var (
	sioPing         = []byte("2")
	sioPong         = []byte("3")
	sioUpdated      = []byte(`42["context_updated",`)
	sioSnapshot     = []byte(`42["context_snapshot",`)
	sioErrorEvent   = []byte(`42["error",`)
	sioConnectError = []byte("44")
	sioDisconnect   = []byte("41")
	sioClose        = []byte("1")
)

// socketIOURL is the WebSocket URL of the Socket.IO door of base (http or
// https).
func socketIOURL(base string) string {
	return "ws" + base[len("http"):] + "/socket.io/?EIO=4&transport=websocket"
}

// dialSocketIO connects to the Socket.IO door at wsURL with auth as the
// CONNECT payload, and reads up to the context_snapshot event: from then
// on, every change the handshake options select comes as context_updated.
func dialSocketIO(ctx context.Context, dialer *websocket.Dialer, wsURL string, header http.Header, auth any) (*websocket.Conn, error) {
	conn, resp, err := dialer.DialContext(ctx, wsURL, header)
	if resp != nil && resp.Body != nil {
		resp.Body.Close()
	}
	if err != nil {
		return nil, err
	}
	fail := func(err error) (*websocket.Conn, error) {
		conn.Close()
		return nil, err
	}
	_ = conn.SetReadDeadline(time.Now().Add(dialTimeout))
	_, open, err := conn.ReadMessage()
	if err != nil {
		return fail(err)
	}
	if len(open) == 0 || open[0] != '0' {
		return fail(fmt.Errorf("first packet is not the Engine.IO open: %.200s", open))
	}
	payload, err := json.Marshal(auth)
	if err != nil {
		return fail(err)
	}
	if err := conn.WriteMessage(websocket.TextMessage, append([]byte("40"), payload...)); err != nil {
		return fail(err)
	}
	for {
		_, p, err := conn.ReadMessage()
		if err != nil {
			return fail(err)
		}
		switch {
		case bytes.Equal(p, sioPing):
			err = conn.WriteMessage(websocket.TextMessage, sioPong)
		case bytes.HasPrefix(p, sioSnapshot):
			_ = conn.SetReadDeadline(time.Time{})
			return conn, nil
		case bytes.HasPrefix(p, sioConnectError), bytes.HasPrefix(p, sioErrorEvent),
			bytes.Equal(p, sioDisconnect), bytes.Equal(p, sioClose):
			err = fmt.Errorf("socket.io connect: server sent %.300s", p)
		}
		if err != nil {
			return fail(err)
		}
	}
}

// sioFrame sorts a frame a Socket.IO subscriber read: change (a
// context_updated event: its key and rev are scanned), pong (a ping was
// answered), or an error (the server refused or dropped the client).
// Other frames (client_stats, noops) are skipped.
func (sub *subscriber) sioFrame(data []byte) (change bool, err error) {
	switch {
	case bytes.HasPrefix(data, sioUpdated):
		return true, nil
	case bytes.Equal(data, sioPing):
		return false, sub.conn.WriteMessage(websocket.TextMessage, sioPong)
	case bytes.HasPrefix(data, sioErrorEvent), bytes.HasPrefix(data, sioConnectError),
		bytes.Equal(data, sioDisconnect), bytes.Equal(data, sioClose):
		return false, fmt.Errorf("server sent %.300s", data)
	}
	return false, nil
}

// sioChange reads a context_updated event's key and rev: the key is its
// first field and rev its last (a value may hold either name).
func sioChange(data []byte) (key []byte, rev uint64, ok bool) {
	i := bytes.Index(data, keyField)
	j := bytes.LastIndex(data, revField)
	if i < 0 || j < i {
		return nil, 0, false
	}
	rev, n := parseUint(data[j+len(revField):])
	return data[i+len(keyField):], rev, n > 0
}
