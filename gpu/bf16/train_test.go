package bf16_test

import (
	"math"
	"math/rand/v2"
	"strings"
	"testing"

	"github.com/alexnet-go/trainer/gpu"
	"github.com/alexnet-go/trainer/gpu/bf16"
	"github.com/alexnet-go/trainer/gpu/cpu"
	"github.com/alexnet-go/trainer/model"
	"github.com/alexnet-go/trainer/parallel"
)

func runner(t *testing.T, net *model.Net, w model.Weights, devs ...gpu.Device) *parallel.Runner {
	t.Helper()
	r, err := parallel.New(net, devs, w, parallel.Options{Batch: 8, Seed: 3, Momentum: 0.9, WeightDecay: 5e-4})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(r.Close)
	return r
}

func batch(net *model.Net, seed uint64) parallel.Batch {
	rng := rand.New(rand.NewPCG(seed, 2))
	b := parallel.Batch{N: 8, Images: make([]float32, 8*net.Input.Len()), Labels: make([]float32, 8)}
	for i := range b.Images {
		b.Images[i] = float32(rng.NormFloat64()) // float32: rounded where conv1 reads it
	}
	for i := range b.Labels {
		b.Labels[i] = float32(rng.IntN(net.Classes))
	}
	return b
}

func cpuDev(i int) *cpu.Device { return cpu.New(cpu.Options{Index: i, Threads: 1}) }

// alexnet-small trained in bf16 with its towers on two CPU devices computes
// exactly what it computes with both on one (as it does in float32: the
// rounding points are per operation, so where an operation runs does not
// move them): losses, gradients and weights, step after step. And bf16 is
// not float32: the loss and gradients of a step differ from float32's,
// within what bf16's 8-bit significands allow, the gradients and the
// master weights stay float32 (not bf16 values), and the weights move.
func TestTwoTowersBF16(t *testing.T) {
	net, err := model.Build("alexnet-small", model.Options{Channels: 1, Classes: 10})
	if err != nil {
		t.Fatal(err)
	}
	w := model.Init(net, 1)
	one := runner(t, net, w, bf16.Wrap(cpuDev(0)))
	two := runner(t, net, w, bf16.Wrap(cpuDev(0)), bf16.Wrap(cpuDev(1)))
	fp := runner(t, net, w, cpuDev(0))
	for step := range 4 {
		b := batch(net, uint64(step))
		r1, err := one.Train(b, 0.05)
		if err != nil {
			t.Fatal(err)
		}
		r2, err := two.Train(b, 0.05)
		if err != nil {
			t.Fatal(err)
		}
		if r1.Loss != r2.Loss || math.IsNaN(r1.Loss) {
			t.Fatalf("step %d: bf16 loss %v on one device, %v on two", step, r1.Loss, r2.Loss)
		}
		g1, _ := one.Grads()
		g2, _ := two.Grads()
		for name, g := range g1 {
			for i, v := range g.Data {
				if math.Float32bits(v) != math.Float32bits(g2[name].Data[i]) {
					t.Fatalf("step %d: bf16 %s gradient [%d] = %g on one device, %g on two", step, name, i, v, g2[name].Data[i])
				}
			}
		}
		if step > 0 {
			continue
		}

		// The first step from the same weights, against float32.
		rf, err := fp.Train(b, 0.05)
		if err != nil {
			t.Fatal(err)
		}
		if d := math.Abs(r1.Loss - rf.Loss); d == 0 || d > 2e-2*rf.Loss {
			t.Errorf("step 0: loss %.9g in bf16, %.9g in float32: want them different, within 2%%", r1.Loss, rf.Loss)
		}
		gf, _ := fp.Grads()
		for name, g := range g1 {
			var diff, norm, dot, gn float64
			low, nonzero := 0, 0 // values with low 16 bits set: not bf16
			for i, v := range g.Data {
				if v != 0 {
					nonzero++
				}
				f := float64(gf[name].Data[i])
				diff += (float64(v) - f) * (float64(v) - f)
				norm += f * f
				dot += float64(v) * f
				gn += float64(v) * float64(v)
				if math.Float32bits(v)&0xffff != 0 {
					low++
				}
			}
			rel, cos := math.Sqrt(diff/norm), dot/math.Sqrt(norm*gn)
			// The fully-connected layers' gradients are short chains of
			// sums of products each off by up to 2⁻⁹ (relative): within
			// 2%. The convolutions' are sums with heavy cancellation at
			// initialization (in float32, a 10⁻³ relative change of the
			// image alone moves conv1's by 7%), and bf16 rounds every
			// layer below fc6 twice: they move by 5% (conv5) to 90%
			// (conv1) in norm, and still point the same way, cos > 0.57.
			tol := 1.0
			if strings.HasPrefix(name, "fc") {
				tol = 0.02
			}
			if !(rel > 0 && rel < tol && cos > 0.5) {
				t.Errorf("step 0: %s gradient differs from float32's by %.3g (relative, in norm; cos %.3g): want more than 0, under %g, cos over 0.5", name, rel, cos, tol)
			}
			if low < nonzero/2 || nonzero == 0 {
				t.Errorf("step 0: %s gradient: only %d of %d values other than 0 are not bf16: the weight gradients must stay float32", name, low, nonzero)
			}
		}
	}
	w1, _ := one.Weights()
	w2, _ := two.Weights()
	for name := range w1 {
		low := 0
		for i, v := range w1[name].Data {
			if math.Float32bits(v) != math.Float32bits(w2[name].Data[i]) {
				t.Fatalf("bf16 %s[%d] = %g on one device, %g on two", name, i, v, w2[name].Data[i])
			}
			if math.Float32bits(v)&0xffff != 0 {
				low++
			}
		}
		if low < len(w1[name].Data)/2 {
			t.Errorf("%s: only %d of %d master weights are not bf16 values: the masters must stay float32", name, low, len(w1[name].Data))
		}
		if name == "conv1a.weight" && w1[name].Data[0] == w[name].Data[0] {
			t.Error("conv1a.weight did not change in 4 steps")
		}
	}
}
