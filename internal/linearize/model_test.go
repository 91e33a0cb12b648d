package linearize_test

import (
	"testing"
	"time"

	"github.com/anishathalye/porcupine"
	"github.com/stretchr/testify/require"

	lin "github.com/framework0/ctxd/internal/linearize"
)

// Helpers that write histories by hand: op(client, call, return, input,
// output); unknown(client, call, input) never returns.

func op(client int, call, ret int64, in lin.Input, out lin.Output) porcupine.Operation {
	return porcupine.Operation{ClientId: client, Call: call, Return: ret, Input: in, Output: out}
}

func unknown(client int, call int64, in lin.Input) porcupine.Operation {
	return op(client, call, lin.Never, in, lin.Output{Status: lin.Unknown})
}

func ver(v uint64) *uint64 { return &v }

func get(k string) lin.Input    { return lin.Input{Kind: lin.Get, Key: k} }
func put(k, v string) lin.Input { return lin.Input{Kind: lin.Put, Key: k, Value: v} }
func cas(k, v string, if_ uint64) lin.Input {
	return lin.Input{Kind: lin.Put, Key: k, Value: v, IfVersion: ver(if_)}
}
func del(k string) lin.Input { return lin.Input{Kind: lin.Delete, Key: k} }
func delIf(k string, if_ uint64) lin.Input {
	return lin.Input{Kind: lin.Delete, Key: k, IfVersion: ver(if_)}
}
func txn(ops ...lin.Write) lin.Input { return lin.Input{Kind: lin.Txn, Ops: ops} }
func patch(k, v string) lin.Input    { return lin.Input{Kind: lin.Patch, Key: k, Value: v} }

// rec is an OK answer holding value v at version n, created at
// revision c, last changed at revision m.
func rec(v string, n, c, m uint64) lin.Output {
	return lin.Output{Status: lin.OK, Record: lin.Record{Value: v, Version: n, CreateRev: c, ModRev: m}}
}

// deleted is a delete's OK answer: the deleted version n.
func deleted(n, c, m uint64) lin.Output {
	return lin.Output{Status: lin.OK, Record: lin.Record{Version: n, CreateRev: c, ModRev: m}}
}

func txnOK(recs ...lin.Record) lin.Output { return lin.Output{Status: lin.OK, Records: recs} }

var (
	notFound = lin.Output{Status: lin.NotFound}
	failed   = lin.Output{Status: lin.Failed}
)

func conflict(current uint64) lin.Output {
	return lin.Output{Status: lin.Conflict, CurrentVersion: current}
}

type historyCase struct {
	name    string
	history lin.History
}

// TestLinearizableHistories: histories ctxd may produce pass.
func TestLinearizableHistories(t *testing.T) {
	for _, c := range []historyCase{
		{"put, get, delete, put again starts at version 1", lin.History{
			op(0, 1, 2, put("a", "x"), rec("x", 1, 1, 1)),
			op(0, 3, 4, get("a"), rec("x", 1, 1, 1)),
			op(0, 5, 6, put("a", "y"), rec("y", 2, 1, 2)),
			op(0, 7, 8, del("a"), deleted(2, 1, 3)),
			op(0, 9, 10, get("a"), notFound),
			op(0, 11, 12, del("a"), notFound),
			op(0, 13, 14, put("a", "z"), rec("z", 1, 4, 4)),
		}},
		{"concurrent puts in either order", lin.History{
			op(0, 1, 10, put("a", "x"), rec("x", 2, 2, 3)),
			op(1, 2, 9, put("a", "y"), rec("y", 1, 2, 2)),
			op(2, 3, 8, get("a"), rec("y", 1, 2, 2)),
			op(2, 11, 12, get("a"), rec("x", 2, 2, 3)),
		}},
		{"compare-and-swap on the version, conflicts answer the current one", lin.History{
			op(0, 1, 2, cas("a", "x", 0), rec("x", 1, 1, 1)),
			op(0, 3, 4, cas("a", "y", 0), conflict(1)),
			op(0, 5, 6, cas("a", "y", 1), rec("y", 2, 1, 2)),
			op(0, 7, 8, cas("a", "z", 1), conflict(2)),
			op(0, 9, 10, delIf("a", 1), conflict(2)),
			op(0, 11, 12, delIf("a", 2), deleted(2, 1, 3)),
			op(0, 13, 14, delIf("a", 0), notFound),
			op(0, 15, 16, delIf("a", 3), conflict(0)),
		}},
		{"a revision shared with other writers may skip", lin.History{
			op(0, 1, 2, put("a", "x"), rec("x", 1, 5, 5)),
			op(0, 3, 4, put("a", "y"), rec("y", 2, 5, 9)),
		}},
		{"a transaction is all or nothing", lin.History{
			op(0, 1, 2, txn(lin.Write{Key: "a", Value: "x"}, lin.Write{Key: "b", Value: "y", IfVersion: ver(0)}),
				txnOK(lin.Record{Value: "x", Version: 1, CreateRev: 1, ModRev: 1}, lin.Record{Value: "y", Version: 1, CreateRev: 2, ModRev: 2})),
			op(0, 3, 4, txn(lin.Write{Key: "a", Value: "x2"}, lin.Write{Key: "b", Delete: true, IfVersion: ver(3)}),
				lin.Output{Status: lin.Conflict, Key: "b", CurrentVersion: 1}),
			op(0, 5, 6, txn(lin.Write{Key: "b", Delete: true}, lin.Write{Key: "c", Delete: true}),
				lin.Output{Status: lin.NotFound}),
			op(1, 7, 8, get("a"), rec("x", 1, 1, 1)),
			op(2, 7, 8, get("b"), rec("y", 1, 2, 2)),
		}},
		{"a transaction's writes share its revision (etcd)", lin.History{
			op(0, 1, 2, put("a", "w"), rec("w", 1, 3, 3)),
			op(0, 3, 4, txn(lin.Write{Key: "a", Value: "x"}, lin.Write{Key: "b", Value: "y", IfVersion: ver(0)}),
				txnOK(lin.Record{Value: "x", Version: 2, CreateRev: 3, ModRev: 5}, lin.Record{Value: "y", Version: 1, CreateRev: 5, ModRev: 5})),
			op(1, 5, 6, get("a"), rec("x", 2, 3, 5)),
			op(2, 5, 6, get("b"), rec("y", 1, 5, 5)),
		}},
		{"a patch needs the key; it replaces the value as a put does", lin.History{
			op(0, 1, 2, patch("a", "x"), notFound),
			op(0, 3, 4, put("a", "x"), rec("x", 1, 1, 1)),
			op(0, 5, 6, patch("a", "y"), rec("y", 2, 1, 2)),
			op(0, 7, 8, lin.Input{Kind: lin.Patch, Key: "a", Value: "z", IfVersion: ver(1)}, conflict(2)),
			op(0, 9, 10, del("a"), deleted(2, 1, 3)),
			op(0, 11, 12, patch("a", "z"), notFound),
		}},
		{"writes in flight together share a revision (etcd's grouped writes)", lin.History{
			op(0, 1, 2, txn(lin.Write{Key: "a", Value: "w"}, lin.Write{Key: "b", Value: "w"}),
				txnOK(lin.Record{Value: "w", Version: 1, CreateRev: 3, ModRev: 3}, lin.Record{Value: "w", Version: 1, CreateRev: 3, ModRev: 3})),
			op(0, 3, 8, put("a", "x"), rec("x", 2, 3, 5)),
			op(1, 4, 7, put("b", "y"), rec("y", 2, 3, 5)),
			op(2, 5, 9, del("c"), notFound),
			op(2, 10, 11, get("b"), rec("y", 2, 3, 5)),
			op(0, 10, 11, get("a"), rec("x", 2, 3, 5)),
		}},
		{"an unknown transaction took effect at one revision (etcd)", lin.History{
			op(0, 1, 2, put("a", "w"), rec("w", 1, 1, 1)),
			unknown(1, 3, txn(lin.Write{Key: "a", Value: "x"}, lin.Write{Key: "b", Value: "y"})),
			op(0, 4, 5, get("a"), rec("x", 2, 1, 2)),
			op(0, 6, 7, put("b", "z"), rec("z", 2, 2, 3)),
		}},
		{"an unknown put that took effect", lin.History{
			op(0, 1, 2, put("a", "x"), rec("x", 1, 1, 1)),
			unknown(1, 3, put("a", "y")),
			op(0, 4, 5, get("a"), rec("x", 1, 1, 1)),
			op(0, 6, 7, put("a", "z"), rec("z", 3, 1, 3)),
		}},
		{"an unknown put that did not", lin.History{
			unknown(1, 1, put("a", "y")),
			op(0, 2, 3, put("a", "x"), rec("x", 1, 1, 1)),
			op(0, 4, 5, get("a"), rec("x", 1, 1, 1)),
			op(0, 6, 7, put("a", "z"), rec("z", 2, 1, 2)),
		}},
		{"an unknown put takes effect late, its revision read later", lin.History{
			unknown(1, 1, put("a", "y")),
			op(0, 2, 3, get("a"), notFound),
			op(0, 4, 5, get("a"), rec("y", 1, 7, 7)),
			op(0, 6, 7, put("b", "x"), rec("x", 1, 8, 8)),
			op(0, 8, 9, get("a"), rec("y", 1, 7, 7)),
		}},
		{"an unknown delete and an unknown transaction", lin.History{
			op(0, 1, 2, put("a", "x"), rec("x", 1, 1, 1)),
			unknown(1, 3, del("a")),
			unknown(2, 3, txn(lin.Write{Key: "a", Value: "t", IfVersion: ver(1)}, lin.Write{Key: "b", Value: "u"})),
			op(0, 4, 5, get("b"), rec("u", 1, 3, 3)),
			op(0, 6, 7, get("a"), notFound),
			op(0, 8, 9, put("a", "w"), rec("w", 1, 5, 5)),
		}},
		{"failed operations had no effect", lin.History{
			op(0, 1, 2, put("a", "x"), rec("x", 1, 1, 1)),
			op(1, 3, 4, del("a"), failed),
			op(1, 5, 6, get("a"), failed),
			op(0, 7, 8, get("a"), rec("x", 1, 1, 1)),
		}},
	} {
		t.Run(c.name, func(t *testing.T) {
			r := lin.Verify(c.history, 10*time.Second)
			require.Equal(t, porcupine.Ok, r.Verdict, "%v", r)
		})
	}
}

// TestViolationsAreFound: the negative controls. Each history breaks one
// rule, and the checker must say so.
func TestViolationsAreFound(t *testing.T) {
	for _, c := range []historyCase{
		{"lost update: an acknowledged put is gone", lin.History{
			op(0, 1, 2, put("a", "x"), rec("x", 1, 1, 1)),
			op(1, 3, 4, get("a"), notFound),
		}},
		{"lost update: two puts both built on version 1", lin.History{
			op(0, 1, 2, put("a", "x"), rec("x", 1, 1, 1)),
			op(0, 3, 6, put("a", "y"), rec("y", 2, 1, 2)),
			op(1, 4, 5, put("a", "z"), rec("z", 2, 1, 3)),
		}},
		{"a patch that brought a deleted key back", lin.History{
			op(0, 1, 2, put("a", "x"), rec("x", 1, 1, 1)),
			op(0, 3, 4, del("a"), deleted(1, 1, 2)),
			op(1, 5, 6, patch("a", "y"), rec("y", 1, 3, 3)), // as a put would have answered
		}},
		{"stale read after an acknowledged write", lin.History{
			op(0, 1, 2, put("a", "x"), rec("x", 1, 1, 1)),
			op(0, 3, 4, put("a", "y"), rec("y", 2, 1, 2)),
			op(1, 5, 6, get("a"), rec("x", 1, 1, 1)),
		}},
		{"a version that skips", lin.History{
			op(0, 1, 2, put("a", "x"), rec("x", 1, 1, 1)),
			op(0, 3, 4, put("a", "y"), rec("y", 3, 1, 2)),
		}},
		{"a version that does not restart after a delete", lin.History{
			op(0, 1, 2, put("a", "x"), rec("x", 1, 1, 1)),
			op(0, 3, 4, del("a"), deleted(1, 1, 2)),
			op(0, 5, 6, put("a", "y"), rec("y", 2, 1, 3)),
		}},
		{"a read of a value never written", lin.History{
			op(0, 1, 2, put("a", "x"), rec("x", 1, 1, 1)),
			op(1, 3, 4, get("a"), rec("q", 1, 1, 1)),
		}},
		{"a CAS that succeeded against a wrong version", lin.History{
			op(0, 1, 2, put("a", "x"), rec("x", 1, 1, 1)),
			op(0, 3, 4, put("a", "y"), rec("y", 2, 1, 2)),
			op(1, 5, 6, cas("a", "z", 1), rec("z", 3, 1, 3)),
		}},
		{"a conflict that names a wrong current version", lin.History{
			op(0, 1, 2, put("a", "x"), rec("x", 1, 1, 1)),
			op(1, 3, 4, cas("a", "z", 0), conflict(2)),
		}},
		{"a conflict when the version matched", lin.History{
			op(0, 1, 2, put("a", "x"), rec("x", 1, 1, 1)),
			op(1, 3, 4, cas("a", "z", 1), conflict(1)),
		}},
		{"a delete of a present key answered not found", lin.History{
			op(0, 1, 2, put("a", "x"), rec("x", 1, 1, 1)),
			op(1, 3, 4, del("a"), notFound),
		}},
		{"a revision that goes back", lin.History{
			op(0, 1, 2, put("a", "x"), rec("x", 1, 1, 5)),
			op(0, 3, 4, put("a", "y"), rec("y", 2, 1, 4)),
		}},
		{"a create revision that changes", lin.History{
			op(0, 1, 2, put("a", "x"), rec("x", 1, 1, 1)),
			op(0, 3, 4, put("a", "y"), rec("y", 2, 2, 2)),
		}},
		{"an unknown put un-applies: seen, then gone", lin.History{
			op(0, 1, 2, put("a", "x"), rec("x", 1, 1, 1)),
			unknown(1, 3, put("a", "y")),
			op(0, 4, 5, get("a"), rec("y", 2, 1, 2)),
			op(0, 6, 7, get("a"), rec("x", 1, 1, 1)),
		}},
		{"an unknown put seen before it was sent", lin.History{
			op(0, 1, 2, get("a"), rec("y", 1, 1, 1)),
			unknown(1, 3, put("a", "y")),
		}},
		{"an unknown put whose If-Match failed still applied", lin.History{
			op(0, 1, 2, put("a", "x"), rec("x", 1, 1, 1)),
			unknown(1, 3, cas("a", "y", 0)),
			op(0, 4, 5, get("a"), rec("y", 2, 1, 2)),
		}},
		{"an unknown put applied twice", lin.History{
			unknown(1, 1, put("a", "y")),
			op(0, 2, 3, get("a"), rec("y", 1, 1, 1)),
			op(0, 4, 5, get("a"), rec("y", 2, 1, 2)),
		}},
		{"half a transaction", lin.History{
			op(0, 1, 2, txn(lin.Write{Key: "a", Value: "x"}, lin.Write{Key: "b", Value: "y"}),
				txnOK(lin.Record{Value: "x", Version: 1, CreateRev: 1, ModRev: 1}, lin.Record{Value: "y", Version: 1, CreateRev: 2, ModRev: 2})),
			op(1, 3, 4, get("a"), rec("x", 1, 1, 1)),
			op(1, 5, 6, get("b"), notFound),
		}},
		{"a transaction's revision shared by some writes only", lin.History{
			op(0, 1, 2, txn(lin.Write{Key: "a", Value: "x"}, lin.Write{Key: "b", Value: "y"}, lin.Write{Key: "c", Value: "z"}),
				txnOK(lin.Record{Value: "x", Version: 1, CreateRev: 1, ModRev: 1}, lin.Record{Value: "y", Version: 1, CreateRev: 1, ModRev: 1},
					lin.Record{Value: "z", Version: 1, CreateRev: 2, ModRev: 2})),
		}},
		{"a transaction's revision not above the one before it", lin.History{
			op(0, 1, 2, put("a", "w"), rec("w", 1, 3, 3)),
			op(0, 3, 4, txn(lin.Write{Key: "a", Value: "x"}, lin.Write{Key: "b", Value: "y"}),
				txnOK(lin.Record{Value: "x", Version: 2, CreateRev: 3, ModRev: 3}, lin.Record{Value: "y", Version: 1, CreateRev: 3, ModRev: 3})),
		}},
		{"writes that were not in flight together share a revision", lin.History{
			op(0, 1, 2, txn(lin.Write{Key: "a", Value: "w"}, lin.Write{Key: "b", Value: "w"}),
				txnOK(lin.Record{Value: "w", Version: 1, CreateRev: 3, ModRev: 3}, lin.Record{Value: "w", Version: 1, CreateRev: 3, ModRev: 3})),
			op(0, 3, 4, put("a", "x"), rec("x", 2, 3, 5)),
			op(1, 5, 6, put("b", "y"), rec("y", 2, 3, 5)),
		}},
		{"writes of one revision, a read seeing one of them only", lin.History{
			op(0, 1, 2, txn(lin.Write{Key: "a", Value: "w"}, lin.Write{Key: "b", Value: "w"}),
				txnOK(lin.Record{Value: "w", Version: 1, CreateRev: 3, ModRev: 3}, lin.Record{Value: "w", Version: 1, CreateRev: 3, ModRev: 3})),
			op(0, 3, 10, put("a", "x"), rec("x", 2, 3, 5)),
			op(1, 3, 10, put("b", "y"), rec("y", 2, 3, 5)),
			op(2, 4, 5, get("a"), rec("x", 2, 3, 5)),
			op(2, 6, 7, get("b"), rec("w", 1, 3, 3)),
		}},
		{"two writes of one key share a revision", lin.History{
			op(0, 1, 10, put("a", "x"), rec("x", 1, 5, 5)),
			op(1, 2, 9, put("a", "y"), rec("y", 2, 5, 5)),
		}},
		{"a failed transaction that wrote", lin.History{
			op(0, 1, 2, put("b", "y"), rec("y", 1, 1, 1)),
			op(0, 3, 4, txn(lin.Write{Key: "a", Value: "x"}, lin.Write{Key: "b", Value: "z", IfVersion: ver(0)}),
				lin.Output{Status: lin.Conflict, Key: "b", CurrentVersion: 1}),
			op(1, 5, 6, get("a"), rec("x", 1, 2, 2)),
		}},
		{"a transaction conflict on the key that matched", lin.History{
			op(0, 1, 2, put("b", "y"), rec("y", 1, 1, 1)),
			op(0, 3, 4, txn(lin.Write{Key: "a", Value: "x", IfVersion: ver(3)}, lin.Write{Key: "b", Value: "z", IfVersion: ver(1)}),
				lin.Output{Status: lin.Conflict, Key: "b", CurrentVersion: 1}),
		}},
		{"a write refused without effect that took effect", lin.History{
			op(0, 1, 2, put("a", "x"), rec("x", 1, 1, 1)),
			op(1, 3, 4, del("a"), failed),
			op(0, 5, 6, get("a"), notFound),
		}},
	} {
		t.Run(c.name, func(t *testing.T) {
			r := lin.Verify(c.history, 10*time.Second)
			require.Equal(t, porcupine.Illegal, r.Verdict, "%v", r)
		})
	}
}
