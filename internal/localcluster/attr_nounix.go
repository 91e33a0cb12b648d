//go:build !unix

package localcluster

import (
	"os"
	"syscall"
)

// childAttr: nothing to set outside Unix.
func childAttr() *syscall.SysProcAttr { return nil }

// continueAfterSignal: no SIGSTOP to undo outside Unix.
func continueAfterSignal(*os.Process) {}
