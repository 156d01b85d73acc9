package gputest

import (
	"fmt"
	"math"

	"github.com/alexnet-go/trainer/gpu"
)

// checkSGDMulti covers SGDMulti: several tensors of different sizes (one
// empty, one past a grid's worth of threads) and weight decays, two steps
// so that the velocity carries over, against the float64 reference of
// each tensor and, bit for bit, against one SGD call per tensor on the
// same device (the fused update must be the unfused one).
func checkSGDMulti(c *checker) {
	for _, tc := range []struct {
		name string
		s    gpu.SGDMultiShape
	}{
		{"paper", gpu.SGDMultiShape{Sizes: []int{1001, 7, 0, 70001, 1, 300}, WeightDecays: []float32{0.0005, 0, 0.0005, 0.0005, 0, 0.1},
			LR: 0.01, Momentum: 0.9}},
		{"one", gpu.SGDMultiShape{Sizes: []int{257}, WeightDecays: []float32{0.5}, LR: 1, Momentum: 0.5}},
		{"none", gpu.SGDMultiShape{LR: 0.1}},
	} {
		c.run(tc.name, func(c *checker) { sgdMultiCase(c, tc.s) })
	}
}

func sgdMultiCase(c *checker, s gpu.SGDMultiShape) {
	k := len(s.Sizes)
	w, v := make([][]float32, k), make([][]float32, k)
	wb, vb := make([]gpu.Buffer, k), make([]gpu.Buffer, k)
	w1, v1 := make([]gpu.Buffer, k), make([]gpu.Buffer, k) // the unfused twin
	for i, n := range s.Sizes {
		w[i], v[i] = c.sym(n, 1), c.sym(n, 0.1)
		wb[i], vb[i], w1[i], v1[i] = c.in(w[i]), c.in(v[i]), c.in(w[i]), c.in(v[i])
	}
	for step := 1; step <= 2; step++ {
		dw := make([][]float32, k)
		db := make([]gpu.Buffer, k)
		for i, n := range s.Sizes {
			dw[i] = c.sym(n, 1)
			db[i] = c.in(dw[i])
		}
		c.must(c.dev.SGDMulti(wb, vb, db, s), "SGDMulti")
		for i := range k {
			c.must(c.dev.SGD(w1[i], v1[i], db[i], s.Tensor(i)), "SGD")
		}
		for i, n := range s.Sizes {
			wantW, wantV := sgdRef(f64(w[i]), f64(v[i]), f64(dw[i]), s.Tensor(i))
			w[i], v[i] = c.get(wb[i], n), c.get(vb[i], n)
			c.closeScaled(fmt.Sprintf("tensor %d: v after step %d", i, step), v[i], wantV, 1e-6, 1e-5)
			c.closeScaled(fmt.Sprintf("tensor %d: w after step %d", i, step), w[i], wantW, 1e-6, 1e-5)
			for _, p := range []struct {
				what      string
				got, want []float32
			}{{"w", w[i], c.get(w1[i], n)}, {"v", v[i], c.get(v1[i], n)}} {
				for j := range p.got {
					if math.Float32bits(p.got[j]) != math.Float32bits(p.want[j]) {
						c.errorf("tensor %d: %s[%d] after step %d = %g, one SGD call per tensor gives %g: not the same bits", i, p.what, j, step, p.got[j], p.want[j])
						break
					}
				}
			}
		}
	}
}
