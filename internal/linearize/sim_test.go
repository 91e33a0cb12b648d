package linearize_test

import (
	"encoding/json"
	"fmt"
	mrand "math/rand/v2"
	"slices"

	"github.com/anishathalye/porcupine"

	"github.com/framework0/ctxd/client"
	lin "github.com/framework0/ctxd/internal/linearize"
)

// simulation is a history of a correct server (a map applied in the order
// of instants drawn inside each operation's interval, with one revision
// per write as etcd gives it, a transaction's writes sharing theirs), and
// its change feed: what a real run gives, without the run, so that tests
// can make histories of any size and share of unknown outcomes.
type simulation struct {
	clients, ops int     // ops per client
	unknown      float64 // the share of writes whose outcome is unknown (half of them take effect)
	seed         uint64
	keys         []string
}

type simKey struct {
	present            bool
	value              string
	version, createRev uint64
	modRev             uint64
}

type simOp struct {
	op      porcupine.Operation
	at      int64 // the instant it takes effect
	unknown bool
	applies bool // an unknown one: whether it takes effect
}

func (s simulation) run() (lin.History, []client.WatchEvent) {
	rng := mrand.New(mrand.NewPCG(s.seed, 1))
	var ops []simOp
	for c := range s.clients {
		t := int64(rng.IntN(100))
		for j := range s.ops {
			call := t
			at := call + 1 + int64(rng.IntN(100))
			ret := at + 1 + int64(rng.IntN(100))
			t = ret + 1 + int64(rng.IntN(50))
			in := s.input(rng, fmt.Sprintf("c%d-%d", c, j))
			o := simOp{op: porcupine.Operation{ClientId: c, Call: call*int64(s.clients) + int64(c), Return: ret*int64(s.clients) + int64(c), Input: in}, at: at*int64(s.clients) + int64(c)}
			if in.Kind != lin.Get && rng.Float64() < s.unknown {
				o.unknown, o.applies = true, rng.IntN(2) == 0
			}
			ops = append(ops, o)
		}
	}
	slices.SortFunc(ops, func(a, b simOp) int { return int(a.at - b.at) })
	state := map[string]simKey{}
	var rev uint64
	var feed []client.WatchEvent
	h := make(lin.History, 0, len(ops))
	for _, o := range ops {
		in := o.op.Input.(lin.Input)
		var out lin.Output
		if in.Kind == lin.Get {
			k := state[in.Key]
			out = lin.Output{Status: lin.NotFound}
			if k.present {
				out = lin.Output{Status: lin.OK, Record: lin.Record{Value: k.value, Version: k.version, CreateRev: k.createRev, ModRev: k.modRev}}
			}
		} else if !o.unknown || o.applies {
			var evs []client.WatchEvent
			out, evs = apply(state, &rev, in)
			feed = append(feed, evs...)
		}
		o.op.Output = out
		if o.unknown {
			o.op.Output, o.op.Return = lin.Output{Status: lin.Unknown}, lin.Never
		}
		h = append(h, o.op)
	}
	slices.SortFunc(h, func(a, b porcupine.Operation) int { return int(a.Call - b.Call) })
	return h, feed
}

func (s simulation) input(rng *mrand.Rand, value string) lin.Input {
	key := func() string { return s.keys[rng.IntN(len(s.keys))] }
	ifv := func() *uint64 { return ver(uint64(rng.IntN(3))) }
	switch p := rng.IntN(100); {
	case p < 35:
		return get(key())
	case p < 55:
		return put(key(), value)
	case p < 75:
		return lin.Input{Kind: lin.Put, Key: key(), Value: value, IfVersion: ifv()}
	case p < 85:
		in := del(key())
		if rng.IntN(2) == 0 {
			in.IfVersion = ifv()
		}
		return in
	}
	in := lin.Input{Kind: lin.Txn}
	for i, k := range s.keys {
		w := lin.Write{Key: k, Delete: rng.IntN(5) == 0}
		if !w.Delete {
			w.Value = fmt.Sprintf("%s/%d", value, i)
		}
		if rng.IntN(2) == 0 {
			w.IfVersion = ifv()
		}
		in.Ops = append(in.Ops, w)
	}
	return in
}

// apply applies a write as the server does and returns its answer and
// its changes.
func apply(state map[string]simKey, rev *uint64, in lin.Input) (lin.Output, []client.WatchEvent) {
	var writes []lin.Write
	switch in.Kind {
	case lin.Put:
		writes = []lin.Write{{Key: in.Key, Value: in.Value, IfVersion: in.IfVersion}}
	case lin.Delete:
		writes = []lin.Write{{Key: in.Key, Delete: true, IfVersion: in.IfVersion}}
	default:
		writes = in.Ops
	}
	for _, w := range writes {
		k := state[w.Key]
		switch {
		case w.IfVersion != nil && *w.IfVersion != k.version:
			return lin.Output{Status: lin.Conflict, CurrentVersion: k.version, Key: w.Key}, nil
		case w.Delete && !k.present:
			return lin.Output{Status: lin.NotFound, Key: w.Key}, nil
		}
	}
	*rev++
	var recs []lin.Record
	var evs []client.WatchEvent
	for i, w := range writes {
		k := state[w.Key]
		ev := client.WatchEvent{Type: client.EventChange, Rev: *rev, Key: w.Key}
		if len(writes) > 1 {
			ev.Index, ev.Count = i, len(writes)
		}
		if w.Delete {
			recs = append(recs, lin.Record{Version: k.version, CreateRev: k.createRev, ModRev: *rev})
			ev.Op, ev.Value, ev.Version = "delete", json.RawMessage("null"), k.version
			state[w.Key] = simKey{}
		} else {
			n := simKey{present: true, value: w.Value, version: k.version + 1, createRev: k.createRev, modRev: *rev}
			if !k.present {
				n.version, n.createRev = 1, *rev
			}
			state[w.Key] = n
			recs = append(recs, lin.Record{Value: n.value, Version: n.version, CreateRev: n.createRev, ModRev: *rev})
			v, _ := json.Marshal(w.Value)
			ev.Op, ev.Value, ev.Version = "put", v, n.version
		}
		evs = append(evs, ev)
	}
	if in.Kind == lin.Txn {
		return lin.Output{Status: lin.OK, Records: recs}, evs
	}
	return lin.Output{Status: lin.OK, Record: recs[0]}, evs
}

// withStaleRead adds to h a get that returns a value an acknowledged put
// of the first half of h wrote and an acknowledged put of the second half
// overwrote before the get: a violation at the middle of the history.
func withStaleRead(h lin.History) lin.History {
	n := len(h) / 2
	for _, p2 := range h[n:] {
		in := p2.Input.(lin.Input)
		if in.Kind != lin.Put || p2.Output.(lin.Output).Status != lin.OK {
			continue
		}
		for i := n - 1; i >= 0; i-- {
			p1 := h[i]
			if p1.Input.(lin.Input).Kind == lin.Put && p1.Input.(lin.Input).Key == in.Key && p1.Output.(lin.Output).Status == lin.OK && p1.Return < p2.Call {
				return append(h, op(99, p2.Return+1, p2.Return+2, get(in.Key), p1.Output.(lin.Output)))
			}
		}
	}
	panic("no put to read stale")
}
