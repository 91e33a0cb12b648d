package client_test

import (
	"go/ast"
	"go/parser"
	"go/token"
	"path/filepath"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// codeConstants lists the constants named Code... declared in the Go
// file at path.
func codeConstants(t *testing.T, path string) []string {
	t.Helper()
	f, err := parser.ParseFile(token.NewFileSet(), path, nil, 0)
	require.NoError(t, err)
	var names []string
	for _, d := range f.Decls {
		g, ok := d.(*ast.GenDecl)
		if !ok || g.Tok != token.CONST {
			continue
		}
		for _, s := range g.Specs {
			for _, n := range s.(*ast.ValueSpec).Names {
				if strings.HasPrefix(n.Name, "Code") {
					names = append(names, n.Name)
				}
			}
		}
	}
	return names
}

// Every error code the server may send has its constant in this package
// too: a caller branching on APIError.Code needs no import of the
// server's package (six of them were only there).
func TestEveryErrorCodeHasItsConstant(t *testing.T) {
	server := codeConstants(t, filepath.Join("..", "errors.go"))
	require.NotEmpty(t, server)
	assert.ElementsMatch(t, server, codeConstants(t, "errors.go"))
}
