package cpu

import (
	"fmt"
	"math"
	"math/rand/v2"
	"slices"
	"testing"

	"github.com/alexnet-go/trainer/gpu"
)

// TestFusedSameBits runs each fused op and its unfused sequence on devices
// of 1, 2 and 3 threads (on each BLAS), each splitting work as finely as it can, and
// requires the same bits from all: the fused op saves passes over memory,
// never changes a result, whatever the thread count.
func TestFusedSameBits(t *testing.T) {
	bs := gpu.BiasShape{N: 3, C: 7, Inner: 29}
	ls := gpu.LinearShape{N: 6, In: 37, Out: 23}
	lrn := gpu.LRNShape{N: 2, C: 9, H: 11, W: 13, Size: 5, Alpha: 1e-2, Beta: 0.75, K: 2} // two pixel blocks
	r := rand.New(rand.NewPCG(1, 2))
	y0, b, dy := randSlice(r, bs.Len()), randSlice(r, bs.C), randSlice(r, bs.Len())
	lx, lw, lb, ldy := randSlice(r, ls.N*ls.In), randSlice(r, ls.Out*ls.In), randSlice(r, ls.Out), randSlice(r, ls.N*ls.Out)
	nx := lrn.Len()
	x, ndy := randSlice(r, nx), randSlice(r, nx)
	for i := range x {
		x[i] *= 10 // the normalization matters
	}

	// run returns every output of the fused ops, or of their unfused
	// sequences, on d, joined.
	run := func(t *testing.T, d *Device, fused bool) []float32 {
		must := func(err error) {
			t.Helper()
			if err != nil {
				t.Fatal(err)
			}
		}
		yb, bb, dyb := upload(t, d, y0), upload(t, d, b), upload(t, d, dy)
		dxb, dbb := alloc(t, d, bs.Len()), alloc(t, d, bs.C)
		lxb, lwb, lbb, lyb, ldyb := upload(t, d, lx), upload(t, d, lw), upload(t, d, lb), alloc(t, d, ls.N*ls.Out), upload(t, d, ldy)
		ldxb, ldwb, ldbb := alloc(t, d, ls.N*ls.In), alloc(t, d, ls.Out*ls.In), alloc(t, d, ls.Out)
		xb, rb, nyb, ndyb, ndxb := upload(t, d, x), alloc(t, d, nx), alloc(t, d, nx), upload(t, d, ndy), alloc(t, d, nx)
		if fused {
			must(d.BiasReLU(yb, bb, bs))
			must(d.ReLUBiasBackward(dxb, dbb, dyb, yb, bs))
			must(d.LinearReLU(lyb, lxb, lwb, lbb, ls))
			must(d.LinearReLUBackward(ldxb, ldwb, ldbb, ldyb, lxb, lwb, lyb, ls))
			must(d.ReLULRN(nyb, xb, lrn))
			must(d.ReLULRNBackward(ndxb, ndyb, xb, nyb, lrn))
			must(d.ReLU(rb, xb, nx)) // what the unfused run stores
		} else {
			must(d.AddBias(yb, bb, bs))
			must(d.ReLU(yb, yb, bs.Len()))
			must(d.ReLUBackward(dxb, dyb, yb, bs.Len()))
			must(d.BiasBackward(dbb, dxb, bs))
			must(d.Linear(lyb, lxb, lwb, lbb, ls))
			must(d.ReLU(lyb, lyb, ls.N*ls.Out))
			must(d.ReLUBackward(ldyb, ldyb, lyb, ls.N*ls.Out))
			must(d.LinearBackwardWeights(ldwb, ldbb, ldyb, lxb, ls))
			must(d.LinearBackwardData(ldxb, ldyb, lwb, ls))
			must(d.ReLU(rb, xb, nx))
			must(d.LRN(nyb, rb, lrn))
			must(d.LRNBackward(ndxb, ndyb, rb, nyb, lrn))
			must(d.ReLUBackward(ndxb, ndxb, rb, nx))
		}
		var out []float32
		for _, o := range []gpu.Buffer{yb, dxb, dbb, lyb, ldyb, ldxb, ldwb, ldbb, rb, nyb, ndxb} {
			out = append(out, data(o)...)
		}
		return out
	}
	want := map[*blasLib][]float32{} // the first run on each BLAS: their products differ
	for _, d := range testDevices() {
		for _, fused := range []bool{false, true} {
			t.Run(fmt.Sprintf("%s/threads=%d/fused=%v", d.blas.desc[:5], d.threads, fused), func(t *testing.T) {
				got := run(t, d, fused)
				if want[d.blas] == nil {
					want[d.blas] = got
					return
				}
				if i := slices.IndexFunc(got, func(v float32) bool { return math.IsNaN(float64(v)) }); i >= 0 {
					t.Fatalf("value %d is NaN: not written", i)
				}
				for i := range got {
					if w := want[d.blas][i]; math.Float32bits(got[i]) != math.Float32bits(w) {
						t.Fatalf("value %d of %d: %g (%#x), the 1-thread unfused run gives %g (%#x)",
							i, len(got), got[i], math.Float32bits(got[i]), w, math.Float32bits(w))
					}
				}
			})
		}
	}
}

// BenchmarkFused times each fused op against its unfused calls on
// alexnet-small's conv1 output at batch 128, (128, 16, 32, 32) per tower,
// and fc6's, (128, 256), on one thread.
func BenchmarkFused(b *testing.B) {
	d := New(Options{Threads: 1})
	bs := gpu.BiasShape{N: 128, C: 16, Inner: 32 * 32}
	lrn := gpu.LRNShape{N: 128, C: 16, H: 32, W: 32, Size: 5, Alpha: 1e-4, Beta: 0.75, K: 2}
	n := bs.Len()
	r := rand.New(rand.NewPCG(1, 2))
	y, bb, dy, dx, db := upload(b, d, randSlice(r, n)), upload(b, d, randSlice(r, bs.C)), upload(b, d, randSlice(r, n)), alloc(b, d, n), alloc(b, d, bs.C)
	x, t := upload(b, d, randSlice(r, n)), alloc(b, d, n)
	for _, c := range []struct {
		name   string
		passes int // arrays of n values read or written
		run    func() error
	}{
		{"BiasReLU/fused", 2, func() error { return d.BiasReLU(y, bb, bs) }},
		{"BiasReLU/unfused", 4, func() error { return first(d.AddBias(y, bb, bs), d.ReLU(y, y, n)) }},
		{"ReLUBiasBackward/fused", 3, func() error { return d.ReLUBiasBackward(dx, db, dy, y, bs) }},
		{"ReLUBiasBackward/unfused", 4, func() error { return first(d.ReLUBackward(dx, dy, y, n), d.BiasBackward(db, dx, bs)) }},
		{"ReLULRN/fused", 2, func() error { return d.ReLULRN(t, x, lrn) }},
		{"ReLULRN/unfused", 4, func() error { return first(d.ReLU(y, x, n), d.LRN(t, y, lrn)) }},
		{"ReLULRNBackward/fused", 4, func() error { return d.ReLULRNBackward(dx, dy, x, t, lrn) }},
		{"ReLULRNBackward/unfused", 7, func() error {
			return first(d.LRNBackward(dx, dy, y, t, lrn), d.ReLUBackward(dx, dx, y, n))
		}},
	} {
		b.Run(c.name, func(b *testing.B) {
			for b.Loop() {
				if err := c.run(); err != nil {
					b.Fatal(err)
				}
			}
			b.ReportMetric(float64(c.passes)*4*float64(n)*float64(b.N)/b.Elapsed().Seconds()/1e9, "GB/s")
		})
	}
}

func first(errs ...error) error {
	for _, e := range errs {
		if e != nil {
			return e
		}
	}
	return nil
}

// relu is max(v, 0) bit for bit, at the values where a mask could differ.
func TestReLUIsMax(t *testing.T) {
	for _, v := range []float32{0, float32(math.Copysign(0, -1)), 1, -1, float32(math.NaN()), float32(math.Inf(1)), float32(math.Inf(-1)), 1e-45, -1e-45} {
		if got, want := reluMasked(v), max(v, 0); math.Float32bits(got) != math.Float32bits(want) {
			t.Errorf("reluMasked(%g) = %g (%#x), max gives %g (%#x)", v, got, math.Float32bits(got), want, math.Float32bits(want))
		}
	}
}
