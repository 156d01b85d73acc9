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
//
// Everything is float32, each pixel on its own, in this order: the window
// sums are direct, Σ from j = c−half up (the first term, then one add per
// further term: for Size 5, five squares and four adds; lrnSquare says
// how a NaN's sign is set), not slid along
// the channels, so that no add and later subtract of a large term can
// cancel and float32 is enough (a sum of Size positive terms is within
// about Size half-ulps of the exact one); scale = K + float32(Alpha·sum), capped
// at MaxFloat32 so that a square that overflows (|x| > 1.8e19) gives a
// tiny y rather than ∞·0 = NaN; inv = 1/scale, correctly rounded; then
//
//	p     = scale^−Beta = inv·scale^(1−Beta): for the paper's β = ¾
//	        inv·√√scale, two square roots, within 2 ulp of the power;
//	y     = x·p
//	ratio = float32(dy·y)·inv
//	dx    = float32(dy·p) − float32(2αβ·x)·Σ_window ratio
//
// so the backward pass shares one division between p and the ratio
// (inv·√√scale is also the closest of the three ways to write s^−¾ with
// one quotient and two roots: 1.5 ulp at most on 10⁷ random scales,
// against 1.9 for 1/(√s·√√s) and 2 for √inv·√√inv). The division and
// the two square roots are the forward pass's cost, about 2 cycles a
// value on an AVX core's divider, which the rest overlaps; out of the
// cache, both passes go at the speed of memory.
//
// kernels/lrn.cu computes the same scale, bit for bit (short of the cap,
// which it has not): float32 sums of the squares in the order of j (from
// 0, which adds nothing), compiled without fused multiply-adds (gpu/cuda's
// --fmad=false). It takes the power as 1/(√s·√√s) and the ratio as
// dy·y/s, so its y and dx are within an ulp or two of these, inside
// gpu/cuda's tolerance against this device.
//
// ReLULRN and ReLULRNBackward take max(0, x) as they read x, with Go's
// max (NaNs and signed zeros included), and zero dx where max(0, x) ≤ 0
// as ReLUBackward would: the same operations on the same values as ReLU
// then LRN, so the same bits.
//
// Work is split into blocks of lrnBlock pixels of one image, all channels;
// since every pixel is computed on its own, any split gives the same bits.
// Blocks of 1024 pixels make each channel's row a 4 KB run: on AlexNet's
// 55×55 channels, whose rows lie 12100 bytes apart, runs of 512 bytes (128
// pixels) left the hardware prefetcher behind, and the backward pass ran
// at half the speed. On amd64 with AVX and β = ¾ each block's whole
// vectors of 8 pixels run in assembly (lrn_amd64.s), the rest in the Go
// references below, which do the same operations in the same order (no
// fused multiply-adds), so the bits are the same; other β run in Go.
const lrnBlock = 1024

// LRN sets y (N, C, H, W) to the local response normalization of
// x (N, C, H, W) across channels.
func (d *Device) LRN(y, x gpu.Buffer, s gpu.LRNShape) error {
	return d.lrn(y, x, s, false)
}

// lrnBlocks calls fn on every block of lrnBlock pixels of one image, over
// d's threads (as many as a loop over cost·N·C·H·W values is worth), with
// the worker's number, the block's offset in the (N, C, H, W) tensors and
// its pixel count m.
func (d *Device) lrnBlocks(s gpu.LRNShape, cost int64, fn func(wk, base, m int)) {
	hw := s.H * s.W
	blocks := (hw + lrnBlock - 1) / lrnBlock
	t := d.elemThreads(cost * int64(s.Len()))
	parallelWorkers(s.N*blocks, t, func(wk, lo, hi int) {
		for u := lo; u < hi; u++ {
			p0 := u % blocks * lrnBlock
			fn(wk, u/blocks*s.C*hw+p0, min(lrnBlock, hw-p0))
		}
	})
}

// lrn is LRN, of max(0, x) if relu (ReLULRN).
func (d *Device) lrn(y, x gpu.Buffer, s gpu.LRNShape, relu bool) error {
	validate(s)
	yd := d.data("y", y, s.Len()) // (N, C, H, W)
	xd := d.data("x", x, s.Len()) // (N, C, H, W)
	p := newLRNParams(s, relu)
	d.lrnBlocks(s, 4, func(_, base, m int) {
		lrnForward(yd[base:], xd[base:], p, m)
	})
	return nil
}

// LRNBackward computes dx (N, C, H, W) from dy, x and y = LRN(x), all
// (N, C, H, W), recomputing the scale from x.
func (d *Device) LRNBackward(dx, dy, x, y gpu.Buffer, s gpu.LRNShape) error {
	return d.lrnBackward(dx, dy, x, y, s, false)
}

// lrnBackward is LRNBackward, or if relu ReLULRNBackward: on max(0, x),
// then dx zeroed where max(0, x) ≤ 0, as ReLUBackward would.
func (d *Device) lrnBackward(dx, dy, x, y gpu.Buffer, s gpu.LRNShape, relu bool) error {
	validate(s)
	dxd := d.data("dx", dx, s.Len()) // (N, C, H, W)
	dyd := d.data("dy", dy, s.Len()) // (N, C, H, W)
	xd := d.data("x", x, s.Len())    // (N, C, H, W)
	yd := d.data("y", y, s.Len())    // (N, C, H, W)
	p := newLRNParams(s, relu)
	d.lrnBlocks(s, 8, func(wk, base, m int) {
		lrnBackward(dxd[base:], dyd[base:], xd[base:], yd[base:], d.buf32(wk, 2*s.C*lrnBlock), p, m)
	})
	return nil
}

// lrnParams is what the LRN loops need of the shape: channel c of a
// block's pixel i is at c·hw + i.
type lrnParams struct {
	hw, c, half    int
	k, alpha, beta float32
	relu           bool
}

// newLRNParams returns s's lrnParams, with the fused ReLU if relu.
func newLRNParams(s gpu.LRNShape, relu bool) lrnParams {
	return lrnParams{hw: s.H * s.W, c: s.C, half: s.Size / 2, k: s.K, alpha: s.Alpha, beta: s.Beta, relu: relu}
}

// lrnIn is the LRN's input value: x, or max(0, x) for the fused ReLU.
func lrnIn(v float32, relu bool) float32 {
	if relu {
		return max(v, 0)
	}
	return v
}

// lrnSquare returns |lrnIn(v)²|, a window sum's term: the absolute value
// changes only a NaN, whose sign the square keeps, so that the assembly
// may take the ReLU in one instruction that leaves a NaN's sign.
func lrnSquare(v float32, relu bool) float32 {
	v = lrnIn(v, relu)
	return math.Float32frombits(math.Float32bits(v*v) &^ (1 << 31))
}

// lrnScale returns scale and inv = 1/scale for pixel i of channel c: the
// direct window sum of squares in the order of j, K + float32(α·sum), capped
// at MaxFloat32.
func lrnScale(x []float32, p lrnParams, c, i int) (scale, inv float32) {
	lo, hi := max(c-p.half, 0), min(c+p.half, p.c-1)
	sum := lrnSquare(x[lo*p.hw+i], p.relu)
	for j := lo + 1; j <= hi; j++ {
		sum = sum + lrnSquare(x[j*p.hw+i], p.relu)
	}
	scale = p.k + float32(p.alpha*sum)
	if math.MaxFloat32 < scale { // not NaN
		scale = math.MaxFloat32
	}
	return scale, 1 / scale
}

// lrnPower returns scale^−beta given inv = 1/scale: inv·scale^(1−β) with
// square roots for the usual exponents, math.Pow otherwise.
func lrnPower(scale, inv, beta float32) float32 {
	switch beta {
	case 0:
		return 1
	case 0.5:
		return inv * sqrt32(scale)
	case 0.75: // the paper's β
		return inv * sqrt32(sqrt32(scale))
	case 1:
		return inv
	}
	return float32(math.Pow(float64(scale), -float64(beta)))
}

// sqrt32 is the float32 square root (one SQRTSS on amd64): correctly
// rounded, as a float64 root of a float32 rounded to float32 is.
func sqrt32(x float32) float32 { return float32(math.Sqrt(float64(x))) }

// lrnForwardGo sets y = LRN(x) for pixels from…to−1 of a block, x and y
// starting at the block's channel 0: the reference for lrnForwardAsm.
// Each product is converted explicitly where an add follows, which
// forbids the compiler to fuse them (Go fuses multiply-adds on some
// architectures, and on amd64 when built for v3), so that every operation
// is rounded as in the assembly.
func lrnForwardGo(y, x []float32, p lrnParams, from, to int) {
	for c := range p.c {
		xc, yc := x[c*p.hw:][:to], y[c*p.hw:][:to]
		for i := from; i < to; i++ {
			scale, inv := lrnScale(x, p, c, i)
			yc[i] = lrnIn(xc[i], p.relu) * lrnPower(scale, inv, p.beta)
		}
	}
}

// lrnBackwardGo sets dx for pixels from…to−1 of a block, like
// lrnForwardGo, the reference for lrnRatioAsm, lrnBothAsm and lrnDxAsm
// (lrn_amd64.go). scratch holds, for pixel i of the block, p[c] at
// c·lrnBlock + i and ratio[c] at (C+c)·lrnBlock + i.
func lrnBackwardGo(dx, dy, x, y, scratch []float32, p lrnParams, from, to int) {
	power := func(c int) []float32 { return scratch[c*lrnBlock:][:to] }
	ratio := func(c int) []float32 { return scratch[(p.c+c)*lrnBlock:][:to] }
	for c := range p.c {
		dyc, yc, pc, rc := dy[c*p.hw:][:to], y[c*p.hw:][:to], power(c), ratio(c)
		for i := from; i < to; i++ {
			scale, inv := lrnScale(x, p, c, i)
			pc[i] = lrnPower(scale, inv, p.beta)
			rc[i] = float32(dyc[i]*yc[i]) * inv
		}
	}
	coef := 2 * p.alpha * p.beta
	for c := range p.c {
		lo, hi := max(c-p.half, 0), min(c+p.half, p.c-1)
		dxc, dyc, xc, pc := dx[c*p.hw:][:to], dy[c*p.hw:][:to], x[c*p.hw:][:to], power(c)
		for i := from; i < to; i++ {
			sum := ratio(lo)[i]
			for j := lo + 1; j <= hi; j++ {
				sum = sum + ratio(j)[i]
			}
			v := lrnIn(xc[i], p.relu)
			d := float32(dyc[i]*pc[i]) - float32(float32(coef*v)*sum)
			if p.relu && !(v > 0) {
				d = 0
			}
			dxc[i] = d
		}
	}
}
