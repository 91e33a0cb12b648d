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
