package client

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/gorilla/websocket"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/framework0/ctxd"
	"github.com/framework0/ctxd/configs"
	"github.com/framework0/ctxd/internal/testkit"
	"github.com/framework0/ctxd/server"
	"github.com/framework0/ctxd/store/bolt"
)

// watchDeadline bounds every wait: a bug fails the test, never hangs it.
const watchDeadline = testkit.Deadline

// liveServer is the whole server (testkit.StartServer), restartable on the
// same address and data folder.
type liveServer struct {
	*testkit.Server
	t *testing.T
}

func startLive(t *testing.T) *liveServer {
	t.Helper()
	return &liveServer{Server: testkit.StartServer(t), t: t}
}

func (s *liveServer) url() string { return s.URL }

func (s *liveServer) put(key, value string) uint64 {
	rec, err := s.Backend().Put(context.Background(), "default", key, json.RawMessage(value), nil, "test")
	require.NoError(s.t, err)
	return rec.ModRev
}

// events collects what Watch hands to its callback.
type events struct {
	mu   sync.Mutex
	list []WatchEvent
	more chan struct{}
}

func newEvents() *events { return &events{more: make(chan struct{}, 1)} }

func (e *events) add(ev WatchEvent) error {
	e.mu.Lock()
	e.list = append(e.list, ev)
	e.mu.Unlock()
	select {
	case e.more <- struct{}{}:
	default:
	}
	return nil
}

// waitRev waits until an event with revision rev arrived.
func (e *events) waitRev(t *testing.T, rev uint64) []WatchEvent {
	t.Helper()
	timeout := time.After(watchDeadline)
	for {
		e.mu.Lock()
		n := len(e.list)
		done := n > 0 && e.list[n-1].Rev >= rev
		list := append([]WatchEvent(nil), e.list...)
		e.mu.Unlock()
		if done {
			return list
		}
		select {
		case <-e.more:
		case <-timeout:
			t.Fatalf("no event with revision %d within %v; got %d events", rev, watchDeadline, n)
		}
	}
}

func eventRevs(evs []WatchEvent) []uint64 {
	out := make([]uint64, len(evs))
	for i, ev := range evs {
		out[i] = ev.Rev
	}
	return out
}

func revRange(lo, hi uint64) []uint64 {
	var out []uint64
	for r := lo; r <= hi; r++ {
		out = append(out, r)
	}
	return out
}

// Watch delivers every change once, in order, across a server restart with
// writes made while the server was down.
func TestWatchAcrossRestart(t *testing.T) {
	s := startLive(t)
	c, err := New(s.url())
	require.NoError(t, err)
	s.put("before", "0") // rev 1: before the watch, not delivered

	ev := newEvents()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	var (
		reconnects []string
		connects   []uint64
		rmu        sync.Mutex
	)
	go func() {
		done <- c.Watch(ctx, WatchOptions{MinBackoff: 10 * time.Millisecond, MaxBackoff: 200 * time.Millisecond,
			OnReconnect: func(err error, _ time.Duration) {
				rmu.Lock()
				reconnects = append(reconnects, err.Error())
				rmu.Unlock()
			},
			OnConnect: func(rev uint64) {
				rmu.Lock()
				connects = append(connects, rev)
				rmu.Unlock()
			}}, ev.add)
	}()
	// The watch starts "from now": wait until it is connected.
	testkit.Eventually(t, func() bool { return s.Hub().Clients() == 1 })
	for i := range 100 {
		s.put(fmt.Sprintf("k%d", i), fmt.Sprint(i))
	}
	got := ev.waitRev(t, 101)
	assert.Equal(t, revRange(2, 101), eventRevs(got))
	assert.Equal(t, "k0", got[0].Key)
	assert.Equal(t, "put", got[0].Op)
	assert.JSONEq(t, "0", string(got[0].Value))

	// Restart, with writes while the server is down.
	s.Stop()
	st := testkit.OpenBoltAt(t, filepath.Join(s.DataDir(), server.DBFile), bolt.Options{})
	for i := range 50 {
		_, err := st.Put(context.Background(), "default", fmt.Sprintf("down%d", i), json.RawMessage("1"), nil, "offline")
		require.NoError(t, err)
	}
	st.CloseChecked()
	s.Start()
	for i := range 50 {
		s.put(fmt.Sprintf("after%d", i), "2")
	}
	got = ev.waitRev(t, 201)
	assert.Equal(t, revRange(2, 201), eventRevs(got), "every change once, in order")
	assert.Equal(t, "down0", got[100].Key)
	assert.Equal(t, "offline", got[100].Who)

	cancel()
	require.NoError(t, <-done, "a canceled watch returns nil")
	rmu.Lock()
	assert.NotEmpty(t, reconnects)
	assert.Equal(t, []uint64{1, 101}, connects, "connected from now (after 1), then resumed after 101")
	rmu.Unlock()
}

func TestWatchFromRevAndFilters(t *testing.T) {
	s := startLive(t)
	c, err := New(s.url())
	require.NoError(t, err)
	for i := range 10 {
		s.put(fmt.Sprintf("app/k%d", i), fmt.Sprint(i))
		s.put(fmt.Sprintf("other/k%d", i), fmt.Sprint(i))
	}
	_, err = s.Backend().Put(context.Background(), "team", "app/x", json.RawMessage("1"), nil, "t") // rev 21
	require.NoError(t, err)

	ev := newEvents()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() {
		done <- c.Watch(ctx, WatchOptions{Namespaces: []string{"default", "team"}, Prefix: "app/", FromRev: Expect(4)}, ev.add)
	}()
	got := ev.waitRev(t, 21)
	assert.Equal(t, []uint64{5, 7, 9, 11, 13, 15, 17, 19, 21}, eventRevs(got))
	assert.Equal(t, "team", got[len(got)-1].Namespace)
	cancel()
	require.NoError(t, <-done, "a canceled watch returns nil")
}

func TestWatchErrors(t *testing.T) {
	s := startLive(t)
	c, err := New(s.url())
	require.NoError(t, err)
	ctx := context.Background()
	noop := func(WatchEvent) error { return nil }

	// A refusal is returned, not retried.
	err = c.Watch(ctx, WatchOptions{Namespaces: []string{"bad ns"}}, noop)
	var ae *APIError
	require.ErrorAs(t, err, &ae)
	assert.Equal(t, http.StatusBadRequest, ae.Status)
	assert.Equal(t, CodeBadRequest, ae.Code)

	// Compacted history: an error that matches ctxd.ErrCompacted.
	for i := range 20 {
		s.put("k", fmt.Sprint(i))
	}
	_, err = s.Backend().CompactKeep(ctx, 15, 1)
	require.NoError(t, err)
	s.Restart() // a fresh hub: its ring of recent changes is empty
	err = c.Watch(ctx, WatchOptions{FromRev: Expect(2)}, noop)
	require.ErrorAs(t, err, &ae)
	assert.Equal(t, CodeCompacted, ae.Code)
	assert.Equal(t, uint64(15), ae.CompactedRevision)
	assert.ErrorIs(t, err, ctxd.ErrCompacted)

	// The callback's error ends the watch and is returned as is.
	stop := errors.New("enough")
	err = c.Watch(ctx, WatchOptions{FromRev: Expect(14)}, func(WatchEvent) error { return stop })
	assert.Same(t, stop, err)

	// No server: a connection error (exit code 3 for the CLI).
	s.Stop()
	err = c.Watch(ctx, WatchOptions{DialTimeout: 5 * time.Second}, noop)
	require.Error(t, err)
	assert.True(t, IsConnectionError(err), "%v", err)
}

// A server that takes the connection and never answers the handshake (a
// stopped process, a hung proxy): Watch ends when its context does, with
// nil, cancelled or past its deadline. It waited out DialTimeout on a
// cancel (the websocket library honours only a deadline once connected),
// and at a deadline the connection's own timeout sometimes won the race
// and was returned as an error.
func TestWatchEndsWhileConnecting(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	t.Cleanup(func() { ln.Close() })
	go func() {
		var held []net.Conn // accepted, never answered
		defer func() {
			for _, c := range held {
				c.Close()
			}
		}()
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			held = append(held, c)
		}
	}()
	c, err := New("http://" + ln.Addr().String())
	require.NoError(t, err)
	opts := WatchOptions{DialTimeout: time.Hour}
	noop := func(WatchEvent) error { return nil }

	ctx, cancel := context.WithCancel(context.Background())
	ended := make(chan error, 1)
	go func() { ended <- c.Watch(ctx, opts, noop) }()
	time.Sleep(50 * time.Millisecond)
	cancel()
	select {
	case err := <-ended:
		assert.NoError(t, err, "a cancelled Watch returns nil")
	case <-time.After(watchDeadline):
		t.Fatal("Watch went on connecting after its context was cancelled")
	}

	for i := range 20 {
		ctx, cancel := context.WithTimeout(context.Background(), time.Duration(10+i)*time.Millisecond)
		err := c.Watch(ctx, opts, noop)
		cancel()
		require.NoError(t, err, "Watch at its deadline, try %d", i)
	}
}

// A server that closes the client with "lagged" names where to resume: the
// client reconnects at once from there, and drops a change it already has.
func TestWatchLaggedResume(t *testing.T) {
	var (
		mu    sync.Mutex
		froms []string
	)
	up := websocket.Upgrader{}
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		froms = append(froms, r.URL.Query().Get("from_rev"))
		n := len(froms)
		mu.Unlock()
		conn, err := up.Upgrade(w, r, nil)
		if err != nil {
			return
		}
		defer conn.Close()
		send := func(s string) { _ = conn.WriteMessage(websocket.TextMessage, []byte(s)) }
		change := func(rev int) string {
			return fmt.Sprintf(`{"type":"context_updated","rev":%d,"ns":"default","key":"k%d","op":"put","value":%d,"version":1,"who":"w","timestamp":"2026-11-27T00:00:00Z"}`, rev, rev, rev)
		}
		if n == 1 {
			send(`{"type":"subscribed","rev":5}`)
			send(`{"type":"batch","messages":[` + change(6) + `,` + change(7) + `]}`)
			send(`{"type":"error","code":"lagged","from_rev":9,"message":"behind"}`)
			_ = conn.WriteMessage(websocket.CloseMessage, websocket.FormatCloseMessage(websocket.CloseTryAgainLater, "lagged"))
			_, _, _ = conn.ReadMessage()
			return
		}
		send(`{"type":"subscribed","rev":9}`)
		send(change(9)) // already covered: dropped
		send(change(10))
		_, _, _ = conn.ReadMessage()
	}))
	defer srv.Close()
	c, err := New(srv.URL)
	require.NoError(t, err)
	ev := newEvents()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- c.Watch(ctx, WatchOptions{MinBackoff: time.Hour}, ev.add) }() // no backoff wait after lagged
	got := ev.waitRev(t, 10)
	assert.Equal(t, []uint64{6, 7, 10}, eventRevs(got))
	cancel()
	require.NoError(t, <-done)
	mu.Lock()
	defer mu.Unlock()
	assert.Equal(t, []string{"", "9"}, froms)
	assert.True(t, strings.HasPrefix(srv.URL, "http://"))
}

// An event of a revision of several changes encodes its index, 0
// included, as the server's frames do (ctxd watch -o json printed the
// first change of every transaction without it); a lone change has
// neither index nor count.
func TestWatchEventJSONKeepsIndexZero(t *testing.T) {
	b, err := json.Marshal(WatchEvent{Type: EventChange, Rev: 7, Index: 0, Count: 3, Key: "a"})
	require.NoError(t, err)
	assert.Contains(t, string(b), `"index":0`)
	assert.Contains(t, string(b), `"count":3`)
	var back WatchEvent
	require.NoError(t, json.Unmarshal(b, &back))
	assert.Equal(t, WatchEvent{Type: EventChange, Rev: 7, Index: 0, Count: 3, Key: "a"}, back)

	b, err = json.Marshal(WatchEvent{Type: EventChange, Rev: 8, Key: "b"})
	require.NoError(t, err)
	assert.NotContains(t, string(b), `"index"`)
	assert.NotContains(t, string(b), `"count"`)
}

// A reset has no timestamp: its JSON has none either (ctxd watch -o json
// printed "0001-01-01T00:00:00Z"), as the server's reset frame.
func TestWatchEventJSONOfAReset(t *testing.T) {
	b, err := json.Marshal(WatchEvent{Type: EventReset, Rev: 9, Message: "restored"})
	require.NoError(t, err)
	assert.JSONEq(t, `{"type":"reset","rev":9,"message":"restored"}`, string(b))
}

// An event's JSON leaves HTML's characters to the encoder: an Encoder
// with SetEscapeHTML(false) (ctxd watch -o json) prints the value as
// stored; json.Marshal escapes them, as it does everywhere.
func TestWatchEventJSONEscapesOnlyWhenItsEncoderDoes(t *testing.T) {
	ev := WatchEvent{Type: EventChange, Rev: 1, Key: "a&b", Op: "put", Value: json.RawMessage(`"<p>&</p>"`)}
	var b bytes.Buffer
	enc := json.NewEncoder(&b)
	enc.SetEscapeHTML(false)
	require.NoError(t, enc.Encode(ev))
	assert.Equal(t, `{"type":"context_updated","rev":1,"key":"a&b","op":"put","value":"<p>&</p>"}`+"\n", b.String())
	m, err := json.Marshal(ev)
	require.NoError(t, err)
	assert.Equal(t, `{"type":"context_updated","rev":1,"key":"a\u0026b","op":"put","value":"\u003cp\u003e\u0026\u003c/p\u003e"}`, string(m))
}

// A Watch its caller cancels while a healthy but slow instance upgrades
// the connection leaves the client's preferred instance where it was:
// the cancel closed the connection, whose error read as the instance's
// failure and moved every later request and watch to the next one.
func TestWatchCancelledWhileConnectingKeepsTheInstance(t *testing.T) {
	var up websocket.Upgrader
	slow := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		time.Sleep(300 * time.Millisecond)
		c, err := up.Upgrade(w, r, nil)
		if err != nil {
			return
		}
		defer c.Close()
		_ = c.WriteJSON(map[string]any{"type": "subscribed", "rev": 1})
		for {
			if _, _, err := c.ReadMessage(); err != nil {
				return
			}
		}
	}))
	t.Cleanup(slow.Close)
	other := httptest.NewServer(http.NotFoundHandler())
	t.Cleanup(other.Close)
	c, err := New(slow.URL + "," + other.URL)
	require.NoError(t, err)
	for _, end := range []string{"cancel", "deadline"} {
		ctx, cancel := context.WithCancel(context.Background())
		if end == "deadline" {
			ctx, cancel = context.WithTimeout(context.Background(), 100*time.Millisecond)
		}
		ended := make(chan error, 1)
		go func() { ended <- c.Watch(ctx, WatchOptions{}, func(WatchEvent) error { return nil }) }()
		if end == "cancel" {
			time.Sleep(100 * time.Millisecond)
			cancel()
		}
		require.NoError(t, <-ended, end)
		cancel()
		assert.Equal(t, slow.URL, c.Servers()[0], "the preferred instance after a %s while connecting", end)
	}
}

// fn's error is returned as is when fn also ends ctx (a callback that
// cancels its watch and says why): Watch returned nil, taking it for its
// caller's cancel.
func TestWatchReturnsFnsErrorWhenFnEndsCtx(t *testing.T) {
	s := startLive(t)
	s.put("k", "1")
	c, err := New(s.url())
	require.NoError(t, err)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	stop := errors.New("enough")
	err = c.Watch(ctx, WatchOptions{FromRev: Expect(0)}, func(WatchEvent) error {
		cancel()
		return stop
	})
	assert.Same(t, stop, err)
}

// FromIndex without FromRev, which the server refuses (400), is refused at
// once, before connecting: it was dropped without a word.
func TestWatchFromIndexNeedsFromRev(t *testing.T) {
	c := noServer(t)
	err := c.Watch(context.Background(), WatchOptions{FromIndex: 2}, func(WatchEvent) error { return nil })
	require.ErrorIs(t, err, ctxd.ErrInvalid)
	assert.False(t, IsConnectionError(err), "not even tried: %v", err)
	assert.Contains(t, err.Error(), "FromIndex needs FromRev")
}

// A reconnection refused with a wait named (ctxd's 429 past
// http.rate_limit, with Retry-After) waits that long before it tries
// again: it tried every MaxBackoff (here 100ms), each attempt refused
// again, until the limit let one through.
func TestWatchHonoursRetryAfter(t *testing.T) {
	srv := testkit.StartServer(t, testkit.WithConfig(func(c *configs.Config) {
		c.HTTP.RateLimit, c.HTTP.RateBurst = 0.5, 1 // a token every 2s
	}))
	proxy := testkit.StartTCPProxy(t, srv.Addr) // to cut the watch's connection
	c, err := New("http://" + proxy.Addr())
	require.NoError(t, err)
	ctx, cancel := context.WithTimeout(context.Background(), watchDeadline)
	defer cancel()
	type retry struct {
		err  error
		wait time.Duration
	}
	retries := make(chan retry, 100)
	connected := make(chan uint64, 4)
	done := make(chan error, 1)
	go func() {
		done <- c.Watch(ctx, WatchOptions{MinBackoff: 50 * time.Millisecond, MaxBackoff: 100 * time.Millisecond,
			OnConnect:   func(rev uint64) { connected <- rev },
			OnReconnect: func(err error, wait time.Duration) { retries <- retry{err, wait} },
		}, newEvents().add)
	}()
	waitConnected(t, connected, done) // the token of the next 2s
	proxy.Cut()
	proxy.Heal()
	waitConnected(t, connected, done)
	cancel()
	require.NoError(t, <-done)
	close(retries)
	refused := 0
	for r := range retries {
		var ae *APIError
		if !errors.As(r.err, &ae) {
			continue // the cut connection
		}
		refused++
		require.Equal(t, http.StatusTooManyRequests, ae.Status, "%v", r.err)
		require.Positive(t, ae.RetryAfter)
		assert.GreaterOrEqual(t, r.wait, ae.RetryAfter, "the wait the server asked for: %v", r.err)
	}
	assert.Equal(t, 1, refused, "one refusal, then the wait it named")
}

// A Retry-After asking for hours (a proxy's, or a hostile one) is
// waited at most maxRetryAfter, or MaxBackoff when longer.
func TestWatchBoundsRetryAfter(t *testing.T) {
	live := startLive(t)
	target, err := url.Parse(live.URL)
	require.NoError(t, err)
	forward := httputil.NewSingleHostReverseProxy(target)
	var n atomic.Int64
	hostile := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if n.Add(1) == 1 {
			forward.ServeHTTP(w, r) // the first connection, upgraded
			return
		}
		w.Header().Set("Retry-After", "86400")
		w.WriteHeader(http.StatusServiceUnavailable)
	}))
	t.Cleanup(hostile.Close)
	proxy := testkit.StartTCPProxy(t, strings.TrimPrefix(hostile.URL, "http://"))

	for _, tt := range []struct {
		maxBackoff, want time.Duration
	}{
		{0, maxRetryAfter},
		{10 * time.Minute, 10 * time.Minute},
	} {
		n.Store(0)
		c, err := New("http://" + proxy.Addr())
		require.NoError(t, err)
		ctx, cancel := context.WithTimeout(context.Background(), watchDeadline)
		connected := make(chan uint64, 1)
		waits := make(chan time.Duration, 1)
		done := make(chan error, 1)
		go func() {
			done <- c.Watch(ctx, WatchOptions{MaxBackoff: tt.maxBackoff,
				OnConnect: func(rev uint64) { connected <- rev },
				OnReconnect: func(err error, wait time.Duration) {
					if asked(err) > 0 {
						waits <- wait
						cancel() // not waited here
					}
				},
			}, newEvents().add)
		}()
		waitConnected(t, connected, done)
		proxy.Cut()
		proxy.Heal()
		select {
		case wait := <-waits:
			assert.Equal(t, tt.want, wait, "MaxBackoff %v", tt.maxBackoff)
		case <-time.After(watchDeadline):
			t.Fatal("no refusal")
		}
		require.NoError(t, <-done)
		cancel()
	}
}

// rateLimited is a server that takes one request, then refuses the next
// ones (429) with a Retry-After of about 1/perSecond seconds, behind a
// proxy that can cut a watch's connection.
func rateLimited(t *testing.T, perSecond float64) *testkit.TCPProxy {
	t.Helper()
	srv := testkit.StartServer(t, testkit.WithConfig(func(c *configs.Config) {
		c.HTTP.RateLimit, c.HTTP.RateBurst = perSecond, 1
	}))
	return testkit.StartTCPProxy(t, srv.Addr)
}

// watchRetries runs a Watch on c until stop, given each reconnection's
// error and wait, says it is done; the Watch must connect once first,
// and is then cut off by proxy.
func watchRetries(t *testing.T, c *Client, proxy *testkit.TCPProxy, stop func(err error, wait time.Duration) bool) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), watchDeadline)
	defer cancel()
	connected := make(chan uint64, 1)
	done := make(chan error, 1)
	go func() {
		done <- c.Watch(ctx, WatchOptions{MinBackoff: 10 * time.Millisecond, MaxBackoff: 20 * time.Millisecond,
			OnConnect: func(rev uint64) { connected <- rev },
			OnReconnect: func(err error, wait time.Duration) {
				if stop(err, wait) {
					cancel() // not waited here
				}
			},
		}, newEvents().add)
	}()
	waitConnected(t, connected, done)
	proxy.Cut()
	proxy.Heal()
	require.NoError(t, <-done)
	require.NotErrorIs(t, ctx.Err(), context.DeadlineExceeded, "the watch did not get there")
}

// Issue: Watch honoured only the last refused instance's Retry-After. With
// instance A asking 30s and B unreachable, B's failure ended the round
// with B's backoff, and A was tried again at once (and refused again,
// each time): a rate-limited instance taken for longer than it asked.
// Now each instance has its own wait: A is not tried again before its
// Retry-After, B with its backoff meanwhile.
func TestWatchWaitsOutEachInstancesRetryAfter(t *testing.T) {
	a := rateLimited(t, 1.0/30) // the watch's connection, then 30 s
	c, err := New("http://" + a.Addr() + ",http://" + testkit.FreeAddr(t))
	require.NoError(t, err)
	refusals, unreachable := 0, 0
	watchRetries(t, c, a, func(err error, wait time.Duration) bool {
		if asked(err) > 0 {
			refusals++
			assert.Zero(t, wait, "B is tried at once: %v", err)
			assert.Contains(t, err.Error(), a.Addr(), "which instance refused")
		} else if IsConnectionError(err) && strings.Contains(err.Error(), "refused") {
			unreachable++
			assert.Less(t, wait, time.Second, "B's backoff, not A's Retry-After: %v", err)
		}
		return unreachable == 5
	})
	assert.Equal(t, 1, refusals, "A asked for 30 s: not tried again meanwhile")
}

// With every instance refusing with a wait, the next attempt is after the
// shortest, on the instance that asked for it: the last refusal's wait
// was taken, here B's 50 s where A asked 20 s.
func TestWatchWaitsTheShortestRetryAfter(t *testing.T) {
	a := rateLimited(t, 1.0/20) // the watch's connection, then 20 s
	b := rateLimited(t, 1.0/50)
	resp, err := http.Get("http://" + b.Addr() + "/v1/status") // B's one request: it refuses the watch
	require.NoError(t, err)
	require.NoError(t, resp.Body.Close())
	c, err := New("http://" + a.Addr() + ",http://" + b.Addr())
	require.NoError(t, err)
	var waitA time.Duration
	watchRetries(t, c, a, func(err error, wait time.Duration) bool {
		switch {
		case asked(err) == 0: // the cut connection
			return false
		case waitA == 0:
			waitA = asked(err)
			assert.Zero(t, wait, "B is tried at once: %v", err)
			return false
		}
		require.Greater(t, asked(err), waitA, "B asks for longer")
		// What is left of A's Retry-After, the shortest, not B's.
		assert.LessOrEqual(t, wait, waitA, "%v", err)
		assert.Greater(t, wait, waitA/2, "%v", err)
		return true
	})
}

// A watch that connected to the next instance while the first one's
// Retry-After runs, and is then cut off, reconnects to the instance that
// served it after MinBackoff, not to the client's preferred one (moved
// back to the first by another request) once that one's wait is over.
func TestWatchCutOffReconnectsToItsInstance(t *testing.T) {
	a := rateLimited(t, 1.0/30)
	resp, err := http.Get("http://" + a.Addr() + "/v1/status") // A's one request: it refuses the watch
	require.NoError(t, err)
	require.NoError(t, resp.Body.Close())
	b := testkit.StartTCPProxy(t, testkit.StartServer(t).Addr)
	c, err := New("http://" + a.Addr() + ",http://" + b.Addr())
	require.NoError(t, err)
	ctx, cancel := context.WithTimeout(context.Background(), watchDeadline)
	defer cancel()
	connected := make(chan uint64, 4)
	waits := make(chan time.Duration, 16)
	done := make(chan error, 1)
	go func() {
		done <- c.Watch(ctx, WatchOptions{MinBackoff: 10 * time.Millisecond, MaxBackoff: 20 * time.Millisecond,
			OnConnect: func(rev uint64) { connected <- rev },
			OnReconnect: func(err error, wait time.Duration) {
				if asked(err) == 0 {
					waits <- wait
				}
			},
		}, newEvents().add)
	}()
	waitConnected(t, connected, done) // on B
	// Another request of the client moved its preference back to A (B
	// answered it 503, say).
	c.preferred.Store(0)
	b.Cut()
	b.Heal()
	assert.Less(t, <-waits, time.Second, "B's MinBackoff, not A's Retry-After")
	waitConnected(t, connected, done)
	cancel()
	require.NoError(t, <-done)
}
