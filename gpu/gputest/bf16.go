package gputest

import (
	"fmt"
	"math"
	"reflect"
	"slices"
	"testing"

	"github.com/alexnet-go/trainer/gpu"
	"github.com/alexnet-go/trainer/kernels"
)

// RunBF16 is the conformance suite's bf16 pass, for a device in the bf16
// precision (package gpu/bf16 wraps a backend as one). It checks every
// operation of gpu.Ops against the float64 references of Run, rounded
// where the precision rounds:
//
//   - the activations and activation gradients an operation writes are
//     bf16 values: a float32 whose low 16 bits are zero, and the one that
//     rounding the exact result, to nearest with ties to even, gives —
//     or, where the exact result lies within float32 arithmetic's error of
//     a rounding boundary, the bf16 value on either side of it;
//   - the weights and biases are float32 masters, read as their bf16
//     roundings, and left unchanged; so is the x of the operations that
//     may read the net's float32 image (Conv, ConvBackwardFilter, Linear,
//     LinearBackwardWeights);
//   - the weight and bias gradients, SGD, the softmax's prob and loss and
//     dropout's mask are float32, within Run's tolerances of references
//     computed from the bf16 operands; Add into a weight gradient the
//     device wrote stays float32 too.
//
// The inputs that are activations are bf16 values, as the net's are. The
// finite-difference checks are Run's, on the unwrapped device: bf16
// outputs are too coarse for difference quotients. RunBF16 fails at once
// for a method of gpu.Ops that none of its checks covers.
func RunBF16(t *testing.T, dev gpu.Device) {
	t.Helper()
	if missing := bf16Uncovered(); len(missing) > 0 {
		t.Errorf("gpu.Ops has %v, which the bf16 pass does not check: decide its rounding in package gpu/bf16 and add a check to gputest's bf16Suite", missing)
	}
	root := &checker{dev: dev, t: t}
	for _, op := range bf16Suite {
		root.run(op.name, op.check)
	}
	if err := dev.Sync(); err != nil {
		t.Errorf("%s: Sync after the bf16 pass: %v", dev.Name(), err)
	}
}

// bf16Suite lists the checks of RunBF16 and the operations each covers.
var bf16Suite = []struct {
	name  string
	ops   []string
	check func(*checker)
}{
	{"Conv", []string{"Conv", "ConvBackwardData", "ConvBackwardFilter"}, bf16Conv},
	{"AddBias", []string{"AddBias", "BiasBackward"}, bf16Bias},
	{"Elementwise", []string{"ReLU", "ReLUBackward", "Tanh", "TanhBackward", "Add", "DropoutBackward"}, bf16Elementwise},
	{"LRN", []string{"LRN", "LRNBackward"}, bf16LRN},
	{"MaxPool", []string{"MaxPool", "MaxPoolBackward"}, bf16Pool},
	{"Linear", []string{"Linear", "LinearBackwardData", "LinearBackwardWeights"}, bf16Linear},
	{"Dropout", []string{"Dropout"}, bf16Dropout},
	{"SoftmaxCrossEntropy", []string{"SoftmaxCrossEntropy", "SoftmaxCrossEntropyBackward"}, bf16Softmax},
	{"ConcatSplit", []string{"Concat", "Split"}, checkConcatSplit}, // bf16 in, the same bf16 out
	{"SGD", []string{"SGD"}, checkSGD},                             // float32 masters: unchanged
	{"SGDMulti", []string{"SGDMulti"}, checkSGDMulti},
	{"Augment", []string{"Augment"}, bf16Augment},
	{"Fused", []string{"BiasReLU", "ReLUBiasBackward", "LinearReLU", "LinearReLUBackward", "ReLULRN", "ReLULRNBackward"}, bf16Fused},
}

// bf16Uncovered returns the methods of gpu.Ops no check of bf16Suite
// covers.
func bf16Uncovered() []string {
	var out []string
	ops := reflect.TypeFor[gpu.Ops]()
	for i := range ops.NumMethod() {
		name := ops.Method(i).Name
		if !slices.ContainsFunc(bf16Suite, func(s struct {
			name  string
			ops   []string
			check func(*checker)
		}) bool {
			return slices.Contains(s.ops, name)
		}) {
			out = append(out, name)
		}
	}
	return out
}

// bf16Round is v rounded to the nearest bfloat16, ties to even, worked in
// float64 from the format's definition (8 significant bits; the spacing of
// subnormals, 2⁻¹³³, below 2⁻¹²⁶; infinity past the largest finite value)
// rather than from float32 bits, so that it can disagree with a backend.
func bf16Round(v float64) float64 {
	if v == 0 || math.IsNaN(v) || math.IsInf(v, 0) {
		return v
	}
	_, e := math.Frexp(math.Abs(v)) // |v| in [2^(e−1), 2^e)
	ulp := math.Ldexp(1, max(e-8, -133))
	r := math.RoundToEven(math.Abs(v)/ulp) * ulp
	if r >= math.Ldexp(1, 128) {
		r = math.Inf(1)
	}
	return math.Copysign(r, v)
}

// bf16Values returns v rounded to bf16, as float32.
func bf16Values(v []float32) []float32 {
	out := make([]float32, len(v))
	for i, x := range v {
		out[i] = float32(bf16Round(float64(x)))
	}
	return out
}

// bsym is sym rounded to bf16, none zero: an activation's values.
func (c *checker) bsym(n int, a float64) []float32 {
	v := bf16Values(c.sym(n, a))
	for i := range v {
		for v[i] == 0 {
			v[i] = float32(bf16Round(float64(c.sym(1, a)[0])))
		}
	}
	return v
}

// closeBF16 checks got, a rounded output, against want, the exact result:
// got[i] must be a bf16 value between the roundings of want[i] ± tol,
// where tol = atol + rtol·|want[i]| is the error float32 arithmetic may
// add before the rounding. With tol small the two roundings are the same
// value but near a boundary between two bf16 values.
func (c *checker) closeBF16(name string, got []float32, want []float64, atol, rtol float64) bool {
	if len(got) != len(want) {
		c.errorf("%s: %d values, want %d", name, len(got), len(want))
		return false
	}
	bad := 0
	for i, g := range got {
		w := want[i]
		tol := atol + rtol*math.Abs(w)
		lo, hi := bf16Round(w-tol), bf16Round(w+tol)
		ok := math.Float32bits(g)&0xffff == 0 && float64(g) >= lo && float64(g) <= hi
		if math.IsNaN(w) {
			ok = math.IsNaN(float64(g))
		}
		if !ok {
			if bad++; bad <= maxShown {
				c.errorf("%s[%d]: got %.9g (bits %#08x), want the bf16 rounding of %.9g ± %.3g: %.9g (%#08x)",
					name, i, g, math.Float32bits(g), w, tol, bf16Round(w), math.Float32bits(float32(bf16Round(w))))
			}
		}
	}
	if bad > maxShown {
		c.errorf("%s: %d of %d values are not the bf16 rounding of the reference", name, bad, len(got))
	}
	return bad == 0
}

// closeBF16Scaled is closeBF16 with atol relative to the largest |want|,
// for long float32 sums.
func (c *checker) closeBF16Scaled(name string, got []float32, want []float64, atolRel, rtol float64) bool {
	return c.closeBF16(name, got, want, atolRel*maxAbs(want), rtol)
}

// unchanged checks that an operation left the float32 master b as v.
func (c *checker) unchanged(name string, b gpu.Buffer, v []float32) {
	got := c.get(b, len(v))
	for i := range got {
		if math.Float32bits(got[i]) != math.Float32bits(v[i]) {
			c.errorf("%s, a float32 operand, was written: [%d] = %.9g, was %.9g", name, i, got[i], v[i])
			return
		}
	}
}

func bf16Conv(c *checker) {
	for _, tc := range convShapes {
		c.run(tc.name, func(c *checker) {
			s, dev := tc.s, c.dev
			x, w := c.sym(s.XLen(), 1), c.sym(s.WLen(), 1) // float32: the image, a master
			xb, wb := c.in(x), c.in(w)
			x16, w16 := f64(bf16Values(x)), f64(bf16Values(w))
			yb := c.out(s.YLen())
			c.must(dev.Conv(yb, xb, wb, s), "Conv")
			c.closeBF16Scaled("y", c.get(yb, s.YLen()), convRef(x16, w16, s), sumAtol, sumRtol)

			dy := c.bsym(s.YLen(), 1)
			dyb, dxb, dwb := c.in(dy), c.out(s.XLen()), c.out(s.WLen())
			c.must(dev.ConvBackwardData(dxb, dyb, wb, s), "ConvBackwardData")
			c.must(dev.ConvBackwardFilter(dwb, dyb, xb, s), "ConvBackwardFilter")
			wantDx, wantDw := convBackwardRef(f64(dy), x16, w16, s)
			c.closeBF16Scaled("dx", c.get(dxb, s.XLen()), wantDx, sumAtol, sumRtol)
			c.closeScaled("dw (float32)", c.get(dwb, s.WLen()), wantDw, sumAtol, sumRtol)
			c.unchanged("w", wb, w)
			c.unchanged("x", xb, x)
		})
	}
}

func bf16Bias(c *checker) {
	for _, s := range []gpu.BiasShape{{N: 2, C: 5, Inner: 7}, {N: 4, C: 48, Inner: 27 * 27}} {
		c.run(fmt.Sprintf("%dx%dx%d", s.N, s.C, s.Inner), func(c *checker) {
			y0, b := c.bsym(s.Len(), 1), c.sym(s.C, 1)
			yb, bb := c.in(y0), c.in(b)
			c.must(c.dev.AddBias(yb, bb, s), "AddBias")
			c.closeBF16("y", c.get(yb, s.Len()), addBiasRef(f64(y0), f64(bf16Values(b)), s), 0, 1e-7)
			c.unchanged("b", bb, b)

			dy := c.bsym(s.Len(), 1)
			dbb := c.out(s.C)
			c.must(c.dev.BiasBackward(dbb, c.in(dy), s), "BiasBackward")
			c.closeScaled("db (float32)", c.get(dbb, s.C), biasBackwardRef(f64(dy), s), sumAtol, sumRtol)
		})
	}
}

func bf16Elementwise(c *checker) {
	const n = 70001 // several blocks and threads
	dev := c.dev
	x, dy := c.bsym(n, 3), c.bsym(n, 1)
	xb, dyb := c.in(x), c.in(dy)

	ry, rdx := c.out(n), c.out(n)
	c.must(dev.ReLU(ry, xb, n), "ReLU")
	c.must(dev.ReLUBackward(rdx, dyb, ry, n), "ReLUBackward")
	wantY, wantDx := make([]float64, n), make([]float64, n)
	for i := range x {
		if x[i] > 0 {
			wantY[i], wantDx[i] = float64(x[i]), float64(dy[i])
		}
	}
	c.closeBF16("ReLU y", c.get(ry, n), wantY, 0, 0)
	c.closeBF16("ReLUBackward dx", c.get(rdx, n), wantDx, 0, 0)

	ty, tdx := c.out(n), c.out(n)
	c.must(dev.Tanh(ty, xb, n), "Tanh")
	for i, v := range x {
		wantY[i] = math.Tanh(float64(v))
	}
	y := c.get(ty, n)
	c.closeBF16("Tanh y", y, wantY, tanhAtol, tanhRtol)
	c.must(dev.TanhBackward(tdx, dyb, ty, n), "TanhBackward")
	for i := range dy {
		wantDx[i] = float64(dy[i]) * (1 - float64(y[i])*float64(y[i]))
	}
	c.closeBF16("TanhBackward dx", c.get(tdx, n), wantDx, 1e-7, 1e-6)

	sum := c.in(dy)
	c.must(dev.Add(sum, xb, n), "Add")
	for i := range x {
		wantY[i] = float64(dy[i]) + float64(x[i])
	}
	c.closeBF16("Add y += x", c.get(sum, n), wantY, 0, 1e-7)

	mask := c.uniform(n, 1, 2) // any float32 factors
	ddx := c.out(n)
	c.must(dev.DropoutBackward(ddx, dyb, c.in(mask), n), "DropoutBackward")
	for i := range dy {
		wantDx[i] = float64(dy[i]) * float64(mask[i])
	}
	c.closeBF16("DropoutBackward dx", c.get(ddx, n), wantDx, 0, 1e-7) // a float32 product, then bf16
}

func bf16LRN(c *checker) {
	for _, tc := range lrnCases {
		c.run(tc.name, func(c *checker) {
			s, n := tc.s, tc.s.Len()
			x := c.bsym(n, tc.scale)
			xb, yb := c.in(x), c.out(n)
			c.must(c.dev.LRN(yb, xb, s), "LRN")
			c.closeBF16Scaled("y", c.get(yb, n), kernels.LRN(f64(x), s), 1e-5, 1e-4)
			dy := c.bsym(n, 1)
			dxb := c.out(n)
			c.must(c.dev.LRNBackward(dxb, c.in(dy), xb, yb, s), "LRNBackward")
			// LRNBackward reads the device's y, a bf16 rounding of LRN(x):
			// the reference from x alone is within a bf16 step of it.
			c.closeBF16Scaled("dx", c.get(dxb, n), kernels.LRNBackward(f64(dy), f64(x), s), 1e-4, 1e-2)
		})
	}
}

func bf16Pool(c *checker) {
	for _, tc := range poolShapes {
		c.run(tc.name, func(c *checker) {
			s := tc.s
			x := bf16Values(c.distinct(s.XLen(), 1.0/64)) // distinct in bf16 too, for up to 2⁹ values
			xb, yb := c.in(x), c.out(s.YLen())
			c.must(c.dev.MaxPool(yb, xb, s), "MaxPool")
			c.closeBF16("y", c.get(yb, s.YLen()), kernels.MaxPool(f64(x), s), 0, 0)
			dy := c.bsym(s.YLen(), 1)
			dxb := c.out(s.XLen())
			c.must(c.dev.MaxPoolBackward(dxb, c.in(dy), xb, yb, s), "MaxPoolBackward")
			c.closeBF16("dx", c.get(dxb, s.XLen()), kernels.MaxPoolBackward(f64(dy), f64(x), s), 0, 1e-7)
		})
	}
}

func bf16Linear(c *checker) {
	for _, s := range []gpu.LinearShape{{N: 3, In: 5, Out: 4}, {N: 8, In: 300, Out: 70}} {
		c.run(fmt.Sprintf("%dx%dx%d", s.N, s.In, s.Out), func(c *checker) {
			dev := c.dev
			x, w, b := c.sym(s.N*s.In, 1), c.sym(s.Out*s.In, 1), c.sym(s.Out, 1)
			xb, wb, bb := c.in(x), c.in(w), c.in(b)
			x16, w16 := f64(bf16Values(x)), f64(bf16Values(w))
			yb := c.out(s.N * s.Out)
			c.must(dev.Linear(yb, xb, wb, bb, s), "Linear")
			c.closeBF16Scaled("y", c.get(yb, s.N*s.Out), linearRef(x16, w16, f64(bf16Values(b)), s), sumAtol, sumRtol)

			dy := c.bsym(s.N*s.Out, 1)
			dyb, dxb, dwb, dbb := c.in(dy), c.out(s.N*s.In), c.out(s.Out*s.In), c.out(s.Out)
			c.must(dev.LinearBackwardData(dxb, dyb, wb, s), "LinearBackwardData")
			c.must(dev.LinearBackwardWeights(dwb, dbb, dyb, xb, s), "LinearBackwardWeights")
			wantDx, wantDw, wantDb := linearBackwardRef(f64(dy), x16, w16, s)
			c.closeBF16Scaled("dx", c.get(dxb, s.N*s.In), wantDx, sumAtol, sumRtol)
			dw := c.get(dwb, s.Out*s.In)
			c.closeScaled("dw (float32)", dw, wantDw, sumAtol, sumRtol)
			c.closeScaled("db (float32)", c.get(dbb, s.Out), wantDb, sumAtol, sumRtol)
			c.unchanged("w", wb, w)
			c.unchanged("b", bb, b)
			c.unchanged("x", xb, x)

			// Summing weight gradients (replicas) stays float32.
			g := c.sym(s.Out*s.In, 1e-3)
			c.must(dev.Add(dwb, c.in(g), s.Out*s.In), "Add into dw")
			want := make([]float64, len(g))
			for i := range g {
				want[i] = float64(dw[i]) + float64(g[i])
			}
			c.close("dw += g (float32)", c.get(dwb, s.Out*s.In), want, 0, 1e-7)
		})
	}
}

func bf16Dropout(c *checker) {
	const n = 20000
	for _, p := range []float32{0.5, 0.3} { // 1/(1−P) a power of two, and not
		c.run(fmt.Sprintf("p%g", p), func(c *checker) {
			x := c.bsym(n, 1)
			s := gpu.DropoutShape{N: n, P: p, Seed: 7}
			yb, mb := c.out(n), c.out(n)
			c.must(c.dev.Dropout(yb, mb, c.in(x), s), "Dropout")
			scale := float32(1 / (1 - float64(p)))
			wantMask, wantY := make([]float64, n), make([]float64, n)
			for i := range wantMask {
				if dropoutKeepRef(7, i, p) {
					wantMask[i] = float64(scale)
					wantY[i] = float64(x[i]) * float64(scale)
				}
			}
			c.close("mask (float32)", c.get(mb, n), wantMask, 0, 1e-7)
			c.closeBF16("y", c.get(yb, n), wantY, 0, 1e-7)
		})
	}
}

func bf16Softmax(c *checker) {
	for _, s := range []gpu.SoftmaxShape{{N: 3, Classes: 10}, {N: 16, Classes: 1000}} {
		c.run(fmt.Sprintf("%dx%d", s.N, s.Classes), func(c *checker) {
			nz := s.N * s.Classes
			z := c.bsym(nz, 5)
			labels := make([]float32, s.N)
			for i := range labels {
				labels[i] = float32(c.rng.IntN(s.Classes))
			}
			zb, lb, pb, lossb := c.in(z), c.in(labels), c.out(nz), c.out(s.N)
			c.must(c.dev.SoftmaxCrossEntropy(pb, lossb, zb, lb, s), "SoftmaxCrossEntropy")
			wantProb, wantLoss := softmaxRef(f64(z), f64(labels), s)
			prob := c.get(pb, nz)
			c.close("prob (float32)", prob, wantProb, 1e-6, 1e-4)
			c.close("loss (float32)", c.get(lossb, s.N), wantLoss, 6e-5, 1e-4)
			dzb := c.out(nz)
			c.must(c.dev.SoftmaxCrossEntropyBackward(dzb, pb, lb, s), "SoftmaxCrossEntropyBackward")
			c.closeBF16("dlogits", c.get(dzb, nz), softmaxBackwardRef(f64(prob), f64(labels), s), 0, 1e-6)
		})
	}
}

func bf16Augment(c *checker) {
	for _, tc := range augmentCases {
		c.run(tc.name, func(c *checker) {
			s := tc.s
			src := make([]uint8, s.N*s.C*s.Size*s.Size)
			for i := range src {
				src[i] = uint8(c.rng.IntN(256))
			}
			mean := make([]float32, s.MeanLen())
			for i := range mean {
				mean[i] = float32(255 * c.rng.Float64())
			}
			params := make([]float32, 0, s.ParamsLen())
			for range s.N {
				r := s.Size - s.Crop
				params = append(params, float32(c.rng.IntN(r+1)), float32(c.rng.IntN(r+1)), float32(c.rng.IntN(2)))
				params = append(params, c.sym(s.C, 30)...)
			}
			db := c.out(s.DstLen())
			c.must(c.dev.Augment(db, c.in(gpu.PackBytes(src)), c.in(mean), c.in(params), s), "Augment")
			// The float32 result rounded once more.
			c.closeBF16("dst", c.get(db, s.DstLen()), augmentRef(src, mean, params, s, true), 0, 0)
		})
	}
}

// bf16Fused checks each fused operation against its unfused sequence on
// the same bf16 device, bit for bit: the unfused operations are checked
// against the float64 references above, and a fusion must not move a
// rounding point (max(0, ·) and the ReLU's mask commute with rounding).
func bf16Fused(c *checker) {
	dev := c.dev
	same := func(name string, got, want gpu.Buffer, n int) {
		c.close(name, c.get(got, n), f64(c.get(want, n)), 0, 0)
	}
	bs := gpu.BiasShape{N: 4, C: 48, Inner: 27 * 27}
	n := bs.Len()
	y0, b := c.bsym(n, 1), c.sym(bs.C, 0.5)
	yb, ub, bb := c.in(y0), c.in(y0), c.in(b)
	c.must(dev.BiasReLU(yb, bb, bs), "BiasReLU")
	c.must(dev.AddBias(ub, bb, bs), "AddBias")
	c.must(dev.ReLU(ub, ub, n), "ReLU")
	same("BiasReLU y = AddBias, ReLU", yb, ub, n)
	c.unchanged("b", bb, b)
	dy := c.bsym(n, 1)
	dxb, dbb, udx, udb := c.out(n), c.out(bs.C), c.out(n), c.out(bs.C)
	c.must(dev.ReLUBiasBackward(dxb, dbb, c.in(dy), yb, bs), "ReLUBiasBackward")
	c.must(dev.ReLUBackward(udx, c.in(dy), ub, n), "ReLUBackward")
	c.must(dev.BiasBackward(udb, udx, bs), "BiasBackward")
	same("ReLUBiasBackward dx", dxb, udx, n)
	same("ReLUBiasBackward db (float32)", dbb, udb, bs.C)

	ls := gpu.LinearShape{N: 16, In: 300, Out: 70}
	x, w, lb := c.sym(ls.N*ls.In, 1), c.sym(ls.Out*ls.In, 1), c.sym(ls.Out, 1)
	xb, wb, lbb := c.in(x), c.in(w), c.in(lb)
	ly, uly := c.out(ls.N*ls.Out), c.out(ls.N*ls.Out)
	c.must(dev.LinearReLU(ly, xb, wb, lbb, ls), "LinearReLU")
	c.must(dev.Linear(uly, xb, wb, lbb, ls), "Linear")
	c.must(dev.ReLU(uly, uly, ls.N*ls.Out), "ReLU")
	same("LinearReLU y = Linear, ReLU", ly, uly, ls.N*ls.Out)
	ldy := c.bsym(ls.N*ls.Out, 1)
	fdy, udy := c.in(ldy), c.in(ldy)
	fdx, fdw, fdb := c.out(ls.N*ls.In), c.out(ls.Out*ls.In), c.out(ls.Out)
	udxl, udw, udbl := c.out(ls.N*ls.In), c.out(ls.Out*ls.In), c.out(ls.Out)
	c.must(dev.LinearReLUBackward(fdx, fdw, fdb, fdy, xb, wb, ly, ls), "LinearReLUBackward")
	c.must(dev.ReLUBackward(udy, udy, uly, ls.N*ls.Out), "ReLUBackward")
	c.must(dev.LinearBackwardWeights(udw, udbl, udy, xb, ls), "LinearBackwardWeights")
	c.must(dev.LinearBackwardData(udxl, udy, wb, ls), "LinearBackwardData")
	same("LinearReLUBackward dy masked", fdy, udy, ls.N*ls.Out)
	same("LinearReLUBackward dx", fdx, udxl, ls.N*ls.In)
	same("LinearReLUBackward dw (float32)", fdw, udw, ls.Out*ls.In)
	same("LinearReLUBackward db (float32)", fdb, udbl, ls.Out)
	c.unchanged("w", wb, w)
	c.unchanged("x", xb, x)

	for _, tc := range lrnCases {
		s, m := tc.s, tc.s.Len()
		lx := c.bsym(m, tc.scale)
		lxb, fy, r, uy := c.in(lx), c.out(m), c.out(m), c.out(m)
		c.must(dev.ReLULRN(fy, lxb, s), "ReLULRN")
		c.must(dev.ReLU(r, lxb, m), "ReLU")
		c.must(dev.LRN(uy, r, s), "LRN")
		same(tc.name+": ReLULRN y = ReLU, LRN", fy, uy, m)
		gdy := c.in(c.bsym(m, 1))
		fdx, udx := c.out(m), c.out(m)
		c.must(dev.ReLULRNBackward(fdx, gdy, lxb, fy, s), "ReLULRNBackward")
		c.must(dev.LRNBackward(udx, gdy, r, uy, s), "LRNBackward")
		c.must(dev.ReLUBackward(udx, udx, r, m), "ReLUBackward")
		same(tc.name+": ReLULRNBackward dx = LRNBackward, ReLUBackward", fdx, udx, m)
	}
}
