package socketio_test

import (
	"encoding/json"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/gorilla/websocket"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/framework0/ctxd"
	"github.com/framework0/ctxd/configs"
	"github.com/framework0/ctxd/internal/testkit"
)

// A Socket.IO client flooding context_set (with acks, over WebSocket) gets
// its burst applied (the CONNECT counts too), then for each packet past
// its limit an error event of code rate_limited with retry_after_ms and
// the same as the ack, none of them applied; past 20 refusals an error
// (and its ack), a DISCONNECT, and close 1008 with reason rate_limited. The store holds
// exactly the writes whose ack said they were applied (the
// context_set_confirmed of the last ones may not have come before the
// disconnect: it goes at its change's place in the feed). A polling client
// on the same server is not disturbed, and a polling client that floods in
// one POST is disconnected too.
func TestRateLimitSocketIO(t *testing.T) {
	srv := testkit.StartServer(t, testkit.WithConfig(func(c *configs.Config) {
		c.WebSocket.RateLimit, c.WebSocket.RateBurst, c.WebSocket.RateLimitMaxRefused = 50, 10, 20
	}))
	polite := dial(t, srv, sioOpts{})
	connected(t, polite, nil)
	flood := dial(t, srv, sioOpts{websocket: true})
	connected(t, flood, map[string]any{"ns": "other"})

	const sent = 200
	start := time.Now()
	for i := range sent {
		b, _ := json.Marshal([]any{"context_set", map[string]any{"ns": "default", "key": "flood-" + strconv.Itoa(i), "value": i}})
		flood.sendPacket("42" + strconv.Itoa(i) + string(b))
	}
	var (
		applied   = map[string]bool{}
		errs      []map[string]any
		acks      int
		confirmed []string
	)
	for done := false; !done; {
		p := flood.next()
		switch {
		case p == "1":
			done = true
		case strings.HasPrefix(p, "3"): // an ack
			var args []map[string]any
			_, data, _ := strings.Cut(p[1:], "[")
			require.NoError(t, json.Unmarshal([]byte("["+data), &args), p)
			if args[0]["status"] == "success" {
				applied[args[0]["key"].(string)] = true
			} else {
				assert.Equal(t, ctxd.CodeRateLimited, args[0]["code"], p)
				acks++
			}
		default:
			e := parseEvent(t, p)
			switch e.Name {
			case "context_set_confirmed":
				confirmed = append(confirmed, e.Data["key"].(string))
			case "error":
				assert.Equal(t, ctxd.CodeRateLimited, e.Data["code"], p)
				assert.Positive(t, e.Data["retry_after_ms"], p)
				errs = append(errs, e.Data)
			default:
				require.Equal(t, "client_stats", e.Name, p)
			}
		}
	}
	elapsed := time.Since(start)
	for _, k := range confirmed {
		assert.True(t, applied[k], "%s confirmed but its ack did not say so", k)
	}
	ce := flood.closeError()
	assert.Equal(t, websocket.ClosePolicyViolation, ce.Code)
	assert.Equal(t, ctxd.CodeRateLimited, ce.Text)
	assert.Len(t, errs, 21, "20 refusals, then the one that disconnects")
	assert.Equal(t, 21, acks, "each refused event with an ack id gets the error as its ack, the one that disconnects too")
	assert.GreaterOrEqual(t, len(applied), 9, "the burst (less the CONNECT) is applied")
	assert.LessOrEqual(t, float64(len(applied)), 9+50*elapsed.Seconds()+1, "no more than the burst and the rate")
	sio := srv.Server().SocketIO()
	assert.Equal(t, uint64(21), sio.RateLimited())
	assert.Equal(t, uint64(1), sio.RateLimitClosed())
	for i := range sent {
		key := "flood-" + strconv.Itoa(i)
		_, err := srv.Backend().Get(ctxd.DefaultNamespace, key)
		if applied[key] {
			assert.NoError(t, err, key)
		} else {
			assert.ErrorIs(t, err, ctxd.ErrNotFound, "%s was refused but written", key)
		}
	}

	// The polling client got the applied writes and goes on.
	for range len(applied) {
		assert.True(t, applied[polite.waitEvent("context_updated").Data["key"].(string)])
	}
	polite.emit("client_register", map[string]any{"type": "t", "name": "polite"})
	assert.Equal(t, "polite", polite.waitEvent("registration_confirmed").Data["name"])

	// A polling client that floods in one POST: disconnected too.
	pflood := dial(t, srv, sioOpts{})
	connected(t, pflood, nil)
	var body []string
	for range 100 { // refused and accepted in turn past the burst: more than 2 x 21
		body = append(body, `42["client_stats"]`)
	}
	pflood.sendPacket(strings.Join(body, "\x1e4"))
	for {
		if e := pflood.nextEvent(); e.Name == "error" && strings.Contains(e.Data["message"].(string), "disconnected") {
			break
		}
	}
	assert.Equal(t, "1", pflood.next(), "a DISCONNECT")
	<-pflood.pollDone
	assert.Equal(t, uint64(2), sio.RateLimitClosed())
}

// parseEvent decodes an EVENT packet.
func parseEvent(t *testing.T, p string) event {
	t.Helper()
	require.True(t, strings.HasPrefix(p, "2"), "want an event, got %q", p)
	var args []json.RawMessage
	require.NoError(t, json.Unmarshal([]byte(p[1:]), &args), p)
	var e event
	require.NoError(t, json.Unmarshal(args[0], &e.Name))
	e.Raw = args[1]
	_ = json.Unmarshal(args[1], &e.Data)
	return e
}
