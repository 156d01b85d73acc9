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
