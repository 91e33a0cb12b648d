package testkit

import (
	"os"
	"testing"

	"github.com/stretchr/testify/require"
)

// DirNames lists the names of dir's entries, sorted ([]string{} when it
// is empty).
func DirNames(t testing.TB, dir string) []string {
	t.Helper()
	entries, err := os.ReadDir(dir) // sorted by name
	require.NoError(t, err)
	out := []string{}
	for _, e := range entries {
		out = append(out, e.Name())
	}
	return out
}
