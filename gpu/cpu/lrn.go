package cpu

import "github.com/alexnet-go/trainer/gpu"

// Local response normalization (the paper, §3.3), with half = Size/2:
//
//	scale[c] = K + Alpha·Σ_{j=c−half}^{c+half} x[j]²   (j clipped to 0…C−1)
//	y[c]     = x[c] · scale[c]^−Beta
//	dx[c]    = dy[c]·scale[c]^−Beta
//	           − 2·Alpha·Beta·x[c]·Σ_{j: c in window(j)} dy[j]·y[j]/scale[j]
//
// The window is symmetric, so "c in window(j)" is again j = c−half…c+half.
// Both sums slide along the channels in float64: one add and one subtract
// per channel whatever Size is. scale^−Beta is taken in float32 (four at a
// time in SSE for the paper's β = ¾, see pow34), a few ulps from the
// float64 power. Work is split into blocks of lrnBlock pixels of one image,
// all channels.
const lrnBlock = 128

// LRN sets y (N, C, H, W) to the local response normalization of
// x (N, C, H, W) across channels.
func (d *Device) LRN(y, x gpu.Buffer, s gpu.LRNShape) error {
	return d.lrn(y, x, s, false)
}

// lrn is LRN, of max(0, x) if relu (ReLULRN): each block's channels are
// then rectified into scratch first, so that both run the same loops.
func (d *Device) lrn(y, x gpu.Buffer, s gpu.LRNShape, relu bool) error {
	validate(s)
	yd := d.data("y", y, s.Len()) // (N, C, H, W)
	xd := d.data("x", x, s.Len()) // (N, C, H, W)
	hw, half := s.H*s.W, s.Size/2
	alpha, k := float64(s.Alpha), float64(s.K)
	blocks := (hw + lrnBlock - 1) / lrnBlock
	t := d.elemThreads(4 * int64(s.Len()))
	parallelWorkers(s.N*blocks, t, func(wk, lo, hi int) {
		buf, fbuf := d.buf64(wk, lrnBlock), d.buf32(wk, (1+s.C)*lrnBlock)
		for u := lo; u < hi; u++ {
			p0 := u % blocks * lrnBlock
			m := min(lrnBlock, hw-p0)
			base := u/blocks*s.C*hw + p0
			ch := func(v []float32, c int) []float32 { return v[base+c*hw : base+c*hw+m] }
			xs := func(c int) []float32 { return ch(xd, c) }
			if relu {
				xs = rectified(fbuf[lrnBlock:], xs, s.C, m)
			}
			sum, f := buf[:m], fbuf[:m]
			clear(sum)
			for c := range min(half, s.C-1) + 1 {
				addSquares(sum, xs(c), 1)
			}
			for c := range s.C {
				lrnScale(f, sum, k, alpha)
				negPow32(f, s.Beta)
				mul32(ch(yd, c), xs(c), f)
				slideSquares(sum, xs, c+half+1, c-half, s.C)
			}
		}
	})
	return nil
}

// rectified copies max(0, xs(c)) for the C channels of a block of m
// values into scratch and returns its channels.
func rectified(scratch []float32, xs func(c int) []float32, C, m int) func(c int) []float32 {
	for c := range C {
		relu(scratch[c*m:][:m], xs(c))
	}
	return func(c int) []float32 { return scratch[c*m:][:m] }
}

// LRNBackward computes dx (N, C, H, W) from dy, x and y = LRN(x), all
// (N, C, H, W), recomputing the scale from x.
func (d *Device) LRNBackward(dx, dy, x, y gpu.Buffer, s gpu.LRNShape) error {
	return d.lrnBackward(dx, dy, x, y, s, false)
}

// lrnBackward is LRNBackward, or if relu ReLULRNBackward: the same loops
// on max(0, x), rectified into scratch, then dx zeroed where x ≤ 0, as
// ReLUBackward would.
func (d *Device) lrnBackward(dx, dy, x, y gpu.Buffer, s gpu.LRNShape, relu bool) error {
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
		buf, pbuf := d.buf64(wk, (s.C+1)*lrnBlock), d.buf32(wk, 2*s.C*lrnBlock)
		for u := lo; u < hi; u++ {
			p0 := u % blocks * lrnBlock
			m := min(lrnBlock, hw-p0)
			base := u/blocks*s.C*hw + p0
			ch := func(v []float32, c int) []float32 { return v[base+c*hw : base+c*hw+m] }
			xs := func(c int) []float32 { return ch(xd, c) }
			if relu {
				xs = rectified(pbuf[s.C*lrnBlock:], xs, s.C, m)
			}
			sum := buf[:m]
			ratio := func(c int) []float64 { return buf[lrnBlock*(1+c):][:m] }
			power := func(c int) []float32 { return pbuf[lrnBlock*c:][:m] }

			// ratio[c] = dy[c]·y[c]/scale[c] and power[c] = scale[c]^−β.
			clear(sum)
			for c := range min(half, s.C-1) + 1 {
				addSquares(sum, xs(c), 1)
			}
			for c := range s.C {
				pc := power(c)
				lrnRatio(pc, ratio(c), sum, ch(dyd, c), ch(yd, c), k, alpha)
				negPow32(pc, s.Beta)
				slideSquares(sum, xs, c+half+1, c-half, s.C)
			}

			// dx[c] from the window sum of ratio around c.
			clear(sum)
			for c := range min(half, s.C-1) + 1 {
				add64(sum, ratio(c), 1)
			}
			for c := range s.C {
				lrnDx(ch(dxd, c), ch(dyd, c), power(c), xs(c), sum, coef)
				if relu {
					reluBackward(ch(dxd, c), ch(dxd, c), xs(c))
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

// addSquaresGo adds sign·v[i]² to sum[i], the reference for addSquares.
// A float32 squared is exact in float64, so adding and later subtracting
// a channel cancels closely.
func addSquaresGo(sum []float64, v []float32, sign float64) {
	v = v[:len(sum)]
	for i, x := range v {
		sum[i] += float64(sign * float64(float64(x)*float64(x)))
	}
}

// slideSquares moves a window sum of squares one channel on: it adds
// channel in's squares and subtracts channel out's, each only if it is
// among the C channels, xs(c) being channel c's values of the block.
// With both, one pass does (sum + in²) − out², the same bits as two.
func slideSquares(sum []float64, xs func(c int) []float32, in, out, c int) {
	switch {
	case in < c && out >= 0:
		slideSquaresBoth(sum, xs(in), xs(out))
	case in < c:
		addSquares(sum, xs(in), 1)
	case out >= 0:
		addSquares(sum, xs(out), -1)
	}
}

// The loops below are the references for the AVX assembly of
// lrn_amd64.s, which must give the same bits: each product is converted
// explicitly, which forbids the compiler to fuse it with the add or
// subtract that follows (Go fuses multiply-adds on some architectures, and
// on amd64 when built for v3), so that both round every operation.

// lrnScaleGo sets f[i] = float32(K + Alpha·sum[i]), the scale in float32.
func lrnScaleGo(f []float32, sum []float64, k, alpha float64) {
	sum = sum[:len(f)]
	for i, v := range sum {
		f[i] = float32(k + float64(alpha*v))
	}
}

// lrnRatioGo sets, with scale = K + Alpha·sum[i], p[i] = float32(scale)
// and r[i] = dy[i]·y[i]/scale.
func lrnRatioGo(p []float32, r, sum []float64, dy, y []float32, k, alpha float64) {
	r, sum, dy, y = r[:len(p)], sum[:len(p)], dy[:len(p)], y[:len(p)]
	for i, v := range sum {
		sc := k + float64(alpha*v)
		p[i] = float32(sc)
		r[i] = float64(float64(dy[i])*float64(y[i])) / sc
	}
}

// slideSquaresGo sets sum[i] = (sum[i] + a[i]²) − b[i]².
func slideSquaresGo(sum []float64, a, b []float32) {
	a, b = a[:len(sum)], b[:len(sum)]
	for i, x := range a {
		y := b[i]
		sum[i] = sum[i] + float64(float64(x)*float64(x)) - float64(float64(y)*float64(y))
	}
}

// lrnDxGo sets dx[i] = float32(dy[i]·p[i] − 2αβ·x[i]·sum[i]), coef = 2αβ.
func lrnDxGo(dx, dy, p, x []float32, sum []float64, coef float64) {
	dy, p, x, sum = dy[:len(dx)], p[:len(dx)], x[:len(dx)], sum[:len(dx)]
	for i, v := range dy {
		dx[i] = float32(float64(float64(v)*float64(p[i])) - float64(float64(coef*float64(x[i]))*sum[i]))
	}
}

// slide64Go sets sum[i] = (sum[i] + a[i]) − b[i].
func slide64Go(sum, a, b []float64) {
	a, b = a[:len(sum)], b[:len(sum)]
	for i, x := range a {
		sum[i] = sum[i] + x - b[i]
	}
}

// mul32Go sets y[i] = x[i]·f[i] for every i of f.
func mul32Go(y, x, f []float32) {
	y, x = y[:len(f)], x[:len(f)]
	for i, v := range f {
		y[i] = x[i] * v
	}
}

// add64 adds sign·v[i] to sum[i].
func add64(sum, v []float64, sign float64) {
	v = v[:len(sum)]
	for i, x := range v {
		sum[i] += sign * x
	}
}
