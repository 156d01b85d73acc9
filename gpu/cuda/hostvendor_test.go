package cuda

import (
	"fmt"
	"strings"

	"github.com/alexnet-go/trainer/gpu"
	"github.com/alexnet-go/trainer/kernels"
)

// The fake cuDNN's LRN and pooling (hostlibs_test.go), for gpu.VendorOps:
// checked as the cuDNN 9 API reference documents them and computed from
// their arguments with the float64 references of package kernels.
//
//	cudnnSetLRNDescriptor(desc, unsigned lrnN, double lrnAlpha, double lrnBeta, double lrnK):
//	  BAD_PARAM unless CUDNN_LRN_MIN_N (1) ≤ lrnN ≤ CUDNN_LRN_MAX_N (16),
//	  lrnK ≥ CUDNN_LRN_MIN_K (1e-5), lrnBeta ≥ CUDNN_LRN_MIN_BETA (0.01).
//	  The window is [c − ⌊(n−1)/2⌋, c + n − 1 − ⌊(n−1)/2⌋] and
//	  y = x / (lrnK + lrnAlpha/lrnN · Σ x²)^lrnBeta.
//	cudnnLRNCrossChannelForward(h, desc, mode, α, xDesc, x, β, yDesc, y)
//	cudnnLRNCrossChannelBackward(h, desc, mode, α, yDesc, y, dyDesc, dy, xDesc, x, β, dxDesc, dx):
//	  BAD_PARAM for a NULL pointer, a mode other than
//	  CUDNN_LRN_CROSS_CHANNEL_DIM1 (0), or tensors of different sizes.
//	cudnnSetPooling2dDescriptor(desc, mode, nanOpt, windowH, windowW, padH, padW, strideH, strideW):
//	  BAD_PARAM for a window or stride ≤ 0, a negative padding, an
//	  unknown mode or NaN option.
//	cudnnPoolingForward(h, desc, α, xDesc, x, β, yDesc, y)
//	cudnnPoolingBackward(h, desc, α, yDesc, y, dyDesc, dy, xDesc, x, β, dxDesc, dx):
//	  BAD_PARAM unless y's N and C are x's and its H and W are
//	  1 + (H + 2·pad − window)/stride (cudnnGetPooling2dForwardOutputDim),
//	  and dy's and dx's descriptors match y's and x's.
//
// Every result is α·op + β·prior, the prior not read when β = 0.

type lrnDesc struct {
	name           string
	set            bool
	n              int
	alpha, beta, k float64
}

type poolDesc struct {
	name                   string
	set                    bool
	mode, nan              int32
	wh, ww, ph, pw, sh, sw int
}

func (c *hostDNN) vendor(lib *cudnn, handle func(h uintptr, call string) Result) {
	g := c.g
	lib.createLRN = func(d *uintptr) Result {
		*d = g.handle()
		x := &lrnDesc{name: fmt.Sprintf("lrn%d", len(c.lrns)+1)}
		c.lrns[*d] = x
		g.record("cudnnCreateLRNDescriptor() = %s", x.name)
		return 0
	}
	lib.setLRN = func(d uintptr, n uint32, alpha, beta, k float64) Result {
		const call = "cudnnSetLRNDescriptor"
		x, ok := c.lrns[d]
		if !ok {
			return g.fail(cudnnBadParam, call, "not an LRN descriptor")
		}
		g.record("%s(%s, lrnN=%d, lrnAlpha=%g, lrnBeta=%g, lrnK=%g)", call, x.name, n, alpha, beta, k)
		switch {
		case n < 1 || n > 16:
			return g.fail(cudnnBadParam, call, "lrnN %d outside [1, 16]", n)
		case k < 1e-5:
			return g.fail(cudnnBadParam, call, "lrnK %g < 1e-5", k)
		case beta < 0.01:
			return g.fail(cudnnBadParam, call, "lrnBeta %g < 0.01", beta)
		}
		*x = lrnDesc{name: x.name, set: true, n: int(n), alpha: alpha, beta: beta, k: k}
		return 0
	}
	lib.createPooling = func(d *uintptr) Result {
		*d = g.handle()
		x := &poolDesc{name: fmt.Sprintf("pool%d", len(c.pools)+1)}
		c.pools[*d] = x
		g.record("cudnnCreatePoolingDescriptor() = %s", x.name)
		return 0
	}
	lib.setPooling2d = func(d uintptr, mode, nan, wh, ww, ph, pw, sh, sw int32) Result {
		const call = "cudnnSetPooling2dDescriptor"
		x, ok := c.pools[d]
		if !ok {
			return g.fail(cudnnBadParam, call, "not a pooling descriptor")
		}
		modes := map[int32]string{cudnnPoolingMax: "CUDNN_POOLING_MAX", 1: "CUDNN_POOLING_AVERAGE_COUNT_INCLUDE_PADDING",
			2: "CUDNN_POOLING_AVERAGE_COUNT_EXCLUDE_PADDING", cudnnPoolingMaxDet: "CUDNN_POOLING_MAX_DETERMINISTIC"}
		nans := map[int32]string{cudnnNotPropagateNaN: "CUDNN_NOT_PROPAGATE_NAN", 1: "CUDNN_PROPAGATE_NAN"}
		g.record("%s(%s, %s, %s, window=%d×%d, pad=%d×%d, stride=%d×%d)", call, x.name, modes[mode], nans[nan], wh, ww, ph, pw, sh, sw)
		switch {
		case modes[mode] == "" || nans[nan] == "":
			return g.fail(cudnnBadParam, call, "mode %d, maxpoolingNanOpt %d", mode, nan)
		case wh <= 0 || ww <= 0 || sh <= 0 || sw <= 0 || ph < 0 || pw < 0:
			return g.fail(cudnnBadParam, call, "a window or stride ≤ 0, or a negative padding")
		case mode != cudnnPoolingMax && mode != cudnnPoolingMaxDet:
			return g.fail(cudnnNotSupported, call, "the host GPU computes max pooling only")
		case ph != 0 || pw != 0:
			return g.fail(cudnnNotSupported, call, "the host GPU pools without padding only")
		}
		*x = poolDesc{name: x.name, set: true, mode: mode, nan: nan, wh: int(wh), ww: int(ww), ph: int(ph), pw: int(pw), sh: int(sh), sw: int(sw)}
		return 0
	}
	lib.lrnForward = func(h, nd uintptr, mode int32, alpha *float32, xd uintptr, x uint64, beta *float32, yd uintptr, y uint64) Result {
		if r := handle(h, "cudnnLRNCrossChannelForward"); r != 0 {
			return r
		}
		return c.lrn(false, h, nd, mode, alpha, beta, [4]uintptr{xd, yd}, [4]uint64{x, y})
	}
	lib.lrnBackward = func(h, nd uintptr, mode int32, alpha *float32, yd uintptr, y uint64, dyd uintptr, dy uint64, xd uintptr, x uint64, beta *float32, dxd uintptr, dx uint64) Result {
		if r := handle(h, "cudnnLRNCrossChannelBackward"); r != 0 {
			return r
		}
		return c.lrn(true, h, nd, mode, alpha, beta, [4]uintptr{xd, yd, dyd, dxd}, [4]uint64{x, y, dy, dx})
	}
	lib.poolForward = func(h, pd uintptr, alpha *float32, xd uintptr, x uint64, beta *float32, yd uintptr, y uint64) Result {
		if r := handle(h, "cudnnPoolingForward"); r != 0 {
			return r
		}
		return c.pool(false, h, pd, alpha, beta, [4]uintptr{xd, yd}, [4]uint64{x, y})
	}
	lib.poolBackward = func(h, pd uintptr, alpha *float32, yd uintptr, y uint64, dyd uintptr, dy uint64, xd uintptr, x uint64, beta *float32, dxd uintptr, dx uint64) Result {
		if r := handle(h, "cudnnPoolingBackward"); r != 0 {
			return r
		}
		return c.pool(true, h, pd, alpha, beta, [4]uintptr{xd, yd, dyd, dxd}, [4]uint64{x, y, dy, dx})
	}
}

// tensors returns the set tensor descriptors ds of x, y, dy, dx (nil
// where a descriptor is not one), and their names with their pointers'
// for the record, in the order the calls take them: x, y forward; y, dy,
// x, dx backward.
func (c *hostDNN) tensors(ds [4]uintptr, ps [4]uint64, n int) ([]*desc4, string) {
	out := make([]*desc4, n)
	labels := []string{"x", "y", "dy", "dx"}
	names := make([]string, n)
	for i := range n {
		x := c.descs[ds[i]]
		name := "?"
		if x != nil && !x.filter && x.set {
			out[i], name = x, x.name
		}
		names[i] = fmt.Sprintf("%s=%s %s", labels[i], name, c.g.name(ps[i]))
	}
	if n == 4 {
		names = []string{names[1], names[2], names[0], names[3]}
	}
	return out, strings.Join(names, ", ")
}

// scale writes α·v + β·prior into out.
func scale(out []float32, v []float64, alpha, beta float32) {
	for i := range out {
		r := float64(alpha) * v[i]
		if beta != 0 {
			r += float64(beta) * float64(out[i])
		}
		out[i] = float32(r)
	}
}

func widen(v []float32) []float64 {
	out := make([]float64, len(v))
	for i, x := range v {
		out[i] = float64(x)
	}
	return out
}

// lrn is cudnnLRNCrossChannelForward (x, y) or Backward (x, y, dy, dx).
func (c *hostDNN) lrn(backward bool, h, nd uintptr, mode int32, alpha, beta *float32, ds [4]uintptr, ps [4]uint64) Result {
	g := c.g
	g.mu.Lock()
	defer g.mu.Unlock()
	call, n := "cudnnLRNCrossChannelForward", 2
	if backward {
		call, n = "cudnnLRNCrossChannelBackward", 4
	}
	t, names := c.tensors(ds, ps, n)
	nd0 := c.lrns[nd]
	dname := "?"
	if nd0 != nil {
		dname = nd0.name
	}
	if alpha == nil || beta == nil {
		g.record("%s(%s, %s, …)", call, c.handles[h], dname)
		return g.fail(cudnnBadParam, call, "alpha or beta is NULL")
	}
	g.record("%s(%s, %s, mode=%d, alpha=%g, %s, beta=%g)", call, c.handles[h], dname, mode, *alpha, names, *beta)
	switch {
	case nd0 == nil || !nd0.set:
		return g.fail(cudnnBadParam, call, "not a set LRN descriptor")
	case mode != cudnnLRNCrossChannel:
		return g.fail(cudnnBadParam, call, "lrnMode %d", mode)
	}
	for i, x := range t {
		if x == nil || ps[i] == 0 {
			return g.fail(cudnnBadParam, call, "tensor %d is not a set tensor descriptor with memory", i)
		}
		if x.n != t[0].n || x.c != t[0].c || x.h != t[0].h || x.w != t[0].w {
			return g.fail(cudnnBadParam, call, "the tensors' dimensions differ")
		}
	}
	x0 := t[0]
	s := gpu.LRNShape{N: x0.n, C: x0.c, H: x0.h, W: x0.w, Size: nd0.n, Alpha: float32(nd0.alpha / float64(nd0.n)), Beta: float32(nd0.beta), K: float32(nd0.k)}
	m := make([][]float32, n)
	for i := range n {
		if m[i] = g.floats(ps[i], s.Len()); m[i] == nil {
			return g.fail(cudnnBadParam, call, "tensor %d reaches past its allocation", i)
		}
	}
	if !backward {
		scale(m[1], kernels.LRN(widen(m[0]), s), *alpha, *beta)
		return 0
	}
	scale(m[3], kernels.LRNBackward(widen(m[2]), widen(m[0]), s), *alpha, *beta)
	return 0
}

// pool is cudnnPoolingForward (x, y) or Backward (x, y, dy, dx).
func (c *hostDNN) pool(backward bool, h, pd uintptr, alpha, beta *float32, ds [4]uintptr, ps [4]uint64) Result {
	g := c.g
	g.mu.Lock()
	defer g.mu.Unlock()
	call, n := "cudnnPoolingForward", 2
	if backward {
		call, n = "cudnnPoolingBackward", 4
	}
	t, names := c.tensors(ds, ps, n)
	p := c.pools[pd]
	dname := "?"
	if p != nil {
		dname = p.name
	}
	if alpha == nil || beta == nil {
		g.record("%s(%s, %s, …)", call, c.handles[h], dname)
		return g.fail(cudnnBadParam, call, "alpha or beta is NULL")
	}
	g.record("%s(%s, %s, alpha=%g, %s, beta=%g)", call, c.handles[h], dname, *alpha, names, *beta)
	if p == nil || !p.set {
		return g.fail(cudnnBadParam, call, "not a set pooling descriptor")
	}
	for i, x := range t {
		if x == nil || ps[i] == 0 {
			return g.fail(cudnnBadParam, call, "tensor %d is not a set tensor descriptor with memory", i)
		}
	}
	x, y := t[0], t[1]
	ph, pw := 1+(x.h+2*p.ph-p.wh)/p.sh, 1+(x.w+2*p.pw-p.ww)/p.sw
	if y.n != x.n || y.c != x.c || y.h != ph || y.w != pw || p.wh != p.ww || p.sh != p.sw {
		return g.fail(cudnnBadParam, call, "x %d×%d×%d×%d and y %d×%d×%d×%d do not fit the pooling (y should be %d×%d×%d×%d)",
			x.n, x.c, x.h, x.w, y.n, y.c, y.h, y.w, x.n, x.c, ph, pw)
	}
	if backward {
		dy, dx := t[2], t[3]
		if (dy.n != y.n || dy.c != y.c || dy.h != y.h || dy.w != y.w) || (dx.n != x.n || dx.c != x.c || dx.h != x.h || dx.w != x.w) {
			return g.fail(cudnnBadParam, call, "dy's or dx's dimensions differ from y's or x's")
		}
	}
	s := gpu.PoolShape{N: x.n, C: x.c, H: x.h, W: x.w, Size: p.wh, Stride: p.sh}
	lens := []int{s.XLen(), s.YLen(), s.YLen(), s.XLen()}
	m := make([][]float32, n)
	for i := range n {
		if m[i] = g.floats(ps[i], lens[i]); m[i] == nil {
			return g.fail(cudnnBadParam, call, "tensor %d reaches past its allocation", i)
		}
	}
	if !backward {
		scale(m[1], kernels.MaxPool(widen(m[0]), s), *alpha, *beta)
		return 0
	}
	scale(m[3], kernels.MaxPoolBackward(widen(m[2]), widen(m[0]), s), *alpha, *beta)
	return 0
}
