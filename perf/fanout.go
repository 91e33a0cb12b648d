package perf

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"math"
	"math/bits"
	"net/http"
	"net/url"
	"slices"
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
		if slices.Contains(s.cfg.Compare, PeerEtcd) {
			name := fmt.Sprintf("fanout/%s/subs=%d/rate=%d", PeerEtcd, n, s.cfg.FanoutRate)
			est := s.cfg.Duration + time.Second + time.Duration(n)*time.Millisecond
			steps = append(steps, step{name: name, estimate: est, run: func(ctx context.Context) error {
				return s.peerFanoutRun(ctx, name, n, PeerEtcd)
			}})
		}
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

// FanoutFeed is a server's side of a fan-out run: its writes and the
// subscribers of its change feed. ctxd's is /v1/watch (or Socket.IO) over
// WebSocket with PUTs over HTTP; etcd's peer (PeerWatcher) is etcd's
// watch and puts through its Go client. Keys are the run's, without a
// namespace: each feed puts them where its server keeps them.
type FanoutFeed interface {
	// Connect readies writers 0..n-1 (as PeerClient.Connect).
	Connect(n int) error
	// Put writes value at key; writer w calls it from one goroutine.
	Put(ctx context.Context, w int, key string, value []byte) error
	// Subscribe opens n subscribers of the changes of the keys that start
	// with prefix. Each one receives every change written after Subscribe
	// returns.
	Subscribe(ctx context.Context, n int, prefix string) ([]FanoutSubscriber, error)
}

// FanoutSubscriber is one client of a feed.
type FanoutSubscriber interface {
	// Receive waits for the next message the server sends and calls
	// change for each change it carries, in order: rev is the change's
	// revision and key starts with its key (more bytes may follow). A
	// message without changes calls nothing. It returns
	// ErrSubscriberClosed once the subscriber is closed, another error
	// when the server refused or dropped it.
	Receive(change func(rev uint64, key []byte)) error
	// Close ends the subscriber; a Receive waiting returns.
	Close() error
}

// FanoutSpec is a fan-out run, as every feed performs it: Subscribers
// subscribe, then Writers write Rate new keys a second (KeyPrefix and a
// sequence number) for Duration, each a value of ValueSize bytes.
type FanoutSpec struct {
	Name        string        `json:"name"`
	Subscribers int           `json:"subscribers"`
	Rate        int           `json:"rate"`
	Writers     int           `json:"writers"`
	Duration    time.Duration `json:"duration"`
	ValueSize   int           `json:"value_size"`
	KeyPrefix   string        `json:"key_prefix"`
	// Drain bounds the wait for every change after the last write (0:
	// fanoutDrain).
	Drain time.Duration `json:"drain,omitempty"`
}

// drain is how long the run waits for every change after the last write.
func (spec FanoutSpec) drain() time.Duration {
	if spec.Drain > 0 {
		return spec.Drain
	}
	return fanoutDrain
}

// fanoutReader is what a run knows of one subscriber.
type fanoutReader struct {
	sub        FanoutSubscriber
	got        atomic.Int64 // changes received
	frames     int64        // messages that carried changes
	duplicates int64        // changes delivered twice, or before the one before (must be 0)
	lastRev    uint64
	// delivered has a bit per write of the run: concurrent writes may
	// share a revision (etcd), so a change is known by its write, not
	// its revision. Atomic: the wait for every change reads it.
	delivered []atomic.Uint64
	err       error // why it stopped reading early, if it did
}

// fanoutRun measures ctxd's WebSocket fan-out: subs subscribers of
// protocol (watch: /v1/watch, socketio: Socket.IO over WebSocket), spread
// over the target and Config.MoreTargets (watch only), while FanoutRate
// PUTs a second go to the target.
func (s *suite) fanoutRun(ctx context.Context, name string, subs int, protocol string) error {
	spec := s.fanoutSpec(name, subs)
	fr := FanoutRun{Protocol: protocol, Batch: s.cfg.FanoutBatch && protocol == protocolWatch}
	fr.describe(spec)
	errs := &errorLog{}
	defer func() {
		if ctx.Err() != nil {
			// Interrupted (Ctrl-C): a run cut short is left out, as an
			// interrupted request loop is. It was kept with its
			// deliveries uncounted, and its targets read as met.
			return
		}
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

	feed := &wsFeed{ep: ep, batch: fr.Batch}
	defer feed.closeWriters()
	feed.bases = []string{ep.base}
	if protocol == protocolSocketIO {
		feed.sio = true
	} else {
		// Subscribers spread over the target and the other instances of
		// its deployment, the first ones on the target.
		for _, base := range s.cfg.MoreTargets {
			feed.bases = append(feed.bases, strings.TrimSuffix(base, "/"))
		}
	}
	fr.Instances = len(feed.bases)
	// The memory read is the target's, which holds its share of the
	// subscribers (wsFeed.Subscribe): divided by all of them, its growth
	// per 1,000 was a third of the truth over three instances.
	onTarget := (subs + len(feed.bases) - 1) / len(feed.bases)
	connected := func() {
		if haveMemory && ctx.Err() == nil {
			if after, process, ok := s.readMemory(name, srv, ep); ok {
				fr.Memory = memoryUse(process, memBefore, after, onTarget, 1000, "subscribers")
			}
		}
	}
	return measureFanout(ctx, feed, spec, s.value, &fr, errs, connected)
}

// peerFanoutRun measures the same fan-out as fanoutRun (subs subscribers,
// FanoutRate writes a second) on the named peer's own feed: etcd's watch,
// each subscriber a client of its own, the writes through etcd's client,
// its subscribers and writers in the peer's process, as ctxd's are in the
// suite's.
func (s *suite) peerFanoutRun(ctx context.Context, name string, subs int, peerName string) error {
	spec := s.fanoutSpec(name, subs)
	fr := FanoutRun{Protocol: protocolPeerWatch, Peer: peerName}
	fr.describe(spec)
	err := s.startPeers(ctx)
	if err == nil {
		err = fmt.Errorf("peer %s is not running", peerName)
		if why := s.peerError(peerName); why != "" {
			err = fmt.Errorf("peer %s did not start: %s", peerName, why)
		}
		for _, p := range s.peers {
			if pp, ok := p.(*PeerProcess); ok && p.info().Name == peerName {
				var got FanoutRun
				if got, err = pp.fanout(ctx, spec); err == nil {
					fr = got
					fr.Peer = peerName
				}
				break
			}
		}
	}
	if err != nil {
		if ctx.Err() != nil {
			return ctx.Err()
		}
		fr.RunErrors = RunErrors{Errors: 1, ErrorSamples: []string{err.Error()}}
	}
	s.report.Fanout = append(s.report.Fanout, fr)
	return nil
}

// describe sets the run's settings from spec.
func (fr *FanoutRun) describe(spec FanoutSpec) {
	fr.Name, fr.Subscribers, fr.Rate, fr.Writers = spec.Name, spec.Subscribers, spec.Rate, spec.Writers
	fr.DurationSeconds = spec.Duration.Seconds()
}

// fanoutSpec is the run name of subs subscribers, with the suite's
// settings and a key prefix of its own.
func (s *suite) fanoutSpec(name string, subs int) FanoutSpec {
	return FanoutSpec{
		Name: name, Subscribers: subs, Rate: s.cfg.FanoutRate, Writers: s.cfg.FanoutWriters, Duration: s.cfg.Duration,
		ValueSize: s.cfg.ValueSize, KeyPrefix: fmt.Sprintf("%s-%d-", s.runID, len(s.report.Fanout)),
	}
}

// measureFanout runs spec on feed and fills fr, which the caller
// described (fr.describe(spec)): it connects the subscribers, writes at
// the fixed rate, waits (up to spec.drain()) for
// every subscriber to have every acknowledged change, calls connected
// (nil: nothing) while they are still connected, and measures when each
// change reached each subscriber.
func measureFanout(ctx context.Context, feed FanoutFeed, spec FanoutSpec, value []byte, fr *FanoutRun, errs *errorLog, connected func()) error {
	writes := max(int(float64(spec.Rate)*spec.Duration.Seconds()), 1)
	if fr.Instances == 0 {
		fr.Instances = 1
	}
	if err := feed.Connect(spec.Writers); err != nil {
		return err
	}

	// Subscribers first: every one must be subscribed before the first write.
	connectStart := time.Now()
	subs, err := feed.Subscribe(ctx, spec.Subscribers, spec.KeyPrefix)
	if err != nil {
		return err
	}
	fr.ConnectSeconds = round6(time.Since(connectStart).Seconds())
	readers := make([]*fanoutReader, len(subs))
	for i, sub := range subs {
		readers[i] = &fanoutReader{sub: sub, delivered: make([]atomic.Uint64, (writes+63)/64)}
	}
	defer func() {
		for _, sub := range subs {
			_ = sub.Close()
		}
	}()

	// acks[i] is when write i was acknowledged, in ns after start (0: not
	// yet); sends[i] when it was sent (paced), stored before it is sent.
	// early[i] counts the arrivals of write i's change before its
	// acknowledgement: each is an ack-to-arrival of 0 once the write is
	// acknowledged, and none if it never is (it failed after the server
	// applied it: no acknowledgement to time from).
	acks, sends := make([]atomic.Int64, writes), make([]atomic.Int64, writes)
	early := make([]atomic.Int32, writes)
	interval := float64(time.Second) / float64(spec.Rate)
	var shards [fanoutShards]*latencyShard
	for i := range shards {
		shards[i] = newLatencyShard()
	}
	start := time.Now().Add(20 * time.Millisecond) // the readers are up by then
	var reading sync.WaitGroup
	for i, r := range readers {
		reading.Go(func() {
			r.read(shards[i%fanoutShards], spec.KeyPrefix, start, sends, acks, early, errs)
		})
	}

	// Writers: fixed rate, each write timed from when it was sent (paced).
	writeHist := newHistogram()
	var writeMu sync.Mutex
	var next, acked, failed atomic.Int64
	var firstSend, lastSend atomic.Int64 // of the acknowledged writes, in ns after start
	firstSend.Store(math.MaxInt64)
	var writers sync.WaitGroup
	for w := range spec.Writers {
		writers.Go(func() {
			local := newHistogram()
			for ctx.Err() == nil {
				i := int(next.Add(1) - 1)
				if i >= writes {
					break
				}
				sent, ok := paced(ctx, start.Add(time.Duration(float64(i)*interval)))
				if !ok {
					break
				}
				sends[i].Store(int64(sent.Sub(start)))
				began := int64(time.Since(start))
				err := feed.Put(ctx, w, spec.KeyPrefix+strconv.Itoa(i), value)
				now := time.Now()
				if err != nil {
					if ctx.Err() == nil { // not a write cut short by Ctrl-C
						failed.Add(1)
					}
					errs.add(err)
					continue
				}
				acks[i].Store(int64(now.Sub(start)))
				acked.Add(1)
				atomicMin(&firstSend, began)
				atomicMax(&lastSend, began)
				local.record(now.Sub(sent))
			}
			writeMu.Lock()
			writeHist.merge(local)
			writeMu.Unlock()
		})
	}
	writers.Wait()
	// Over the time the writes were meant to take at the rate, or, when
	// the writers fell behind, the time they took to be sent (sendSpan):
	// not until the last acknowledgement, which added its latency.
	// Only the acknowledged writes count; the failed ones are said beside.
	fr.Writes, fr.FailedWrites = acked.Load(), failed.Load()
	if fr.Writes > 0 {
		took := max(time.Duration(float64(writes)*interval), sendSpan(time.Duration(firstSend.Load()), time.Duration(lastSend.Load()), int(fr.Writes)))
		fr.WritesPerSec = round1(float64(fr.Writes) / took.Seconds())
	}
	fr.WriteLatency = writeHist.summary()
	ackedBits := make([]uint64, (writes+63)/64)
	for i := range acks {
		if acks[i].Load() != 0 {
			ackedBits[i/64] |= 1 << (i % 64)
		}
	}

	// Wait until every subscriber has every acknowledged change, or give
	// up. Write by write: a count of changes received would also count
	// the change of a write that failed after the server applied it.
	deadline := time.Now().Add(spec.drain())
	for time.Now().Before(deadline) && ctx.Err() == nil {
		all := true
		for _, r := range readers {
			if r.missing(ackedBits) > 0 {
				all = false
				break
			}
		}
		if all {
			break
		}
		time.Sleep(10 * time.Millisecond)
	}
	if connected != nil {
		connected() // with every subscriber still connected
	}
	for _, sub := range subs {
		_ = sub.Close() // ends the readers
	}
	reading.Wait()
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
	for i := range early { // arrived before their acknowledgement: 0
		if n := early[i].Load(); n > 0 && acks[i].Load() != 0 {
			for range n {
				fromAck.record(0)
				parts[fanoutPart(i, writes)].fromAck.record(0)
			}
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
	fr.AckP50Spread, fr.AckP99Spread, fr.SendP99Spread = round6(stddev(ackP50)), round6(stddev(ackP99)), round6(stddev(txP99))
	fr.Expected = fr.Writes * int64(len(readers))
	// Missed: the acknowledged writes a subscriber did not get, write by
	// write. Its count of changes less the writes hid a missed one behind
	// the change of a write that failed after the server applied it.
	missing := make([]int64, len(readers))
	for i, r := range readers {
		missing[i] = r.missing(ackedBits)
		fr.Deliveries += r.got.Load()
		fr.Missed += missing[i]
		fr.Duplicates += r.duplicates
		fr.Frames += r.frames
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
		for i, r := range readers {
			if r.err != nil && missing[i] > 0 {
				reason = ": " + r.err.Error()
				break
			}
		}
		errs.add(fmt.Errorf("%d deliveries missed after waiting %s%s", fr.Missed, spec.drain(), reason))
	}
	return nil
}

// read receives the subscriber's messages until it is closed, recording
// for each change of the run the time since it was sent (paced: its
// intended send time when the writer was late) and since its
// acknowledgement; one that arrives before its acknowledgement is counted
// in early instead, for the run to record once it knows whether the
// write was acknowledged.
func (r *fanoutReader) read(shard *latencyShard, keyPrefix string, start time.Time, sends, acks []atomic.Int64, early []atomic.Int32, errs *errorLog) {
	type arrival struct {
		fromAck, fromTx time.Duration
		acked           bool // fromAck is a time
		part            int  // which tenth of the writes
	}
	var batch []arrival
	var now time.Duration // when the message being read arrived, since start
	// accept records the change of revision rev whose key starts rest.
	accept := func(rev uint64, rest []byte) {
		if now == 0 {
			now = time.Since(start)
		}
		if !bytes.HasPrefix(rest, []byte(keyPrefix)) {
			return
		}
		idx, n := parseUint(rest[len(keyPrefix):])
		if n == 0 || idx >= uint64(len(acks)) {
			return
		}
		word, bit := idx/64, uint64(1)<<(idx%64)
		if rev < r.lastRev || r.delivered[word].Load()&bit != 0 {
			r.duplicates++
			return
		}
		r.delivered[word].Or(bit)
		r.lastRev = rev
		a := arrival{fromTx: now - time.Duration(sends[idx].Load()), part: fanoutPart(int(idx), len(acks))}
		if ack := acks[idx].Load(); ack != 0 {
			a.fromAck, a.acked = now-time.Duration(ack), true // negative (arrived first) records as 0
		} else {
			early[idx].Add(1)
		}
		batch = append(batch, a)
	}
	for {
		batch, now = batch[:0], 0
		if err := r.sub.Receive(accept); err != nil {
			r.err = err
			if !errors.Is(err, ErrSubscriberClosed) {
				errs.add(err)
			}
			return
		}
		if len(batch) == 0 {
			continue
		}
		shard.mu.Lock()
		for _, a := range batch {
			if a.acked {
				shard.fromAck.record(a.fromAck)
				shard.parts[a.part].fromAck.record(a.fromAck)
			}
			shard.fromTx.record(a.fromTx)
			shard.parts[a.part].fromTx.record(a.fromTx)
		}
		shard.mu.Unlock()
		r.got.Add(int64(len(batch)))
		r.frames++
	}
}

// fanoutPart is which of the run's intervals (tenths) write i of writes
// falls in, for the spread of its latencies.
func fanoutPart(i, writes int) int { return i * intervals / writes }

// missing counts the writes of acked (a bit per write) the subscriber
// has not received.
func (r *fanoutReader) missing(acked []uint64) int64 {
	var n int64
	for w, a := range acked {
		n += int64(bits.OnesCount64(a &^ r.delivered[w].Load()))
	}
	return n
}

// ErrSubscriberClosed is what a FanoutSubscriber's Receive answers once
// the run closed it: the end of a run, not an error of it.
var ErrSubscriberClosed = errors.New("subscriber closed")

// wsFeed is ctxd's feed: PUTs over HTTP/1.1 (one connection per writer),
// subscribers over WebSocket spread over bases (servers' base URLs), of
// /v1/watch (with batch=true when batch) or of the Socket.IO door (sio).
type wsFeed struct {
	ep      endpoint
	bases   []string
	batch   bool
	sio     bool
	writers []*httpConn
}

func (f *wsFeed) Connect(n int) error {
	for len(f.writers) < n {
		f.writers = append(f.writers, newHTTPConn(f.ep))
	}
	return nil
}

func (f *wsFeed) Put(ctx context.Context, w int, key string, value []byte) error {
	if f.writers[w].ctx == nil {
		f.writers[w].ctx = ctx // a stop ends a write a hung server holds
	}
	return f.writers[w].expect(http.StatusOK, http.MethodPut, keyPath(nsFanout, key), value)
}

func (f *wsFeed) closeWriters() {
	for _, c := range f.writers {
		_ = c.Close()
	}
}

func (f *wsFeed) Subscribe(ctx context.Context, n int, prefix string) ([]FanoutSubscriber, error) {
	q := url.Values{"ns": {nsFanout}, "prefix": {prefix}}
	if f.batch {
		q.Set("batch", "true")
	}
	var sioAuth any
	if f.sio {
		sioAuth = map[string]string{"ns": nsFanout, "prefix": prefix}
	}
	var subs []FanoutSubscriber
	for i, base := range f.bases {
		u := "ws" + strings.TrimPrefix(base, "http") + "/v1/watch?" + q.Encode()
		if f.sio {
			u = socketIOURL(base)
		}
		k := n / len(f.bases)
		if i < n%len(f.bases) {
			k++
		}
		more, err := connectSubscribers(ctx, f.ep, u, k, sioAuth)
		if err != nil {
			for _, sub := range subs {
				_ = sub.Close()
			}
			return nil, err
		}
		subs = append(subs, more...)
	}
	return subs, nil
}

// subscriber is one WebSocket client of ctxd's fan-out: of /v1/watch, or
// of the Socket.IO door (sio).
type subscriber struct {
	conn   *websocket.Conn
	sio    bool
	buf    bytes.Buffer
	closed atomic.Bool
}

func (sub *subscriber) Close() error {
	sub.closed.Store(true)
	return sub.conn.Close()
}

var (
	revField   = []byte(`"rev":`)
	updatedRev = []byte(`"type":"context_updated","rev":`)
	keyField   = []byte(`"key":"`)
	errorFrame = []byte(`"type":"error"`)
	typeFirst  = []byte(`{"type":"`)
	errorFirst = []byte(`{"type":"error"`)
)

// Receive reads one frame. Frames are scanned, not decoded: the
// subscribers share the CPU with the server, so they stay lean. The only
// changes that come are the run's (its key prefix), whose values hold no
// context_updated message.
func (sub *subscriber) Receive(change func(rev uint64, key []byte)) error {
	sub.buf.Reset()
	_, r, err := sub.conn.NextReader()
	if err == nil {
		_, err = sub.buf.ReadFrom(r)
	}
	if err != nil {
		if sub.closed.Load() {
			return ErrSubscriberClosed
		}
		return err
	}
	data := sub.buf.Bytes()
	if sub.sio {
		isChange, err := sub.sioFrame(data)
		if err != nil {
			return err
		}
		if isChange {
			if key, rev, ok := sioChange(data); ok {
				change(rev, key)
			}
		}
		return nil
	}
	// ctxd writes a frame's type first: the frame is scanned once, for
	// its changes, not a second time for an error (a third of the
	// subscribers' CPU went to scanning, profiled at 1,000 of them).
	if bytes.HasPrefix(data, errorFirst) || !bytes.HasPrefix(data, typeFirst) && bytes.Contains(data, errorFrame) {
		return fmt.Errorf("server sent %.300s", data)
	}
	for rest := data; ; {
		i := bytes.Index(rest, updatedRev)
		if i < 0 {
			return nil
		}
		rest = rest[i+len(updatedRev):]
		rev, n := parseUint(rest)
		rest = rest[n:]
		j := bytes.Index(rest, keyField)
		if j < 0 {
			return nil
		}
		rest = rest[j+len(keyField):]
		change(rev, rest)
	}
}

// ConnectSubscribers opens n subscribers with open (i: which one),
// parallel at a time, and returns them in order. On the first error it
// stops opening, closes those it opened and returns the error.
func ConnectSubscribers(ctx context.Context, n, parallel int, open func(ctx context.Context, i int) (FanoutSubscriber, error)) ([]FanoutSubscriber, error) {
	subs := make([]FanoutSubscriber, n)
	var next atomic.Int64
	var firstErr error
	var mu sync.Mutex
	var wg sync.WaitGroup
	for range min(parallel, n) {
		wg.Go(func() {
			for ctx.Err() == nil {
				i := int(next.Add(1) - 1)
				if i >= n {
					return
				}
				sub, err := open(ctx, i)
				if err != nil {
					mu.Lock()
					if firstErr == nil {
						firstErr = fmt.Errorf("connect subscriber %d of %d: %w", i+1, n, err)
					}
					mu.Unlock()
					next.Store(int64(n)) // stop the others
					return
				}
				subs[i] = sub
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
				_ = s.Close()
			}
		}
		return nil, firstErr
	}
	return subs, nil
}

// connectSubscribers opens n WebSocket connections to wsURL, 32 at a
// time, with ep's credentials, and reads each one's "subscribed" frame;
// with sioAuth, they are Socket.IO clients connected with that auth
// payload, up to their context_snapshot.
func connectSubscribers(ctx context.Context, ep endpoint, wsURL string, n int, sioAuth any) ([]FanoutSubscriber, error) {
	dialer := &websocket.Dialer{HandshakeTimeout: dialTimeout, ReadBufferSize: 16 << 10, WriteBufferSize: 1 << 10, TLSClientConfig: ep.tlsConfig}
	var header http.Header
	if ep.authorization != "" {
		header = http.Header{"Authorization": {ep.authorization}}
	}
	return ConnectSubscribers(ctx, n, 32, func(ctx context.Context, _ int) (FanoutSubscriber, error) {
		if sioAuth != nil {
			conn, err := dialSocketIO(ctx, dialer, wsURL, header, sioAuth)
			if err != nil {
				return nil, fmt.Errorf("over Socket.IO: %w", err)
			}
			return &subscriber{conn: conn, sio: true}, nil
		}
		conn, resp, err := dialer.DialContext(ctx, wsURL, header)
		if resp != nil && resp.Body != nil {
			resp.Body.Close()
		}
		if err != nil {
			return nil, err
		}
		_ = conn.SetReadDeadline(time.Now().Add(dialTimeout))
		_, frame, err := conn.ReadMessage()
		if err == nil && !bytes.Contains(frame, []byte(`"type":"subscribed"`)) {
			err = fmt.Errorf("first frame is not subscribed: %.200s", frame)
		}
		_ = conn.SetReadDeadline(time.Time{})
		if err != nil {
			conn.Close()
			return nil, err
		}
		return &subscriber{conn: conn}, nil
	})
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
