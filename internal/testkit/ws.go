package testkit

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"testing"
	"time"

	"github.com/gorilla/websocket"
	"github.com/stretchr/testify/require"

	"github.com/framework0/ctxd"
)

// Frame is any message of /v1/watch, decoded loosely: each field is
// filled when the message has it.
type Frame struct {
	Type string          `json:"type"`
	ID   json.RawMessage `json:"id"`
	Rev  uint64          `json:"rev"`
	// Index and Count: a change's place among the changes of its
	// revision, and how many there are (only when more than one);
	// subscribed's Index: the changes that follow start inside Rev.
	Index     int             `json:"index"`
	Count     int             `json:"count"`
	NS        string          `json:"ns"`
	Key       string          `json:"key"`
	Op        string          `json:"op"`
	Value     json.RawMessage `json:"value"`
	Version   uint64          `json:"version"`
	Who       string          `json:"who"`
	Timestamp time.Time       `json:"timestamp"`

	Code              string  `json:"code"`
	Message           string  `json:"message"`
	FromRev           *uint64 `json:"from_rev"`
	FromIndex         int     `json:"from_index"`
	CompactedRevision uint64  `json:"compacted_revision"`
	CurrentVersion    *uint64 `json:"current_version"`
	RetryAfterMS      int64   `json:"retry_after_ms"`
	OpIndex           *int    `json:"op_index"`
	Pointer           *string `json:"pointer"`

	ClientID         string              `json:"client_id"`
	ClientType       string              `json:"client_type"`
	Name             string              `json:"name"`
	ConnectedClients int                 `json:"connected_clients"`
	ClientsByType    map[string]int      `json:"clients_by_type"`
	Subscriptions    []ctxd.Subscription `json:"subscriptions"`
	Batch            bool                `json:"batch"`
	Keys             []ctxd.Record       `json:"keys"`
	Complete         bool                `json:"complete"`
	Filename         string              `json:"filename"`
	Format           string              `json:"format"`
	KeyCount         int                 `json:"key_count"`

	Messages []json.RawMessage `json:"messages"`
}

// WS is a WebSocket client of /v1/watch (gorilla), closed when the test
// ends.
type WS struct {
	Conn    *websocket.Conn
	t       testing.TB
	pending []Frame // messages of a batch frame not returned yet
}

// DialWatch connects to the ws:// URL u with the header hdr, failing the
// test if it cannot.
func DialWatch(t testing.TB, u string, hdr http.Header) *WS {
	t.Helper()
	return DialWatchWith(t, &websocket.Dialer{}, u, hdr)
}

// DialWatchWith is DialWatch with a dialer of the test's own (a small
// socket buffer, say).
func DialWatchWith(t testing.TB, d *websocket.Dialer, u string, hdr http.Header) *WS {
	t.Helper()
	c, resp, err := DialWatchErrWith(d, u, hdr)
	if resp != nil && resp.Body != nil {
		resp.Body.Close()
	}
	require.NoError(t, err)
	t.Cleanup(func() { c.Close() })
	return &WS{Conn: c, t: t}
}

// DialWatchErr connects to u and returns what the dial returned, for tests
// of refusals; the caller closes the connection and the response body.
func DialWatchErr(u string, hdr http.Header) (*websocket.Conn, *http.Response, error) {
	return DialWatchErrWith(&websocket.Dialer{}, u, hdr)
}

// DialWatchErrWith is DialWatchErr with the test's own dialer.
func DialWatchErrWith(d *websocket.Dialer, u string, hdr http.Header) (*websocket.Conn, *http.Response, error) {
	if d.HandshakeTimeout == 0 {
		d.HandshakeTimeout = Deadline
	}
	ctx, cancel := context.WithTimeout(context.Background(), Deadline)
	defer cancel()
	return d.DialContext(ctx, u, hdr)
}

// Next returns the next message, the messages of a batch frame one by one.
func (w *WS) Next() Frame {
	w.t.Helper()
	m, err := w.NextErr()
	require.NoError(w.t, err)
	return m
}

// NextErr is Next returning the error (a close frame, say) instead of
// failing the test.
func (w *WS) NextErr() (Frame, error) {
	if len(w.pending) > 0 {
		m := w.pending[0]
		w.pending = w.pending[1:]
		return m, nil
	}
	_ = w.Conn.SetReadDeadline(time.Now().Add(Deadline))
	typ, data, err := w.Conn.ReadMessage()
	if err != nil {
		return Frame{}, err
	}
	if typ != websocket.TextMessage {
		return Frame{}, fmt.Errorf("frame type %d, want text", typ)
	}
	var m Frame
	if err := json.Unmarshal(data, &m); err != nil {
		return Frame{}, fmt.Errorf("frame %q: %w", data, err)
	}
	if m.Type != ctxd.TypeBatch {
		return m, nil
	}
	if len(m.Messages) < 2 {
		return Frame{}, fmt.Errorf("batch frame with %d messages: %s", len(m.Messages), data)
	}
	for _, raw := range m.Messages {
		var sub Frame
		if err := json.Unmarshal(raw, &sub); err != nil {
			return Frame{}, err
		}
		if sub.Type != ctxd.TypeContextUpdated {
			return Frame{}, fmt.Errorf("batch holds a %q message", sub.Type)
		}
		w.pending = append(w.pending, sub)
	}
	return w.NextErr()
}

// Pending is how many messages of the last batch frame Next has not
// returned yet: 0 means the messages returned so far end with a frame.
func (w *WS) Pending() int { return len(w.pending) }

// Expect returns the next message, which must be of type typ.
func (w *WS) Expect(typ string) Frame {
	w.t.Helper()
	m := w.Next()
	require.Equal(w.t, typ, m.Type, "message: %+v", m)
	return m
}

// SendJSON sends v as a text frame.
func (w *WS) SendJSON(v any) {
	w.t.Helper()
	b, err := json.Marshal(v)
	require.NoError(w.t, err)
	w.SendRaw(b)
}

// SendRaw sends b as a text frame.
func (w *WS) SendRaw(b []byte) {
	w.t.Helper()
	require.NoError(w.t, w.Conn.SetWriteDeadline(time.Now().Add(Deadline)))
	require.NoError(w.t, w.Conn.WriteMessage(websocket.TextMessage, b))
}

// Changes reads context_updated messages until one with revision >= upTo
// has arrived (any other type fails the test) and returns them.
func (w *WS) Changes(upTo uint64) []Frame {
	w.t.Helper()
	var out []Frame
	for {
		m := w.Next()
		require.Equal(w.t, ctxd.TypeContextUpdated, m.Type, "message: %+v", m)
		out = append(out, m)
		if m.Rev >= upTo {
			return out
		}
	}
}
