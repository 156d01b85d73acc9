package parallel_test

import (
	"math"
	"math/rand/v2"
	"strings"
	"testing"

	"github.com/alexnet-go/trainer/gpu"
	"github.com/alexnet-go/trainer/gpu/cpu"
	"github.com/alexnet-go/trainer/model"
	"github.com/alexnet-go/trainer/parallel"
)

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

func newRunner(t *testing.T, net *model.Net, w model.Weights, devs ...gpu.Device) *parallel.Runner {
	t.Helper()
	r, err := parallel.New(net, devs, w, parallel.Options{Batch: 8, Seed: 3, Momentum: 0.9, WeightDecay: 5e-4})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(r.Close)
	return r
}

// The two-tower net split over two devices computes exactly what it computes
// with both towers on one device: losses, gradients and weights, step after
// step, and only the split moves bytes.
func TestTwoDevicesEqualOne(t *testing.T) {
	net, err := model.Build("alexnet-small", model.Options{Channels: 1, Classes: 10})
	if err != nil {
		t.Fatal(err)
	}
	w := model.Init(net, 1)
	one := newRunner(t, net, w, cpu.New(cpu.Options{Index: 0, Threads: 1}))
	two := newRunner(t, net, w, cpu.New(cpu.Options{Index: 0, Threads: 1}), cpu.New(cpu.Options{Index: 1, Threads: 1}))
	for step := 0; step < 4; step++ {
		b := batch(net, 8, uint64(step))
		r1, err := one.Train(b, 0.05)
		if err != nil {
			t.Fatal(err)
		}
		r2, err := two.Train(b, 0.05)
		if err != nil {
			t.Fatal(err)
		}
		if r1.Loss != r2.Loss || math.IsNaN(r1.Loss) {
			t.Fatalf("step %d: loss %v on one device, %v on two", step, r1.Loss, r2.Loss)
		}
		g1, _ := one.Grads()
		g2, _ := two.Grads()
		for name, g := range g1 {
			for i, v := range g.Data {
				if v != g2[name].Data[i] {
					t.Fatalf("step %d: %s gradient [%d] = %g on one device, %g on two", step, name, i, v, g2[name].Data[i])
				}
			}
		}
		if m := one.MovedBytes(); m != 0 {
			t.Errorf("one device moved %d bytes", m)
		}
		if m, want := two.MovedBytes(), two.CrossingBytes(); m != want || m == 0 {
			t.Errorf("step %d: two devices moved %d bytes, the plan says %d", step, m, want)
		}
	}
	w1, _ := one.Weights()
	w2, _ := two.Weights()
	for name := range w1 {
		for i, v := range w1[name].Data {
			if v != w2[name].Data[i] {
				t.Fatalf("%s[%d] = %g on one device, %g on two", name, i, v, w2[name].Data[i])
			}
		}
		if name == "conv1a.weight" && w1[name].Data[0] == w[name].Data[0] {
			t.Error("conv1a.weight did not change in 4 steps")
		}
	}
}

// Activations cross only on the cross-tower edges: forward one copy of
// pool2, pool5, drop6, drop7 each way (drop7a stays: fc8 is on tower a),
// backwards one gradient per crossing.
func TestCrossingBytes(t *testing.T) {
	net, _ := model.Build("alexnet-small", model.Options{Channels: 1, Classes: 10})
	r := newRunner(t, net, model.Init(net, 1), cpu.New(cpu.Options{Index: 0}), cpu.New(cpu.Options{Index: 1}))
	per := func(name string) int64 { return 4 * 8 * int64(net.Layer(name).Out.Len()) }
	want := 2 * (per("pool2a") + per("pool2b") + per("pool5a") + per("pool5b") + per("drop6a") + per("drop6b") + per("drop7b"))
	if got := r.CrossingBytes(); got != want {
		t.Errorf("a step moves %d bytes, want %d", got, want)
	}
}

// The loss and the gradient agree with finite differences of the whole net
// (cuda-convnet2's --check-grads) on a few weights of every layer.
func TestWholeNetGradient(t *testing.T) {
	net, _ := model.Build("alexnet-small", model.Options{Channels: 1, Classes: 10})
	names := []string{"conv1a.weight", "conv2b.weight", "conv3a.weight", "conv4b.weight", "conv5a.bias", "fc6b.weight", "fc7a.weight", "fc8.weight", "fc8.bias"}
	if strong := gradCheck(t, net, model.Init(net, 5), names, 3); strong < 12 {
		t.Errorf("only %d of 27 gradients checked are above 5e-3, five times the tolerance: the check is too weak", strong)
	}
}

// gradCheck compares the gradients of one training step with central finite
// differences of the loss on k random elements of each named tensor, with
// dropout off (Eval's loss is then the function Train differentiates), on
// four images spread like raw pixels minus the mean. It returns how many
// checks had a gradient above 5e-3, five times the tolerance.
func gradCheck(t *testing.T, net *model.Net, w model.Weights, names []string, k int) (strong int) {
	t.Helper()
	for _, l := range net.Layers {
		if l.Kind == model.Dropout {
			l.P = 0
		}
	}
	r := newRunner(t, net, w, cpu.New(cpu.Options{Threads: 2}))
	b := batch(net, 4, 9)
	for i := range b.Images {
		b.Images[i] *= 60
	}
	if _, err := r.Train(b, 0); err != nil { // lr 0: gradients only
		t.Fatal(err)
	}
	g, _ := r.Grads()
	loss := func() float64 {
		if err := r.SetWeights(w); err != nil {
			t.Fatal(err)
		}
		res, err := r.Eval(b)
		if err != nil {
			t.Fatal(err)
		}
		return res.Loss
	}
	rng := rand.New(rand.NewPCG(1, 2))
	for _, name := range names {
		wt, ok := w[name]
		if !ok {
			t.Fatalf("no weight %s", name)
		}
		for range k {
			i := rng.IntN(len(wt.Data))
			old := wt.Data[i]
			h := float32(1e-2) * max(float32(math.Abs(float64(old))), 0.05)
			wt.Data[i] = old + h
			lp := loss()
			wt.Data[i] = old - h
			lm := loss()
			wt.Data[i] = old
			num := (lp - lm) / (2 * float64(h))
			an := float64(g[name].Data[i])
			if math.Abs(num) > 5e-3 {
				strong++
			}
			if math.Abs(num-an) > 1e-3+0.05*math.Abs(num) { // the float32 loss leaves ~2e-4 of noise
				t.Errorf("%s[%d]: backward %g, finite difference %g", name, i, an, num)
			}
		}
	}
	return strong
}

// The paper's net runs a training step at batch 2 on two CPU devices.
func TestAlexNetStep(t *testing.T) {
	if testing.Short() {
		t.Skip("alexnet's 61M parameters: skipped in -short")
	}
	net, _ := model.Build("alexnet", model.Options{Classes: 10})
	r, err := parallel.New(net, []gpu.Device{cpu.New(cpu.Options{Index: 0, Threads: 1}), cpu.New(cpu.Options{Index: 1, Threads: 1})},
		model.Init(net, 1), parallel.Options{Batch: 2, Seed: 1, Momentum: 0.9, WeightDecay: 5e-4})
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	b := batch(net, 2, 1)
	res, err := r.Train(b, 0.01)
	if err != nil {
		t.Fatal(err)
	}
	// The loss is the mean −log p[label] of the softmax the step returns.
	var want float64
	for i := 0; i < 2; i++ {
		var sum float64
		for c := 0; c < 10; c++ {
			sum += float64(res.Prob[i*10+c])
		}
		if math.Abs(sum-1) > 1e-5 {
			t.Errorf("image %d: probabilities sum to %g", i, sum)
		}
		want -= math.Log(float64(res.Prob[i*10+int(b.Labels[i])])) / 2
	}
	if math.Abs(res.Loss-want) > 1e-4 || res.Loss <= 0 {
		t.Errorf("loss %g, the softmax says %g", res.Loss, want)
	}
	g, _ := r.Grads()
	for _, name := range []string{"conv1a.weight", "conv1b.weight", "conv3b.weight", "fc6a.weight", "fc8.weight"} {
		nz := 0
		for _, v := range g[name].Data {
			if v != 0 {
				nz++
			}
			if math.IsNaN(float64(v)) {
				t.Fatalf("%s gradient has NaN", name)
			}
		}
		if nz == 0 {
			t.Errorf("%s gradient is all zero", name)
		}
	}
	if got := r.MovedBytes(); got != r.CrossingBytes() || got == 0 {
		t.Errorf("moved %d bytes, plan says %d", got, r.CrossingBytes())
	}
}

func TestRunnerErrors(t *testing.T) {
	net, _ := model.Build("alexnet-small", model.Options{Channels: 1, Classes: 10})
	w := model.Init(net, 1)
	d := cpu.New(cpu.Options{})
	if _, err := parallel.New(net, []gpu.Device{d}, w, parallel.Options{Batch: 0}); err == nil {
		t.Error("batch 0 accepted")
	}
	three := []gpu.Device{d, d, d}
	if _, err := parallel.New(net, three, w, parallel.Options{Batch: 2}); err == nil {
		t.Error("three devices for two towers accepted")
	}
	r := newRunner(t, net, w, d)
	b := batch(net, 2, 1)
	b.Labels[0] = 10
	if _, err := r.Train(b, 0.01); err == nil || !strings.Contains(err.Error(), "label") {
		t.Errorf("label 10 of 10 classes: %v", err)
	}
	if _, err := r.Train(batch(net, 9, 1), 0.01); err == nil {
		t.Error("batch of 9 on a runner for 8 accepted")
	}
}

func TestRank(t *testing.T) {
	p := []float32{0.1, 0.5, 0.05, 0.05, 0.1, 0.2}
	if t1, t5 := parallel.Rank(p, 1); !t1 || !t5 {
		t.Error("the top class")
	}
	if t1, t5 := parallel.Rank(p, 5); t1 || !t5 {
		t.Error("the second class")
	}
	if t1, t5 := parallel.Rank(p, 2); t1 || t5 {
		t.Error("a class tied for last is not in the top 5")
	}
}
