// Package cpu is the host backend of gpu.Device: the reference every other
// backend is checked against, and what the tests and the CPU demo run on.
//
// Tensors follow package gpu: N images, C channels, H rows, W columns, NCHW
// with W fastest; convolution outputs are (N, K, P, Q). Every operation runs
// to completion in the calling goroutine before it returns, splitting its
// work over at most Options.Threads goroutines, so events are trivially
// complete and Sync has nothing to wait for.
//
// Matrix products go to OpenBLAS, loaded at run time with purego (no cgo, no
// headers), with gonum's pure-Go Sgemm as the fallback; see BLAS. OpenBLAS is
// told to use one thread and the device parallelizes itself, so that two
// devices of one thread each use one core each.
//
// The memory-bound loops (LRN, col2im's adds, bias, ReLU, the SGD update)
// run in AVX assembly on amd64 processors that have it (the *_amd64.s
// files), eight float32 or four float64 lanes at a time; each has a Go
// loop beside it that is its reference, its tail and its fallback, with
// the same operations in the same order and no fused multiply-adds, so
// the bits are the same with or without the assembly.
package cpu

import (
	"fmt"
	"runtime"
	"strconv"
	"sync"

	"github.com/alexnet-go/trainer/gpu"
)

// Options configures a Device.
type Options struct {
	// Index numbers the device: its Name is "cpu:<Index>".
	Index int
	// Threads is the most goroutines one operation runs at once;
	// zero or less means runtime.NumCPU().
	Threads int
}

// Device is a gpu.Device computing on the host. Several Devices may share
// the machine; each uses at most its own Threads cores.
//
// Like every gpu.Device, a Device is used by one goroutine at a time: it
// keeps per-thread scratch memory between calls.
type Device struct {
	name    string
	threads int
	blas    *blasLib

	// Scratch reused across calls, one slot per worker goroutine; a worker
	// only touches its own slot.
	scratch   [][]float32
	scratch64 [][]float64

	// A convolution's scratch per worker (see Conv).
	convs []convScratch

	// Work per goroutine below which an operation uses fewer threads;
	// tests lower them to exercise the parallel paths on small shapes.
	grainFLOPs, grainElems int64
	// Most values of a convolution's column matrix per block of images;
	// tests lower it to exercise several blocks on small shapes.
	colBudget int
	// Width of the blocks Sgemm splits a product into; tests lower it to
	// split small products.
	gemmTile int
}

var _ gpu.Device = (*Device)(nil)

// New returns a device configured by o. It loads the BLAS library on first
// use (see BLAS) and never fails: without OpenBLAS it computes with gonum.
func New(o Options) *Device {
	t := o.Threads
	if t <= 0 {
		t = runtime.NumCPU()
	}
	return &Device{
		name:      "cpu:" + strconv.Itoa(o.Index),
		threads:   t,
		blas:      loadedBLAS(),
		scratch:   make([][]float32, t),
		scratch64: make([][]float64, t),
		convs:     make([]convScratch, t),

		grainFLOPs: grainFLOPs,
		grainElems: grainElems,
		colBudget:  convBlockFloats,
		gemmTile:   gemmTileWidth,
	}
}

// Name returns "cpu:<Index>".
func (d *Device) Name() string { return d.name }

// Threads returns the most goroutines one operation of d runs at once.
func (d *Device) Threads() int { return d.threads }

// Buffer is host memory owned by one Device.
type Buffer struct {
	dev  *Device
	data []float32
}

// Device returns the device that allocated b.
func (b *Buffer) Device() gpu.Device { return b.dev }

// Len returns the number of float32 values in b; a nil Buffer holds none.
func (b *Buffer) Len() int {
	if b == nil {
		return 0
	}
	return len(b.data)
}

// Data returns the buffer's memory. Ops run synchronously, so the slice can
// be read and written directly between calls.
func (b *Buffer) Data() []float32 { return b.data }

// event is what Record returns: work on a CPU device is complete when the
// call that enqueued it returns.
type event struct{ dev *Device }

// Alloc returns a zeroed buffer of n values.
func (d *Device) Alloc(n int) (gpu.Buffer, error) {
	if n < 0 {
		return nil, fmt.Errorf("cpu: %s: Alloc(%d): negative size", d.name, n)
	}
	return &Buffer{dev: d, data: make([]float32, n)}, nil
}

// Free does nothing: the garbage collector reclaims buffers.
func (d *Device) Free(b gpu.Buffer) {}

// Upload copies src into the start of dst.
func (d *Device) Upload(dst gpu.Buffer, src []float32) error {
	copy(d.data("dst", dst, len(src)), src)
	return nil
}

// Download copies the start of src into dst.
func (d *Device) Download(dst []float32, src gpu.Buffer) error {
	copy(dst, d.data("src", src, len(dst)))
	return nil
}

// Copy copies min(dst.Len(), src.Len()) values from src to dst.
func (d *Device) Copy(dst, src gpu.Buffer) error {
	n := min(dst.Len(), src.Len())
	copy(d.data("dst", dst, n), d.data("src", src, n))
	return nil
}

// CopyPeer copies src, a buffer of this device, into dst, a buffer of
// another CPU device. Any other kind of destination gives gpu.ErrNoPeer.
func (d *Device) CopyPeer(dst, src gpu.Buffer) error {
	t, ok := dst.(*Buffer)
	if !ok || t == nil {
		return gpu.ErrNoPeer
	}
	n := min(t.Len(), src.Len())
	copy(t.data[:n], d.data("src", src, n))
	return nil
}

// Fill sets every value of dst to v.
func (d *Device) Fill(dst gpu.Buffer, v float32) error {
	x := d.data("dst", dst, dst.Len())
	d.elementwise(len(x), func(lo, hi int) {
		s := x[lo:hi]
		for i := range s {
			s[i] = v
		}
	})
	return nil
}

// Record returns an event that is already complete.
func (d *Device) Record() (gpu.Event, error) { return event{d}, nil }

// Wait returns at once: work on d runs when it is enqueued, and work on
// other devices that e marks is complete by then or ordered by the caller.
func (d *Device) Wait(e gpu.Event) error { return nil }

// Sync returns at once: every operation is complete when it returns.
func (d *Device) Sync() error { return nil }

// Close drops d's scratch memory. A CPU device holds nothing else, so it
// may even be used again after Close.
func (d *Device) Close() error {
	clear(d.scratch)
	clear(d.scratch64)
	clear(d.convs)
	return nil
}

// data returns the first n values of b, a buffer of d. A buffer of another
// device or backend, or one too short for n, is a programmer's mistake.
func (d *Device) data(name string, b gpu.Buffer, n int) []float32 {
	if n < 0 {
		panic(fmt.Sprintf("cpu: %s: %s: negative length %d", d.name, name, n))
	}
	if cb, ok := b.(*Buffer); ok && cb == nil {
		panic(fmt.Sprintf("gpu: %s is nil", name))
	}
	gpu.Check(name, b, n)
	cb, ok := b.(*Buffer)
	if !ok {
		panic(fmt.Sprintf("cpu: %s: %s is a %T, not a *cpu.Buffer", d.name, name, b))
	}
	if cb.dev != d {
		panic(fmt.Sprintf("cpu: %s: %s lives on %s", d.name, name, cb.dev.name))
	}
	return cb.data[:n:n]
}

// validate panics on a shape that Validate rejects.
func validate(s interface{ Validate() error }) {
	if err := s.Validate(); err != nil {
		panic(err)
	}
}

// buf32 returns worker w's float32 scratch, grown to at least n values.
func (d *Device) buf32(w, n int) []float32 {
	if cap(d.scratch[w]) < n {
		d.scratch[w] = make([]float32, n)
	}
	return d.scratch[w][:n]
}

// buf64 returns worker w's float64 scratch, grown to at least n values.
func (d *Device) buf64(w, n int) []float64 {
	if cap(d.scratch64[w]) < n {
		d.scratch64[w] = make([]float64, n)
	}
	return d.scratch64[w][:n]
}

// Work sizes below which another goroutine costs more than it saves.
const (
	grainFLOPs = 1 << 20 // multiply-adds ×2, for matrix products
	grainElems = 1 << 15 // values, for memory-bound loops
)

// flopThreads returns how many of d's threads a matrix product of the
// given FLOPs is worth splitting over.
func (d *Device) flopThreads(flops int64) int { return d.threadsFor(flops, d.grainFLOPs) }

// elemThreads returns how many of d's threads a loop over n values is
// worth splitting over.
func (d *Device) elemThreads(n int64) int { return d.threadsFor(n, d.grainElems) }

// threadsFor returns how many of d's threads work of the given size is
// worth splitting over, at least grain per thread, and at least one.
func (d *Device) threadsFor(work, grain int64) int {
	return int(max(1, min(int64(d.threads), work/grain)))
}

// elementwise runs fn over [0, n) split into contiguous ranges, in parallel
// when n is large enough to pay for it.
func (d *Device) elementwise(n int, fn func(lo, hi int)) {
	parallelFor(n, d.elemThreads(int64(n)), fn)
}

// parallelFor splits [0, n) into at most threads contiguous ranges of
// near-equal length and runs fn on each concurrently, the first in the
// calling goroutine. It returns when all are done.
func parallelFor(n, threads int, fn func(lo, hi int)) {
	parallelWorkers(n, threads, func(_, lo, hi int) { fn(lo, hi) })
}

// parallelWorkers is parallelFor that also tells fn which worker w it is,
// 0 ≤ w < threads, so that workers can own scratch memory. Worker w gets
// [w·n/t, (w+1)·n/t), which depends only on n and the worker count t.
func parallelWorkers(n, threads int, fn func(w, lo, hi int)) {
	t := min(threads, n)
	if t <= 1 {
		if n > 0 {
			fn(0, 0, n)
		}
		return
	}
	var wg sync.WaitGroup
	wg.Add(t - 1)
	for w := 1; w < t; w++ {
		go func() {
			defer wg.Done()
			fn(w, w*n/t, (w+1)*n/t)
		}()
	}
	fn(0, 0, n/t)
	wg.Wait()
}
