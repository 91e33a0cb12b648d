package socketio_test

import (
	"encoding/json"
	"io"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/gorilla/websocket"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/framework0/ctxd"
	"github.com/framework0/ctxd/internal/testkit"
	"github.com/framework0/ctxd/internal/testkit/etcdkit"
)

// TestMain fails the run when a test leaves a goroutine running.
func TestMain(m *testing.M) {
	testkit.SmallLogSegments()
	testkit.VerifyNoLeaks(m, etcdkit.Stop)
}

// sio is a minimal Engine.IO v4 / Socket.IO v5 client for the tests:
// polling (a goroutine long-polls), WebSocket, and the upgrade. Every
// Socket.IO packet it receives goes to pkts, in order.
type sio struct {
	t    testing.TB
	base string // http://host:port/socket.io/?EIO=4
	hc   *http.Client
	open map[string]any // the handshake

	sid  string
	pkts chan string
	wg   sync.WaitGroup

	mu       sync.Mutex
	ws       *websocket.Conn
	upgraded bool
	ended    bool
	polls    int   // polls answered
	viaWS    int   // packets received over the WebSocket
	wsErr    error // what ended the WebSocket's reads (a *websocket.CloseError, say)

	pollDone chan struct{} // closed when the polling goroutine ends
}

type sioOpts struct {
	query     url.Values
	websocket bool // connect over WebSocket directly
	noPoll    bool // do not start the polling goroutine (a client that stops reading)
	noRead    bool // with websocket: do not read the WebSocket until read is called
}

func dial(t testing.TB, srv *testkit.Server, o sioOpts) *sio {
	t.Helper()
	q := url.Values{"EIO": {"4"}}
	for k, v := range o.query {
		q[k] = v
	}
	c := &sio{t: t, hc: &http.Client{Timeout: testkit.Deadline}, pkts: make(chan string, 100000), pollDone: make(chan struct{})}
	c.base = srv.URL + "/socket.io/?"
	if o.websocket {
		q.Set("transport", "websocket")
		ws, resp, err := websocket.DefaultDialer.Dial("ws"+strings.TrimPrefix(c.base, "http")+q.Encode(), nil)
		require.NoError(t, err)
		_ = resp.Body.Close()
		_, msg, err := ws.ReadMessage()
		require.NoError(t, err)
		c.handshake(string(msg))
		c.ws, c.upgraded = ws, true
		c.base += "sid=" + c.sid + "&"
		if !o.noRead {
			c.read()
		}
	} else {
		q.Set("transport", "polling")
		resp, err := c.hc.Get(c.base + q.Encode())
		require.NoError(t, err)
		body, _ := io.ReadAll(resp.Body)
		_ = resp.Body.Close()
		require.Equal(t, http.StatusOK, resp.StatusCode, string(body))
		c.handshake(string(body))
		c.base += "sid=" + c.sid + "&"
		if !o.noPoll {
			c.wg.Add(1)
			go c.pollLoop()
		} else {
			close(c.pollDone)
		}
	}
	t.Cleanup(c.close)
	return c
}

func (c *sio) handshake(p string) {
	require.True(c.t, strings.HasPrefix(p, "0"), "open packet: %q", p)
	require.NoError(c.t, json.Unmarshal([]byte(p[1:]), &c.open))
	c.sid, _ = c.open["sid"].(string)
	require.NotEmpty(c.t, c.sid)
	for _, f := range []string{"upgrades", "pingInterval", "pingTimeout", "maxPayload"} {
		require.Contains(c.t, c.open, f)
	}
}

// pollOnce does one polling GET and handles its packets; false: the
// session ended or the transport changed.
func (c *sio) pollOnce() bool {
	resp, err := c.hc.Get(c.base + "EIO=4&transport=polling")
	if err != nil {
		return false
	}
	body, _ := io.ReadAll(resp.Body)
	_ = resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return false
	}
	c.mu.Lock()
	c.polls++
	c.mu.Unlock()
	for _, p := range c.payload(string(body)) {
		if !c.handle(p) {
			return false
		}
		if p == "6" {
			c.mu.Lock()
			up := c.upgraded
			c.mu.Unlock()
			if up {
				return false
			}
		}
	}
	return true
}

// payload splits a polling answer into its packets, at most 16:
// python-engineio refuses more ("Too many packets in payload") and drops
// the session.
func (c *sio) payload(body string) []string {
	packets := strings.Split(body, "\x1e")
	assert.LessOrEqual(c.t, len(packets), 16, "packets in one polling answer")
	return packets
}

// pollInBackground starts polling a client dialled with noPoll, until
// its session ends, pausing for pause after each answer (0: none).
func (c *sio) pollInBackground(pause time.Duration) {
	c.wg.Add(1)
	go func() {
		defer c.wg.Done()
		for c.pollOnce() {
			time.Sleep(pause)
		}
	}()
}

func (c *sio) pollLoop() {
	defer c.wg.Done()
	defer close(c.pollDone)
	for c.pollOnce() {
		c.mu.Lock()
		stop := c.upgraded || c.ended
		c.mu.Unlock()
		if stop {
			return
		}
	}
}

// read starts reading the WebSocket (dial does, unless noRead).
func (c *sio) read() {
	c.wg.Add(1)
	go c.readWS()
}

func (c *sio) readWS() {
	defer c.wg.Done()
	for {
		_, msg, err := c.ws.ReadMessage()
		if err != nil {
			c.mu.Lock()
			c.wsErr = err
			c.mu.Unlock()
			return
		}
		c.mu.Lock()
		c.viaWS++
		c.mu.Unlock()
		if !c.handle(string(msg)) {
			return
		}
	}
}

// handle takes one Engine.IO packet; false at its close packet.
func (c *sio) handle(p string) bool {
	switch {
	case p == "1":
		c.mu.Lock()
		c.ended = true
		c.mu.Unlock()
		return false
	case p == "2":
		c.sendPacket("3")
	case strings.HasPrefix(p, "4"):
		c.pkts <- p[1:]
	}
	return true
}

// sendPacket sends one Engine.IO packet on the current transport.
func (c *sio) sendPacket(p string) {
	c.mu.Lock()
	ws := c.ws
	if ws != nil && c.upgraded {
		err := ws.WriteMessage(websocket.TextMessage, []byte(p))
		c.mu.Unlock()
		_ = err
		return
	}
	c.mu.Unlock()
	resp, err := c.hc.Post(c.base+"EIO=4&transport=polling", "text/plain;charset=UTF-8", strings.NewReader(p))
	if err == nil {
		_, _ = io.Copy(io.Discard, resp.Body)
		_ = resp.Body.Close()
	}
}

// upgrade probes a WebSocket for the polling session and switches to it.
func (c *sio) upgrade() {
	c.t.Helper()
	ws, resp, err := websocket.DefaultDialer.Dial("ws"+strings.TrimPrefix(c.base, "http")+"EIO=4&transport=websocket", nil)
	require.NoError(c.t, err)
	_ = resp.Body.Close()
	require.NoError(c.t, ws.WriteMessage(websocket.TextMessage, []byte("2probe")))
	_, msg, err := ws.ReadMessage()
	require.NoError(c.t, err)
	require.Equal(c.t, "3probe", string(msg))
	c.mu.Lock()
	c.ws, c.upgraded = ws, true
	require.NoError(c.t, ws.WriteMessage(websocket.TextMessage, []byte("5")))
	c.mu.Unlock()
	c.wg.Add(1)
	go c.readWS()
}

// connect sends the Socket.IO CONNECT with auth (nil: none) and returns
// the server's answer packet ("40{...}" or "44{...}").
func (c *sio) connect(auth any) string {
	c.t.Helper()
	p := "0"
	if auth != nil {
		b, _ := json.Marshal(auth)
		p += string(b)
	}
	c.sendPacket("4" + p)
	return c.next()
}

func (c *sio) emit(name string, data any) {
	b, _ := json.Marshal([]any{name, data})
	c.sendPacket("42" + string(b))
}

// waitPacket bounds the wait for one packet (every one is due at once).
const waitPacket = 15 * time.Second

// next returns the next Socket.IO packet.
func (c *sio) next() string {
	c.t.Helper()
	select {
	case p := <-c.pkts:
		return p
	case <-time.After(waitPacket):
		c.t.Fatal("no Socket.IO packet within the deadline")
		return ""
	}
}

// event is a received Socket.IO event.
type event struct {
	Name string
	Data map[string]any
	Raw  json.RawMessage
}

// nextEvent returns the next EVENT packet (others fail the test, except
// what skip accepts).
func (c *sio) nextEvent() event {
	c.t.Helper()
	return c.parseEvent(c.next())
}

// parseEvent decodes an EVENT packet.
func (c *sio) parseEvent(p string) event {
	c.t.Helper()
	require.True(c.t, strings.HasPrefix(p, "2"), "want an event, got %q", p)
	var args []json.RawMessage
	require.NoError(c.t, json.Unmarshal([]byte(p[1:]), &args), p)
	var e event
	require.NoError(c.t, json.Unmarshal(args[0], &e.Name))
	e.Raw = args[1]
	_ = json.Unmarshal(args[1], &e.Data)
	return e
}

// waitEvent returns the next event called name, skipping client_stats.
func (c *sio) waitEvent(name string) event {
	c.t.Helper()
	for {
		e := c.nextEvent()
		if e.Name == name {
			return e
		}
		require.Equal(c.t, "client_stats", e.Name, "want %s, got %s %s", name, e.Name, e.Raw)
	}
}

// closeError waits for the WebSocket transport's reads to end and returns
// the close frame that ended them.
func (c *sio) closeError() *websocket.CloseError {
	c.t.Helper()
	testkit.Eventually(c.t, func() bool {
		c.mu.Lock()
		defer c.mu.Unlock()
		return c.wsErr != nil
	}, "the WebSocket transport closed")
	c.mu.Lock()
	defer c.mu.Unlock()
	var ce *websocket.CloseError
	require.ErrorAs(c.t, c.wsErr, &ce)
	return ce
}

// close ends the session from the client side and waits for its
// goroutines.
func (c *sio) close() {
	c.mu.Lock()
	ended := c.ended
	c.mu.Unlock()
	if !ended {
		c.sendPacket("1")
	}
	c.mu.Lock()
	if c.ws != nil {
		_ = c.ws.Close()
	}
	c.mu.Unlock()
	c.wg.Wait()
}

// untilLagged polls a client that was cut "lagged" until its session
// ends, and returns the context_updated events it got (since its first
// packet) and the error's from_rev, which has no from_index. The session
// ends with its transport, not a Socket.IO DISCONNECT (which would tell
// the client not to come back): the last poll answers the error and a
// noop, the next one fails.
func (c *sio) untilLagged() (updates []event, from uint64) {
	c.t.Helper()
	updates, from, index := c.untilLaggedAt()
	require.Zero(c.t, index, "a lagged cut names a revision's end, for clients that resume with from_rev alone")
	return updates, from
}

// untilLaggedAt is untilLagged for a cut that may name a place inside a
// revision: it returns the error's from_index too (0: none).
func (c *sio) untilLaggedAt() (updates []event, from uint64, index int) {
	c.t.Helper()
	for c.pollOnce() {
	}
	for {
		var p string
		select {
		case p = <-c.pkts:
		default:
			require.NotZero(c.t, from, "a lagged error, then the end of the transport")
			return updates, from, index
		}
		switch {
		case strings.HasPrefix(p, "1"):
			c.t.Fatalf("a Socket.IO DISCONNECT: a client would not reconnect")
		case strings.HasPrefix(p, "0"): // the CONNECT's answer
			continue
		}
		e := c.parseEvent(p)
		switch e.Name {
		case ctxd.TypeContextUpdated:
			updates = append(updates, e)
		case ctxd.TypeError:
			require.Equal(c.t, ctxd.CodeLagged, e.Data["code"], "%s", e.Raw)
			from = uint64(e.Data["from_rev"].(float64))
			if i, ok := e.Data["from_index"].(float64); ok {
				require.Positive(c.t, i, "from_index is left out when 0: %s", e.Raw)
				index = int(i)
			}
		}
	}
}

// noDisconnect reads what the client has left once its transport ended,
// and fails at a Socket.IO DISCONNECT or an Engine.IO close packet: with
// either python-socketio does not reconnect.
func (c *sio) noDisconnect() {
	c.t.Helper()
	c.wg.Wait()
	c.mu.Lock()
	ended := c.ended
	c.mu.Unlock()
	require.False(c.t, ended, "an Engine.IO close packet")
	for {
		select {
		case p := <-c.pkts:
			require.NotEqual(c.t, "1", p, "a Socket.IO DISCONNECT")
		default:
			return
		}
	}
}
