package parallel_test

import (
	"maps"
	"math"
	"math/rand/v2"
	"slices"
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
// four images spread like raw pixels minus the mean, on devs (one CPU
// device with two threads if none). It returns how many checks had a
// gradient above 5e-3, five times the tolerance.
func gradCheck(t *testing.T, net *model.Net, w model.Weights, names []string, k int, devs ...gpu.Device) (strong int) {
	t.Helper()
	return gradCheckPicked(t, net, w, names, k, 1, devs...)
}

// gradCheckPicked is gradCheck with each element checked the one of pick
// random candidates whose gradient is largest: in a deep net at its init
// most gradients lie under the float32 loss's noise, where a check checks
// nothing.
func gradCheckPicked(t *testing.T, net *model.Net, w model.Weights, names []string, k, pick int, devs ...gpu.Device) (strong int) {
	t.Helper()
	for _, l := range net.Layers {
		if l.Kind == model.Dropout {
			l.P = 0
		}
	}
	if len(devs) == 0 {
		devs = []gpu.Device{cpu.New(cpu.Options{Threads: 2})}
	}
	r := newRunner(t, net, w, devs...)
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
			for range pick - 1 {
				if j := rng.IntN(len(wt.Data)); math.Abs(float64(g[name].Data[j])) > math.Abs(float64(g[name].Data[i])) {
					i = j
				}
			}
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

// The paper's net, one training step at batch 2 with dropout on: on two
// CPU devices it computes exactly what it computes on one (loss,
// gradients, updated weights and momentum), the loss is the softmax's, and
// the update is the paper's rule applied to the gradients. With dropout
// off, the gradients of weights and biases from conv1 to fc8, in both
// towers and across them, agree with finite differences of the loss, and
// three steps on one batch lower the loss.
func TestAlexNetStep(t *testing.T) {
	if testing.Short() {
		t.Skip("alexnet's 61M parameters: skipped in -short")
	}
	net, _ := model.Build("alexnet", model.Options{Classes: 10})
	w := model.Init(net, 1)
	const lr, momentum, decay = 0.01, 0.9, 5e-4
	const descentLR = 3e-4 // 0.01 overshoots on a batch of 2 at the init
	opt := parallel.Options{Batch: 2, Seed: 1, Momentum: momentum, WeightDecay: decay}
	start := func(devs ...gpu.Device) *parallel.Runner {
		r, err := parallel.New(net, devs, w, opt)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(r.Close)
		return r
	}
	two := start(cpu.New(cpu.Options{Index: 0, Threads: 1}), cpu.New(cpu.Options{Index: 1, Threads: 1}))
	one := start(cpu.New(cpu.Options{Threads: 2}))
	b := batch(net, 2, 1)
	res, err := two.Train(b, lr)
	if err != nil {
		t.Fatal(err)
	}
	res1, err := one.Train(b, lr)
	if err != nil {
		t.Fatal(err)
	}
	if res.Loss != res1.Loss {
		t.Errorf("loss %v on two devices, %v on one", res.Loss, res1.Loss)
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
	if got := two.MovedBytes(); got != two.CrossingBytes() || got == 0 {
		t.Errorf("moved %d bytes, plan says %d", got, two.CrossingBytes())
	}

	g, _ := two.Grads()
	w2, _ := two.Weights()
	v2, _ := two.Momentum()
	names := slices.Sorted(maps.Keys(w))
	for _, tc := range []struct {
		what     string
		two, one func() (model.Weights, error)
	}{
		{"gradient", two.Grads, one.Grads}, {"weight", two.Weights, one.Weights}, {"momentum", two.Momentum, one.Momentum},
	} {
		a, _ := tc.two()
		o, _ := tc.one()
		if len(a) != len(w) || len(o) != len(w) {
			t.Fatalf("%d and %d %ss, want %d", len(a), len(o), tc.what, len(w))
		}
		for _, name := range names {
			if i := firstDiff(a[name].Data, o[name].Data); i >= 0 {
				t.Errorf("%s %s[%d] = %g on two devices, %g on one", name, tc.what, i, a[name].Data[i], o[name].Data[i])
			}
		}
	}

	// The first update, from zero momentum: v = −λ·lr·w − lr·g (λ on
	// weights only), each product rounded to float32, and w' = w + v.
	for _, name := range names {
		w0 := w[name]
		lambda := 0.0
		if strings.HasSuffix(name, ".weight") {
			lambda = decay
		}
		bad, zero := 0, 0
		for i, x := range w0.Data {
			gi, vi := float64(g[name].Data[i]), float64(v2[name].Data[i])
			dec, step := lambda*lr*float64(x), lr*gi
			if math.Abs(vi-(-dec-step)) > 1e-6*(math.Abs(dec)+math.Abs(step)) || w2[name].Data[i] != x+v2[name].Data[i] {
				if bad++; bad <= 3 {
					t.Errorf("%s[%d]: w %g, gradient %g: momentum %g, new weight %g; want %g, %g",
						name, i, x, gi, vi, w2[name].Data[i], -dec-step, x+float32(-dec-step))
				}
			}
			if gi == 0 {
				zero++
			}
		}
		if zero == len(w0.Data) {
			t.Errorf("%s: the gradient is all zero", name)
		}
	}

	// Dropout off: the gradients are those of the loss Eval computes.
	one.Close()
	two.Close()
	plain, _ := model.Build("alexnet", model.Options{Classes: 10})
	devs := []gpu.Device{cpu.New(cpu.Options{Index: 0, Threads: 1}), cpu.New(cpu.Options{Index: 1, Threads: 1})}
	checked := []string{"conv1a.weight", "conv1b.weight", "conv2b.weight", "conv3a.weight", "conv4b.weight", "conv5a.bias", "fc6b.weight", "fc7a.weight", "fc8.weight", "fc8.bias"}
	if strong := gradCheckPicked(t, plain, w, checked, 2, 64, devs...); strong < 18 {
		t.Errorf("only %d of %d gradients checked are above 5e-3, five times the tolerance: the check is too weak", strong, 2*len(checked))
	}
	r, err := parallel.New(plain, devs, w, opt)
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	losses := make([]float64, 4)
	for i := range losses {
		res, err := r.Train(b, descentLR)
		if err != nil {
			t.Fatal(err)
		}
		losses[i] = res.Loss
	}
	for i := 1; i < len(losses); i++ {
		if !(losses[i] < losses[i-1]) {
			t.Errorf("the loss on one batch does not fall step after step: %v", losses)
			break
		}
	}
}

// firstDiff returns the first index where a and b differ in their bits, or
// −1 if they are the same.
func firstDiff(a, b []float32) int {
	if len(a) != len(b) {
		return min(len(a), len(b))
	}
	for i := range a {
		if math.Float32bits(a[i]) != math.Float32bits(b[i]) {
			return i
		}
	}
	return -1
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
