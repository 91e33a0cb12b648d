package powerfs_test

import (
	"os"
	"testing"

	"github.com/framework0/ctxd/internal/testkit"
)

// TestMain runs the bbolt child process when asked to (see
// TestBoltPowerCutDuringCommits), and otherwise the tests, failing the run
// when one leaves a goroutine running.
func TestMain(m *testing.M) {
	testkit.SmallLogSegments()
	if path := os.Getenv(boltChildEnv); path != "" {
		os.Exit(boltChild(path))
	}
	testkit.VerifyNoLeaks(m)
}
