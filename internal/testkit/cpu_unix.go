//go:build unix

package testkit

import (
	"syscall"
	"testing"
	"time"
)

// CPUPerOp reports, when the returned function is called at the end of a
// benchmark's loop, the CPU time the process used per iteration
// (cpu-ns/op: user and system time of every goroutine, the garbage
// collector's included). On a machine whose cores are shared it varies
// less than ns/op, which is wall time.
func CPUPerOp(b *testing.B) (stop func()) {
	start, ok := cpuTime()
	return func() {
		end, ok2 := cpuTime()
		if ok && ok2 && b.N > 0 {
			b.ReportMetric(float64(end-start)/float64(b.N), "cpu-ns/op")
		}
	}
}

func cpuTime() (time.Duration, bool) {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0, false
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano()), true
}
