package cpu

import (
	"fmt"
	"math"
	"math/rand/v2"
	"testing"

	"github.com/alexnet-go/trainer/gpu"
	"github.com/alexnet-go/trainer/kernels"
)

// TestLRNKernels requires lrnForward and lrnBackward (the AVX assembly on
// a block's whole vectors of 8 pixels, Go on the rest) to give the bits
// of lrnForwardGo and lrnBackwardGo alone, with and without the fused
// ReLU, on blocks of every pixel count from 1 to 41 (no vector, one,
// several, and every tail), rows that start unaligned, windows of 1, 3, 5
// and 7 channels on 1 to 9 channels, and values that include the edges:
// zeros of both signs, subnormals, squares that overflow, infinities and
// NaNs of both signs. Only where dx is a NaN may its sign differ: an
// operation on two NaNs returns its first operand's, and which operand of
// a product or sum comes first in the Go reference is the compiler's
// choice.
func TestLRNKernels(t *testing.T) {
	needAVX(t)
	r := rand.New(rand.NewPCG(21, 22))
	edge := []float32{0, float32(math.Copysign(0, -1)), math.SmallestNonzeroFloat32, 1e-30, 3e19, -2e20, 3e38,
		float32(math.Inf(1)), float32(math.Inf(-1)), float32(math.NaN()), -float32(math.NaN())}
	for _, edges := range []bool{false, true} {
		for _, c := range []int{1, 2, 3, 5, 7, 9} {
			for _, size := range []int{1, 3, 5, 7} {
				for m := 1; m <= 41; m += 1 + m/8 {
					hw := m + r.IntN(3) // rows longer than the block, so unaligned
					n := (c-1)*hw + m
					v := func() []float32 {
						s := kernelValues(r, n, false)
						if edges {
							for i := range s {
								if r.IntN(4) == 0 {
									s[i] = edge[r.IntN(len(edge))]
								}
							}
						}
						return s
					}
					x, dy, y := v(), v(), v()
					for _, relu := range []bool{false, true} {
						p := lrnParams{hw: hw, c: c, half: size / 2, k: 2, alpha: 1e-4, beta: 0.75, relu: relu}
						if size == 3 { // strong normalization: the ratios count
							p.k, p.alpha = 1, 0.2
						}
						name := fmt.Sprintf("edges=%v C=%d size=%d m=%d hw=%d relu=%v", edges, c, size, m, hw, relu)
						got, want := make([]float32, n), make([]float32, n)
						lrnForward(got, x, p, m)
						lrnForwardGo(want, x, p, 0, m)
						sameBits32(t, name+" y", got, want)

						gs, ws := make([]float32, 2*c*lrnBlock), make([]float32, 2*c*lrnBlock)
						lrnBackward(got, dy, x, y, gs, p, m)
						lrnBackwardGo(want, dy, x, y, ws, p, 0, m)
						sameBitsOrNaN(t, name+" dx", got, want)
					}
				}
			}
		}
	}
}

// lrnError returns the largest relative error of LRN (y) and LRNBackward
// (dx) on d against the float64 references of package kernels, on x of
// the scale of AlexNet's conv1 activations. dx's error is relative to
// |dy·p| + |2αβ·x·Σ ratio|, the size of the terms it is the difference
// of (the relative error of a value near 0 that cancels means nothing).
func lrnError(t *testing.T, d *Device, s gpu.LRNShape) (ey, edx float64) {
	r := rand.New(rand.NewPCG(7, 7))
	x, dy := randSlice(r, s.Len()), randSlice(r, s.Len())
	for i := range x {
		x[i] *= 30
	}
	xb, dyb := upload(t, d, x), upload(t, d, dy)
	yb, dxb := alloc(t, d, s.Len()), alloc(t, d, s.Len())
	must(t, d.LRN(yb, xb, s))
	must(t, d.LRNBackward(dxb, dyb, xb, yb, s))
	x64, dy64 := f64(x), f64(dy)
	y, dx := kernels.LRN(x64, s), kernels.LRNBackward(dy64, x64, s)
	hw, beta, coef := s.H*s.W, float64(s.Beta), 2*float64(s.Alpha)*float64(s.Beta)
	scale := make([]float64, len(x))
	for i := range x {
		c := i / hw % s.C
		scale[i] = float64(s.K)
		for j := max(c-s.Size/2, 0); j <= min(c+s.Size/2, s.C-1); j++ {
			v := x64[i+(j-c)*hw]
			scale[i] += float64(s.Alpha) * v * v
		}
	}
	for i, got := range data(yb) {
		ey = max(ey, math.Abs(float64(got)-y[i])/math.Abs(y[i]))
		c := i / hw % s.C
		var ratios float64
		for j := max(c-s.Size/2, 0); j <= min(c+s.Size/2, s.C-1); j++ {
			k := i + (j-c)*hw
			ratios += math.Abs(dy64[k] * y[k] / scale[k])
		}
		size := math.Abs(dy64[i]*math.Pow(scale[i], -beta)) + coef*math.Abs(x64[i])*ratios
		edx = max(edx, math.Abs(float64(data(dxb)[i])-dx[i])/size)
	}
	return ey, edx
}

// TestLRNAccuracy requires LRN and LRNBackward to be within a few float32
// roundings of the float64 references on the shapes of BenchmarkLRN
// (fewer images) and under strong normalization: y to 1e-6 relative, dx to 1e-6 of its terms' size.
func TestLRNAccuracy(t *testing.T) {
	for _, s := range []gpu.LRNShape{
		{N: 1, C: 48, H: 55, W: 55, Size: 5, Alpha: 1e-4, Beta: 0.75, K: 2},
		{N: 4, C: 16, H: 32, W: 32, Size: 5, Alpha: 1e-4, Beta: 0.75, K: 2},
		{N: 2, C: 12, H: 9, W: 9, Size: 5, Alpha: 0.2, Beta: 0.75, K: 1}, // strong: the sums dominate
	} {
		ey, edx := lrnError(t, New(Options{Threads: 2}), s)
		t.Logf("%+v: max relative error y %.3g, dx %.3g", s, ey, edx)
		if ey > 1e-6 || edx > 1e-6 {
			t.Errorf("%+v: max relative error y %.3g, dx %.3g; want ≤ 1e-6", s, ey, edx)
		}
	}
}

// sameBitsOrNaN is sameBits32 that takes any NaN for any other.
func sameBitsOrNaN(t *testing.T, what string, got, want []float32) {
	t.Helper()
	for i := range want {
		g, w := got[i], want[i]
		if math.Float32bits(g) != math.Float32bits(w) && !(g != g && w != w) {
			t.Errorf("%s[%d] = %g (%#x), the reference gives %g (%#x)", what, i, g, math.Float32bits(g), w, math.Float32bits(w))
			return
		}
	}
}
