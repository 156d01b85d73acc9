package parallel

import (
	"os"
	"runtime"
	"sync"
)

// A worker runs on an OS thread of its own (runtime.LockOSThread) and
// spends most of a step in native code: OpenBLAS or the CUDA libraries,
// called through purego as system calls. While a thread is in such a call
// the Go scheduler takes its P (the right to run Go code) for others, and
// when the call returns the thread must win a P back before it can go on.
// With GOMAXPROCS equal to the cores and a worker per core (cpu,cpu on two
// cores), the workers' returns queue for the Ps that the other worker,
// the runtime and the caller's goroutines hold: each worker's thread ran
// only 86–91% of the time it was busy, and alexnet's cpu,cpu step went
// from 27.2–27.5 to 32.5–32.7 images/s with a P to spare for each worker
// (bench/results/cpu-speed-2026-12-02.md). So each worker reserves a P
// beyond those the process had while it lives, unless the user set
// GOMAXPROCS. The threads doing work are still the workers' (and each CPU
// device's own threads, which its Options fix): the spare Ps only stop
// them waiting for one.
var procs struct {
	sync.Mutex
	base     int // GOMAXPROCS before the first reservation
	reserved int
}

// reserveP adds a P for a worker and returns what gives it back (nothing
// where the user set GOMAXPROCS).
func reserveP() (release func()) {
	if os.Getenv("GOMAXPROCS") != "" {
		return func() {}
	}
	procs.Lock()
	defer procs.Unlock()
	if procs.reserved == 0 {
		procs.base = runtime.GOMAXPROCS(0)
	}
	procs.reserved++
	runtime.GOMAXPROCS(procs.base + procs.reserved)
	return func() {
		procs.Lock()
		defer procs.Unlock()
		procs.reserved--
		runtime.GOMAXPROCS(procs.base + procs.reserved)
	}
}
