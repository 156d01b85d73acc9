package gputest

import (
	"fmt"
	"math"

	"github.com/alexnet-go/trainer/gpu"
	"github.com/alexnet-go/trainer/kernels"
)

// checkReLU covers ReLU and ReLUBackward, out of place and in place.
func checkReLU(c *checker) {
	for _, n := range []int{1, 17, 1000, 70001} {
		c.run(fmt.Sprint(n), func(c *checker) { reluCase(c, n) })
	}
}

func reluCase(c *checker, n int) {
	dev := c.dev
	// |x| ≥ 0.1: away from the kink, for the finite differences.
	x := c.uniform(n, 0.1, 2)
	want := make([]float64, n)
	for i, v := range x {
		want[i] = max(0, float64(v))
	}
	xb, yb := c.in(x), c.out(n)
	c.must(dev.ReLU(yb, xb, n), "ReLU")
	c.close("y", c.get(yb, n), want, 0, 0)
	inPlace := c.in(x)
	c.must(dev.ReLU(inPlace, inPlace, n), "ReLU in place")
	c.close("y in place", c.get(inPlace, n), want, 0, 0)

	dy := c.sym(n, 1)
	wantDx := make([]float64, n)
	for i := range dy {
		if want[i] > 0 {
			wantDx[i] = float64(dy[i])
		}
	}
	dyb, dxb := c.in(dy), c.out(n)
	c.must(dev.ReLUBackward(dxb, dyb, yb, n), "ReLUBackward")
	dx := c.get(dxb, n)
	c.close("dx", dx, wantDx, 0, 0)
	inPlace = c.in(dy)
	c.must(dev.ReLUBackward(inPlace, inPlace, yb, n), "ReLUBackward in place")
	c.close("dx in place", c.get(inPlace, n), wantDx, 0, 0)

	xs, ys := c.out(n), c.out(n)
	c.fd("dx", x, dy, dx, 0.05, fdAtol, fdRtol, func(xp []float32) []float32 {
		c.must(dev.Upload(xs, xp), "Upload")
		c.must(dev.ReLU(ys, xs, n), "ReLU")
		return c.get(ys, n)
	})
}

// lrnCases are the LRN shapes checked, with the scale of their inputs:
// the paper's constants and cuda-convnet2/Caffe's (α/5, k = 1), Size 5
// with fewer and more than 5 channels, and strong normalization, where the
// cross-channel terms of the gradient are large.
var lrnCases = []struct {
	name  string
	s     gpu.LRNShape
	scale float64
}{
	{"paper_C7", gpu.LRNShape{N: 2, C: 7, H: 3, W: 4, Size: 5, Alpha: 1e-4, Beta: 0.75, K: 2}, 10},
	{"caffe_C3", gpu.LRNShape{N: 2, C: 3, H: 3, W: 3, Size: 5, Alpha: 1e-4 / 5, Beta: 0.75, K: 1}, 30},
	{"strong_C12", gpu.LRNShape{N: 1, C: 12, H: 2, W: 3, Size: 5, Alpha: 1.0 / 5, Beta: 0.75, K: 1}, 1},
	{"size3_C4", gpu.LRNShape{N: 3, C: 4, H: 1, W: 5, Size: 3, Alpha: 0.5, Beta: 0.5, K: 1.5}, 1},
	{"C1", gpu.LRNShape{N: 2, C: 1, H: 5, W: 5, Size: 5, Alpha: 1e-2, Beta: 0.75, K: 2}, 3},
	{"mid_C32", gpu.LRNShape{N: 3, C: 32, H: 27, W: 27, Size: 5, Alpha: 1e-4, Beta: 0.75, K: 2}, 10},
}

// checkLRN covers LRN and LRNBackward against kernels.LRN and
// kernels.LRNBackward.
func checkLRN(c *checker) {
	for _, tc := range lrnCases {
		c.run(tc.name, func(c *checker) { lrnCase(c, tc.s, tc.scale) })
	}
}

func lrnCase(c *checker, s gpu.LRNShape, scale float64) {
	if err := s.Validate(); err != nil {
		panic(err)
	}
	dev, n := c.dev, s.Len()
	x := c.sym(n, scale) // (N,C,H,W)
	xb, yb := c.in(x), c.out(n)
	c.must(dev.LRN(yb, xb, s), "LRN")
	c.closeScaled("y", c.get(yb, n), kernels.LRN(f64(x), s), 1e-5, 1e-4)

	dy := c.sym(n, 1)
	dyb, dxb := c.in(dy), c.out(n)
	c.must(dev.LRNBackward(dxb, dyb, xb, yb, s), "LRNBackward")
	dx := c.get(dxb, n)
	c.closeScaled("dx", dx, kernels.LRNBackward(f64(dy), f64(x), s), 1e-4, 1e-4)

	xs, ys := c.out(n), c.out(n)
	c.fd("dx", x, dy, dx, 1e-2*scale, fdAtol, fdRtol, func(xp []float32) []float32 {
		c.must(dev.Upload(xs, xp), "Upload")
		c.must(dev.LRN(ys, xs, s), "LRN")
		return c.get(ys, n)
	})
}

// poolShapes are the poolings checked: the paper's overlapping 3/2 and the
// usual 2/2, on odd and non-square sizes, and 3/1 where a pixel lies in up
// to nine windows.
var poolShapes = []struct {
	name string
	s    gpu.PoolShape
}{
	{"3s2_13x13", gpu.PoolShape{N: 2, C: 3, H: 13, W: 13, Size: 3, Stride: 2}},
	{"3s2_7x9", gpu.PoolShape{N: 1, C: 2, H: 7, W: 9, Size: 3, Stride: 2}},
	{"2s2_8x8", gpu.PoolShape{N: 2, C: 2, H: 8, W: 8, Size: 2, Stride: 2}},
	{"2s2_5x5", gpu.PoolShape{N: 1, C: 3, H: 5, W: 5, Size: 2, Stride: 2}},
	{"3s1_4x6", gpu.PoolShape{N: 1, C: 2, H: 4, W: 6, Size: 3, Stride: 1}},
	{"mid_3s2_27x27", gpu.PoolShape{N: 3, C: 32, H: 27, W: 27, Size: 3, Stride: 2}},
}

// checkMaxPool covers MaxPool and MaxPoolBackward against kernels.MaxPool
// and kernels.MaxPoolBackward, on distinct values and on values full of
// ties, where the first maximum in row-major order must win.
func checkMaxPool(c *checker) {
	for _, tc := range poolShapes {
		c.run(tc.name, func(c *checker) { poolCase(c, tc.s) })
	}
}

func poolCase(c *checker, s gpu.PoolShape) {
	if err := s.Validate(); err != nil {
		panic(err)
	}
	dev, nx, ny := c.dev, s.XLen(), s.YLen()
	// A permutation of values 1/64 apart: no ties, and a perturbation of
	// 1/256 moves no maximum.
	const step = 1.0 / 64
	x := c.distinct(nx, step) // (N,C,H,W)
	xb, yb := c.in(x), c.out(ny)
	c.must(dev.MaxPool(yb, xb, s), "MaxPool")
	c.close("y", c.get(yb, ny), kernels.MaxPool(f64(x), s), 0, 0)

	dy := c.sym(ny, 1) // (N,C,P,Q)
	dyb, dxb := c.in(dy), c.out(nx)
	c.must(dev.MaxPoolBackward(dxb, dyb, xb, yb, s), "MaxPoolBackward")
	dx := c.get(dxb, nx)
	// At most (Size/Stride rounded up)² gradients meet at a pixel.
	c.closeScaled("dx", dx, kernels.MaxPoolBackward(f64(dy), f64(x), s), 1e-6, 1e-6)

	xs, ys := c.out(nx), c.out(ny)
	c.fd("dx", x, dy, dx, step/4, fdAtol, fdRtol, func(xp []float32) []float32 {
		c.must(dev.Upload(xs, xp), "Upload")
		c.must(dev.MaxPool(ys, xs, s), "MaxPool")
		return c.get(ys, ny)
	})

	// Three levels only: most windows hold several equal maxima.
	tie := make([]float32, nx)
	for i := range tie {
		tie[i] = float32(1 + c.rng.IntN(3))
	}
	tb, tyb, tdxb := c.in(tie), c.out(ny), c.out(nx)
	c.must(dev.MaxPool(tyb, tb, s), "MaxPool")
	c.close("y with ties", c.get(tyb, ny), kernels.MaxPool(f64(tie), s), 0, 0)
	c.must(dev.MaxPoolBackward(tdxb, dyb, tb, tyb, s), "MaxPoolBackward")
	c.closeScaled("dx with ties (first maximum wins)", c.get(tdxb, nx),
		kernels.MaxPoolBackward(f64(dy), f64(tie), s), 1e-6, 1e-6)
}

// finite reports whether every value of v is finite.
func finite(v []float32) bool {
	for _, x := range v {
		if math.IsNaN(float64(x)) || math.IsInf(float64(x), 0) {
			return false
		}
	}
	return true
}
