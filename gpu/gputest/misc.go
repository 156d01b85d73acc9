package gputest

import (
	"fmt"

	"github.com/alexnet-go/trainer/gpu"
)

// checkAdd covers Add, which accumulates.
func checkAdd(c *checker) {
	for _, n := range []int{1, 31, 1000, 70001} {
		c.run(fmt.Sprint(n), func(c *checker) {
			y0, x := c.sym(n, 1), c.sym(n, 1)
			yb, xb := c.in(y0), c.in(x)
			c.must(c.dev.Add(yb, xb, n), "Add")
			want := f64(y0)
			for i := range want {
				want[i] += float64(x[i])
			}
			// One float32 addition: correctly rounded.
			c.close("y", c.get(yb, n), want, 0, 1e-7)
		})
	}
}

// checkConcatSplit covers Concat and Split, its inverse and backward pass.
func checkConcatSplit(c *checker) {
	for _, tc := range []struct {
		name string
		s    gpu.ConcatShape
	}{
		{"2", gpu.ConcatShape{N: 3, Sizes: []int{4, 5}}},
		{"3", gpu.ConcatShape{N: 2, Sizes: []int{2, 7, 3}}},
		{"3_ones", gpu.ConcatShape{N: 1, Sizes: []int{1, 1, 1}}},
		// Two towers' maps, 2 and 3 channels of 3×3, joined along C.
		{"towers", gpu.ConcatShape{N: 2, Sizes: []int{2 * 9, 3 * 9}}},
		{"mid_towers", gpu.ConcatShape{N: 4, Sizes: []int{48 * 169, 64 * 169}}},
	} {
		c.run(tc.name, func(c *checker) { concatCase(c, tc.s) })
	}
}

func concatCase(c *checker, s gpu.ConcatShape) {
	dev, n := c.dev, s.N*s.Row()
	srcs := make([][]float32, len(s.Sizes))
	srcBufs := make([]gpu.Buffer, len(s.Sizes))
	for i, size := range s.Sizes {
		srcs[i] = c.sym(s.N*size, 1) // (N, Sizes[i])
		srcBufs[i] = c.in(srcs[i])
	}
	want := make([][]float64, len(srcs))
	for i := range srcs {
		want[i] = f64(srcs[i])
	}
	db := c.out(n) // (N, Row)
	c.must(dev.Concat(db, srcBufs, s), "Concat")
	c.close("dst", c.get(db, n), concatRef(want, s), 0, 0)

	// Split is the backward pass of Concat: with L = Σ r·Concat(srcs),
	// ∂L/∂src_i = Split(r)[i].
	r := c.sym(n, 1)
	rb := c.in(r)
	grads := make([]gpu.Buffer, len(s.Sizes))
	for i, size := range s.Sizes {
		grads[i] = c.out(s.N * size)
	}
	c.must(dev.Split(grads, rb, s), "Split")
	wantSplit := splitRef(f64(r), s)
	ds := c.out(n)
	for i, size := range s.Sizes {
		g := c.get(grads[i], s.N*size)
		c.close(fmt.Sprintf("dst %d", i), g, wantSplit[i], 0, 0)
		scratch := c.out(s.N * size)
		c.fd(fmt.Sprintf("src %d", i), srcs[i], r, g, 0.25, fdAtol, fdRtol, func(v []float32) []float32 {
			c.must(dev.Upload(scratch, v), "Upload")
			bufs := append([]gpu.Buffer(nil), srcBufs...)
			bufs[i] = scratch
			c.must(dev.Concat(ds, bufs, s), "Concat")
			return c.get(ds, n)
		})
	}
}

// checkSGD covers SGD, two steps each so that the velocity carries over.
func checkSGD(c *checker) {
	for _, tc := range []struct {
		name string
		s    gpu.SGDShape
	}{
		{"paper", gpu.SGDShape{N: 1001, LR: 0.01, Momentum: 0.9, WeightDecay: 0.0005}},
		{"plain", gpu.SGDShape{N: 257, LR: 0.1}},
		{"strong", gpu.SGDShape{N: 64, LR: 1, Momentum: 0.5, WeightDecay: 0.1}},
		{"mid", gpu.SGDShape{N: 70001, LR: 0.01, Momentum: 0.9, WeightDecay: 0.0005}},
	} {
		c.run(tc.name, func(c *checker) { sgdCase(c, tc.s) })
	}
}

func sgdCase(c *checker, s gpu.SGDShape) {
	w, v := c.sym(s.N, 1), c.sym(s.N, 0.1)
	wb, vb := c.in(w), c.in(v)
	for step := 1; step <= 2; step++ {
		dw := c.sym(s.N, 1)
		c.must(c.dev.SGD(wb, vb, c.in(dw), s), "SGD")
		wantW, wantV := sgdRef(f64(w), f64(v), f64(dw), s)
		w, v = c.get(wb, s.N), c.get(vb, s.N)
		// A handful of float32 operations per value.
		c.closeScaled(fmt.Sprintf("v after step %d", step), v, wantV, 1e-6, 1e-5)
		c.closeScaled(fmt.Sprintf("w after step %d", step), w, wantW, 1e-6, 1e-5)
	}
}
