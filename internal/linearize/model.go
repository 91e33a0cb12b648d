package linearize

import (
	"fmt"
	"slices"
	"strconv"
	"strings"

	"github.com/anishathalye/porcupine"
)

// Kind is what an operation does.
type Kind uint8

// The operations of the model.
const (
	Get    Kind = iota + 1 // GET a key
	Put                    // PUT a key, If-Match optional
	Delete                 // DELETE a key, If-Match optional
	Txn                    // POST /v1/txn: puts and deletes, all or nothing
	// Patch is a PATCH of a key with a merge patch that is a JSON string:
	// it replaces the whole value (RFC 7396), and, as every patch, needs
	// the key to exist; If-Match optional. The server reads the value and
	// commits the patch's result as a put, which is what it exercises.
	Patch
)

// Input is an operation as the client sent it.
type Input struct {
	Kind Kind
	// Key is the key of a Get, Put, Delete or Patch.
	Key string
	// Value is what a Put or Patch writes.
	Value string
	// IfVersion is a Put's, Delete's or Patch's If-Match version (nil:
	// none; 0: the key must not exist).
	IfVersion *uint64
	// Ops are a Txn's writes, in order.
	Ops []Write

	// called is the operation's call time, set by Verify: whether two
	// writes were in flight together.
	called int64
}

// Write is one op of a transaction.
type Write struct {
	Key       string
	Delete    bool   // a delete; otherwise a put
	Patch     bool   // a put that needs the key to exist (a Patch)
	Value     string // what a put writes
	IfVersion *uint64
}

// Status is how an operation ended.
type Status uint8

// The outcomes of an operation.
const (
	// OK: the operation took effect (a write) or found the key (a get).
	OK Status = iota + 1
	// NotFound: a get or delete of an absent key (for a Txn, one of its
	// deletes).
	NotFound
	// Conflict: an If-Match that did not hold; Output.CurrentVersion is
	// the key's version.
	Conflict
	// Unknown: a write that may or may not have taken effect. Recorder
	// sets it (Recorder.Unknown); porcupine sees the operation as never
	// returning.
	Unknown
	// Failed: the operation had no effect: a write refused before it was
	// applied (connection refused, 503 unavailable) or a get that got no
	// answer. Recorder.History leaves such operations out: a refused
	// write that did take effect shows as a value or version no operation
	// of the history explains.
	Failed
)

// Output is what the server answered.
type Output struct {
	Status Status
	// Record is the answer of a Get, Put or Delete that is OK.
	Record Record
	// Records are a Txn's answers, one per op, when it is OK.
	Records []Record
	// CurrentVersion is the key's version in a Conflict (0: absent).
	CurrentVersion uint64
	// Key names the failed op of a Txn's Conflict or NotFound, when the
	// answer says it ("": any failed op may be the one).
	Key string

	// returned is the operation's return time, set by Verify.
	returned int64
}

// Record is a key's state as an answer gives it. A revision of 0 is "not
// reported" and is not checked.
type Record struct {
	Value     string // a Get's or Put's value (a delete's answer holds none)
	Version   uint64
	CreateRev uint64
	ModRev    uint64
}

// keyState is one key in the model. A revision of 0 is unknown: the key
// was written by an operation whose outcome is unknown, and no answer has
// told it since.
type keyState struct {
	key       string
	present   bool
	value     string
	version   uint64
	createRev uint64
	modRev    uint64
}

// state is the model's state: the keys written so far, sorted, and rev, a
// lower bound of the global revision: every later write's revision is
// above it, or equal to it while open.
type state struct {
	keys []keyState
	rev  uint64
	// openUntil, when not 0, is the earliest return of the writes that
	// took rev, the last operation: a write called before it may take
	// rev too. Concurrent writes committed together (etcd's grouped
	// writes) take effect at one instant, inside every one's call; a read
	// between them would have seen all of them or none, so a read closes
	// rev (0).
	openUntil int64
}

func (s state) find(key string) (int, bool) {
	return slices.BinarySearchFunc(s.keys, key, func(k keyState, key string) int { return strings.Compare(k.key, key) })
}

// get is key's state (absent, version 0, if never written).
func (s state) get(key string) keyState {
	if i, ok := s.find(key); ok {
		return s.keys[i]
	}
	return keyState{key: key}
}

// with returns a copy of s where key's state is k.
func (s state) with(k keyState) state {
	keys := slices.Clone(s.keys)
	if i, ok := s.find(k.key); ok {
		keys[i] = k
	} else {
		keys = slices.Insert(keys, i, k)
	}
	return state{keys: keys, rev: s.rev, openUntil: s.openUntil}
}

func equal(a, b any) bool {
	x, y := a.(state), b.(state)
	return x.rev == y.rev && x.openUntil == y.openUntil && slices.Equal(x.keys, y.keys)
}

// hash is FNV-1a over what equal compares but the keys' names (equal
// states have equal hashes all the same).
func hash(a any) uint64 {
	s := a.(state)
	h := uint64(14695981039346656037)
	mix := func(x uint64) {
		h ^= x
		h *= 1099511628211
	}
	mix(s.rev)
	mix(uint64(s.openUntil))
	for _, k := range s.keys {
		if k.present {
			mix(1)
		}
		mix(k.version)
		mix(k.createRev)
		mix(k.modRev)
		for i := 0; i < len(k.value); i++ {
			mix(uint64(k.value[i]))
		}
		mix(uint64(len(k.value)))
	}
	return h
}

// writes is a Put, Delete or Txn as a list of writes.
func (in Input) writes() []Write {
	switch in.Kind {
	case Put:
		return []Write{{Key: in.Key, Value: in.Value, IfVersion: in.IfVersion}}
	case Delete:
		return []Write{{Key: in.Key, Delete: true, IfVersion: in.IfVersion}}
	case Patch:
		return []Write{{Key: in.Key, Patch: true, Value: in.Value, IfVersion: in.IfVersion}}
	case Txn:
		return in.Ops
	}
	return nil
}

// keys are the keys in touches.
func (in Input) keys() []string {
	if in.Kind == Get {
		return []string{in.Key}
	}
	var keys []string
	for _, w := range in.writes() {
		keys = append(keys, w.Key)
	}
	return keys
}

// failure is why a write cannot apply to k: Conflict, NotFound, or 0 when
// it can.
func failure(w Write, k keyState) Status {
	if w.IfVersion != nil && *w.IfVersion != k.version {
		return Conflict
	}
	if (w.Delete || w.Patch) && !k.present {
		return NotFound
	}
	return 0
}

// step is the model's sequential specification: the states s can move to
// by in answered with out; none when the answer is impossible.
func step(s state, in Input, out Output) []state {
	if in.Kind == Get {
		switch out.Status {
		case OK:
			if next, ok := read(s, in.Key, out.Record); ok {
				return []state{next}
			}
			return nil
		case NotFound:
			if !s.get(in.Key).present {
				return []state{s.closed()}
			}
			return nil
		case Unknown, Failed:
			return []state{s}
		}
		return nil
	}
	writes := in.writes()
	switch out.Status {
	case OK:
		recs := out.Records
		if in.Kind != Txn {
			recs = []Record{out.Record}
		}
		if next, ok := apply(s, in.called, out.returned, writes, recs); ok {
			return []state{next}
		}
		return nil
	case Conflict, NotFound:
		for _, w := range writes {
			k := s.get(w.Key)
			if (out.Key == "" || out.Key == w.Key) && failure(w, k) == out.Status &&
				(out.Status != Conflict || out.CurrentVersion == k.version) {
				return []state{s.closed()}
			}
		}
		return nil
	case Unknown:
		if next, ok := apply(s, in.called, Never, writes, nil); ok {
			return []state{s, next}
		}
		return []state{s}
	case Failed:
		return []state{s}
	}
	return nil
}

// read checks a get's answer rec against key's state. A revision the
// model does not know yet is learnt from it.
func read(s state, key string, rec Record) (state, bool) {
	k := s.get(key)
	if !k.present || rec.Value != k.value || rec.Version != k.version {
		return s, false
	}
	learnt := k
	if !sameRev(&learnt.createRev, rec.CreateRev) || !sameRev(&learnt.modRev, rec.ModRev) {
		return s, false
	}
	if rec.CreateRev != 0 && rec.ModRev != 0 && rec.CreateRev > rec.ModRev {
		return s, false
	}
	if learnt == k {
		return s.closed(), true
	}
	next := s.with(learnt)
	next.openUntil = 0
	next.rev = max(next.rev, rec.ModRev)
	return next, true
}

// sameRev reports whether a reported revision got agrees with the model's
// *have, and learns it when *have is unknown (0). A revision not reported
// (0) agrees with anything.
func sameRev(have *uint64, got uint64) bool {
	switch {
	case got == 0:
		return true
	case *have == 0:
		*have = got
		return true
	}
	return *have == got
}

// apply applies writes, all or nothing, of an operation called and
// returned then, checking their answers recs; nil recs is a write whose
// outcome is unknown but took effect: it does apply when no comparison
// fails, with revisions unknown.
func apply(s state, called, returned int64, writes []Write, recs []Record) (state, bool) {
	known := recs != nil
	if known && len(recs) != len(writes) {
		return s, false
	}
	next := state{keys: slices.Clone(s.keys), rev: s.rev, openUntil: returned}
	// A write may share the revision of the write before it (s.rev) when
	// the two were in flight together.
	joins := s.openUntil != 0 && called < s.openUntil
	// The writes of a transaction take one revision each, in order (bolt),
	// or all share the transaction's one (etcd): never a mix. The first
	// may share the revision of the write before (open): then all do.
	reported, shared := 0, false
	for i, w := range writes {
		k := s.get(w.Key)
		if failure(w, k) != 0 {
			return s, false
		}
		var rec Record
		if known {
			rec = recs[i]
			if rec.ModRev != 0 {
				reported++
				if k.modRev != 0 && rec.ModRev <= k.modRev {
					return s, false
				}
				switch {
				case reported == 1 && rec.ModRev == next.rev && joins:
					shared = true
					next.openUntil = min(s.openUntil, returned)
				case reported == 2 && rec.ModRev == next.rev:
					shared = true
				case shared && rec.ModRev != next.rev, !shared && rec.ModRev <= next.rev:
					return s, false
				}
				next.rev = rec.ModRev
			} else {
				next.rev++
			}
		} else if i == 0 {
			// A lower bound: the transaction's revision is above the one
			// before; its other writes may share it (etcd).
			next.rev++
		}
		n := keyState{key: w.Key}
		if w.Delete {
			if known && (rec.Version != k.version || !sameRev(&k.createRev, rec.CreateRev)) {
				return s, false
			}
		} else {
			n = keyState{key: w.Key, present: true, value: w.Value, version: 1, modRev: rec.ModRev}
			if k.present {
				n.version = k.version + 1
				n.createRev = k.createRev
			} else {
				n.createRev = rec.ModRev
			}
			if known && (rec.Value != w.Value || rec.Version != n.version || !sameRev(&n.createRev, rec.CreateRev)) {
				return s, false
			}
		}
		if i, ok := next.find(w.Key); ok {
			next.keys[i] = n
		} else {
			next.keys = slices.Insert(next.keys, i, n)
		}
	}
	return next, true
}

// closed is s after a read: the next write takes a revision of its own.
func (s state) closed() state {
	s.openUntil = 0
	return s
}

// Model is ctxd's key semantics as a porcupine model (see the package
// documentation for its rules), partitioned by groups of keys that
// transactions link. Its inputs are [Input] and its outputs [Output].
func Model() porcupine.Model {
	nm := porcupine.NondeterministicModel{
		Partition: partition,
		Init:      func() []any { return []any{state{}} },
		Step: func(st, in, out any) []any {
			var next []any
			for _, n := range step(st.(state), in.(Input), out.(Output)) {
				next = append(next, n)
			}
			return next
		},
		Equal:             equal,
		Hash:              hash,
		DescribeOperation: describeOperation,
		DescribeState:     describeState,
	}
	return nm.ToModel()
}

// partition splits history into groups of operations whose keys
// transactions link, in their order.
func partition(history []porcupine.Operation) [][]porcupine.Operation {
	parent := map[string]string{}
	var root func(string) string
	root = func(k string) string {
		p, ok := parent[k]
		if !ok || p == k {
			parent[k] = k
			return k
		}
		r := root(p)
		parent[k] = r
		return r
	}
	first := func(op porcupine.Operation) (string, []string) {
		keys := op.Input.(Input).keys()
		if len(keys) == 0 {
			return "", nil // an empty transaction: a group of its own
		}
		return keys[0], keys[1:]
	}
	for _, op := range history {
		k0, rest := first(op)
		for _, k := range rest {
			parent[root(k)] = root(k0)
		}
	}
	index := map[string]int{}
	var parts [][]porcupine.Operation
	for _, op := range history {
		k0, _ := first(op)
		r := root(k0)
		i, ok := index[r]
		if !ok {
			i = len(parts)
			index[r] = i
			parts = append(parts, nil)
		}
		parts[i] = append(parts[i], op)
	}
	return parts
}

func describeOperation(in, out any) string {
	i, o := in.(Input), out.(Output)
	var b strings.Builder
	switch i.Kind {
	case Get:
		fmt.Fprintf(&b, "get(%s)", i.Key)
	case Put, Delete, Patch:
		b.WriteString(describeWrite(i.writes()[0]))
	case Txn:
		var ops []string
		for _, w := range i.Ops {
			ops = append(ops, describeWrite(w))
		}
		fmt.Fprintf(&b, "txn[%s]", strings.Join(ops, "; "))
	}
	b.WriteString(" → ")
	switch o.Status {
	case OK:
		switch i.Kind {
		case Get:
			b.WriteString(describeRecord(o.Record, true))
		case Txn:
			var recs []string
			for _, r := range o.Records {
				recs = append(recs, describeRecord(r, false))
			}
			fmt.Fprintf(&b, "ok[%s]", strings.Join(recs, "; "))
		default:
			b.WriteString(describeRecord(o.Record, false))
		}
	case NotFound:
		b.WriteString("not found")
		if o.Key != "" {
			b.WriteString(" " + o.Key)
		}
	case Conflict:
		fmt.Fprintf(&b, "conflict %s current v%d", o.Key, o.CurrentVersion)
	case Unknown:
		b.WriteString("unknown")
	case Failed:
		b.WriteString("failed")
	default:
		fmt.Fprintf(&b, "status %d", o.Status)
	}
	return b.String()
}

func describeWrite(w Write) string {
	s := fmt.Sprintf("put(%s, %q", w.Key, w.Value)
	switch {
	case w.Delete:
		s = "delete(" + w.Key
	case w.Patch:
		s = fmt.Sprintf("patch(%s, %q", w.Key, w.Value)
	}
	if w.IfVersion != nil {
		s += fmt.Sprintf(", if v%d", *w.IfVersion)
	}
	return s + ")"
}

func describeRecord(r Record, value bool) string {
	s := fmt.Sprintf("v%d @%d (created @%d)", r.Version, r.ModRev, r.CreateRev)
	if value {
		s = fmt.Sprintf("%q ", r.Value) + s
	}
	return s
}

func describeState(st any) string {
	s := st.(state)
	var keys []string
	for _, k := range s.keys {
		if !k.present {
			keys = append(keys, k.key+": absent")
			continue
		}
		keys = append(keys, fmt.Sprintf("%s: %q v%d @%s (created @%s)", k.key, k.value, k.version, revString(k.modRev), revString(k.createRev)))
	}
	if s.openUntil != 0 {
		return fmt.Sprintf("{%s} revision >= %d (open until %d)", strings.Join(keys, ", "), s.rev, s.openUntil)
	}
	return fmt.Sprintf("{%s} revision > %d", strings.Join(keys, ", "), s.rev)
}

func revString(r uint64) string {
	if r == 0 {
		return "?"
	}
	return strconv.FormatUint(r, 10)
}
