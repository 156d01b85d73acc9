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
			v := bd[pl%s.C]
			row := yd[pl*s.Inner : (pl+1)*s.Inner]
			for i, x := range row {
				row[i] = relu(x + v)
			}
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
			bs := bd[o : o+len(row)]
			for j, v := range bs {
				row[j] = relu(row[j] + v)
			}
			i += len(row)
		}
	})
	return nil
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

// relu returns max(v, 0) with its bits (+0 for −0, NaN kept), with a
// mask rather than max's branches: the sign of an activation is random,
// and a mispredicted branch per value costs more than the pass.
func relu(v float32) float32 {
	var mask uint32 // a conditional move, not a branch
	if !(v <= 0) {
		mask = ^uint32(0)
	}
	return math.Float32frombits(math.Float32bits(v) & mask)
}

// ReLULRN sets y (N, C, H, W) to the LRN of max(0, x (N, C, H, W)), with
// LRN's arithmetic on the rectified values, rectified as they are read.
func (d *Device) ReLULRN(y, x gpu.Buffer, s gpu.LRNShape) error {
	validate(s)
	yd := d.data("y", y, s.Len()) // (N, C, H, W)
	xd := d.data("x", x, s.Len()) // (N, C, H, W)
	hw, half := s.H*s.W, s.Size/2
	alpha, k := float64(s.Alpha), float64(s.K)
	blocks := (hw + lrnBlock - 1) / lrnBlock
	t := d.elemThreads(4 * int64(s.Len()))
	parallelWorkers(s.N*blocks, t, func(wk, lo, hi int) {
		buf, fbuf := d.buf64(wk, lrnBlock), d.buf32(wk, lrnBlock)
		for u := lo; u < hi; u++ {
			p0 := u % blocks * lrnBlock
			m := min(lrnBlock, hw-p0)
			base := u/blocks*s.C*hw + p0
			ch := func(v []float32, c int) []float32 { return v[base+c*hw : base+c*hw+m] }
			sum, f := buf[:m], fbuf[:m]
			clear(sum)
			for c := range min(half, s.C-1) + 1 {
				addReLUSquares(sum, ch(xd, c), 1)
			}
			for c := range s.C {
				for i, v := range sum {
					f[i] = float32(k + alpha*v)
				}
				negPow32(f, s.Beta)
				mulReLU(ch(yd, c), ch(xd, c), f)
				slideReLUSquares(sum, xd, base, hw, c+half+1, c-half, s.C)
			}
		}
	})
	return nil
}

// ReLULRNBackward computes dx (N, C, H, W) for y = ReLULRN(x): LRNBackward's
// arithmetic on max(0, x), then dx zeroed where x ≤ 0 with reluBackward's
// mask, in one pass. Where x > 0, max(0, x) is x; elsewhere the mask
// zeroes the value, so the last step reads x as it is.
func (d *Device) ReLULRNBackward(dx, dy, x, y gpu.Buffer, s gpu.LRNShape) error {
	validate(s)
	dxd := d.data("dx", dx, s.Len()) // (N, C, H, W)
	dyd := d.data("dy", dy, s.Len()) // (N, C, H, W)
	xd := d.data("x", x, s.Len())    // (N, C, H, W)
	yd := d.data("y", y, s.Len())    // (N, C, H, W)
	hw, half := s.H*s.W, s.Size/2
	alpha, k := float64(s.Alpha), float64(s.K)
	coef := 2 * alpha * float64(s.Beta)
	blocks := (hw + lrnBlock - 1) / lrnBlock
	t := d.elemThreads(8 * int64(s.Len()))
	parallelWorkers(s.N*blocks, t, func(wk, lo, hi int) {
		buf, pbuf := d.buf64(wk, (s.C+1)*lrnBlock), d.buf32(wk, s.C*lrnBlock)
		for u := lo; u < hi; u++ {
			p0 := u % blocks * lrnBlock
			m := min(lrnBlock, hw-p0)
			base := u/blocks*s.C*hw + p0
			ch := func(v []float32, c int) []float32 { return v[base+c*hw : base+c*hw+m] }
			sum := buf[:m]
			ratio := func(c int) []float64 { return buf[lrnBlock*(1+c):][:m] }
			power := func(c int) []float32 { return pbuf[lrnBlock*c:][:m] }

			// ratio[c] = dy[c]·y[c]/scale[c] and power[c] = scale[c]^−β.
			clear(sum)
			for c := range min(half, s.C-1) + 1 {
				addReLUSquares(sum, ch(xd, c), 1)
			}
			for c := range s.C {
				pc, rc, dyc, yc := power(c), ratio(c), ch(dyd, c), ch(yd, c)
				rc, dyc, yc = rc[:len(pc)], dyc[:len(pc)], yc[:len(pc)]
				for i, v := range sum[:len(pc)] {
					sc := k + alpha*v
					pc[i] = float32(sc)
					rc[i] = float64(dyc[i]) * float64(yc[i]) / sc
				}
				negPow32(pc, s.Beta)
				slideReLUSquares(sum, xd, base, hw, c+half+1, c-half, s.C)
			}

			// dx[c] from the window sum of ratio around c, masked by x > 0.
			clear(sum)
			for c := range min(half, s.C-1) + 1 {
				add64(sum, ratio(c), 1)
			}
			for c := range s.C {
				pc, dxc, dyc, xc := power(c), ch(dxd, c), ch(dyd, c), ch(xd, c)
				dxc, dyc, xc, sum := dxc[:len(pc)], dyc[:len(pc)], xc[:len(pc)], sum[:len(pc)]
				for i, p := range pc {
					v := xc[i]
					g := float32(float64(dyc[i])*float64(p) - coef*float64(v)*sum[i])
					var mask uint32 // a conditional move, not a branch
					if v > 0 {
						mask = ^uint32(0)
					}
					dxc[i] = math.Float32frombits(math.Float32bits(g) & mask)
				}
				switch in, out := c+half+1, c-half; {
				case in < s.C && out >= 0:
					slide64(sum, ratio(in), ratio(out))
				case in < s.C:
					add64(sum, ratio(in), 1)
				case out >= 0:
					add64(sum, ratio(out), -1)
				}
			}
		}
	})
	return nil
}

// addReLUSquares is addSquares on max(v, 0).
func addReLUSquares(sum []float64, v []float32, sign float64) {
	v = v[:len(sum)]
	for i, x := range v {
		r := float64(relu(x))
		sum[i] += sign * (r * r)
	}
}

// slideReLUSquares is slideSquares on max(v, 0).
func slideReLUSquares(sum []float64, v []float32, base, hw, in, out, c int) {
	m := len(sum)
	switch {
	case in < c && out >= 0:
		a, b := v[base+in*hw:][:m], v[base+out*hw:][:m]
		for i, x := range a {
			p, q := float64(relu(x)), float64(relu(b[i]))
			sum[i] = sum[i] + p*p - q*q
		}
	case in < c:
		addReLUSquares(sum, v[base+in*hw:][:m], 1)
	case out >= 0:
		addReLUSquares(sum, v[base+out*hw:][:m], -1)
	}
}

// mulReLU sets y[i] = max(x[i], 0)·f[i] for every i of f.
func mulReLU(y, x, f []float32) {
	y, x = y[:len(f)], x[:len(f)]
	for i, v := range f {
		y[i] = relu(x[i]) * v
	}
}
