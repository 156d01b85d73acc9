package parallel

import (
	"syscall"
	"time"
)

// threadCPU is the CPU time the calling OS thread has used (a worker's:
// it is locked to its thread), or 0 where it cannot be read.
func threadCPU() time.Duration {
	var u syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_THREAD, &u); err != nil {
		return 0
	}
	return time.Duration(u.Utime.Nano() + u.Stime.Nano())
}
