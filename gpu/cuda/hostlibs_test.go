package cuda

import (
	"fmt"
	"reflect"
	"strings"
	"sync"
	"unsafe"
)

// The fake cuBLAS and cuDNN of the host GPU (hostgpu_test.go). Each call
// is recorded with its arguments, checked as the library documents its
// checks (a bad one returns the library's error status, and says why in
// the test log), and computed as documented: cublasSgemm on column-major
// matrices with leading dimensions, cuDNN's convolutions from the tensor,
// filter and convolution descriptors (padding, strides, dilation, and
// cross-correlation or convolution), both as α·result + β·prior, the
// prior not read when β = 0.

// cuBLAS statuses.
const (
	cublasNotInitialized Result = 1
	cublasInvalidValue   Result = 7
	cublasExecFailed     Result = 13
)

// cuDNN 9 statuses.
const (
	cudnnBadParam     Result = 2000
	cudnnNotSupported Result = 3000
)

var hostLibErrors = map[Result]string{
	cublasNotInitialized: "CUBLAS_STATUS_NOT_INITIALIZED",
	cublasInvalidValue:   "CUBLAS_STATUS_INVALID_VALUE",
	cublasExecFailed:     "CUBLAS_STATUS_EXECUTION_FAILED",
	cudnnBadParam:        "CUDNN_STATUS_BAD_PARAM",
	cudnnNotSupported:    "CUDNN_STATUS_NOT_SUPPORTED",
}

// fail logs why a library call failed and returns r.
func (g *hostGPU) fail(r Result, call, format string, args ...any) Result {
	g.t.Logf("host GPU: %s: %s: %s", call, hostLibErrors[r], fmt.Sprintf(format, args...))
	return r
}

func opName(op int32) string {
	switch op {
	case cublasOpN:
		return "N"
	case cublasOpT:
		return "T"
	}
	return fmt.Sprintf("op%d", op)
}

func (g *hostGPU) cublas() *cublas {
	hname := map[uintptr]string{}
	stream := map[uintptr]uintptr{}
	created := 0
	return serialize(&g.libMu, &cublas{
		path: "host",
		create: func(h *uintptr) Result {
			*h = g.handle()
			created++
			hname[*h] = fmt.Sprintf("blas%d", created)
			g.record("cublasCreate_v2() = %s", hname[*h])
			return 0
		},
		destroy: func(h uintptr) Result {
			if _, ok := hname[h]; !ok {
				return cublasNotInitialized
			}
			g.record("cublasDestroy_v2(%s)", hname[h])
			delete(hname, h)
			return 0
		},
		setStream: func(h, s uintptr) Result {
			if _, ok := hname[h]; !ok {
				return cublasNotInitialized
			}
			g.record("cublasSetStream_v2(%s, stream)", hname[h])
			if !g.streams[s] {
				return g.fail(cublasInvalidValue, "cublasSetStream_v2", "not a stream of this device")
			}
			stream[h] = s
			return 0
		},
		setMathMode: func(h uintptr, mode int32) Result {
			if _, ok := hname[h]; !ok {
				return cublasNotInitialized
			}
			names := map[int32]string{cublasDefaultMath: "CUBLAS_DEFAULT_MATH", cublasPedanticMath: "CUBLAS_PEDANTIC_MATH", cublasTF32TensorMath: "CUBLAS_TF32_TENSOR_OP_MATH"}
			g.record("cublasSetMathMode(%s, %s)", hname[h], names[mode])
			if names[mode] == "" {
				return g.fail(cublasInvalidValue, "cublasSetMathMode", "mode %d", mode)
			}
			g.blasMode[h] = mode
			return 0
		},
		getStatusName: func(r Result) uintptr { return hostCString(hostLibErrors[r]) },
		sgemm: func(h uintptr, ta, tb int32, m, n, k int32, alpha *float32, a uint64, lda int32, b uint64, ldb int32, beta *float32, c uint64, ldc int32) Result {
			return g.sgemm(hname[h], stream[h], ta, tb, int(m), int(n), int(k), alpha, a, int(lda), b, int(ldb), beta, c, int(ldc))
		},
	})
}

// sgemm is cublasSgemm: C = α·op(A)·op(B) + β·C, column-major, op(A)
// m×k, op(B) k×n, C m×n; A is m×k (lda ≥ m) if not transposed, else k×m
// (lda ≥ k); B is k×n (ldb ≥ k), else n×k (ldb ≥ n); ldc ≥ m.
func (g *hostGPU) sgemm(h string, s uintptr, ta, tb int32, m, n, k int, alpha *float32, a uint64, lda int, b uint64, ldb int, beta *float32, c uint64, ldc int) Result {
	g.mu.Lock()
	defer g.mu.Unlock()
	const call = "cublasSgemm_v2"
	if h == "" {
		return cublasNotInitialized
	}
	if alpha == nil || beta == nil {
		return g.fail(cublasInvalidValue, call, "alpha or beta is NULL")
	}
	g.record("%s(%s, %s, %s, m=%d, n=%d, k=%d, alpha=%g, A=%s, lda=%d, B=%s, ldb=%d, beta=%g, C=%s, ldc=%d)",
		call, h, opName(ta), opName(tb), m, n, k, *alpha, g.name(a), lda, g.name(b), ldb, *beta, g.name(c), ldc)
	if !g.streams[s] {
		return g.fail(cublasExecFailed, call, "the handle has no stream of this device")
	}
	if (ta != cublasOpN && ta != cublasOpT) || (tb != cublasOpN && tb != cublasOpT) {
		return g.fail(cublasInvalidValue, call, "transa %d transb %d", ta, tb)
	}
	rowsA, colsA := m, k
	if ta == cublasOpT {
		rowsA, colsA = k, m
	}
	rowsB, colsB := k, n
	if tb == cublasOpT {
		rowsB, colsB = n, k
	}
	switch {
	case m < 0 || n < 0 || k < 0:
		return g.fail(cublasInvalidValue, call, "m=%d n=%d k=%d", m, n, k)
	case lda < max(1, rowsA):
		return g.fail(cublasInvalidValue, call, "lda=%d < %d", lda, max(1, rowsA))
	case ldb < max(1, rowsB):
		return g.fail(cublasInvalidValue, call, "ldb=%d < %d", ldb, max(1, rowsB))
	case ldc < max(1, m):
		return g.fail(cublasInvalidValue, call, "ldc=%d < %d", ldc, max(1, m))
	}
	if m == 0 || n == 0 {
		return 0
	}
	extent := func(ld, rows, cols int) int {
		if rows == 0 || cols == 0 {
			return 0
		}
		return ld*(cols-1) + rows
	}
	A, B, C := g.floats(a, extent(lda, rowsA, colsA)), g.floats(b, extent(ldb, rowsB, colsB)), g.floats(c, extent(ldc, m, n))
	if A == nil || B == nil || C == nil {
		return g.fail(cublasExecFailed, call, "%s reach past their allocations (%s)", outside(A == nil, B == nil, C == nil, "A", "B", "C"),
			"a real cuBLAS would read or write out of bounds")
	}
	opA := func(i, l int) float64 {
		if ta == cublasOpN {
			return float64(A[i+l*lda])
		}
		return float64(A[l+i*lda])
	}
	opB := func(l, j int) float64 {
		if tb == cublasOpN {
			return float64(B[l+j*ldb])
		}
		return float64(B[j+l*ldb])
	}
	for j := range n {
		for i := range m {
			var sum float64
			for l := range k {
				sum += opA(i, l) * opB(l, j)
			}
			v := float64(*alpha) * sum
			if *beta != 0 {
				v += float64(*beta) * float64(C[i+j*ldc])
			}
			C[i+j*ldc] = float32(v)
		}
	}
	return 0
}

// desc4 is a cuDNN tensor or filter descriptor: (n, c, h, w) or
// (k, c, r, s).
type desc4 struct {
	name       string
	filter     bool
	set        bool
	n, c, h, w int
}

func (d *desc4) len() int { return d.n * d.c * d.h * d.w }

// convDesc is a cuDNN convolution descriptor.
type convDesc struct {
	name                               string
	set                                bool
	padH, padW, u, v, dilH, dilW, mode int
	math                               int32
}

// hostDNN is the fake cuDNN's state.
type hostDNN struct {
	g          *hostGPU
	handles    map[uintptr]string
	stream     map[uintptr]uintptr
	descs      map[uintptr]*desc4
	convs      map[uintptr]*convDesc
	nh, nt, nf int
	// found is what each cudnnFind* call returned, per direction and
	// descriptors: the algorithms a run may use, with their workspace.
	found map[[5]uintptr][]convPerf
	lrns  map[uintptr]*lrnDesc
	pools map[uintptr]*poolDesc
}

func newHostDNN(g *hostGPU) *hostDNN {
	return &hostDNN{g: g, handles: map[uintptr]string{}, stream: map[uintptr]uintptr{}, descs: map[uintptr]*desc4{},
		convs: map[uintptr]*convDesc{}, found: map[[5]uintptr][]convPerf{},
		lrns: map[uintptr]*lrnDesc{}, pools: map[uintptr]*poolDesc{}}
}

// Directions, for hostDNN.found.
const (
	dirForward = iota
	dirBackwardData
	dirBackwardFilter
)

var dirNames = []string{"Forward", "BackwardData", "BackwardFilter"}

func formatName(f int32) string {
	return map[int32]string{0: "CUDNN_TENSOR_NCHW", 1: "CUDNN_TENSOR_NHWC", 2: "CUDNN_TENSOR_NCHW_VECT_C"}[f] + fmt.Sprintf("(%d)", f)
}

func dtypeName(t int32) string {
	return map[int32]string{0: "CUDNN_DATA_FLOAT", 1: "CUDNN_DATA_DOUBLE", 2: "CUDNN_DATA_HALF"}[t] + fmt.Sprintf("(%d)", t)
}

func mathName(m int32) string {
	return map[int32]string{cudnnDefaultMath: "CUDNN_DEFAULT_MATH", cudnnTensorOpMath: "CUDNN_TENSOR_OP_MATH",
		cudnnTensorOpConvert: "CUDNN_TENSOR_OP_MATH_ALLOW_CONVERSION", cudnnFMAMath: "CUDNN_FMA_MATH"}[m]
}

func (c *hostDNN) cudnn() *cudnn {
	g := c.g
	newDesc := func(filter bool) func(d *uintptr) Result {
		return func(d *uintptr) Result {
			*d = g.handle()
			x := &desc4{filter: filter}
			if filter {
				c.nf++
				x.name = fmt.Sprintf("f%d", c.nf)
				g.record("cudnnCreateFilterDescriptor() = %s", x.name)
			} else {
				c.nt++
				x.name = fmt.Sprintf("t%d", c.nt)
				g.record("cudnnCreateTensorDescriptor() = %s", x.name)
			}
			c.descs[*d] = x
			return 0
		}
	}
	set4 := func(call string, d uintptr, filter bool, format, dtype int32, n, ch, h, w int32) Result {
		x, ok := c.descs[d]
		if !ok || x.filter != filter {
			return g.fail(cudnnBadParam, call, "not a descriptor of this kind")
		}
		if filter {
			g.record("%s(%s, %s, %s, k=%d, c=%d, h=%d, w=%d)", call, x.name, dtypeName(dtype), formatName(format), n, ch, h, w)
		} else {
			g.record("%s(%s, %s, %s, n=%d, c=%d, h=%d, w=%d)", call, x.name, formatName(format), dtypeName(dtype), n, ch, h, w)
		}
		switch {
		case format != cudnnNCHW:
			return g.fail(cudnnNotSupported, call, "the host GPU knows NCHW (0) only, not format %d", format)
		case dtype != cudnnFloat:
			return g.fail(cudnnNotSupported, call, "the host GPU knows CUDNN_DATA_FLOAT (0) only, not %d", dtype)
		case n <= 0 || ch <= 0 || h <= 0 || w <= 0:
			return g.fail(cudnnBadParam, call, "a dimension ≤ 0")
		}
		x.n, x.c, x.h, x.w, x.set = int(n), int(ch), int(h), int(w), true
		return 0
	}
	handle := func(h uintptr, call string) Result {
		if _, ok := c.handles[h]; !ok {
			return g.fail(cudnnBadParam, call, "not a cuDNN handle")
		}
		if !g.streams[c.stream[h]] {
			return g.fail(cudnnBadParam, call, "the handle has no stream of this device")
		}
		return 0
	}
	lib := &cudnn{
		path:           "host",
		version:        91000,
		getVersion:     func() uint64 { return 91000 },
		getErrorString: func(r Result) uintptr { return hostCString(hostLibErrors[r]) },
		create: func(h *uintptr) Result {
			*h = g.handle()
			c.nh++
			c.handles[*h] = fmt.Sprintf("dnn%d", c.nh)
			g.record("cudnnCreate() = %s", c.handles[*h])
			return 0
		},
		destroy: func(h uintptr) Result {
			if _, ok := c.handles[h]; !ok {
				return cudnnBadParam
			}
			g.record("cudnnDestroy(%s)", c.handles[h])
			delete(c.handles, h)
			return 0
		},
		setStream: func(h, s uintptr) Result {
			if _, ok := c.handles[h]; !ok {
				return cudnnBadParam
			}
			g.record("cudnnSetStream(%s, stream)", c.handles[h])
			if !g.streams[s] {
				return g.fail(cudnnBadParam, "cudnnSetStream", "not a stream of this device")
			}
			c.stream[h] = s
			return 0
		},
		createTensor: newDesc(false),
		createFilter: newDesc(true),
		setTensor4d: func(d uintptr, format, dtype int32, n, ch, h, w int32) Result {
			return set4("cudnnSetTensor4dDescriptor", d, false, format, dtype, n, ch, h, w)
		},
		setFilter4d: func(d uintptr, dtype, format int32, k, ch, h, w int32) Result {
			return set4("cudnnSetFilter4dDescriptor", d, true, format, dtype, k, ch, h, w)
		},
		createConv: func(d *uintptr) Result {
			*d = g.handle()
			x := &convDesc{name: fmt.Sprintf("c%d", len(c.convs)+1), math: cudnnDefaultMath}
			c.convs[*d] = x
			g.record("cudnnCreateConvolutionDescriptor() = %s", x.name)
			return 0
		},
		setConv2d: func(d uintptr, padH, padW, u, v, dilH, dilW int32, mode, compute int32) Result {
			const call = "cudnnSetConvolution2dDescriptor"
			x, ok := c.convs[d]
			if !ok {
				return g.fail(cudnnBadParam, call, "not a convolution descriptor")
			}
			modes := map[int32]string{0: "CUDNN_CONVOLUTION", cudnnCrossCorrelation: "CUDNN_CROSS_CORRELATION"}
			g.record("%s(%s, pad=%d×%d, stride=%d×%d, dilation=%d×%d, %s, %s)", call, x.name, padH, padW, u, v, dilH, dilW, modes[mode], dtypeName(compute))
			switch {
			case padH < 0 || padW < 0 || u < 1 || v < 1 || dilH < 1 || dilW < 1:
				return g.fail(cudnnBadParam, call, "a negative pad, or a stride or dilation < 1")
			case modes[mode] == "":
				return g.fail(cudnnBadParam, call, "mode %d", mode)
			case compute != cudnnFloat:
				return g.fail(cudnnNotSupported, call, "computeType %d: the host GPU computes in float", compute)
			}
			*x = convDesc{name: x.name, set: true, padH: int(padH), padW: int(padW), u: int(u), v: int(v), dilH: int(dilH), dilW: int(dilW), mode: int(mode), math: x.math}
			return 0
		},
		setConvMathType: func(d uintptr, m int32) Result {
			x, ok := c.convs[d]
			if !ok {
				return g.fail(cudnnBadParam, "cudnnSetConvolutionMathType", "not a convolution descriptor")
			}
			g.record("cudnnSetConvolutionMathType(%s, %s)", x.name, mathName(m))
			if mathName(m) == "" {
				return g.fail(cudnnBadParam, "cudnnSetConvolutionMathType", "math type %d", m)
			}
			x.math = m
			return 0
		},
		findForward: func(h, xd, wd, cd, yd uintptr, req int32, n *int32, perf *convPerf) Result {
			if r := handle(h, "cudnnFindConvolutionForwardAlgorithm"); r != 0 {
				return r
			}
			return c.find(dirForward, h, xd, wd, cd, yd, req, n, perf)
		},
		findBackwardData: func(h, wd, dyd, cd, dxd uintptr, req int32, n *int32, perf *convPerf) Result {
			if r := handle(h, "cudnnFindConvolutionBackwardDataAlgorithm"); r != 0 {
				return r
			}
			return c.find(dirBackwardData, h, dxd, wd, cd, dyd, req, n, perf)
		},
		findBackwardFilter: func(h, xd, dyd, cd, dwd uintptr, req int32, n *int32, perf *convPerf) Result {
			if r := handle(h, "cudnnFindConvolutionBackwardFilterAlgorithm"); r != 0 {
				return r
			}
			return c.find(dirBackwardFilter, h, xd, dwd, cd, dyd, req, n, perf)
		},
		forward: func(h uintptr, alpha *float32, xd uintptr, x uint64, wd uintptr, w uint64, cd uintptr, algo int32, ws, wsBytes uint64, beta *float32, yd uintptr, y uint64) Result {
			if r := handle(h, "cudnnConvolutionForward"); r != 0 {
				return r
			}
			return c.run(dirForward, h, alpha, beta, xd, x, wd, w, cd, yd, y, algo, ws, wsBytes)
		},
		backwardData: func(h uintptr, alpha *float32, wd uintptr, w uint64, dyd uintptr, dy uint64, cd uintptr, algo int32, ws, wsBytes uint64, beta *float32, dxd uintptr, dx uint64) Result {
			if r := handle(h, "cudnnConvolutionBackwardData"); r != 0 {
				return r
			}
			return c.run(dirBackwardData, h, alpha, beta, dxd, dx, wd, w, cd, dyd, dy, algo, ws, wsBytes)
		},
		backwardFilter: func(h uintptr, alpha *float32, xd uintptr, x uint64, dyd uintptr, dy uint64, cd uintptr, algo int32, ws, wsBytes uint64, beta *float32, dwd uintptr, dw uint64) Result {
			if r := handle(h, "cudnnConvolutionBackwardFilter"); r != 0 {
				return r
			}
			return c.run(dirBackwardFilter, h, alpha, beta, xd, x, dwd, dw, cd, dyd, dy, algo, ws, wsBytes)
		},
	}
	c.vendor(lib, handle)
	return serialize(&g.libMu, lib)
}

// serialize makes every function field of the fake library *lib hold mu
// while it runs: the fakes keep their descriptors and handles in plain
// maps, and replicas (parallel.Replicas) call them from a goroutine per
// device, as the real, thread-safe libraries allow.
func serialize[L any](mu *sync.Mutex, lib *L) *L {
	v := reflect.ValueOf(lib).Elem()
	for i := range v.NumField() {
		f := v.Field(i)
		if f.Kind() != reflect.Func || f.IsNil() {
			continue
		}
		f = reflect.NewAt(f.Type(), unsafe.Pointer(f.UnsafeAddr())).Elem() // unexported: settable through its address
		inner := reflect.ValueOf(f.Interface())
		f.Set(reflect.MakeFunc(f.Type(), func(args []reflect.Value) []reflect.Value {
			mu.Lock()
			defer mu.Unlock()
			return inner.Call(args)
		}))
	}
	return lib
}

// shapes checks that x (N,C,H,W), w (K,C,R,S) and y (N,K,P,Q) fit
// convolution cd, P = 1 + (H + 2·padH − ((R−1)·dilH + 1)) / strideH (and
// Q alike), as cudnnGetConvolution2dForwardOutputDim computes them.
func (c *hostDNN) shapes(xd, wd, cd, yd uintptr) (x, w, y *desc4, cv *convDesc, why string) {
	x, w, y, cv = c.descs[xd], c.descs[wd], c.descs[yd], c.convs[cd]
	switch {
	case x == nil || x.filter || !x.set:
		return nil, nil, nil, nil, "the x tensor descriptor is not a set tensor descriptor"
	case y == nil || y.filter || !y.set:
		return nil, nil, nil, nil, "the y tensor descriptor is not a set tensor descriptor"
	case w == nil || !w.filter || !w.set:
		return nil, nil, nil, nil, "the filter descriptor is not a set filter descriptor"
	case cv == nil || !cv.set:
		return nil, nil, nil, nil, "the convolution descriptor is not set"
	}
	p := 1 + (x.h+2*cv.padH-((w.h-1)*cv.dilH+1))/cv.u
	q := 1 + (x.w+2*cv.padW-((w.w-1)*cv.dilW+1))/cv.v
	if x.c != w.c || y.n != x.n || y.c != w.n || y.h != p || y.w != q || p < 1 || q < 1 {
		return nil, nil, nil, nil, fmt.Sprintf("x %s %d×%d×%d×%d, w %s %d×%d×%d×%d and y %s %d×%d×%d×%d do not fit (y should be %d×%d×%d×%d)",
			x.name, x.n, x.c, x.h, x.w, w.name, w.n, w.c, w.h, w.w, y.name, y.n, y.c, y.h, y.w, x.n, w.n, p, q)
	}
	return x, w, y, cv, ""
}

// find is cudnnFind*Algorithm: after checking the descriptors it returns,
// fastest first, a tensor-core algorithm where the math type allows one,
// a faster non-deterministic algorithm needing a workspace, a
// deterministic one, and one that failed.
func (c *hostDNN) find(dir int, h, xd, wd, cd, yd uintptr, req int32, n *int32, perf *convPerf) Result {
	g := c.g
	call := "cudnnFindConvolution" + dirNames[dir] + "Algorithm"
	x, w, y, cv, why := c.shapes(xd, wd, cd, yd)
	if x == nil {
		g.record("%s(%s, …)", call, c.handles[h])
		return g.fail(cudnnBadParam, call, "%s", why)
	}
	switch dir {
	case dirForward:
		g.record("%s(%s, x=%s, w=%s, conv=%s, y=%s, requested=%d)", call, c.handles[h], x.name, w.name, cv.name, y.name, req)
	case dirBackwardData:
		g.record("%s(%s, w=%s, dy=%s, conv=%s, dx=%s, requested=%d)", call, c.handles[h], w.name, y.name, cv.name, x.name, req)
	case dirBackwardFilter:
		g.record("%s(%s, x=%s, dy=%s, conv=%s, dw=%s, requested=%d)", call, c.handles[h], x.name, y.name, cv.name, w.name, req)
	}
	if req < 1 || n == nil || perf == nil {
		return g.fail(cudnnBadParam, call, "requested %d", req)
	}
	var out []convPerf
	if cv.math != cudnnFMAMath {
		out = append(out, convPerf{Algo: 1, Time: 0.1, Memory: 1 << 16, Determinism: cudnnDeterministic, MathType: cudnnTensorOpMath})
	}
	m := cv.math
	if m == cudnnTensorOpMath || m == cudnnTensorOpConvert {
		m = cudnnDefaultMath
	}
	out = append(out,
		convPerf{Algo: 3, Time: 0.2, Memory: 12288 + 4*uint64(dir), Determinism: 0, MathType: m},
		convPerf{Algo: 0, Time: 0.3, Memory: 4096 * uint64(dir), Determinism: cudnnDeterministic, MathType: m},
		convPerf{Algo: 2, Status: cudnnNotSupported, Time: -1, Determinism: cudnnDeterministic, MathType: m})
	out = out[:min(len(out), int(req))]
	copy(unsafe.Slice(perf, req), out)
	*n = int32(len(out))
	c.found[[5]uintptr{uintptr(dir), xd, wd, cd, yd}] = out
	return 0
}

// run is cudnnConvolutionForward, BackwardData or BackwardFilter: x and
// y are the convolution's input and output tensors (dx and dy backward),
// w its filter (dw), whichever direction.
func (c *hostDNN) run(dir int, h uintptr, alpha, beta *float32, xd uintptr, xp uint64, wd uintptr, wp uint64, cd, yd uintptr, yp uint64, algo int32, ws, wsBytes uint64) Result {
	g := c.g
	g.mu.Lock()
	defer g.mu.Unlock()
	call := "cudnnConvolution" + dirNames[dir]
	x, w, y, cv, why := c.shapes(xd, wd, cd, yd)
	if x == nil {
		g.record("%s(%s, …)", call, c.handles[h])
		return g.fail(cudnnBadParam, call, "%s", why)
	}
	if alpha == nil || beta == nil {
		g.record("%s(%s, …)", call, c.handles[h])
		return g.fail(cudnnBadParam, call, "alpha or beta is NULL")
	}
	wsName := "NULL"
	if ws != 0 {
		wsName = g.name(ws)
	}
	args := fmt.Sprintf("algo=%d, workspace=%s %d bytes, beta=%g", algo, wsName, wsBytes, *beta)
	switch dir {
	case dirForward:
		g.record("%s(%s, alpha=%g, x=%s %s, w=%s %s, conv=%s, %s, y=%s %s)", call, c.handles[h], *alpha, x.name, g.name(xp), w.name, g.name(wp), cv.name, args, y.name, g.name(yp))
	case dirBackwardData:
		g.record("%s(%s, alpha=%g, w=%s %s, dy=%s %s, conv=%s, %s, dx=%s %s)", call, c.handles[h], *alpha, w.name, g.name(wp), y.name, g.name(yp), cv.name, args, x.name, g.name(xp))
	case dirBackwardFilter:
		g.record("%s(%s, alpha=%g, x=%s %s, dy=%s %s, conv=%s, %s, dw=%s %s)", call, c.handles[h], *alpha, x.name, g.name(xp), y.name, g.name(yp), cv.name, args, w.name, g.name(wp))
	}
	var need uint64
	ok := false
	for _, p := range c.found[[5]uintptr{uintptr(dir), xd, wd, cd, yd}] {
		if p.Algo == algo && p.Status == 0 {
			ok, need = true, p.Memory
		}
	}
	switch {
	case !ok:
		return g.fail(cudnnBadParam, call, "algorithm %d is not one cudnnFind%sAlgorithm returned as working for these descriptors", algo, dirNames[dir])
	case wsBytes < need:
		return g.fail(cudnnBadParam, call, "a workspace of %d bytes, algorithm %d needs %d", wsBytes, algo, need)
	case wsBytes > 0 && g.span(ws, wsBytes) == nil:
		return g.fail(cudnnBadParam, call, "the workspace is not %d bytes of device memory", wsBytes)
	}
	X, W, Y := g.floats(xp, x.len()), g.floats(wp, w.len()), g.floats(yp, y.len())
	if X == nil || W == nil || Y == nil {
		return g.fail(cudnnBadParam, call, "%s reach past their allocations (%s)", outside(X == nil, W == nil, Y == nil, "x", "w", "y"),
			"a real cuDNN would read or write out of bounds")
	}
	acc := make([]float64, map[int]int{dirForward: y.len(), dirBackwardData: x.len(), dirBackwardFilter: w.len()}[dir])
	N, C, H, Wd, K, R, S, P, Q := x.n, x.c, x.h, x.w, w.n, w.h, w.w, y.h, y.w
	for n := range N {
		for k := range K {
			for p := range P {
				for q := range Q {
					yi := ((n*K+k)*P+p)*Q + q
					for ch := range C {
						for r := range R {
							hi := p*cv.u - cv.padH + r*cv.dilH
							if hi < 0 || hi >= H {
								continue
							}
							for s := range S {
								wi := q*cv.v - cv.padW + s*cv.dilW
								if wi < 0 || wi >= Wd {
									continue
								}
								rr, ss := r, s
								if cv.mode == 0 { // CUDNN_CONVOLUTION flips the filter
									rr, ss = R-1-r, S-1-s
								}
								xi := ((n*C+ch)*H+hi)*Wd + wi
								fi := ((k*C+ch)*R+rr)*S + ss
								switch dir {
								case dirForward:
									acc[yi] += float64(X[xi]) * float64(W[fi])
								case dirBackwardData:
									acc[xi] += float64(Y[yi]) * float64(W[fi])
								case dirBackwardFilter:
									acc[fi] += float64(Y[yi]) * float64(X[xi])
								}
							}
						}
					}
				}
			}
		}
	}
	out := map[int][]float32{dirForward: Y, dirBackwardData: X, dirBackwardFilter: W}[dir]
	for i, v := range acc {
		v *= float64(*alpha)
		if *beta != 0 {
			v += float64(*beta) * float64(out[i])
		}
		out[i] = float32(v)
	}
	return 0
}

// outside lists the names whose flag is set.
func outside(a, b, c bool, na, nb, nc string) string {
	var out []string
	for _, x := range []struct {
		bad  bool
		name string
	}{{a, na}, {b, nb}, {c, nc}} {
		if x.bad {
			out = append(out, x.name)
		}
	}
	return strings.Join(out, ", ")
}
