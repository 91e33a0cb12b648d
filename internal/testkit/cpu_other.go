//go:build !unix

package testkit

import "testing"

// CPUPerOp reports nothing where getrusage is missing.
func CPUPerOp(*testing.B) (stop func()) { return func() {} }
