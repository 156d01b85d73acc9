package cuda

import (
	"fmt"
	"slices"
	"strings"
	"sync"
	"syscall"
	"testing"
	"unsafe"

	"github.com/alexnet-go/trainer/gpu"
	"github.com/alexnet-go/trainer/kernels"
)

// This file is a GPU made of host memory and host code, for the tests: a
// fake driver whose memory is real (mmap'd, outside the Go heap, with a
// guard page after each allocation), whose cuLaunchKernel runs the
// kernels of package kernels compiled for the host (hostkern_test.go)
// with the very argument list Device.launch passes, and fake cuBLAS and
// cuDNN that compute what the libraries' documentation says their calls
// compute, check the arguments the way the documentation says the
// libraries do, and record every call (hostlibs_test.go).

// Results of the fake driver, with the names the real one gives them.
const (
	cudaErrorInvalidValue   Result = 1
	cudaErrorInvalidHandle  Result = 400
	cudaErrorIllegalAddress Result = 700
	cudaErrorLaunchFailed   Result = 719
)

var hostErrorNames = map[Result][2]string{
	cudaErrorInvalidValue:   {"CUDA_ERROR_INVALID_VALUE", "invalid argument"},
	cudaErrorOutOfMemory:    {"CUDA_ERROR_OUT_OF_MEMORY", "out of memory"},
	cudaErrorInvalidHandle:  {"CUDA_ERROR_INVALID_HANDLE", "invalid resource handle"},
	cudaErrorIllegalAddress: {"CUDA_ERROR_ILLEGAL_ADDRESS", "an illegal memory access was encountered"},
	cudaErrorLaunchFailed:   {"CUDA_ERROR_LAUNCH_FAILED", "unspecified launch failure"},
}

// hostCStrings keeps the C strings the fake's cuGetError* return.
var (
	hostCStringsMu sync.Mutex
	hostCStrings   = map[string][]byte{}
)

func hostCString(s string) uintptr {
	hostCStringsMu.Lock()
	defer hostCStringsMu.Unlock()
	b, ok := hostCStrings[s]
	if !ok {
		b = cString(s)
		hostCStrings[s] = b
	}
	return uintptr(unsafe.Pointer(&b[0]))
}

// region is one allocation of the host GPU.
type region struct {
	mapping []byte // the whole mmap, the guard page last
	off     uint64 // where the allocation starts in mapping
	bytes   uint64
	ptr     uint64 // its address
	seq     int    // allocation number, from 1, for the call record
}

const hostPage = 4096

// hostGPU is the state of the fake driver and libraries.
type hostGPU struct {
	t       *testing.T
	kernels *hostKernels // nil: launches are recorded, not run
	gc      *gpuContext
	drv     *driver
	lib     *libs

	mu       sync.Mutex
	libMu    sync.Mutex // one fake cuBLAS or cuDNN call at a time (serialize)
	drvMu    sync.Mutex // one fake driver call at a time
	recMu    sync.Mutex // calls and handles, which every fake appends to
	mem      map[uint64]*region
	seq      int
	handles  uintptr
	streams  map[uintptr]bool
	events   map[uintptr]bool
	funcName map[uintptr]string
	names    map[uint64]string // pointer → name, for the call record
	calls    []string          // the record: library calls and launches
	launched map[string]int    // launches per kernel
	dnn      *hostDNN
	blasMode map[uintptr]int32
	pinned   map[uintptr][]byte // cuMemHostAlloc's page-locked memory (mapped)
}

// newHostGPU returns a host GPU with sms multiprocessors. k may be nil.
func newHostGPU(t *testing.T, k *hostKernels, sms int) *hostGPU {
	g := &hostGPU{t: t, kernels: k, mem: map[uint64]*region{}, streams: map[uintptr]bool{}, events: map[uintptr]bool{},
		funcName: map[uintptr]string{}, names: map[uint64]string{}, blasMode: map[uintptr]int32{}, launched: map[string]int{}, pinned: map[uintptr][]byte{}}
	g.gc = &gpuContext{ctx: 0xc0, funcs: map[string]uintptr{}, info: Info{Name: "host", Memory: 1 << 34, Major: 9, Minor: 0, SMs: sms}}
	for _, s := range kernels.Sources() {
		for _, name := range kernels.Kernels(s.Code) {
			h := g.handle()
			g.gc.funcs[name], g.funcName[h] = h, name
		}
	}
	g.drv = g.driver()
	g.dnn = newHostDNN(g)
	g.lib = &libs{blas: g.cublas(), dnn: g.dnn.cudnn()}
	t.Cleanup(g.release)
	return g
}

// open opens a logical device on the host GPU, as Open does on a real
// one.
func (g *hostGPU) open(o Options) *Device {
	g.t.Helper()
	d := &Device{drv: g.drv, lib: g.lib, gc: g.gc, opt: o, convs: map[gpu.ConvShape]*convPlan{}}
	d.name = "cuda:host"
	if g.gc.devices > 0 {
		d.name += fmt.Sprintf("/%d", g.gc.devices)
	}
	g.gc.devices++
	if err := d.start(); err != nil {
		g.t.Fatal(err)
	}
	g.t.Cleanup(func() { _ = d.Close() })
	return d
}

func (g *hostGPU) handle() uintptr {
	g.recMu.Lock()
	defer g.recMu.Unlock()
	g.handles++
	return 0x1000 + g.handles
}

// record appends a line to the call record.
func (g *hostGPU) record(format string, args ...any) {
	g.recMu.Lock()
	defer g.recMu.Unlock()
	g.calls = append(g.calls, fmt.Sprintf(format, args...))
}

// release unmaps every allocation left.
func (g *hostGPU) release() {
	g.mu.Lock()
	defer g.mu.Unlock()
	for p, r := range g.mem {
		_ = syscall.Munmap(r.mapping)
		delete(g.mem, p)
	}
}

// alloc maps bytes of memory, filled with 0xff (NaN as float32) as
// memory that nothing wrote, and ending as close to a guard page as
// 16-byte alignment allows, so that a read or write past the end faults.
func (g *hostGPU) alloc(bytes uint64) (uint64, Result) {
	if bytes == 0 {
		return 0, cudaErrorInvalidValue
	}
	size := (bytes+15)/16*16 + hostPage
	size = (size + hostPage - 1) / hostPage * hostPage
	m, err := syscall.Mmap(-1, 0, int(size), syscall.PROT_READ|syscall.PROT_WRITE, syscall.MAP_ANON|syscall.MAP_PRIVATE)
	if err != nil {
		return 0, cudaErrorOutOfMemory
	}
	if err := syscall.Mprotect(m[size-hostPage:], syscall.PROT_NONE); err != nil {
		g.t.Fatal(err)
	}
	off := size - hostPage - (bytes+15)/16*16
	for i := range m[:size-hostPage] {
		m[i] = 0xff
	}
	g.seq++
	r := &region{mapping: m, off: off, bytes: bytes, ptr: uint64(uintptr(unsafe.Pointer(&m[off]))), seq: g.seq}
	g.mem[r.ptr] = r
	return r.ptr, cudaSuccess
}

// span returns the bytes of device memory at p, or nil unless they lie
// within one allocation.
func (g *hostGPU) span(p, bytes uint64) []byte {
	for _, r := range g.mem {
		if p >= r.ptr && p+bytes <= r.ptr+r.bytes && p+bytes >= p {
			o := r.off + (p - r.ptr)
			return r.mapping[o : o+bytes : o+bytes]
		}
	}
	return nil
}

// hasStream reports whether s is a stream of g, for the fakes that run
// beside the driver (NCCL's ranks, one goroutine each).
func (g *hostGPU) hasStream(s uintptr) bool {
	g.mu.Lock()
	defer g.mu.Unlock()
	return g.streams[s]
}

// floats returns n float32 of device memory at p, or nil.
func (g *hostGPU) floats(p uint64, n int) []float32 {
	if n == 0 {
		return []float32{}
	}
	b := g.span(p, 4*uint64(n))
	if b == nil {
		return nil
	}
	return unsafe.Slice((*float32)(unsafe.Pointer(&b[0])), n)
}

// name names device pointer p for the call record: the name a test gave
// it, else its allocation's number and the offset in it.
func (g *hostGPU) name(p uint64) string {
	if n, ok := g.names[p]; ok {
		return n
	}
	for _, r := range g.mem {
		if p >= r.ptr && p < r.ptr+r.bytes {
			if p == r.ptr {
				return fmt.Sprintf("mem%d", r.seq)
			}
			return fmt.Sprintf("mem%d+%d", r.seq, p-r.ptr)
		}
	}
	if p == 0 {
		return "NULL"
	}
	return "unallocated"
}

// near describes address p by the allocation it follows: a fault on a
// guard page is just past the end of one.
func (g *hostGPU) near(p uint64) string {
	var best *region
	for _, r := range g.mem {
		if r.ptr <= p && (best == nil || r.ptr > best.ptr) {
			best = r
		}
	}
	if best == nil || p-best.ptr > best.bytes+2*hostPage {
		return fmt.Sprintf("%#x, in no allocation", p)
	}
	return fmt.Sprintf("%#x, %d bytes past the end of %s (%d bytes)", p, p-(best.ptr+best.bytes), g.name(best.ptr), best.bytes)
}

// nameBuffer gives b's pointer a name in the call record.
func (g *hostGPU) nameBuffer(b gpu.Buffer, name string) { g.names[b.(*Buffer).ptr] = name }

func (g *hostGPU) stream(s uintptr) Result {
	if !g.streams[s] {
		// Device works on its own stream; the legacy stream (0) would
		// synchronize with every other.
		return cudaErrorInvalidHandle
	}
	return cudaSuccess
}

func (g *hostGPU) driver() *driver {
	return serialize(&g.drvMu, &driver{
		path: "host",
		cuGetErrorName: func(r Result, s *uintptr) Result {
			n, ok := hostErrorNames[r]
			if !ok {
				return cudaErrorInvalidValue
			}
			*s = hostCString(n[0])
			return cudaSuccess
		},
		cuGetErrorString: func(r Result, s *uintptr) Result {
			n, ok := hostErrorNames[r]
			if !ok {
				return cudaErrorInvalidValue
			}
			*s = hostCString(n[1])
			return cudaSuccess
		},
		cuCtxSetCurrent: func(ctx uintptr) Result {
			if ctx != g.gc.ctx {
				return cudaErrorInvalidHandle
			}
			return cudaSuccess
		},
		cuDeviceCanAccessPeer: func(can *int32, dev, peer int32) Result { *can = 0; return cudaSuccess },
		cuMemAlloc: func(p *uint64, bytes uint64) Result {
			g.mu.Lock()
			defer g.mu.Unlock()
			var r Result
			*p, r = g.alloc(bytes)
			return r
		},
		cuMemFree: func(p uint64) Result {
			g.mu.Lock()
			defer g.mu.Unlock()
			r, ok := g.mem[p]
			if !ok {
				return cudaErrorInvalidValue
			}
			delete(g.mem, p)
			delete(g.names, p)
			_ = syscall.Munmap(r.mapping)
			return cudaSuccess
		},
		cuMemcpyHtoDAsync: func(dst uint64, src unsafe.Pointer, bytes uint64, s uintptr) Result {
			g.mu.Lock()
			defer g.mu.Unlock()
			d := g.span(dst, bytes)
			if d == nil || src == nil {
				return cudaErrorInvalidValue
			}
			copy(d, unsafe.Slice((*byte)(src), bytes))
			return g.stream(s)
		},
		cuMemcpyDtoHAsync: func(dst unsafe.Pointer, src uint64, bytes uint64, s uintptr) Result {
			g.mu.Lock()
			defer g.mu.Unlock()
			b := g.span(src, bytes)
			if b == nil || dst == nil {
				return cudaErrorInvalidValue
			}
			copy(unsafe.Slice((*byte)(dst), bytes), b)
			return g.stream(s)
		},
		cuMemcpyDtoDAsync: func(dst, src uint64, bytes uint64, s uintptr) Result {
			g.mu.Lock()
			defer g.mu.Unlock()
			d, b := g.span(dst, bytes), g.span(src, bytes)
			if d == nil || b == nil {
				return cudaErrorInvalidValue
			}
			copy(d, b)
			return g.stream(s)
		},
		cuMemsetD32Async: func(dst uint64, v uint32, n uint64, s uintptr) Result {
			g.mu.Lock()
			defer g.mu.Unlock()
			d := g.span(dst, 4*n)
			if d == nil {
				return cudaErrorInvalidValue
			}
			w := unsafe.Slice((*uint32)(unsafe.Pointer(&d[0])), n)
			for i := range w {
				w[i] = v
			}
			return g.stream(s)
		},
		cuMemHostAlloc: func(p *unsafe.Pointer, bytes uint64, flags uint32) Result {
			g.mu.Lock()
			defer g.mu.Unlock()
			if bytes == 0 {
				return cudaErrorInvalidValue
			}
			m, err := syscall.Mmap(-1, 0, int(bytes), syscall.PROT_READ|syscall.PROT_WRITE, syscall.MAP_ANON|syscall.MAP_PRIVATE)
			if err != nil {
				return cudaErrorOutOfMemory
			}
			*p = unsafe.Pointer(&m[0])
			g.pinned[uintptr(*p)] = m
			return cudaSuccess
		},
		cuMemFreeHost: func(p unsafe.Pointer) Result {
			g.mu.Lock()
			defer g.mu.Unlock()
			m, ok := g.pinned[uintptr(p)]
			if !ok {
				return cudaErrorInvalidValue
			}
			delete(g.pinned, uintptr(p))
			_ = syscall.Munmap(m)
			return cudaSuccess
		},
		cuStreamCreate: func(s *uintptr, flags uint32) Result {
			g.mu.Lock()
			defer g.mu.Unlock()
			*s = g.handle()
			g.streams[*s] = true
			return cudaSuccess
		},
		cuStreamSynchronize: func(s uintptr) Result { return g.stream(s) },
		cuStreamDestroy: func(s uintptr) Result {
			g.mu.Lock()
			defer g.mu.Unlock()
			if r := g.stream(s); r != cudaSuccess {
				return r
			}
			delete(g.streams, s)
			return cudaSuccess
		},
		cuStreamWaitEvent: func(s, e uintptr, flags uint32) Result {
			if !g.events[e] {
				return cudaErrorInvalidHandle
			}
			return g.stream(s)
		},
		cuEventCreate: func(e *uintptr, flags uint32) Result {
			g.mu.Lock()
			defer g.mu.Unlock()
			*e = g.handle()
			g.events[*e] = true
			return cudaSuccess
		},
		cuEventRecord: func(e, s uintptr) Result {
			if !g.events[e] {
				return cudaErrorInvalidHandle
			}
			return g.stream(s)
		},
		cuEventSynchronize: func(e uintptr) Result {
			if !g.events[e] {
				return cudaErrorInvalidHandle
			}
			return cudaSuccess
		},
		cuEventDestroy: func(e uintptr) Result {
			g.mu.Lock()
			defer g.mu.Unlock()
			if !g.events[e] {
				return cudaErrorInvalidHandle
			}
			delete(g.events, e)
			return cudaSuccess
		},
		cuEventElapsedTime: func(ms *float32, a, b uintptr) Result {
			if !g.events[a] || !g.events[b] {
				return cudaErrorInvalidHandle
			}
			*ms = 0.5
			return cudaSuccess
		},
		cuLaunchKernel: g.launch,
	})
}

// launch is cuLaunchKernel: it records the launch with its arguments,
// decoded by the kernel's CUDA signature, checks that every pointer
// argument lies in an allocation, and runs the kernel on the host.
func (g *hostGPU) launch(f uintptr, gx, gy, gz, bx, by, bz, shmem uint32, s uintptr, params, extra unsafe.Pointer) Result {
	g.mu.Lock()
	defer g.mu.Unlock()
	name, ok := g.funcName[f]
	if !ok {
		return cudaErrorInvalidHandle
	}
	if r := g.stream(s); r != cudaSuccess {
		return r
	}
	if gx == 0 || gy != 1 || gz != 1 || bx == 0 || by != 1 || bz != 1 || bx > 1024 || extra != nil || params == nil {
		return cudaErrorInvalidValue
	}
	sig := signatures()[name]
	p := unsafe.Slice((*unsafe.Pointer)(params), len(sig))
	args := make([]string, len(sig))
	bad := false
	for i, k := range sig {
		switch k {
		case paramInt:
			args[i] = fmt.Sprint(*(*int32)(p[i]))
		case paramFloat:
			args[i] = fmt.Sprint(*(*float32)(p[i]))
		case paramUint64:
			args[i] = fmt.Sprint(*(*uint64)(p[i]))
		case paramPointer:
			ptr := *(*uint64)(p[i])
			args[i] = g.name(ptr)
			if g.span(ptr, 1) == nil {
				bad = true
			}
		}
	}
	g.record("%s<<<%d, %d>>>(%s)", name, gx, bx, strings.Join(args, ", "))
	g.launched[name]++
	if bad {
		return cudaErrorIllegalAddress
	}
	if g.kernels == nil {
		return cudaSuccess
	}
	// The host library runs one launch at a time (its fibers and
	// __shared__ arrays are static), whichever host GPU asks.
	hostLaunchMu.Lock()
	rc := g.kernels.launch[name](gx, bx, shmem, params)
	hostLaunchMu.Unlock()
	switch rc {
	case 0:
		return cudaSuccess
	case 1:
		return cudaErrorInvalidValue
	case 3:
		return cudaErrorOutOfMemory
	case 4:
		g.t.Errorf("%s<<<%d, %d>>>(%s) touched memory it was not given: %s", name, gx, bx, strings.Join(args, ", "), g.near(g.kernels.faultAddress()))
		return cudaErrorIllegalAddress
	default:
		// __syncthreads reached by only some of a block's threads.
		g.t.Errorf("%s<<<%d, %d>>>: __syncthreads reached by only some threads of a block", name, gx, bx)
		return cudaErrorLaunchFailed
	}
}

// checkAllLaunched fails t unless every kernel of package kernels was
// launched.
func (g *hostGPU) checkAllLaunched(t *testing.T) {
	t.Helper()
	for _, s := range kernels.Sources() {
		for _, k := range kernels.Kernels(s.Code) {
			if g.launched[k] == 0 {
				t.Errorf("kernel %s (%s) was never launched", k, s.Name)
			}
		}
	}
}

// takeCalls returns the call record so far and clears it.
func (g *hostGPU) takeCalls() []string {
	g.recMu.Lock()
	defer g.recMu.Unlock()
	c := slices.Clone(g.calls)
	g.calls = g.calls[:0]
	return c
}
