package snapbudget_test

import (
	"testing"

	"github.com/framework0/ctxd/internal/testkit"
)

// TestMain fails the run when a test leaves a goroutine running.
func TestMain(m *testing.M) { testkit.VerifyNoLeaks(m) }
