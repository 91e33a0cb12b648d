package socketio_test

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/rs/zerolog"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/framework0/ctxd"
	"github.com/framework0/ctxd/internal/testkit"
	"github.com/framework0/ctxd/realtime/socketio"
	"github.com/framework0/ctxd/store/bolt"
)

// engine is a bare Engine.IO polling session against the Socket.IO door
// alone, for the tests of its own limits.
type engine struct {
	t    *testing.T
	url  string // the server's, for more sessions on it
	base string // .../socket.io/?EIO=4&transport=polling&sid=...
	// srv and st are the server and its store (startEngine's).
	srv *socketio.Server
	st  *testkit.Bolt
}

func startEngine(t *testing.T, opts socketio.Options) *engine {
	t.Helper()
	st := testkit.OpenBolt(t, bolt.Options{})
	s := socketio.New(st.Store, opts, zerolog.Nop())
	hs := httptest.NewServer(s)
	t.Cleanup(func() { _ = s.Close(); hs.Close() })
	e := newEngine(t, hs.URL)
	e.srv, e.st = s, st
	return e
}

// newEngine opens a polling session on the server at url.
func newEngine(t *testing.T, url string) *engine {
	t.Helper()
	res, err := http.Get(url + "/socket.io/?EIO=4&transport=polling")
	require.NoError(t, err)
	body, _ := io.ReadAll(res.Body)
	_ = res.Body.Close()
	require.Equal(t, http.StatusOK, res.StatusCode, "%s", body)
	var open struct {
		SID string `json:"sid"`
	}
	require.NoError(t, json.Unmarshal(body[1:], &open), "%s", body)
	return &engine{t: t, url: url, base: url + "/socket.io/?EIO=4&transport=polling&sid=" + open.SID}
}

// post sends packets in one polling POST.
func (e *engine) post(packets ...string) {
	e.t.Helper()
	res, err := http.Post(e.base, "text/plain", strings.NewReader(strings.Join(packets, "\x1e")))
	require.NoError(e.t, err)
	_ = res.Body.Close()
}

// postAsync sends packets in one polling POST from a goroutine of its
// own, for a POST the server may hold: its error comes once it ends.
func (e *engine) postAsync(packets ...string) <-chan error {
	done := make(chan error, 1)
	go func() {
		res, err := http.Post(e.base, "text/plain", strings.NewReader(strings.Join(packets, "\x1e")))
		if err == nil {
			_ = res.Body.Close()
		}
		done <- err
	}()
	return done
}

// poll does one polling GET: its packets, none when nothing came within
// a second, or nil once the session is gone.
func (e *engine) poll() []string {
	e.t.Helper()
	res, err := (&http.Client{Timeout: time.Second}).Get(e.base)
	var timeout interface{ Timeout() bool }
	if errors.As(err, &timeout) && timeout.Timeout() {
		return []string{}
	}
	require.NoError(e.t, err)
	body, _ := io.ReadAll(res.Body)
	_ = res.Body.Close()
	if res.StatusCode != http.StatusOK {
		return nil
	}
	return strings.Split(string(body), "\x1e")
}

// A polling client that posts pings and never polls stalls itself: the
// server handles its packets while fewer than 512 wait for it, then holds
// its POST until it polls. Before, 20 posts of 1 MB of pings took the
// server from 31 to 454 MB; then the session was closed past 1,024
// packets waiting.
func TestAClientThatPostsAndNeverPollsStallsItself(t *testing.T) {
	e := startEngine(t, socketio.Options{PingInterval: time.Hour, PingTimeout: time.Hour})
	pings := make([]string, 2000)
	for i := range pings {
		pings[i] = "2x"
	}
	posted := e.postAsync(pings...)
	testkit.Eventually(t, func() bool { return e.srv.Backlog().Stalled == 1 })
	assert.LessOrEqual(t, e.srv.Backlog().Packets, 512, "packets waiting for the client")
	pongs := 0
	for pongs < len(pings) {
		packets := e.poll()
		require.NotNil(t, packets, "the session is gone after %d pongs", pongs)
		for _, p := range packets {
			if p == "3x" {
				pongs++
			}
		}
	}
	require.NoError(t, <-posted)
}

// A client that sends context_set events with large values and reads
// nothing stalls itself: the server holds about 1 MiB of its answers
// (each ack carries the value, as does the confirmation), not all of
// them. Before, 40 sets of 64 KiB values had their 40 acks queued, 2.6
// MB (and up to 1,024 packets before the session was closed: 2 GB with
// values of 1 MB).
func TestAClientThatSetsAndNeverReadsStallsItself(t *testing.T) {
	e := startEngine(t, socketio.Options{PingInterval: time.Hour, PingTimeout: time.Hour})
	e.post("40")
	value := `"` + strings.Repeat("v", 64<<10) + `"`
	// 4 POSTs of 10 sets (a POST is at most 1 MB), one after the other.
	const posts, perPost = 4, 10
	posted := make(chan error, 1)
	go func() {
		for i := range posts {
			sets := make([]string, perPost)
			for j := range sets {
				sets[j] = `42` + strconv.Itoa(i*perPost+j) + `["context_set",{"key":"k` + strconv.Itoa(j) + `","value":` + value + `}]`
			}
			if err := <-e.postAsync(sets...); err != nil {
				posted <- err
				return
			}
		}
		posted <- nil
	}()
	testkit.Eventually(t, func() bool { return e.srv.Backlog().Stalled == 1 || e.st.Revision() == posts*perPost })
	b := e.srv.Backlog()
	assert.Less(t, b.AnswerBytes, 1<<20+2*(64<<10+100), "answer bytes queued for the client")
	assert.Equal(t, 1, b.Stalled, "the client's packets wait for its answers to drain")
	assert.Less(t, e.st.Revision(), uint64(posts*perPost), "writes applied")

	// Once it polls, every set is applied and acknowledged.
	acks := map[string]bool{}
	for len(acks) < posts*perPost {
		packets := e.poll()
		require.NotNil(t, packets, "the session is gone after %d acks", len(acks))
		for _, p := range packets {
			if strings.HasPrefix(p, "43") {
				acks[p[2:strings.IndexByte(p, '[')]] = true
			}
		}
	}
	require.NoError(t, <-posted)
	assert.Equal(t, uint64(posts*perPost), e.st.Revision())
}

// A packet that waited for room (awaitRoom) while its session was
// closed is dropped, as one read after the close is: the session can no
// longer answer it. Before, the context_set held back was applied once
// the close woke its reader, unacknowledged, and a client that sent it
// again on its new session (the outcome unknown to it) had it applied
// twice.
func TestAPacketHeldBackIsDroppedWhenItsSessionCloses(t *testing.T) {
	e := startEngine(t, socketio.Options{PingInterval: time.Hour, PingTimeout: time.Hour})
	e.post("40")
	value := `"` + strings.Repeat("v", 64<<10) + `"`
	posted := make(chan error, 1)
	go func() { // 3 POSTs of 10 sets, one after the other: the second stalls
		for i := range 3 {
			sets := make([]string, 10)
			for j := range sets {
				sets[j] = `42` + strconv.Itoa(i*10+j) + `["context_set",{"key":"k` + strconv.Itoa(j) + `","value":` + value + `}]`
			}
			if err := <-e.postAsync(sets...); err != nil {
				posted <- err
				return
			}
		}
		posted <- nil
	}()
	testkit.Eventually(t, func() bool { return e.srv.Backlog().Stalled == 1 })
	applied := e.st.Revision()
	closed := make(chan error, 1)
	go func() { closed <- e.srv.Close() }()
	// Once the close has ended the session (no client left), the client
	// polls what was queued before it: left there, it held Close for
	// closeWait (2 s), for a poll that never came.
	testkit.Eventually(t, func() bool { return e.srv.Clients() == 0 }, "the session closed")
	for e.poll() != nil {
	}
	require.NoError(t, <-closed)
	require.NoError(t, <-posted)
	assert.Equal(t, applied, e.st.Revision(), "a set applied after its session closed")
}

// A ping's data is echoed only up to a probe's: a ping of 100 KB is
// not 100 KB queued.
func TestALargePingIsNotEchoed(t *testing.T) {
	e := startEngine(t, socketio.Options{PingInterval: time.Hour, PingTimeout: time.Hour})
	e.post("2" + strings.Repeat("x", 100<<10))
	e.post("2probe")
	assert.Equal(t, []string{"3", "3probe"}, e.poll())
}

// A session that sends no Socket.IO CONNECT within the connect timeout is
// closed: it held a place of max_clients for as long as it answered pings.
func TestASessionWithoutConnectIsClosed(t *testing.T) {
	e := startEngine(t, socketio.Options{ConnectTimeout: 200 * time.Millisecond, PingInterval: time.Hour, PingTimeout: time.Hour})
	testkit.Eventually(t, func() bool {
		packets := e.poll()
		return packets == nil || (len(packets) > 0 && packets[len(packets)-1] == "1")
	}, "the session is closed")
}

// Sessions that have not CONNECTed yet are capped per client address (a
// tenth of max_clients, at least 32): a client with no token that opened
// thousands of handshakes kept every other client out until the connect
// timeout closed them. Others (another address) still get in, and a
// session that CONNECTs gives its address's place back.
func TestWaitingSessionsAreCappedPerAddress(t *testing.T) {
	st := testkit.OpenBolt(t, bolt.Options{})
	s := socketio.New(st.Store, socketio.Options{MaxClients: 100, PingInterval: time.Hour, PingTimeout: time.Hour}, zerolog.Nop())
	hs := httptest.NewServer(s)
	t.Cleanup(func() { _ = s.Close(); hs.Close() })
	from := func(ip string) *http.Client {
		d := &net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP(ip)}}
		return &http.Client{Timeout: testkit.Deadline, Transport: &http.Transport{DialContext: d.DialContext}}
	}
	handshake := func(hc *http.Client) (int, string) {
		res, err := hc.Get(hs.URL + "/socket.io/?EIO=4&transport=polling")
		require.NoError(t, err)
		body, _ := io.ReadAll(res.Body)
		_ = res.Body.Close()
		var open struct {
			SID string `json:"sid"`
		}
		if res.StatusCode == http.StatusOK {
			require.NoError(t, json.Unmarshal(body[1:], &open), "%s", body)
		}
		return res.StatusCode, open.SID
	}
	flood := from("127.0.0.1")
	var first string
	for i := range 32 {
		code, sid := handshake(flood)
		require.Equal(t, http.StatusOK, code, "handshake %d", i)
		if i == 0 {
			first = sid
		}
	}
	code, _ := handshake(flood)
	assert.Equal(t, http.StatusServiceUnavailable, code, "a 33rd session waiting to CONNECT from one address")
	code, _ = handshake(from("127.0.0.2"))
	assert.Equal(t, http.StatusOK, code, "another address gets in")

	// The first session CONNECTs: one place of its address is free again.
	res, err := flood.Post(hs.URL+"/socket.io/?EIO=4&transport=polling&sid="+first, "text/plain", strings.NewReader("40"))
	require.NoError(t, err)
	_ = res.Body.Close()
	// Its poll takes the CONNECT's answer: left queued, it held the
	// server's Close for closeWait (2 s), for a poll that never came.
	res, err = flood.Get(hs.URL + "/socket.io/?EIO=4&transport=polling&sid=" + first)
	require.NoError(t, err)
	body, _ := io.ReadAll(res.Body)
	_ = res.Body.Close()
	require.True(t, strings.HasPrefix(string(body), `40{"sid"`), "the CONNECT's answer: %s", body)
	testkit.Eventually(t, func() bool { c, _ := handshake(flood); return c == http.StatusOK }, "a place again once one CONNECTed")
}

// A polling client whose waiting poll ends (it gave up, or its
// connection dropped) just as its session is cut lagged gets what the
// cut queued, the error with where to resume included, at its next
// poll, then the noop that ends the session. The session ended while
// that poll was on its way out (socketio.OnPollGaveUp holds it there:
// the window is too narrow to hit otherwise) with fewer packets queued
// than one answer holds; before, it was dropped at once, counting on the
// poll to take them: they were lost and the next poll was refused
// (checked: the first poll below gets 400).
func TestAPollThatEndsAsItsSessionIsCutLeavesTheErrorForTheNext(t *testing.T) {
	const window, maxLag = 4, 8
	e := startEngine(t, socketio.Options{Window: window, MaxLag: maxLag, PingInterval: time.Hour, PingTimeout: time.Hour})
	e.connect()

	resume, polled := e.pollThatGivesUp()

	// Meanwhile the feed fills the window and the client falls more than
	// max_lag changes behind: cut, with the window and the error queued.
	var revs []uint64
	for i := range window + maxLag + 1 {
		ch, err := e.st.Store.Put(context.Background(), "default", "k"+strconv.Itoa(i), json.RawMessage(`1`), nil, "t")
		require.NoError(t, err)
		revs = append(revs, ch.ModRev)
	}
	testkit.Eventually(t, func() bool { return e.srv.Lagged() == 1 && e.srv.Clients() == 0 }, "cut lagged, the session ended")
	resume()
	require.ErrorIs(t, <-polled, context.Canceled)

	packets := e.poll()
	require.NotNil(t, packets, "the next poll is refused: what the cut queued is lost")
	require.Len(t, packets, window+2, "the window, the error and the noop: %q", packets)
	for i, p := range packets[:window] {
		u := parseEvent(t, p[1:])
		require.Equal(t, ctxd.TypeContextUpdated, u.Name)
		assert.Equal(t, float64(revs[i]), u.Data["rev"], "change %d", i)
	}
	lagged := parseEvent(t, packets[window][1:])
	require.Equal(t, ctxd.TypeError, lagged.Name)
	assert.Equal(t, ctxd.CodeLagged, lagged.Data["code"])
	assert.Equal(t, float64(revs[window-1]), lagged.Data["from_rev"], "where to resume: after the last change it got")
	assert.Equal(t, "6", packets[window+1], "a noop ends the session")
	assert.Nil(t, e.poll(), "the poll after the noop is refused")
}

// connect sends the Socket.IO CONNECT and polls until the snapshot came:
// the client's next poll waits.
func (e *engine) connect() {
	e.t.Helper()
	e.post("40")
	for snapshot := false; !snapshot; {
		packets := e.poll()
		require.NotNil(e.t, packets, "the session is gone before its snapshot")
		for _, p := range packets {
			snapshot = snapshot || strings.HasPrefix(p, `42["context_snapshot"`)
		}
	}
}

// pollThatGivesUp starts a poll that waits, then ends its request, and
// holds the server's poll between the request's end and its letting go
// of the session (socketio.OnPollGaveUp: the window is too narrow to hit
// otherwise) until resume is called; polled then has the request's error.
func (e *engine) pollThatGivesUp() (resume func(), polled <-chan error) {
	e.t.Helper()
	gaveUp, release := make(chan struct{}, 1), make(chan struct{})
	socketio.OnPollGaveUp(e.srv, func() {
		select {
		case gaveUp <- struct{}{}:
		default:
		}
		<-release
	})
	ctx, cancel := context.WithCancel(context.Background())
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, e.base, nil)
	require.NoError(e.t, err)
	done := make(chan error, 1)
	go func() {
		res, err := http.DefaultClient.Do(req)
		if err == nil {
			_ = res.Body.Close()
		}
		done <- err
	}()
	testkit.Eventually(e.t, func() bool { return socketio.WaitingPolls(e.srv) == 1 }, "the poll waits")
	cancel()
	select {
	case <-gaveUp:
	case <-time.After(testkit.Deadline):
		e.t.Fatal("the server did not see the poll's request end")
	}
	return func() { close(release) }, done
}

// A polling client whose waiting poll ends just as its session is closed
// for good with nothing queued (here: it posted a packet the server does
// not take) gets the Engine.IO close packet at its next poll, not 400
// (unknown session), which clients take for a transport error and
// reconnect after. The session ended while that poll was on its way out
// (pollThatGivesUp); before, one with nothing queued was dropped at
// once, counting on the poll to take the close packet (checked: the
// first poll below gets 400).
func TestAPollThatEndsAsItsSessionClosesLeavesTheCloseForTheNext(t *testing.T) {
	e := startEngine(t, socketio.Options{PingInterval: time.Hour, PingTimeout: time.Hour})
	e.connect()

	resume, polled := e.pollThatGivesUp()
	e.post("bAAAA") // a binary packet: closed, and nothing queued
	testkit.Eventually(t, func() bool { return e.srv.Clients() == 0 }, "the session ended")
	resume()
	require.ErrorIs(t, <-polled, context.Canceled)

	assert.Equal(t, []string{"1"}, e.poll(), "the close packet ends the session")
	assert.Nil(t, e.poll(), "the poll after the close packet is refused")
}

// A polling client closed for good between two polls, no poll of its
// waiting (here: it posted a packet the server does not take), gets the
// Engine.IO close packet at its next poll, not 400 (unknown session),
// which clients take for a lost transport and reconnect after. Before,
// a session closed with nothing queued and no poll waiting was dropped
// at once (checked: the first poll below gets 400). One whose client
// never polls again lingers PingTimeout at most: the server's sessions
// come back to none (checked: without end's timer, one stays).
func TestASessionClosedBetweenPollsLeavesTheCloseForTheNext(t *testing.T) {
	e := startEngine(t, socketio.Options{PingInterval: time.Hour, PingTimeout: 200 * time.Millisecond})
	e.connect()
	e.post("bAAAA") // a binary packet: closed, and nothing queued
	require.Equal(t, 0, e.srv.Clients(), "the session ended")
	assert.Equal(t, []string{"1"}, e.poll(), "the close packet ends the session")
	assert.Nil(t, e.poll(), "the poll after the close packet is refused")

	gone := newEngine(t, e.url) // closed the same way, and never polled again
	gone.connect()
	gone.post("bAAAA")
	require.Equal(t, 1, e.srv.Sessions(), "it lingers for its close packet")
	testkit.Eventually(t, func() bool { return e.srv.Sessions() == 0 }, "dropped once PingTimeout passed")
}

// A shutdown does not wait for a session kept for its close packet alone
// (closed for good between polls, nothing queued): the client will find
// the server gone either way. Close forgets it at once (checked: without
// that, Close waits its 2 s for a poll and returns with the session still
// kept).
func TestShutdownForgetsASessionKeptForItsClosePacket(t *testing.T) {
	e := startEngine(t, socketio.Options{PingInterval: time.Hour, PingTimeout: time.Hour})
	e.connect()
	e.post("bAAAA")
	require.Equal(t, 1, e.srv.Sessions(), "it lingers for its close packet")
	require.NoError(t, e.srv.Close())
	assert.Equal(t, 0, e.srv.Sessions())
}

// Sessions no poll will come for are not kept for their close packet:
// one its client closed (its Engine.IO close packet), and one whose
// WebSocket handshake failed (checked: each is kept when every session
// closed for good with nothing queued lingers).
func TestASessionNoPollWillComeForIsNotKept(t *testing.T) {
	e := startEngine(t, socketio.Options{PingInterval: time.Hour, PingTimeout: time.Hour})
	e.connect()
	e.post("1")
	assert.Equal(t, 0, e.srv.Sessions(), "closed by its client")

	res, err := http.Get(e.url + "/socket.io/?EIO=4&transport=websocket") // not a WebSocket handshake
	require.NoError(t, err)
	_ = res.Body.Close()
	require.Equal(t, http.StatusBadRequest, res.StatusCode)
	testkit.Eventually(t, func() bool { return e.srv.Sessions() == 0 }, "its WebSocket handshake failed")
}

// A polling session its client closes (its Engine.IO close packet, its
// Socket.IO DISCONNECT) while packets are still queued for it is dropped
// at once, as engine.io does: the client polls no more. Before, it was
// kept until PingTimeout, and held a shutdown for closeWait (2 s),
// waiting for a poll that never came (checked: without the fix each
// stays in the server's sessions).
func TestASessionItsClientClosesWithPacketsQueuedIsNotKept(t *testing.T) {
	e := startEngine(t, socketio.Options{PingInterval: time.Hour, PingTimeout: time.Hour})
	e.connect()
	e.post("2", "1") // a ping, its pong queued and never polled, then the close packet
	assert.Equal(t, 0, e.srv.Sessions(), "closed by its Engine.IO close packet")

	disconnected := newEngine(t, e.url)
	disconnected.connect()
	disconnected.post("2", "41")
	assert.Equal(t, 0, e.srv.Sessions(), "closed by its Socket.IO DISCONNECT")
}

// A session kept for its close packet that never CONNECTed still counts
// as waiting to CONNECT from its address until it is dropped: a client
// with no token that opened sessions and ended each at once (a packet the
// server does not take) had each kept PingTimeout, past its address's
// share, and filled max_clients for everyone (checked: without it, the
// 39 sessions after the first are all kept and another address is
// refused).
func TestSessionsKeptForTheirClosePacketCountAgainstTheirAddress(t *testing.T) {
	e := startEngine(t, socketio.Options{MaxClients: 40, PingInterval: time.Hour, PingTimeout: time.Hour})
	opened := 1 // e's
	for range 39 {
		res, err := http.Get(e.url + "/socket.io/?EIO=4&transport=polling")
		require.NoError(t, err)
		body, _ := io.ReadAll(res.Body)
		_ = res.Body.Close()
		if res.StatusCode != http.StatusOK {
			require.Equal(t, http.StatusServiceUnavailable, res.StatusCode)
			assert.Contains(t, string(body), "waiting to CONNECT")
			break
		}
		opened++
		var open struct {
			SID string `json:"sid"`
		}
		require.NoError(t, json.Unmarshal(body[1:], &open), "%s", body)
		ended := &engine{t: t, url: e.url, base: e.url + "/socket.io/?EIO=4&transport=polling&sid=" + open.SID}
		ended.post("bAAAA") // closed, and kept for its close packet
	}
	assert.Equal(t, 32, opened, "sessions from one address waiting to CONNECT or kept, never CONNECTed")
	d := &net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP("127.0.0.2")}}
	other := &http.Client{Timeout: testkit.Deadline, Transport: &http.Transport{DialContext: d.DialContext}}
	res, err := other.Get(e.url + "/socket.io/?EIO=4&transport=polling")
	require.NoError(t, err)
	_ = res.Body.Close()
	assert.Equal(t, http.StatusOK, res.StatusCode, "another address gets in")
}
