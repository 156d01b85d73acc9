package gputest_test

import (
	"fmt"
	"math"
	"slices"
	"strings"
	"testing"

	"github.com/alexnet-go/trainer/gpu"
	"github.com/alexnet-go/trainer/gpu/cpu"
	"github.com/alexnet-go/trainer/gpu/gputest"
)

// The suite is only as good as its power to fail: each broken device below
// wraps the CPU device and gets one operation subtly wrong, and the check
// for that operation must report it while passing the CPU device itself.

// brokenReLU flips the lowest mantissa bit of one output.
type brokenReLU struct{ gpu.Device }

func (d brokenReLU) ReLU(y, x gpu.Buffer, n int) error {
	if err := d.Device.ReLU(y, x, n); err != nil {
		return err
	}
	return edit(d.Device, y, n, func(v []float32) {
		v[n/2] = math.Float32frombits(math.Float32bits(v[n/2]) ^ 1)
	})
}

// brokenTanh computes tanh as (e^2x − 1)/(e^2x + 1) in float32, which
// overflows to NaN for x ≳ 44.
type brokenTanh struct{ gpu.Device }

func (d brokenTanh) Tanh(y, x gpu.Buffer, n int) error {
	v := get(d.Device, x, n)
	for i, a := range v {
		e := float32(math.Exp(float64(2 * a)))
		v[i] = (e - 1) / (e + 1)
	}
	return d.Device.Upload(y, v)
}

// brokenTanhBackward uses the derivative at the wrong point:
// dx = dy·(1 − tanh(y)²), as if y were the input.
type brokenTanhBackward struct{ gpu.Device }

func (d brokenTanhBackward) TanhBackward(dx, dy, y gpu.Buffer, n int) error {
	g, yv := get(d.Device, dy, n), get(d.Device, y, n)
	for i := range g {
		t := float32(math.Tanh(float64(yv[i])))
		g[i] *= 1 - t*t
	}
	return d.Device.Upload(dx, g)
}

// brokenLRN mixes up the conventions: it divides Alpha by Size, as Caffe
// does, where gpu.LRNShape says Alpha is used as it stands.
type brokenLRN struct{ gpu.Device }

func (d brokenLRN) LRN(y, x gpu.Buffer, s gpu.LRNShape) error {
	s.Alpha /= float32(s.Size)
	return d.Device.LRN(y, x, s)
}

// brokenLRNBackward forgets the cross-channel terms of the gradient:
// dx = dy·y/x = dy·D^−β.
type brokenLRNBackward struct{ gpu.Device }

func (d brokenLRNBackward) LRNBackward(dx, dy, x, y gpu.Buffer, s gpu.LRNShape) error {
	n := s.Len()
	g, xv, yv := get(d.Device, dy, n), get(d.Device, x, n), get(d.Device, y, n)
	for i := range g {
		g[i] *= yv[i] / xv[i]
	}
	return d.Device.Upload(dx, g)
}

// brokenMaxPoolBackward lets the last of equal maxima win, not the first.
type brokenMaxPoolBackward struct{ gpu.Device }

func (d brokenMaxPoolBackward) MaxPoolBackward(dx, dy, x, y gpu.Buffer, s gpu.PoolShape) error {
	xv, gv := get(d.Device, x, s.XLen()), get(d.Device, dy, s.YLen())
	out := make([]float32, s.XLen())
	i := 0
	for nc := range s.N * s.C {
		for p := range s.P() {
			for q := range s.Q() {
				best := -1
				for r := range s.Size {
					for t := range s.Size {
						j := (nc*s.H+p*s.Stride+r)*s.W + q*s.Stride + t
						if best < 0 || xv[j] >= xv[best] {
							best = j
						}
					}
				}
				out[best] += gv[i]
				i++
			}
		}
	}
	return d.Device.Upload(dx, out)
}

// brokenConv computes a true convolution, the filter flipped, instead of
// the cross-correlation the doc comment defines.
type brokenConv struct{ gpu.Device }

func (d brokenConv) Conv(y, x, w gpu.Buffer, s gpu.ConvShape) error {
	fb, err := flipped(d.Device, w, s)
	if err != nil {
		return err
	}
	defer d.Device.Free(fb)
	return d.Device.Conv(y, x, fb, s)
}

// flipped returns a buffer on dev holding the filter w (K,C,R,S) of s
// rotated by 180° in each R×S plane, for the caller to free.
func flipped(dev gpu.Device, w gpu.Buffer, s gpu.ConvShape) (gpu.Buffer, error) {
	wv := get(dev, w, s.WLen())
	flip := make([]float32, len(wv))
	for kc := range s.K * s.C {
		for r := range s.R {
			for t := range s.S {
				flip[(kc*s.R+r)*s.S+t] = wv[(kc*s.R+s.R-1-r)*s.S+s.S-1-t]
			}
		}
	}
	fb, err := dev.Alloc(len(flip))
	if err != nil {
		return nil, err
	}
	if err := dev.Upload(fb, flip); err != nil {
		dev.Free(fb)
		return nil, err
	}
	return fb, nil
}

// brokenConvBackwardData forgets to rotate the filter: it correlates dy
// with w as it is, where the gradient of a cross-correlation is a
// correlation with the filter turned by 180°.
type brokenConvBackwardData struct{ gpu.Device }

func (d brokenConvBackwardData) ConvBackwardData(dx, dy, w gpu.Buffer, s gpu.ConvShape) error {
	fb, err := flipped(d.Device, w, s)
	if err != nil {
		return err
	}
	defer d.Device.Free(fb)
	return d.Device.ConvBackwardData(dx, dy, fb, s)
}

// brokenConvBackwardFilter averages the filter gradient over the batch
// where the loss's gradient sums it (the 1/N is already in dlogits).
type brokenConvBackwardFilter struct{ gpu.Device }

func (d brokenConvBackwardFilter) ConvBackwardFilter(dw, dy, x gpu.Buffer, s gpu.ConvShape) error {
	if err := d.Device.ConvBackwardFilter(dw, dy, x, s); err != nil {
		return err
	}
	return edit(d.Device, dw, s.WLen(), func(v []float32) {
		for i := range v {
			v[i] /= float32(s.N)
		}
	})
}

// brokenBiasBackward sums over the wrong axis: it reads dy as NHWC,
// (N, Inner, C), where the layout is NCHW, (N, C, Inner).
type brokenBiasBackward struct{ gpu.Device }

func (d brokenBiasBackward) BiasBackward(db, dy gpu.Buffer, s gpu.BiasShape) error {
	g := get(d.Device, dy, s.Len())
	out := make([]float32, s.C)
	for n := range s.N {
		for i := range s.Inner {
			for c := range s.C {
				out[c] += g[(n*s.Inner+i)*s.C+c]
			}
		}
	}
	return d.Device.Upload(db, out)
}

// brokenLinear reads w as (In, Out), transposed, where it is (Out, In).
type brokenLinear struct{ gpu.Device }

func (d brokenLinear) Linear(y, x, w, b gpu.Buffer, s gpu.LinearShape) error {
	xv, wv, bv := get(d.Device, x, s.N*s.In), get(d.Device, w, s.Out*s.In), get(d.Device, b, s.Out)
	out := make([]float32, s.N*s.Out)
	for n := range s.N {
		for o := range s.Out {
			acc := bv[o]
			for i := range s.In {
				acc += xv[n*s.In+i] * wv[i*s.Out+o]
			}
			out[n*s.Out+o] = acc
		}
	}
	return d.Device.Upload(y, out)
}

// brokenLinearBackwardData multiplies by wᵀ read as (Out, In) the wrong
// way round: dx[n,i] = Σ_o dy[n,o]·w[i·Out+o].
type brokenLinearBackwardData struct{ gpu.Device }

func (d brokenLinearBackwardData) LinearBackwardData(dx, dy, w gpu.Buffer, s gpu.LinearShape) error {
	g, wv := get(d.Device, dy, s.N*s.Out), get(d.Device, w, s.Out*s.In)
	out := make([]float32, s.N*s.In)
	for n := range s.N {
		for i := range s.In {
			var acc float32
			for o := range s.Out {
				acc += g[n*s.Out+o] * wv[i*s.Out+o]
			}
			out[n*s.In+i] = acc
		}
	}
	return d.Device.Upload(dx, out)
}

// brokenLinearBackwardWeights accumulates into dw (a GEMM with β = 1)
// where it should overwrite it: whatever dw held is added in.
type brokenLinearBackwardWeights struct{ gpu.Device }

func (d brokenLinearBackwardWeights) LinearBackwardWeights(dw, db, dy, x gpu.Buffer, s gpu.LinearShape) error {
	old := get(d.Device, dw, s.Out*s.In)
	if err := d.Device.LinearBackwardWeights(dw, db, dy, x, s); err != nil {
		return err
	}
	return edit(d.Device, dw, s.Out*s.In, func(v []float32) {
		for i := range v {
			v[i] += old[i]
		}
	})
}

// brokenSGDDecay has the sign of the weight decay wrong: it pushes the
// weights away from zero.
type brokenSGDDecay struct{ gpu.Device }

func (d brokenSGDDecay) SGD(w, v, dw gpu.Buffer, s gpu.SGDShape) error {
	s.WeightDecay = -s.WeightDecay
	return d.Device.SGD(w, v, dw, s)
}

// brokenSGDMomentum applies the momentum twice: v ← μ·(μ·v) − ….
type brokenSGDMomentum struct{ gpu.Device }

func (d brokenSGDMomentum) SGD(w, v, dw gpu.Buffer, s gpu.SGDShape) error {
	if err := edit(d.Device, v, s.N, func(vv []float32) {
		for i := range vv {
			vv[i] *= s.Momentum
		}
	}); err != nil {
		return err
	}
	return d.Device.SGD(w, v, dw, s)
}

// brokenSGDMultiDecay gives every tensor the first tensor's weight decay.
type brokenSGDMultiDecay struct{ gpu.Device }

func (d brokenSGDMultiDecay) SGDMulti(ws, vs, dws []gpu.Buffer, s gpu.SGDMultiShape) error {
	decays := make([]float32, len(s.WeightDecays))
	for i := range decays {
		decays[i] = s.WeightDecays[0]
	}
	s.WeightDecays = decays
	return d.Device.SGDMulti(ws, vs, dws, s)
}

// brokenSGDMultiLast leaves the last tensor alone.
type brokenSGDMultiLast struct{ gpu.Device }

func (d brokenSGDMultiLast) SGDMulti(ws, vs, dws []gpu.Buffer, s gpu.SGDMultiShape) error {
	k := len(ws) - 1
	if k < 0 {
		return nil
	}
	s.Sizes, s.WeightDecays = s.Sizes[:k], s.WeightDecays[:k]
	return d.Device.SGDMulti(ws[:k], vs[:k], dws[:k], s)
}

// brokenSGDMultiFMA rounds the update as a fused multiply-add would: the
// right value to a tolerance, not the unfused bits.
type brokenSGDMultiFMA struct{ gpu.Device }

func (d brokenSGDMultiFMA) SGDMulti(ws, vs, dws []gpu.Buffer, s gpu.SGDMultiShape) error {
	for i := range ws {
		n := s.Sizes[i]
		w, v, dw := get(d.Device, ws[i], n), get(d.Device, vs[i], n), get(d.Device, dws[i], n)
		decay := float64(s.WeightDecays[i] * s.LR)
		for j := range w {
			vi := float32(float64(s.Momentum)*float64(v[j]) - decay*float64(w[j]) - float64(s.LR)*float64(dw[j]))
			v[j], w[j] = vi, w[j]+vi
		}
		if err := d.Device.Upload(ws[i], w); err != nil {
			return err
		}
		if err := d.Device.Upload(vs[i], v); err != nil {
			return err
		}
	}
	return nil
}

// brokenConcat joins the sources in reverse order (tower b before tower a).
type brokenConcat struct{ gpu.Device }

func (d brokenConcat) Concat(dst gpu.Buffer, srcs []gpu.Buffer, s gpu.ConcatShape) error {
	srcs, s.Sizes = slices.Clone(srcs), slices.Clone(s.Sizes)
	slices.Reverse(srcs)
	slices.Reverse(s.Sizes)
	return d.Device.Concat(dst, srcs, s)
}

// brokenSplit starts every chunk after the first one value early, an
// off-by-one in the offset: each takes the last value of the chunk before.
type brokenSplit struct{ gpu.Device }

func (d brokenSplit) Split(dsts []gpu.Buffer, src gpu.Buffer, s gpu.ConcatShape) error {
	row := s.Row()
	v := get(d.Device, src, s.N*row)
	for i, dst := range dsts {
		k := s.Sizes[i]
		out := make([]float32, s.N*k)
		for n := range s.N {
			at := n * row
			for _, size := range s.Sizes[:i] {
				at += size
			}
			if i > 0 {
				at--
			}
			copy(out[n*k:(n+1)*k], v[at:at+k])
		}
		if err := d.Device.Upload(dst, out); err != nil {
			return err
		}
	}
	return nil
}

// brokenAdd writes one value past the end of y.
type brokenAdd struct{ gpu.Device }

func (d brokenAdd) Add(y, x gpu.Buffer, n int) error {
	return d.Device.Add(y, x, min(n+1, y.Len(), x.Len()))
}

// brokenDropout draws its mask from seed+1.
type brokenDropout struct{ gpu.Device }

func (d brokenDropout) Dropout(y, mask, x gpu.Buffer, s gpu.DropoutShape) error {
	s.Seed++
	return d.Device.Dropout(y, mask, x, s)
}

// brokenDropoutKeep keeps the units keep chooses, with the right values:
// mask 1/(1−P) where kept, else 0, and y = x·mask.
type brokenDropoutKeep struct {
	gpu.Device
	keep func(seed uint64, i int, p float32) bool
}

func (d brokenDropoutKeep) Dropout(y, mask, x gpu.Buffer, s gpu.DropoutShape) error {
	xv := get(d.Device, x, s.N)
	m := make([]float32, s.N)
	for i := range m {
		if d.keep(s.Seed, i, s.P) {
			m[i] = 1 / (1 - s.P)
		}
		xv[i] *= m[i]
	}
	if err := d.Device.Upload(mask, m); err != nil {
		return err
	}
	return d.Device.Upload(y, xv)
}

// The wrong units: counted from 1 instead of 0 (each takes its
// neighbour's decision), kept where they should be dropped, and kept in
// runs of two (a generator drawn once per pair, as a kernel that gives
// each thread two elements and forgets to advance the counter would), and
// the same units whatever the seed.
var (
	keepShifted  = func(seed uint64, i int, p float32) bool { return gpu.DropoutKeep(seed, i+1, p) }
	keepInverted = func(seed uint64, i int, p float32) bool { return !gpu.DropoutKeep(seed, i, p) }
	keepPairs    = func(seed uint64, i int, p float32) bool { return gpu.DropoutKeep(seed, i&^1, p) }
	keepNoSeed   = func(_ uint64, i int, p float32) bool { return gpu.DropoutKeep(0, i, p) }
)

// brokenReLUBackward passes the gradient where y ≥ 0, so also where the
// unit is off (y = 0).
type brokenReLUBackward struct{ gpu.Device }

func (d brokenReLUBackward) ReLUBackward(dx, dy, y gpu.Buffer, n int) error {
	g, yv := get(d.Device, dy, n), get(d.Device, y, n)
	for i := range g {
		if yv[i] < 0 {
			g[i] = 0
		}
	}
	return d.Device.Upload(dx, g)
}

// brokenAddBias adds the bias as if y were NHWC: channel i mod C.
type brokenAddBias struct{ gpu.Device }

func (d brokenAddBias) AddBias(y, b gpu.Buffer, s gpu.BiasShape) error {
	yv, bv := get(d.Device, y, s.Len()), get(d.Device, b, s.C)
	for i := range yv {
		yv[i] += bv[i%s.C]
	}
	return d.Device.Upload(y, yv)
}

// brokenMaxPool starts each window's maximum at 0, as if its input had
// been through a ReLU: a window of negative values gives 0.
type brokenMaxPool struct{ gpu.Device }

func (d brokenMaxPool) MaxPool(y, x gpu.Buffer, s gpu.PoolShape) error {
	if err := d.Device.MaxPool(y, x, s); err != nil {
		return err
	}
	return edit(d.Device, y, s.YLen(), func(v []float32) {
		for i := range v {
			v[i] = max(v[i], 0)
		}
	})
}

// brokenDropoutBackward reads the mask as kept or not and forgets its
// scale: dx = dy where mask ≠ 0.
type brokenDropoutBackward struct{ gpu.Device }

func (d brokenDropoutBackward) DropoutBackward(dx, dy, mask gpu.Buffer, n int) error {
	g, m := get(d.Device, dy, n), get(d.Device, mask, n)
	for i := range g {
		if m[i] == 0 {
			g[i] = 0
		}
	}
	return d.Device.Upload(dx, g)
}

// brokenSoftmaxBackward forgets the 1/N of the batch's mean loss.
type brokenSoftmaxBackward struct{ gpu.Device }

func (d brokenSoftmaxBackward) SoftmaxCrossEntropyBackward(dlogits, prob, labels gpu.Buffer, s gpu.SoftmaxShape) error {
	if err := d.Device.SoftmaxCrossEntropyBackward(dlogits, prob, labels, s); err != nil {
		return err
	}
	return edit(d.Device, dlogits, s.N*s.Classes, func(v []float32) {
		for i := range v {
			v[i] *= float32(s.N)
		}
	})
}

// brokenSoftmax forgets to take out each row's maximum: exp overflows.
type brokenSoftmax struct{ gpu.Device }

func (d brokenSoftmax) SoftmaxCrossEntropy(prob, loss, logits, labels gpu.Buffer, s gpu.SoftmaxShape) error {
	z := get(d.Device, logits, s.N*s.Classes)
	lab := get(d.Device, labels, s.N)
	p := make([]float32, len(z))
	l := make([]float32, s.N)
	for n := range s.N {
		var sum float32
		for j := range s.Classes {
			p[n*s.Classes+j] = float32(math.Exp(float64(z[n*s.Classes+j])))
			sum += p[n*s.Classes+j]
		}
		for j := range s.Classes {
			p[n*s.Classes+j] /= sum
		}
		l[n] = -float32(math.Log(float64(p[n*s.Classes+int(lab[n])])))
	}
	if err := d.Device.Upload(prob, p); err != nil {
		return err
	}
	return d.Device.Upload(loss, l)
}

// brokenBiasReLU rectifies before adding the bias: max(0, y) + b.
type brokenBiasReLU struct{ gpu.Device }

func (d brokenBiasReLU) BiasReLU(y, b gpu.Buffer, s gpu.BiasShape) error {
	return first(d.Device.ReLU(y, y, s.Len()), d.Device.AddBias(y, b, s))
}

// brokenReLUBiasBackward sums the gradient before the ReLU's mask.
type brokenReLUBiasBackward struct{ gpu.Device }

func (d brokenReLUBiasBackward) ReLUBiasBackward(dx, db, dy, y gpu.Buffer, s gpu.BiasShape) error {
	return first(d.Device.BiasBackward(db, dy, s), d.Device.ReLUBackward(dx, dy, y, s.Len()))
}

// brokenLinearReLUBackward masks a copy of dy, leaving dy as it was.
type brokenLinearReLUBackward struct{ gpu.Device }

func (d brokenLinearReLUBackward) LinearReLUBackward(dx, dw, db, dy, x, w, y gpu.Buffer, s gpu.LinearShape) error {
	keep := get(d.Device, dy, s.N*s.Out)
	if err := d.Device.LinearReLUBackward(dx, dw, db, dy, x, w, y, s); err != nil {
		return err
	}
	return d.Device.Upload(dy, keep)
}

// brokenReLULRN normalizes first and rectifies after: ReLU(LRN(x)), where
// the negative neighbours still count in the scale.
type brokenReLULRN struct{ gpu.Device }

func (d brokenReLULRN) ReLULRN(y, x gpu.Buffer, s gpu.LRNShape) error {
	return first(d.Device.LRN(y, x, s), d.Device.ReLU(y, y, s.Len()))
}

// brokenReLULRNBackward forgets the ReLU's mask.
type brokenReLULRNBackward struct{ gpu.Device }

func (d brokenReLULRNBackward) ReLULRNBackward(dx, dy, x, y gpu.Buffer, s gpu.LRNShape) error {
	xv := get(d.Device, x, s.Len())
	for i := range xv {
		xv[i] = max(xv[i], 0)
	}
	r, err := d.Device.Alloc(s.Len())
	if err != nil {
		return err
	}
	defer d.Device.Free(r)
	return first(d.Device.Upload(r, xv), d.Device.LRNBackward(dx, dy, r, y, s))
}

func first(errs ...error) error {
	for _, e := range errs {
		if e != nil {
			return e
		}
	}
	return nil
}

func get(dev gpu.Device, b gpu.Buffer, n int) []float32 {
	v := make([]float32, n)
	if err := dev.Download(v, b); err != nil {
		panic(err)
	}
	return v
}

func edit(dev gpu.Device, b gpu.Buffer, n int, f func([]float32)) error {
	v := get(dev, b, n)
	f(v)
	return dev.Upload(b, v)
}

func TestSuiteCatchesBrokenOps(t *testing.T) {
	healthy := cpu.New(cpu.Options{Threads: 1})
	for _, tc := range []struct {
		name, check string
		dev         gpu.Device
		want        string // in the failures
	}{
		{"ReLU_bit", "ReLU", brokenReLU{healthy}, ": y: 1 of"},
		{"ReLUBackward_at_zero", "ReLU", brokenReLUBackward{healthy}, "17: dx:"},
		{"AddBias_NHWC", "AddBias", brokenAddBias{healthy}, "conv: y:"},
		{"MaxPool_from_zero", "MaxPool", brokenMaxPool{healthy}, ": y:"},
		{"DropoutBackward_unscaled", "Dropout", brokenDropoutBackward{healthy}, "p0.5: dx = dy·mask"},
		{"SoftmaxBackward_no_mean", "SoftmaxCrossEntropy", brokenSoftmaxBackward{healthy}, "10: dlogits:"},
		{"Tanh_overflow", "Tanh", brokenTanh{healthy}, "saturated: tanh of"},
		{"TanhBackward_wrong_point", "Tanh", brokenTanhBackward{healthy}, "1000: dx:"},
		{"LRN_alpha_over_n", "LRN", brokenLRN{healthy}, "paper_C7: y:"},
		{"LRNBackward_no_cross_terms", "LRN", brokenLRNBackward{healthy}, "strong_C12: dx vs finite differences"},
		{"MaxPoolBackward_last_max", "MaxPool", brokenMaxPoolBackward{healthy}, "dx with ties"},
		{"Conv_flipped", "Conv", brokenConv{healthy}, "3x3_s1_p1: y:"},
		{"ConvBackwardData_unrotated", "Conv", brokenConvBackwardData{healthy}, "3x3_s1_p1: dx:"},
		{"ConvBackwardFilter_batch_mean", "Conv", brokenConvBackwardFilter{healthy}, "11x11_s4_p0: dw:"},
		{"BiasBackward_NHWC", "AddBias", brokenBiasBackward{healthy}, "conv: db:"},
		{"Linear_transposed", "Linear", brokenLinear{healthy}, "N3_17x5: y:"},
		{"LinearBackwardData_transposed", "Linear", brokenLinearBackwardData{healthy}, "N3_17x5: dx:"},
		{"LinearBackwardWeights_accumulates", "Linear", brokenLinearBackwardWeights{healthy}, "N3_17x5: dw:"},
		{"SGD_decay_sign", "SGD", brokenSGDDecay{healthy}, "paper: v after step 1:"},
		{"SGD_momentum_twice", "SGD", brokenSGDMomentum{healthy}, "paper: v after step 1:"},
		{"SGDMulti_one_decay", "SGDMulti", brokenSGDMultiDecay{healthy}, "paper: tensor 1: v after step 1:"},
		{"SGDMulti_last_skipped", "SGDMulti", brokenSGDMultiLast{healthy}, "paper: tensor 5: v after step 1:"},
		{"SGDMulti_fused_rounding", "SGDMulti", brokenSGDMultiFMA{healthy}, "not the same bits"},
		{"Concat_reversed", "ConcatSplit", brokenConcat{healthy}, "2: dst:"},
		{"Split_offset_off_by_one", "ConcatSplit", brokenSplit{healthy}, "2: dst 1:"},
		{"Add_past_end", "Add", brokenAdd{healthy}, "written past its end"},
		{"Dropout_seed", "Dropout", brokenDropout{healthy}, "mask (seed 1)"},
		{"Dropout_index_shifted", "Dropout", brokenDropoutKeep{healthy, keepShifted}, "p0.5: mask (seed 1): 34"},
		{"Dropout_inverted", "Dropout", brokenDropoutKeep{healthy, keepInverted}, "p0.2: seed 1 keeps 0.2"},
		{"Dropout_pairs", "Dropout", brokenDropoutKeep{healthy, keepPairs}, "the mask depends on the index"},
		{"Dropout_seed_ignored", "Dropout", brokenDropoutKeep{healthy, keepNoSeed}, "the masks are not independent"},
		{"Softmax_overflow", "SoftmaxCrossEntropy", brokenSoftmax{healthy}, "large_100: logits in ±100 give"},
		{"BiasReLU_rectified_first", "BiasReLU", brokenBiasReLU{healthy}, "conv: y:"},
		{"ReLUBiasBackward_unmasked_sum", "BiasReLU", brokenReLUBiasBackward{healthy}, "conv: db:"},
		{"LinearReLUBackward_dy_unmasked", "LinearReLU", brokenLinearReLUBackward{healthy}, "N3_17x5: dy masked (dx true)"},
		{"ReLULRN_rectified_after", "ReLULRN", brokenReLULRN{healthy}, "paper_C7: y:"},
		{"ReLULRNBackward_unmasked", "ReLULRN", brokenReLULRNBackward{healthy}, "paper_C7: dx:"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if fails := gputest.Failures(healthy, tc.check); len(fails) > 0 {
				t.Fatalf("the CPU device fails %s:\n%s", tc.check, strings.Join(fails, "\n"))
			}
			fails := strings.Join(gputest.Failures(tc.dev, tc.check), "\n")
			switch {
			case fails == "":
				t.Errorf("%s passes a device that is broken", tc.check)
			case !strings.Contains(fails, tc.want):
				t.Errorf("%s fails the broken device, but with no failure containing %q:\n%s", tc.check, tc.want, fails)
			default:
				first, _, _ := strings.Cut(fails, "\n  ")
				t.Logf("as it should, %s reports: %s …", tc.check, first)
			}
		})
	}
}

// TestRunOnCPU runs the whole suite on the CPU device, so that a change to
// the suite that breaks it shows here too (gpu/cpu's tests run it as well).
func TestRunOnCPU(t *testing.T) {
	gputest.Run(t, cpu.New(cpu.Options{Threads: 1}))
}

func TestRunPair(t *testing.T) {
	gputest.RunPair(t, cpu.New(cpu.Options{Index: 0, Threads: 1}), cpu.New(cpu.Options{Index: 1, Threads: 1}))
}

func TestCompare(t *testing.T) {
	want := []float64{1, 2, 3, math.Inf(1)}
	if msg := gputest.Compare("v", []float32{1, 2.0001, 3, float32(math.Inf(1))}, want, nil, 0, 1e-4); msg != "" {
		t.Errorf("values within rtol and equal infinities: %s", msg)
	}
	msg := gputest.Compare("v", []float32{1, float32(math.NaN()), 3.1, 0}, want, nil, 0, 1e-4)
	for _, s := range []string{"3 of 4 values", "v[1]: got NaN", "v[2]: got 3.0999999", "v[3]: got 0, want +Inf"} {
		if !strings.Contains(msg, s) {
			t.Errorf("report lacks %q:\n%s", s, msg)
		}
	}
	if msg := gputest.Compare("v", []float32{1}, want, nil, 0, 0); !strings.Contains(msg, "1 values, want 4") {
		t.Errorf("length mismatch: %s", msg)
	}
	// At most 10 mismatches are listed.
	got := make([]float32, 50)
	msg = gputest.Compare("v", got, make([]float64, 50), nil, 0, 0)
	if msg != "" {
		t.Errorf("equal zeros: %s", msg)
	}
	msg = gputest.Compare("v", got, want50(), nil, 0, 0)
	if n := strings.Count(msg, "\n"); n != 10 || !strings.Contains(msg, "50 of 50") {
		t.Errorf("want 10 listed mismatches of 50, got %d lines:\n%s", n, msg)
	}
}

func want50() []float64 {
	w := make([]float64, 50)
	for i := range w {
		w[i] = float64(i + 1)
	}
	return w
}

// recorder is a testing.TB that records errors instead of failing.
type recorder struct {
	testing.TB
	errs []string
}

func (r *recorder) Helper()           {}
func (r *recorder) Error(args ...any) { r.errs = append(r.errs, fmt.Sprint(args...)) }
func (r *recorder) Errorf(format string, args ...any) {
	r.errs = append(r.errs, fmt.Sprintf(format, args...))
}

func TestClose(t *testing.T) {
	r := &recorder{TB: t}
	gputest.Close(r, "y", []float32{1, 2, 3}, []float32{1, 2, 3.0001}, 1e-3, 0)
	if len(r.errs) != 0 {
		t.Errorf("Close failed values within atol: %v", r.errs)
	}
	gputest.Close(r, "y", []float32{1, 2, 3}, []float32{1, 2.5, 3}, 1e-3, 1e-3)
	if len(r.errs) != 1 {
		t.Errorf("Close reported %d failures for one mismatch, want 1", len(r.errs))
	}
}

func TestUploadDownload(t *testing.T) {
	dev := cpu.New(cpu.Options{Threads: 1})
	v := []float32{1, -2, 3.5}
	b := gputest.Upload(t, dev, v)
	defer dev.Free(b)
	gputest.Close(t, "round trip", gputest.Download(t, b), v, 0, 0)
}

// The dropout reference is SplitMix64: its outputs from state 1234567 are
// the published ones (Vigna's splitmix64.c, as Rosetta Code's
// "Pseudo-random numbers/Splitmix64" lists them), and gpu.DropoutKeep,
// which the CPU device calls, agrees with it.
func TestDropoutReference(t *testing.T) {
	for k, want := range []uint64{6457827717110365317, 3203168211198807973, 9817491932198370423, 4593380528125082431, 16408922859458223821} {
		if got := gputest.SplitMix64(1234567, uint64(k+1)); got != want {
			t.Errorf("SplitMix64 output %d from 1234567: %d, want %d", k+1, got, want)
		}
	}
	differ := 0
	for _, seed := range []uint64{0, 1, 42, 1 << 63, math.MaxUint64} {
		for _, p := range []float32{0, 0.1, 0.5, 0.9, 1} {
			for i := range 20000 {
				if gputest.DropoutKeepRef(seed, i, p) != gpu.DropoutKeep(seed, i, p) {
					differ++
				}
			}
		}
	}
	if differ > 0 {
		t.Errorf("gpu.DropoutKeep disagrees with the reference at %d of 500000 decisions", differ)
	}
	// p is a probability of dropping: 0 keeps all, 1 keeps none.
	for i := range 1000 {
		if !gputest.DropoutKeepRef(7, i, 0) || gputest.DropoutKeepRef(7, i, 1) {
			t.Fatalf("element %d: p = 0 must keep and p = 1 drop", i)
		}
	}
}
