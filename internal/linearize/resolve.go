package linearize

import (
	"encoding/json"
	"fmt"

	"github.com/anishathalye/porcupine"

	"github.com/framework0/ctxd/client"
)

// Resolution counts what [Resolve] did with the operations of unknown
// outcome.
type Resolution struct {
	// Unknown is how many operations had an unknown outcome before.
	Unknown int
	// Applied took effect (the feed shows them) and are now answered;
	// Bounded of them got a return time (the others stay pending to the
	// end of the history, deterministic all the same).
	Applied, Bounded int
	// Dropped did not take effect and left the history.
	Dropped int
	// Left are still of unknown outcome: deletes the feed cannot tell
	// apart, or writes the feed shows in a way no single operation
	// explains (a value twice, a transaction in part).
	Left int
}

// String is a one-line summary, for logs.
func (r Resolution) String() string {
	return fmt.Sprintf("%d operations of unknown outcome: %d took effect (%d of them bounded), %d did not, %d left unknown",
		r.Unknown, r.Applied, r.Bounded, r.Dropped, r.Left)
}

// change is one change of the feed, its value as the model compares it.
type change struct {
	rev     uint64
	key     string
	delete  bool
	value   string
	version uint64
}

// feedIndex is the feed looked up by value and by key.
type feedIndex struct {
	changes []change
	// puts are the places of each put, by key and value.
	puts map[[2]string][]int
	// deletes are the places of each key's deletes.
	deletes map[string][]int
}

func indexFeed(feed []client.WatchEvent) feedIndex {
	ix := feedIndex{puts: map[[2]string][]int{}, deletes: map[string][]int{}}
	for _, ev := range feed {
		if ev.Type != client.EventChange {
			continue
		}
		ch := change{rev: ev.Rev, key: ev.Key, delete: ev.Op == "delete", version: ev.Version}
		if ch.delete {
			ix.deletes[ch.key] = append(ix.deletes[ch.key], len(ix.changes))
		} else {
			ch.value = record(client.Record{Value: json.RawMessage(ev.Value)}).Value
			k := [2]string{ch.key, ch.value}
			ix.puts[k] = append(ix.puts[k], len(ix.changes))
		}
		ix.changes = append(ix.changes, ch)
	}
	return ix
}

// Resolve decides, from feed (every change of the history's keys from
// before its first operation on, in order, as a [Feed] records it), which
// writes of unknown outcome in h took effect, and returns the history
// with those answered as the server would have, those that did not
// dropped, and the rest left unknown; see the package documentation
// (Resolving unknown outcomes) for the rules and why they never make a
// history that is not linearizable pass.
func Resolve(h History, feed []client.WatchEvent) (History, Resolution) {
	ix := indexFeed(feed)
	var res Resolution
	out := make(History, 0, len(h))
	// explained are the deletes of the feed that an answered operation
	// (or a transaction resolved here) made, by key and revision.
	type keyRev struct {
		key string
		rev uint64
	}
	explained := map[keyRev]bool{}
	// unrevised are keys of which an answered delete did not report its
	// revision: their deletes cannot be told apart.
	unrevised := map[string]bool{}
	var deletes []int // places in out of unknown deletes, and of transactions of deletes only
	var left []string // keys that the transactions left unknown may have deleted
	for _, op := range h {
		in, o := op.Input.(Input), op.Output.(Output)
		if o.Status != Unknown {
			if o.Status == OK && in.Kind != Get {
				recs := records(op)
				for i, w := range in.writes() {
					switch {
					case !w.Delete:
					case i < len(recs) && recs[i].ModRev != 0:
						explained[keyRev{w.Key, recs[i].ModRev}] = true
					default:
						unrevised[w.Key] = true
					}
				}
			}
			out = append(out, op)
			continue
		}
		res.Unknown++
		writes := in.writes()
		puts := 0
		for _, w := range writes {
			if !w.Delete {
				puts++
			}
		}
		if puts == 0 {
			deletes = append(deletes, len(out))
			out = append(out, op)
			continue
		}
		recs, found := ix.writeRecords(writes)
		switch {
		case found == 0:
			res.Dropped++
			continue
		case recs == nil:
			res.Left++
			for _, w := range writes {
				if w.Delete {
					left = append(left, w.Key)
				}
			}
		default:
			res.Applied++
			for i, w := range writes {
				if w.Delete {
					explained[keyRev{w.Key, recs[i].ModRev}] = true
				}
			}
			op.Output = answered(in, recs)
		}
		out = append(out, op)
	}
	// The deletes, once every delete the feed shows that an answered or
	// resolved operation made is known.
	drop := map[int]bool{}
	candidates := map[string]int{} // operations that may have deleted each key
	for _, i := range deletes {
		for _, w := range out[i].Input.(Input).writes() {
			candidates[w.Key]++
		}
	}
	for _, key := range left {
		candidates[key]++
	}
	for _, i := range deletes {
		writes := out[i].Input.(Input).writes()
		var unexplained [][]int // per write, the feed's deletes of its key no operation explains
		none := false
		for _, w := range writes {
			var u []int
			for _, p := range ix.deletes[w.Key] {
				if !explained[keyRev{w.Key, ix.changes[p].rev}] {
					u = append(u, p)
				}
			}
			unexplained = append(unexplained, u)
			// All or nothing: one key that no unknown delete can have
			// deleted is enough.
			none = none || !unrevised[w.Key] && len(u) == 0
		}
		switch {
		case none:
			drop[i] = true
			res.Dropped++
		case len(writes) == 1 && !unrevised[writes[0].Key] && candidates[writes[0].Key] == 1 && len(unexplained[0]) == 1:
			ch := ix.changes[unexplained[0][0]]
			out[i].Output = Output{Status: OK, Record: Record{Version: ch.version, ModRev: ch.rev}}
			res.Applied++
		default:
			res.Left++
		}
	}
	if len(drop) > 0 {
		kept := out[:0]
		for i, op := range out {
			if !drop[i] {
				kept = append(kept, op)
			}
		}
		out = kept
	}
	res.Bounded = bound(out)
	return out, res
}

// writeRecords finds the writes of a put or of a transaction with at
// least one put in the feed: recs are their records when the feed shows
// each of them exactly once, as one operation makes them (in order, one
// revision each or all the transaction's one); found is how many of the
// puts' values it shows (0: the operation did not take effect).
func (ix feedIndex) writeRecords(writes []Write) (recs []Record, found int) {
	first := -1 // the place of the first write, from the first put's
	ok := true
	for i, w := range writes {
		if w.Delete {
			continue
		}
		places := ix.puts[[2]string{w.Key, w.Value}]
		found += min(len(places), 1)
		if len(places) != 1 {
			ok = false
			continue
		}
		if first < 0 {
			first = places[0] - i
		}
	}
	if !ok || first < 0 || first+len(writes) > len(ix.changes) {
		return nil, found
	}
	recs = make([]Record, len(writes))
	for i, w := range writes {
		ch := ix.changes[first+i]
		if ch.key != w.Key || ch.delete != w.Delete || ch.value != w.Value ||
			i > 0 && ch.rev != ix.changes[first].rev && ch.rev != ix.changes[first+i-1].rev+1 {
			return nil, found
		}
		recs[i] = Record{Value: ch.value, Version: ch.version, ModRev: ch.rev}
	}
	return recs, found
}

// answered is the answer the server would have given to in, which took
// effect with recs.
func answered(in Input, recs []Record) Output {
	if in.Kind == Txn {
		return Output{Status: OK, Records: recs}
	}
	return Output{Status: OK, Record: recs[0]}
}

// bound gives each operation that Resolve answered (OK, yet pending: its
// return Never) the return time of the first operation of its partition
// that was answered with a revision at or above its own and returned
// after it was invoked; it returns how many it bounded. The model puts
// such an operation before any operation that reports a revision at or
// above its own (after one, the state's revision is at least that one,
// and a write's revision must be above it), so the bound takes away no
// order the model would accept: it only spares porcupine the search.
func bound(h History) int {
	n := 0
	for _, part := range partition(h) {
		for _, op := range part {
			if op.Return != Never || op.Output.(Output).Status != OK {
				continue
			}
			rev := minRev(op)
			if rev == 0 {
				continue
			}
			ret := Never
			for _, o := range part {
				if o.Return != Never && o.Return > op.Call && o.Return < ret && maxRev(o) >= rev {
					ret = o.Return
				}
			}
			if ret != Never {
				setReturn(h, op, ret)
				n++
			}
		}
	}
	return n
}

// setReturn sets the return time of op, found in h by its call time
// (unique: the recorder's clock is strictly increasing).
func setReturn(h History, op porcupine.Operation, ret int64) {
	for i := range h {
		if h[i].Call == op.Call && h[i].ClientId == op.ClientId {
			h[i].Return = ret
			return
		}
	}
}

// records are the records an answer reports.
func records(op porcupine.Operation) []Record {
	o := op.Output.(Output)
	if o.Status != OK {
		return nil
	}
	if op.Input.(Input).Kind == Txn {
		return o.Records
	}
	return []Record{o.Record}
}

func minRev(op porcupine.Operation) uint64 {
	var m uint64
	for _, r := range records(op) {
		if r.ModRev != 0 && (m == 0 || r.ModRev < m) {
			m = r.ModRev
		}
	}
	return m
}

func maxRev(op porcupine.Operation) uint64 {
	var m uint64
	for _, r := range records(op) {
		m = max(m, r.ModRev)
	}
	return m
}
