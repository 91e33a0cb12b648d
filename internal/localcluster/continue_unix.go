//go:build unix

package localcluster

import (
	"os"
	"syscall"
)

// continueAfterSignal sends SIGCONT: a child paused with SIGSTOP handles
// the signal sent before it only once continued.
func continueAfterSignal(p *os.Process) { _ = p.Signal(syscall.SIGCONT) }
