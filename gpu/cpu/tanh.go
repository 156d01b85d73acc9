package cpu

import (
	"math"

	"github.com/alexnet-go/trainer/gpu"
)

// Tanh sets y = tanh(x) over n values, each computed in float64 and
// rounded once, so y is the float32 nearest the true value (and exactly
// ±1 where tanh saturates); y may be x.
func (d *Device) Tanh(y, x gpu.Buffer, n int) error {
	yd, xd := d.data("y", y, n), d.data("x", x, n)
	// A tanh costs some twenty times a max: split the work sooner.
	parallelFor(n, d.elemThreads(20*int64(n)), func(lo, hi int) {
		ys := yd[lo:hi]
		for i, v := range xd[lo:hi] {
			ys[i] = float32(math.Tanh(float64(v)))
		}
	})
	return nil
}

// TanhBackward sets dx = dy·(1 − y²) over n values, y = tanh(x), in
// float32 arithmetic; dx may be dy.
func (d *Device) TanhBackward(dx, dy, y gpu.Buffer, n int) error {
	dxd, dyd, yd := d.data("dx", dx, n), d.data("dy", dy, n), d.data("y", y, n)
	d.elementwise(n, func(lo, hi int) {
		dxs, dys := dxd[lo:hi], dyd[lo:hi]
		for i, v := range yd[lo:hi] {
			// Each product rounded on its own, as in SGD: no fused
			// multiply-add, so the result does not depend on the compiler.
			dxs[i] = dys[i] * (1 - float32(v*v))
		}
	})
	return nil
}
