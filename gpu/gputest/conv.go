package gputest

import (
	"github.com/alexnet-go/trainer/gpu"
)

// Tolerances for values that are long float32 sums (convolutions, matrix
// products, bias gradients), llm.c's: atol relative to the largest |want|,
// and rtol. Sums in any order, or with FMA, stay well inside; TF32 (a
// 10-bit mantissa) does not.
const (
	sumAtol = 1e-4
	sumRtol = 1e-4
)

// convShapes are the convolutions checked: AlexNet's three kinds, small,
// and odd ones.
var convShapes = []struct {
	name string
	s    gpu.ConvShape
}{
	{"11x11_s4_p0", gpu.ConvShape{N: 2, C: 3, H: 23, W: 23, K: 4, R: 11, S: 11, Stride: 4}},
	{"5x5_s1_p2", gpu.ConvShape{N: 2, C: 3, H: 9, W: 9, K: 5, R: 5, S: 5, Stride: 1, Pad: 2}},
	{"3x3_s1_p1", gpu.ConvShape{N: 1, C: 4, H: 7, W: 6, K: 3, R: 3, S: 3, Stride: 1, Pad: 1}},
	// Non-square filter, and (8+2−3)/2 rounds down: the last row is unused.
	{"3x2_s2_p1", gpu.ConvShape{N: 3, C: 2, H: 8, W: 7, K: 2, R: 3, S: 2, Stride: 2, Pad: 1}},
	{"1x1", gpu.ConvShape{N: 2, C: 5, H: 3, W: 3, K: 3, R: 1, S: 1, Stride: 1}},
	// Big enough (2.3 MFLOP) for a backend to split the work.
	{"mid_3x3_s1_p1", gpu.ConvShape{N: 2, C: 16, H: 13, W: 13, K: 24, R: 3, S: 3, Stride: 1, Pad: 1}},
}

// checkConv covers Conv, ConvBackwardData and ConvBackwardFilter.
func checkConv(c *checker) {
	for _, tc := range convShapes {
		c.run(tc.name, func(c *checker) { convCase(c, tc.s) })
	}
}

func convCase(c *checker, s gpu.ConvShape) {
	if err := s.Validate(); err != nil {
		panic(err)
	}
	dev := c.dev
	x := c.sym(s.XLen(), 1) // (N,C,H,W)
	w := c.sym(s.WLen(), 1) // (K,C,R,S)
	xb, wb := c.in(x), c.in(w)
	yb := c.out(s.YLen()) // (N,K,P,Q)
	c.must(dev.Conv(yb, xb, wb, s), "Conv")
	c.closeScaled("y", c.get(yb, s.YLen()), convRef(f64(x), f64(w), s), sumAtol, sumRtol)

	dy := c.sym(s.YLen(), 1)
	dyb := c.in(dy)
	dxb, dwb := c.out(s.XLen()), c.out(s.WLen())
	c.must(dev.ConvBackwardData(dxb, dyb, wb, s), "ConvBackwardData")
	c.must(dev.ConvBackwardFilter(dwb, dyb, xb, s), "ConvBackwardFilter")
	dx, dw := c.get(dxb, s.XLen()), c.get(dwb, s.WLen())
	wantDx, wantDw := convBackwardRef(f64(dy), f64(x), f64(w), s)
	c.closeScaled("dx", dx, wantDx, sumAtol, sumRtol)
	c.closeScaled("dw", dw, wantDw, sumAtol, sumRtol)

	// L = Σ dy·Conv(x, w) is linear in each input: any h is exact but for
	// rounding.
	xs, ws, ys := c.out(s.XLen()), c.out(s.WLen()), c.out(s.YLen())
	c.fd("dx", x, dy, dx, 0.25, fdAtol, fdRtol, func(xp []float32) []float32 {
		c.must(dev.Upload(xs, xp), "Upload")
		c.must(dev.Conv(ys, xs, wb, s), "Conv")
		return c.get(ys, s.YLen())
	})
	c.fd("dw", w, dy, dw, 0.25, fdAtol, fdRtol, func(wp []float32) []float32 {
		c.must(dev.Upload(ws, wp), "Upload")
		c.must(dev.Conv(ys, xb, ws, s), "Conv")
		return c.get(ys, s.YLen())
	})
}

// checkAddBias covers AddBias and BiasBackward.
func checkAddBias(c *checker) {
	for _, tc := range []struct {
		name string
		s    gpu.BiasShape
	}{
		{"conv", gpu.BiasShape{N: 2, C: 5, Inner: 7}},
		{"fc", gpu.BiasShape{N: 3, C: 4, Inner: 1}},
		{"13x13", gpu.BiasShape{N: 1, C: 3, Inner: 169}},
		{"mid_27x27", gpu.BiasShape{N: 4, C: 48, Inner: 27 * 27}},
	} {
		c.run(tc.name, func(c *checker) { biasCase(c, tc.s) })
	}
}

func biasCase(c *checker, s gpu.BiasShape) {
	dev := c.dev
	y0 := c.sym(s.Len(), 1) // (N,C,Inner)
	b := c.sym(s.C, 1)      // (C)
	yb, bb := c.in(y0), c.in(b)
	c.must(dev.AddBias(yb, bb, s), "AddBias")
	// One float32 addition: correctly rounded.
	c.close("y", c.get(yb, s.Len()), addBiasRef(f64(y0), f64(b), s), 0, 1e-7)

	dy := c.sym(s.Len(), 1)
	dyb, dbb := c.in(dy), c.out(s.C)
	c.must(dev.BiasBackward(dbb, dyb, s), "BiasBackward")
	db := c.get(dbb, s.C)
	c.closeScaled("db", db, biasBackwardRef(f64(dy), s), sumAtol, sumRtol)

	ys, bs := c.out(s.Len()), c.out(s.C)
	c.fd("db", b, dy, db, 0.25, fdAtol, fdRtol, func(bp []float32) []float32 {
		c.must(dev.Upload(ys, y0), "Upload")
		c.must(dev.Upload(bs, bp), "Upload")
		c.must(dev.AddBias(ys, bs, s), "AddBias")
		return c.get(ys, s.Len())
	})
}
