package cuda

import (
	"fmt"

	"github.com/alexnet-go/trainer/gpu"
)

// convPlan is what a convolution shape needs from cuDNN: its descriptors
// and, found on first use of each direction, the fastest algorithm and its
// workspace.
type convPlan struct {
	x, y, conv, w uintptr // tensor, tensor, convolution, filter descriptors
	fwd, bwdData  algo
	bwdFilter     algo
}

// algo is a cuDNN algorithm chosen for one direction of a plan.
type algo struct {
	found bool
	id    int32
	ws    uint64 // workspace bytes
}

// plan returns the descriptors of shape s, creating them on first use.
// The caller holds d's context.
func (d *Device) plan(s gpu.ConvShape) (*convPlan, error) {
	if p, ok := d.convs[s]; ok {
		return p, nil
	}
	c := d.lib.dnn
	p := &convPlan{}
	steps := []struct {
		r    func() Result
		call string
	}{
		{func() Result { return c.createTensor(&p.x) }, "cudnnCreateTensorDescriptor"},
		{func() Result { return c.createTensor(&p.y) }, "cudnnCreateTensorDescriptor"},
		{func() Result { return c.createFilter(&p.w) }, "cudnnCreateFilterDescriptor"},
		{func() Result { return c.createConv(&p.conv) }, "cudnnCreateConvolutionDescriptor"},
		{func() Result {
			return c.setTensor4d(p.x, cudnnNCHW, cudnnFloat, int32(s.N), int32(s.C), int32(s.H), int32(s.W))
		}, fmt.Sprintf("cudnnSetTensor4dDescriptor(x %d×%d×%d×%d)", s.N, s.C, s.H, s.W)},
		{func() Result {
			return c.setTensor4d(p.y, cudnnNCHW, cudnnFloat, int32(s.N), int32(s.K), int32(s.P()), int32(s.Q()))
		}, fmt.Sprintf("cudnnSetTensor4dDescriptor(y %d×%d×%d×%d)", s.N, s.K, s.P(), s.Q())},
		{func() Result {
			return c.setFilter4d(p.w, cudnnFloat, cudnnNCHW, int32(s.K), int32(s.C), int32(s.R), int32(s.S))
		}, fmt.Sprintf("cudnnSetFilter4dDescriptor(%d×%d×%d×%d)", s.K, s.C, s.R, s.S)},
		{func() Result {
			return c.setConv2d(p.conv, int32(s.Pad), int32(s.Pad), int32(s.Stride), int32(s.Stride), 1, 1, cudnnCrossCorrelation, cudnnFloat)
		}, "cudnnSetConvolution2dDescriptor"},
		{func() Result {
			// Without TF32, FMA only: cuDNN's default math allows TF32
			// tensor cores on Ampere and later.
			m := int32(cudnnFMAMath)
			if d.opt.TF32 {
				m = cudnnDefaultMath
			}
			return c.setConvMathType(p.conv, m)
		}, "cudnnSetConvolutionMathType"},
	}
	for _, st := range steps {
		if err := c.check(st.r(), st.call); err != nil {
			return nil, err
		}
	}
	d.convs[s] = p
	return p, nil
}

// pick chooses the fastest successful algorithm of a cudnnFind* result.
func (d *Device) pick(perf []convPerf, n int32, call string) (algo, error) {
	for _, r := range perf[:n] {
		if r.Status != 0 {
			continue
		}
		if !d.opt.TF32 && (r.MathType == cudnnTensorOpMath || r.MathType == cudnnTensorOpConvert) {
			continue
		}
		if d.opt.Deterministic && r.Determinism != cudnnDeterministic {
			continue
		}
		return algo{found: true, id: r.Algo, ws: r.Memory}, nil
	}
	return algo{}, fmt.Errorf("cuda: %s on %s: no usable algorithm among %d", call, d.name, n)
}

// workspace returns a cuDNN workspace of at least n bytes, growing d's.
func (d *Device) workspace(n uint64) (uint64, error) {
	if n <= d.wsLen {
		return d.ws, nil
	}
	if d.ws != 0 {
		// The old workspace may be in use by enqueued work.
		if err := d.drv.check(d.drv.cuStreamSynchronize(d.stream), "cuStreamSynchronize on "+d.name); err != nil {
			return 0, err
		}
		_ = d.drv.cuMemFree(d.ws)
		d.ws, d.wsLen = 0, 0
	}
	if err := d.drv.check(d.drv.cuMemAlloc(&d.ws, n), fmt.Sprintf("cuMemAlloc_v2(%d bytes: cuDNN workspace) on %s", n, d.name)); err != nil {
		return 0, err
	}
	d.wsLen = n
	return d.ws, nil
}

const maxAlgos = 16

// conv runs one direction of a convolution: find (once) then run.
func (d *Device) conv(s gpu.ConvShape, dir string, run func(c *cudnn, p *convPlan, a algo, ws uint64) Result,
	find func(c *cudnn, p *convPlan, n *int32, perf *convPerf) Result, slot func(p *convPlan) *algo) error {
	validate(s)
	done, err := d.bind()
	defer done()
	if err != nil {
		return err
	}
	c := d.lib.dnn
	p, err := d.plan(s)
	if err != nil {
		return err
	}
	a := slot(p)
	if !a.found {
		perf := make([]convPerf, maxAlgos)
		var n int32
		call := fmt.Sprintf("cudnnFindConvolution%sAlgorithm(%+v)", dir, s)
		if err := c.check(find(c, p, &n, &perf[0]), call); err != nil {
			return err
		}
		if *a, err = d.pick(perf, n, call); err != nil {
			return err
		}
	}
	ws, err := d.workspace(a.ws)
	if err != nil {
		return err
	}
	return c.check(run(c, p, *a, ws), fmt.Sprintf("cudnnConvolution%s(%+v, algo %d) on %s", dir, s, a.id, d.name))
}

var one, zero = float32(1), float32(0)

// Conv is the cross-correlation of gpu.Ops.Conv, with cuDNN.
func (d *Device) Conv(y, x, w gpu.Buffer, s gpu.ConvShape) error {
	yp, xp, wp := d.ptr("y", y, s.YLen()), d.ptr("x", x, s.XLen()), d.ptr("w", w, s.WLen())
	return d.conv(s, "Forward",
		func(c *cudnn, p *convPlan, a algo, ws uint64) Result {
			return c.forward(d.dnn, &one, p.x, xp, p.w, wp, p.conv, a.id, ws, a.ws, &zero, p.y, yp)
		},
		func(c *cudnn, p *convPlan, n *int32, perf *convPerf) Result {
			return c.findForward(d.dnn, p.x, p.w, p.conv, p.y, maxAlgos, n, perf)
		},
		func(p *convPlan) *algo { return &p.fwd })
}

// ConvBackwardData computes dx (N,C,H,W) from dy (N,K,P,Q) and w, with
// cuDNN.
func (d *Device) ConvBackwardData(dx, dy, w gpu.Buffer, s gpu.ConvShape) error {
	dxp, dyp, wp := d.ptr("dx", dx, s.XLen()), d.ptr("dy", dy, s.YLen()), d.ptr("w", w, s.WLen())
	return d.conv(s, "BackwardData",
		func(c *cudnn, p *convPlan, a algo, ws uint64) Result {
			return c.backwardData(d.dnn, &one, p.w, wp, p.y, dyp, p.conv, a.id, ws, a.ws, &zero, p.x, dxp)
		},
		func(c *cudnn, p *convPlan, n *int32, perf *convPerf) Result {
			return c.findBackwardData(d.dnn, p.w, p.y, p.conv, p.x, maxAlgos, n, perf)
		},
		func(p *convPlan) *algo { return &p.bwdData })
}

// ConvBackwardFilter computes dw (K,C,R,S) from dy (N,K,P,Q) and
// x (N,C,H,W), with cuDNN.
func (d *Device) ConvBackwardFilter(dw, dy, x gpu.Buffer, s gpu.ConvShape) error {
	dwp, dyp, xp := d.ptr("dw", dw, s.WLen()), d.ptr("dy", dy, s.YLen()), d.ptr("x", x, s.XLen())
	return d.conv(s, "BackwardFilter",
		func(c *cudnn, p *convPlan, a algo, ws uint64) Result {
			return c.backwardFilter(d.dnn, &one, p.x, xp, p.y, dyp, p.conv, a.id, ws, a.ws, &zero, p.w, dwp)
		},
		func(c *cudnn, p *convPlan, n *int32, perf *convPerf) Result {
			return c.findBackwardFilter(d.dnn, p.x, p.y, p.conv, p.w, maxAlgos, n, perf)
		},
		func(p *convPlan) *algo { return &p.bwdFilter })
}

// sgemm is a row-major GEMM, C (m×n) = op(A)·op(B), on device pointers:
// cuBLAS is column-major, and a row-major matrix is its transpose in
// column-major, so it computes Cᵀ = op(B)ᵀ·op(A)ᵀ with the operands
// swapped. lda, ldb, ldc are the row-major leading dimensions.
func (d *Device) sgemm(transA, transB bool, m, n, k int, a uint64, lda int, b uint64, ldb int, c uint64, ldc int) error {
	if m == 0 || n == 0 {
		return nil
	}
	op := func(t bool) int32 {
		if t {
			return cublasOpT
		}
		return cublasOpN
	}
	done, err := d.bind()
	defer done()
	if err != nil {
		return err
	}
	bl := d.lib.blas
	return bl.check(bl.sgemm(d.blas, op(transB), op(transA), int32(n), int32(m), int32(k), &one, b, int32(ldb), a, int32(lda), &zero, c, int32(ldc)),
		fmt.Sprintf("cublasSgemm_v2(m=%d n=%d k=%d) on %s", m, n, k, d.name))
}

// Linear sets y (N,Out) = x (N,In)·wᵀ + b, with cuBLAS and bias_add.
func (d *Device) Linear(y, x, w, b gpu.Buffer, s gpu.LinearShape) error {
	yb := d.buf("y", y, s.N*s.Out)
	xp, wp := d.ptr("x", x, s.N*s.In), d.ptr("w", w, s.Out*s.In)
	bb := d.buf("b", b, s.Out)
	if err := d.sgemm(false, true, s.N, s.Out, s.In, xp, s.In, wp, s.In, yb.ptr, s.Out); err != nil {
		return err
	}
	return d.launch("bias_add", d.grid(s.N*s.Out), threads, s.N, s.Out, 1, yb, bb)
}

// LinearBackwardData sets dx (N,In) = dy (N,Out)·w (Out,In).
func (d *Device) LinearBackwardData(dx, dy, w gpu.Buffer, s gpu.LinearShape) error {
	dxp, dyp, wp := d.ptr("dx", dx, s.N*s.In), d.ptr("dy", dy, s.N*s.Out), d.ptr("w", w, s.Out*s.In)
	return d.sgemm(false, false, s.N, s.In, s.Out, dyp, s.Out, wp, s.In, dxp, s.In)
}

// LinearBackwardWeights sets dw (Out,In) = dyᵀ·x and db (Out) = Σ_n dy.
func (d *Device) LinearBackwardWeights(dw, db, dy, x gpu.Buffer, s gpu.LinearShape) error {
	dwp := d.ptr("dw", dw, s.Out*s.In)
	dbb, dyb := d.buf("db", db, s.Out), d.buf("dy", dy, s.N*s.Out)
	xp := d.ptr("x", x, s.N*s.In)
	if err := d.sgemm(true, false, s.Out, s.In, s.N, dyb.ptr, s.Out, xp, s.In, dwp, s.In); err != nil {
		return err
	}
	return d.launch("bias_backward", s.Out, threads, s.N, s.Out, 1, dbb, dyb)
}

// AddBias adds b[c] to every y[n,c,·]; y (N,C,Inner), b (C).
func (d *Device) AddBias(y, b gpu.Buffer, s gpu.BiasShape) error {
	checkBias(s)
	yb, bb := d.buf("y", y, s.Len()), d.buf("b", b, s.C)
	return d.launch("bias_add", d.grid(s.Len()), threads, s.N, s.C, s.Inner, yb, bb)
}

// BiasBackward sets db[c] = Σ_{n,i} dy[n,c,i], summed in double.
func (d *Device) BiasBackward(db, dy gpu.Buffer, s gpu.BiasShape) error {
	checkBias(s)
	dbb, dyb := d.buf("db", db, s.C), d.buf("dy", dy, s.Len())
	return d.launch("bias_backward", s.C, threads, s.N, s.C, s.Inner, dbb, dyb)
}

// checkBias panics on a bias shape with negative sizes.
func checkBias(s gpu.BiasShape) {
	if s.N < 0 || s.C < 0 || s.Inner < 0 {
		panic(fmt.Sprintf("cuda: invalid bias shape %+v", s))
	}
}

// ReLU sets y = max(0, x) over n values.
func (d *Device) ReLU(y, x gpu.Buffer, n int) error {
	return d.launch("relu_forward", d.grid(n), threads, n, d.buf("y", y, n), d.buf("x", x, n))
}

// ReLUBackward sets dx = dy where y > 0, else 0.
func (d *Device) ReLUBackward(dx, dy, y gpu.Buffer, n int) error {
	return d.launch("relu_backward", d.grid(n), threads, n, d.buf("dx", dx, n), d.buf("dy", dy, n), d.buf("y", y, n))
}

// Tanh sets y = tanh(x) over n values.
func (d *Device) Tanh(y, x gpu.Buffer, n int) error {
	return d.launch("tanh_forward", d.grid(n), threads, n, d.buf("y", y, n), d.buf("x", x, n))
}

// TanhBackward sets dx = dy·(1 − y²).
func (d *Device) TanhBackward(dx, dy, y gpu.Buffer, n int) error {
	return d.launch("tanh_backward", d.grid(n), threads, n, d.buf("dx", dx, n), d.buf("dy", dy, n), d.buf("y", y, n))
}

// LRN is local response normalization across channels (kernels/lrn.cu).
func (d *Device) LRN(y, x gpu.Buffer, s gpu.LRNShape) error {
	return d.lrn("lrn_forward", y, x, s)
}

// LRNBackward computes dx from dy, x and y = LRN(x) (kernels/lrn.cu).
func (d *Device) LRNBackward(dx, dy, x, y gpu.Buffer, s gpu.LRNShape) error {
	return d.lrnBackward("lrn_backward", dx, dy, x, y, s)
}

// ReLULRN sets y = LRN(max(0, x)): lrn.cu's kernel with the ReLU applied
// as x is read.
func (d *Device) ReLULRN(y, x gpu.Buffer, s gpu.LRNShape) error {
	return d.lrn("relu_lrn_forward", y, x, s)
}

// ReLULRNBackward computes dx for y = ReLULRN(x) (kernels/lrn.cu).
func (d *Device) ReLULRNBackward(dx, dy, x, y gpu.Buffer, s gpu.LRNShape) error {
	return d.lrnBackward("relu_lrn_backward", dx, dy, x, y, s)
}

// lrn and lrnBackward launch one of lrn.cu's forward or backward kernels,
// which take the same arguments.
func (d *Device) lrn(kernel string, y, x gpu.Buffer, s gpu.LRNShape) error {
	validate(s)
	n := s.Len()
	grid, span := d.lrnGrid(s)
	return d.launch(kernel, grid, threads, s.N, s.C, s.H*s.W, span, s.Size, s.Alpha, s.Beta, s.K,
		d.buf("y", y, n), d.buf("x", x, n))
}

func (d *Device) lrnBackward(kernel string, dx, dy, x, y gpu.Buffer, s gpu.LRNShape) error {
	validate(s)
	n := s.Len()
	grid, span := d.lrnGrid(s)
	return d.launch(kernel, grid, threads, s.N, s.C, s.H*s.W, span, s.Size, s.Alpha, s.Beta, s.K,
		d.buf("dx", dx, n), d.buf("dy", dy, n), d.buf("x", x, n), d.buf("y", y, n))
}

// lrnGrid returns the blocks and the span of channels of the LRN kernels
// (kernels/lrn.cu): a thread per pixel and run of span channels.
func (d *Device) lrnGrid(s gpu.LRNShape) (grid, span int) {
	span = d.lrnSpan(s)
	return d.grid(s.N * s.H * s.W * ((s.C + span - 1) / span)), span
}

// lrnSpan returns how many channels each thread of the LRN kernels walks
// (kernels/lrn.cu): all C, unless the N·H·W pixels are too few threads to
// fill the GPU (2048 a multiprocessor), as conv2's 27×27 at batch 128 are
// on an H200; then the channels are split in runs of at least lrnMinSpan,
// each of which also reads the channels its windows reach beyond it (up to
// 2·(size/2) on either side backward), from the cache: the neighbouring
// runs read them too.
func (d *Device) lrnSpan(s gpu.LRNShape) int {
	want := 2048 * max(1, d.gc.info.SMs)
	pixels := s.N * s.H * s.W
	parts := min((want+pixels-1)/pixels, max(1, s.C/lrnMinSpan))
	return (s.C + parts - 1) / parts
}

// lrnMinSpan is the fewest channels lrnSpan gives a thread: below it the
// window's first sum costs more than the parallelism gains.
const lrnMinSpan = 16

// MaxPool is overlapping max pooling (kernels/pool.cu).
func (d *Device) MaxPool(y, x gpu.Buffer, s gpu.PoolShape) error {
	validate(s)
	return d.launch("maxpool_forward", d.grid(s.YLen()), threads, s.N*s.C, s.H, s.W, s.P(), s.Q(), s.Size, s.Stride,
		d.buf("y", y, s.YLen()), d.buf("x", x, s.XLen()))
}

// MaxPoolBackward routes dy to the first maximum of each window, summing
// where windows overlap (kernels/pool.cu). y must be MaxPool(x): planes
// too wide for a block's shared memory find each window's maximum there.
func (d *Device) MaxPoolBackward(dx, dy, x, y gpu.Buffer, s gpu.PoolShape) error {
	validate(s)
	band, grid := poolBand(s), d.grid(s.XLen())
	if band > 0 {
		grid = min(s.N*s.C*((s.P()+band-1)/band), 32*max(1, d.gc.info.SMs))
	}
	return d.launch("maxpool_backward", grid, threads, s.N*s.C, s.H, s.W, s.P(), s.Q(), s.Size, s.Stride, band,
		d.buf("dx", dx, s.XLen()), d.buf("dy", dy, s.YLen()), d.buf("x", x, s.XLen()), d.buf("y", y, s.YLen()))
}

// poolTile and poolWindows are kernels/pool.cu's POOL_TILE and
// POOL_WINDOWS: the floats of x and the windows a block of
// maxpool_backward holds in shared memory.
const poolTile, poolWindows = 4096, 1024

// poolBand returns the output rows a block of maxpool_backward takes
// (kernels/pool.cu): all P where the plane fits in shared memory (conv1's
// 55×55 and conv2's 27×27 do), else the most whose windows and input rows
// fit, counting the windows of the band above that reach into it; 0 (a
// pixel a thread) where not even one row fits.
func poolBand(s gpu.PoolShape) int {
	p, q := s.P(), s.Q()
	if s.H*s.W <= poolTile && p*q <= poolWindows {
		return p
	}
	above := (s.Size - 1 + s.Stride - 1) / s.Stride
	for r := p; r >= 1; r-- {
		if ((r+above-1)*s.Stride+s.Size)*s.W <= poolTile && (r+above)*q <= poolWindows {
			return r
		}
	}
	return 0
}

// Dropout is inverted dropout with gpu.DropoutKeep's mask
// (kernels/dropout.cu).
func (d *Device) Dropout(y, mask, x gpu.Buffer, s gpu.DropoutShape) error {
	if s.N < 0 || !(s.P >= 0 && s.P <= 1) {
		panic(fmt.Sprintf("cuda: invalid dropout shape %+v", s))
	}
	scale := 1 / (1 - s.P)
	return d.launch("dropout_forward", d.grid(s.N), threads, s.N, s.P, scale, s.Seed,
		d.buf("y", y, s.N), d.buf("mask", mask, s.N), d.buf("x", x, s.N))
}

// DropoutBackward sets dx = dy·mask over n values.
func (d *Device) DropoutBackward(dx, dy, mask gpu.Buffer, n int) error {
	return d.launch("dropout_backward", d.grid(n), threads, n, d.buf("dx", dx, n), d.buf("dy", dy, n), d.buf("mask", mask, n))
}

// SoftmaxCrossEntropy computes prob and loss per row (kernels/softmax.cu).
// A label that is not a class index gives a NaN loss rather than an
// error: checking would mean reading the labels back on every step.
func (d *Device) SoftmaxCrossEntropy(prob, loss, logits, labels gpu.Buffer, s gpu.SoftmaxShape) error {
	if s.N < 0 || s.Classes < 1 {
		panic(fmt.Sprintf("cuda: invalid softmax shape %+v", s))
	}
	nc := s.N * s.Classes
	return d.launch("softmax_xent", s.N, threads, s.N, s.Classes,
		d.buf("prob", prob, nc), d.buf("loss", loss, s.N), d.buf("logits", logits, nc), d.buf("labels", labels, s.N))
}

// SoftmaxCrossEntropyBackward sets dlogits = (prob − onehot(labels)) / N.
func (d *Device) SoftmaxCrossEntropyBackward(dlogits, prob, labels gpu.Buffer, s gpu.SoftmaxShape) error {
	if s.N < 0 || s.Classes < 1 {
		panic(fmt.Sprintf("cuda: invalid softmax shape %+v", s))
	}
	nc := s.N * s.Classes
	return d.launch("softmax_xent_backward", d.grid(nc), threads, s.N, s.Classes,
		d.buf("dlogits", dlogits, nc), d.buf("prob", prob, nc), d.buf("labels", labels, s.N))
}

// Add accumulates y += x over n values.
func (d *Device) Add(y, x gpu.Buffer, n int) error {
	return d.launch("add_inplace", d.grid(n), threads, n, d.buf("y", y, n), d.buf("x", x, n))
}

// Concat joins srcs per row: dst[n] = src0[n] ‖ src1[n] ‖ …, one kernel
// per source.
func (d *Device) Concat(dst gpu.Buffer, srcs []gpu.Buffer, s gpu.ConcatShape) error {
	row := d.checkConcat(srcs, s)
	db := d.buf("dst", dst, s.N*row)
	off := 0
	for i, src := range srcs {
		sb := d.buf(fmt.Sprintf("src %d", i), src, s.N*s.Sizes[i])
		if err := d.launch("concat_rows", d.grid(s.N*s.Sizes[i]), threads, s.N, s.Sizes[i], row, off, db, sb); err != nil {
			return err
		}
		off += s.Sizes[i]
	}
	return nil
}

// Split is Concat's inverse: dsts[i][n] is the i-th chunk of src[n].
func (d *Device) Split(dsts []gpu.Buffer, src gpu.Buffer, s gpu.ConcatShape) error {
	row := d.checkConcat(dsts, s)
	sb := d.buf("src", src, s.N*row)
	off := 0
	for i, dst := range dsts {
		db := d.buf(fmt.Sprintf("dst %d", i), dst, s.N*s.Sizes[i])
		if err := d.launch("split_rows", d.grid(s.N*s.Sizes[i]), threads, s.N, s.Sizes[i], row, off, db, sb); err != nil {
			return err
		}
		off += s.Sizes[i]
	}
	return nil
}

// checkConcat panics unless bufs match s's sizes, and returns the row.
func (d *Device) checkConcat(bufs []gpu.Buffer, s gpu.ConcatShape) int {
	if len(bufs) != len(s.Sizes) || s.N < 0 {
		panic(fmt.Sprintf("cuda: %s: %d buffers for concat shape %+v", d.name, len(bufs), s))
	}
	for _, v := range s.Sizes {
		if v < 0 {
			panic(fmt.Sprintf("cuda: %s: invalid concat shape %+v", d.name, s))
		}
	}
	return s.Row()
}

// SGD is the paper's update (kernels/sgd.cu), rounding as the CPU device.
func (d *Device) SGD(w, v, dw gpu.Buffer, s gpu.SGDShape) error {
	decay := s.WeightDecay * s.LR
	return d.launch("sgd_update", d.grid(s.N), threads, s.N, s.LR, s.Momentum, decay,
		d.buf("w", w, s.N), d.buf("v", v, s.N), d.buf("dw", dw, s.N))
}

// Augment crops, reflects, mean-subtracts and colour-shifts N images
// (kernels/augment.cu). Unlike the CPU device it does not check params on
// the host (they live on the device): bad crop offsets read out of bounds.
func (d *Device) Augment(dst, src, mean, params gpu.Buffer, s gpu.AugmentShape) error {
	validate(s)
	return d.launch("augment", d.grid(s.DstLen()), threads, s.N, s.C, s.Size, s.Crop,
		d.buf("dst", dst, s.DstLen()), d.buf("src", src, s.SrcLen()), d.buf("mean", mean, s.MeanLen()), d.buf("params", params, s.ParamsLen()))
}
