package gputest

import (
	"fmt"
	"math"

	"github.com/alexnet-go/trainer/gpu"
)

// checkLinear covers Linear, LinearBackwardData and LinearBackwardWeights.
func checkLinear(c *checker) {
	for _, s := range []gpu.LinearShape{
		{N: 3, In: 17, Out: 5},
		{N: 1, In: 64, Out: 10},
		{N: 4, In: 9, Out: 1},
		{N: 5, In: 1, Out: 3},
		{N: 2, In: 300, Out: 7},
		{N: 16, In: 512, Out: 160},
	} {
		c.run(fmt.Sprintf("N%d_%dx%d", s.N, s.In, s.Out), func(c *checker) { linearCase(c, s) })
	}
}

func linearCase(c *checker, s gpu.LinearShape) {
	dev := c.dev
	nx, nw, ny := s.N*s.In, s.Out*s.In, s.N*s.Out
	x := c.sym(nx, 1)    // (N,In)
	w := c.sym(nw, 1)    // (Out,In)
	b := c.sym(s.Out, 1) // (Out)
	xb, wb, bb, yb := c.in(x), c.in(w), c.in(b), c.out(ny)
	c.must(dev.Linear(yb, xb, wb, bb, s), "Linear")
	c.closeScaled("y", c.get(yb, ny), linearRef(f64(x), f64(w), f64(b), s), sumAtol, sumRtol)

	dy := c.sym(ny, 1) // (N,Out)
	dyb := c.in(dy)
	dxb, dwb, dbb := c.out(nx), c.out(nw), c.out(s.Out)
	c.must(dev.LinearBackwardData(dxb, dyb, wb, s), "LinearBackwardData")
	c.must(dev.LinearBackwardWeights(dwb, dbb, dyb, xb, s), "LinearBackwardWeights")
	dx, dw, db := c.get(dxb, nx), c.get(dwb, nw), c.get(dbb, s.Out)
	wantDx, wantDw, wantDb := linearBackwardRef(f64(dy), f64(x), f64(w), s)
	c.closeScaled("dx", dx, wantDx, sumAtol, sumRtol)
	c.closeScaled("dw", dw, wantDw, sumAtol, sumRtol)
	c.closeScaled("db", db, wantDb, sumAtol, sumRtol)

	xs, ws, bs, ys := c.out(nx), c.out(nw), c.out(s.Out), c.out(ny)
	forward := func(scratch gpu.Buffer, v []float32, x, w, b gpu.Buffer) []float32 {
		c.must(dev.Upload(scratch, v), "Upload")
		c.must(dev.Linear(ys, x, w, b, s), "Linear")
		return c.get(ys, ny)
	}
	c.fd("dx", x, dy, dx, 0.25, fdAtol, fdRtol, func(v []float32) []float32 { return forward(xs, v, xs, wb, bb) })
	c.fd("dw", w, dy, dw, 0.25, fdAtol, fdRtol, func(v []float32) []float32 { return forward(ws, v, xb, ws, bb) })
	c.fd("db", b, dy, db, 0.25, fdAtol, fdRtol, func(v []float32) []float32 { return forward(bs, v, xb, wb, bs) })
}

// checkDropout covers Dropout and DropoutBackward: the mask is exactly the
// one gpu.DropoutKeep's doc comment defines (dropoutKeepRef, which does not
// call it), its values are 0 or 1/(1−P), and as a random draw it keeps
// about 1−P of the values, independently of its neighbour and of the same
// value under another seed.
func checkDropout(c *checker) {
	for _, tc := range []struct {
		name string
		n    int
		p    float32
		rtol float64 // on mask and y: 0 where 1/(1−P) is exact in float32
	}{
		{"p0.5", 70001, 0.5, 0},
		{"p0.2", 1000, 0.2, 1e-6},
		{"p0", 100, 0, 0},
	} {
		c.run(tc.name, func(c *checker) { dropoutCase(c, tc.n, tc.p, tc.rtol) })
	}
}

func dropoutCase(c *checker, n int, p float32, rtol float64) {
	dev := c.dev
	scale := 1 / (1 - float64(p))
	x := c.sym(n, 1)
	xb := c.in(x)
	kept := map[uint64][]bool{}
	for _, seed := range []uint64{1, 2} {
		s := gpu.DropoutShape{N: n, P: p, Seed: seed}
		yb, mb := c.out(n), c.out(n)
		c.must(dev.Dropout(yb, mb, xb, s), "Dropout")
		y, mask := c.get(yb, n), c.get(mb, n)

		wantMask := make([]float64, n)
		for i := range wantMask {
			if dropoutKeepRef(seed, i, p) {
				wantMask[i] = scale
			}
		}
		tag := fmt.Sprintf(" (seed %d)", seed)
		c.close("mask"+tag, mask, wantMask, 0, rtol)
		// y = x·mask, as downloaded.
		wantY := make([]float64, n)
		for i := range wantY {
			wantY[i] = float64(x[i]) * float64(mask[i])
		}
		c.close("y = x·mask"+tag, y, wantY, 0, rtol)
		kept[seed] = make([]bool, n)
		for i, m := range mask {
			kept[seed][i] = m != 0
		}

		if seed != 1 {
			continue
		}
		dy := c.sym(n, 1)
		dyb, dxb := c.in(dy), c.out(n)
		c.must(dev.DropoutBackward(dxb, dyb, mb, n), "DropoutBackward")
		dx := c.get(dxb, n)
		wantDx := make([]float64, n)
		for i := range wantDx {
			wantDx[i] = float64(dy[i]) * float64(mask[i])
		}
		c.close("dx = dy·mask", dx, wantDx, 0, 1e-7)
		xs, ys, ms := c.out(n), c.out(n), c.out(n)
		c.fd("dx", x, dy, dx, 0.25, fdAtol, fdRtol, func(xp []float32) []float32 {
			c.must(dev.Upload(xs, xp), "Upload")
			c.must(dev.Dropout(ys, ms, xs, s), "Dropout")
			return c.get(ys, n)
		})
	}
	dropoutStats(c, kept[1], kept[2], 1-float64(p))
}

// dropoutStats checks the device's masks as a random draw, whatever the
// reference says: a mask that matched a wrong reference would still have
// to keep about q = 1−P of the values (for each seed), keep both of two
// neighbours at about q², and keep a value under both seeds at about q².
// Each fraction must lie within 4 standard deviations of its expectation.
func dropoutStats(c *checker, a, b []bool, q float64) {
	n := float64(len(a))
	for seed, k := range [][]bool{a, b} {
		frac := float64(count(len(k), func(i int) bool { return k[i] })) / n
		if sd := math.Sqrt(q * (1 - q) / n); math.Abs(frac-q) > 4*sd {
			c.errorf("seed %d keeps %.4f of the values, want %.4f ± %.4f", seed+1, frac, q, 4*sd)
		}
	}
	// Overlapping pairs: Var Σ k_i·k_{i+1} = m·q²(1−q²) + 2(m−1)·(q³−q⁴).
	m := float64(len(a) - 1)
	pairs := float64(count(len(a)-1, func(i int) bool { return a[i] && a[i+1] })) / m
	if sd := math.Sqrt((q*q*(1-q*q) + 2*(q*q*q-q*q*q*q)) / m); math.Abs(pairs-q*q) > 4*sd {
		c.errorf("seed 1 keeps both of neighbours i, i+1 at %.4f of the pairs, want %.4f ± %.4f: the mask depends on the index", pairs, q*q, 4*sd)
	}
	both := float64(count(len(a), func(i int) bool { return a[i] && b[i] })) / n
	if sd := math.Sqrt(q * q * (1 - q*q) / n); math.Abs(both-q*q) > 4*sd {
		c.errorf("seeds 1 and 2 both keep %.4f of the values, want %.4f ± %.4f: the masks are not independent", both, q*q, 4*sd)
	}
}

// count returns how many i below n satisfy f.
func count(n int, f func(int) bool) int {
	k := 0
	for i := range n {
		if f(i) {
			k++
		}
	}
	return k
}

// checkSoftmax covers SoftmaxCrossEntropy and SoftmaxCrossEntropyBackward.
func checkSoftmax(c *checker) {
	for _, tc := range []struct {
		name  string
		s     gpu.SoftmaxShape
		scale float64 // logits in ±scale
	}{
		{"10", gpu.SoftmaxShape{N: 4, Classes: 10}, 3},
		{"1000", gpu.SoftmaxShape{N: 3, Classes: 1000}, 3},
		{"7", gpu.SoftmaxShape{N: 5, Classes: 7}, 2},
		{"1", gpu.SoftmaxShape{N: 3, Classes: 1}, 2},
		{"mid_1000", gpu.SoftmaxShape{N: 32, Classes: 1000}, 3},
		// exp(100) overflows float32, and the label's probability in row 0,
		// its smallest logit's, is about e^−200, far below float32's
		// smallest: only a softmax that takes out the row's maximum and a
		// loss computed as log-sum-exp minus the logit stay finite and right.
		{"large_100", gpu.SoftmaxShape{N: 6, Classes: 9}, 100},
	} {
		c.run(tc.name, func(c *checker) { softmaxCase(c, tc.s, tc.scale) })
	}
}

func softmaxCase(c *checker, s gpu.SoftmaxShape, scale float64) {
	dev, nz := c.dev, s.N*s.Classes
	z := c.sym(nz, scale) // (N,Classes)
	labels := make([]float32, s.N)
	for i := range labels {
		labels[i] = float32(c.rng.IntN(s.Classes))
	}
	if scale > 10 {
		labels[0] = float32(argmin(z[:s.Classes]))
	}
	zb, lb := c.in(z), c.in(labels)
	pb, lossb := c.out(nz), c.out(s.N)
	c.must(dev.SoftmaxCrossEntropy(pb, lossb, zb, lb, s), "SoftmaxCrossEntropy")
	prob, loss := c.get(pb, nz), c.get(lossb, s.N)
	if !finite(prob) || !finite(loss) {
		c.errorf("logits in ±%g give a probability or loss that is not finite", scale)
	}
	wantProb, wantLoss := softmaxRef(f64(z), f64(labels), s)
	c.close("prob", prob, wantProb, 1e-6, 1e-4)
	// log-sum-exp in float32 is good to a few ulps of the largest logit.
	c.close("loss", loss, wantLoss, 1e-5*(1+scale), 1e-4)

	dzb := c.out(nz)
	c.must(dev.SoftmaxCrossEntropyBackward(dzb, pb, lb, s), "SoftmaxCrossEntropyBackward")
	dz := c.get(dzb, nz)
	c.close("dlogits", dz, softmaxBackwardRef(wantProb, f64(labels), s), 1e-6/float64(s.N), 1e-4)

	if scale > 10 {
		return // differences of losses near 200 are rounding, not slope
	}
	// The scalar is the batch's mean loss: r = 1/N for every loss.
	r := make([]float32, s.N)
	for i := range r {
		r[i] = 1 / float32(s.N)
	}
	zs, ps, ls := c.out(nz), c.out(nz), c.out(s.N)
	c.fd("dlogits", z, r, dz, 1e-2, fdAtol, fdRtol, func(zp []float32) []float32 {
		c.must(dev.Upload(zs, zp), "Upload")
		c.must(dev.SoftmaxCrossEntropy(ps, ls, zs, lb, s), "SoftmaxCrossEntropy")
		return c.get(ls, s.N)
	})
}

func argmin(v []float32) int {
	m := 0
	for i, x := range v {
		if x < v[m] {
			m = i
		}
	}
	return m
}
