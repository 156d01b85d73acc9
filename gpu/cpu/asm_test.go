package cpu

import (
	"fmt"
	"math"
	"math/rand/v2"
	"testing"

	"github.com/alexnet-go/trainer/gpu"
	"github.com/alexnet-go/trainer/gpu/gputest"
)

// The dispatchers of the assembly loops (the AVX of lrn_amd64.s,
// conv_amd64.s and elementwise_amd64.s on the whole vectors, then Go on
// the tail) must give the bits of their Go references on every length from 0 to 19 (no vector, one, several, and
// every tail), at offsets that leave the slices unaligned, on random
// values and on the edges: zeros of both signs, subnormals, huge values,
// infinities and a NaN.

// needAVX skips a test that compares the assembly with its reference on a
// machine without AVX, where both would be the reference.
func needAVX(t *testing.T) {
	t.Helper()
	if !useAVX {
		t.Skip("no AVX on this processor (or not amd64): the LRN loops run their Go references only")
	}
}

// kernelValues returns n float32 values: random ones of the scale of
// AlexNet's activations, and, when edges is set, the edge values spread
// among them.
func kernelValues(r *rand.Rand, n int, edges bool) []float32 {
	v := make([]float32, n)
	for i := range v {
		v[i] = float32(math.Exp(6*(2*r.Float64()-1))) * float32(1-2*r.IntN(2))
	}
	if edges {
		edge := []float32{0, float32(math.Copysign(0, -1)), math.SmallestNonzeroFloat32, 1e-30, 3e38,
			float32(math.Inf(1)), float32(math.Inf(-1)), float32(math.NaN())}
		for i := range v {
			if r.IntN(3) == 0 {
				v[i] = edge[r.IntN(len(edge))]
			}
		}
	}
	return v
}

// sameBits32 and sameBits64 report the first index where got and want
// differ in their bits.
func sameBits32(t *testing.T, what string, got, want []float32) {
	t.Helper()
	for i := range want {
		if math.Float32bits(got[i]) != math.Float32bits(want[i]) {
			t.Errorf("%s[%d] = %g (%#x), the reference gives %g (%#x)", what, i, got[i], math.Float32bits(got[i]), want[i], math.Float32bits(want[i]))
			return
		}
	}
}

func sameBits64(t *testing.T, what string, got, want []float64) {
	t.Helper()
	for i := range want {
		if math.Float64bits(got[i]) != math.Float64bits(want[i]) {
			t.Errorf("%s[%d] = %g (%#x), the reference gives %g (%#x)", what, i, got[i], math.Float64bits(got[i]), want[i], math.Float64bits(want[i]))
			return
		}
	}
}

// TestLRNAssembly requires LRN and LRNBackward to give the same bits with
// the assembly as with the Go references alone, on shapes whose blocks of
// pixels end in every tail length, with one and two threads.
func TestLRNAssembly(t *testing.T) {
	needAVX(t)
	defer func(v bool) { useAVX = v }(useAVX)
	r := rand.New(rand.NewPCG(3, 4))
	for _, s := range []gpu.LRNShape{
		{N: 2, C: 7, H: 5, W: 7, Size: 5, Alpha: 1e-4, Beta: 0.75, K: 2},
		{N: 1, C: 16, H: 13, W: 11, Size: 5, Alpha: 1e-2, Beta: 0.75, K: 1},
		{N: 3, C: 4, H: 1, W: 3, Size: 3, Alpha: 0.1, Beta: 0.5, K: 2},
		{N: 1, C: 9, H: 17, W: 9, Size: 5, Alpha: 1e-3, Beta: 0.6, K: 2},
	} {
		x, dy := randSlice(r, s.Len()), randSlice(r, s.Len())
		for i := range x {
			x[i] *= 20
		}
		for _, threads := range []int{1, 2} {
			var ys, dxs [2][]float32
			for i, avx := range []bool{false, true} {
				useAVX = avx
				d := testDevice(threads, loadedBLAS())
				xb, dyb := upload(t, d, x), upload(t, d, dy)
				y, dx := alloc(t, d, s.Len()), alloc(t, d, s.Len())
				must(t, d.LRN(y, xb, s))
				must(t, d.LRNBackward(dx, dyb, xb, y, s))
				ys[i], dxs[i] = data(y), data(dx)
			}
			sameBits32(t, fmt.Sprintf("%+v threads=%d y", s, threads), ys[1], ys[0])
			sameBits32(t, fmt.Sprintf("%+v threads=%d dx", s, threads), dxs[1], dxs[0])
		}
	}
}

// TestAddTo requires addTo (AVX on the whole vectors) to give addToGo's
// bits on every length up to 35 and unaligned offsets.
func TestAddTo(t *testing.T) {
	needAVX(t)
	r := rand.New(rand.NewPCG(5, 6))
	for _, edges := range []bool{false, true} {
		for n := range 36 {
			for _, off := range []int{0, 1, 5} {
				src := kernelValues(r, n+off, edges)[off:]
				dst := kernelValues(r, n+off, edges)[off:]
				got, want := append([]float32(nil), dst...), append([]float32(nil), dst...)
				addTo(got, src)
				addToGo(want, src)
				sameBits32(t, fmt.Sprintf("n=%d off=%d edges=%v addTo", n, off, edges), got, want)
			}
		}
	}
}

// TestElementwiseKernels requires addConst and sum64 to give the bits of
// addConstGo and sum64Go on every length up to 35, unaligned.
func TestElementwiseKernels(t *testing.T) {
	needAVX(t)
	r := rand.New(rand.NewPCG(7, 8))
	for _, edges := range []bool{false, true} {
		for n := range 36 {
			for _, off := range []int{0, 1, 5} {
				name := fmt.Sprintf("n=%d off=%d edges=%v", n, off, edges)
				v := kernelValues(r, n+off, edges)[off:]
				c := kernelValues(r, 1, edges)[0]
				got, want := append([]float32(nil), v...), append([]float32(nil), v...)
				addConst(got, c)
				addConstGo(want, c)
				sameBits32(t, name+" addConst", got, want)
				sameBits64(t, name+" sum64", []float64{sum64(v)}, []float64{sum64Go(v)})
			}
		}
	}
}

// TestElementwiseKernels2 requires relu, reluBackward and sgd to give the
// bits of their Go references (relu: of Go's builtin max, signed zeros and
// NaNs included) on every length up to 35, unaligned.
func TestElementwiseKernels2(t *testing.T) {
	needAVX(t)
	r := rand.New(rand.NewPCG(9, 10))
	for _, edges := range []bool{false, true} {
		for n := range 36 {
			for _, off := range []int{0, 1, 5} {
				name := fmt.Sprintf("n=%d off=%d edges=%v", n, off, edges)
				x, y := kernelValues(r, n+off, edges)[off:], kernelValues(r, n+off, edges)[off:]
				if edges {
					// Negative NaNs and both zeros, which max treats apart.
					for i := range x {
						switch r.IntN(6) {
						case 0:
							x[i] = float32(math.Copysign(0, -1))
						case 1:
							x[i] = -float32(math.NaN())
						}
					}
				}
				got, want := make([]float32, n), make([]float32, n)
				relu(got, x)
				reluGo(want, x)
				sameBits32(t, name+" relu", got, want)

				reluBackward(got, x, y)
				reluBackwardGo(want, x, y)
				sameBits32(t, name+" reluBackward", got, want)

				g := kernelValues(r, n+off, edges)[off:]
				gw, ww := append([]float32(nil), x...), append([]float32(nil), x...)
				gv, wv := append([]float32(nil), y...), append([]float32(nil), y...)
				sgd(gw, gv, g, 0.9, 5e-6, 0.01)
				sgdGo(ww, wv, g, 0.9, 5e-6, 0.01)
				sameBits32(t, name+" sgd w", gw, ww)
				sameBits32(t, name+" sgd v", gv, wv)
			}
		}
	}
}

// TestConformanceGo runs the conformance suite with the assembly switched
// off: the Go references alone must pass it too (they are what every
// other architecture runs).
func TestConformanceGo(t *testing.T) {
	needAVX(t)
	defer func(a, a2, m, d, l bool) {
		useAVX, useAVX2, fastMaskRows, fastDirect, fastLane = a, a2, m, d, l
	}(useAVX, useAVX2, fastMaskRows, fastDirect, fastLane)
	useAVX, useAVX2, fastMaskRows, fastDirect, fastLane = false, false, false, false, false
	gputest.Run(t, New(Options{Threads: 2}))
}

// TestConformanceIm2col runs the conformance suite with the lane
// convolution switched off and the rest of the assembly on: what an AVX2
// processor without AVX-512 runs (masked im2col, OpenBLAS).
func TestConformanceIm2col(t *testing.T) {
	needAVX(t)
	defer func(l bool) { fastLane = l }(fastLane)
	fastLane = false
	gputest.Run(t, New(Options{Threads: 2}))
}

// TestMaxInto requires maxInto to give the bits of Go's builtin max
// (maxIntoGo), signed zeros and NaNs included, on every length up to 35.
func TestMaxInto(t *testing.T) {
	needAVX(t)
	r := rand.New(rand.NewPCG(11, 12))
	for _, edges := range []bool{false, true} {
		for n := range 36 {
			for _, off := range []int{0, 1, 5} {
				a, b := kernelValues(r, n+off, edges)[off:], kernelValues(r, n+off, edges)[off:]
				if edges {
					for i := range a {
						switch r.IntN(5) {
						case 0:
							a[i], b[i] = float32(math.Copysign(0, -1)), 0
						case 1:
							a[i], b[i] = 0, float32(math.Copysign(0, -1))
						case 2:
							b[i] = -float32(math.NaN())
						}
					}
				}
				got, want := append([]float32(nil), a...), append([]float32(nil), a...)
				maxInto(got, b)
				maxIntoGo(want, b)
				sameBits32(t, fmt.Sprintf("n=%d off=%d edges=%v maxInto", n, off, edges), got, want)
			}
		}
	}
}

// TestMaxPoolAssembly requires MaxPool and MaxPoolBackward to give the
// same bits with the assembly as without, on windows of 3 (the vector
// paths) and 2, with signed zeros and NaNs among the values, and on values
// full of ties, where the first maximum must win.
func TestMaxPoolAssembly(t *testing.T) {
	needAVX(t)
	defer func(v bool) { useAVX = v }(useAVX)
	r := rand.New(rand.NewPCG(13, 14))
	for _, s := range []gpu.PoolShape{
		{N: 2, C: 3, H: 27, W: 27, Size: 3, Stride: 2},
		{N: 1, C: 2, H: 13, W: 21, Size: 3, Stride: 2},
		{N: 1, C: 2, H: 9, W: 11, Size: 3, Stride: 3},
		{N: 2, C: 1, H: 8, W: 10, Size: 2, Stride: 2},
	} {
		for _, ties := range []bool{false, true} {
			x, dy := randSlice(r, s.XLen()), randSlice(r, s.YLen())
			for i := range x {
				switch {
				case ties:
					x[i] = float32(r.IntN(3))
				case r.IntN(10) == 0:
					x[i] = float32(math.Copysign(0, -1))
				case r.IntN(10) == 0:
					x[i] = 0
				}
			}
			x[r.IntN(len(x))] = float32(math.NaN())
			var ys, dxs [2][]float32
			for i, avx := range []bool{false, true} {
				useAVX = avx
				d := testDevice(2, loadedBLAS())
				xb, y, dx := upload(t, d, x), alloc(t, d, s.YLen()), alloc(t, d, s.XLen())
				must(t, d.MaxPool(y, xb, s))
				must(t, d.MaxPoolBackward(dx, upload(t, d, dy), xb, y, s))
				ys[i], dxs[i] = data(y), data(dx)
			}
			sameBits32(t, fmt.Sprintf("%+v ties=%v y", s, ties), ys[1], ys[0])
			sameBits32(t, fmt.Sprintf("%+v ties=%v dx", s, ties), dxs[1], dxs[0])
		}
	}
}
