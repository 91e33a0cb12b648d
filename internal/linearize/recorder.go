package linearize

import (
	"math"
	"sync"
	"time"

	"github.com/anishathalye/porcupine"
)

// Never is the return time of an operation whose outcome is unknown: it
// may take effect at any moment after its invocation.
const Never int64 = math.MaxInt64

// History is a recorded history, in porcupine's form: each operation's
// Input is an [Input], its Output an [Output], its times nanoseconds (Never
// for an unknown outcome).
type History []porcupine.Operation

// Recorder records the operations of concurrent clients. It is safe for
// concurrent use; its timestamps come from the monotonic clock and are
// strictly increasing, so the order of events is the order of the calls.
type Recorder struct {
	mu    sync.Mutex
	start time.Time
	last  int64
	ops   []recorded
}

type recorded struct {
	op   porcupine.Operation
	done bool
}

// NewRecorder returns an empty Recorder.
func NewRecorder() *Recorder { return &Recorder{start: time.Now()} }

func (r *Recorder) now() int64 {
	t := int64(time.Since(r.start))
	if t <= r.last {
		t = r.last + 1
	}
	r.last = t
	return t
}

// Invoke records that client is about to send in, and returns the
// operation's id for Return or Unknown. Call it before the request leaves.
func (r *Recorder) Invoke(client int, in Input) int {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.ops = append(r.ops, recorded{op: porcupine.Operation{ClientId: client, Input: in, Call: r.now()}})
	return len(r.ops) - 1
}

// Return records the answer to operation id. Call it after the answer
// came, before anything else that depends on it.
func (r *Recorder) Return(id int, out Output) {
	r.mu.Lock()
	defer r.mu.Unlock()
	o := &r.ops[id]
	if o.done {
		panic("linearize: operation returned twice")
	}
	o.done = true
	o.op.Output = out
	o.op.Return = r.now()
	if out.Status == Unknown {
		o.op.Return = Never
	}
}

// Unknown records that operation id, a write, may or may not have taken
// effect: no answer came, or the answer was 503 outcome_unknown.
func (r *Recorder) Unknown(id int) { r.Return(id, Output{Status: Unknown}) }

// Len is the number of operations invoked so far.
func (r *Recorder) Len() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return len(r.ops)
}

// History returns the operations recorded so far. An operation not
// returned yet counts as Unknown; a Failed one is left out. Each client's
// operations after an unknown one go on a row of their own in
// porcupine's visualization (an unknown operation never ends).
func (r *Recorder) History() History {
	r.mu.Lock()
	defer r.mu.Unlock()
	type row struct{ client, epoch int }
	rows := map[row]int{}
	epochs := map[int]int{}
	h := make(History, 0, len(r.ops))
	for _, o := range r.ops {
		op := o.op
		if !o.done {
			op.Output, op.Return = Output{Status: Unknown}, Never
		}
		if op.Output.(Output).Status == Failed {
			continue
		}
		k := row{op.ClientId, epochs[op.ClientId]}
		id, ok := rows[k]
		if !ok {
			id = len(rows)
			rows[k] = id
		}
		if op.Return == Never {
			epochs[op.ClientId]++
		}
		op.ClientId = id
		h = append(h, op)
	}
	return h
}
