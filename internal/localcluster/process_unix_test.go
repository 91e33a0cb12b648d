//go:build unix

package localcluster_test

import (
	"os/exec"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/framework0/ctxd/internal/localcluster"
)

// A child paused with SIGSTOP (a member or an instance, as README's
// faults suggest trying) stops at Ctrl-C as a running one does: Stop
// continues it after its SIGTERM. Before, the SIGTERM waited for a
// SIGCONT that never came, and Stop killed it after its timeout
// (ctxd-cluster: 30 s for each paused child).
func TestStopAPausedChild(t *testing.T) {
	// A child that handles SIGTERM, as members and instances do (one
	// that does not is ended by it even while paused).
	p, err := localcluster.Start(exec.Command("sh", "-c", `trap "exit 0" TERM; echo `+localcluster.ReadyLine+`; while :; do sleep 0.05; done`))
	require.NoError(t, err)
	t.Cleanup(p.Kill)
	require.NoError(t, p.WaitReady(time.Minute))
	require.NoError(t, p.Cmd.Process.Signal(syscall.SIGSTOP))
	require.NoError(t, p.Stop(3*time.Second), "a paused child stops on SIGTERM, not killed at the timeout")
}
