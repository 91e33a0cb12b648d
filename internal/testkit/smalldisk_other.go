//go:build !linux

package testkit

import "testing"

// SmallDisk mounts a tmpfs that runs out of space on Linux; elsewhere the
// test is skipped.
func SmallDisk(t testing.TB, size int64) string {
	t.Skip("a full disk is a tmpfs mount, on Linux only")
	return ""
}

// GrowSmallDisk is never reached off Linux (SmallDisk skips).
func GrowSmallDisk(t testing.TB, dir string, size int64) {}
