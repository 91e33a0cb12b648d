package realtime_test

import (
	"bytes"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/gorilla/websocket"

	"github.com/framework0/ctxd/configs"
	"github.com/framework0/ctxd/internal/testkit"
)

// BenchmarkFanout measures the time from a write's acknowledgement (its
// REST PUT answered) to its arrival at each of 1,000 WebSocket subscribers
// on loopback, with writes paced at 1,000/s; b.N is the number of writes.
// It reports p50, p99 and max of that latency over every (write,
// subscriber) pair (ack-*; a change that arrived before its writer read the
// answer counts 0), the same from the moment the PUT was sent (put-*), the
// writes/s sustained, and the deliveries missed (must be 0). Writers,
// server and subscribers share the machine's 2 cores.
//
//	go test -run '^$' -bench Fanout -benchtime 5000x ./realtime/
func BenchmarkFanout(b *testing.B) {
	for _, bc := range []struct {
		subscribers, rate int
		batch             bool
	}{
		{1, 1000, true}, // the write path alone
		{1000, 1000, true},
		{1000, 1000, false},
		{1000, 200, false},
		{100, 1000, false},
	} {
		b.Run(fmt.Sprintf("subs=%d/rate=%d/batch=%v", bc.subscribers, bc.rate, bc.batch), func(b *testing.B) {
			benchFanout(b, bc.subscribers, bc.rate, bc.batch)
		})
	}
}

func benchFanout(b *testing.B, subscribers, rate int, batch bool) {
	ts := testkit.StartServer(b) // the whole server: writes are REST PUTs
	n := b.N
	q := url.Values{}
	if batch {
		q.Set("batch", "true")
	}
	// arrivals[s][i] is when subscriber s got revision i+1 (UnixNano).
	arrivals := make([][]int64, subscribers)
	conns := make([]*websocket.Conn, subscribers)
	for s := range subscribers {
		c, resp, err := testkit.DialWatchErr(ts.WatchURL(q), nil)
		if resp != nil && resp.Body != nil {
			resp.Body.Close()
		}
		if err != nil {
			b.Fatalf("dial subscriber %d: %v", s, err)
		}
		if _, _, err := c.ReadMessage(); err != nil { // subscribed
			b.Fatal(err)
		}
		conns[s] = c
		arrivals[s] = make([]int64, n)
	}
	var readers sync.WaitGroup
	var missMu sync.Mutex
	missReason := ""
	for s, c := range conns {
		readers.Go(func() {
			defer c.Close()
			got := arrivals[s]
			seen := 0
			revKey := []byte(`"rev":`)
			// One reused buffer and a deadline set once: the readers
			// share the CPU with the server, so they stay lean.
			_ = c.SetReadDeadline(time.Now().Add(deadline))
			var buf bytes.Buffer
			for seen < n {
				buf.Reset()
				_, r, err := c.NextReader()
				if err == nil {
					_, err = buf.ReadFrom(r)
				}
				now := time.Now().UnixNano()
				data := buf.Bytes()
				if err != nil {
					missMu.Lock()
					missReason = err.Error()
					missMu.Unlock()
					return
				}
				// Only context_updated frames (alone or in a batch) come;
				// the values written contain no "rev" key.
				for rest := data; ; {
					i := bytes.Index(rest, revKey)
					if i < 0 {
						break
					}
					rest = rest[i+len(revKey):]
					j := bytes.IndexAny(rest, ",}")
					rev, err := strconv.Atoi(string(rest[:j]))
					if err != nil || rev < 1 || rev > n {
						missMu.Lock()
						missReason = fmt.Sprintf("bad frame %.200s", data)
						missMu.Unlock()
						return
					}
					got[rev-1] = now
					seen++
				}
			}
		})
	}

	// Writers: a pacer hands out one write every 1/rate s to 32 workers,
	// each a REST client that records when its PUT was acknowledged.
	acks := make([]int64, n)
	sends := make([]int64, n) // when the PUT was sent
	tokens := make(chan int, n)
	var writers sync.WaitGroup
	hc := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: 32}}
	for range 32 {
		writers.Go(func() {
			for i := range tokens {
				req, _ := http.NewRequest(http.MethodPut, ts.URL+"/v1/ns/default/keys/k"+strconv.Itoa(i%100), strings.NewReader(`{"n":`+strconv.Itoa(i)+`}`))
				sent := time.Now().UnixNano()
				resp, err := hc.Do(req)
				if err != nil {
					b.Error(err)
					continue
				}
				var buf bytes.Buffer
				_, _ = buf.ReadFrom(resp.Body)
				resp.Body.Close()
				at := time.Now().UnixNano()
				if resp.StatusCode != http.StatusOK {
					b.Errorf("put: %d %s", resp.StatusCode, buf.String())
					continue
				}
				i := bytes.Index(buf.Bytes(), []byte(`"revision":`))
				rev, _ := strconv.Atoi(strings.TrimRight(strings.SplitN(buf.String()[i+len(`"revision":`):], ",", 2)[0], "}"))
				acks[rev-1], sends[rev-1] = at, sent
			}
		})
	}
	b.ResetTimer()
	start := time.Now()
	interval := time.Second / time.Duration(rate)
	for i := range n {
		time.Sleep(time.Until(start.Add(time.Duration(i) * interval))) // time is the subject: writes paced at rate/s
		tokens <- i
	}
	close(tokens)
	writers.Wait()
	elapsed := time.Since(start)
	readers.Wait()
	b.StopTimer()

	// Latency from the acknowledgement (negative when the change reached
	// the subscriber before its writer had read the answer: counted as 0),
	// and from the moment the PUT was sent (never negative).
	fromAck := make([]time.Duration, 0, n*subscribers)
	fromSend := make([]time.Duration, 0, n*subscribers)
	missed := 0
	for s := range subscribers {
		for i, at := range arrivals[s] {
			if at == 0 {
				missed++
				continue
			}
			fromAck = append(fromAck, max(0, time.Duration(at-acks[i])))
			fromSend = append(fromSend, time.Duration(at-sends[i]))
		}
	}
	pct := func(lat []time.Duration, p float64) float64 {
		if len(lat) == 0 {
			return 0
		}
		return float64(lat[min(len(lat)-1, int(p*float64(len(lat))))]) / float64(time.Millisecond)
	}
	slices.Sort(fromAck)
	slices.Sort(fromSend)
	b.ReportMetric(pct(fromAck, 0.50), "ack-p50-ms")
	b.ReportMetric(pct(fromAck, 0.99), "ack-p99-ms")
	b.ReportMetric(pct(fromAck, 1), "ack-max-ms")
	b.ReportMetric(pct(fromSend, 0.50), "put-p50-ms")
	b.ReportMetric(pct(fromSend, 0.99), "put-p99-ms")
	b.ReportMetric(float64(n)/elapsed.Seconds(), "writes/s")
	b.ReportMetric(float64(missed), "missed")
	if f := ts.Hub().Stats().Frames; f > 0 {
		b.ReportMetric(float64(n*subscribers)/float64(f), "changes/frame")
	}
	b.ReportMetric(0, "ns/op")
	if missed > 0 {
		b.Errorf("%d deliveries missed (%s)", missed, missReason)
	}
	if st := ts.Hub().Stats(); st.BufferFull > 0 || st.Lagged > 0 {
		b.Errorf("hub stats %+v", st)
	}
}

// BenchmarkFloodWriteLatency measures what one WebSocket client flooding
// the server costs the other clients: the latency of REST PUTs by 4 other
// writers (each PUT sent when its previous one is answered; b.N PUTs in
// all), with no flood, and with a client sending ping (answered from
// memory) or context_set (each a write) messages as fast as its socket
// takes them, under the default rate limit (websocket.rate_limit 100/s,
// bursts of 200; rate_limit_max_refused 0 so that the flooder is never cut
// and floods throughout) and with the limit off. It reports p50, p99 and
// max of the PUTs' latency, the PUTs/s, and the flood's messages sent
// (taken by its socket) and answered (pong or context_set_confirmed) per
// second while the PUTs ran, and whether the flooder was cut (1: closed
// with lagged for not reading its answers fast enough). Flooder, writers
// and server share the machine's cores.
//
//	go test -run '^$' -bench FloodWriteLatency -benchtime 3000x ./realtime/
func BenchmarkFloodWriteLatency(b *testing.B) {
	for _, bc := range []struct {
		flood string // "": none
		limit float64
	}{
		{"", 100},
		{"ping", 100},
		{"ping", 0},
		{"context_set", 100},
		{"context_set", 0},
	} {
		name := "flood=none"
		if bc.flood != "" {
			name = "flood=" + bc.flood + "/limit=" + strconv.FormatFloat(bc.limit, 'g', -1, 64)
		}
		b.Run(name, func(b *testing.B) { benchFlood(b, bc.flood, bc.limit) })
	}
}

func benchFlood(b *testing.B, flood string, limit float64) {
	ts := testkit.StartServer(b, testkit.WithConfig(func(c *configs.Config) {
		c.WebSocket.RateLimit, c.WebSocket.RateLimitMaxRefused = limit, 0
	}))
	var (
		flooders        sync.WaitGroup
		sent, confirmed atomic.Int64
		floodConn       *websocket.Conn
	)
	if flood != "" {
		c, resp, err := testkit.DialWatchErr(ts.WatchURL(url.Values{"ns": {"flood"}}), nil)
		if resp != nil && resp.Body != nil {
			resp.Body.Close()
		}
		if err != nil {
			b.Fatal(err)
		}
		if _, _, err := c.ReadMessage(); err != nil { // subscribed
			b.Fatal(err)
		}
		floodConn = c
		flooders.Go(func() { // reads (and drops) every answer, so that it is never cut as lagged
			for {
				_, data, err := c.ReadMessage()
				if err != nil {
					return
				}
				if bytes.HasPrefix(data, []byte(`{"type":"context_set_confirmed"`)) || bytes.HasPrefix(data, []byte(`{"type":"pong"`)) {
					confirmed.Add(1)
				}
			}
		})
		flooders.Go(func() { // writes as fast as its socket takes them, until it is closed
			for i := 0; ; i++ {
				msg := `{"type":"ping","id":` + strconv.Itoa(i) + `}`
				if flood == "context_set" {
					msg = `{"type":"context_set","ns":"flood","key":"f` + strconv.Itoa(i%1000) + `","value":` + strconv.Itoa(i) + `}`
				}
				if c.WriteMessage(websocket.TextMessage, []byte(msg)) != nil {
					return
				}
				sent.Add(1)
			}
		})
	}

	n := b.N
	lat := make([]time.Duration, n)
	next := atomic.Int64{}
	var writers sync.WaitGroup
	hc := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: 4}}
	b.ResetTimer()
	start := time.Now()
	for range 4 {
		writers.Go(func() {
			for i := int(next.Add(1) - 1); i < n; i = int(next.Add(1) - 1) {
				req, _ := http.NewRequest(http.MethodPut, ts.URL+"/v1/ns/default/keys/k"+strconv.Itoa(i%100), strings.NewReader(strconv.Itoa(i)))
				t0 := time.Now()
				resp, err := hc.Do(req)
				if err != nil {
					b.Error(err)
					return
				}
				_, _ = io.Copy(io.Discard, resp.Body)
				resp.Body.Close()
				lat[i] = time.Since(t0)
				if resp.StatusCode != http.StatusOK {
					b.Errorf("put: %d", resp.StatusCode)
				}
			}
		})
	}
	writers.Wait()
	elapsed := time.Since(start)
	b.StopTimer()
	// Sent: handed to the flooder's socket (the kernel buffers hold what
	// the server has not read yet); answered: pong or confirmed.
	floodSent, floodApplied := sent.Load(), confirmed.Load()
	if floodConn != nil {
		_ = floodConn.Close()
	}
	flooders.Wait()

	slices.Sort(lat)
	pct := func(p float64) float64 {
		return float64(lat[min(n-1, int(p*float64(n)))]) / float64(time.Millisecond)
	}
	b.ReportMetric(pct(0.50), "put-p50-ms")
	b.ReportMetric(pct(0.99), "put-p99-ms")
	b.ReportMetric(pct(1), "put-max-ms")
	b.ReportMetric(float64(n)/elapsed.Seconds(), "puts/s")
	b.ReportMetric(float64(floodSent)/elapsed.Seconds(), "flood-sent/s")
	b.ReportMetric(float64(floodApplied)/elapsed.Seconds(), "flood-answered/s")
	// A flooder that does not keep up with its own answers (pongs without
	// the limit) is closed with lagged, as any such client: it then
	// floods no more.
	st := ts.Hub().Stats()
	b.ReportMetric(float64(st.Lagged+st.RateLimitClosed), "flooder-cut")
	b.ReportMetric(0, "ns/op")
}
