package cpu

import (
	"math"

	"github.com/alexnet-go/trainer/gpu"
)

// The fused operations: an activation folded into the pass of the bias or
// the LRN next to it, so that each reads and writes its data once. Each
// does the float32 operations of its unfused sequence in the same order,
// so it gives the same bits (fused_test.go checks it, for 1 to 3 threads).

// BiasReLU sets y = max(0, y + b[c]) for every value of channel c of
// y (N, C, Inner); b (C).
func (d *Device) BiasReLU(y, b gpu.Buffer, s gpu.BiasShape) error {
	checkBias(s)
	yd := d.data("y", y, s.Len()) // (N, C, Inner)
	bd := d.data("b", b, s.C)     // (C)
	parallelFor(s.N*s.C, d.elemThreads(int64(s.Len())), func(lo, hi int) {
		for pl := lo; pl < hi; pl++ {
			// AddBias's and ReLU's loops (AVX where there is), one row at
			// a time while it is in L1.
			row := yd[pl*s.Inner : (pl+1)*s.Inner]
			addConst(row, bd[pl%s.C])
			relu(row, row)
		}
	})
	return nil
}

// ReLUBiasBackward sets dx = dy where y > 0, else 0, and db[c] = Σ_{n,i}
// dx[n,c,i] summed in float64 as BiasBackward sums; dx, dy, y
// (N, C, Inner), db (C). dx may be dy.
func (d *Device) ReLUBiasBackward(dx, db, dy, y gpu.Buffer, s gpu.BiasShape) error {
	checkBias(s)
	dxd := d.data("dx", dx, s.Len()) // (N, C, Inner)
	dbd := d.data("db", db, s.C)     // (C)
	dyd := d.data("dy", dy, s.Len()) // (N, C, Inner)
	yd := d.data("y", y, s.Len())    // (N, C, Inner)
	parallelFor(s.C, d.elemThreads(int64(s.Len())), func(lo, hi int) {
		for c := lo; c < hi; c++ {
			var acc float64
			for n := range s.N {
				at := (n*s.C + c) * s.Inner
				row := dxd[at : at+s.Inner]
				reluBackward(row, dyd[at:at+s.Inner], yd[at:at+s.Inner])
				acc += sum64(row) // still in L1
			}
			dbd[c] = float32(acc)
		}
	})
	return nil
}

// LinearReLU sets y (N, Out) = max(0, x (N, In) · wᵀ + b), with w (Out, In)
// and b (Out): Linear's product, then its bias and the ReLU in one pass.
func (d *Device) LinearReLU(y, x, w, b gpu.Buffer, s gpu.LinearShape) error {
	return d.linear(y, x, w, b, s, true)
}

// LinearReLUBackward masks dy (N, Out) in place with y > 0 and sums it
// into db (Out) in one pass, in float64 as LinearBackwardWeights sums,
// then sets dw (Out, In) = dyᵀ · x and, unless dx is nil,
// dx (N, In) = dy · w.
func (d *Device) LinearReLUBackward(dx, dw, db, dy, x, w, y gpu.Buffer, s gpu.LinearShape) error {
	checkLinear(s)
	dwd := d.data("dw", dw, s.Out*s.In) // (Out, In)
	dbd := d.data("db", db, s.Out)      // (Out)
	dyd := d.data("dy", dy, s.N*s.Out)  // (N, Out)
	xd := d.data("x", x, s.N*s.In)      // (N, In)
	wd := d.data("w", w, s.Out*s.In)    // (Out, In)
	yd := d.data("y", y, s.N*s.Out)     // (N, Out)
	var dxd []float32
	if dx != nil {
		dxd = d.data("dx", dx, s.N*s.In) // (N, In)
	}
	parallelWorkers(s.Out, d.elemThreads(int64(s.N)*int64(s.Out)), func(wk, lo, hi int) {
		acc := d.buf64(wk, hi-lo)
		clear(acc)
		for n := range s.N {
			at := n * s.Out
			reluSum(dyd[at+lo:at+hi], yd[at+lo:at+hi], acc)
		}
		out := dbd[lo:hi]
		for j, v := range acc[:len(out)] {
			out[j] = float32(v)
		}
	})
	d.Sgemm(true, false, s.Out, s.In, s.N, 1, dyd, s.Out, xd, s.In, 0, dwd, s.In)
	if dxd != nil {
		d.Sgemm(false, false, s.N, s.In, s.Out, 1, dyd, s.Out, wd, s.In, 0, dxd, s.In)
	}
	return nil
}

// reluSum sets g[i] = g[i] where y[i] > 0, else +0 (reluBackward's mask),
// and adds it to acc[i] in float64.
func reluSum(g, y []float32, acc []float64) {
	y, acc = y[:len(g)], acc[:len(g)]
	for i, v := range g {
		var mask uint32
		if y[i] > 0 {
			mask = ^uint32(0)
		}
		v = math.Float32frombits(math.Float32bits(v) & mask)
		g[i] = v
		acc[i] += float64(v)
	}
}

// reluMasked returns max(v, 0) with its bits (+0 for −0, NaN kept), with a
// mask rather than max's branches: the sign of an activation is random,
// and a mispredicted branch per value costs more than the pass.
func reluMasked(v float32) float32 {
	var mask uint32 // a conditional move, not a branch
	if !(v <= 0) {
		mask = ^uint32(0)
	}
	return math.Float32frombits(math.Float32bits(v) & mask)
}

// ReLULRN sets y (N, C, H, W) to the LRN of max(0, x (N, C, H, W)): LRN's
// loops on each block's channels rectified into scratch, which stays in
// the cache, so x is read from memory once and no rectified copy of the
// layer is written.
func (d *Device) ReLULRN(y, x gpu.Buffer, s gpu.LRNShape) error {
	return d.lrn(y, x, s, true)
}

// ReLULRNBackward computes dx (N, C, H, W) for y = ReLULRN(x):
// LRNBackward's loops on max(0, x), then dx zeroed where x ≤ 0 with
// ReLUBackward's mask, block by block.
func (d *Device) ReLULRNBackward(dx, dy, x, y gpu.Buffer, s gpu.LRNShape) error {
	return d.lrnBackward(dx, dy, x, y, s, true)
}
