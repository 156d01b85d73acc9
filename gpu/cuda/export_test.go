package cuda

import (
	"testing"

	"github.com/alexnet-go/trainer/gpu"
)

// HostDevice opens a Device on a host GPU (hostgpu_test.go), its kernels
// compiled for the host, for the external tests that need the whole
// program above the device (package bench). Without g++ it skips.
func HostDevice(t *testing.T) gpu.Device {
	g := newHostGPU(t, loadHostKernels(t), 2)
	return g.open(Options{})
}
