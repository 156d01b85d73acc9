package gputest

import (
	"fmt"
	"math"
)

// checkTanh covers Tanh and TanhBackward, out of place and in place, on
// sizes that do and do not split evenly, and on inputs far into the
// saturated tails, where a tanh written as (e^2x − 1)/(e^2x + 1)
// overflows to NaN.
func checkTanh(c *checker) {
	for _, n := range []int{1, 17, 1000, 70001} {
		c.run(fmt.Sprint(n), func(c *checker) { tanhCase(c, n) })
	}
	c.run("saturated", tanhSaturated)
}

// Tanh tolerances: a few float32 ulps, as CUDA's tanhf and a float32
// 1 − y² give; TanhBackward's atol is relative to max|dx|, for the
// cancellation in 1 − y² where y is near ±1.
const (
	tanhAtol            = 1e-7
	tanhRtol            = 1e-6
	tanhBackwardAtolRel = 1e-6
)

func tanhCase(c *checker, n int) {
	dev := c.dev
	x := c.sym(n, 3) // mostly the curved part, some of the tails
	want := make([]float64, n)
	for i, v := range x {
		want[i] = math.Tanh(float64(v))
	}
	xb, yb := c.in(x), c.out(n)
	c.must(dev.Tanh(yb, xb, n), "Tanh")
	y := c.get(yb, n)
	c.close("y", y, want, tanhAtol, tanhRtol)
	inPlace := c.in(x)
	c.must(dev.Tanh(inPlace, inPlace, n), "Tanh in place")
	c.close("y in place", c.get(inPlace, n), want, tanhAtol, tanhRtol)

	// dx = dy·(1 − y²) from the device's own y, as the backward pass
	// sees it.
	dy := c.sym(n, 1)
	wantDx := make([]float64, n)
	for i := range dy {
		v := float64(y[i])
		wantDx[i] = float64(dy[i]) * (1 - v*v)
	}
	dyb, dxb := c.in(dy), c.out(n)
	c.must(dev.TanhBackward(dxb, dyb, yb, n), "TanhBackward")
	dx := c.get(dxb, n)
	c.closeScaled("dx", dx, wantDx, tanhBackwardAtolRel, tanhRtol)
	inPlace = c.in(dy)
	c.must(dev.TanhBackward(inPlace, inPlace, yb, n), "TanhBackward in place")
	c.closeScaled("dx in place", c.get(inPlace, n), wantDx, tanhBackwardAtolRel, tanhRtol)

	xs, ys := c.out(n), c.out(n)
	c.fd("dx", x, dy, dx, 1e-2, fdAtol, fdRtol, func(xp []float32) []float32 {
		c.must(dev.Upload(xs, xp), "Upload")
		c.must(dev.Tanh(ys, xs, n), "Tanh")
		return c.get(ys, n)
	})
}

// tanhSaturated checks that large |x| give exactly ±1 and a zero
// gradient, with no NaN.
func tanhSaturated(c *checker) {
	dev := c.dev
	x := []float32{10, -10, 20, -20, 44.5, -44.5, 89, -89, 1e4, -1e4, 3e38, -3e38}
	n := len(x)
	want := make([]float64, n)
	for i, v := range x {
		want[i] = math.Copysign(1, float64(v))
	}
	xb, yb := c.in(x), c.out(n)
	c.must(dev.Tanh(yb, xb, n), "Tanh")
	y := c.get(yb, n)
	if !finite(y) {
		c.errorf("tanh of %v gave %v: not finite", x, y)
	}
	c.close("y", y, want, 0, 0)

	dy := c.sym(n, 1)
	dyb, dxb := c.in(dy), c.out(n)
	c.must(dev.TanhBackward(dxb, dyb, yb, n), "TanhBackward")
	c.close("dx", c.get(dxb, n), make([]float64, n), 0, 0)
}
