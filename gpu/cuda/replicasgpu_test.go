package cuda_test

import (
	"math"
	"math/rand/v2"
	"strings"
	"testing"

	"github.com/alexnet-go/trainer/gpu"
	"github.com/alexnet-go/trainer/gpu/cuda"
	"github.com/alexnet-go/trainer/model"
	opener "github.com/alexnet-go/trainer/open"
	"github.com/alexnet-go/trainer/parallel"
)

// logWriter collects what open.Reducers says of each group.
type logWriter struct{ strings.Builder }

// Two replicas of the two-tower net on one GPU (--gpus 0,0,0,0), reducing
// through open.Reducers as the trainer does (NCCL with four ranks on the
// GPU where this NCCL allows it, NCCL_MULTI_RANK_GPU_ENABLE=1 set here,
// else the device copies), train as one replica on 0,0: the same losses
// and weights to 1e-5 relative over four steps, dropout on. It skips
// without a driver (scripts/gpu-check.sh runs it).
func TestReplicasOnOneGPU(t *testing.T) {
	t.Setenv("NCCL_MULTI_RANK_GPU_ENABLE", "1")
	d := openOn(t, 6)
	replicasAsOne(t, []gpu.Device{d[0], d[1], d[2], d[3], d[4], d[5]}, 16)
}

// The same on the host GPU (hostgpu_test.go), where no NCCL loads: the
// replicas reduce with device copies, through ReduceAsync's events.
func TestReplicasOnHostGPU(t *testing.T) {
	d := cuda.HostDevices(t, 6)
	replicasAsOne(t, []gpu.Device{d[0], d[1], d[2], d[3], d[4], d[5]}, 4)
}

// replicasAsOne trains one replica on d[0], d[1] and two on d[2] … d[5]
// (through open.Reducers) on global batches of n images, and compares.
func replicasAsOne(t *testing.T, d []gpu.Device, n int) {
	net, err := model.Build("alexnet-small", model.Options{Channels: 1, Classes: 10})
	if err != nil {
		t.Fatal(err)
	}
	w := model.Init(net, 5)
	o := parallel.Options{Batch: n, Seed: 3, Momentum: 0.9, WeightDecay: 5e-4}
	one, err := parallel.New(net, []gpu.Device{d[0], d[1]}, w, o)
	if err != nil {
		t.Fatal(err)
	}
	defer one.Close()
	var log logWriter
	o.Reducers = opener.Reducers(nil, &log)
	rs, err := parallel.NewReplicas(net, [][]gpu.Device{{d[2], d[3]}, {d[4], d[5]}}, w, o)
	if err != nil {
		t.Fatal(err)
	}
	defer rs.Close()
	t.Logf("reduction: %s", strings.TrimSpace(log.String()))
	if !strings.Contains(log.String(), "NCCL") && !strings.Contains(log.String(), "device copies") {
		t.Errorf("open.Reducers did not give the CUDA replicas an NCCL group: %s", log.String())
	}
	rng := rand.New(rand.NewPCG(7, 8))
	for step := range 4 {
		b := parallel.Batch{N: n, Images: make([]float32, n*net.Input.Len()), Labels: make([]float32, n)}
		for i := range b.Images {
			b.Images[i] = float32(rng.NormFloat64() * 60)
		}
		for i := range b.Labels {
			b.Labels[i] = float32(rng.IntN(net.Classes))
		}
		want, err := one.Train(b, 0.01)
		if err != nil {
			t.Fatal(err)
		}
		got, err := rs.Train(b, 0.01)
		if err != nil {
			t.Fatal(err)
		}
		if math.Abs(got.Loss-want.Loss) > 1e-5*math.Abs(want.Loss) {
			t.Fatalf("step %d: loss %v, one replica %v", step, got.Loss, want.Loss)
		}
	}
	ref, err := one.Weights()
	if err != nil {
		t.Fatal(err)
	}
	for k, r := range rs.Runners() {
		wk, err := r.Weights()
		if err != nil {
			t.Fatal(err)
		}
		for name, x := range ref {
			var scale, diff float64
			for i, v := range x.Data {
				scale = max(scale, math.Abs(float64(v)))
				diff = max(diff, math.Abs(float64(wk[name].Data[i]-v)))
			}
			if diff > 1e-5*scale {
				t.Errorf("replica %d: %s differs by %g (largest value %g)", k, name, diff, scale)
			}
		}
	}
}
