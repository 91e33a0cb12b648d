// Package patch applies patch documents to JSON values: JSON Merge Patch
// (RFC 7396) and JSON Patch (RFC 6902, with "test"). A storage backend
// applies them in its writer, against the value current when the write
// commits, each request's patches through a Budget of its own, and stores
// the result as an ordinary put: so concurrent patches of different parts
// of one value never lose each other's changes, and nothing replays a
// patch.
//
// The result is in ctxd's canonical form (ctxd.Limits.CanonicalValue):
// compact, the parts a patch did not touch byte for byte as they were
// (member order, number text, string escapes), and nothing escaped that
// was not (no HTML escaping of <, > and &).
//
// A value is stored as sent, an object that names a member twice
// ({"a":1,"a":2}) too, and a patch keeps both copies: one that would
// have to write that object back (a JSON Patch operation through it) or
// cannot tell which copy it names (a merge patch that sets it) does not
// apply, and says which member, where, and to PUT the whole value.
//
// A patch that does not apply returns a *ctxd.PatchError naming the
// operation and the JSON pointer that failed; a malformed patch document
// returns an error matching ctxd.ErrInvalid; a result over the size
// limit, or a patch over the work its request's patches share (Budget),
// one matching ctxd.ErrTooLarge.
package patch

import (
	"errors"
	"fmt"

	"github.com/framework0/ctxd"
)

// WorkBytes is the work the patches of one request may do together: a
// JSON Patch's operations times the bytes of the value and the patch,
// and a merge patch's bytes of value and patch once. Each JSON Patch
// operation parses and writes the whole value again, in bolt's writer,
// which every other write waits for (on etcd, in the instance that got
// the request): 16 MiB is about 16 operations on a 1 MB value, 200 on
// 64 KB (the patch's own bytes count too), thousands on a small one. On
// the shared 2-core VM a JSON Patch of 15 operations on a 1 MB object of
// 16,000 small members took 0.46-0.55 s, a merge patch of it 7-11 ms
// (BenchmarkApplyMaxWork). The bound is the request's, not each patch's:
// a transaction of 128 JSON Patches, each under a bound of its own, held
// bolt's writer for 92 s, and its answer carried 128 values of 1 MB.
const WorkBytes = 16 << 20

// Budget is the work (WorkBytes) the patches of one request share: a
// backend applies every patch of a request (a transaction's, or one
// PATCH) through one Budget, a new one per request and per attempt of it.
// The zero Budget has all of WorkBytes left. A Budget is not safe for
// concurrent use.
type Budget struct {
	used int // work of the patches applied through it
}

// Apply returns value with p applied, in canonical form, within limits,
// and counts p's work against b when it applies (a patch that fails does
// not count: its request fails, or, on etcd's read cache, applies it
// again to the value etcd holds). A patch whose work is more than b has
// left is refused (ctxd.ErrTooLarge) before it is applied. A merge patch
// counts at most the whole of WorkBytes, so that one alone applies to any
// value within limits.max_value_bytes, as before the budget was shared.
// value must be one JSON value (a stored value); it is not modified.
func (b *Budget) Apply(value []byte, p ctxd.Patch, limits ctxd.Limits) (out []byte, err error) {
	if err := limits.ValidatePatch(p); err != nil {
		return nil, err
	}
	// A patch is client input handed to code that is not ours: whatever
	// it does, a bad patch must fail its own request, never the writer.
	defer func() {
		if r := recover(); r != nil {
			out, err = nil, &ctxd.PatchError{Index: -1, Op: string(p.Type), Reason: fmt.Sprintf("the patch could not be applied: %v", r)}
		}
	}()
	var work int
	switch p.Type {
	case ctxd.MergePatch:
		work = min(len(value)+len(p.Doc), WorkBytes)
		if err := b.check(work, "a merge patch", len(value)); err != nil {
			return nil, err
		}
		out, err = mergePatch(value, p.Doc)
	case ctxd.JSONPatch:
		out, work, err = jsonPatch(value, p.Doc, limits, b)
	}
	if err != nil {
		return nil, err
	}
	out, err = limits.CanonicalValue(out)
	if err != nil {
		if errors.Is(err, ctxd.ErrTooLarge) {
			return nil, fmt.Errorf("patched value: %w", err)
		}
		return nil, err
	}
	b.used += work
	return out, nil
}

// check refuses the work of a patch (what, on a value of size bytes) that
// is more than b has left.
func (b *Budget) check(work int, what string, size int) error {
	if work <= WorkBytes-b.used {
		return nil
	}
	if b.used == 0 {
		return ctxd.TooLargef("%s on a value of %d bytes is too much work for one write (at most %d operations x bytes): send fewer operations, or a merge patch, or PUT the value",
			what, size, WorkBytes)
	}
	return ctxd.TooLargef("%s on a value of %d bytes is too much work after the request's patches before it (%d operations x bytes; the patches of one request do at most %d together): send them in several requests, or fewer operations, or PUT the values",
		what, size, b.used, WorkBytes)
}

// Apply returns value with p applied, in canonical form, within limits:
// a patch alone in its request, with a Budget of its own.
func Apply(value []byte, p ctxd.Patch, limits ctxd.Limits) ([]byte, error) {
	var b Budget
	return b.Apply(value, p, limits)
}
