package bench

import (
	"encoding/json"
	"math"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/alexnet-go/trainer/gpu"
	"github.com/alexnet-go/trainer/gpu/cpu"
)

// The byte floors, counted by hand from the shapes.
func TestKernelFloors(t *testing.T) {
	c := KernelCases(2)
	conv1, conv2 := c[0], c[1]
	if conv1.Pool.P() != 27 || conv2.Pool.P() != 13 {
		t.Fatalf("pooled sizes %d, %d; want the paper's 27, 13", conv1.Pool.P(), conv2.Pool.P())
	}
	for _, tc := range []struct {
		op   string
		c    KernelCase
		want int64
	}{
		{"LRN", conv1, 4 * 2 * (2 * 48 * 55 * 55)},
		{"LRNBackward", conv1, 4 * 4 * (2 * 48 * 55 * 55)},
		{"MaxPool", conv1, 4 * (2*48*55*55 + 2*48*27*27)},
		{"MaxPoolBackward", conv2, 4 * (2*(2*128*27*27) + 2*128*13*13)},
		{"ReLULRN", conv2, 4 * 2 * (2 * 128 * 27 * 27)},
		{"ReLULRNBackward", conv1, 4 * 4 * (2 * 48 * 55 * 55)},
	} {
		if got := Floor(tc.op, tc.c); got != tc.want {
			t.Errorf("Floor(%s, %s) = %d, want %d", tc.op, tc.c.Layer, got, tc.want)
		}
	}
}

// bench kernels on a CPU device: a row per layer and op, with no vendor
// column, the fractions taken against the copy measured in the same run,
// and the report files written.
func TestKernelsCPU(t *testing.T) {
	out := t.TempDir()
	rep, err := Kernels(KernelsOptions{GPUs: "cpu", Batch: 1, Repeats: 1, Threads: 1, Out: out})
	if err != nil {
		t.Fatal(err)
	}
	checkKernelsReport(t, rep, "cpu:0", "", 1)
	js, err := os.ReadFile(filepath.Join(out, "kernels.json"))
	if err != nil {
		t.Fatal(err)
	}
	var back KernelsReport
	if err := json.Unmarshal(js, &back); err != nil || len(back.Rows) != 12 || back.Rows[11] != rep.Rows[11] {
		t.Errorf("kernels.json: %v, %d rows", err, len(back.Rows))
	}
	if md, err := os.ReadFile(filepath.Join(out, "kernels.md")); err != nil || string(md) != rep.Markdown() {
		t.Errorf("kernels.md: %v", err)
	}
	devs := []gpu.Device{cpu.New(cpu.Options{Threads: 1})}
	if _, err := KernelsOn(devs, KernelsOptions{Batch: 0, Repeats: 1}); err == nil {
		t.Error("batch 0 accepted")
	}
}

// checkKernelsReport checks a report of one device.
func checkKernelsReport(t *testing.T, rep *KernelsReport, device, vendor string, batch int) {
	t.Helper()
	if len(rep.Copies) != 1 || rep.Copies[0].Device != device || rep.Copies[0].GBs <= 0 {
		t.Fatalf("copies %+v, want one positive for %s", rep.Copies, device)
	}
	if rep.Copies[0].Bytes != 4*int64(batch*48*55*55) {
		t.Errorf("copy of %d bytes, want conv1's LRN input, %d", rep.Copies[0].Bytes, 4*batch*48*55*55)
	}
	cp := rep.Copies[0].GBs
	ops := len(KernelOps)
	if len(rep.Rows) != 2*ops {
		t.Fatalf("%d rows, want 2 layers × %d ops", len(rep.Rows), ops)
	}
	for i, r := range rep.Rows {
		c := KernelCases(batch)[i/ops]
		if r.Layer != c.Layer || r.Op != KernelOps[i%ops] || r.Device != device {
			t.Errorf("row %d is %s %s on %s", i, r.Layer, r.Op, r.Device)
		}
		if r.FloorBytes != Floor(r.Op, c) || r.Ms <= 0 {
			t.Errorf("row %d: floor %d, %g ms", i, r.FloorBytes, r.Ms)
		}
		if want := float64(r.FloorBytes) / (r.Ms / 1e3) / 1e9; math.Abs(r.GBs-want) > 1e-9*want || math.Abs(r.OfCopy-r.GBs/cp) > 1e-12 {
			t.Errorf("row %d: %g GB/s, %g of copy; want %g, %g", i, r.GBs, r.OfCopy, want, want/cp)
		}
		if strings.HasPrefix(r.Op, "ReLU") {
			// No vendor twin.
			if r.Vendor != "" || r.VendorMs != 0 {
				t.Errorf("row %d: vendor %q %g ms for the fused %s", i, r.Vendor, r.VendorMs, r.Op)
			}
			continue
		}
		if r.Vendor != vendor || (vendor != "" && (r.VendorMs <= 0 || math.Abs(r.VendorOf-r.VendorGBs/cp) > 1e-12)) || (vendor == "" && r.VendorMs != 0) {
			t.Errorf("row %d: vendor %q %g ms, %g of copy; want %q", i, r.Vendor, r.VendorMs, r.VendorOf, vendor)
		}
	}
	md := rep.Markdown()
	if !strings.Contains(md, "| "+device+" | conv2 | MaxPoolBackward |") || !strings.Contains(md, "| "+device+" | conv1 | ReLULRNBackward |") || (vendor != "" && !strings.Contains(md, vendor)) {
		t.Errorf("markdown lacks rows:\n%s", md)
	}
}
