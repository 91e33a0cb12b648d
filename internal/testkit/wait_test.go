package testkit_test

import (
	"go/ast"
	"go/parser"
	"go/token"
	"io/fs"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// testifyPackages are the testify packages whose Eventually functions
// the tests must not call.
var testifyPackages = map[string]bool{
	"github.com/stretchr/testify/assert":  true,
	"github.com/stretchr/testify/require": true,
}

// testifyEventuallyUses lists, as "file:line: name", every use of
// testify's Eventually, Eventuallyf, EventuallyWithT or EventuallyWithTf
// (assert's or require's, under any import name) in the *_test.go files
// of the module rooted at root. Folders holding a go.mod of their own are
// other modules and are not read.
func testifyEventuallyUses(t *testing.T, root string) []string {
	t.Helper()
	var uses []string
	err := filepath.WalkDir(root, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.IsDir() {
			if path == root {
				return nil
			}
			name := d.Name()
			if strings.HasPrefix(name, ".") || strings.HasPrefix(name, "_") || name == "testdata" || name == "vendor" {
				return filepath.SkipDir
			}
			if _, err := os.Stat(filepath.Join(path, "go.mod")); err == nil {
				return filepath.SkipDir
			}
			return nil
		}
		if !strings.HasSuffix(path, "_test.go") {
			return nil
		}
		fset := token.NewFileSet()
		f, err := parser.ParseFile(fset, path, nil, parser.SkipObjectResolution)
		if err != nil {
			return err
		}
		names := map[string]bool{} // the file's names for assert and require
		for _, imp := range f.Imports {
			p, err := strconv.Unquote(imp.Path.Value)
			if err != nil || !testifyPackages[p] {
				continue
			}
			name := p[strings.LastIndex(p, "/")+1:]
			if imp.Name != nil {
				name = imp.Name.Name
			}
			names[name] = true
		}
		if len(names) == 0 {
			return nil
		}
		ast.Inspect(f, func(n ast.Node) bool {
			sel, ok := n.(*ast.SelectorExpr)
			if !ok || !strings.HasPrefix(sel.Sel.Name, "Eventually") {
				return true
			}
			if pkg, ok := sel.X.(*ast.Ident); ok && names[pkg.Name] {
				rel, _ := filepath.Rel(root, path)
				uses = append(uses, rel+":"+strconv.Itoa(fset.Position(sel.Pos()).Line)+": "+pkg.Name+"."+sel.Sel.Name)
			}
			return true
		})
		return nil
	})
	require.NoError(t, err)
	return uses
}

// No test calls testify's Eventually: on failure it returns while its
// condition still runs in a goroutine of its own, which then races with
// the test's cleanup (under -race, a data race that hides the real
// failure), and the condition shares the test's variables from another
// goroutine. testkit.Eventually runs the condition in the test's
// goroutine.
func TestNoTestUsesTestifysEventually(t *testing.T) {
	root := filepath.Join("..", "..")
	require.FileExists(t, filepath.Join(root, "go.mod"))
	if uses := testifyEventuallyUses(t, root); len(uses) > 0 {
		t.Errorf("testify's Eventually, where testkit.Eventually belongs:\n%s", strings.Join(uses, "\n"))
	}
}

// The negative control: the check finds testify's Eventually under its
// own names and under an alias, and passes over testkit's and over a
// folder that is another module.
func TestTestifyEventuallyUsesAreFound(t *testing.T) {
	root := t.TempDir()
	write := func(path, src string) {
		t.Helper()
		path = filepath.Join(root, filepath.FromSlash(path))
		require.NoError(t, os.MkdirAll(filepath.Dir(path), 0o750))
		require.NoError(t, os.WriteFile(path, []byte(src), 0o600))
	}
	write("go.mod", "module example.com/m\n")
	write("a/a_test.go", `package a

import (
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	must "github.com/stretchr/testify/require"

	"github.com/framework0/ctxd/internal/testkit"
)

func TestA(t *testing.T) {
	testkit.Eventually(t, func() bool { return true })
	assert.Eventually(t, func() bool { return true }, time.Second, time.Millisecond)
	must.EventuallyWithT(t, func(c *assert.CollectT) {}, time.Second, time.Millisecond)
	wait := must.Eventuallyf
	_ = wait
}
`)
	write("a/a.go", "package a\n\nimport \"github.com/stretchr/testify/require\"\n\nvar _ = require.Eventually\n")
	write("other/go.mod", "module example.com/other\n")
	write("other/o_test.go", "package other\n\nimport \"github.com/stretchr/testify/require\"\n\nvar _ = require.Eventually\n")

	assert.Equal(t, []string{
		filepath.Join("a", "a_test.go") + ":15: assert.Eventually",
		filepath.Join("a", "a_test.go") + ":16: must.EventuallyWithT",
		filepath.Join("a", "a_test.go") + ":17: must.Eventuallyf",
	}, testifyEventuallyUses(t, root))
}
