package etcd_test

import (
	"testing"

	"github.com/framework0/ctxd/internal/testkit"
	"github.com/framework0/ctxd/internal/testkit/etcdkit"
)

// TestMain fails the run when a test leaves a goroutine running, after
// stopping the package's embedded etcd.
func TestMain(m *testing.M) {
	testkit.SmallLogSegments()
	testkit.VerifyNoLeaks(m, etcdkit.Stop)
}
