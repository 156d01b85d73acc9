package cuda

import (
	"errors"
	"fmt"
	"strings"
	"sync"
	"unsafe"
)

// Result is a status code returned by a CUDA library: a CUresult of the
// driver, a cublasStatus_t, a cudnnStatus_t or an nvrtcResult.
type Result int32

// Error is a failed library call: the call with its arguments, the
// library's name and description of the code, and what to do about it.
type Error struct {
	Call string // "cuMemAlloc_v2(402653184 bytes)"
	Code Result
	Name string // "CUDA_ERROR_OUT_OF_MEMORY"
	Desc string // the library's description, may be empty
	Hint string // what to do, may be empty
}

// ErrOutOfMemory matches (errors.Is) an Error whose code means the device
// ran out of memory, in any of the libraries.
var ErrOutOfMemory = errors.New("cuda: out of memory")

func (e *Error) Error() string {
	s := "cuda: " + e.Call + ": " + e.Name
	if e.Desc != "" && !strings.EqualFold(e.Desc, e.Name) {
		s += " (" + e.Desc + ")"
	}
	if e.Hint != "" {
		s += ": " + e.Hint
	}
	return s
}

// Is makes errors.Is(err, ErrOutOfMemory) true for out-of-memory codes.
func (e *Error) Is(target error) bool {
	if target != ErrOutOfMemory {
		return false
	}
	return strings.Contains(e.Name, "OUT_OF_MEMORY") || strings.Contains(e.Name, "ALLOC") && strings.Contains(e.Name, "FAIL")
}

// Driver API result codes the package treats specially.
const (
	cudaSuccess                    Result = 0
	cudaErrorOutOfMemory           Result = 2
	cudaErrorNoDevice              Result = 100
	cudaErrorInvalidDevice         Result = 101
	cudaErrorUnsupportedPTXVersion Result = 222
	cudaErrorPeerAlreadyEnabled    Result = 704
)

// Device attributes (CUdevice_attribute).
const (
	attrMultiprocessors = 16
	attrCCMajor         = 75
	attrCCMinor         = 76
)

// Flags.
const (
	streamNonBlocking   = 1
	eventDisableTiming  = 2
	ctxSchedBlockingSyn = 4
)

// driver is libcuda bound. Handles are uintptr (CUcontext, CUstream, …);
// device pointers are uint64 (CUdeviceptr).
type driver struct {
	path string

	cuInit                   func(flags uint32) Result
	cuDriverGetVersion       func(v *int32) Result
	cuDeviceGetCount         func(n *int32) Result
	cuDeviceGet              func(dev *int32, ordinal int32) Result
	cuDeviceGetName          func(name *byte, n int32, dev int32) Result
	cuDeviceTotalMem         func(bytes *uint64, dev int32) Result
	cuDeviceGetAttribute     func(v *int32, attr int32, dev int32) Result
	cuDeviceCanAccessPeer    func(can *int32, dev, peer int32) Result
	cuDevicePrimaryCtxRetain func(ctx *uintptr, dev int32) Result
	cuCtxSetCurrent          func(ctx uintptr) Result
	cuCtxSynchronize         func() Result
	cuCtxEnablePeerAccess    func(peer uintptr, flags uint32) Result
	cuMemAlloc               func(p *uint64, bytes uint64) Result
	cuMemFree                func(p uint64) Result
	cuMemGetInfo             func(free, total *uint64) Result
	cuMemHostAlloc           func(p *unsafe.Pointer, bytes uint64, flags uint32) Result
	cuMemFreeHost            func(p unsafe.Pointer) Result
	cuMemcpyHtoDAsync        func(dst uint64, src unsafe.Pointer, bytes uint64, stream uintptr) Result
	cuMemcpyDtoHAsync        func(dst unsafe.Pointer, src uint64, bytes uint64, stream uintptr) Result
	cuMemcpyDtoDAsync        func(dst, src uint64, bytes uint64, stream uintptr) Result
	cuMemcpyPeerAsync        func(dst uint64, dstCtx uintptr, src uint64, srcCtx uintptr, bytes uint64, stream uintptr) Result
	cuMemsetD32Async         func(dst uint64, v uint32, n uint64, stream uintptr) Result
	cuStreamCreate           func(s *uintptr, flags uint32) Result
	cuStreamSynchronize      func(s uintptr) Result
	cuStreamDestroy          func(s uintptr) Result
	cuStreamWaitEvent        func(s, e uintptr, flags uint32) Result
	cuEventCreate            func(e *uintptr, flags uint32) Result
	cuEventRecord            func(e, s uintptr) Result
	cuEventSynchronize       func(e uintptr) Result
	cuEventDestroy           func(e uintptr) Result
	cuEventElapsedTime       func(ms *float32, start, end uintptr) Result
	cuModuleLoadData         func(m *uintptr, image unsafe.Pointer) Result
	cuModuleGetFunction      func(f *uintptr, m uintptr, name *byte) Result
	cuLaunchKernel           func(f uintptr, gx, gy, gz, bx, by, bz, shmem uint32, stream uintptr, params, extra unsafe.Pointer) Result
	cuGetErrorName           func(r Result, s *uintptr) Result
	cuGetErrorString         func(r Result, s *uintptr) Result
}

var (
	driverOnce sync.Once
	driver0    *driver
	driverErr  error
)

// loadDriver loads and initializes libcuda once per process.
func loadDriver() (*driver, error) {
	driverOnce.Do(func() { driver0, driverErr = openDriver(hostEnv) })
	return driver0, driverErr
}

// openDriver loads libcuda with e's search, binds it and calls cuInit.
func openDriver(e env) (*driver, error) {
	h, path, err := e.open(libDriver)
	if err != nil {
		return nil, err
	}
	d := &driver{path: path}
	b := &binder{lib: path, handle: h}
	b.bind(&d.cuGetErrorName, "cuGetErrorName")
	b.bind(&d.cuGetErrorString, "cuGetErrorString")
	b.bind(&d.cuInit, "cuInit")
	b.bind(&d.cuDriverGetVersion, "cuDriverGetVersion")
	b.bind(&d.cuDeviceGetCount, "cuDeviceGetCount")
	b.bind(&d.cuDeviceGet, "cuDeviceGet")
	b.bind(&d.cuDeviceGetName, "cuDeviceGetName")
	b.bind(&d.cuDeviceTotalMem, "cuDeviceTotalMem_v2")
	b.bind(&d.cuDeviceGetAttribute, "cuDeviceGetAttribute")
	b.bind(&d.cuDeviceCanAccessPeer, "cuDeviceCanAccessPeer")
	b.bind(&d.cuDevicePrimaryCtxRetain, "cuDevicePrimaryCtxRetain")
	b.bind(&d.cuCtxSetCurrent, "cuCtxSetCurrent")
	b.bind(&d.cuCtxSynchronize, "cuCtxSynchronize")
	b.bind(&d.cuCtxEnablePeerAccess, "cuCtxEnablePeerAccess")
	b.bind(&d.cuMemAlloc, "cuMemAlloc_v2")
	b.bind(&d.cuMemFree, "cuMemFree_v2")
	b.bind(&d.cuMemGetInfo, "cuMemGetInfo_v2")
	b.bind(&d.cuMemHostAlloc, "cuMemHostAlloc")
	b.bind(&d.cuMemFreeHost, "cuMemFreeHost")
	b.bind(&d.cuMemcpyHtoDAsync, "cuMemcpyHtoDAsync_v2")
	b.bind(&d.cuMemcpyDtoHAsync, "cuMemcpyDtoHAsync_v2")
	b.bind(&d.cuMemcpyDtoDAsync, "cuMemcpyDtoDAsync_v2")
	b.bind(&d.cuMemcpyPeerAsync, "cuMemcpyPeerAsync")
	b.bind(&d.cuMemsetD32Async, "cuMemsetD32Async")
	b.bind(&d.cuStreamCreate, "cuStreamCreate")
	b.bind(&d.cuStreamSynchronize, "cuStreamSynchronize")
	b.bind(&d.cuStreamDestroy, "cuStreamDestroy_v2")
	b.bind(&d.cuStreamWaitEvent, "cuStreamWaitEvent")
	b.bind(&d.cuEventCreate, "cuEventCreate")
	b.bind(&d.cuEventRecord, "cuEventRecord")
	b.bind(&d.cuEventSynchronize, "cuEventSynchronize")
	b.bind(&d.cuEventDestroy, "cuEventDestroy_v2")
	// Timing only (gpu.Timer): its absence must not stop the driver.
	if !b.optional(&d.cuEventElapsedTime, "cuEventElapsedTime_v2") {
		b.optional(&d.cuEventElapsedTime, "cuEventElapsedTime")
	}
	b.bind(&d.cuModuleLoadData, "cuModuleLoadData")
	b.bind(&d.cuModuleGetFunction, "cuModuleGetFunction")
	b.bind(&d.cuLaunchKernel, "cuLaunchKernel")
	if b.err != nil {
		return nil, b.err
	}
	if err := d.check(d.cuInit(0), "cuInit(0)"); err != nil {
		return nil, err
	}
	return d, nil
}

// check turns a driver result into nil or an *Error naming call.
func (d *driver) check(r Result, call string) error {
	if r == cudaSuccess {
		return nil
	}
	e := &Error{Call: call, Code: r, Name: fmt.Sprintf("CUresult %d", int32(r))}
	var p uintptr
	if d.cuGetErrorName(r, &p) == cudaSuccess {
		e.Name = goString(p)
	}
	if d.cuGetErrorString(r, &p) == cudaSuccess {
		e.Desc = goString(p)
	}
	switch r {
	case cudaErrorOutOfMemory:
		e.Hint = "lower --batch, or put fewer towers on this GPU"
	case cudaErrorNoDevice:
		e.Hint = "no GPU is visible: check nvidia-smi and CUDA_VISIBLE_DEVICES (docker: --gpus all)"
	case cudaErrorInvalidDevice:
		e.Hint = "no such GPU ordinal: see trainer devices"
	case cudaErrorUnsupportedPTXVersion:
		e.Hint = "NVRTC is newer than the driver: update the driver, or point ALEXNET_NVRTC at the NVRTC of the driver's CUDA version"
	}
	return e
}

// Info describes one GPU.
type Info struct {
	Ordinal      int
	Name         string
	Memory       uint64 // bytes
	Major, Minor int    // compute capability
	SMs          int    // multiprocessors
	// Peer[j] says whether this GPU can access GPU j's memory directly
	// (Peer[Ordinal] is true).
	Peer []bool
}

// DriverInfo describes the driver and the GPUs it sees.
type DriverInfo struct {
	Path    string // the libcuda loaded
	Version int    // e.g. 13000 for CUDA 13.0
	GPUs    []Info
}

// VersionString formats a CUDA version number, 12040 as "12.4".
func VersionString(v int) string { return fmt.Sprintf("%d.%d", v/1000, v%1000/10) }

// Devices loads the driver and describes the GPUs. Without a driver the
// error matches ErrNoDriver and says what to install.
func Devices() (DriverInfo, error) {
	d, err := loadDriver()
	if err != nil {
		return DriverInfo{}, err
	}
	return d.devices()
}

func (d *driver) devices() (DriverInfo, error) {
	info := DriverInfo{Path: d.path}
	var v, n int32
	if err := d.check(d.cuDriverGetVersion(&v), "cuDriverGetVersion"); err != nil {
		return info, err
	}
	info.Version = int(v)
	if err := d.check(d.cuDeviceGetCount(&n), "cuDeviceGetCount"); err != nil {
		return info, err
	}
	for i := range int(n) {
		g, err := d.deviceInfo(i)
		if err != nil {
			return info, err
		}
		g.Peer = make([]bool, n)
		for j := range int(n) {
			if j == i {
				g.Peer[j] = true
				continue
			}
			var can int32
			if err := d.check(d.cuDeviceCanAccessPeer(&can, int32(i), int32(j)), fmt.Sprintf("cuDeviceCanAccessPeer(%d, %d)", i, j)); err != nil {
				return info, err
			}
			g.Peer[j] = can != 0
		}
		info.GPUs = append(info.GPUs, g)
	}
	return info, nil
}

// deviceInfo describes ordinal i, without its peers.
func (d *driver) deviceInfo(i int) (Info, error) {
	g := Info{Ordinal: i}
	var dev int32
	if err := d.check(d.cuDeviceGet(&dev, int32(i)), fmt.Sprintf("cuDeviceGet(%d)", i)); err != nil {
		return g, err
	}
	name := make([]byte, 256)
	if err := d.check(d.cuDeviceGetName(&name[0], int32(len(name)), dev), "cuDeviceGetName"); err != nil {
		return g, err
	}
	if k := strings.IndexByte(string(name), 0); k >= 0 {
		name = name[:k]
	}
	g.Name = string(name)
	if err := d.check(d.cuDeviceTotalMem(&g.Memory, dev), "cuDeviceTotalMem_v2"); err != nil {
		return g, err
	}
	for _, a := range []struct {
		attr int32
		dst  *int
	}{{attrCCMajor, &g.Major}, {attrCCMinor, &g.Minor}, {attrMultiprocessors, &g.SMs}} {
		var v int32
		if err := d.check(d.cuDeviceGetAttribute(&v, a.attr, dev), fmt.Sprintf("cuDeviceGetAttribute(%d)", a.attr)); err != nil {
			return g, err
		}
		*a.dst = int(v)
	}
	return g, nil
}
