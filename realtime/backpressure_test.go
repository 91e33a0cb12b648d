package realtime_test

import (
	"net/url"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/framework0/ctxd"
	"github.com/framework0/ctxd/internal/testkit"
	"github.com/framework0/ctxd/realtime"
)

// A client that sends requests and reads none of their answers stalls
// its own session: the server reads its next message once the answers
// drain, and holds about maxAnswerBytes (1 MiB) of them, not all of them.
// Before, the 60 patches below were all applied and their answers, each
// carrying the 64 KiB value, queued: 3.75 MiB for one connection (and up
// to 256 + 64 answers of up to 1 MiB each before the session was cut with
// "lagged").
func TestClientThatDoesNotReadStallsItself(t *testing.T) {
	ts := startServerBuf(t, realtime.Options{}, 64<<10)
	base := ts.put(ctxd.DefaultNamespace, "big", `{"pad":"`+strings.Repeat("x", 64<<10)+`"}`)
	// The kernel's receive buffer (not dialSmall's): the client reads
	// once the server stalled, and the server's small send buffer blocks
	// it soon enough.
	c := testkit.DialWatch(t, ts.wsURL(url.Values{"ns": {"elsewhere"}}), nil) // answers only
	c.Expect(ctxd.TypeSubscribed)
	const n = 60
	for i := range n {
		c.SendJSON(map[string]any{"type": ctxd.TypeContextPatch, "id": i, "key": "big", "patch": map[string]int{"n": i}})
	}
	applied := func() uint64 { rev, _ := ts.st.Committed(); return rev - base }
	testkit.Eventually(t, func() bool { return ts.hub.Stats().Stalled == 1 || applied() == n })
	st := ts.hub.Stats()
	require.Less(t, st.AnswerBytes, 1<<20+2*(64<<10), "answers held for the client: 1 MiB, and the last message's")
	require.Equal(t, 1, st.Stalled, "the client's messages wait for its answers to drain")
	require.Less(t, applied(), uint64(n))

	// Once it reads, it gets every answer, in order.
	for i := range n {
		f := c.Expect(ctxd.TypeContextPatchConfirmed)
		require.Equal(t, strconv.Itoa(i), string(f.ID))
	}
	require.Equal(t, uint64(n), applied())
	testkit.Eventually(t, func() bool { st := ts.hub.Stats(); return st.Stalled == 0 && st.AnswerBytes == 0 })
}

// A message held back by awaitRoom while its session's connection fails
// (the write timeout cuts a client that does not read) is dropped, as
// one read while the session closes is: nothing could answer it. Before,
// the patch held back was applied once the failure woke the reader,
// unacknowledged, and a client that sent it again after reconnecting
// (its outcome unknown) had it applied twice.
func TestAMessageHeldBackIsDroppedWhenItsConnectionFails(t *testing.T) {
	ts := startServerBuf(t, realtime.Options{WriteTimeout: 2 * time.Second}, 64<<10)
	// Each answer carries the value, larger than the server's send
	// buffer and the client's receive buffer (its kernel's): the server's
	// writer stays inside the first, and the third patch waits for room
	// until the connection fails.
	ts.put(ctxd.DefaultNamespace, "big", `{"pad":"`+strings.Repeat("x", 600<<10)+`"}`)
	c := testkit.DialWatch(t, ts.wsURL(url.Values{"ns": {"elsewhere"}}), nil) // answers only
	c.Expect(ctxd.TypeSubscribed)
	for i := range 10 {
		c.SendJSON(map[string]any{"type": ctxd.TypeContextPatch, "id": i, "key": "big", "patch": map[string]int{"n": i}})
	}
	testkit.Eventually(t, func() bool { return ts.hub.Stats().Stalled == 1 })
	applied, _ := ts.st.Committed()
	// The client reads nothing: the write timeout cuts it, and its
	// session ends once its reader has.
	testkit.Eventually(t, func() bool { return ts.hub.Clients() == 0 })
	rev, _ := ts.st.Committed()
	require.Equal(t, applied, rev, "a patch applied after its connection failed")
}

// A client that reads its answers, slowly, while its next messages wait
// for room is not cut by the ping timeout: its pongs come behind those
// messages, which the server reads only as the answers drain, and the
// wait is the server's, not a sign that the client is gone. Before, once
// the waits added up to more than the pong wait, the reader's next read
// of the socket failed ("i/o timeout") and the session was closed under
// a client that was reading all along.
func TestASlowReaderIsNotCutWhileItsMessagesWait(t *testing.T) {
	// The pong wait (4 s) must outlast the setup (each patch a durable
	// write, slow on a loaded machine) and fall short of the slow reads.
	ts := startServerBuf(t, realtime.Options{PingInterval: 2 * time.Second, WriteTimeout: time.Minute}, 64<<10)
	ts.put(ctxd.DefaultNamespace, "big", `{"pad":"`+strings.Repeat("x", 64<<10)+`"}`)
	// The kernel's receive buffer (not dialSmall's): the client reads,
	// and its pongs must reach the server, after it was full.
	c := testkit.DialWatch(t, ts.wsURL(url.Values{"ns": {"elsewhere"}}), nil) // answers only
	c.Expect(ctxd.TypeSubscribed)
	const n = 150 // 4.5 s of waits in all at one answer read per 30 ms: past the pong wait (4 s)
	for i := range n {
		c.SendJSON(map[string]any{"type": ctxd.TypeContextPatch, "id": i, "key": "big", "patch": map[string]int{"n": i}})
	}
	testkit.Eventually(t, func() bool { return ts.hub.Stats().Stalled == 1 })
	for i := range n {
		time.Sleep(30 * time.Millisecond) // a slow link
		f := c.Expect(ctxd.TypeContextPatchConfirmed)
		require.Equal(t, strconv.Itoa(i), string(f.ID))
	}
	c.SendJSON(map[string]any{"type": ctxd.TypeContextPatch, "id": "after", "key": "big", "patch": map[string]int{"n": n}})
	f := c.Expect(ctxd.TypeContextPatchConfirmed)
	require.Equal(t, `"after"`, string(f.ID))
}

// The answers' count bounds them too (README: "or 128 of them wait
// beyond the window"): a client that sends many small messages and reads
// none stalls itself once 128 answers wait beyond its window, long
// before they reach 1 MiB. Without the count, its 2,000 pings' pongs
// (600 KB) were all queued.
//
// The client keeps the receive buffer its kernel gives it (not
// dialSmall's, see there): it must get hundreds of pings to the server
// after that buffer is full. With dialSmall's, the server waited on its
// socket, nothing queued, not stalled: about 1 run in 15 under load. The
// server's small send buffer blocks its writer soon enough.
func TestClientThatDoesNotReadStallsItselfByCount(t *testing.T) {
	ts := startServerBuf(t, realtime.Options{}, 64<<10)
	c := testkit.DialWatch(t, ts.wsURL(url.Values{"ns": {"elsewhere"}}), nil) // answers only
	c.Expect(ctxd.TypeSubscribed)
	const n = 2000
	id := func(i int) string { return strings.Repeat("p", 240) + strconv.Itoa(i) } // each pong about 300 bytes
	sent := make(chan error, 1)
	go func() { // the server stops reading: sends block in TCP
		for i := range n {
			if err := c.Conn.WriteJSON(map[string]any{"type": ctxd.TypePing, "id": id(i)}); err != nil {
				sent <- err
				return
			}
		}
		sent <- nil
	}()
	testkit.Eventually(t, func() bool { return ts.hub.Stats().Stalled == 1 }, "the client's pings wait for its pongs to drain")
	require.Less(t, ts.hub.Stats().AnswerBytes, 1<<19, "stalled by the answers' count, not their bytes")

	// Once it reads, it gets every answer, in order.
	for i := range n {
		f := c.Expect(ctxd.TypePong)
		require.Equal(t, strconv.Quote(id(i)), string(f.ID))
	}
	require.NoError(t, <-sent)
	testkit.Eventually(t, func() bool { st := ts.hub.Stats(); return st.Stalled == 0 && st.AnswerBytes == 0 })
}
