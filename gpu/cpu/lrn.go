package cpu

import (
	"math"

	"github.com/alexnet-go/trainer/gpu"
)

// Local response normalization (the paper, §3.3), with half = Size/2:
//
//	scale[c] = K + Alpha·Σ_{j=c−half}^{c+half} x[j]²   (j clipped to 0…C−1)
//	y[c]     = x[c] · scale[c]^−Beta
//	dx[c]    = dy[c]·scale[c]^−Beta
//	           − 2·Alpha·Beta·x[c]·Σ_{j: c in window(j)} dy[j]·y[j]/scale[j]
//
// The window is symmetric, so "c in window(j)" is again j = c−half…c+half.
// Both sums slide along the channels in float64: one add and one subtract
// per channel whatever Size is. Work is split into blocks of lrnBlock
// pixels of one image, all channels.
const lrnBlock = 64

// LRN sets y (N, C, H, W) to the local response normalization of
// x (N, C, H, W) across channels.
func (d *Device) LRN(y, x gpu.Buffer, s gpu.LRNShape) error {
	validate(s)
	yd := d.data("y", y, s.Len()) // (N, C, H, W)
	xd := d.data("x", x, s.Len()) // (N, C, H, W)
	hw, half := s.H*s.W, s.Size/2
	alpha, k := float64(s.Alpha), float64(s.K)
	beta := float64(s.Beta)
	blocks := (hw + lrnBlock - 1) / lrnBlock
	t := d.elemThreads(4 * int64(s.Len()))
	parallelWorkers(s.N*blocks, t, func(wk, lo, hi int) {
		buf := d.buf64(wk, 2*lrnBlock)
		for u := lo; u < hi; u++ {
			p0 := u % blocks * lrnBlock
			m := min(lrnBlock, hw-p0)
			base := u/blocks*s.C*hw + p0
			ch := func(v []float32, c int) []float32 { return v[base+c*hw : base+c*hw+m] }
			sum, f := buf[:m], buf[lrnBlock:lrnBlock+m]
			clear(sum)
			for c := range min(half, s.C-1) + 1 {
				addSquares(sum, ch(xd, c), 1)
			}
			for c := range s.C {
				for i, v := range sum {
					f[i] = k + alpha*v
				}
				negPow(f, beta)
				yc := ch(yd, c)
				for i, v := range ch(xd, c) {
					yc[i] = float32(float64(v) * f[i])
				}
				if j := c + half + 1; j < s.C {
					addSquares(sum, ch(xd, j), 1)
				}
				if j := c - half; j >= 0 {
					addSquares(sum, ch(xd, j), -1)
				}
			}
		}
	})
	return nil
}

// LRNBackward computes dx (N, C, H, W) from dy, x and y = LRN(x), all
// (N, C, H, W), recomputing the scale from x.
func (d *Device) LRNBackward(dx, dy, x, y gpu.Buffer, s gpu.LRNShape) error {
	validate(s)
	dxd := d.data("dx", dx, s.Len()) // (N, C, H, W)
	dyd := d.data("dy", dy, s.Len()) // (N, C, H, W)
	xd := d.data("x", x, s.Len())    // (N, C, H, W)
	yd := d.data("y", y, s.Len())    // (N, C, H, W)
	hw, half := s.H*s.W, s.Size/2
	alpha, k := float64(s.Alpha), float64(s.K)
	beta := float64(s.Beta)
	coef := 2 * alpha * beta
	blocks := (hw + lrnBlock - 1) / lrnBlock
	t := d.elemThreads(8 * int64(s.Len()))
	parallelWorkers(s.N*blocks, t, func(wk, lo, hi int) {
		buf := d.buf64(wk, (2*s.C+1)*lrnBlock)
		for u := lo; u < hi; u++ {
			p0 := u % blocks * lrnBlock
			m := min(lrnBlock, hw-p0)
			base := u/blocks*s.C*hw + p0
			ch := func(v []float32, c int) []float32 { return v[base+c*hw : base+c*hw+m] }
			sum := buf[:m]
			scale := func(c int) []float64 { return buf[lrnBlock*(1+c):][:m] }
			ratio := func(c int) []float64 { return buf[lrnBlock*(1+s.C+c):][:m] }

			// ratio[c] = dy[c]·y[c]/scale[c], then scale[c] becomes
			// scale[c]^−β.
			clear(sum)
			for c := range min(half, s.C-1) + 1 {
				addSquares(sum, ch(xd, c), 1)
			}
			for c := range s.C {
				sc, rc, dyc, yc := scale(c), ratio(c), ch(dyd, c), ch(yd, c)
				for i := range sc {
					sc[i] = k + alpha*sum[i]
					rc[i] = float64(dyc[i]) * float64(yc[i]) / sc[i]
				}
				negPow(sc, beta)
				if j := c + half + 1; j < s.C {
					addSquares(sum, ch(xd, j), 1)
				}
				if j := c - half; j >= 0 {
					addSquares(sum, ch(xd, j), -1)
				}
			}

			// dx[c] from the window sum of ratio around c.
			clear(sum)
			for c := range min(half, s.C-1) + 1 {
				add64(sum, ratio(c), 1)
			}
			for c := range s.C {
				sc, dxc, dyc, xc := scale(c), ch(dxd, c), ch(dyd, c), ch(xd, c)
				for i := range dxc {
					dxc[i] = float32(float64(dyc[i])*sc[i] - coef*float64(xc[i])*sum[i])
				}
				if j := c + half + 1; j < s.C {
					add64(sum, ratio(j), 1)
				}
				if j := c - half; j >= 0 {
					add64(sum, ratio(j), -1)
				}
			}
		}
	})
	return nil
}

// addSquares adds sign·v[i]² to sum[i]. A float32 squared is exact in
// float64, so adding and later subtracting a channel cancels closely.
func addSquares(sum []float64, v []float32, sign float64) {
	v = v[:len(sum)]
	for i, x := range v {
		sum[i] += sign * (float64(x) * float64(x))
	}
}

// add64 adds sign·v[i] to sum[i].
func add64(sum, v []float64, sign float64) {
	v = v[:len(sum)]
	for i, x := range v {
		sum[i] += sign * x
	}
}

// negPow replaces each v[i] > 0 by v[i]^−beta, with the common exponents
// done in square roots rather than math.Pow.
func negPow(v []float64, beta float64) {
	switch beta {
	case 0:
		for i := range v {
			v[i] = 1
		}
	case 0.5:
		for i, x := range v {
			v[i] = 1 / math.Sqrt(x)
		}
	case 0.75: // the paper's β
		for i, x := range v {
			r := math.Sqrt(x)
			v[i] = 1 / (r * math.Sqrt(r))
		}
	case 1:
		for i, x := range v {
			v[i] = 1 / x
		}
	default:
		for i, x := range v {
			v[i] = math.Pow(x, -beta)
		}
	}
}
