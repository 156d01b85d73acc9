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

// CheckVendorOps compares d's cuDNN LRN and pooling with the CPU device's
// ops (vendor_test.go).
func CheckVendorOps(t *testing.T, d *Device) { checkVendorOps(t, d) }
