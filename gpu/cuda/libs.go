package cuda

import (
	"fmt"
	"strings"
	"sync"
	"unsafe"
)

// cublas is libcublas bound: the few calls the FC layers need.
type cublas struct {
	path string

	create         func(h *uintptr) Result
	destroy        func(h uintptr) Result
	setStream      func(h, stream uintptr) Result
	setMathMode    func(h uintptr, mode int32) Result
	getVersion     func(h uintptr, v *int32) Result
	sgemm          func(h uintptr, ta, tb int32, m, n, k int32, alpha *float32, a uint64, lda int32, b uint64, ldb int32, beta *float32, c uint64, ldc int32) Result
	getStatusName  func(r Result) uintptr
	getStatusDescr func(r Result) uintptr
}

// cuBLAS enumerations.
const (
	cublasOpN            = 0
	cublasOpT            = 1
	cublasDefaultMath    = 0
	cublasPedanticMath   = 2
	cublasTF32TensorMath = 3
)

// cudnn is libcudnn bound: the legacy convolution API of cuDNN 9
// (libcudnn_cnn), which the front-end library is built over.
type cudnn struct {
	path    string
	version int

	getVersion         func() uint64
	getErrorString     func(r Result) uintptr
	create             func(h *uintptr) Result
	destroy            func(h uintptr) Result
	setStream          func(h, stream uintptr) Result
	createTensor       func(d *uintptr) Result
	setTensor4d        func(d uintptr, format, dtype int32, n, c, h, w int32) Result
	createFilter       func(d *uintptr) Result
	setFilter4d        func(d uintptr, dtype, format int32, k, c, h, w int32) Result
	createConv         func(d *uintptr) Result
	setConv2d          func(d uintptr, padH, padW, u, v, dilH, dilW int32, mode, computeType int32) Result
	setConvMathType    func(d uintptr, mathType int32) Result
	findForward        func(h, xDesc, wDesc, convDesc, yDesc uintptr, requested int32, returned *int32, perf *convPerf) Result
	findBackwardData   func(h, wDesc, dyDesc, convDesc, dxDesc uintptr, requested int32, returned *int32, perf *convPerf) Result
	findBackwardFilter func(h, xDesc, dyDesc, convDesc, dwDesc uintptr, requested int32, returned *int32, perf *convPerf) Result
	forward            func(h uintptr, alpha *float32, xDesc uintptr, x uint64, wDesc uintptr, w uint64, convDesc uintptr, algo int32, ws uint64, wsBytes uint64, beta *float32, yDesc uintptr, y uint64) Result
	backwardData       func(h uintptr, alpha *float32, wDesc uintptr, w uint64, dyDesc uintptr, dy uint64, convDesc uintptr, algo int32, ws uint64, wsBytes uint64, beta *float32, dxDesc uintptr, dx uint64) Result
	backwardFilter     func(h uintptr, alpha *float32, xDesc uintptr, x uint64, dyDesc uintptr, dy uint64, convDesc uintptr, algo int32, ws uint64, wsBytes uint64, beta *float32, dwDesc uintptr, dw uint64) Result

	// cuDNN's own LRN and max pooling (libcudnn_ops), which only the
	// kernel benchmark uses (gpu.VendorOps): bound when present, and
	// vendorErr says which symbol is missing when one is, so that a cuDNN
	// without them still runs the network.
	createLRN     func(d *uintptr) Result
	setLRN        func(d uintptr, n uint32, alpha, beta, k float64) Result
	lrnForward    func(h, norm uintptr, mode int32, alpha *float32, xDesc uintptr, x uint64, beta *float32, yDesc uintptr, y uint64) Result
	lrnBackward   func(h, norm uintptr, mode int32, alpha *float32, yDesc uintptr, y uint64, dyDesc uintptr, dy uint64, xDesc uintptr, x uint64, beta *float32, dxDesc uintptr, dx uint64) Result
	createPooling func(d *uintptr) Result
	setPooling2d  func(d uintptr, mode, nanOpt, windowH, windowW, padH, padW, strideH, strideW int32) Result
	poolForward   func(h, pool uintptr, alpha *float32, xDesc uintptr, x uint64, beta *float32, yDesc uintptr, y uint64) Result
	poolBackward  func(h, pool uintptr, alpha *float32, yDesc uintptr, y uint64, dyDesc uintptr, dy uint64, xDesc uintptr, x uint64, beta *float32, dxDesc uintptr, dx uint64) Result
	vendorErr     error
}

// cuDNN enumerations.
const (
	cudnnNCHW             = 0
	cudnnFloat            = 0
	cudnnCrossCorrelation = 1
	cudnnDefaultMath      = 0
	cudnnTensorOpMath     = 1
	cudnnTensorOpConvert  = 2
	cudnnFMAMath          = 3
	cudnnDeterministic    = 1 // cudnnDeterminism_t: CUDNN_DETERMINISTIC
	cudnnLRNCrossChannel  = 0 // cudnnLRNMode_t: CUDNN_LRN_CROSS_CHANNEL_DIM1
	cudnnPoolingMax       = 0 // cudnnPoolingMode_t: CUDNN_POOLING_MAX
	cudnnPoolingMaxDet    = 3 // CUDNN_POOLING_MAX_DETERMINISTIC
	cudnnNotPropagateNaN  = 0 // cudnnNanPropagation_t: CUDNN_NOT_PROPAGATE_NAN
)

// convPerf is cudnnConvolutionFwdAlgoPerf_t, and the BwdData and
// BwdFilter variants, which share its layout:
// { algo enum; status; float time; size_t memory; determinism; mathType;
// int reserved[3] }, 48 bytes on LP64.
type convPerf struct {
	Algo        int32
	Status      Result
	Time        float32
	_           int32
	Memory      uint64
	Determinism int32
	MathType    int32
	_           [3]int32
	_           int32
}

var _ = [1]struct{}{}[unsafe.Sizeof(convPerf{})-48]

// nvrtc is libnvrtc bound.
type nvrtc struct {
	path         string
	major, minor int

	version        func(major, minor *int32) Result
	getErrorString func(r Result) uintptr
	create         func(prog *uintptr, src *byte, name *byte, numHeaders int32, headers, includeNames unsafe.Pointer) Result
	compile0       func(prog uintptr, numOptions int32, options unsafe.Pointer) Result
	getPTXSize     func(prog uintptr, n *uint64) Result
	getPTX         func(prog uintptr, ptx *byte) Result
	getCUBINSize   func(prog uintptr, n *uint64) Result // nil before CUDA 11.1
	getCUBIN       func(prog uintptr, cubin *byte) Result
	getLogSize     func(prog uintptr, n *uint64) Result
	getLog         func(prog uintptr, log *byte) Result
	destroy        func(prog *uintptr) Result
}

// libs are the libraries above the driver, loaded once per process.
type libs struct {
	blas  *cublas
	dnn   *cudnn
	rtc   *nvrtc
	order []string // the sonames tried, for messages
}

var (
	libsOnce sync.Once
	libs0    *libs
	libsErr  error
)

// loadLibs loads cuBLAS, cuDNN and NVRTC once, preferring the versions of
// the driver's CUDA major version (a CUDA 13 library needs a CUDA 13
// driver; NVRTC's PTX must not be newer than the driver).
func loadLibs(driverVersion int) (*libs, error) {
	libsOnce.Do(func() { libs0, libsErr = openLibs(hostEnv, driverVersion) })
	return libs0, libsErr
}

// preferMajor reorders lib's names so that those ending in .major come
// first.
func preferMajor(lib library, major int) library {
	suffix := fmt.Sprintf(".so.%d", major)
	var first, rest []string
	for _, n := range lib.names {
		if len(n) >= len(suffix) && n[len(n)-len(suffix):] == suffix {
			first = append(first, n)
		} else {
			rest = append(rest, n)
		}
	}
	lib.names = append(first, rest...)
	return lib
}

func openLibs(e env, driverVersion int) (*libs, error) {
	major := driverVersion / 1000
	l := &libs{}
	var err error
	if l.blas, err = openCUBLAS(e, preferMajor(libCUBLAS, major)); err != nil {
		return nil, err
	}
	// NVRTC before cuDNN: cuDNN's runtime-compiled engines open
	// libnvrtc by name, and find this one loaded.
	if l.rtc, err = openNVRTC(e, preferMajor(libNVRTC, major)); err != nil {
		return nil, err
	}
	if l.dnn, err = openCUDNN(e, libCUDNN); err != nil {
		return nil, err
	}
	return l, nil
}

func openCUBLAS(e env, lib library) (*cublas, error) {
	h, path, err := e.open(lib)
	if err != nil {
		return nil, err
	}
	c := &cublas{path: path}
	b := &binder{lib: path, handle: h}
	b.bind(&c.create, "cublasCreate_v2")
	b.bind(&c.destroy, "cublasDestroy_v2")
	b.bind(&c.setStream, "cublasSetStream_v2")
	b.bind(&c.setMathMode, "cublasSetMathMode")
	b.bind(&c.getVersion, "cublasGetVersion_v2")
	b.bind(&c.sgemm, "cublasSgemm_v2")
	b.optional(&c.getStatusName, "cublasGetStatusName")
	b.optional(&c.getStatusDescr, "cublasGetStatusString")
	return c, b.err
}

// check turns a cuBLAS status into nil or an *Error.
func (c *cublas) check(r Result, call string) error {
	if r == 0 {
		return nil
	}
	e := &Error{Call: call, Code: r, Name: fmt.Sprintf("cublasStatus %d", int32(r))}
	if c.getStatusName != nil {
		e.Name = goString(c.getStatusName(r))
	}
	if c.getStatusDescr != nil {
		e.Desc = goString(c.getStatusDescr(r))
	}
	if r == 3 { // CUBLAS_STATUS_ALLOC_FAILED
		e.Name, e.Hint = "CUBLAS_STATUS_ALLOC_FAILED", "lower --batch"
	}
	return e
}

func openCUDNN(e env, lib library) (*cudnn, error) {
	h, path, err := e.open(lib)
	if err != nil {
		return nil, err
	}
	c := &cudnn{path: path}
	b := &binder{lib: path, handle: h}
	b.bind(&c.getVersion, "cudnnGetVersion")
	b.bind(&c.getErrorString, "cudnnGetErrorString")
	b.bind(&c.create, "cudnnCreate")
	b.bind(&c.destroy, "cudnnDestroy")
	b.bind(&c.setStream, "cudnnSetStream")
	b.bind(&c.createTensor, "cudnnCreateTensorDescriptor")
	b.bind(&c.setTensor4d, "cudnnSetTensor4dDescriptor")
	b.bind(&c.createFilter, "cudnnCreateFilterDescriptor")
	b.bind(&c.setFilter4d, "cudnnSetFilter4dDescriptor")
	b.bind(&c.createConv, "cudnnCreateConvolutionDescriptor")
	b.bind(&c.setConv2d, "cudnnSetConvolution2dDescriptor")
	b.bind(&c.setConvMathType, "cudnnSetConvolutionMathType")
	b.bind(&c.findForward, "cudnnFindConvolutionForwardAlgorithm")
	b.bind(&c.findBackwardData, "cudnnFindConvolutionBackwardDataAlgorithm")
	b.bind(&c.findBackwardFilter, "cudnnFindConvolutionBackwardFilterAlgorithm")
	b.bind(&c.forward, "cudnnConvolutionForward")
	b.bind(&c.backwardData, "cudnnConvolutionBackwardData")
	b.bind(&c.backwardFilter, "cudnnConvolutionBackwardFilter")
	if b.err != nil {
		return nil, b.err
	}
	v := &binder{lib: path, handle: h}
	v.bind(&c.createLRN, "cudnnCreateLRNDescriptor")
	v.bind(&c.setLRN, "cudnnSetLRNDescriptor")
	v.bind(&c.lrnForward, "cudnnLRNCrossChannelForward")
	v.bind(&c.lrnBackward, "cudnnLRNCrossChannelBackward")
	v.bind(&c.createPooling, "cudnnCreatePoolingDescriptor")
	v.bind(&c.setPooling2d, "cudnnSetPooling2dDescriptor")
	v.bind(&c.poolForward, "cudnnPoolingForward")
	v.bind(&c.poolBackward, "cudnnPoolingBackward")
	c.vendorErr = v.err
	c.version = int(c.getVersion())
	if c.version < 9000 {
		return nil, fmt.Errorf("cuda: %s is cuDNN %d; cuDNN 9 is needed: %s", path, c.version, lib.hint)
	}
	return c, nil
}

// check turns a cuDNN status into nil or an *Error.
func (c *cudnn) check(r Result, call string) error {
	if r == 0 {
		return nil
	}
	e := &Error{Call: call, Code: r, Name: goString(c.getErrorString(r))}
	if e.Name == "" {
		e.Name = fmt.Sprintf("cudnnStatus %d", int32(r))
	}
	if strings.Contains(e.Name, "ALLOC") { // ALLOC_FAILED, …_ALLOCATION_FAILED
		e.Hint = "lower --batch"
	}
	return e
}

func openNVRTC(e env, lib library) (*nvrtc, error) {
	h, path, err := e.open(lib)
	if err != nil {
		return nil, err
	}
	c := &nvrtc{path: path}
	b := &binder{lib: path, handle: h}
	b.bind(&c.version, "nvrtcVersion")
	b.bind(&c.getErrorString, "nvrtcGetErrorString")
	b.bind(&c.create, "nvrtcCreateProgram")
	b.bind(&c.compile0, "nvrtcCompileProgram")
	b.bind(&c.getPTXSize, "nvrtcGetPTXSize")
	b.bind(&c.getPTX, "nvrtcGetPTX")
	b.bind(&c.getLogSize, "nvrtcGetProgramLogSize")
	b.bind(&c.getLog, "nvrtcGetProgramLog")
	b.bind(&c.destroy, "nvrtcDestroyProgram")
	if !b.optional(&c.getCUBINSize, "nvrtcGetCUBINSize") || !b.optional(&c.getCUBIN, "nvrtcGetCUBIN") {
		c.getCUBINSize, c.getCUBIN = nil, nil
	}
	if b.err != nil {
		return nil, b.err
	}
	var maj, mnr int32
	if r := c.version(&maj, &mnr); r != 0 {
		return nil, c.check(r, "nvrtcVersion")
	}
	c.major, c.minor = int(maj), int(mnr)
	return c, nil
}

// check turns an NVRTC result into nil or an *Error.
func (c *nvrtc) check(r Result, call string) error {
	if r == 0 {
		return nil
	}
	return &Error{Call: call, Code: r, Name: goString(c.getErrorString(r))}
}

// compileKernels compiles one CUDA C source for compute capability
// major.minor: to machine code (a cubin for sm_XY) where this NVRTC can,
// which the driver loads without a JIT step and whatever PTX version it
// knows, else to PTX for compute_XY. It returns the image with what it is.
func (c *nvrtc) compileKernels(name, src string, major, minor int) (image []byte, kind string, err error) {
	if c.getCUBIN != nil {
		image, err = c.compile(name, src, fmt.Sprintf("sm_%d%d", major, minor), c.getCUBINSize, c.getCUBIN)
		if err == nil {
			return image, "cubin", nil
		}
	}
	image, err2 := c.compilePTX(name, src, major, minor)
	if err2 != nil {
		if err != nil {
			return nil, "", fmt.Errorf("%v; and as PTX: %w", err, err2)
		}
		return nil, "", err2
	}
	return image, "ptx", nil
}

// compilePTX compiles one CUDA C source to PTX for compute capability
// major.minor, returning the PTX with its NUL terminator.
func (c *nvrtc) compilePTX(name, src string, major, minor int) ([]byte, error) {
	return c.compile(name, src, fmt.Sprintf("compute_%d%d", major, minor), c.getPTXSize, c.getPTX)
}

// compile compiles src for arch (compute_XY: PTX; sm_XY: a cubin) and
// returns the output that size and get read.
func (c *nvrtc) compile(name, src, arch string, size func(uintptr, *uint64) Result, get func(uintptr, *byte) Result) ([]byte, error) {
	csrc, cname := cString(src), cString(name)
	var prog uintptr
	if err := c.check(c.create(&prog, &csrc[0], &cname[0], 0, nil, nil), "nvrtcCreateProgram("+name+")"); err != nil {
		return nil, err
	}
	defer c.destroy(&prog)
	opts := [][]byte{
		cString("--gpu-architecture=" + arch),
		// No contraction into fused multiply-adds: every product and sum
		// is rounded as written, as the CPU device does.
		cString("--fmad=false"),
	}
	ptrs := make([]*byte, len(opts))
	for i, o := range opts {
		ptrs[i] = &o[0]
	}
	r := c.compile0(prog, int32(len(ptrs)), unsafe.Pointer(&ptrs[0]))
	if r != 0 {
		var n uint64
		log := ""
		if c.getLogSize(prog, &n) == 0 && n > 1 {
			buf := make([]byte, n)
			if c.getLog(prog, &buf[0]) == 0 {
				log = string(buf[:n-1])
			}
		}
		e := c.check(r, fmt.Sprintf("nvrtcCompileProgram(%s, %s)", name, arch)).(*Error)
		e.Hint = "NVRTC " + fmt.Sprint(c.major, ".", c.minor) + " log:\n" + log
		return nil, e
	}
	var n uint64
	if err := c.check(size(prog, &n), "nvrtcGet output size ("+arch+")"); err != nil {
		return nil, err
	}
	if n == 0 {
		return nil, &Error{Call: "nvrtcCompileProgram(" + name + ", " + arch + ")", Name: "empty output"}
	}
	out := make([]byte, n)
	if err := c.check(get(prog, &out[0]), "nvrtcGet output ("+arch+")"); err != nil {
		return nil, err
	}
	return out, nil
}
