package localcluster

import "syscall"

// childAttr: a process group of the child's own, and SIGTERM when the
// parent dies (a parent killed with SIGKILL leaves no member running).
func childAttr() *syscall.SysProcAttr {
	return &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGTERM}
}
