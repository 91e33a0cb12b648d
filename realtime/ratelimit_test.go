package realtime_test

import (
	"encoding/json"
	"errors"
	"net/http"
	"net/url"
	"strconv"
	"testing"
	"time"

	"github.com/gorilla/websocket"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/framework0/ctxd"
	"github.com/framework0/ctxd/configs"
	"github.com/framework0/ctxd/internal/testkit"
)

// rateLimitedServer is the whole server with a small per-connection rate
// limit: bursts of 10 messages, perSecond after that.
func rateLimitedServer(t *testing.T, perSecond float64, maxRefused int) *testkit.Server {
	t.Helper()
	return testkit.StartServer(t, testkit.WithConfig(func(c *configs.Config) {
		c.WebSocket.RateLimit, c.WebSocket.RateBurst, c.WebSocket.RateLimitMaxRefused = perSecond, 10, maxRefused
	}))
}

// A client that floods context_set gets its burst applied, then
// rate_limited errors (with retry_after_ms and the message's id) for
// messages that are not applied (between them the server reads no faster
// than the rate, so some messages are applied at that rate), then past 20
// refusals a last rate_limited error and close 1008 with reason
// rate_limited. The store holds exactly the writes it was told were
// applied. A client on the same server that stays within its limit is not
// disturbed: it gets its answers and the flooder's applied writes, and
// stays connected.
func TestRateLimitClosesFlooder(t *testing.T) {
	s := rateLimitedServer(t, 50, 20)
	polite := testkit.DialWatch(t, s.WatchURL(nil), nil)
	polite.Expect(ctxd.TypeSubscribed)
	flood := testkit.DialWatch(t, s.WatchURL(url.Values{"ns": {"other"}}), nil)
	flood.Expect(ctxd.TypeSubscribed)

	const sent = 200
	start := time.Now()
	for i := range sent {
		b, _ := json.Marshal(map[string]any{"type": "context_set", "id": i, "key": "flood-" + strconv.Itoa(i), "value": i})
		_ = flood.Conn.SetWriteDeadline(time.Now().Add(deadline))
		if flood.Conn.WriteMessage(websocket.TextMessage, b) != nil {
			break // closed by the server
		}
	}
	var (
		applied  = map[string]bool{}
		refused  int
		lastCode string
		closeErr *websocket.CloseError
	)
	for {
		m, err := flood.NextErr()
		if err != nil {
			require.True(t, errors.As(err, &closeErr), "%v", err)
			break
		}
		switch m.Type {
		case ctxd.TypeContextSetConfirmed:
			applied[m.Key] = true
		case ctxd.TypeError:
			require.Equal(t, ctxd.CodeRateLimited, m.Code, "%+v", m)
			assert.Positive(t, m.RetryAfterMS, "%+v", m)
			if len(m.ID) > 0 {
				refused++
			}
		default:
			t.Fatalf("unexpected message %+v", m)
		}
		lastCode = m.Code
	}
	elapsed := time.Since(start)
	assert.Equal(t, websocket.ClosePolicyViolation, closeErr.Code)
	assert.Equal(t, ctxd.CodeRateLimited, closeErr.Text)
	assert.Equal(t, ctxd.CodeRateLimited, lastCode, "the last frame says why")
	assert.Equal(t, 20, refused, "20 refusals answered with their id, the 21st closes")
	assert.GreaterOrEqual(t, len(applied), 10, "the burst is applied")
	assert.LessOrEqual(t, float64(len(applied)), 10+50*elapsed.Seconds()+1, "no more than the burst and the rate")
	st := s.Hub().Stats()
	assert.Equal(t, uint64(21), st.RateLimited)
	assert.Equal(t, uint64(1), st.RateLimitClosed)
	res, body := testkit.Send(t, http.DefaultClient, testkit.NewRequest(t, http.MethodGet, s.URL+"/metrics", ""))
	require.Equal(t, http.StatusOK, res.StatusCode)
	assert.Contains(t, string(body), "\nctxd_ws_rate_limited_messages_total{protocol=\"watch\"} 21\n")
	assert.Contains(t, string(body), "\nctxd_ws_rate_limited_clients_total{protocol=\"watch\"} 1\n")

	// The store holds the applied writes, and nothing else of the flood.
	for i := range sent {
		key := "flood-" + strconv.Itoa(i)
		_, err := s.Backend().Get(ctxd.DefaultNamespace, key)
		if applied[key] {
			assert.NoError(t, err, key)
		} else {
			assert.ErrorIs(t, err, ctxd.ErrNotFound, "%s was refused but written", key)
		}
	}

	// The polite client saw the applied writes, and goes on.
	for range len(applied) {
		m := polite.Expect(ctxd.TypeContextUpdated)
		assert.True(t, applied[m.Key], m.Key)
	}
	polite.SendJSON(map[string]any{"type": "ping", "id": "p"})
	pong := polite.Expect(ctxd.TypePong)
	assert.JSONEq(t, `"p"`, string(pong.ID))
	polite.SendJSON(map[string]any{"type": "context_set", "id": 1, "key": "polite", "value": true})
	types := map[string]string{}
	for range 2 { // the confirmation and the change, in either order
		m := polite.Next()
		types[m.Type] = m.Key
	}
	assert.Equal(t, map[string]string{ctxd.TypeContextSetConfirmed: "polite", ctxd.TypeContextUpdated: "polite"}, types)
	assert.Equal(t, 1, s.Hub().Clients())
}

// Every message counts, whatever its type: past the burst, each kind is
// answered rate_limited with its id and retry_after_ms, and not applied.
// With rate_limit_max_refused 0 the client is never closed, and a message
// sent after the retry_after_ms it was given is applied.
func TestRateLimitRetryAfter(t *testing.T) {
	s := rateLimitedServer(t, 2, 0)
	var last testkit.Frame
	var c *wsClient
	for _, m := range []map[string]any{
		{"type": "ping"}, {"type": "subscribe", "ns": "x"}, {"type": "unsubscribe", "ns": "x"}, {"type": "client_stats"},
		{"type": "client_register", "name": "n"}, {"type": "nope"}, {"type": "context_set", "key": "k", "value": 1},
	} {
		c = testkit.DialWatch(t, s.WatchURL(url.Values{"ns": {"elsewhere"}}), nil) // its writes are not echoed
		c.Expect(ctxd.TypeSubscribed)
		for range 10 {
			c.SendJSON(map[string]any{"type": "ping"})
		}
		m["id"] = "over"
		c.SendJSON(m)
		for range 10 {
			c.Expect(ctxd.TypePong)
		}
		last = c.Expect(ctxd.TypeError)
		assert.Equal(t, ctxd.CodeRateLimited, last.Code, "%v: %+v", m, last)
		assert.Equal(t, `"over"`, string(last.ID), "%v", m)
		assert.Positive(t, last.RetryAfterMS, "%v", m)
		assert.LessOrEqual(t, last.RetryAfterMS, int64(500), "%v: 2 per second", m)
	}
	_, err := s.Backend().Get(ctxd.DefaultNamespace, "k")
	assert.ErrorIs(t, err, ctxd.ErrNotFound, "a refused context_set wrote")

	time.Sleep(time.Duration(last.RetryAfterMS) * time.Millisecond) // what the server asked
	c.SendJSON(map[string]any{"type": "context_set", "id": "again", "key": "k", "value": 2})
	assert.Equal(t, ctxd.TypeContextSetConfirmed, c.Next().Type)
	assert.Equal(t, uint64(7), s.Hub().Stats().RateLimited)
	assert.Equal(t, uint64(0), s.Hub().Stats().RateLimitClosed)
}
