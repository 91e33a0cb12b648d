// Package patch applies patch documents to JSON values: JSON Merge Patch
// (RFC 7396) and JSON Patch (RFC 6902, with "test"). A storage backend
// calls Apply in its writer, against the value current when the write
// commits, and stores the result as an ordinary put: so concurrent patches
// of different parts of one value never lose each other's changes, and
// nothing replays a patch.
//
// The result is in ctxd's canonical form (ctxd.Limits.CanonicalValue):
// compact, the parts a patch did not touch byte for byte as they were
// (member order, number text, string escapes), and nothing escaped that
// was not (no HTML escaping of <, > and &).
//
// A patch that does not apply returns a *ctxd.PatchError naming the
// operation and the JSON pointer that failed; a malformed patch document
// returns an error matching ctxd.ErrInvalid; a result over the size limit
// one matching ctxd.ErrTooLarge.
package patch

import (
	"errors"
	"fmt"

	"github.com/framework0/ctxd"
)

// Apply returns value with p applied, in canonical form, within limits.
// value must be one JSON value (a stored value); it is not modified.
func Apply(value []byte, p ctxd.Patch, limits ctxd.Limits) (out []byte, err error) {
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
	switch p.Type {
	case ctxd.MergePatch:
		out, err = mergePatch(value, p.Doc)
	case ctxd.JSONPatch:
		out, err = jsonPatch(value, p.Doc, limits)
	}
	if err != nil {
		return nil, err
	}
	out, err = limits.CanonicalValue(out)
	if err != nil && errors.Is(err, ctxd.ErrTooLarge) {
		return nil, fmt.Errorf("patched value: %w", err)
	}
	return out, err
}
