//go:build !linux

package parallel

import "time"

// threadCPU is the CPU time the calling OS thread has used; 0: not read
// on this system.
func threadCPU() time.Duration { return 0 }
