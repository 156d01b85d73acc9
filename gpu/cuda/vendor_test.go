package cuda

import (
	"math"
	"math/rand/v2"
	"testing"

	"github.com/alexnet-go/trainer/gpu"
	"github.com/alexnet-go/trainer/gpu/cpu"
)

// cuDNN's LRN and pooling (vendor.go) on the host GPU compute what our
// ops compute on the CPU device: the fake cuDNN computes from the
// arguments as cuDNN documents them, so a wrong α (not times n), x and y
// swapped in a backward call, or a wrong window or stride fails here.
// Seen failing with: α passed without the ·Size; y and dy swapped in
// cudnnPoolingBackward.
func TestVendorOpsMatchCPU(t *testing.T) {
	g := newHostGPU(t, nil, 2)
	checkVendorOps(t, g.open(Options{}))
}

// checkVendorOps compares d's Vendor* ops with the CPU device's LRN and
// max pooling on random inputs (without ties), to 10⁻⁴ of the largest
// value and 10⁻³ relative: loose enough for another order of sums, tight
// enough for a wrong convention (α without ·n changes y by a fifth).
func checkVendorOps(t *testing.T, d *Device) {
	ref := cpu.New(cpu.Options{Threads: 1})
	rng := rand.New(rand.NewPCG(1, 2))
	random := func(n int) []float32 {
		v := make([]float32, n)
		for i := range v {
			v[i] = float32(rng.NormFloat64() * 3)
		}
		return v
	}
	// run runs op on both devices with the same inputs and compares the
	// output, which is the first buffer.
	run := func(name string, lens []int, vendor func(b []gpu.Buffer) error, ours func(b []gpu.Buffer) error) {
		t.Helper()
		var gb, cb []gpu.Buffer
		for i, n := range lens {
			v := random(n)
			x, err := d.Alloc(n)
			if err != nil {
				t.Fatal(err)
			}
			y, _ := ref.Alloc(n)
			if i > 0 {
				if err := d.Upload(x, v); err != nil {
					t.Fatal(err)
				}
				_ = ref.Upload(y, v)
			}
			gb, cb = append(gb, x), append(cb, y)
		}
		if err := ours(cb); err != nil {
			t.Fatal(err)
		}
		if err := vendor(gb); err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		got, want := make([]float32, lens[0]), make([]float32, lens[0])
		if err := d.Download(got, gb[0]); err != nil {
			t.Fatal(err)
		}
		_ = ref.Download(want, cb[0])
		bad, big := 0, 0.0
		for _, w := range want {
			big = max(big, math.Abs(float64(w)))
		}
		for i := range got {
			if !(math.Abs(float64(got[i]-want[i])) <= 1e-4*big+1e-3*math.Abs(float64(want[i]))) {
				if bad++; bad <= 5 {
					t.Errorf("%s: [%d] = %g, want %g", name, i, got[i], want[i])
				}
			}
		}
		for _, b := range gb {
			d.Free(b)
		}
	}
	ls := gpu.LRNShape{N: 2, C: 7, H: 3, W: 4, Size: 5, Alpha: 0.02, Beta: 0.75, K: 2}
	n := ls.Len()
	run("VendorLRN", []int{n, n}, func(b []gpu.Buffer) error { return d.VendorLRN(b[0], b[1], ls) },
		func(b []gpu.Buffer) error { return ref.LRN(b[0], b[1], ls) })
	// y must be LRN(x) for the backward pass: compute it on both.
	run("VendorLRNBackward", []int{n, n, n, n}, func(b []gpu.Buffer) error {
		if err := d.VendorLRN(b[3], b[2], ls); err != nil {
			return err
		}
		return d.VendorLRNBackward(b[0], b[1], b[2], b[3], ls)
	}, func(b []gpu.Buffer) error {
		if err := ref.LRN(b[3], b[2], ls); err != nil {
			return err
		}
		return ref.LRNBackward(b[0], b[1], b[2], b[3], ls)
	})
	ps := gpu.PoolShape{N: 2, C: 3, H: 9, W: 7, Size: 3, Stride: 2}
	run("VendorMaxPool", []int{ps.YLen(), ps.XLen()}, func(b []gpu.Buffer) error { return d.VendorMaxPool(b[0], b[1], ps) },
		func(b []gpu.Buffer) error { return ref.MaxPool(b[0], b[1], ps) })
	run("VendorMaxPoolBackward", []int{ps.XLen(), ps.YLen(), ps.XLen(), ps.YLen()}, func(b []gpu.Buffer) error {
		if err := d.VendorMaxPool(b[3], b[2], ps); err != nil {
			return err
		}
		return d.VendorMaxPoolBackward(b[0], b[1], b[2], b[3], ps)
	}, func(b []gpu.Buffer) error {
		if err := ref.MaxPool(b[3], b[2], ps); err != nil {
			return err
		}
		return ref.MaxPoolBackward(b[0], b[1], b[2], b[3], ps)
	})
}

// A cuDNN without the LRN and pooling symbols still opens; the Vendor
// methods then return an error naming the missing symbol.
func TestVendorOpsMissingSymbol(t *testing.T) {
	g := newHostGPU(t, nil, 2)
	d := g.open(Options{})
	saved := g.lib.dnn.vendorErr
	defer func() { g.lib.dnn.vendorErr = saved }()
	g.lib.dnn.vendorErr = errNotImplemented("cudnnLRNCrossChannelForward")
	x, _ := d.Alloc(24)
	ls := gpu.LRNShape{N: 1, C: 2, H: 3, W: 4, Size: 5, Alpha: 1e-4, Beta: 0.75, K: 2}
	if err := d.VendorLRN(x, x, ls); err == nil {
		t.Error("VendorLRN without the symbol: no error")
	}
	ps := gpu.PoolShape{N: 1, C: 2, H: 3, W: 4, Size: 2, Stride: 1}
	if err := d.VendorMaxPool(x, x, ps); err == nil {
		t.Error("VendorMaxPool without the symbol: no error")
	}
}
