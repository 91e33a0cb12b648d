//go:build !linux

package perf

// cpuTicks is only known on Linux.
func cpuTicks() (all, self int64, ok bool) { return 0, 0, false }

const ticksPerSecond = 100
