package cpu

import (
	"fmt"
	"math/rand/v2"
	"runtime"
	"syscall"
	"testing"
	"time"

	"github.com/alexnet-go/trainer/gpu"
)

// reportGFLOPs reports the benchmark's rate for flops per iteration.
func reportGFLOPs(b *testing.B, flops int64) {
	b.ReportMetric(float64(flops)*float64(b.N)/b.Elapsed().Seconds()/1e9, "GFLOP/s")
}

// threadCPU returns the CPU time the calling OS thread has used. A
// one-thread device runs every op on the calling goroutine, so with the
// goroutine locked to its thread this is the op's own time, which other
// processes on a shared machine inflate far less than the wall clock.
func threadCPU() time.Duration {
	var u syscall.Rusage
	if err := syscall.Getrusage(1 /* RUSAGE_THREAD */, &u); err != nil {
		return 0
	}
	return time.Duration(u.Utime.Nano() + u.Stime.Nano())
}

// cpuRate runs f b.N times on one locked thread and reports work per
// iteration (in units, e.g. GFLOP) per second of the wall clock and per
// second of that thread's CPU time ("/s-cpu").
func cpuRate(b *testing.B, work float64, unit string, f func()) {
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	f() // warm up: page in the scratch
	b.ResetTimer()
	c0 := threadCPU()
	for range b.N {
		f()
	}
	c := threadCPU() - c0
	b.ReportMetric(work*float64(b.N)/b.Elapsed().Seconds(), unit+"/s")
	b.ReportMetric(work*float64(b.N)/c.Seconds(), unit+"/s-cpu")
}

// opBench runs each op as a sub-benchmark on one thread, reporting work
// per call in units per second.
func opBench(b *testing.B, prefix string, work float64, unit string, ops []namedOp) {
	for _, op := range ops {
		b.Run(prefix+op.name, func(b *testing.B) {
			cpuRate(b, work, unit, func() {
				if err := op.run(); err != nil {
					b.Fatal(err)
				}
			})
		})
	}
}

type namedOp struct {
	name string
	run  func() error
}

// BenchmarkSgemm times Device.Sgemm with all of the machine's threads.
func BenchmarkSgemm(b *testing.B) {
	b.Logf("BLAS: %s", BLAS())
	d := New(Options{})
	r := rand.New(rand.NewPCG(1, 2))
	for _, c := range []struct {
		name    string
		transB  bool
		m, n, k int
	}{
		{"1024x1024x1024", false, 1024, 1024, 1024},
		{"fc6_128x4096x9216", true, 128, 4096, 9216}, // y = x·wᵀ of fc6, both towers
	} {
		b.Run(fmt.Sprintf("%s/threads=%d", c.name, d.threads), func(b *testing.B) {
			a, bm, cm := randSlice(r, c.m*c.k), randSlice(r, c.k*c.n), make([]float32, c.m*c.n)
			ldb := c.n
			if c.transB {
				ldb = c.k
			}
			d.Sgemm(false, c.transB, c.m, c.n, c.k, 1, a, c.k, bm, ldb, 0, cm, c.n) // warm up
			for b.Loop() {
				d.Sgemm(false, c.transB, c.m, c.n, c.k, 1, a, c.k, bm, ldb, 0, cm, c.n)
			}
			reportGFLOPs(b, 2*int64(c.m)*int64(c.n)*int64(c.k))
		})
	}
}

// BenchmarkConv times an AlexNet conv2-like layer (one tower: 48 channels
// of 27×27 to 128 of 27×27, 5×5 filters, padding 2) on a batch of 32,
// forward and both backward passes.
func BenchmarkConv(b *testing.B) {
	s := gpu.ConvShape{N: 32, C: 48, H: 27, W: 27, K: 128, R: 5, S: 5, Stride: 1, Pad: 2}
	d := New(Options{})
	r := rand.New(rand.NewPCG(1, 2))
	x, w, y := upload(b, d, randSlice(r, s.XLen())), upload(b, d, randSlice(r, s.WLen())), upload(b, d, randSlice(r, s.YLen()))
	for _, op := range []struct {
		name string
		run  func() error
	}{
		{"forward", func() error { return d.Conv(y, x, w, s) }},
		{"backward-data", func() error { return d.ConvBackwardData(x, y, w, s) }},
		{"backward-filter", func() error { return d.ConvBackwardFilter(w, y, x, s) }},
	} {
		b.Run(fmt.Sprintf("conv2/%s/threads=%d", op.name, d.threads), func(b *testing.B) {
			if err := op.run(); err != nil { // warm up: page in the scratch
				b.Fatal(err)
			}
			for b.Loop() {
				if err := op.run(); err != nil {
					b.Fatal(err)
				}
			}
			reportGFLOPs(b, s.FLOPs())
		})
	}
}

// BenchmarkLRN times LRN and LRNBackward, and the ReLULRN and
// ReLULRNBackward that training runs, on one thread on AlexNet's
// response-normalized conv1 output (one tower: 48 channels of 55×55) for a
// batch of 32 and on alexnet-small's (16 channels of 32×32, batch 128),
// reporting the rate at which values are normalized.
func BenchmarkLRN(b *testing.B) {
	d := New(Options{Threads: 1})
	r := rand.New(rand.NewPCG(1, 2))
	for _, c := range []struct {
		name string
		s    gpu.LRNShape
	}{
		{"alexnet-conv1", gpu.LRNShape{N: 32, C: 48, H: 55, W: 55, Size: 5, Alpha: 1e-4, Beta: 0.75, K: 2}},
		{"small-conv1", gpu.LRNShape{N: 128, C: 16, H: 32, W: 32, Size: 5, Alpha: 1e-4, Beta: 0.75, K: 2}},
	} {
		s := c.s
		x, y, dy, dx := upload(b, d, randSlice(r, s.Len())), upload(b, d, randSlice(r, s.Len())), upload(b, d, randSlice(r, s.Len())), upload(b, d, randSlice(r, s.Len()))
		opBench(b, c.name+"/", float64(s.Len())/1e9, "Gvalues", []namedOp{
			{"forward", func() error { return d.LRN(y, x, s) }},
			{"backward", func() error { return d.LRNBackward(dx, dy, x, y, s) }},
			{"relu-forward", func() error { return d.ReLULRN(y, x, s) }},
			{"relu-backward", func() error { return d.ReLULRNBackward(dx, dy, x, y, s) }},
		})
	}
}

// BenchmarkMaxPool times overlapping 3×3 pooling with stride 2 on one
// thread, of AlexNet's pool1 and pool2 inputs (one tower) for a batch of 32
// and of alexnet-small's pool1, pool2 and pool5 for a batch of 128,
// reporting input values per second.
func BenchmarkMaxPool(b *testing.B) {
	d := New(Options{Threads: 1})
	r := rand.New(rand.NewPCG(1, 2))
	for _, c := range []struct {
		name string
		s    gpu.PoolShape
	}{
		{"alexnet-pool1", gpu.PoolShape{N: 32, C: 48, H: 55, W: 55, Size: 3, Stride: 2}},
		{"alexnet-pool2", gpu.PoolShape{N: 32, C: 128, H: 27, W: 27, Size: 3, Stride: 2}},
		{"small-pool1", gpu.PoolShape{N: 128, C: 16, H: 32, W: 32, Size: 3, Stride: 2}},
		{"small-pool2", gpu.PoolShape{N: 128, C: 32, H: 15, W: 15, Size: 3, Stride: 2}},
		{"small-pool5", gpu.PoolShape{N: 128, C: 32, H: 7, W: 7, Size: 3, Stride: 2}},
	} {
		s := c.s
		x, dx := upload(b, d, randSlice(r, s.XLen())), upload(b, d, randSlice(r, s.XLen()))
		y, dy := upload(b, d, randSlice(r, s.YLen())), upload(b, d, randSlice(r, s.YLen()))
		// The backward pass looks for y's maxima in x: y must be x's.
		must(b, d.MaxPool(y, x, s))
		opBench(b, c.name+"/", float64(s.XLen())/1e9, "Gvalues", []namedOp{
			{"forward", func() error { return d.MaxPool(y, x, s) }},
			{"backward", func() error { return d.MaxPoolBackward(dx, dy, x, y, s) }},
		})
	}
}

// smallConvs are alexnet-small's convolutions, one tower, at batch 128.
var smallConvs = []struct {
	name string
	s    gpu.ConvShape
}{
	{"conv1", gpu.ConvShape{N: 128, C: 1, H: 32, W: 32, K: 16, R: 5, S: 5, Stride: 1, Pad: 2}},
	{"conv2", gpu.ConvShape{N: 128, C: 16, H: 15, W: 15, K: 32, R: 5, S: 5, Stride: 1, Pad: 2}},
	{"conv3", gpu.ConvShape{N: 128, C: 64, H: 7, W: 7, K: 48, R: 3, S: 3, Stride: 1, Pad: 1}},
	{"conv4", gpu.ConvShape{N: 128, C: 48, H: 7, W: 7, K: 48, R: 3, S: 3, Stride: 1, Pad: 1}},
	{"conv5", gpu.ConvShape{N: 128, C: 48, H: 7, W: 7, K: 32, R: 3, S: 3, Stride: 1, Pad: 1}},
}

// BenchmarkConvSmall times each of alexnet-small's convolutions (one
// tower, batch 128) on one thread, each direction and each path (see
// benchConvs), beside the rate of a square SGEMM on the same thread in
// the same run.
func BenchmarkConvSmall(b *testing.B) {
	d := New(Options{Threads: 1})
	r := rand.New(rand.NewPCG(1, 2))
	b.Run("sgemm-512", func(b *testing.B) {
		a, x, c := randSlice(r, 512*512), randSlice(r, 512*512), make([]float32, 512*512)
		cpuRate(b, 2*512*512*512/1e9, "GFLOP", func() { d.Sgemm(false, false, 512, 512, 512, 1, a, 512, x, 512, 0, c, 512) })
	})
	benchConvs(b, d, r, smallConvs)
}

// benchConvs times each convolution of convs on d, each direction, by
// each path the processor has: "lane" (the lane convolution, where there
// is AVX-512) and "im2col" (im2col and OpenBLAS, the lane path switched
// off), which shapes the lanes do not take also run under "lane".
func benchConvs(b *testing.B, d *Device, r *rand.Rand, convs []struct {
	name string
	s    gpu.ConvShape
}) {
	paths := []string{"im2col"}
	if fastLane {
		paths = []string{"lane", "im2col"}
	}
	for _, c := range convs {
		s := c.s
		x, w, y := upload(b, d, randSlice(r, s.XLen())), upload(b, d, randSlice(r, s.WLen())), upload(b, d, randSlice(r, s.YLen()))
		for _, path := range paths {
			func() {
				defer func(v bool) { fastLane = v }(fastLane)
				fastLane = path == "lane"
				opBench(b, c.name+"/"+path+"/", float64(s.FLOPs())/1e9, "GFLOP", []namedOp{
					{"forward", func() error { return d.Conv(y, x, w, s) }},
					{"backward-data", func() error { return d.ConvBackwardData(x, y, w, s) }},
					{"backward-filter", func() error { return d.ConvBackwardFilter(w, y, x, s) }},
				})
			}()
		}
	}
}

// alexnetConvs are alexnet's convolutions, one tower, at batch 32.
var alexnetConvs = []struct {
	name string
	s    gpu.ConvShape
}{
	{"conv1", gpu.ConvShape{N: 32, C: 3, H: 227, W: 227, K: 48, R: 11, S: 11, Stride: 4, Pad: 0}},
	{"conv2", gpu.ConvShape{N: 32, C: 48, H: 27, W: 27, K: 128, R: 5, S: 5, Stride: 1, Pad: 2}},
	{"conv3", gpu.ConvShape{N: 32, C: 256, H: 13, W: 13, K: 192, R: 3, S: 3, Stride: 1, Pad: 1}},
	{"conv5", gpu.ConvShape{N: 32, C: 192, H: 13, W: 13, K: 128, R: 3, S: 3, Stride: 1, Pad: 1}},
}

// BenchmarkConvAlexNet times alexnet's convolutions (one tower, batch 32)
// on one thread, each direction and each path (see benchConvs).
func BenchmarkConvAlexNet(b *testing.B) {
	benchConvs(b, New(Options{Threads: 1}), rand.New(rand.NewPCG(1, 2)), alexnetConvs)
}

// linearShapes are the fully-connected layers of alexnet (fc6 and fc7, one
// tower) and alexnet-small (fc6 and fc7, one tower), at batch 128.
var linearShapes = []struct {
	name string
	s    gpu.LinearShape
}{
	{"alexnet-fc6", gpu.LinearShape{N: 128, In: 9216, Out: 2048}},
	{"alexnet-fc7", gpu.LinearShape{N: 128, In: 4096, Out: 2048}},
	{"small-fc6", gpu.LinearShape{N: 128, In: 1024, Out: 256}},
	{"small-fc7", gpu.LinearShape{N: 128, In: 512, Out: 256}},
}

// BenchmarkLinear times the fully-connected layers on one thread: the
// forward product, and the backward products for the data and for the
// weights (with the bias sums).
func BenchmarkLinear(b *testing.B) {
	d := New(Options{Threads: 1})
	r := rand.New(rand.NewPCG(1, 2))
	for _, c := range linearShapes {
		s := c.s
		x, w := upload(b, d, randSlice(r, s.N*s.In)), upload(b, d, randSlice(r, s.Out*s.In))
		bias, db := upload(b, d, randSlice(r, s.Out)), upload(b, d, randSlice(r, s.Out))
		y := upload(b, d, randSlice(r, s.N*s.Out))
		flops := 2 * float64(s.N) * float64(s.In) * float64(s.Out) / 1e9
		opBench(b, c.name+"/", flops, "GFLOP", []namedOp{
			{"forward", func() error { return d.Linear(y, x, w, bias, s) }},
			{"backward-data", func() error { return d.LinearBackwardData(x, y, w, s) }},
			{"backward-weights", func() error { return d.LinearBackwardWeights(w, db, y, x, s) }},
		})
	}
}
