package cpu

import (
	"fmt"

	"github.com/alexnet-go/trainer/gpu"
)

// Linear sets y (N, Out) = x (N, In) · wᵀ + b, with w (Out, In) and
// b (Out).
func (d *Device) Linear(y, x, w, b gpu.Buffer, s gpu.LinearShape) error {
	return d.linear(y, x, w, b, s, false)
}

// linear is Linear, and LinearReLU if rectify: the product, then the bias
// (and the ReLU) in one pass over each row while it is in the cache.
func (d *Device) linear(y, x, w, b gpu.Buffer, s gpu.LinearShape, rectify bool) error {
	checkLinear(s)
	yd := d.data("y", y, s.N*s.Out)  // (N, Out)
	xd := d.data("x", x, s.N*s.In)   // (N, In)
	wd := d.data("w", w, s.Out*s.In) // (Out, In)
	bd := d.data("b", b, s.Out)      // (Out)
	d.Sgemm(false, true, s.N, s.Out, s.In, 1, xd, s.In, wd, s.In, 0, yd, s.Out)
	d.elementwise(s.N*s.Out, func(lo, hi int) {
		for i := lo; i < hi; {
			o := i % s.Out
			row := yd[i : i+min(hi-i, s.Out-o)]
			for j := range row {
				row[j] += bd[o+j]
			}
			if rectify {
				relu(row, row)
			}
			i += len(row)
		}
	})
	return nil
}

// LinearBackwardData sets dx (N, In) = dy (N, Out) · w (Out, In).
func (d *Device) LinearBackwardData(dx, dy, w gpu.Buffer, s gpu.LinearShape) error {
	checkLinear(s)
	dxd := d.data("dx", dx, s.N*s.In)  // (N, In)
	dyd := d.data("dy", dy, s.N*s.Out) // (N, Out)
	wd := d.data("w", w, s.Out*s.In)   // (Out, In)
	d.Sgemm(false, false, s.N, s.In, s.Out, 1, dyd, s.Out, wd, s.In, 0, dxd, s.In)
	return nil
}

// LinearBackwardWeights sets dw (Out, In) = dyᵀ · x and db (Out) = Σ_n dy,
// from dy (N, Out) and x (N, In). The bias sums are taken in float64.
func (d *Device) LinearBackwardWeights(dw, db, dy, x gpu.Buffer, s gpu.LinearShape) error {
	checkLinear(s)
	dwd := d.data("dw", dw, s.Out*s.In) // (Out, In)
	dbd := d.data("db", db, s.Out)      // (Out)
	dyd := d.data("dy", dy, s.N*s.Out)  // (N, Out)
	xd := d.data("x", x, s.N*s.In)      // (N, In)
	d.Sgemm(true, false, s.Out, s.In, s.N, 1, dyd, s.Out, xd, s.In, 0, dwd, s.In)
	t := d.elemThreads(int64(s.N) * int64(s.Out))
	parallelWorkers(s.Out, t, func(wk, lo, hi int) {
		acc := d.buf64(wk, hi-lo)
		clear(acc)
		for n := range s.N {
			for j, v := range dyd[n*s.Out+lo : n*s.Out+hi] {
				acc[j] += float64(v)
			}
		}
		for j, v := range acc {
			dbd[lo+j] = float32(v)
		}
	})
	return nil
}

// checkLinear panics on a linear shape with a negative size.
func checkLinear(s gpu.LinearShape) {
	if s.N < 0 || s.In < 0 || s.Out < 0 {
		panic(fmt.Sprintf("cpu: invalid linear shape %+v", s))
	}
}
