package gputest

import (
	"fmt"

	"github.com/alexnet-go/trainer/gpu"
	"github.com/alexnet-go/trainer/kernels"
)

// The fused operations are checked twice: against float64 references from
// the formulas in their doc comments, like every operation, and against
// their unfused sequences run on the same device (AddBias then ReLU, …),
// whose bits they promise to give exactly.

// checkBiasReLU covers BiasReLU and ReLUBiasBackward.
func checkBiasReLU(c *checker) {
	for _, tc := range []struct {
		name string
		s    gpu.BiasShape
	}{
		{"conv", gpu.BiasShape{N: 2, C: 5, Inner: 7}},
		{"fc", gpu.BiasShape{N: 3, C: 4, Inner: 1}},
		{"mid_27x27", gpu.BiasShape{N: 4, C: 48, Inner: 27 * 27}},
	} {
		c.run(tc.name, func(c *checker) { biasReLUCase(c, tc.s) })
	}
}

func biasReLUCase(c *checker, s gpu.BiasShape) {
	dev, n := c.dev, s.Len()
	// |y + b| ≥ 0.1: y ±[0.1, 2) plus b ±[0, 0.05), away from the kink.
	y0 := c.uniform(n, 0.15, 2) // (N,C,Inner)
	b := c.sym(s.C, 0.05)       // (C)
	yb, bb := c.in(y0), c.in(b)
	c.must(dev.BiasReLU(yb, bb, s), "BiasReLU")
	y := c.get(yb, n)
	want := addBiasRef(f64(y0), f64(b), s)
	for i, v := range want {
		want[i] = max(0, v)
	}
	c.close("y", y, want, 0, 1e-7)
	ub := c.in(y0)
	c.must(dev.AddBias(ub, bb, s), "AddBias")
	c.must(dev.ReLU(ub, ub, n), "ReLU")
	c.close("y = AddBias, ReLU", y, f64(c.get(ub, n)), 0, 0)

	dy := c.sym(n, 1)
	dyb, dxb, dbb := c.in(dy), c.out(n), c.out(s.C)
	c.must(dev.ReLUBiasBackward(dxb, dbb, dyb, yb, s), "ReLUBiasBackward")
	dx, db := c.get(dxb, n), c.get(dbb, s.C)
	wantDx := make([]float64, n)
	for i := range wantDx {
		if want[i] > 0 {
			wantDx[i] = float64(dy[i])
		}
	}
	c.close("dx", dx, wantDx, 0, 0)
	c.closeScaled("db", db, biasBackwardRef(wantDx, s), sumAtol, sumRtol)
	udx, udb := c.out(n), c.out(s.C)
	c.must(dev.ReLUBackward(udx, dyb, yb, n), "ReLUBackward")
	c.must(dev.BiasBackward(udb, udx, s), "BiasBackward")
	c.close("dx = ReLUBackward", dx, f64(c.get(udx, n)), 0, 0)
	c.close("db = ReLUBackward, BiasBackward", db, f64(c.get(udb, s.C)), 0, 0)
	inPlace, ipdb := c.in(dy), c.out(s.C)
	c.must(dev.ReLUBiasBackward(inPlace, ipdb, inPlace, yb, s), "ReLUBiasBackward in place")
	c.close("dx in place", c.get(inPlace, n), f64(dx), 0, 0)
	c.close("db in place", c.get(ipdb, s.C), f64(db), 0, 0)

	ys, bs := c.out(n), c.out(s.C)
	forward := func(yv, bv []float32) []float32 {
		c.must(dev.Upload(ys, yv), "Upload")
		c.must(dev.Upload(bs, bv), "Upload")
		c.must(dev.BiasReLU(ys, bs, s), "BiasReLU")
		return c.get(ys, n)
	}
	c.fd("dx", y0, dy, dx, 0.05, fdAtol, fdRtol, func(yv []float32) []float32 { return forward(yv, b) })
	c.fd("db", b, dy, db, 0.05, fdAtol, fdRtol, func(bv []float32) []float32 { return forward(y0, bv) })
}

// checkLinearReLU covers LinearReLU and LinearReLUBackward, with and
// without the input gradient. No finite differences: a product's output
// near 0 would straddle the ReLU's kink for any useful step; the results
// equal the unfused calls', which the suite checks against them.
func checkLinearReLU(c *checker) {
	for _, s := range []gpu.LinearShape{
		{N: 3, In: 17, Out: 5},
		{N: 5, In: 1, Out: 3},
		{N: 16, In: 512, Out: 160},
	} {
		c.run(fmt.Sprintf("N%d_%dx%d", s.N, s.In, s.Out), func(c *checker) { linearReLUCase(c, s) })
	}
}

func linearReLUCase(c *checker, s gpu.LinearShape) {
	dev := c.dev
	nx, nw, ny := s.N*s.In, s.Out*s.In, s.N*s.Out
	x := c.sym(nx, 1)    // (N,In)
	w := c.sym(nw, 1)    // (Out,In)
	b := c.sym(s.Out, 1) // (Out)
	xb, wb, bb, yb := c.in(x), c.in(w), c.in(b), c.out(ny)
	c.must(dev.LinearReLU(yb, xb, wb, bb, s), "LinearReLU")
	y := c.get(yb, ny)
	z := linearRef(f64(x), f64(w), f64(b), s)
	want := make([]float64, ny)
	for i, v := range z {
		want[i] = max(0, v)
	}
	c.closeScaled("y", y, want, sumAtol, sumRtol)
	ub := c.out(ny)
	c.must(dev.Linear(ub, xb, wb, bb, s), "Linear")
	c.must(dev.ReLU(ub, ub, ny), "ReLU")
	c.close("y = Linear, ReLU", y, f64(c.get(ub, ny)), 0, 0)

	dy := c.sym(ny, 1) // (N,Out)
	// The masked gradient, from the device's y: where z is within
	// rounding of 0, the reference's sign of z may differ from y's.
	g := make([]float64, ny)
	for i := range g {
		if y[i] > 0 {
			g[i] = float64(dy[i])
		}
	}
	wantDx, wantDw, wantDb := linearBackwardRef(g, f64(x), f64(w), s)
	for _, withDx := range []bool{true, false} {
		dyb, dwb, dbb := c.in(dy), c.out(nw), c.out(s.Out)
		var dxb gpu.Buffer
		if withDx {
			dxb = c.out(nx)
		}
		c.must(dev.LinearReLUBackward(dxb, dwb, dbb, dyb, xb, wb, yb, s), "LinearReLUBackward")
		tag := fmt.Sprintf(" (dx %v)", withDx)
		dw, db := c.get(dwb, nw), c.get(dbb, s.Out)
		c.close("dy masked"+tag, c.get(dyb, ny), g, 0, 0)
		c.closeScaled("dw"+tag, dw, wantDw, sumAtol, sumRtol)
		c.closeScaled("db"+tag, db, wantDb, sumAtol, sumRtol)

		udy, udx, udw, udb := c.in(dy), c.out(nx), c.out(nw), c.out(s.Out)
		c.must(dev.ReLUBackward(udy, udy, ub, ny), "ReLUBackward")
		c.must(dev.LinearBackwardWeights(udw, udb, udy, xb, s), "LinearBackwardWeights")
		c.must(dev.LinearBackwardData(udx, udy, wb, s), "LinearBackwardData")
		c.close("dw = ReLUBackward, LinearBackwardWeights"+tag, dw, f64(c.get(udw, nw)), 0, 0)
		c.close("db = ReLUBackward, LinearBackwardWeights"+tag, db, f64(c.get(udb, s.Out)), 0, 0)
		if !withDx {
			continue
		}
		dx := c.get(dxb, nx)
		c.closeScaled("dx", dx, wantDx, sumAtol, sumRtol)
		c.close("dx = LinearBackwardData", dx, f64(c.get(udx, nx)), 0, 0)

	}
}

// checkReLULRN covers ReLULRN and ReLULRNBackward against kernels.LRN and
// kernels.LRNBackward on max(0, x).
func checkReLULRN(c *checker) {
	for _, tc := range lrnCases {
		c.run(tc.name, func(c *checker) { reluLRNCase(c, tc.s, tc.scale) })
	}
}

func reluLRNCase(c *checker, s gpu.LRNShape, scale float64) {
	if err := s.Validate(); err != nil {
		panic(err)
	}
	dev, n := c.dev, s.Len()
	// |x| ≥ 0.05·scale, away from the ReLU's kink for the differences.
	x := c.uniform(n, 0.05*scale, scale) // (N,C,H,W)
	r := make([]float64, n)
	for i, v := range x {
		r[i] = max(0, float64(v))
	}
	xb, yb := c.in(x), c.out(n)
	c.must(dev.ReLULRN(yb, xb, s), "ReLULRN")
	y := c.get(yb, n)
	c.closeScaled("y", y, kernels.LRN(r, s), 1e-5, 1e-4)
	rb, ub := c.out(n), c.out(n)
	c.must(dev.ReLU(rb, xb, n), "ReLU")
	c.must(dev.LRN(ub, rb, s), "LRN")
	c.close("y = ReLU, LRN", y, f64(c.get(ub, n)), 0, 0)

	dy := c.sym(n, 1)
	dyb, dxb := c.in(dy), c.out(n)
	c.must(dev.ReLULRNBackward(dxb, dyb, xb, yb, s), "ReLULRNBackward")
	dx := c.get(dxb, n)
	want := kernels.LRNBackward(f64(dy), r, s)
	for i, v := range r {
		if v <= 0 {
			want[i] = 0
		}
	}
	c.closeScaled("dx", dx, want, 1e-4, 1e-4)
	udx := c.out(n)
	c.must(dev.LRNBackward(udx, dyb, rb, ub, s), "LRNBackward")
	c.must(dev.ReLUBackward(udx, udx, rb, n), "ReLUBackward")
	c.close("dx = LRNBackward, ReLUBackward", dx, f64(c.get(udx, n)), 0, 0)

	xs, ys := c.out(n), c.out(n)
	c.fd("dx", x, dy, dx, 1e-2*scale, fdAtol, fdRtol, func(xp []float32) []float32 {
		c.must(dev.Upload(xs, xp), "Upload")
		c.must(dev.ReLULRN(ys, xs, s), "ReLULRN")
		return c.get(ys, n)
	})
}
