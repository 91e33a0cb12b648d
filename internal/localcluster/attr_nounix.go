//go:build !unix

package localcluster

import "syscall"

// childAttr: nothing to set outside Unix.
func childAttr() *syscall.SysProcAttr { return nil }
