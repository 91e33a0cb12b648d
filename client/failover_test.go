package client

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/framework0/ctxd"
	"github.com/framework0/ctxd/configs"
	"github.com/framework0/ctxd/internal/testkit"
	"github.com/framework0/ctxd/internal/testkit/etcdkit"
)

// Issue #16: a client of several instances of one deployment (two ctxd
// instances on one etcd prefix, and an address where nothing listens)
// reaches an instance that is up, and moves to the other when its
// instance stops: writes, reads, exports, imports and snapshot uploads go
// on, and its Watch resumes on the other instance with every change once,
// in order.
func TestFailoverOverInstances(t *testing.T) {
	endpoint, prefix := etcdkit.Shared(t).Endpoint, etcdkit.Prefix(t.TempDir())
	a := testkit.StartServer(t, testkit.WithEtcd(endpoint, prefix))
	b := testkit.StartServer(t, testkit.WithEtcd(endpoint, prefix))
	servers := strings.Join([]string{"http://" + testkit.FreeAddr(t), a.URL, b.URL}, ",")
	tr := &http.Transport{}
	t.Cleanup(tr.CloseIdleConnections)
	c, err := New(servers, WithWho("failover"), WithHTTPClient(&http.Client{Transport: tr}))
	require.NoError(t, err)
	// The watch has a client of its own: it finds its instances itself.
	wc, err := New(servers)
	require.NoError(t, err)
	ctx := context.Background()

	// put writes a new key as a careful caller does: if and only if it
	// does not exist, so that a put whose outcome is unknown (sent on a
	// kept-alive connection the stopped instance had closed) can be sent
	// again; a conflict then means the first one applied.
	put := func(key string) Record {
		t.Helper()
		value := json.RawMessage(`"` + key + `"`)
		for try := 1; ; try++ {
			rec, err := c.Put(ctx, "", key, value, PutOptions{IfVersion: Expect(0)})
			if IsOutcomeUnknown(err) && try < 3 {
				continue
			}
			if IsConflict(err) {
				rec, err = c.Get(ctx, "", key, GetOptions{})
				require.NoError(t, err, key)
				require.JSONEq(t, string(value), string(rec.Value))
			}
			require.NoError(t, err, key)
			return rec
		}
	}
	first := put("k0")
	assert.Equal(t, a.URL, c.Servers()[0], "the instance that took the put stays preferred")

	ev := newEvents()
	wctx, cancel := context.WithCancel(ctx)
	done := make(chan error, 1)
	connected := make(chan uint64, 4)
	go func() {
		done <- wc.Watch(wctx, WatchOptions{FromRev: &first.ModRev, OnConnect: func(rev uint64) { connected <- rev }}, ev.add)
	}()
	waitConnected(t, connected, done)
	assert.Equal(t, a.URL, wc.Servers()[0], "the watch passed the dead address")
	var want []string
	for i := 1; i <= 5; i++ {
		want = append(want, put(fmt.Sprintf("k%d", i)).Key)
	}
	a.Stop() // its watchers are cut off; new connections are refused
	for i := 6; i <= 10; i++ {
		want = append(want, put(fmt.Sprintf("k%d", i)).Key)
	}
	last := put("k11")
	want = append(want, last.Key)
	assert.Equal(t, b.URL, c.Servers()[0])

	got := ev.waitRev(t, last.ModRev)
	var keys []string
	for _, e := range got {
		keys = append(keys, e.Key)
	}
	assert.Equal(t, want, keys, "every change once, in order, across the move to the other instance")
	waitConnected(t, connected, done) // connected again, to b
	assert.Equal(t, b.URL, wc.Servers()[0])
	cancel()
	require.NoError(t, <-done)

	// Reads, exports, imports and uploads after the move. Each stop is
	// one the client has noticed: it dropped its connections to the
	// stopped instance (a write sent on one the instance closed a moment
	// before is outcome unknown, as the puts above allow for).
	stop := func(s *testkit.Server) {
		s.Stop()
		tr.CloseIdleConnections()
	}
	rec, err := c.Get(ctx, "", "k10", GetOptions{})
	require.NoError(t, err)
	assert.JSONEq(t, `"k10"`, string(rec.Value))
	a.Start() // back: b stays preferred; then b goes
	stop(b)
	var dump bytes.Buffer
	_, err = c.Export(ctx, "", ExportOptions{Format: "json"}, &dump)
	require.NoError(t, err)
	assert.Contains(t, dump.String(), `"k11"`)
	assert.Equal(t, a.URL, c.Servers()[0])
	b.Start()
	stop(a)
	dumpFile := filepath.Join(t.TempDir(), "dump.json")
	require.NoError(t, os.WriteFile(dumpFile, dump.Bytes(), 0o600))
	df, err := os.Open(dumpFile) // a body net/http would close
	require.NoError(t, err)
	defer df.Close()
	res, err := c.Import(ctx, "copy", df)
	require.NoError(t, err, "an import whose body no connection took goes to the next instance")
	assert.Equal(t, 12, res.Imported)
	snap, err := c.CreateSnapshot(ctx)
	require.NoError(t, err)
	file := filepath.Join(t.TempDir(), "s.db")
	f, err := os.Create(file)
	require.NoError(t, err)
	_, err = c.DownloadSnapshot(ctx, snap.ID, f)
	require.NoError(t, err)
	require.NoError(t, f.Close())
	a.Start()
	stop(b)
	up, err := c.UploadSnapshot(ctx, file)
	require.NoError(t, err, "the file is sent again, whole, to the next instance")
	assert.Equal(t, snap.SHA256, up.SHA256)

	// Every instance down: the last one's error.
	stop(a)
	_, err = c.Get(ctx, "", "k1", GetOptions{})
	assert.True(t, IsConnectionError(err), "%v", err)
}

// A write sent in full to an instance that then answered nothing (a
// proxy that lost its instance mid-request) may have been applied: it is
// not sent to the next instance, and says outcome unknown. A read in the
// same place is sent again: it changes nothing.
func TestFailoverNeverResendsAWriteThatMayHaveApplied(t *testing.T) {
	live := testkit.StartServer(t)
	mute, requests := muteServer(t)
	c, err := New(mute+","+live.URL, WithWho("failover"))
	require.NoError(t, err)
	ctx := context.Background()

	_, err = c.Put(ctx, "", "once", json.RawMessage(`1`), PutOptions{})
	require.True(t, IsOutcomeUnknown(err), "%v", err)
	_, err = live.Backend().Get("default", "once")
	require.ErrorIs(t, err, ctxd.ErrNotFound, "the write went only where it may have applied")
	assert.Equal(t, live.URL, c.Servers()[0], "the next request goes to the next instance")

	_, err = c.Get(ctx, "", "once", GetOptions{})
	assert.True(t, IsNotFound(err), "the read went to the live instance: %v", err)
	assert.EqualValues(t, 1, requests.Load(), "the mute instance got the put alone")

	// Through a transport that reports nothing of its progress (no
	// httptrace hooks: it sends a copy of the request), a failed write
	// may have been sent as well: outcome unknown, not sent on.
	untraced := &http.Client{Transport: roundTripFunc(func(r *http.Request) (*http.Response, error) {
		return http.DefaultTransport.RoundTrip(r.Clone(context.Background()))
	})}
	c, err = New(mute+","+live.URL, WithWho("failover"), WithHTTPClient(untraced))
	require.NoError(t, err)
	_, err = c.Put(ctx, "", "twice", json.RawMessage(`1`), PutOptions{})
	require.True(t, IsOutcomeUnknown(err), "%v", err)
	_, err = live.Backend().Get("default", "twice")
	require.ErrorIs(t, err, ctxd.ErrNotFound, "the write through the untraced transport went on")
	rec, err := c.Get(ctx, "", "once", GetOptions{})
	assert.True(t, IsNotFound(err), "reads work through it, on the next instance now: %v %v", rec, err)
}

// When no instance takes a request, the error is the last one's, and its
// message names why each one before did not take it: the first may be
// the one to fix.
func TestFailoverErrorNamesEveryInstance(t *testing.T) {
	refused := "http://" + testkit.FreeAddr(t)
	mute, _ := muteServer(t)
	c, err := New(refused+","+mute, WithConnectTimeout(time.Second))
	require.NoError(t, err)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	_, err = c.Get(ctx, "", "k", GetOptions{})
	require.Error(t, err)
	assert.Contains(t, err.Error(), strings.TrimPrefix(refused, "http://"), "the first instance's failure")
	assert.Contains(t, err.Error(), "connection refused")
	assert.Contains(t, err.Error(), strings.TrimPrefix(mute, "http://"), "the last one's")
	assert.ErrorIs(t, err, io.EOF, "errors.Is sees the last instance's error (it closed without answering)")
}

// A Watch whose first connection fails on every instance says why each
// one failed, as a request does: it said the last one's alone, and the
// first may be the one to fix.
func TestWatchErrorNamesEveryInstance(t *testing.T) {
	refused := "http://" + testkit.FreeAddr(t)
	mute, _ := muteServer(t)
	c, err := New(refused+","+mute, WithConnectTimeout(time.Second))
	require.NoError(t, err)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	err = c.Watch(ctx, WatchOptions{}, func(WatchEvent) error { return nil })
	require.Error(t, err)
	assert.Contains(t, err.Error(), strings.TrimPrefix(refused, "http://"), "the first instance's failure")
	assert.Contains(t, err.Error(), "connection refused")
	assert.Contains(t, err.Error(), strings.TrimPrefix(mute, "http://"), "the last one's")
	assert.True(t, IsConnectionError(err), "errors.As sees the last instance's error: %v", err)
}

// A 503 unavailable (the instance refused before applying anything: it
// is closing, or cannot reach etcd) moves the request to the next
// instance; a 503 outcome_unknown (it took the write) does not.
func TestFailoverOnUnavailableOnly(t *testing.T) {
	live := testkit.StartServer(t)
	refusing := func(code string) (string, *atomic.Int64) {
		var n atomic.Int64
		srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			n.Add(1)
			w.Header().Set("Content-Type", "application/json")
			w.WriteHeader(http.StatusServiceUnavailable)
			fmt.Fprintf(w, `{"error":{"code":%q,"message":"refused by the test"}}`, code)
		}))
		t.Cleanup(srv.Close)
		return srv.URL, &n
	}
	ctx := context.Background()

	unavailable, n := refusing(CodeUnavailable)
	c, err := New(unavailable+","+live.URL, WithWho("failover"))
	require.NoError(t, err)
	_, err = c.Put(ctx, "", "k", json.RawMessage(`1`), PutOptions{})
	require.NoError(t, err)
	assert.EqualValues(t, 1, n.Load())
	assert.Equal(t, live.URL, c.Servers()[0])

	unknown, m := refusing(CodeOutcomeUnknown)
	c, err = New(unknown+","+live.URL, WithWho("failover"))
	require.NoError(t, err)
	_, err = c.Put(ctx, "", "k", json.RawMessage(`2`), PutOptions{})
	require.True(t, IsOutcomeUnknown(err), "%v", err)
	assert.EqualValues(t, 1, m.Load())
	rec, err := live.Backend().Get("default", "k")
	require.NoError(t, err)
	assert.JSONEq(t, `1`, string(rec.Value), "the write whose outcome is unknown was not sent on")
}

// An instance that answered a write outcome_unknown (its etcd member cut
// off from the quorum, say, where each write waits out
// etcd.request_timeout) is left for the next request, as one that sent
// no answer is: it kept the preference, and every write after it paid
// the same wait and ended outcome unknown while the next instance was
// well. The write itself is not sent on.
func TestOutcomeUnknownAnswerMovesTheNextRequest(t *testing.T) {
	live := testkit.StartServer(t)
	var n atomic.Int64
	unknown := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, _ = io.Copy(io.Discard, r.Body)
		n.Add(1)
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(http.StatusServiceUnavailable)
		_, _ = io.WriteString(w, `{"error":{"code":"outcome_unknown","message":"etcd did not answer in time"}}`)
	}))
	t.Cleanup(unknown.Close)
	ctx := context.Background()

	writes := map[string]func(c *Client) error{
		"put": func(c *Client) error {
			_, err := c.Put(ctx, "", "k", json.RawMessage(`1`), PutOptions{})
			return err
		},
		"import": func(c *Client) error { // a body read once: the other path
			_, err := c.Import(ctx, "", strings.NewReader(`{"context":{"k":1}}`))
			return err
		},
	}
	for name, write := range writes {
		n.Store(0)
		c, err := New(unknown.URL+","+live.URL, WithWho("failover"))
		require.NoError(t, err)
		require.True(t, IsOutcomeUnknown(write(c)), name)
		assert.EqualValues(t, 1, n.Load(), "%s: not sent on", name)
		assert.Equal(t, live.URL, c.Servers()[0], "%s: the next request goes to the next instance", name)
		require.NoError(t, write(c), name)
		assert.EqualValues(t, 1, n.Load(), "%s: the next write went to the next instance", name)
	}

	// The last instance of the list too: the next request goes round to
	// the first.
	c, err := New(live.URL+","+unknown.URL, WithPreferred(unknown.URL))
	require.NoError(t, err)
	require.True(t, IsOutcomeUnknown(writes["put"](c)))
	assert.Equal(t, live.URL, c.Servers()[0])
}

// waitConnected waits for a Watch's OnConnect (connected), failing if the
// Watch ended (done) or nothing came within watchDeadline.
func waitConnected(t *testing.T, connected <-chan uint64, done <-chan error) {
	t.Helper()
	select {
	case <-connected:
	case err := <-done:
		t.Fatalf("the watch ended: %v", err)
	case <-time.After(watchDeadline):
		t.Fatalf("the watch did not connect within %v", watchDeadline)
	}
}

// An instance whose machine is gone (an address that never answers a
// connection) costs the connection timeout, then the next instance takes
// the request; a watch passes it the same way. A client of several
// instances without an HTTP client of its own has a timeout of
// DefaultConnectTimeout.
func TestFailoverPassesASilentInstance(t *testing.T) {
	live := testkit.StartServer(t)
	silent := "http://" + testkit.NoAnswerAddr(t)
	c, err := New(silent+","+live.URL, WithConnectTimeout(200*time.Millisecond))
	require.NoError(t, err)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	_, err = c.Put(ctx, "", "k", json.RawMessage(`1`), PutOptions{})
	require.NoError(t, err)
	assert.Equal(t, live.URL, c.Servers()[0])

	wc, err := New(silent+","+live.URL, WithConnectTimeout(200*time.Millisecond))
	require.NoError(t, err)
	connected := make(chan uint64, 1)
	done := make(chan error, 1)
	go func() {
		done <- wc.Watch(ctx, WatchOptions{OnConnect: func(rev uint64) { connected <- rev }}, newEvents().add)
	}()
	waitConnected(t, connected, done)
	cancel()
	require.NoError(t, <-done)

	for _, tt := range []struct {
		servers string
		opts    []Option
		want    time.Duration
	}{
		{servers: silent + "," + live.URL, want: DefaultConnectTimeout},
		{servers: live.URL, want: 0},
		{servers: silent + "," + live.URL, opts: []Option{WithHTTPClient(&http.Client{})}, want: 0},
	} {
		c, err := New(tt.servers, tt.opts...)
		require.NoError(t, err)
		assert.Equal(t, tt.want, c.connectTimeout, "%s %d options", tt.servers, len(tt.opts))
	}
	_, err = New(live.URL, WithHTTPClient(&http.Client{Transport: roundTripFunc(nil)}), WithConnectTimeout(time.Second))
	assert.ErrorContains(t, err, "needs an *http.Transport")
}

type roundTripFunc func(*http.Request) (*http.Response, error)

func (f roundTripFunc) RoundTrip(r *http.Request) (*http.Response, error) { return f(r) }

// muteServer reads each request in full and closes the connection without
// an answer; requests counts them.
func muteServer(t *testing.T) (string, *atomic.Int64) {
	return testkit.SilentAfterRequest(t, false)
}

// hungServer is the URL of a server that reads each request and never
// answers, holding the connection until the test ends.
func hungServer(t *testing.T) string {
	url, _ := testkit.SilentAfterRequest(t, true)
	return url
}

// A read waits for a hung instance (it takes the connection and the
// request, and never answers, as a paused process does) at most the read
// try timeout, then goes to the next instance; a write to it is never
// sent on. The timeout bounds the wait for the answer, not the reading of
// a long one.
func TestFailoverPassesAHungInstanceForReads(t *testing.T) {
	live := testkit.StartServer(t)
	hung := hungServer(t)
	ctx := context.Background()
	_, err := live.Backend().Put(ctx, "default", "k", json.RawMessage(`1`), nil, "t")
	require.NoError(t, err)

	c, err := New(hung+","+live.URL, WithReadTryTimeout(300*time.Millisecond))
	require.NoError(t, err)
	rec, err := c.Get(ctx, "", "k", GetOptions{})
	require.NoError(t, err)
	assert.JSONEq(t, `1`, string(rec.Value))
	assert.Equal(t, live.URL, c.Servers()[0])

	c, err = New(hung+","+live.URL, WithReadTryTimeout(300*time.Millisecond))
	require.NoError(t, err)
	wctx, cancel := context.WithTimeout(ctx, time.Second)
	defer cancel()
	_, err = c.Put(wctx, "", "k", json.RawMessage(`2`), PutOptions{})
	require.True(t, IsOutcomeUnknown(err), "%v", err)
	rec, err = live.Backend().Get("default", "k")
	require.NoError(t, err)
	assert.JSONEq(t, `1`, string(rec.Value), "the write went only to the hung instance")
	// The next write goes to the next instance: a hung instance costs one
	// write its deadline, not every write.
	pctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	_, err = c.Put(pctx, "", "k", json.RawMessage(`3`), PutOptions{})
	require.NoError(t, err)
	assert.Equal(t, live.URL, c.Servers()[0])

	// A body read for longer than the timeout arrives whole: an export
	// larger than one read. The timeout is long enough for the answer's
	// headers under load (a live instance's answer that missed it would
	// go to the hung one: the deadline ends the test instead of a hang).
	big := json.RawMessage(`"` + strings.Repeat("x", 1000) + `"`)
	for i := range 500 {
		_, err := live.Backend().Put(ctx, "default", fmt.Sprintf("big/%03d", i), big, nil, "t")
		require.NoError(t, err)
	}
	c, err = New(live.URL+","+hung, WithReadTryTimeout(time.Second))
	require.NoError(t, err)
	slow := &slowWriter{delay: 1500 * time.Millisecond}
	ectx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	_, err = c.Export(ectx, "", ExportOptions{Format: "json"}, slow)
	require.NoError(t, err)
	assert.Contains(t, slow.buf.String(), `"k"`)
	assert.Contains(t, slow.buf.String(), `"big/499"`)
}

// slowWriter waits delay before its first write.
type slowWriter struct {
	delay time.Duration
	buf   bytes.Buffer
}

func (w *slowWriter) Write(p []byte) (int, error) {
	if w.buf.Len() == 0 {
		time.Sleep(w.delay)
	}
	return w.buf.Write(p)
}

// WithPreferred names the instance to start with (one an earlier process
// found answering); a URL not in the list changes nothing.
func TestWithPreferred(t *testing.T) {
	for _, tt := range []struct{ preferred, want string }{
		{"http://b:2/", "http://b:2"},
		{"http://b:2", "http://b:2"},
		{"http://c:3", "http://a:1"},
		{"", "http://a:1"},
	} {
		c, err := New("http://a:1,http://b:2", WithPreferred(tt.preferred))
		require.NoError(t, err)
		assert.Equal(t, tt.want, c.Servers()[0], "WithPreferred(%q)", tt.preferred)
	}
}

// An answer that says its instance is draining (ctxd.HeaderDraining: it
// is stopping) is the answer; the next request goes to the next instance.
// A client of several instances keeps idle connections at most
// IdleConnTimeout, shorter than a drain; a client of one keeps its
// transport's.
func TestFailoverLeavesADrainingInstance(t *testing.T) {
	a, b := testkit.StartServer(t), testkit.StartServer(t)
	ctx := context.Background()
	_, err := a.Backend().Put(ctx, "default", "k", json.RawMessage(`"a"`), nil, "t")
	require.NoError(t, err)
	target, err := url.Parse(a.URL)
	require.NoError(t, err)
	proxy := httputil.NewSingleHostReverseProxy(target)
	proxy.ModifyResponse = func(r *http.Response) error {
		r.Header.Set(ctxd.HeaderDraining, "1")
		return nil
	}
	draining := httptest.NewServer(proxy)
	t.Cleanup(draining.Close)

	c, err := New(draining.URL + "," + b.URL)
	require.NoError(t, err)
	rec, err := c.Get(ctx, "", "k", GetOptions{})
	require.NoError(t, err)
	assert.JSONEq(t, `"a"`, string(rec.Value), "the draining instance's answer")
	assert.Equal(t, b.URL, c.Servers()[0], "the next request goes to the next instance")
	assert.Equal(t, IdleConnTimeout, c.transport().IdleConnTimeout)

	one, err := New(a.URL)
	require.NoError(t, err)
	assert.Equal(t, http.DefaultTransport.(*http.Transport).IdleConnTimeout, one.transport().IdleConnTimeout)
}

// A watch whose instance goes silent (paused, or a network that holds its
// packets: a blackholed proxy here) reconnects to the next instance after
// IdleTimeout and resumes there with nothing lost. It tried the silent
// one first again, and waited DialTimeout there (10 minutes here) before
// moving on.
func TestWatchLeavesASilentInstance(t *testing.T) {
	// The server pings five times a second, so that only the blackhole makes the
	// watch silent for IdleTimeout; and it does not end a connection the
	// blackholed proxy opens to it and holds silent (its header timeout
	// would, after 10 s).
	srv := testkit.StartServer(t, testkit.WithConfig(func(c *configs.Config) {
		c.WebSocket.PingInterval = 200 * time.Millisecond
		c.HTTP.ReadHeaderTimeout = 10 * time.Minute
	}))
	proxy := testkit.StartTCPProxy(t, srv.Addr)
	c, err := New("http://"+proxy.Addr()+","+srv.URL, WithConnectTimeout(time.Minute))
	require.NoError(t, err)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	evs := newEvents()
	connected := make(chan uint64, 4)
	done := make(chan error, 1)
	go func() {
		done <- c.Watch(ctx, WatchOptions{IdleTimeout: time.Second, DialTimeout: 10 * time.Minute,
			OnConnect: func(rev uint64) { connected <- rev }}, evs.add)
	}()
	waitConnected(t, connected, done)
	assert.Equal(t, "http://"+proxy.Addr(), c.Servers()[0], "the first instance, through the proxy")

	direct, err := New(srv.URL)
	require.NoError(t, err)
	put := func(v string) uint64 {
		rec, err := direct.Put(ctx, "", "k", json.RawMessage(v), PutOptions{})
		require.NoError(t, err)
		return rec.ModRev
	}
	first := put("1")
	evs.waitRev(t, first)
	time.Sleep(1500 * time.Millisecond) // past IdleTimeout: the pings keep it
	assert.Equal(t, "http://"+proxy.Addr(), c.Servers()[0], "a watch that gets pings stays")
	proxy.Blackhole()
	last := put("2")
	got := evs.waitRev(t, last)
	assert.Equal(t, []uint64{first, last}, eventRevs(got), "resumed on the next instance, nothing lost or twice")
	assert.Equal(t, srv.URL, c.Servers()[0], "the silent instance was left")
	cancel()
	require.NoError(t, <-done)
}

// A proxy in front of an instance that answers 502 (its instance gone:
// here a real reverse proxy to an address where nothing listens) or 504
// (nginx's page when its instance did not answer in time): a read is
// sent to the next instance, as a read that got no answer is; a write is
// outcome unknown and not sent on (the proxy may have forwarded it), and
// the next request goes to the next instance, as after an
// outcome_unknown. A read stopped at the first instance, and every write
// after the first went to the same proxy and ended outcome unknown.
func TestProxyGatewayErrorsMoveToTheNextInstance(t *testing.T) {
	live := testkit.StartServer(t)
	ctx := context.Background()
	_, err := live.Backend().Put(ctx, "default", "k", json.RawMessage(`"live"`), nil, "t")
	require.NoError(t, err)
	gone, err := url.Parse("http://" + testkit.FreeAddr(t))
	require.NoError(t, err)
	rp := httputil.NewSingleHostReverseProxy(gone)
	rp.ErrorLog = log.New(io.Discard, "", 0) // its "proxy error" lines
	proxies := map[string]http.Handler{
		"502": rp,
		"504": http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			_, _ = io.Copy(io.Discard, r.Body)
			w.Header().Set("Content-Type", "text/html")
			w.WriteHeader(http.StatusGatewayTimeout)
			_, _ = io.WriteString(w, "<html><body><h1>504 Gateway Time-out</h1></body></html>")
		}),
	}
	for name, h := range proxies {
		var n atomic.Int64
		proxy := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			n.Add(1)
			h.ServeHTTP(w, r)
		}))
		t.Cleanup(proxy.Close)

		c, err := New(proxy.URL+","+live.URL, WithWho("failover"))
		require.NoError(t, err)
		rec, err := c.Get(ctx, "", "k", GetOptions{})
		require.NoError(t, err, "%s: the read goes to the next instance", name)
		assert.JSONEq(t, `"live"`, string(rec.Value), name)
		assert.EqualValues(t, 1, n.Load(), name)
		assert.Equal(t, live.URL, c.Servers()[0], name)

		c, err = New(proxy.URL+","+live.URL, WithWho("failover"))
		require.NoError(t, err)
		_, err = c.Put(ctx, "", "w"+name, json.RawMessage(`1`), PutOptions{})
		require.True(t, IsOutcomeUnknown(err), "%s: %v", name, err)
		_, err = live.Backend().Get("default", "w"+name)
		require.ErrorIs(t, err, ctxd.ErrNotFound, "%s: the write was not sent on", name)
		assert.Equal(t, live.URL, c.Servers()[0], "%s: the next request goes to the next instance", name)
		_, err = c.Put(ctx, "", "w"+name, json.RawMessage(`2`), PutOptions{})
		require.NoError(t, err, name)
		assert.EqualValues(t, 2, n.Load(), "%s: the proxy got the first put alone", name)

		// A watch passes it too (a load balancer's 502 while its
		// instance restarts ended a Watch, as a refusal would).
		wc, err := New(proxy.URL + "," + live.URL)
		require.NoError(t, err)
		wctx, cancel := context.WithTimeout(ctx, watchDeadline)
		connected := make(chan uint64, 1)
		done := make(chan error, 1)
		go func() {
			done <- wc.Watch(wctx, WatchOptions{OnConnect: func(rev uint64) { connected <- rev }}, newEvents().add)
		}()
		waitConnected(t, connected, done)
		assert.Equal(t, live.URL, wc.Servers()[0], name)
		cancel()
		require.NoError(t, <-done, name)
	}
}

// A read answered 503 by an instance that is not the last, however the
// answer ends (its body cut off before its code; a proxy's page rather
// than ctxd's JSON), goes to the next instance: it returned the first
// instance's error.
func TestReadAnswered503GoesToTheNextInstance(t *testing.T) {
	live := testkit.StartServer(t)
	ctx := context.Background()
	_, err := live.Backend().Put(ctx, "default", "k", json.RawMessage(`"live"`), nil, "t")
	require.NoError(t, err)
	answers := map[string]http.HandlerFunc{
		"cut off": cutOffAnswer(http.StatusServiceUnavailable, `{"error":{"code":"unav`),
		"a proxy's page": func(w http.ResponseWriter, r *http.Request) {
			w.Header().Set("Content-Type", "text/html")
			w.WriteHeader(http.StatusServiceUnavailable)
			_, _ = io.WriteString(w, "<html>no healthy upstream</html>")
		},
	}
	for name, h := range answers {
		srv := httptest.NewServer(h)
		t.Cleanup(srv.Close)
		c, err := New(srv.URL+","+live.URL, WithWho("failover"))
		require.NoError(t, err)
		rec, err := c.Get(ctx, "", "k", GetOptions{})
		require.NoError(t, err, name)
		assert.JSONEq(t, `"live"`, string(rec.Value), name)
		var dump bytes.Buffer
		c, err = New(srv.URL+","+live.URL, WithWho("failover"))
		require.NoError(t, err)
		_, err = c.Export(ctx, "", ExportOptions{}, &dump)
		require.NoError(t, err, "%s: an export, a stream", name)
		assert.Contains(t, dump.String(), `"live"`, name)

		// The last instance's answer is the error, naming the first's.
		c, err = New(srv.URL+","+srv.URL+"/other", WithWho("failover"))
		require.NoError(t, err)
		_, err = c.Get(ctx, "", "k", GetOptions{})
		var ae *APIError
		require.True(t, errors.As(err, &ae), "%s: %v", name, err)
		assert.Equal(t, http.StatusServiceUnavailable, ae.Status, name)
		assert.Contains(t, err.Error(), "before it: "+srv.URL+": HTTP 503", name)
	}
}

// An export whose answer starts late (the server writes the whole dump
// to its spool before it sends the headers: a large namespace, on etcd
// slower still; here a proxy holds a real instance's answer) stays on its
// instance while that instance answers /healthz: it was abandoned at the
// read try timeout and the next instance did the whole export again (and
// over three, the third once more). A hung instance, which answers no
// probe, is still passed within the read try timeout.
func TestSlowExportStaysOnALiveInstance(t *testing.T) {
	a, b := testkit.StartServer(t), testkit.StartServer(t)
	ctx := context.Background()
	for _, s := range []*testkit.Server{a, b} {
		_, err := s.Backend().Put(ctx, "default", "k", json.RawMessage(`"`+s.URL+`"`), nil, "t")
		require.NoError(t, err)
	}
	const hold = 1500 * time.Millisecond
	slow := func(s *testkit.Server) (string, *atomic.Int64, *atomic.Int64) {
		target, err := url.Parse(s.URL)
		require.NoError(t, err)
		rp := httputil.NewSingleHostReverseProxy(target)
		rp.ErrorLog = log.New(io.Discard, "", 0)
		rp.ModifyResponse = func(r *http.Response) error {
			if strings.HasSuffix(r.Request.URL.Path, "/export") {
				select { // the answer, held as a long spool holds it
				case <-time.After(hold):
				case <-r.Request.Context().Done():
				}
			}
			return nil
		}
		var exports, probes atomic.Int64
		srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			switch {
			case strings.HasSuffix(r.URL.Path, "/export"):
				exports.Add(1)
			case r.URL.Path == "/healthz":
				probes.Add(1)
			}
			rp.ServeHTTP(w, r)
		}))
		t.Cleanup(srv.Close)
		return srv.URL, &exports, &probes
	}
	pa, exportsA, probesA := slow(a)
	pb, exportsB, _ := slow(b)

	const try = 400 * time.Millisecond
	c, err := New(pa+","+pb, WithReadTryTimeout(try))
	require.NoError(t, err)
	var dump bytes.Buffer
	_, err = c.Export(ctx, "", ExportOptions{}, &dump)
	require.NoError(t, err)
	assert.Contains(t, dump.String(), a.URL, "the first instance's export")
	assert.EqualValues(t, 1, exportsA.Load())
	assert.EqualValues(t, 0, exportsB.Load(), "the next instance did not export again")
	assert.GreaterOrEqual(t, probesA.Load(), int64(2), "asked again while it waited")
	assert.Equal(t, pa, c.Servers()[0])

	// A hung instance answers no probe: the export goes on to the next
	// within the read try timeout (and its probe's).
	c, err = New(hungServer(t)+","+a.URL, WithReadTryTimeout(try))
	require.NoError(t, err)
	dump.Reset()
	start := time.Now()
	_, err = c.Export(ctx, "", ExportOptions{}, &dump)
	require.NoError(t, err)
	assert.Contains(t, dump.String(), a.URL)
	assert.Less(t, time.Since(start), try+time.Second, "the hung instance cost the read try timeout")
}

// Over several instances, Ready and Health are the client's: nil when one
// instance is ready (the client can serve requests), whichever; when none
// is, the error names each instance's answer, the last one's included (a
// 503 named none: "shutting down" from which?). Instances tells each
// instance's state, in New's order, and moves no preference.
func TestReadinessOfSeveralInstances(t *testing.T) {
	ready, draining := testkit.StartServer(t), testkit.StartServer(t)
	draining.Server().API().Drain() // /readyz 503 while it serves on
	down := "http://" + testkit.FreeAddr(t)
	ctx := context.Background()

	c, err := New(draining.URL + "," + down + "," + ready.URL)
	require.NoError(t, err)
	require.NoError(t, c.Ready(ctx), "one instance is ready")
	require.NoError(t, c.Health(ctx))

	c, err = New(draining.URL + "," + down + "," + ready.URL)
	require.NoError(t, err)
	states := c.Instances(ctx)
	require.Len(t, states, 3)
	assert.Equal(t, []string{draining.URL, down, ready.URL}, []string{states[0].URL, states[1].URL, states[2].URL})
	var ae *APIError
	require.ErrorAs(t, states[0].Err, &ae)
	assert.Equal(t, http.StatusServiceUnavailable, ae.Status)
	assert.True(t, IsConnectionError(states[1].Err), "%v", states[1].Err)
	assert.NoError(t, states[2].Err)
	assert.Equal(t, draining.URL, c.Servers()[0], "no preference moved")

	none, err := New(down + "," + draining.URL)
	require.NoError(t, err)
	err = none.Ready(ctx)
	require.ErrorAs(t, err, &ae, "the last instance's answer")
	assert.Equal(t, http.StatusServiceUnavailable, ae.Status)
	assert.Contains(t, err.Error(), strings.TrimPrefix(down, "http://"))
	assert.Contains(t, err.Error(), draining.URL+": ", "the last one named too: %v", err)
}

// A read whose answer is cut off mid-body (its instance died while it
// answered: here one that announces 100 bytes and closes the connection
// after a few) goes to the next instance, as one that got no answer at
// all does: it failed with "unexpected EOF" while the next instance could
// answer it. Its error, when no instance answers in full, names each.
func TestReadCutOffGoesToTheNextInstance(t *testing.T) {
	cut := httptest.NewServer(cutOffAnswer(http.StatusOK, `{"ns":"def`))
	t.Cleanup(cut.Close)
	live := testkit.StartServer(t)
	ctx := context.Background()
	_, err := live.Backend().Put(ctx, "default", "k", json.RawMessage(`"live"`), nil, "t")
	require.NoError(t, err)

	c, err := New(cut.URL + "," + live.URL)
	require.NoError(t, err)
	rec, err := c.Get(ctx, "", "k", GetOptions{})
	require.NoError(t, err)
	assert.JSONEq(t, `"live"`, string(rec.Value))
	assert.Equal(t, live.URL, c.Servers()[0], "the instance that answered in full stays preferred")

	c, err = New(cut.URL + "," + live.URL)
	require.NoError(t, err)
	page, err := c.List(ctx, "", ListOptions{})
	require.NoError(t, err)
	require.Len(t, page.Records, 1)
	_, err = c.Status(ctx)
	require.NoError(t, err)

	other := httptest.NewServer(cutOffAnswer(http.StatusOK, `{"ns":"def`))
	t.Cleanup(other.Close)
	c, err = New(cut.URL + "," + other.URL)
	require.NoError(t, err)
	_, err = c.Get(ctx, "", "k", GetOptions{})
	require.ErrorIs(t, err, io.ErrUnexpectedEOF)
	assert.Contains(t, err.Error(), other.URL+": its answer (200) was cut off")
	assert.Contains(t, err.Error(), cut.URL+": its answer (200) was cut off")
}

// A server error (5xx) from one instance of several names that instance
// (APIError.Instance, and the message): "storage quota exceeded (507
// ...)" did not say which instance's disk or log to look at. Other
// answers, and a client of one instance, name none.
func TestServerErrorNamesItsInstance(t *testing.T) {
	full := testkit.StartServer(t, testkit.WithConfig(func(c *configs.Config) { c.Storage.QuotaBytes = 256 << 10 }))
	other := "http://" + testkit.FreeAddr(t)
	ctx := context.Background()
	c, err := New(full.URL + "," + other)
	require.NoError(t, err)
	one, err := New(full.URL)
	require.NoError(t, err)
	value := json.RawMessage(`"` + strings.Repeat("v", 32<<10) + `"`)
	for i := 0; ; i++ {
		require.Less(t, i, 100, "the quota never refused a write")
		if _, err = c.Put(ctx, "", fmt.Sprint("k", i), value, PutOptions{}); err != nil {
			break
		}
	}
	var ae *APIError
	require.ErrorAs(t, err, &ae)
	assert.Equal(t, http.StatusInsufficientStorage, ae.Status)
	assert.Equal(t, full.URL, ae.Instance)
	assert.True(t, strings.HasPrefix(err.Error(), full.URL+": "), "%v", err)

	_, err = one.Put(ctx, "", "more", value, PutOptions{})
	require.ErrorAs(t, err, &ae)
	assert.Equal(t, http.StatusInsufficientStorage, ae.Status)
	assert.Empty(t, ae.Instance, "one instance: no need")
	_, err = c.Get(ctx, "", "missing", GetOptions{})
	require.ErrorAs(t, err, &ae)
	assert.Empty(t, ae.Instance, "a 404 is not the instance's trouble")
	assert.NotContains(t, err.Error(), full.URL)
}

// StatusFrom names the instance whose status it returns: the first that
// could answer (one down before it: the next), and with a preference
// given, that one. The status of one instance says nothing of which one
// it is, and a CLI over several printed it without saying.
func TestStatusFromNamesTheInstance(t *testing.T) {
	a, b := testkit.StartServer(t), testkit.StartServer(t)
	down := "http://" + testkit.FreeAddr(t)
	ctx := context.Background()

	c, err := New(down + "," + a.URL + "," + b.URL)
	require.NoError(t, err)
	st, server, err := c.StatusFrom(ctx)
	require.NoError(t, err)
	assert.Equal(t, a.URL, server, "down did not answer")
	assert.NotEmpty(t, st.Version)

	c, err = New(down+","+a.URL+","+b.URL, WithPreferred(b.URL))
	require.NoError(t, err)
	_, server, err = c.StatusFrom(ctx)
	require.NoError(t, err)
	assert.Equal(t, b.URL, server)

	none, err := New(down)
	require.NoError(t, err)
	_, server, err = none.StatusFrom(ctx)
	require.Error(t, err)
	assert.Empty(t, server, "no instance answered")
}
