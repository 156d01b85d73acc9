package cpu

import (
	"fmt"
	"math"

	"github.com/alexnet-go/trainer/gpu"
)

// AddBias adds b[c] to every value of channel c of y (N, C, Inner);
// b (C).
func (d *Device) AddBias(y, b gpu.Buffer, s gpu.BiasShape) error {
	checkBias(s)
	yd := d.data("y", y, s.Len()) // (N, C, Inner)
	bd := d.data("b", b, s.C)     // (C)
	t := d.elemThreads(int64(s.Len()))
	parallelFor(s.N*s.C, t, func(lo, hi int) {
		for pl := lo; pl < hi; pl++ {
			addConst(yd[pl*s.Inner:(pl+1)*s.Inner], bd[pl%s.C])
		}
	})
	return nil
}

// BiasBackward sets db[c] = Σ_{n,i} dy[n,c,i], summed in float64;
// dy (N, C, Inner), db (C).
func (d *Device) BiasBackward(db, dy gpu.Buffer, s gpu.BiasShape) error {
	checkBias(s)
	dbd := d.data("db", db, s.C)     // (C)
	dyd := d.data("dy", dy, s.Len()) // (N, C, Inner)
	t := d.elemThreads(int64(s.Len()))
	parallelFor(s.C, t, func(lo, hi int) {
		for c := lo; c < hi; c++ {
			var acc float64
			for n := range s.N {
				at := (n*s.C + c) * s.Inner
				acc += sum64(dyd[at : at+s.Inner])
			}
			dbd[c] = float32(acc)
		}
	})
	return nil
}

// addConstGo sets v[i] += c: the reference for addConst's assembly.
func addConstGo(v []float32, c float32) {
	for i := range v {
		v[i] += c
	}
}

// sum64Go returns Σ v in float64, in four interleaved partial sums, the
// last values (fewer than four) added to the first: the reference for
// sum64's assembly.
func sum64Go(v []float32) float64 {
	var s0, s1, s2, s3 float64
	for len(v) >= 4 {
		w := v[:4]
		s0 += float64(w[0])
		s1 += float64(w[1])
		s2 += float64(w[2])
		s3 += float64(w[3])
		v = v[4:]
	}
	for _, x := range v {
		s0 += float64(x)
	}
	return (s0 + s1) + (s2 + s3)
}

// checkBias panics on a bias shape with a negative size.
func checkBias(s gpu.BiasShape) {
	if s.N < 0 || s.C < 0 || s.Inner < 0 {
		panic(fmt.Sprintf("cpu: invalid bias shape %+v", s))
	}
}

// ReLU sets y = max(0, x) over n values; y may be x.
func (d *Device) ReLU(y, x gpu.Buffer, n int) error {
	yd, xd := d.data("y", y, n), d.data("x", x, n)
	d.elementwise(n, func(lo, hi int) { relu(yd[lo:hi], xd[lo:hi]) })
	return nil
}

// ReLUBackward sets dx = dy where y > 0, else 0, over n values; dx may
// be dy.
func (d *Device) ReLUBackward(dx, dy, y gpu.Buffer, n int) error {
	dxd, dyd, yd := d.data("dx", dx, n), d.data("dy", dy, n), d.data("y", y, n)
	d.elementwise(n, func(lo, hi int) { reluBackward(dxd[lo:hi], dyd[lo:hi], yd[lo:hi]) })
	return nil
}

// reluGo sets y[i] = max(x[i], 0): the reference for relu's assembly.
func reluGo(y, x []float32) {
	x = x[:len(y)]
	for i, v := range x {
		y[i] = max(v, 0)
	}
}

// reluBackwardGo sets dx[i] = dy[i] where y[i] > 0, else +0, with a mask
// rather than a branch: y's sign is random in a net, so a branch would
// mispredict every other value. The reference for reluBackward's assembly.
func reluBackwardGo(dx, dy, y []float32) {
	dy, y = dy[:len(dx)], y[:len(dx)]
	for i, v := range y {
		var mask uint32 // a conditional move, not a branch
		if v > 0 {
			mask = ^uint32(0)
		}
		dx[i] = math.Float32frombits(math.Float32bits(dy[i]) & mask)
	}
}

// Dropout sets mask[i] to 1/(1−P) where gpu.DropoutKeep(Seed, i, P) keeps
// element i and to 0 elsewhere, and y = x·mask; y, mask, x (N). With P = 0
// the mask is all ones.
func (d *Device) Dropout(y, mask, x gpu.Buffer, s gpu.DropoutShape) error {
	if s.N < 0 || !(s.P >= 0 && s.P <= 1) {
		panic(fmt.Sprintf("cpu: invalid dropout shape %+v", s))
	}
	yd, md, xd := d.data("y", y, s.N), d.data("mask", mask, s.N), d.data("x", x, s.N)
	scale := 1 / (1 - s.P)
	if s.P == 0 {
		scale = 1
	}
	// gpu.DropoutKeep without its branch, which mispredicts every other
	// value at P = ½: the sign of its 24 random bits less the threshold
	// masks the scale's bits. P = 0 keeps everything.
	thresh := dropoutThreshold(s.P)
	bits := math.Float32bits(scale)
	d.elementwise(s.N, func(lo, hi int) {
		ys := yd[lo:hi]
		ms, xs := md[lo:hi][:len(ys)], xd[lo:hi][:len(ys)]
		for i := range ys {
			drop := uint32((gpu.DropoutBits(s.Seed, lo+i) - thresh) >> 63) // 1 where u < P
			m := math.Float32frombits(bits &^ -drop)
			ms[i] = m
			ys[i] = xs[i] * m
		}
	})
	return nil
}

// dropoutThreshold returns the least t of 24 bits with t·2⁻²⁴ ≥ p, so that
// gpu.DropoutKeep keeps element i exactly when gpu.DropoutBits(seed, i) ≥
// dropoutThreshold(p): p·2²⁴ is exact in float64, and u ≥ p when t
// reaches its ceiling.
func dropoutThreshold(p float32) uint64 {
	return uint64(math.Ceil(float64(p) * (1 << 24)))
}

// DropoutBackward sets dx = dy·mask over n values.
func (d *Device) DropoutBackward(dx, dy, mask gpu.Buffer, n int) error {
	dxd, dyd, md := d.data("dx", dx, n), d.data("dy", dy, n), d.data("mask", mask, n)
	d.elementwise(n, func(lo, hi int) {
		dxs, ms := dxd[lo:hi], md[lo:hi]
		for i, v := range dyd[lo:hi] {
			dxs[i] = v * ms[i]
		}
	})
	return nil
}

// Add accumulates y += x over n values.
func (d *Device) Add(y, x gpu.Buffer, n int) error {
	yd, xd := d.data("y", y, n), d.data("x", x, n)
	d.elementwise(n, func(lo, hi int) {
		ys := yd[lo:hi]
		for i, v := range xd[lo:hi] {
			ys[i] += v
		}
	})
	return nil
}

// Concat sets row n of dst (N, Σ Sizes) to the rows n of srcs, src i
// (N, Sizes[i]), side by side.
func (d *Device) Concat(dst gpu.Buffer, srcs []gpu.Buffer, s gpu.ConcatShape) error {
	dd, sd := d.concatArgs("dst", dst, "src", srcs, s)
	row := s.Row()
	parallelFor(s.N, d.elemThreads(int64(s.N)*int64(row)), func(lo, hi int) {
		for n := lo; n < hi; n++ {
			at := n * row
			for i, src := range sd {
				k := s.Sizes[i]
				copy(dd[at:at+k], src[n*k:(n+1)*k])
				at += k
			}
		}
	})
	return nil
}

// Split is Concat's inverse: dst i (N, Sizes[i]) gets its chunk of every
// row of src (N, Σ Sizes).
func (d *Device) Split(dsts []gpu.Buffer, src gpu.Buffer, s gpu.ConcatShape) error {
	sd, dd := d.concatArgs("src", src, "dst", dsts, s)
	row := s.Row()
	parallelFor(s.N, d.elemThreads(int64(s.N)*int64(row)), func(lo, hi int) {
		for n := lo; n < hi; n++ {
			at := n * row
			for i, dst := range dd {
				k := s.Sizes[i]
				copy(dst[n*k:(n+1)*k], sd[at:at+k])
				at += k
			}
		}
	})
	return nil
}

// concatArgs checks the buffers of a Concat or Split: the joined one and
// one part per size.
func (d *Device) concatArgs(joinedName string, joined gpu.Buffer, partName string, parts []gpu.Buffer, s gpu.ConcatShape) ([]float32, [][]float32) {
	if s.N < 0 || len(parts) != len(s.Sizes) {
		panic(fmt.Sprintf("cpu: concat shape %+v for %d buffers", s, len(parts)))
	}
	pd := make([][]float32, len(parts))
	for i, b := range parts {
		if s.Sizes[i] < 0 {
			panic(fmt.Sprintf("cpu: invalid concat shape %+v", s))
		}
		pd[i] = d.data(fmt.Sprintf("%s%d", partName, i), b, s.N*s.Sizes[i])
	}
	return d.data(joinedName, joined, s.N*s.Row()), pd
}

// SGD applies the paper's update (§5) to N parameters in float32:
// v ← Momentum·v − WeightDecay·LR·w − LR·dw, then w ← w + v.
func (d *Device) SGD(w, v, dw gpu.Buffer, s gpu.SGDShape) error {
	wd, vd, gd := d.data("w", w, s.N), d.data("v", v, s.N), d.data("dw", dw, s.N)
	decay := float32(s.WeightDecay * s.LR)
	d.elementwise(s.N, func(lo, hi int) { sgd(wd[lo:hi], vd[lo:hi], gd[lo:hi], s.Momentum, decay, s.LR) })
	return nil
}

// sgdGo sets v[i] = mom·v[i] − decay·w[i] − lr·g[i] and w[i] += v[i]: the
// reference for sgd's assembly.
func sgdGo(w, v, g []float32, mom, decay, lr float32) {
	v, g = v[:len(w)], g[:len(w)]
	for i, x := range w {
		// Each product is rounded on its own (no fused multiply-add)
		// so that the result does not depend on the compiler.
		vi := float32(mom*v[i]) - float32(decay*x) - float32(lr*g[i])
		v[i] = vi
		w[i] = x + vi
	}
}
