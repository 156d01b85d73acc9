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

// Two replicas of the two-tower net (four CPU devices, cpu,cpu,cpu,cpu)
// train as one replica (cpu,cpu) on the same global batch and seed: the
// same losses and weights to 1e-5 relative, step after step, dropout on
// (each replica draws the masks of its images' places in the global
// batch), and the replicas' weights stay identical.
func TestReplicasTrainAsOne(t *testing.T) {
	net, err := model.Build("alexnet-small", model.Options{Channels: 1, Classes: 10})
	if err != nil {
		t.Fatal(err)
	}
	w := model.Init(net, 5)
	o := parallel.Options{Batch: 8, Seed: 3, Momentum: 0.9, WeightDecay: 5e-4}
	dev := func(i int) gpu.Device { return cpu.New(cpu.Options{Index: i, Threads: 1}) }
	one, err := parallel.New(net, []gpu.Device{dev(0), dev(1)}, w, o)
	if err != nil {
		t.Fatal(err)
	}
	defer one.Close()
	two, err := parallel.NewReplicas(net, [][]gpu.Device{{dev(0), dev(1)}, {dev(2), dev(3)}}, w, o)
	if err != nil {
		t.Fatal(err)
	}
	defer two.Close()
	rng := rand.New(rand.NewPCG(7, 8))
	for step := range 4 {
		b := parallel.Batch{N: 8, Images: make([]float32, 8*net.Input.Len()), Labels: make([]float32, 8)}
		for i := range b.Images {
			b.Images[i] = float32(rng.NormFloat64() * 60)
		}
		for i := range b.Labels {
			b.Labels[i] = float32(rng.IntN(10))
		}
		want, err := one.Train(b, 0.01)
		if err != nil {
			t.Fatal(err)
		}
		got, err := two.Train(b, 0.01)
		if err != nil {
			t.Fatal(err)
		}
		if math.Abs(got.Loss-want.Loss) > 1e-5*math.Abs(want.Loss) || got.Top1 != want.Top1 || len(got.Prob) != len(want.Prob) {
			t.Fatalf("step %d: loss %v top-1 %d, one replica %v %d", step, got.Loss, got.Top1, want.Loss, want.Top1)
		}
	}
	ref, err := one.Weights()
	if err != nil {
		t.Fatal(err)
	}
	rs := two.Runners()
	w0, _ := rs[0].Weights()
	w1, _ := rs[1].Weights()
	for name, t0 := range w0 {
		if i := firstDiff(t0.Data, w1[name].Data); i >= 0 {
			t.Fatalf("%s[%d]: replica 0 %v, replica 1 %v: the replicas parted", name, i, t0.Data[i], w1[name].Data[i])
		}
		var scale, diff float64
		for i, v := range ref[name].Data {
			scale = max(scale, math.Abs(float64(v)))
			diff = max(diff, math.Abs(float64(t0.Data[i]-v)))
		}
		if diff > 1e-5*scale {
			t.Errorf("%s: replicas differ from one replica by %g (largest value %g)", name, diff, scale)
		}
	}
	// A global batch must split evenly.
	if _, err := parallel.NewReplicas(net, [][]gpu.Device{{dev(0)}, {dev(1)}, {dev(2)}}, w, o); err == nil || !strings.Contains(err.Error(), "does not split evenly over 3 replicas") {
		t.Errorf("8 images over 3 replicas: %v", err)
	}
}
