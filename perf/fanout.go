package perf

import (
	"bytes"
	"context"
	"fmt"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/gorilla/websocket"
)

// fanoutDrain bounds the wait, after the last write, for every subscriber
// to receive every change; what has not arrived by then is missed.
const fanoutDrain = 30 * time.Second

// fanoutShards spreads the subscribers' latency recording over this many
// locked histogram pairs.
const fanoutShards = 32

func (s *suite) fanoutSteps() []step {
	var steps []step
	add := func(name, protocol string, n int) {
		est := s.cfg.Duration + time.Second + time.Duration(n)*300*time.Microsecond
		steps = append(steps, step{name: name, estimate: est, run: func(ctx context.Context) error {
			return s.fanoutRun(ctx, name, n, protocol)
		}})
	}
	for _, n := range s.cfg.FanoutSubscribers {
		add(fmt.Sprintf("fanout/subs=%d/rate=%d", n, s.cfg.FanoutRate), protocolWatch, n)
	}
	for _, n := range s.cfg.FanoutSocketIOSubscribers {
		if noSocketIOFanout(s.cfg.FanoutSocketIOSubscribers) {
			break
		}
		add(fmt.Sprintf("fanout/socketio/subs=%d/rate=%d", n, s.cfg.FanoutRate), protocolSocketIO, n)
	}
	return steps
}

// noSocketIOFanout says that fanout runs no Socket.IO subscribers: the
// counts are 0 alone (--fanout-socketio-subscribers 0).
func noSocketIOFanout(counts []int) bool { return len(counts) == 1 && counts[0] == 0 }

// latencyShard is the histograms some subscribers record into: the whole
// run's, and per tenth of the writes (for the spread).
type latencyShard struct {
	mu              sync.Mutex
	fromAck, fromTx *histogram
	parts           [intervals]struct{ fromAck, fromTx *histogram }
}

func newLatencyShard() *latencyShard {
	ls := &latencyShard{fromAck: newHistogram(), fromTx: newHistogram()}
	for i := range ls.parts {
		ls.parts[i].fromAck, ls.parts[i].fromTx = newCoarseHistogram(), newCoarseHistogram()
	}
	return ls
}

// subscriber is one WebSocket client of the fan-out: of /v1/watch, or
// of the Socket.IO door (sio).
type subscriber struct {
	conn       *websocket.Conn
	sio        bool
	got        atomic.Int64 // changes received
	frames     int64        // frames that carried changes
	duplicates int64        // changes delivered twice, or before the one before (must be 0)
	lastRev    uint64
	// delivered has a bit per write of the run: concurrent writes may
	// share a revision (etcd), so a change is known by its write, not
	// its revision.
	delivered []uint64
	err       error // why it stopped reading early, if it did
}

// fanoutRun connects subs WebSocket subscribers of protocol (watch:
// /v1/watch, socketio: Socket.IO over WebSocket), then writes FanoutRate
// PUTs per second for Duration, each to a new key that every subscriber
// matches, and measures when each change reaches each subscriber.
func (s *suite) fanoutRun(ctx context.Context, name string, subs int, protocol string) error {
	writes := max(int(float64(s.cfg.FanoutRate)*s.cfg.Duration.Seconds()), 1)
	keyPrefix := fmt.Sprintf("%s-%d-", s.runID, len(s.report.Fanout))
	fr := FanoutRun{
		Name: name, Protocol: protocol, Subscribers: subs, Rate: s.cfg.FanoutRate, Batch: s.cfg.FanoutBatch && protocol == protocolWatch,
		Writers: s.cfg.FanoutWriters, DurationSeconds: s.cfg.Duration.Seconds(),
	}
	errs := &errorLog{}
	defer func() {
		fr.RunErrors = errs.result()
		s.report.Fanout = append(s.report.Fanout, fr)
	}()

	// A server of its own when the target can start one in its own
	// process (its memory is then the server's alone), else the main one.
	srv, ep := s.main, s.ep
	if s.target.Isolated != nil {
		var stop func()
		var err error
		if srv, ep, stop, err = s.ownServer(true); err != nil {
			return err
		}
		defer stop()
	}
	memBefore, _, haveMemory := s.readMemory(name, srv, ep)

	// Subscribers first: every one must be subscribed before the first write.
	q := url.Values{"ns": {nsFanout}, "prefix": {keyPrefix}}
	if fr.Batch {
		q.Set("batch", "true")
	}
	wsURL := "ws" + ep.base[len("http"):] + "/v1/watch?" + q.Encode()
	var sioAuth any
	if protocol == protocolSocketIO {
		wsURL = socketIOURL(ep.base)
		sioAuth = map[string]string{"ns": nsFanout, "prefix": keyPrefix}
	}
	// Subscribers spread over the target and the other instances of its
	// deployment (Config.MoreTargets), the first ones on the target.
	wsURLs := []string{wsURL}
	if protocol == protocolWatch {
		for _, base := range s.cfg.MoreTargets {
			wsURLs = append(wsURLs, "ws"+strings.TrimPrefix(strings.TrimSuffix(base, "/"), "http")+"/v1/watch?"+q.Encode())
		}
	}
	fr.Instances = len(wsURLs)
	connectStart := time.Now()
	var subscribers []*subscriber
	for i, u := range wsURLs {
		n := subs / len(wsURLs)
		if i < subs%len(wsURLs) {
			n++
		}
		more, err := connectSubscribers(ctx, ep, u, n, sioAuth)
		subscribers = append(subscribers, more...)
		if err != nil {
			for _, sub := range subscribers {
				if sub != nil {
					_ = sub.conn.Close()
				}
			}
			return err
		}
	}
	fr.ConnectSeconds = round6(time.Since(connectStart).Seconds())
	defer func() {
		for _, sub := range subscribers {
			_ = sub.conn.Close()
		}
	}()

	// acks[i] is when write i was acknowledged, in ns after start (0: not yet).
	acks := make([]atomic.Int64, writes)
	interval := float64(time.Second) / float64(s.cfg.FanoutRate)
	var shards [fanoutShards]*latencyShard
	for i := range shards {
		shards[i] = newLatencyShard()
	}
	start := time.Now().Add(20 * time.Millisecond) // the readers are up by then
	var readers sync.WaitGroup
	for i, sub := range subscribers {
		readers.Go(func() {
			sub.read(shards[i%fanoutShards], keyPrefix, start, interval, acks, errs)
		})
	}

	// Writers: fixed rate, each write timed from its intended send time.
	writeHist := newHistogram()
	var writeMu sync.Mutex
	var next, acked atomic.Int64
	var writers sync.WaitGroup
	for range s.cfg.FanoutWriters {
		writers.Go(func() {
			c := newHTTPConn(ep)
			defer c.Close()
			local := newHistogram()
			for ctx.Err() == nil {
				i := int(next.Add(1) - 1)
				if i >= writes {
					break
				}
				intended := start.Add(time.Duration(float64(i) * interval))
				time.Sleep(time.Until(intended))
				err := c.expect(http.StatusOK, http.MethodPut, keyPath(nsFanout, keyPrefix+strconv.Itoa(i)), s.value)
				now := time.Now()
				if err != nil {
					errs.add(err)
					continue
				}
				acks[i].Store(int64(now.Sub(start)))
				acked.Add(1)
				local.record(now.Sub(intended))
			}
			writeMu.Lock()
			writeHist.merge(local)
			writeMu.Unlock()
		})
	}
	writers.Wait()
	writesDone := time.Since(start)
	fr.Writes = acked.Load()
	fr.WritesPerSec = round1(float64(fr.Writes) / writesDone.Seconds())
	fr.WriteLatency = writeHist.summary()

	// Wait until every subscriber has every acknowledged change, or give up.
	deadline := time.Now().Add(fanoutDrain)
	for time.Now().Before(deadline) && ctx.Err() == nil {
		all := true
		for _, sub := range subscribers {
			if sub.got.Load() < fr.Writes {
				all = false
				break
			}
		}
		if all {
			break
		}
		time.Sleep(10 * time.Millisecond)
	}
	if haveMemory && ctx.Err() == nil {
		// With every subscriber still connected.
		if after, process, ok := s.readMemory(name, srv, ep); ok {
			fr.Memory = memoryUse(process, memBefore, after, subs, 1000, "subscribers")
		}
	}
	for _, sub := range subscribers {
		_ = sub.conn.Close() // ends the readers
	}
	readers.Wait()
	if err := ctx.Err(); err != nil {
		return err
	}

	fromAck, fromTx := newHistogram(), newHistogram()
	var parts [intervals]struct{ fromAck, fromTx *histogram }
	for p := range parts {
		parts[p].fromAck, parts[p].fromTx = newCoarseHistogram(), newCoarseHistogram()
	}
	for _, sh := range shards {
		fromAck.merge(sh.fromAck)
		fromTx.merge(sh.fromTx)
		for p := range parts {
			parts[p].fromAck.merge(sh.parts[p].fromAck)
			parts[p].fromTx.merge(sh.parts[p].fromTx)
		}
	}
	var ackP50, ackP99, txP99 []float64
	for _, p := range parts {
		if p.fromAck.count() > 0 {
			ackP50 = append(ackP50, p.fromAck.at(50))
			ackP99 = append(ackP99, p.fromAck.at(99))
			txP99 = append(txP99, p.fromTx.at(99))
		}
	}
	fr.AckP50Spread, fr.AckP99Spread, fr.SendP99Spread = round3(stddev(ackP50)), round3(stddev(ackP99)), round3(stddev(txP99))
	fr.Expected = fr.Writes * int64(subs)
	for _, sub := range subscribers {
		got := sub.got.Load()
		fr.Deliveries += got
		fr.Missed += max(fr.Writes-got, 0)
		fr.Duplicates += sub.duplicates
		fr.Frames += sub.frames
	}
	if fr.Frames > 0 {
		fr.ChangesPerFrame = round3(float64(fr.Deliveries) / float64(fr.Frames))
	}
	fr.AckToArrival = fromAck.summary()
	fr.SendToArrival = fromTx.summary()
	fr.Distribution = fromAck.distribution()
	fr.SendDistribution = fromTx.distribution()
	if fr.Missed > 0 {
		reason := ""
		for _, sub := range subscribers {
			if sub.err != nil && sub.got.Load() < fr.Writes {
				reason = ": " + sub.err.Error()
				break
			}
		}
		errs.add(fmt.Errorf("%d deliveries missed after waiting %s%s", fr.Missed, fanoutDrain, reason))
	}
	return nil
}

// connectSubscribers opens n WebSocket connections to wsURL, a few at a
// time, with ep's credentials, and reads each one's "subscribed" frame;
// with sioAuth, they are Socket.IO clients connected with that auth
// payload, up to their context_snapshot.
func connectSubscribers(ctx context.Context, ep endpoint, wsURL string, n int, sioAuth any) ([]*subscriber, error) {
	const parallel = 32
	subs := make([]*subscriber, n)
	dialer := &websocket.Dialer{HandshakeTimeout: dialTimeout, ReadBufferSize: 16 << 10, WriteBufferSize: 1 << 10, TLSClientConfig: ep.tlsConfig}
	var header http.Header
	if ep.authorization != "" {
		header = http.Header{"Authorization": {ep.authorization}}
	}
	var next atomic.Int64
	var firstErr error
	var mu sync.Mutex
	var wg sync.WaitGroup
	for range min(parallel, n) {
		wg.Go(func() {
			for {
				i := int(next.Add(1) - 1)
				if i >= n || ctx.Err() != nil {
					return
				}
				if sioAuth != nil {
					conn, err := dialSocketIO(ctx, dialer, wsURL, header, sioAuth)
					if err == nil {
						subs[i] = &subscriber{conn: conn, sio: true}
						continue
					}
					mu.Lock()
					if firstErr == nil {
						firstErr = fmt.Errorf("connect Socket.IO subscriber %d of %d: %w", i+1, n, err)
					}
					mu.Unlock()
					next.Store(int64(n))
					return
				}
				conn, resp, err := dialer.DialContext(ctx, wsURL, header)
				if resp != nil && resp.Body != nil {
					resp.Body.Close()
				}
				if err == nil {
					_ = conn.SetReadDeadline(time.Now().Add(dialTimeout))
					var frame []byte
					_, frame, err = conn.ReadMessage()
					if err == nil && !bytes.Contains(frame, []byte(`"type":"subscribed"`)) {
						err = fmt.Errorf("first frame is not subscribed: %.200s", frame)
					}
					_ = conn.SetReadDeadline(time.Time{})
					if err != nil {
						conn.Close()
					}
				}
				if err != nil {
					mu.Lock()
					if firstErr == nil {
						firstErr = fmt.Errorf("connect subscriber %d of %d: %w", i+1, n, err)
					}
					mu.Unlock()
					next.Store(int64(n)) // stop the others
					return
				}
				subs[i] = &subscriber{conn: conn}
			}
		})
	}
	wg.Wait()
	if firstErr == nil && ctx.Err() != nil {
		firstErr = ctx.Err()
	}
	if firstErr != nil {
		for _, s := range subs {
			if s != nil {
				s.conn.Close()
			}
		}
		return nil, firstErr
	}
	return subs, nil
}

var (
	revField   = []byte(`"rev":`)
	keyField   = []byte(`"key":"`)
	errorFrame = []byte(`"type":"error"`)
)

// read receives frames until the connection is closed, recording for each
// change of the run the time since its acknowledgement and since its
// intended send time. Frames are scanned, not decoded: the subscribers
// share the CPU with the server, so they stay lean. The only changes that
// come are the run's (its key prefix), whose values hold no "rev" field.
func (sub *subscriber) read(shard *latencyShard, keyPrefix string, start time.Time, interval float64, acks []atomic.Int64, errs *errorLog) {
	var buf bytes.Buffer
	type arrival struct {
		fromAck, fromTx time.Duration
		part            int // which tenth of the writes
	}
	var batch []arrival
	var now time.Duration // when the frame being read arrived, since start
	// accept records the change of revision rev whose key starts rest.
	accept := func(rev uint64, rest []byte) {
		if !bytes.HasPrefix(rest, []byte(keyPrefix)) {
			return
		}
		idx, n := parseUint(rest[len(keyPrefix):])
		if n == 0 || idx >= uint64(len(acks)) {
			return
		}
		if sub.delivered == nil {
			sub.delivered = make([]uint64, (len(acks)+63)/64)
		}
		word, bit := idx/64, uint64(1)<<(idx%64)
		if rev < sub.lastRev || sub.delivered[word]&bit != 0 {
			sub.duplicates++
			return
		}
		sub.delivered[word] |= bit
		sub.lastRev = rev
		a := arrival{fromTx: now - time.Duration(float64(idx)*interval), part: int(idx) * intervals / len(acks)}
		if ack := acks[idx].Load(); ack != 0 {
			a.fromAck = now - time.Duration(ack) // negative (arrived first) records as 0
		}
		batch = append(batch, a)
	}
	for {
		buf.Reset()
		_, r, err := sub.conn.NextReader()
		if err == nil {
			_, err = buf.ReadFrom(r)
		}
		if err != nil {
			sub.err = err
			return
		}
		now = time.Since(start)
		data := buf.Bytes()
		batch = batch[:0]
		if sub.sio {
			change, err := sub.sioFrame(data)
			if err != nil {
				sub.err = err
				errs.add(err)
				return
			}
			if change {
				if key, rev, ok := sioChange(data); ok {
					accept(rev, key)
				}
			}
		} else if bytes.Contains(data, errorFrame) {
			sub.err = fmt.Errorf("server sent %.300s", data)
			errs.add(sub.err)
			return
		}
		for rest := data; !sub.sio; {
			i := bytes.Index(rest, revField)
			if i < 0 {
				break
			}
			rest = rest[i+len(revField):]
			rev, n := parseUint(rest)
			rest = rest[n:]
			j := bytes.Index(rest, keyField)
			if j < 0 {
				break
			}
			rest = rest[j+len(keyField):]
			accept(rev, rest)
		}
		if len(batch) == 0 {
			continue
		}
		shard.mu.Lock()
		for _, a := range batch {
			shard.fromAck.record(a.fromAck)
			shard.fromTx.record(a.fromTx)
			shard.parts[a.part].fromAck.record(a.fromAck)
			shard.parts[a.part].fromTx.record(a.fromTx)
		}
		shard.mu.Unlock()
		sub.got.Add(int64(len(batch)))
		sub.frames++
	}
}

// parseUint reads the decimal number at the start of b and the number of
// bytes it took.
func parseUint(b []byte) (uint64, int) {
	var v uint64
	n := 0
	for n < len(b) && b[n] >= '0' && b[n] <= '9' {
		v = v*10 + uint64(b[n]-'0')
		n++
	}
	return v, n
}
