package export_test

import (
	"path/filepath"
	"strings"
	"testing"

	"github.com/framework0/ctxd/export"
)

// FuzzCheckName: every name CheckName accepts is one plain file name inside
// the dump folder, whatever the input. The seeds are real attempts.
func FuzzCheckName(f *testing.F) {
	for _, seed := range []string{
		"context_dump_20260101_120000.json", "backup.csv", "a", "report-v1.2.pretty",
		"..", ".", "../../etc/passwd", "..%2F..%2Fetc%2Fpasswd", "%2e%2e", "%252e%252e",
		"/etc/passwd", `..\..\windows`, "a\x00.json", "dumps/../../x", ".tmp-x.json-1",
		"a..b", "-rf", "con", "x.json\n", " a", "é.json", strings.Repeat("a", 129),
	} {
		f.Add(seed)
	}
	dir := filepath.Join(string(filepath.Separator), "data", "dumps")
	f.Fuzz(func(t *testing.T, name string) {
		if export.CheckName(name) != nil {
			return
		}
		if len(name) == 0 || len(name) > export.MaxNameLen {
			t.Fatalf("accepted %q of length %d", name, len(name))
		}
		if filepath.Base(name) != name || filepath.IsAbs(name) || strings.ContainsAny(name, "/\\\x00%: ") {
			t.Fatalf("accepted %q, which is not a plain file name", name)
		}
		if strings.HasPrefix(name, ".") || strings.HasPrefix(name, export.TempPrefix) {
			t.Fatalf("accepted hidden or temp name %q", name)
		}
		p := filepath.Join(dir, name)
		if filepath.Dir(p) != dir || filepath.Clean(p) != p {
			t.Fatalf("accepted %q, which resolves to %q outside %q", name, p, dir)
		}
		for _, r := range name {
			if r > 0x7e {
				t.Fatalf("accepted non-ASCII %q", name)
			}
		}
	})
}
