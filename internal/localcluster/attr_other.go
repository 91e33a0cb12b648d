//go:build unix && !linux

package localcluster

import "syscall"

// childAttr: a process group of the child's own (no parent-death signal
// outside Linux: stop the parent with Ctrl-C, not SIGKILL).
func childAttr() *syscall.SysProcAttr { return &syscall.SysProcAttr{Setpgid: true} }
