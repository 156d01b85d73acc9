package parallel_test

import (
	"math"
	"math/rand/v2"
	"testing"

	"github.com/alexnet-go/trainer/gpu"
	"github.com/alexnet-go/trainer/gpu/cpu"
	"github.com/alexnet-go/trainer/model"
	"github.com/alexnet-go/trainer/parallel"
)

// rawBatch is a random raw batch of n c×size×size images for a net with a
// crop×crop input, and the same batch rendered on the host from the
// formula on parallel.Augment.
func rawBatch(a parallel.Augment, crop, classes, n int, seed uint64) (raw, rendered parallel.Batch) {
	rng := rand.New(rand.NewPCG(seed, 5))
	c, size := a.C, a.Size
	src := make([]uint8, n*c*size*size)
	for i := range src {
		src[i] = uint8(rng.IntN(256))
	}
	raw = parallel.Batch{N: n, Raw: gpu.PackBytes(src), Labels: make([]float32, n)}
	rendered = parallel.Batch{N: n, Images: make([]float32, n*c*crop*crop), Labels: raw.Labels}
	for j := range n {
		raw.Labels[j] = float32(rng.IntN(classes))
		x, y, flip := rng.IntN(size-crop+1), rng.IntN(size-crop+1), rng.IntN(2)
		p := []float32{float32(x), float32(y), float32(flip)}
		for range c {
			p = append(p, float32(rng.NormFloat64()*3))
		}
		raw.Params = append(raw.Params, p...)
		for ch := range c {
			for yy := range crop {
				for xx := range crop {
					sx := x + xx
					if flip == 1 {
						sx = x + crop - 1 - xx
					}
					at := (ch*size+y+yy)*size + sx
					v := float32(src[j*c*size*size+at])
					if a.Mean != nil {
						v -= a.Mean[at]
					}
					v += p[3+ch]
					o := (ch*crop+yy)*crop + xx
					if a.OutputMean != nil {
						v -= a.OutputMean[o]
					}
					rendered.Images[j*c*crop*crop+o] = v
				}
			}
		}
	}
	return raw, rendered
}

func randomImage(n int, scale float64, seed uint64) []float32 {
	rng := rand.New(rand.NewPCG(seed, 9))
	v := make([]float32, n)
	for i := range v {
		v[i] = float32(rng.Float64() * scale)
	}
	return v
}

// Training on raw batches rendered on the devices, each staged before the
// previous step runs, gives the weights and scores of training on the
// same batches rendered on the host, bit for bit: on one CPU device and
// with the towers on two, with a mean at the source pixel, at the output
// position, or none.
func TestRawBatchesTrainAsRendered(t *testing.T) {
	net, err := model.Build("alexnet-small", model.Options{Channels: 1, Classes: 10})
	if err != nil {
		t.Fatal(err)
	}
	in := net.Input
	const size = 36
	for _, tc := range []struct {
		name string
		a    parallel.Augment
	}{
		{"source mean", parallel.Augment{C: 1, Size: size, Mean: randomImage(size*size, 255, 1)}},
		{"output mean", parallel.Augment{C: 1, Size: size, OutputMean: randomImage(in.Len(), 255, 2)}},
		{"no mean", parallel.Augment{C: 1, Size: size}},
	} {
		for _, towers := range []int{1, 2} {
			t.Run(tc.name, func(t *testing.T) {
				devs := func() []gpu.Device {
					if towers == 1 {
						return []gpu.Device{cpu.New(cpu.Options{Threads: 2})}
					}
					return []gpu.Device{cpu.New(cpu.Options{Index: 0, Threads: 1}), cpu.New(cpu.Options{Index: 1, Threads: 1})}
				}
				w := model.Init(net, 4)
				host := newRunner(t, net, w, devs()...)
				dev := newRunner(t, net, w, devs()...)
				if err := dev.SetAugment(tc.a); err != nil {
					t.Fatal(err)
				}
				const steps = 4
				var raws, rendered []parallel.Batch
				for s := range steps {
					n := 8
					if s == steps-1 {
						n = 5 // a partial batch
					}
					r, h := rawBatch(tc.a, in.H, net.Classes, n, uint64(s))
					raws, rendered = append(raws, r), append(rendered, h)
				}
				trainStaged(t, dev, host, raws, rendered)
				if dev.Staged() != 0 {
					t.Errorf("%d batches left staged", dev.Staged())
				}
				sameWeights(t, dev, host)
				// Evaluation takes raw batches too.
				r, h := rawBatch(tc.a, in.H, net.Classes, 6, 99)
				got, err := dev.Eval(r)
				if err != nil {
					t.Fatal(err)
				}
				want, err := host.Eval(h)
				if err != nil {
					t.Fatal(err)
				}
				if i := firstDiff(got.Prob, want.Prob); i >= 0 {
					t.Fatalf("eval: probability %d = %v, want %v", i, got.Prob[i], want.Prob[i])
				}
			})
		}
	}
}

func sameWeights(t *testing.T, a, b *parallel.Runner) {
	t.Helper()
	wa, err := a.Weights()
	if err != nil {
		t.Fatal(err)
	}
	wb, err := b.Weights()
	if err != nil {
		t.Fatal(err)
	}
	for name, ta := range wa {
		if i := firstDiff(ta.Data, wb[name].Data); i >= 0 {
			t.Fatalf("%s[%d] = %v, want %v", name, i, ta.Data[i], wb[name].Data[i])
		}
	}
}

// Pending steps keep their own scores: reading step n's back after steps
// n+1 and n+2 started gives what Train gives.
func TestPendingScoresKept(t *testing.T) {
	net, _ := model.Build("alexnet-small", model.Options{Channels: 1, Classes: 10})
	w := model.Init(net, 2)
	a := newRunner(t, net, w, cpu.New(cpu.Options{Threads: 2}))
	b := newRunner(t, net, w, cpu.New(cpu.Options{Threads: 2}))
	var ps []*parallel.Pending
	var want []parallel.Result
	for s := range 3 {
		bt := batch(net, 8, uint64(s+10))
		p, err := a.Start(bt, 0.01)
		if err != nil {
			t.Fatal(err)
		}
		ps = append(ps, p)
		r, err := b.Train(bt, 0.01)
		if err != nil {
			t.Fatal(err)
		}
		want = append(want, r)
	}
	for s, p := range ps {
		got, err := p.Result()
		if err != nil {
			t.Fatal(err)
		}
		if got.Loss != want[s].Loss || firstDiff(got.Prob, want[s].Prob) >= 0 {
			t.Errorf("step %d: loss %v, want %v", s, got.Loss, want[s].Loss)
		}
	}
}

// Staging refuses what it cannot hold or take.
func TestStageErrors(t *testing.T) {
	net, _ := model.Build("alexnet-small", model.Options{Channels: 1, Classes: 10})
	r := newRunner(t, net, model.Init(net, 1), cpu.New(cpu.Options{}))
	a := parallel.Augment{C: 1, Size: 36}
	raw, _ := rawBatch(a, net.Input.H, net.Classes, 8, 1)
	if err := r.Stage(raw); err == nil {
		t.Error("Stage before SetAugment succeeded")
	}
	if err := r.SetAugment(parallel.Augment{C: 3, Size: 36}); err == nil {
		t.Error("SetAugment of 3-channel images for a 1-channel net succeeded")
	}
	if err := r.SetAugment(parallel.Augment{C: 1, Size: 30}); err == nil {
		t.Error("SetAugment of images smaller than the input succeeded")
	}
	if err := r.SetAugment(a); err != nil {
		t.Fatal(err)
	}
	short := raw
	short.Raw = short.Raw[:len(short.Raw)-1]
	if err := r.Stage(short); err == nil {
		t.Error("Stage of a short raw batch succeeded")
	}
	for range parallel.Slots {
		if err := r.Stage(raw); err != nil {
			t.Fatal(err)
		}
	}
	if err := r.Stage(raw); err == nil {
		t.Errorf("Stage of batch %d succeeded", parallel.Slots+1)
	}
	other, _ := rawBatch(a, net.Input.H, net.Classes, 5, 2)
	if _, err := r.Train(other, 0.01); err == nil {
		t.Error("Train on a batch other than the staged one succeeded")
	}
}

// trainStaged trains dev on the raw batches, staging batch s+1 before step
// s starts (it travels while step s computes), and host on the same
// batches rendered on the host, and fails unless every step's loss bits,
// top-1 and top-5 agree.
func trainStaged(t *testing.T, dev, host *parallel.Runner, raws, rendered []parallel.Batch) {
	t.Helper()
	if err := dev.Stage(raws[0]); err != nil {
		t.Fatal(err)
	}
	for s := range raws {
		if s+1 < len(raws) {
			if err := dev.Stage(raws[s+1]); err != nil {
				t.Fatal(err)
			}
		}
		p, err := dev.Start(raws[s], 0.01)
		if err != nil {
			t.Fatal(err)
		}
		want, err := host.Train(rendered[s], 0.01)
		if err != nil {
			t.Fatal(err)
		}
		got, err := p.Result()
		if err != nil {
			t.Fatal(err)
		}
		if math.Float64bits(got.Loss) != math.Float64bits(want.Loss) || got.Top1 != want.Top1 || got.Top5 != want.Top5 {
			t.Fatalf("step %d: loss %v top-1 %d top-5 %d, want %v %d %d", s, got.Loss, got.Top1, got.Top5, want.Loss, want.Top1, want.Top5)
		}
	}
}
