package cuda_test

import (
	"errors"
	"math"
	"math/rand/v2"
	"testing"
	"time"

	"github.com/alexnet-go/trainer/gpu"
	"github.com/alexnet-go/trainer/gpu/cpu"
	"github.com/alexnet-go/trainer/gpu/cuda"
	"github.com/alexnet-go/trainer/gpu/gputest"
	"github.com/alexnet-go/trainer/model"
	"github.com/alexnet-go/trainer/parallel"
)

// open opens a logical device on ordinal, skipping the test where there is
// no driver or no GPU. Any other failure (a missing cuDNN on a GPU
// machine, a kernel that does not compile) fails the test.
func open(t *testing.T, ordinal int) *cuda.Device {
	t.Helper()
	info, err := cuda.Devices()
	if errors.Is(err, cuda.ErrNoDriver) {
		t.Skipf("no CUDA driver: %v", err)
	}
	if err != nil {
		t.Fatal(err)
	}
	if len(info.GPUs) <= ordinal {
		t.Skipf("no GPU %d: the driver sees %d", ordinal, len(info.GPUs))
	}
	d, err := cuda.Open(ordinal, cuda.Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("%s: %s (sm_%d%d); %s", d.Name(), d.Info().Name, d.Info().Major, d.Info().Minor, cuda.Libraries())
	return d
}

func TestConformance(t *testing.T) {
	gputest.Run(t, open(t, 0))
}

// cuDNN's LRN and pooling, which bench kernels times against ours,
// compute what ours compute: cuDNN's α is given as α·n.
func TestVendorOps(t *testing.T) {
	d := open(t, 0)
	defer d.Close()
	cuda.CheckVendorOps(t, d)
}

// Two logical devices on one GPU, and on two GPUs where there are two.
func TestConformancePair(t *testing.T) {
	a, b := open(t, 0), open(t, 0)
	gputest.RunPair(t, a, b)
	gputest.RunPair(t, a, cpu.New(cpu.Options{Index: 1, Threads: 1}))
	if info, _ := cuda.Devices(); len(info.GPUs) >= 2 {
		gputest.RunPair(t, a, open(t, 1))
	}
}

// The two-tower net on two streams of one GPU (--gpus 0,0) follows the same
// net on two CPU devices (--gpus cpu,cpu) step after step, to float32
// tolerances: cuDNN and cuBLAS sum in other orders than the CPU.
func TestTwoTowersMatchCPU(t *testing.T) {
	g0, g1 := open(t, 0), open(t, 0)
	net, err := model.Build("alexnet-small", model.Options{Channels: 1, Classes: 10})
	if err != nil {
		t.Fatal(err)
	}
	w := model.Init(net, 1)
	o := parallel.Options{Batch: 8, Seed: 3, Momentum: 0.9, WeightDecay: 5e-4}
	gpuRun, err := parallel.New(net, []gpu.Device{g0, g1}, w, o)
	if err != nil {
		t.Fatal(err)
	}
	defer gpuRun.Close()
	cpuRun, err := parallel.New(net, []gpu.Device{cpu.New(cpu.Options{Index: 0, Threads: 1}), cpu.New(cpu.Options{Index: 1, Threads: 1})}, w, o)
	if err != nil {
		t.Fatal(err)
	}
	defer cpuRun.Close()
	for step := range 4 {
		b := batch(net, 8, uint64(step))
		rc, err := cpuRun.Train(b, 0.05)
		if err != nil {
			t.Fatal(err)
		}
		rg, err := gpuRun.Train(b, 0.05)
		if err != nil {
			t.Fatal(err)
		}
		if math.IsNaN(rg.Loss) || math.Abs(rg.Loss-rc.Loss) > 1e-4*(1+math.Abs(rc.Loss)) {
			t.Fatalf("step %d: loss %v on cuda, %v on cpu", step, rg.Loss, rc.Loss)
		}
		gc, err := cpuRun.Grads()
		if err != nil {
			t.Fatal(err)
		}
		gg, err := gpuRun.Grads()
		if err != nil {
			t.Fatal(err)
		}
		for name, g := range gc {
			var scale, worst float64
			for i, v := range g.Data {
				scale = max(scale, math.Abs(float64(v)))
				worst = max(worst, math.Abs(float64(gg[name].Data[i]-v)))
			}
			if !(worst <= 1e-3*scale+1e-7) {
				t.Errorf("step %d: %s gradient differs by %g (largest |g| %g)", step, name, worst, scale)
			}
		}
		t.Logf("step %d: loss %.6f cuda, %.6f cpu", step, rg.Loss, rc.Loss)
	}
}

// batch is n random images and labels for net.
func batch(net *model.Net, n int, seed uint64) parallel.Batch {
	rng := rand.New(rand.NewPCG(seed, 2))
	b := parallel.Batch{N: n, Images: make([]float32, n*net.Input.Len()), Labels: make([]float32, n)}
	for i := range b.Images {
		b.Images[i] = float32(rng.NormFloat64())
	}
	for i := range b.Labels {
		b.Labels[i] = float32(rng.IntN(net.Classes))
	}
	return b
}

// Timing marks measure GPU time: a convolution big enough to take a
// while lies between two marks, and nothing between two adjacent ones.
func TestTimer(t *testing.T) {
	d := open(t, 0)
	s := gpu.ConvShape{N: 64, C: 64, H: 56, W: 56, K: 64, R: 3, S: 3, Stride: 1, Pad: 1}
	x, err := d.Alloc(s.XLen())
	if err != nil {
		t.Fatal(err)
	}
	w, _ := d.Alloc(s.WLen())
	y, _ := d.Alloc(s.YLen())
	defer d.Free(x)
	defer d.Free(w)
	defer d.Free(y)
	if err := d.Conv(y, x, w, s); err != nil { // the algorithm search, untimed
		t.Fatal(err)
	}
	m0, _ := d.Mark()
	m1, _ := d.Mark()
	for range 10 {
		if err := d.Conv(y, x, w, s); err != nil {
			t.Fatal(err)
		}
	}
	m2, err := d.Mark()
	if err != nil {
		t.Fatal(err)
	}
	empty, err := d.Elapsed(m0, m1)
	if err != nil {
		t.Fatal(err)
	}
	busy, err := d.Elapsed(m1, m2)
	if err != nil {
		t.Fatal(err)
	}
	// 10 × 2·64·64·56·56·64·9 ≈ 15 GFLOP: well over 50 µs on any GPU.
	if !(busy > 50*time.Microsecond && empty < busy/10) {
		t.Errorf("10 convolutions took %v, nothing took %v", busy, empty)
	}
	t.Logf("10 convolutions: %v; between adjacent marks: %v", busy, empty)
}

// Two logical devices on one GPU share memory; a CPU device does not.
func TestSharesMemory(t *testing.T) {
	a, b := open(t, 0), open(t, 0)
	if !a.SharesMemory(b) || a.SharesMemory(a) || a.SharesMemory(cpu.New(cpu.Options{})) {
		t.Errorf("SharesMemory: a,b %v; a,a %v; a,cpu %v", a.SharesMemory(b), a.SharesMemory(a), a.SharesMemory(cpu.New(cpu.Options{})))
	}
}

// With Options.Deterministic, two runs of the two-tower net on 0,0 from the
// same weights and batches give the same gradients bit for bit.
func TestDeterministic(t *testing.T) {
	open(t, 0) // skips without a GPU
	net, err := model.Build("alexnet-small", model.Options{Channels: 1, Classes: 10})
	if err != nil {
		t.Fatal(err)
	}
	w := model.Init(net, 1)
	o := parallel.Options{Batch: 32, Seed: 3, Momentum: 0.9, WeightDecay: 5e-4}
	var grads [2]map[string]model.Tensor
	for run := range grads {
		a, err := cuda.Open(0, cuda.Options{Deterministic: true})
		if err != nil {
			t.Fatal(err)
		}
		b, err := cuda.Open(0, cuda.Options{Deterministic: true})
		if err != nil {
			t.Fatal(err)
		}
		r, err := parallel.New(net, []gpu.Device{a, b}, w, o)
		if err != nil {
			t.Fatal(err)
		}
		for step := range 3 {
			if _, err := r.Train(batch(net, 32, uint64(step)), 0.05); err != nil {
				t.Fatal(err)
			}
		}
		if grads[run], err = r.Grads(); err != nil {
			t.Fatal(err)
		}
		r.Close()
	}
	for name, g := range grads[0] {
		for i, v := range g.Data {
			if v != grads[1][name].Data[i] {
				t.Fatalf("%s[%d]: %g in the first run, %g in the second", name, i, v, grads[1][name].Data[i])
			}
		}
	}
}
