package linearize_test

import (
	"os/exec"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/framework0/ctxd/internal/testkit"
)

// TestMain fails the run when a test leaves a goroutine running.
func TestMain(m *testing.M) {
	testkit.SmallLogSegments()
	testkit.VerifyNoLeaks(m)
}

// The server binary links neither this package nor porcupine: both are for
// tests only.
func TestBinaryDoesNotLinkTheChecker(t *testing.T) {
	out, err := exec.Command("go", "list", "-deps", "github.com/framework0/ctxd/cmd/ctxd").CombinedOutput()
	require.NoError(t, err, "%s", out)
	for _, pkg := range strings.Fields(string(out)) {
		require.NotEqual(t, "github.com/framework0/ctxd/internal/linearize", pkg)
		require.False(t, strings.HasPrefix(pkg, "github.com/anishathalye/porcupine"), pkg)
	}
	require.Contains(t, string(out), "github.com/framework0/ctxd/server")
}
