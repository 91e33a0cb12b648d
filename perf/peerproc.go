package perf

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// A server in a process of its own, spoken to over the process's standard
// input and output, one JSON object a line. The child (ServePeer) first
// writes {"ready": PeerInfo}; then it answers each request line with one
// line: {"memory": true} with {"memory": MemorySample} (its own, after a
// garbage collection), {"prepare": {...}} with {"ok": true} once it has
// written the keys the reads read, {"run": PeerRun} with {"measurement":
// Measurement}, {"fanout": FanoutSpec} with {"fanout": FanoutRun} (a peer
// with a change feed, PeerWatcher); a failure with {"error": "..."}. End
// of input stops it.
//
// Two commands serve it: ctxd-etcd-peer (an embedded etcd and etcd's
// client, which the ctxd binary does not link), and `ctxd perf serve`
// (a ctxd server alone in its process, for the memory numbers).

type peerRequest struct {
	Memory  bool         `json:"memory,omitempty"`
	Prepare *peerPrepare `json:"prepare,omitempty"`
	Run     *PeerRun     `json:"run,omitempty"`
	Fanout  *FanoutSpec  `json:"fanout,omitempty"`
}

// peerPrepare asks for the read keys: key-000000... in perf-read, each
// holding a value of ValueSize bytes.
type peerPrepare struct {
	Keys      int `json:"keys"`
	ValueSize int `json:"value_size"`
}

type peerResponse struct {
	Ready       *PeerInfo     `json:"ready,omitempty"`
	OK          bool          `json:"ok,omitempty"`
	Memory      *MemorySample `json:"memory,omitempty"`
	Measurement *Measurement  `json:"measurement,omitempty"`
	Fanout      *FanoutRun    `json:"fanout,omitempty"`
	Error       string        `json:"error,omitempty"`
}

// PeerClient does a peer's requests, for ServePeer. Its methods are called
// by many goroutines at once, each with its own worker number.
type PeerClient interface {
	// Connect readies the client for workers 0..n-1 (opens connections)
	// before a run's clock starts.
	Connect(n int) error
	// Put writes value at key; Get reads key, which must exist.
	Put(ctx context.Context, worker int, key string, value []byte) error
	Get(ctx context.Context, worker int, key string) error
}

// PeerWatcher is a PeerClient whose server has a change feed (etcd's
// watch): `ctxd perf --compare etcd fanout` measures its fan-out beside
// ctxd's, with the same writes and the same measurement (measureFanout).
type PeerWatcher interface {
	PeerClient
	// Watch opens n subscribers of the keys that start with prefix (a
	// PeerKey), each a client of its own, as ctxd's subscribers each have
	// a connection of their own. Each one receives every change written
	// after Watch returns; the keys it gives Receive are PeerKeys.
	Watch(ctx context.Context, n int, prefix string) ([]FanoutSubscriber, error)
}

// PeerKey is the key a PeerClient is given for key of namespace ns: the
// two joined by a slash, e.g. "perf-read/key-000042".
func PeerKey(ns, key string) string { return ns + "/" + key }

// ServePeer is the child's side: it announces hello, then answers requests
// from in on out until in ends. client does the requests of prepare and
// run; without one (a server measured over HTTP by the suite), only memory
// is answered.
func ServePeer(ctx context.Context, in io.Reader, out io.Writer, hello PeerInfo, client PeerClient) error {
	enc := json.NewEncoder(out)
	if err := enc.Encode(peerResponse{Ready: &hello}); err != nil {
		return fmt.Errorf("announce: %w", err)
	}
	sc := bufio.NewScanner(in)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		var req peerRequest
		var resp peerResponse
		err := json.Unmarshal(sc.Bytes(), &req)
		switch {
		case err != nil:
			err = fmt.Errorf("bad request: %w", err)
		case req.Memory:
			m := ProcessMemory()
			resp.Memory = &m
		case client == nil:
			err = errors.New("this peer only answers memory")
		case req.Prepare != nil:
			err = preparePeer(ctx, client, *req.Prepare)
			resp.OK = err == nil
		case req.Fanout != nil:
			w, ok := client.(PeerWatcher)
			if !ok {
				err = errors.New("this peer has no change feed")
				break
			}
			var fr FanoutRun
			if fr, err = runPeerFanout(ctx, w, *req.Fanout); err == nil {
				resp.Fanout = &fr
			}
		case req.Run != nil:
			var m Measurement
			if m, err = runPeerClient(ctx, client, *req.Run); err == nil {
				resp.Measurement = &m
			}
		default:
			err = errors.New("empty request")
		}
		if err != nil {
			resp = peerResponse{Error: err.Error()}
		}
		if err := enc.Encode(resp); err != nil {
			return fmt.Errorf("answer: %w", err)
		}
	}
	return sc.Err()
}

// preparePeer writes the read keys through client, 16 at a time.
func preparePeer(ctx context.Context, client PeerClient, p peerPrepare) error {
	const workers = 16
	if err := client.Connect(workers); err != nil {
		return err
	}
	value := makeValue(p.ValueSize)
	var next atomic.Int64
	var first error
	var mu sync.Mutex
	var wg sync.WaitGroup
	for w := range workers {
		wg.Go(func() {
			for ctx.Err() == nil {
				i := int(next.Add(1) - 1)
				if i >= p.Keys {
					return
				}
				if err := client.Put(ctx, w, PeerKey(nsRead, readKey(i)), value); err != nil {
					mu.Lock()
					first = cmpOr(first, fmt.Errorf("put %s: %w", readKey(i), err))
					mu.Unlock()
					return
				}
			}
		})
	}
	wg.Wait()
	return cmpOr(first, ctx.Err())
}

func cmpOr(a, b error) error {
	if a != nil {
		return a
	}
	return b
}

// runPeerClient measures r with client's requests, in the same load
// loop and with the same histograms as the suite's HTTP runs.
func runPeerClient(ctx context.Context, client PeerClient, r PeerRun) (Measurement, error) {
	if r.Clients <= 0 || (r.Op != "put" && r.ReadKeys <= 0) {
		return Measurement{}, fmt.Errorf("bad run %+v", r)
	}
	if err := client.Connect(r.Clients); err != nil {
		return Measurement{}, err
	}
	value := makeValue(r.ValueSize)
	keys := make([]string, r.ReadKeys)
	for i := range keys {
		keys[i] = PeerKey(nsRead, readKey(i))
	}
	prefix := PeerKey(nsWrite, r.KeyPrefix)
	l := peerLoad(r, kvOps{
		put: func(w *worker, seq uint64) error {
			w.buf = appendPadded(append(w.buf[:0], prefix...), seq, 10)
			return client.Put(ctx, w.id, string(w.buf), value)
		},
		get:    func(w *worker, i int) error { return client.Get(ctx, w.id, keys[i]) },
		update: func(w *worker, i int) error { return client.Put(ctx, w.id, keys[i], value) },
	})
	l.noConn = true
	return peerMeasurement(ctx, endpoint{}, r, l)
}

// runPeerFanout measures spec's fan-out on w's feed, as the suite
// measures ctxd's.
func runPeerFanout(ctx context.Context, w PeerWatcher, spec FanoutSpec) (FanoutRun, error) {
	if spec.Subscribers <= 0 || spec.Rate <= 0 || spec.Writers <= 0 || spec.Duration <= 0 {
		return FanoutRun{}, fmt.Errorf("bad fan-out run %+v", spec)
	}
	fr := FanoutRun{Protocol: protocolPeerWatch}
	fr.describe(spec)
	errs := &errorLog{}
	if err := measureFanout(ctx, peerFeed{w}, spec, makeValue(spec.ValueSize), &fr, errs, nil); err != nil {
		return FanoutRun{}, err
	}
	fr.RunErrors = errs.result()
	return fr, nil
}

// peerFeed is a PeerWatcher as a FanoutFeed: the run's keys in namespace
// perf-fanout.
type peerFeed struct{ w PeerWatcher }

func (f peerFeed) Connect(n int) error { return f.w.Connect(n) }

func (f peerFeed) Put(ctx context.Context, w int, key string, value []byte) error {
	return f.w.Put(ctx, w, PeerKey(nsFanout, key), value)
}

func (f peerFeed) Subscribe(ctx context.Context, n int, prefix string) ([]FanoutSubscriber, error) {
	subs, err := f.w.Watch(ctx, n, PeerKey(nsFanout, prefix))
	for i, sub := range subs {
		subs[i] = peerSubscriber{sub}
	}
	return subs, err
}

// peerSubscriber gives the run its keys without the namespace.
type peerSubscriber struct{ FanoutSubscriber }

func (s peerSubscriber) Receive(change func(rev uint64, key []byte)) error {
	ns := len(PeerKey(nsFanout, ""))
	return s.FanoutSubscriber.Receive(func(rev uint64, key []byte) {
		if len(key) >= ns {
			change(rev, key[ns:])
		}
	})
}

// PeerProcess is a server running as a child process (the parent's side of
// ServePeer).
type PeerProcess struct {
	cmd   *exec.Cmd
	in    io.WriteCloser
	lines chan []byte // the child's answers; closed at its end of output
	tail  *tailWriter // the end of its standard error, for errors
	about PeerInfo
	// removeDir, when set, is removed once the process has ended.
	removeDir string

	mu sync.Mutex // one request at a time
	// broken: a request went unanswered, so a later answer cannot be told
	// from the next request's; every request fails from then on.
	broken    error
	closeOnce sync.Once
	closeErr  error
}

// peerStartTimeout bounds the wait for a peer's ready line.
const peerStartTimeout = 2 * time.Minute

// StartPeerProcess runs path with args in environment env (nil: this
// process's) and waits for its ready line. The child's standard error goes
// to log (nil: dropped; its end is kept for error messages either way).
func StartPeerProcess(ctx context.Context, path string, args, env []string, log io.Writer) (*PeerProcess, error) {
	cmd := exec.Command(path, args...)
	cmd.Env = env
	tail := &tailWriter{max: 4 << 10}
	cmd.Stderr = tail
	if log != nil {
		cmd.Stderr = io.MultiWriter(tail, log)
	}
	in, err := cmd.StdinPipe()
	if err != nil {
		return nil, err
	}
	out, err := cmd.StdoutPipe()
	if err != nil {
		return nil, err
	}
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("start %s: %w", path, err)
	}
	p := &PeerProcess{cmd: cmd, in: in, lines: make(chan []byte, 1), tail: tail}
	go func() {
		defer close(p.lines)
		sc := bufio.NewScanner(out)
		sc.Buffer(make([]byte, 64<<10), 16<<20)
		for sc.Scan() {
			p.lines <- append([]byte(nil), sc.Bytes()...)
		}
	}()
	ctx, cancel := context.WithTimeout(ctx, peerStartTimeout)
	defer cancel()
	resp, err := p.answer(ctx)
	if err == nil && resp.Ready == nil {
		err = fmt.Errorf("first line is not ready: %+v", resp)
	}
	if err != nil {
		// Close's own error (the exit status, the same last output) would
		// say it all again.
		_ = p.Close()
		return nil, fmt.Errorf("start %s: %w", path, err)
	}
	p.about = *resp.Ready
	return p, nil
}

// Info is what the child announced.
func (p *PeerProcess) Info() PeerInfo { return p.about }

func (p *PeerProcess) info() PeerInfo { return p.about }

// peerAnswerSlack bounds how long a child may take to answer beyond the
// work asked (a run's warm-up and window): a child that hangs fails the
// request instead of the whole suite.
const peerAnswerSlack = 2 * time.Minute

// Memory returns the child's memory, read after it collected its garbage.
func (p *PeerProcess) Memory() (MemorySample, error) {
	ctx, cancel := context.WithTimeout(context.Background(), peerAnswerSlack)
	defer cancel()
	resp, err := p.request(ctx, peerRequest{Memory: true})
	if err != nil {
		return MemorySample{}, err
	}
	if resp.Memory == nil {
		return MemorySample{}, errors.New("no memory in the answer")
	}
	return *resp.Memory, nil
}

func (p *PeerProcess) prepare(ctx context.Context, keys, valueSize int) error {
	ctx, cancel := context.WithTimeout(ctx, peerAnswerSlack+time.Duration(keys)*time.Millisecond)
	defer cancel()
	_, err := p.request(ctx, peerRequest{Prepare: &peerPrepare{Keys: keys, ValueSize: valueSize}})
	return err
}

func (p *PeerProcess) run(ctx context.Context, r PeerRun) (Measurement, error) {
	ctx, cancel := context.WithTimeout(ctx, peerAnswerSlack+r.Warmup+r.Duration)
	defer cancel()
	resp, err := p.request(ctx, peerRequest{Run: &r})
	if err != nil {
		return Measurement{}, err
	}
	if resp.Measurement == nil {
		return Measurement{}, errors.New("no measurement in the answer")
	}
	return *resp.Measurement, nil
}

// fanout measures spec's fan-out on the peer's change feed.
func (p *PeerProcess) fanout(ctx context.Context, spec FanoutSpec) (FanoutRun, error) {
	connect := time.Duration(spec.Subscribers) * 10 * time.Millisecond
	ctx, cancel := context.WithTimeout(ctx, peerAnswerSlack+connect+spec.Duration+spec.drain())
	defer cancel()
	resp, err := p.request(ctx, peerRequest{Fanout: &spec})
	if err != nil {
		return FanoutRun{}, err
	}
	if resp.Fanout == nil {
		return FanoutRun{}, errors.New("no fan-out run in the answer")
	}
	return *resp.Fanout, nil
}

func (p *PeerProcess) close() error { return p.Close() }

// request sends req and returns the answer; an answer with an error is
// returned as one.
func (p *PeerProcess) request(ctx context.Context, req peerRequest) (peerResponse, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.broken != nil {
		return peerResponse{}, fmt.Errorf("peer %s: an earlier request went unanswered: %w", p.about.Name, p.broken)
	}
	b, err := json.Marshal(req)
	if err != nil {
		return peerResponse{}, err
	}
	if _, err := p.in.Write(append(b, '\n')); err != nil {
		return peerResponse{}, fmt.Errorf("peer %s: send: %w%s", p.about.Name, err, p.stderrTail())
	}
	resp, err := p.answer(ctx)
	if err != nil {
		p.broken = err
		return resp, fmt.Errorf("peer %s: %w", p.about.Name, err)
	}
	if resp.Error != "" {
		return resp, fmt.Errorf("peer %s: %s", p.about.Name, resp.Error)
	}
	return resp, nil
}

// answer reads the child's next line.
func (p *PeerProcess) answer(ctx context.Context) (peerResponse, error) {
	var resp peerResponse
	select {
	case line, ok := <-p.lines:
		if !ok {
			return resp, fmt.Errorf("the process ended%s", p.stderrTail())
		}
		if err := json.Unmarshal(line, &resp); err != nil {
			return resp, fmt.Errorf("bad answer %.200q: %w", line, err)
		}
		return resp, nil
	case <-ctx.Done():
		return resp, ctx.Err()
	}
}

func (p *PeerProcess) stderrTail() string {
	t := strings.TrimSpace(p.tail.String())
	if t == "" {
		return ""
	}
	return "; its last output: " + t
}

// Kill ends the child at once (SIGKILL), as a crash would, and waits for
// it to be gone; its data folder is left as the crash left it.
func (p *PeerProcess) Kill() error {
	if err := p.cmd.Process.Kill(); err != nil {
		return fmt.Errorf("kill peer %s: %w", p.about.Name, err)
	}
	_ = p.Close() // its exit status is the kill's
	return nil
}

// peerStopTimeout bounds a child's shutdown after its input is closed.
const peerStopTimeout = 30 * time.Second

// Close ends the child's input, waits for it to stop (killing it after
// peerStopTimeout) and removes its data folder when the suite made it.
func (p *PeerProcess) Close() error {
	p.closeOnce.Do(func() {
		_ = p.in.Close()
		timer := time.NewTimer(peerStopTimeout)
		defer timer.Stop()
		drained := make(chan struct{})
		go func() {
			// Drain what is left, up to the child's end of output.
			for range p.lines {
			}
			close(drained)
		}()
		select {
		case <-drained:
		case <-timer.C:
			_ = p.cmd.Process.Kill()
			<-drained
		}
		if err := p.cmd.Wait(); err != nil {
			p.closeErr = fmt.Errorf("peer %s: %w%s", p.about.Name, err, p.stderrTail())
		}
		if p.removeDir != "" {
			p.closeErr = errors.Join(p.closeErr, os.RemoveAll(p.removeDir))
		}
	})
	return p.closeErr
}

// tailWriter keeps the last max bytes written to it.
type tailWriter struct {
	mu  sync.Mutex
	max int
	buf []byte
}

func (t *tailWriter) Write(b []byte) (int, error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.buf = append(t.buf, b...)
	if len(t.buf) > t.max {
		t.buf = append(t.buf[:0], t.buf[len(t.buf)-t.max:]...)
	}
	return len(b), nil
}

func (t *tailWriter) String() string {
	t.mu.Lock()
	defer t.mu.Unlock()
	return string(t.buf)
}
