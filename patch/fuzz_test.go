package patch_test

import (
	"encoding/json"
	"errors"
	"testing"

	"github.com/framework0/ctxd"
	"github.com/framework0/ctxd/patch"
)

// FuzzApply: whatever the value and the patch, Apply answers a canonical
// JSON value or one of its documented errors, and never panics (a panic
// would be recovered into a PatchError of operation -1).
//
//	go test ./patch -run '^$' -fuzz FuzzApply -fuzztime 60s
func FuzzApply(f *testing.F) {
	f.Add(`{"a":{"b":[1,2]}}`, `{"a":{"b":null,"c":"<&>"}}`, false)
	f.Add(`{"a":[1,2,{"x":"y"}]}`, `[{"op":"move","from":"/a/2/x","path":"/a/0"},{"op":"test","path":"/a/1","value":2}]`, true)
	f.Add(`[1,2,3]`, `[{"op":"copy","from":"/0","path":"/-"},{"op":"remove","path":"/00"}]`, true)
	f.Add(`{"":{"":1}}`, `[{"op":"replace","path":"//","value":2}]`, true)
	f.Add(`"s"`, `{"k\u0065y":1}`, false)
	f.Add(`{"a":1,"a":2,"b":{"c":1}}`, `[{"op":"replace","path":"/b/c","value":3}]`, true)
	f.Add(`{"a":1,"a":2,"b":{"c":1}}`, `{"b":{"c":3},"a":4}`, false)
	f.Fuzz(func(t *testing.T, value, doc string, isJSONPatch bool) {
		if !json.Valid([]byte(value)) {
			return
		}
		typ := ctxd.MergePatch
		if isJSONPatch {
			typ = ctxd.JSONPatch
		}
		out, err := patch.Apply([]byte(value), ctxd.Patch{Type: typ, Doc: json.RawMessage(doc)}, ctxd.DefaultLimits)
		if err != nil {
			var pe *ctxd.PatchError
			if errors.As(err, &pe) && pe.Index < 0 {
				t.Fatalf("Apply panicked: %v", err)
			}
			if !errors.Is(err, ctxd.ErrInvalid) && !errors.Is(err, ctxd.ErrPatchFailed) &&
				!errors.Is(err, ctxd.ErrPatchTestFailed) && !errors.Is(err, ctxd.ErrTooLarge) {
				t.Fatalf("an undocumented error: %v", err)
			}
			return
		}
		canonical, err := ctxd.DefaultLimits.CanonicalValue(out)
		if err != nil || string(canonical) != string(out) {
			t.Fatalf("the result %q is not a canonical value: %v", out, err)
		}
	})
}
