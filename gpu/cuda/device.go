// Package cuda is the NVIDIA GPU backend of gpu.Device: the CUDA driver
// API, cuDNN 9, cuBLAS and NVRTC, all loaded at run time with purego, so
// the build needs neither cgo nor the CUDA toolkit, and a binary built
// with CGO_ENABLED=0 runs on any machine, with or without a GPU.
//
// Tensors follow package gpu: N images, C channels, H rows, W columns,
// NCHW with W fastest; convolution outputs are (N, K, P, Q).
//
// A Device is one logical device: a stream of its own on the primary
// context of a GPU, with its own cuBLAS and cuDNN handles. Two Devices may
// share a GPU ("--gpus 0,0"): their work overlaps, ordered only by the
// events the scheduler records and waits on. Convolutions are cuDNN's
// (the fastest algorithm found once per shape); fully-connected layers are
// cuBLAS SGEMMs; every other operation is a kernel of package kernels,
// compiled by NVRTC for the GPU's compute capability when the first Device
// on it opens. TF32 is off unless Options.TF32 asks for it, so results
// match the CPU device to float32 tolerances.
//
// The libraries are found on LD_LIBRARY_PATH, in the CUDA toolkit and
// system folders, and in Python's site-packages/nvidia/*/lib (the pip
// wheels); ALEXNET_LIBCUDA, ALEXNET_CUBLAS, ALEXNET_CUDNN and ALEXNET_NVRTC
// override the search. See Devices and Libraries.
package cuda

import (
	"errors"
	"fmt"
	"math"
	"runtime"
	"strings"
	"sync"
	"time"
	"unsafe"

	"github.com/alexnet-go/trainer/gpu"
	"github.com/alexnet-go/trainer/kernels"
)

// Options configures a Device.
type Options struct {
	// TF32 lets cuBLAS and cuDNN use TF32 tensor cores for float32 work
	// (Ampere and later): faster, with 10-bit mantissas in the products,
	// so results no longer match the CPU device to float32 tolerances.
	TF32 bool
	// Deterministic restricts cuDNN to algorithms whose results are the
	// same bits on every run (cuDNN's fastest may sum in a varying order);
	// cuBLAS and our kernels are deterministic already.
	Deterministic bool
}

// gpuContext is the state shared by the Devices of one GPU: the primary
// context and the loaded kernels.
type gpuContext struct {
	ordinal int
	dev     int32
	ctx     uintptr
	info    Info
	funcs   map[string]uintptr // kernel name → CUfunction
	devices int                // logical devices opened on it, for names
}

var (
	ctxMu      sync.Mutex
	contexts   = map[int]*gpuContext{}
	imageCache = map[[2]int][]compiled{} // (major, minor) → the kernels' images
	peerMu     sync.Mutex
	peers      = map[[2]int]bool{} // (src, dst) ordinals → peer access enabled
)

// compiled is one kernels source compiled by NVRTC.
type compiled struct {
	name  string
	image []byte // a cubin, or PTX with its NUL
	kind  string // "cubin" or "ptx"
	funcs []string
}

// Device is a gpu.Device on one stream of an NVIDIA GPU.
type Device struct {
	name string
	drv  *driver
	lib  *libs
	gc   *gpuContext
	opt  Options

	stream uintptr
	blas   uintptr // cublasHandle_t
	dnn    uintptr // cudnnHandle_t

	convs map[gpu.ConvShape]*convPlan
	lrns  map[gpu.LRNShape]*lrnPlan   // cuDNN's LRN (vendor.go), made on first use
	pools map[gpu.PoolShape]*poolPlan // cuDNN's pooling (vendor.go)
	ws    uint64                      // cuDNN workspace
	wsLen uint64                      // its bytes

	sgdTable *Buffer // SGDMulti's table of tensors (sgdmulti.go)

	stage *stager // page-locked staging and a copy stream, made by the first StageUpload

	closed bool
}

var _ gpu.Device = (*Device)(nil)

// Open opens a logical device on GPU ordinal: a new stream on the GPU's
// primary context with its own cuBLAS and cuDNN handles. The first Open
// of a GPU compiles the kernels (NVRTC) and loads them. Without a driver
// the error matches ErrNoDriver; a missing library names it and says what
// to install.
func Open(ordinal int, o Options) (*Device, error) {
	drv, err := loadDriver()
	if err != nil {
		return nil, err
	}
	var ver int32
	if err := drv.check(drv.cuDriverGetVersion(&ver), "cuDriverGetVersion"); err != nil {
		return nil, err
	}
	lib, err := loadLibs(int(ver))
	if err != nil {
		return nil, err
	}
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	gc, err := openContext(drv, lib, ordinal)
	if err != nil {
		return nil, err
	}
	d := &Device{drv: drv, lib: lib, gc: gc, opt: o, convs: map[gpu.ConvShape]*convPlan{}}
	ctxMu.Lock()
	d.name = fmt.Sprintf("cuda:%d", ordinal)
	if gc.devices > 0 {
		d.name += fmt.Sprintf("/%d", gc.devices)
	}
	gc.devices++
	ctxMu.Unlock()
	if err := d.start(); err != nil {
		return nil, err
	}
	return d, nil
}

// start creates d's stream and its cuBLAS and cuDNN handles on it, with
// the math modes d.opt asks for. The caller holds d's context.
func (d *Device) start() error {
	drv, lib, o := d.drv, d.lib, d.opt
	if err := drv.check(drv.cuStreamCreate(&d.stream, streamNonBlocking), "cuStreamCreate"); err != nil {
		return err
	}
	b := lib.blas
	if err := b.check(b.create(&d.blas), "cublasCreate_v2"); err != nil {
		return err
	}
	if err := b.check(b.setStream(d.blas, d.stream), "cublasSetStream_v2"); err != nil {
		return err
	}
	mode := int32(cublasDefaultMath) // FP32 SGEMM, no TF32
	if o.TF32 {
		mode = cublasTF32TensorMath
	}
	if err := b.check(b.setMathMode(d.blas, mode), "cublasSetMathMode"); err != nil {
		return err
	}
	n := lib.dnn
	if err := n.check(n.create(&d.dnn), "cudnnCreate"); err != nil {
		return err
	}
	return n.check(n.setStream(d.dnn, d.stream), "cudnnSetStream")
}

// openContext retains ordinal's primary context, makes it current on the
// calling (locked) thread and loads the kernels into it, once per GPU.
func openContext(drv *driver, lib *libs, ordinal int) (*gpuContext, error) {
	ctxMu.Lock()
	defer ctxMu.Unlock()
	if gc, ok := contexts[ordinal]; ok {
		return gc, drv.check(drv.cuCtxSetCurrent(gc.ctx), "cuCtxSetCurrent")
	}
	gc := &gpuContext{ordinal: ordinal, funcs: map[string]uintptr{}}
	if err := drv.check(drv.cuDeviceGet(&gc.dev, int32(ordinal)), fmt.Sprintf("cuDeviceGet(%d)", ordinal)); err != nil {
		return nil, err
	}
	info, err := drv.deviceInfo(ordinal)
	if err != nil {
		return nil, err
	}
	gc.info = info
	if err := drv.check(drv.cuDevicePrimaryCtxRetain(&gc.ctx, gc.dev), fmt.Sprintf("cuDevicePrimaryCtxRetain(%d)", ordinal)); err != nil {
		return nil, err
	}
	if err := drv.check(drv.cuCtxSetCurrent(gc.ctx), "cuCtxSetCurrent"); err != nil {
		return nil, err
	}
	cc := [2]int{info.Major, info.Minor}
	progs, ok := imageCache[cc]
	if !ok {
		for _, s := range kernels.Sources() {
			image, kind, err := lib.rtc.compileKernels(s.Name, s.Code, info.Major, info.Minor)
			if err != nil {
				return nil, err
			}
			progs = append(progs, compiled{name: s.Name, image: image, kind: kind, funcs: kernels.Kernels(s.Code)})
		}
		imageCache[cc] = progs
	}
	for i, p := range progs {
		var mod uintptr
		r := drv.cuModuleLoadData(&mod, unsafe.Pointer(&p.image[0]))
		if r != cudaSuccess && p.kind == "cubin" {
			// A cubin the driver will not take (made by an NVRTC newer
			// than it): PTX, for the driver's JIT, may still load.
			ptx, err := lib.rtc.compilePTX(p.name, kernels.Code(p.name), info.Major, info.Minor)
			if err != nil {
				return nil, err
			}
			p = compiled{name: p.name, image: ptx, kind: "ptx", funcs: p.funcs}
			progs[i] = p
			r = drv.cuModuleLoadData(&mod, unsafe.Pointer(&p.image[0]))
		}
		if err := drv.check(r, "cuModuleLoadData("+p.name+", "+p.kind+")"); err != nil {
			return nil, err
		}
		for _, f := range p.funcs {
			var fn uintptr
			cname := cString(f)
			if err := drv.check(drv.cuModuleGetFunction(&fn, mod, &cname[0]), "cuModuleGetFunction("+f+")"); err != nil {
				return nil, err
			}
			gc.funcs[f] = fn
		}
	}
	contexts[ordinal] = gc
	return gc, nil
}

// Close waits for d's work and releases its stream, handles and cuDNN
// workspace. Buffers d allocated must be freed before. The GPU's context
// and kernels stay loaded for the next Open. A closed Device must not be
// used; closing it again is a no-op.
func (d *Device) Close() error {
	if d.closed {
		return nil
	}
	d.closed = true
	done, err := d.bind()
	defer done()
	if err != nil {
		return err
	}
	err = d.drv.check(d.drv.cuStreamSynchronize(d.stream), "cuStreamSynchronize on "+d.name)
	if d.ws != 0 {
		_ = d.drv.cuMemFree(d.ws)
		d.ws, d.wsLen = 0, 0
	}
	if d.sgdTable != nil {
		_ = d.drv.cuMemFree(d.sgdTable.ptr)
		d.sgdTable = nil
	}
	if e := d.closeStage(); err == nil {
		err = e
	}
	// The convolution descriptors are small and not freed: cuDNN's
	// destroy calls are not bound.
	clear(d.convs)
	clear(d.lrns)
	clear(d.pools)
	if d.dnn != 0 {
		_ = d.lib.dnn.destroy(d.dnn)
		d.dnn = 0
	}
	if d.blas != 0 {
		_ = d.lib.blas.destroy(d.blas)
		d.blas = 0
	}
	if d.stream != 0 {
		_ = d.drv.cuStreamDestroy(d.stream)
		d.stream = 0
	}
	ctxMu.Lock()
	d.gc.devices--
	ctxMu.Unlock()
	return err
}

// Name returns "cuda:<ordinal>", followed by "/<k>" for the k-th further
// logical device on the same GPU.
func (d *Device) Name() string { return d.name }

// Info describes the device's GPU.
func (d *Device) Info() Info { return d.gc.info }

// bind locks the calling goroutine to its thread and makes the device's
// context current there, for the CUDA calls that follow; call the
// returned function when done.
func (d *Device) bind() (func(), error) {
	runtime.LockOSThread()
	if err := d.drv.check(d.drv.cuCtxSetCurrent(d.gc.ctx), "cuCtxSetCurrent"); err != nil {
		runtime.UnlockOSThread()
		return func() {}, err
	}
	return runtime.UnlockOSThread, nil
}

// Buffer is device memory owned by one Device.
type Buffer struct {
	dev *Device
	ptr uint64 // CUdeviceptr; 0 for an empty buffer
	n   int
}

// Device returns the device that allocated b.
func (b *Buffer) Device() gpu.Device { return b.dev }

// Len returns the number of float32 values in b.
func (b *Buffer) Len() int {
	if b == nil {
		return 0
	}
	return b.n
}

// ptr returns the device pointer of b, a buffer of d holding at least n
// values. A buffer of another device or backend is a programmer's
// mistake.
func (d *Device) ptr(name string, b gpu.Buffer, n int) uint64 {
	if cb, ok := b.(*Buffer); ok && cb == nil {
		panic(fmt.Sprintf("gpu: %s is nil", name))
	}
	gpu.Check(name, b, n)
	cb, ok := b.(*Buffer)
	if !ok {
		panic(fmt.Sprintf("cuda: %s: %s is a %T, not a *cuda.Buffer", d.name, name, b))
	}
	if cb.dev.gc != d.gc {
		panic(fmt.Sprintf("cuda: %s: %s lives on %s", d.name, name, cb.dev.name))
	}
	return cb.ptr
}

// Alloc returns a buffer of n values.
func (d *Device) Alloc(n int) (gpu.Buffer, error) {
	if n < 0 {
		return nil, fmt.Errorf("cuda: %s: Alloc(%d): negative size", d.name, n)
	}
	if n == 0 {
		return &Buffer{dev: d}, nil
	}
	done, err := d.bind()
	defer done()
	if err != nil {
		return nil, err
	}
	b := &Buffer{dev: d, n: n}
	if err := d.drv.check(d.drv.cuMemAlloc(&b.ptr, 4*uint64(n)), fmt.Sprintf("cuMemAlloc_v2(%d bytes) on %s", 4*n, d.name)); err != nil {
		return nil, err
	}
	return b, nil
}

// Free releases b's memory; freeing nil is a no-op.
func (d *Device) Free(b gpu.Buffer) {
	cb, ok := b.(*Buffer)
	if !ok || cb == nil || cb.ptr == 0 {
		return
	}
	done, err := d.bind()
	defer done()
	if err == nil {
		// Work enqueued on the buffer must finish before the memory can
		// be handed out again.
		_ = d.drv.cuStreamSynchronize(d.stream)
		_ = d.drv.cuMemFree(cb.ptr)
	}
	cb.ptr, cb.n = 0, 0
}

// Upload copies src into the start of dst. The copy is enqueued on the
// stream; src may be reused when Upload returns (the driver stages
// pageable memory before returning).
func (d *Device) Upload(dst gpu.Buffer, src []float32) error {
	if len(src) == 0 {
		return nil
	}
	p := d.ptr("dst", dst, len(src))
	done, err := d.bind()
	defer done()
	if err != nil {
		return err
	}
	err = d.drv.check(d.drv.cuMemcpyHtoDAsync(p, unsafe.Pointer(&src[0]), 4*uint64(len(src)), d.stream), fmt.Sprintf("cuMemcpyHtoDAsync_v2(%d bytes) on %s", 4*len(src), d.name))
	runtime.KeepAlive(src)
	return err
}

// Download copies the start of src into dst after the work enqueued so
// far, and waits for it.
func (d *Device) Download(dst []float32, src gpu.Buffer) error {
	if len(dst) == 0 {
		return d.Sync()
	}
	p := d.ptr("src", src, len(dst))
	done, err := d.bind()
	defer done()
	if err != nil {
		return err
	}
	if err := d.drv.check(d.drv.cuMemcpyDtoHAsync(unsafe.Pointer(&dst[0]), p, 4*uint64(len(dst)), d.stream), fmt.Sprintf("cuMemcpyDtoHAsync_v2(%d bytes) on %s", 4*len(dst), d.name)); err != nil {
		return err
	}
	err = d.drv.check(d.drv.cuStreamSynchronize(d.stream), "cuStreamSynchronize on "+d.name)
	runtime.KeepAlive(dst)
	return err
}

// Copy copies min(dst.Len(), src.Len()) values from src to dst.
func (d *Device) Copy(dst, src gpu.Buffer) error {
	n := min(dst.Len(), src.Len())
	if n == 0 {
		return nil
	}
	pd, ps := d.ptr("dst", dst, n), d.ptr("src", src, n)
	done, err := d.bind()
	defer done()
	if err != nil {
		return err
	}
	return d.drv.check(d.drv.cuMemcpyDtoDAsync(pd, ps, 4*uint64(n), d.stream), "cuMemcpyDtoDAsync_v2 on "+d.name)
}

// CopyPeer copies src, a buffer of d, into dst on another Device: within
// one GPU a device-to-device copy, between two GPUs a peer copy when the
// hardware allows peer access (enabled on first use), else gpu.ErrNoPeer.
// It is enqueued on d's stream.
func (d *Device) CopyPeer(dst, src gpu.Buffer) error {
	t, ok := dst.(*Buffer)
	if !ok || t == nil {
		return gpu.ErrNoPeer
	}
	n := min(t.Len(), src.Len())
	ps := d.ptr("src", src, n)
	if n == 0 {
		return nil
	}
	done, err := d.bind()
	defer done()
	if err != nil {
		return err
	}
	if t.dev.gc == d.gc {
		return d.drv.check(d.drv.cuMemcpyDtoDAsync(t.ptr, ps, 4*uint64(n), d.stream), "cuMemcpyDtoDAsync_v2 "+d.name+" → "+t.dev.name)
	}
	if !d.enablePeer(t.dev.gc) {
		return gpu.ErrNoPeer
	}
	return d.drv.check(d.drv.cuMemcpyPeerAsync(t.ptr, t.dev.gc.ctx, ps, d.gc.ctx, 4*uint64(n), d.stream),
		fmt.Sprintf("cuMemcpyPeerAsync(%d bytes) %s → %s", 4*n, d.name, t.dev.name))
}

// enablePeer enables peer access both ways between d's GPU and g, once,
// and reports whether it is on. The caller's thread is locked with d's
// context current, and is left so.
func (d *Device) enablePeer(g *gpuContext) bool {
	key := [2]int{min(d.gc.ordinal, g.ordinal), max(d.gc.ordinal, g.ordinal)}
	peerMu.Lock()
	defer peerMu.Unlock()
	if on, ok := peers[key]; ok {
		return on
	}
	var ab, ba int32
	on := d.drv.cuDeviceCanAccessPeer(&ab, d.gc.dev, g.dev) == cudaSuccess && ab != 0 &&
		d.drv.cuDeviceCanAccessPeer(&ba, g.dev, d.gc.dev) == cudaSuccess && ba != 0
	if on {
		r1 := d.drv.cuCtxEnablePeerAccess(g.ctx, 0)
		r2 := cudaSuccess
		if d.drv.cuCtxSetCurrent(g.ctx) == cudaSuccess {
			r2 = d.drv.cuCtxEnablePeerAccess(d.gc.ctx, 0)
		}
		_ = d.drv.cuCtxSetCurrent(d.gc.ctx)
		ok := func(r Result) bool { return r == cudaSuccess || r == cudaErrorPeerAlreadyEnabled }
		on = ok(r1) && ok(r2)
	}
	peers[key] = on
	return on
}

// Fill sets every value of dst to v.
func (d *Device) Fill(dst gpu.Buffer, v float32) error {
	n := dst.Len()
	p := d.ptr("dst", dst, n)
	if n == 0 {
		return nil
	}
	done, err := d.bind()
	defer done()
	if err != nil {
		return err
	}
	return d.drv.check(d.drv.cuMemsetD32Async(p, math.Float32bits(v), uint64(n), d.stream), "cuMemsetD32Async on "+d.name)
}

// event is a CUevent recorded on a Device's stream.
type event struct {
	dev *Device
	ev  uintptr
}

// Record returns an event marking the work enqueued so far. The event is
// destroyed when it is garbage.
func (d *Device) Record() (gpu.Event, error) {
	e, err := d.record(eventDisableTiming)
	if err != nil {
		return nil, err
	}
	return e, nil
}

// record creates an event with flags and records it on d's stream. The
// event is destroyed when it is garbage.
func (d *Device) record(flags uint32) (*event, error) {
	done, err := d.bind()
	defer done()
	if err != nil {
		return nil, err
	}
	return d.recordOn(d.stream, flags)
}

// recordOn creates an event with flags and records it on stream, with d's
// context current. The event is destroyed when it is garbage.
func (d *Device) recordOn(stream uintptr, flags uint32) (*event, error) {
	e := &event{dev: d}
	if err := d.drv.check(d.drv.cuEventCreate(&e.ev, flags), "cuEventCreate on "+d.name); err != nil {
		return nil, err
	}
	if err := d.drv.check(d.drv.cuEventRecord(e.ev, stream), "cuEventRecord on "+d.name); err != nil {
		_ = d.drv.cuEventDestroy(e.ev)
		return nil, err
	}
	runtime.AddCleanup(e, func(h uintptr) {
		// A pending event is released when it completes.
		runtime.LockOSThread()
		defer runtime.UnlockOSThread()
		if d.drv.cuCtxSetCurrent(d.gc.ctx) == cudaSuccess {
			_ = d.drv.cuEventDestroy(h)
		}
	}, e.ev)
	return e, nil
}

var _ gpu.Timer = (*Device)(nil)

var _ gpu.MemorySharer = (*Device)(nil)

var _ gpu.ScratchReporter = (*Device)(nil)

// ScratchBytes is the size of d's cuDNN workspace (gpu.ScratchReporter).
func (d *Device) ScratchBytes() int64 { return int64(d.wsLen) }

// SharesMemory reports whether o is a Device on the same GPU as d
// (gpu.MemorySharer).
func (d *Device) SharesMemory(o gpu.Device) bool {
	c, ok := o.(*Device)
	return ok && c != d && c.gc == d.gc
}

// Mark records a timing event on d's stream (gpu.Timer).
func (d *Device) Mark() (gpu.Mark, error) {
	e, err := d.record(0)
	if err != nil {
		return nil, err
	}
	return e, nil
}

// Elapsed waits for both marks and returns the GPU time between them
// (gpu.Timer); the events' resolution is about half a microsecond.
func (d *Device) Elapsed(from, to gpu.Mark) (time.Duration, error) {
	a, ok1 := from.(*event)
	b, ok2 := to.(*event)
	if !ok1 || !ok2 || a == nil || b == nil {
		return 0, fmt.Errorf("cuda: %s: Elapsed between marks of another device", d.name)
	}
	if d.drv.cuEventElapsedTime == nil {
		return 0, fmt.Errorf("cuda: %s has no cuEventElapsedTime", d.drv.path)
	}
	done, err := d.bind()
	defer done()
	if err != nil {
		return 0, err
	}
	if err := d.drv.check(d.drv.cuEventSynchronize(b.ev), "cuEventSynchronize on "+d.name); err != nil {
		return 0, err
	}
	var ms float32
	if err := d.drv.check(d.drv.cuEventElapsedTime(&ms, a.ev, b.ev), "cuEventElapsedTime on "+d.name); err != nil {
		return 0, err
	}
	runtime.KeepAlive(a)
	runtime.KeepAlive(b)
	return time.Duration(float64(ms) * 1e6), nil
}

// Wait makes later work on d wait for e. An event of a CUDA device is
// waited on by the stream, without blocking the host; any other event
// (a CPU device's) marks work that is already complete.
func (d *Device) Wait(e gpu.Event) error {
	ev, ok := e.(*event)
	if !ok || ev == nil {
		return nil
	}
	done, err := d.bind()
	defer done()
	if err != nil {
		return err
	}
	err = d.drv.check(d.drv.cuStreamWaitEvent(d.stream, ev.ev, 0), "cuStreamWaitEvent "+d.name+" on "+ev.dev.name)
	runtime.KeepAlive(ev)
	return err
}

// Sync blocks until the work enqueued on d is done, and returns the first
// error of that work (a failed kernel, a memory fault).
func (d *Device) Sync() error {
	done, err := d.bind()
	defer done()
	if err != nil {
		return err
	}
	return d.drv.check(d.drv.cuStreamSynchronize(d.stream), "cuStreamSynchronize on "+d.name)
}

// launch runs kernel name on grid×block threads on d's stream. args are
// the kernel's parameters in order: int (passed as int32), float32,
// uint64, or a gpu.Buffer of d (its device pointer).
func (d *Device) launch(name string, grid, block int, args ...any) error {
	if grid <= 0 {
		return nil
	}
	checkArgs(name, args)
	fn, ok := d.gc.funcs[name]
	if !ok {
		panic("cuda: kernel " + name + " not loaded")
	}
	slots := make([]uint64, len(args))
	params := make([]unsafe.Pointer, len(args))
	for i, a := range args {
		switch v := a.(type) {
		case int:
			if v < math.MinInt32 || v > math.MaxInt32 {
				panic(fmt.Sprintf("cuda: %s: argument %d = %d overflows int", name, i, v))
			}
			*(*int32)(unsafe.Pointer(&slots[i])) = int32(v)
		case float32:
			*(*float32)(unsafe.Pointer(&slots[i])) = v
		case uint64:
			slots[i] = v
		case *Buffer:
			slots[i] = v.ptr
		default:
			panic(fmt.Sprintf("cuda: %s: argument %d has type %T", name, i, a))
		}
		params[i] = unsafe.Pointer(&slots[i])
	}
	done, err := d.bind()
	defer done()
	if err != nil {
		return err
	}
	err = d.drv.check(d.drv.cuLaunchKernel(fn, uint32(grid), 1, 1, uint32(block), 1, 1, 0, d.stream, unsafe.Pointer(&params[0]), nil),
		fmt.Sprintf("cuLaunchKernel(%s, %d×%d) on %s", name, grid, block, d.name))
	runtime.KeepAlive(slots)
	runtime.KeepAlive(params)
	return err
}

// threads is the block size of every kernel launch. It is a variable only
// so that tests can run the kernels at other block sizes; bias_backward
// and softmax_xent need a power of two no larger than 256.
var threads = 256

// grid returns the blocks for n values in grid-stride kernels: enough to
// fill the GPU, no more than n needs.
func (d *Device) grid(n int) int {
	if n <= 0 {
		return 0
	}
	return min((n+threads-1)/threads, 32*max(1, d.gc.info.SMs))
}

// buf returns b as a *Buffer of d holding at least n values.
func (d *Device) buf(name string, b gpu.Buffer, n int) *Buffer {
	d.ptr(name, b, n)
	return b.(*Buffer)
}

// validate panics on a shape that Validate rejects.
func validate(s interface{ Validate() error }) {
	if err := s.Validate(); err != nil {
		panic(err)
	}
}

// Libraries describes the libraries loaded (after a successful Open or
// Devices): each one's path and version.
func Libraries() string {
	var parts []string
	if d, err := loadDriver(); err == nil {
		parts = append(parts, "driver "+d.path)
	} else {
		return err.Error()
	}
	if libs0 != nil {
		parts = append(parts, "cuBLAS "+libs0.blas.path,
			fmt.Sprintf("cuDNN %d %s", libs0.dnn.version, libs0.dnn.path),
			fmt.Sprintf("NVRTC %d.%d %s", libs0.rtc.major, libs0.rtc.minor, libs0.rtc.path))
	} else if libsErr != nil {
		parts = append(parts, libsErr.Error())
	}
	return strings.Join(parts, "; ")
}

// errNotImplemented is what an operation not written yet returns.
func errNotImplemented(op string) error { return errors.New("cuda: " + op + " not implemented yet") }
