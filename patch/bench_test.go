package patch_test

import (
	"encoding/json"
	"fmt"
	"strings"
	"testing"

	"github.com/framework0/ctxd"
	"github.com/framework0/ctxd/patch"
)

// benchDoc is an object of 64 members of ~40 bytes (2.8 KB).
func benchDoc() []byte {
	members := make([]string, 64)
	for i := range members {
		members[i] = fmt.Sprintf(`"f%02d":"%s"`, i, strings.Repeat("v", 32))
	}
	return []byte("{" + strings.Join(members, ",") + "}")
}

// BenchmarkApply is the writer's cost of one patch of one member of
// benchDoc.
func BenchmarkApply(b *testing.B) {
	doc := benchDoc()
	for _, c := range []struct {
		name string
		p    ctxd.Patch
	}{
		{"merge", ctxd.Patch{Type: ctxd.MergePatch, Doc: json.RawMessage(`{"f31":42}`)}},
		{"json", ctxd.Patch{Type: ctxd.JSONPatch, Doc: json.RawMessage(`[{"op":"replace","path":"/f31","value":42}]`)}},
		{"json-test-and-replace", ctxd.Patch{Type: ctxd.JSONPatch, Doc: json.RawMessage(`[{"op":"test","path":"/f30","value":"` + strings.Repeat("v", 32) + `"},{"op":"replace","path":"/f31","value":42}]`)}},
	} {
		b.Run(c.name, func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				if _, err := patch.Apply(doc, c.p, ctxd.DefaultLimits); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// BenchmarkApplyMaxWork is the writer's cost of a patch near WorkBytes,
// all that the patches of one request may do: 15 JSON Patch operations
// on a 1 MB object of 16,000 small members, and a merge patch of it.
func BenchmarkApplyMaxWork(b *testing.B) {
	var doc strings.Builder
	doc.WriteString("{")
	for i := 0; doc.Len() < 1_000_000; i++ {
		if i > 0 {
			doc.WriteString(",")
		}
		fmt.Fprintf(&doc, `"k%06d":{"a":[1,2,3],"s":"%s"}`, i, strings.Repeat("v", 40))
	}
	doc.WriteString("}")
	value := []byte(doc.String())
	ops := make([]string, 15)
	for i := range ops {
		ops[i] = fmt.Sprintf(`{"op":"replace","path":"/k%06d/s","value":"x"}`, i*1000)
	}
	for _, c := range []struct {
		name string
		p    ctxd.Patch
	}{
		{"json-15-ops", ctxd.Patch{Type: ctxd.JSONPatch, Doc: json.RawMessage("[" + strings.Join(ops, ",") + "]")}},
		{"merge", ctxd.Patch{Type: ctxd.MergePatch, Doc: json.RawMessage(`{"k001000":{"s":"x"}}`)}},
	} {
		b.Run(c.name, func(b *testing.B) {
			for b.Loop() {
				if _, err := patch.Apply(value, c.p, ctxd.DefaultLimits); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
