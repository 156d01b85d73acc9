package parallel_test

import (
	"context"
	"errors"
	"math"
	"math/rand/v2"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/alexnet-go/trainer/gpu"
	"github.com/alexnet-go/trainer/gpu/cpu"
	"github.com/alexnet-go/trainer/model"
	"github.com/alexnet-go/trainer/parallel"
)

func cpuDev(i int) gpu.Device { return cpu.New(cpu.Options{Index: i, Threads: 1}) }

// randomBatch is n random images and labels for net.
func randomBatch(net *model.Net, n int, rng *rand.Rand) parallel.Batch {
	b := parallel.Batch{N: n, Images: make([]float32, n*net.Input.Len()), Labels: make([]float32, n)}
	for i := range b.Images {
		b.Images[i] = float32(rng.NormFloat64() * 60)
	}
	for i := range b.Labels {
		b.Labels[i] = float32(rng.IntN(net.Classes))
	}
	return b
}

// closeTo fails t unless every tensor of got is within 1e-5 of want's
// largest value.
func closeTo(t *testing.T, what string, got, want model.Weights) {
	t.Helper()
	for name, w := range want {
		var scale, diff float64
		for i, v := range w.Data {
			scale = max(scale, math.Abs(float64(v)))
			diff = max(diff, math.Abs(float64(got[name].Data[i]-v)))
		}
		if diff > 1e-5*scale {
			t.Errorf("%s: %s differs by %g (largest value %g)", what, name, diff, scale)
		}
	}
}

// sameBits fails t unless a and b are the same bits.
func sameBits(t *testing.T, what string, a, b model.Weights) {
	t.Helper()
	for name, x := range a {
		if i := firstDiff(x.Data, b[name].Data); i >= 0 {
			t.Fatalf("%s: %s[%d] %v, %v", what, name, i, x.Data[i], b[name].Data[i])
		}
	}
}

// Two replicas of the two-tower net (four CPU devices, cpu,cpu,cpu,cpu)
// train as one replica (cpu,cpu) on the same global batch and seed: the
// same losses and weights to 1e-5 relative, step after step, dropout on
// (each replica draws the masks of its images' places in the global
// batch), and the replicas' weights and momentum stay identical. The same
// holds for the one-tower net, one device a replica.
func TestReplicasTrainAsOne(t *testing.T) {
	for _, tc := range []struct {
		net       string
		one       []gpu.Device
		replicas  [][]gpu.Device
		batch, R  int
		steps     int
		momentumT bool
	}{
		{"alexnet-small", []gpu.Device{cpuDev(0), cpuDev(1)}, [][]gpu.Device{{cpuDev(0), cpuDev(1)}, {cpuDev(2), cpuDev(3)}}, 8, 2, 4, true},
		{"alexnet-small-1gpu", []gpu.Device{cpuDev(0)}, [][]gpu.Device{{cpuDev(0)}, {cpuDev(1)}}, 8, 2, 3, false},
		{"alexnet-small-1gpu", []gpu.Device{cpuDev(0)}, [][]gpu.Device{{cpuDev(0)}, {cpuDev(1)}, {cpuDev(2)}, {cpuDev(3)}}, 8, 4, 3, false},
	} {
		t.Run(tc.net, func(t *testing.T) {
			net, err := model.Build(tc.net, model.Options{Channels: 1, Classes: 10})
			if err != nil {
				t.Fatal(err)
			}
			w := model.Init(net, 5)
			o := parallel.Options{Batch: tc.batch, Seed: 3, Momentum: 0.9, WeightDecay: 5e-4}
			one, err := parallel.New(net, tc.one, w, o)
			if err != nil {
				t.Fatal(err)
			}
			defer one.Close()
			rs, err := parallel.NewReplicas(net, tc.replicas, w, o)
			if err != nil {
				t.Fatal(err)
			}
			defer rs.Close()
			rng := rand.New(rand.NewPCG(7, 8))
			for step := range tc.steps {
				b := randomBatch(net, tc.batch, rng)
				want, err := one.Train(b, 0.01)
				if err != nil {
					t.Fatal(err)
				}
				got, err := rs.Train(b, 0.01)
				if err != nil {
					t.Fatal(err)
				}
				if math.Abs(got.Loss-want.Loss) > 1e-5*math.Abs(want.Loss) || got.Top1 != want.Top1 || got.Top5 != want.Top5 || len(got.Prob) != len(want.Prob) {
					t.Fatalf("step %d: loss %v top-1 %d, one replica %v %d", step, got.Loss, got.Top1, want.Loss, want.Top1)
				}
			}
			ref, _ := one.Weights()
			refV, _ := one.Momentum()
			for k, r := range rs.Runners() {
				wk, _ := r.Weights()
				vk, _ := r.Momentum()
				closeTo(t, "weights", wk, ref)
				closeTo(t, "momentum", vk, refV)
				if k > 0 {
					w0, _ := rs.Runners()[0].Weights()
					sameBits(t, "the replicas parted", wk, w0)
				}
			}
			if s := rs.ReduceStats(); s.Members != tc.R*len(tc.replicas[0]) || s.Calls < int64(tc.steps*s.Members) ||
				s.Bytes != int64(tc.steps*tc.R)*rs.GradientBytes() || s.Collective <= 0 {
				t.Errorf("reduce stats %+v over %d steps of %d gradient bytes", s, tc.steps, rs.GradientBytes())
			}
		})
	}
	net, _ := model.Build("alexnet-small", model.Options{Channels: 1, Classes: 10})
	w := model.Init(net, 5)
	o := parallel.Options{Batch: 8}
	// A global batch must split evenly.
	if _, err := parallel.NewReplicas(net, [][]gpu.Device{{cpuDev(0)}, {cpuDev(1)}, {cpuDev(2)}}, w, o); err == nil || !strings.Contains(err.Error(), "does not split evenly over 3 replicas") {
		t.Errorf("8 images over 3 replicas: %v", err)
	}
	rs, err := parallel.NewReplicas(net, [][]gpu.Device{{cpuDev(0)}, {cpuDev(1)}}, w, o)
	if err != nil {
		t.Fatal(err)
	}
	defer rs.Close()
	if _, err := rs.Train(randomBatch(net, 7, rand.New(rand.NewPCG(1, 1))), 0.01); err == nil || !strings.Contains(err.Error(), "not 7") {
		t.Errorf("a step of 7 images on 2 replicas: %v", err)
	}
}

// recorder is a GroupReducer factory that wraps the reference and records
// each group's buckets: how many values each call hands over.
type recorder struct {
	mu    sync.Mutex
	calls map[int][][]int // worker → per call, the tensors' sizes (replica 0's)
}

type recordingGroup struct {
	parallel.GroupReducer
	rec    *recorder
	worker int
}

func (g recordingGroup) Reduce(ctx context.Context, k int, dev gpu.Device, grads []gpu.Buffer) error {
	if k == 0 {
		var sizes []int
		for _, b := range grads {
			sizes = append(sizes, b.Len())
		}
		g.rec.mu.Lock()
		g.rec.calls[g.worker] = append(g.rec.calls[g.worker], sizes)
		g.rec.mu.Unlock()
	}
	return g.GroupReducer.Reduce(ctx, k, dev, grads)
}

func (g recordingGroup) Flush(ctx context.Context, k int, dev gpu.Device) error {
	return g.GroupReducer.(parallel.Flusher).Flush(ctx, k, dev)
}

func (r *recorder) factory(worker int, devs []gpu.Device) (parallel.GroupReducer, error) {
	g, err := parallel.Reference(worker, devs)
	return recordingGroup{GroupReducer: g, rec: r, worker: worker}, err
}

// The gradients are reduced in buckets as the backward pass makes them
// final, through the factory's reducers: with the smallest buckets one
// call per layer, fc8's first; and the result is the same bits whatever
// the bucket size, one bucket at the end (the reduction before buckets)
// included.
func TestReplicasReduceInBuckets(t *testing.T) {
	net, _ := model.Build("alexnet-small", model.Options{Channels: 1, Classes: 10})
	w := model.Init(net, 5)
	var weights []model.Weights
	for _, bucket := range []int{1, 64 << 10, 1 << 40} {
		rec := &recorder{calls: map[int][][]int{}}
		o := parallel.Options{Batch: 8, Seed: 3, Momentum: 0.9, WeightDecay: 5e-4, BucketBytes: bucket, Reducers: rec.factory}
		rs, err := parallel.NewReplicas(net, [][]gpu.Device{{cpuDev(0), cpuDev(1)}, {cpuDev(2), cpuDev(3)}}, w, o)
		if err != nil {
			t.Fatal(err)
		}
		rng := rand.New(rand.NewPCG(7, 8))
		for range 2 {
			if _, err := rs.Train(randomBatch(net, 8, rng), 0.01); err != nil {
				t.Fatal(err)
			}
		}
		got, _ := rs.Weights()
		rs.Close()
		weights = append(weights, got)
		const layers0, layers1 = 8, 7 // conv1a–conv5a, fc6a, fc7a, fc8; conv1b–fc7b
		switch bucket {
		case 1:
			fc8 := net.Layer("fc8").WeightShape()
			if c := rec.calls[0]; len(c) != 2*layers0 || len(c[0]) != 2 || c[0][0] != fc8[0]*fc8[1] || c[0][1] != fc8[0] {
				t.Errorf("buckets of 1 byte: worker 0's calls %v; want one per layer (%d a step), fc8's first (%v)", c, layers0, fc8)
			}
		case 1 << 40:
			if c := rec.calls[1]; len(c) != 2 || len(c[0]) != 2*layers1 {
				t.Errorf("one bucket: worker 1's calls %v; want one a step of %d tensors", c, 2*layers1)
			}
		default:
			if c := rec.calls[0]; len(c) <= 2 || len(c) >= 2*layers0 {
				t.Errorf("buckets of 64 KiB: %d calls in 2 steps; want more than one a step, fewer than one a layer", len(c))
			}
		}
	}
	sameBits(t, "buckets of 1 byte against one bucket", weights[0], weights[2])
	sameBits(t, "buckets of 64 KiB against one bucket", weights[1], weights[2])
}

// Raw batches, staged on the replicas a step ahead and rendered there,
// train as the same batches on one replica, with images whose bytes do
// not fill whole words (35×35) and with ones that do (36×36); and the
// evaluation of a batch that does not split evenly scores as one
// replica's.
func TestReplicasRawAndEval(t *testing.T) {
	net, _ := model.Build("alexnet-small", model.Options{Channels: 1, Classes: 10})
	w := model.Init(net, 5)
	o := parallel.Options{Batch: 6, Seed: 3, Momentum: 0.9, WeightDecay: 5e-4}
	for _, size := range []int{35, 36} {
		a := parallel.Augment{C: 1, Size: size, Mean: randomImage(size*size, 100, 3)}
		one, err := parallel.New(net, []gpu.Device{cpuDev(0), cpuDev(1)}, w, o)
		if err != nil {
			t.Fatal(err)
		}
		rs, err := parallel.NewReplicas(net, [][]gpu.Device{{cpuDev(0), cpuDev(1)}, {cpuDev(2), cpuDev(3)}}, w, o)
		if err != nil {
			t.Fatal(err)
		}
		if err := errors.Join(one.SetAugment(a), rs.SetAugment(a)); err != nil {
			t.Fatal(err)
		}
		var raws []parallel.Batch
		for s := range 3 {
			raw, _ := rawBatch(a, net.Input.H, 10, 6, uint64(10+s)) // 3 images a replica: 35×35 slices start mid-word
			raws = append(raws, raw)
		}
		if err := rs.Stage(raws[0]); err != nil {
			t.Fatal(err)
		}
		for s, raw := range raws {
			want, err := one.Train(raw, 0.01)
			if err != nil {
				t.Fatal(err)
			}
			p, err := rs.Start(raw, 0.01)
			if err != nil {
				t.Fatal(err)
			}
			if s+1 < len(raws) {
				if err := rs.Stage(raws[s+1]); err != nil {
					t.Fatal(err)
				}
			}
			got, err := p.Result()
			if err != nil {
				t.Fatal(err)
			}
			if math.Abs(got.Loss-want.Loss) > 1e-5*math.Abs(want.Loss) || got.Top1 != want.Top1 {
				t.Fatalf("size %d, step %d: loss %v top-1 %d, one replica %v %d", size, s, got.Loss, got.Top1, want.Loss, want.Top1)
			}
		}
		ref, _ := one.Weights()
		got, _ := rs.Weights()
		closeTo(t, "raw batches", got, ref)
		// Evaluation: 5 images, 3 on replica 0 and 2 on replica 1.
		b := randomBatch(net, 5, rand.New(rand.NewPCG(2, 3)))
		want, err1 := one.Eval(b)
		ev, err2 := rs.Eval(b)
		if err := errors.Join(err1, err2); err != nil {
			t.Fatal(err)
		}
		if math.Abs(ev.Loss-want.Loss) > 1e-5*math.Abs(want.Loss) || ev.Top1 != want.Top1 || ev.N != 5 || len(ev.Prob) != len(want.Prob) {
			t.Errorf("eval of 5 images: %+v, one replica %+v", ev, want)
		}
		for i, p := range want.Prob {
			if math.Abs(float64(ev.Prob[i]-p)) > 1e-5 {
				t.Fatalf("eval softmax [%d]: %v, one replica %v", i, ev.Prob[i], p)
			}
		}
		one.Close()
		rs.Close()
	}
}

// failingDevice fails every convolution once armed.
type failingDevice struct {
	*cpu.Device
	armed bool
}

func (d *failingDevice) Conv(y, x, w gpu.Buffer, s gpu.ConvShape) error {
	if d.armed {
		return errors.New("injected failure")
	}
	return d.Device.Conv(y, x, w, s)
}

// A replica that fails ends the step of every replica with its error
// instead of leaving the others waiting in their groups, and the next
// step trains.
func TestReplicaFailureEndsTheStep(t *testing.T) {
	net, _ := model.Build("alexnet-small", model.Options{Channels: 1, Classes: 10})
	w := model.Init(net, 5)
	bad := &failingDevice{Device: cpu.New(cpu.Options{Index: 3, Threads: 1})}
	rs, err := parallel.NewReplicas(net, [][]gpu.Device{{cpuDev(0), cpuDev(1)}, {cpuDev(2), bad}}, w, parallel.Options{Batch: 4, Seed: 1})
	if err != nil {
		t.Fatal(err)
	}
	defer rs.Close()
	rng := rand.New(rand.NewPCG(1, 2))
	bad.armed = true
	done := make(chan error, 1)
	go func() { _, err := rs.Train(randomBatch(net, 4, rng), 0.01); done <- err }()
	select {
	case err := <-done:
		if err == nil || !strings.Contains(err.Error(), "replica 1") || !strings.Contains(err.Error(), "injected failure") {
			t.Errorf("a failing replica: %v", err)
		}
	case <-time.After(time.Minute):
		t.Fatal("a failing replica left the step hanging")
	}
	bad.armed = false
	if _, err := rs.Train(randomBatch(net, 4, rng), 0.01); err != nil {
		t.Errorf("the step after a failed one: %v", err)
	}
}
