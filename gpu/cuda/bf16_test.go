package cuda_test

import (
	"math"
	"strings"
	"testing"

	"github.com/alexnet-go/trainer/gpu"
	"github.com/alexnet-go/trainer/gpu/bf16"
	"github.com/alexnet-go/trainer/gpu/cpu"
	"github.com/alexnet-go/trainer/gpu/gputest"
	"github.com/alexnet-go/trainer/model"
	"github.com/alexnet-go/trainer/parallel"
)

// The bf16 pass of the conformance suite on the GPU: round_bf16 after each
// op, and cuDNN's and cuBLAS's float32 paths on bf16 operands.
func TestConformanceBF16(t *testing.T) {
	gputest.RunBF16(t, bf16.Wrap(open(t, 0)))
}

// The two-tower net in bf16 on two streams of GPU 0 (--gpus 0,0
// --precision bf16) agrees with cpu,cpu in bf16 within bf16's reach, step
// after step. The two round at the same points; their float32 sums run in
// different orders, so a value near a bf16 rounding boundary can land one
// bf16 step apart, and that step travels: the loss and the fully-connected
// layers' gradients agree to 2%, the convolutions' (sums with heavy
// cancellation at initialization, see gpu/bf16's TestTwoTowersBF16) point
// the same way (cos > 0.5). The check of the rounding itself, bit for bit,
// is TestKernelsMatchCPUDevice's on the host GPU and RunBF16's here.
func TestTwoTowersBF16MatchCPU(t *testing.T) {
	g0, g1 := open(t, 0), open(t, 0)
	net, err := model.Build("alexnet-small", model.Options{Channels: 1, Classes: 10})
	if err != nil {
		t.Fatal(err)
	}
	w := model.Init(net, 1)
	o := parallel.Options{Batch: 8, Seed: 3, Momentum: 0.9, WeightDecay: 5e-4}
	gpuRun, err := parallel.New(net, []gpu.Device{bf16.Wrap(g0), bf16.Wrap(g1)}, w, o)
	if err != nil {
		t.Fatal(err)
	}
	defer gpuRun.Close()
	cpuRun, err := parallel.New(net, []gpu.Device{bf16.Wrap(cpu.New(cpu.Options{Index: 0, Threads: 1})), bf16.Wrap(cpu.New(cpu.Options{Index: 1, Threads: 1}))}, w, o)
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
		if math.IsNaN(rg.Loss) || math.Abs(rg.Loss-rc.Loss) > 2e-2*rc.Loss {
			t.Fatalf("step %d: bf16 loss %v on cuda, %v on cpu", step, rg.Loss, rc.Loss)
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
			var diff, norm, dot, gn float64
			for i, v := range g.Data {
				c, x := float64(v), float64(gg[name].Data[i])
				diff += (x - c) * (x - c)
				norm += c * c
				dot += x * c
				gn += x * x
			}
			rel, cos := math.Sqrt(diff/norm), dot/math.Sqrt(norm*gn)
			tol := 1.0
			if strings.HasPrefix(name, "fc") {
				tol = 0.02
			}
			if !(rel <= tol && cos > 0.5) {
				t.Errorf("step %d: bf16 %s gradient on cuda differs from cpu's by %.3g (relative, in norm; cos %.3g): want at most %g, cos over 0.5", step, name, rel, cos, tol)
			}
		}
		t.Logf("step %d: bf16 loss %.6f cuda, %.6f cpu", step, rg.Loss, rc.Loss)
	}
}
