package bolt_test

import (
	"os"
	"testing"

	"github.com/framework0/ctxd/internal/testkit"
)

// TestMain runs the power-cut child process when asked to (see
// TestPowerCutKeepsAcknowledgedWrites), and otherwise the tests, failing
// the run when one leaves a goroutine running.
func TestMain(m *testing.M) {
	testkit.SmallLogSegments()
	if path := os.Getenv(powerChildEnv); path != "" {
		os.Exit(powerChild(path, os.Getenv(powerEarlyEnv) != ""))
	}
	testkit.VerifyNoLeaks(m)
}
