package linearize

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	mrand "math/rand/v2"
	"net/http"
	"sync"
	"sync/atomic"
	"time"

	"github.com/framework0/ctxd/client"
)

// Workload is a load of concurrent clients on a few hot keys whose every
// operation is recorded: gets, puts, compare-and-swap puts (If-Match with
// the version the client last saw, or now and then a wrong one), deletes
// (half of them with If-Match), patches (a merge patch replacing the
// value; half of them with If-Match) and two-key transactions, each write
// with a value of its own. A transaction writes the two keys of one pair (Keys[0]
// with Keys[1], Keys[2] with Keys[3], ...), so that porcupine checks each
// pair on its own: a history of thousands of operations then takes it
// milliseconds, where one group of four keys can take seconds.
//
// It sends operations until ctx ends, Duration has passed or Ops
// operations were sent, whichever comes first. At the end of Duration or
// Ops the operations in flight finish; when ctx ends they are cancelled
// (a write cancelled after it was sent has an unknown outcome).
//
// A request that fails does not stop a client: a server killed and
// restarted on the same address in the middle of the run leaves writes
// with unknown outcomes, refused requests (left out of the history, as
// they had no effect), and then operations that go on.
type Workload struct {
	// URLs are the servers' base URLs; client i talks to URLs[i%len(URLs)].
	URLs []string
	// Clients is the number of concurrent clients (default 8).
	Clients int
	// Keys are the hot keys (default: 4 keys under a prefix of its own, so
	// they start absent, as the model assumes).
	Keys []string
	// Namespace holds the keys (default "default").
	Namespace string
	// Duration and Ops bound the run (0: no bound of that kind).
	Duration time.Duration
	Ops      int
	// RequestTimeout bounds each request (default 2s); a write that runs
	// out of it has an unknown outcome.
	RequestTimeout time.Duration
	// Seed makes the choice of operations repeatable (0: random).
	Seed uint64
}

// Stats count a run's operations.
type Stats struct {
	// Ops is every operation sent, Failed included.
	Ops int
	// By outcome (Status).
	OK, NotFound, Conflict, Unknown, Failed int
	// By kind: CASPuts are the puts with If-Match, TxnWrites the writes of
	// the Txns.
	Gets, Puts, CASPuts, Deletes, Patches, Txns, TxnWrites int
}

func (s *Stats) add(o Stats) {
	s.Ops += o.Ops
	s.OK += o.OK
	s.NotFound += o.NotFound
	s.Conflict += o.Conflict
	s.Unknown += o.Unknown
	s.Failed += o.Failed
	s.Gets += o.Gets
	s.Puts += o.Puts
	s.CASPuts += o.CASPuts
	s.Deletes += o.Deletes
	s.Patches += o.Patches
	s.Txns += o.Txns
	s.TxnWrites += o.TxnWrites
}

// String is a one-line summary, for logs.
func (s Stats) String() string {
	return fmt.Sprintf("%d operations (%d gets, %d puts, %d CAS puts, %d deletes, %d patches, %d txns of %d writes): "+
		"%d ok, %d not found, %d conflicts, %d unknown, %d failed without effect",
		s.Ops, s.Gets, s.Puts, s.CASPuts, s.Deletes, s.Patches, s.Txns, s.TxnWrites, s.OK, s.NotFound, s.Conflict, s.Unknown, s.Failed)
}

// Run runs the workload, recording into rec. It returns an error for a
// bad configuration, or after the run when a server gave an answer the
// workload did not expect (a 400, a 500, a record of another key): such
// a write was recorded as Unknown, such a get left out, so rec's history
// can still be checked.
func (w Workload) Run(ctx context.Context, rec *Recorder) (Stats, error) {
	if len(w.URLs) == 0 {
		return Stats{}, errors.New("linearize: a workload needs at least one URL")
	}
	if len(w.Keys) == 0 {
		w.Keys = DefaultKeys(4)
	}
	w = w.withDefaults()
	seed := w.Seed
	if seed == 0 {
		seed = mrand.Uint64()
	}
	tag := randomHex(3) // in every value: runs that share keys write values of their own
	transport := http.DefaultTransport.(*http.Transport).Clone()
	transport.MaxIdleConnsPerHost = w.Clients
	defer transport.CloseIdleConnections()
	hc := &http.Client{Transport: transport}

	var issued atomic.Int64
	var end time.Time // no new operation after it; those in flight finish
	if w.Duration > 0 {
		end = time.Now().Add(w.Duration)
	}
	more := func() bool {
		return ctx.Err() == nil && (end.IsZero() || time.Now().Before(end)) &&
			(w.Ops <= 0 || issued.Add(1) <= int64(w.Ops))
	}

	var (
		mu         sync.Mutex
		total      Stats
		unexpected []error
		wg         sync.WaitGroup
	)
	workers := make([]*worker, w.Clients)
	for i := range workers {
		cl, err := client.New(w.URLs[i%len(w.URLs)], client.WithHTTPClient(hc), client.WithWho(fmt.Sprintf("linearize-%d", i)))
		if err != nil {
			return Stats{}, err
		}
		workers[i] = &worker{w: &w, id: i, tag: tag, cl: cl, rec: rec, rng: mrand.New(mrand.NewPCG(seed, uint64(i))), known: map[string]uint64{}}
	}
	for _, c := range workers {
		wg.Go(func() {
			for more() {
				c.next(ctx)
			}
			mu.Lock()
			defer mu.Unlock()
			total.add(c.stats)
			unexpected = append(unexpected, c.unexpected...)
		})
	}
	wg.Wait()
	if len(unexpected) > 0 {
		return total, fmt.Errorf("linearize: %d unexpected answers, the first: %w", len(unexpected), unexpected[0])
	}
	return total, nil
}

// Sequence sends ins in turn to URLs[0], as a client of its own (number
// Clients, one past Run's), recording each into rec: between runs of the
// workload on the same recorder, a known pattern of operations (a test
// that needs reads served by its server's read cache writes each key,
// lets the writes settle, and reads each key twice). A put's value must
// be one no other operation writes. The error is an answer the workload
// did not expect.
func (w Workload) Sequence(ctx context.Context, rec *Recorder, ins ...Input) (Stats, error) {
	if len(w.URLs) == 0 {
		return Stats{}, errors.New("linearize: a workload needs at least one URL")
	}
	w = w.withDefaults()
	cl, err := client.New(w.URLs[0], client.WithWho("linearize-sequence"))
	if err != nil {
		return Stats{}, err
	}
	c := &worker{w: &w, id: w.Clients, cl: cl, rec: rec, known: map[string]uint64{}}
	for _, in := range ins {
		c.do(ctx, in)
	}
	return c.stats, errors.Join(c.unexpected...)
}

// withDefaults fills in the defaults of Clients and RequestTimeout.
func (w Workload) withDefaults() Workload {
	if w.Clients <= 0 {
		w.Clients = 8
	}
	if w.RequestTimeout <= 0 {
		w.RequestTimeout = 2 * time.Second
	}
	return w
}

// DefaultKeys returns n keys under a random prefix of their own:
// "linearize/<hex>/k0", ...
func DefaultKeys(n int) []string {
	prefix := randomHex(6)
	keys := make([]string, n)
	for i := range keys {
		keys[i] = fmt.Sprintf("linearize/%s/k%d", prefix, i)
	}
	return keys
}

func randomHex(n int) string {
	b := make([]byte, n)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}

// worker is one client of a Workload.
type worker struct {
	w     *Workload
	id    int
	tag   string
	cl    *client.Client
	rec   *Recorder
	rng   *mrand.Rand
	seq   int
	known map[string]uint64 // the version this client last saw per key (0: absent)
	stats Stats

	unexpected []error
}

func (c *worker) key() string { return c.w.Keys[c.rng.IntN(len(c.w.Keys))] }

func (c *worker) value() string {
	c.seq++
	return fmt.Sprintf("%s-c%d-%d", c.tag, c.id, c.seq)
}

// ifVersion is an If-Match for key: the version last seen, now and then
// one that is likely wrong.
func (c *worker) ifVersion(key string) *uint64 {
	v := c.known[key]
	if c.rng.IntN(5) == 0 {
		v += 1 + uint64(c.rng.IntN(2))
	}
	return &v
}

// next sends one operation and records it.
func (c *worker) next(ctx context.Context) {
	var in Input
	switch p := c.rng.IntN(100); {
	case p < 35:
		in = Input{Kind: Get, Key: c.key()}
	case p < 55:
		in = Input{Kind: Put, Key: c.key(), Value: c.value()}
	case p < 75:
		k := c.key()
		in = Input{Kind: Put, Key: k, Value: c.value(), IfVersion: c.ifVersion(k)}
	case p < 83:
		in = Input{Kind: Delete, Key: c.key()}
		if c.rng.IntN(2) == 0 {
			in.IfVersion = c.ifVersion(in.Key)
		}
	case p < 90:
		in = Input{Kind: Patch, Key: c.key(), Value: c.value()}
		if c.rng.IntN(2) == 0 {
			in.IfVersion = c.ifVersion(in.Key)
		}
	default:
		in = Input{Kind: Txn}
		pair := c.rng.IntN(len(c.w.Keys)) &^ 1
		for _, k := range c.w.Keys[pair:min(pair+2, len(c.w.Keys))] {
			op := Write{Key: k, Delete: c.rng.IntN(5) == 0}
			if !op.Delete {
				op.Value = c.value()
			}
			if c.rng.IntN(2) == 0 {
				op.IfVersion = c.ifVersion(k)
			}
			in.Ops = append(in.Ops, op)
		}
	}
	out := c.do(ctx, in)
	if out.Status == Failed || out.Status == Unknown {
		// The server may be down: give it a moment rather than spin.
		select {
		case <-ctx.Done():
		case <-time.After(time.Duration(5+c.rng.IntN(10)) * time.Millisecond):
		}
	}
}

// do sends in, records it and counts it and its outcome.
func (c *worker) do(ctx context.Context, in Input) Output {
	c.stats.Ops++
	switch {
	case in.Kind == Get:
		c.stats.Gets++
	case in.Kind == Put && in.IfVersion != nil:
		c.stats.CASPuts++
	case in.Kind == Put:
		c.stats.Puts++
	case in.Kind == Delete:
		c.stats.Deletes++
	case in.Kind == Patch:
		c.stats.Patches++
	case in.Kind == Txn:
		c.stats.Txns++
		c.stats.TxnWrites += len(in.Ops)
	}
	rctx, cancel := context.WithTimeout(ctx, c.w.RequestTimeout)
	defer cancel()
	id := c.rec.Invoke(c.id, in)
	out, err := c.send(rctx, in)
	c.rec.Return(id, out)
	switch out.Status {
	case OK:
		c.stats.OK++
	case NotFound:
		c.stats.NotFound++
	case Conflict:
		c.stats.Conflict++
	case Unknown:
		c.stats.Unknown++
	case Failed:
		c.stats.Failed++
	}
	if err != nil {
		c.unexpected = append(c.unexpected, err)
	}
	c.learn(in, out)
	return out
}

// learn remembers the versions an answer tells, for later If-Matches.
func (c *worker) learn(in Input, out Output) {
	switch out.Status {
	case OK:
		if in.Kind == Txn {
			for i, w := range in.Ops {
				c.known[w.Key] = out.Records[i].Version
				if w.Delete {
					c.known[w.Key] = 0
				}
			}
			return
		}
		c.known[in.Key] = out.Record.Version
		if in.Kind == Delete {
			c.known[in.Key] = 0
		}
	case NotFound:
		if in.Kind != Txn {
			c.known[in.Key] = 0
		}
	case Conflict:
		if in.Kind != Txn {
			c.known[in.Key] = out.CurrentVersion
		}
	}
}

// send sends in and turns the answer into an Output. The error is an
// answer the workload did not expect; the Output is then Unknown for a
// write (it may have applied) and Failed for a get.
func (c *worker) send(ctx context.Context, in Input) (Output, error) {
	ns := c.w.Namespace
	var (
		out Output
		err error
	)
	switch in.Kind {
	case Get:
		var r client.Record
		r, err = c.cl.Get(ctx, ns, in.Key, client.GetOptions{})
		out.Record = record(r)
		err = checkKey(r, in.Key, err)
	case Put:
		var r client.Record
		r, err = c.cl.Put(ctx, ns, in.Key, jsonString(in.Value), client.PutOptions{IfVersion: in.IfVersion})
		out.Record = record(r)
		err = checkKey(r, in.Key, err)
	case Delete:
		var r client.Record
		r, err = c.cl.Delete(ctx, ns, in.Key, client.DeleteOptions{IfVersion: in.IfVersion})
		out.Record = record(r)
		err = checkKey(r, in.Key, err)
	case Patch:
		var r client.Record
		r, err = c.cl.Patch(ctx, ns, in.Key, client.MergePatch, jsonString(in.Value), client.PatchOptions{IfVersion: in.IfVersion})
		out.Record = record(r)
		err = checkKey(r, in.Key, err)
	case Txn:
		ops := make([]client.TxnOp, len(in.Ops))
		for i, w := range in.Ops {
			ops[i] = client.TxnOp{Op: "put", Namespace: ns, Key: w.Key, Value: jsonString(w.Value), IfVersion: w.IfVersion}
			if w.Delete {
				ops[i] = client.TxnOp{Op: "delete", Namespace: ns, Key: w.Key, IfVersion: w.IfVersion}
			}
		}
		var res client.TxnResult
		res, err = c.cl.Txn(ctx, ops, client.TxnOptions{})
		if err == nil && len(res.Records) != len(ops) {
			err = fmt.Errorf("txn of %d ops answered %d records", len(ops), len(res.Records))
		}
		for i, r := range res.Records {
			out.Records = append(out.Records, record(r))
			if err == nil {
				err = checkKey(r, in.Ops[i].Key, nil)
			}
		}
	}
	var ae *client.APIError
	switch {
	case err == nil:
		out.Status = OK
		return out, nil
	case client.IsNotFound(err):
		return Output{Status: NotFound}, nil
	case client.IsConflict(err):
		errors.As(err, &ae)
		return Output{Status: Conflict, CurrentVersion: ae.CurrentVersion}, nil
	case in.Kind == Get:
		if errors.As(err, &ae) && ae.Code != client.CodeUnavailable {
			return Output{Status: Failed}, err
		}
		return Output{Status: Failed}, nil // no answer, or not ready: a read without effect
	case client.IsOutcomeUnknown(err):
		return Output{Status: Unknown}, nil
	case errors.As(err, &ae) && ae.Code == client.CodeUnavailable:
		return Output{Status: Failed}, nil // refused before it was applied
	case errors.As(err, &ae):
		return Output{Status: Unknown}, err
	case client.IsConnectionError(err) || errors.Is(err, context.DeadlineExceeded) || errors.Is(err, context.Canceled):
		// Not sent in full (the client tells "sent without answer"
		// apart as outcome unknown): it cannot have applied.
		return Output{Status: Failed}, nil
	default:
		// A write that got an answer the client could not read, say.
		return Output{Status: Unknown}, err
	}
}

// checkKey is err, or an error when rec is not key's.
func checkKey(rec client.Record, key string, err error) error {
	if err == nil && rec.Key != key {
		return fmt.Errorf("answer for key %q holds key %q", key, rec.Key)
	}
	return err
}

// record is what the model compares of r. A value that is not a JSON
// string (the workload writes only strings) is kept as its JSON text,
// which no write wrote.
func record(r client.Record) Record {
	out := Record{Version: r.Version, CreateRev: r.CreateRev, ModRev: r.ModRev}
	if len(r.Value) > 0 && string(r.Value) != "null" {
		if err := json.Unmarshal(r.Value, &out.Value); err != nil {
			out.Value = "json:" + string(r.Value)
		}
	}
	return out
}

func jsonString(s string) json.RawMessage {
	b, _ := json.Marshal(s) // a string always marshals
	return b
}
