package cuda

import (
	"errors"
	"testing"
)

// NewNCCLGroupCopies makes the group of devs as if NCCL refused them: with
// device copies where they share one GPU (ncclgpu_test.go).
func NewNCCLGroupCopies(devs []*Device) (*NCCLGroup, error) {
	return newNCCLGroup(devs, nil, errors.New("NCCL left out by the test"), func(string) string { return "" })
}

// hostGPUOf is the host GPU of HostDevices' devices, by context.
var hostGPUOf = map[*gpuContext]*hostGPU{}

// HostDevices opens n Devices on one host GPU (hostgpu_test.go), its
// kernels compiled for the host, so that the GPU tests of the NCCL group
// run here too. Without g++ it skips.
func HostDevices(t *testing.T, n int) []*Device {
	g := newHostGPU(t, loadHostKernels(t), 2)
	hostGPUOf[g.gc] = g
	t.Cleanup(func() { delete(hostGPUOf, g.gc) })
	devs := make([]*Device, n)
	for i := range devs {
		devs[i] = g.open(Options{})
	}
	return devs
}

// HostNCCLGroup makes the group of devs, from HostDevices, over the fake
// NCCL 2.30.4 of hostnccl_test.go with NCCL_MULTI_RANK_GPU_ENABLE=1.
func HostNCCLGroup(t *testing.T, devs []*Device) *NCCLGroup {
	h := newHostNCCL(hostGPUOf[devs[0].gc], 23004)
	grp, err := newNCCLGroup(devs, h.lib(), nil, func(k string) string {
		if k == "NCCL_MULTI_RANK_GPU_ENABLE" {
			return "1"
		}
		return ""
	})
	if err != nil {
		t.Fatal(err)
	}
	return grp
}
