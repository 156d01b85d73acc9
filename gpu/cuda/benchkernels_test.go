package cuda_test

import (
	"strings"
	"testing"

	"github.com/alexnet-go/trainer/bench"
	"github.com/alexnet-go/trainer/gpu"
	"github.com/alexnet-go/trainer/gpu/cuda"
)

// bench kernels end to end on the host GPU: our kernels and cuDNN's LRN
// and pooling (the fake cuDNN, which checks their arguments) timed by the
// device's events, a row per layer and op with both columns.
func TestBenchKernelsOnHostGPU(t *testing.T) {
	d := cuda.HostDevice(t)
	rep, err := bench.KernelsOn([]gpu.Device{d}, bench.KernelsOptions{Batch: 1, Repeats: 1})
	if err != nil {
		t.Fatal(err)
	}
	if len(rep.Copies) != 1 || rep.Copies[0].Clock != "device" || rep.Copies[0].GBs <= 0 {
		t.Errorf("copy %+v: want the device's clock and a bandwidth", rep.Copies)
	}
	if len(rep.Rows) != 2*len(bench.KernelOps) {
		t.Fatalf("%d rows, want 2 layers × %d ops", len(rep.Rows), len(bench.KernelOps))
	}
	for _, r := range rep.Rows {
		if strings.HasPrefix(r.Op, "ReLU") { // fused: cuDNN has no twin
			if r.Ms <= 0 || r.Vendor != "" {
				t.Errorf("%s %s: ours %g ms, vendor %q", r.Layer, r.Op, r.Ms, r.Vendor)
			}
			continue
		}
		if r.Ms <= 0 || r.Vendor != "cuDNN 91000" || r.VendorMs <= 0 || r.VendorOf <= 0 {
			t.Errorf("%s %s: ours %g ms, %q %g ms (%g of copy)", r.Layer, r.Op, r.Ms, r.Vendor, r.VendorMs, r.VendorOf)
		}
	}
	if md := rep.Markdown(); !strings.Contains(md, "| cuDNN 91000 |") {
		t.Errorf("no cuDNN column:\n%s", md)
	}
}
