// Package robustness_test proves ctxd's durability claims against the real
// binary: power cuts on a file system that forgets unsynced writes
// (internal/powerfs), crashes at named failpoints (internal/failpoint, in a
// binary built with -tags failpoints), histories of concurrent clients
// checked for linearizability (internal/linearize), and ctxd instances on a
// 3-member etcd cluster whose leader and instances are killed
// (cluster_test.go, the cluster of make cluster). Like etcd's
// tests/robustness, it holds tests only.
package robustness_test

import (
	"fmt"
	"os"
	"testing"

	"github.com/framework0/ctxd/internal/testkit"
)

var (
	// ctxdBin is the production binary; failpointBin is the same code built
	// with -tags failpoints, whose named failpoints CTXD_FAILPOINTS arms.
	ctxdBin, failpointBin string
	// buildDir holds them, and what a test builds on first use.
	buildDir string
)

func TestMain(m *testing.M) {
	testkit.SmallLogSegments()
	if path := os.Getenv(boltCheckEnv); path != "" {
		os.Exit(boltCheckChild(path)) // a child of checkBoltRaw (powerloss_check_test.go)
	}
	dir, err := os.MkdirTemp("", "ctxd-robustness-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	buildDir = dir
	if ctxdBin, err = testkit.BuildCtxd(dir, "ctxd"); err == nil {
		failpointBin, err = testkit.BuildCtxd(dir, "ctxd-failpoints", "failpoints")
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.RemoveAll(dir)
		os.Exit(1)
	}
	testkit.VerifyNoLeaks(m, func() { os.RemoveAll(dir) })
}
