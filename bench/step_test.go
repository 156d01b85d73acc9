package bench

import (
	"fmt"
	"math/rand/v2"
	"runtime"
	"testing"

	"github.com/alexnet-go/trainer/gpu"
	"github.com/alexnet-go/trainer/gpu/cpu"
	"github.com/alexnet-go/trainer/model"
	"github.com/alexnet-go/trainer/parallel"
)

// placements are the CPU placements compared: both towers on one device
// with one thread, each tower on its own one-thread device, and one device
// with every core.
var placements = []struct {
	name string
	devs func() []gpu.Device
}{
	{"cpu-1thread", func() []gpu.Device { return []gpu.Device{cpu.New(cpu.Options{Threads: 1})} }},
	{"cpu,cpu-1thread-each", func() []gpu.Device {
		return []gpu.Device{cpu.New(cpu.Options{Index: 0, Threads: 1}), cpu.New(cpu.Options{Index: 1, Threads: 1})}
	}},
	{fmt.Sprintf("cpu-%dthreads", runtime.NumCPU()), func() []gpu.Device { return []gpu.Device{cpu.New(cpu.Options{})} }},
}

func benchStep(b *testing.B, name string, batch int) {
	net, err := model.Build(name, model.Options{Channels: 1, Classes: 10})
	if name == "alexnet" || name == "alexnet-1gpu" {
		net, err = model.Build(name, model.Options{Classes: 1000})
	}
	if err != nil {
		b.Fatal(err)
	}
	rng := rand.New(rand.NewPCG(1, 2))
	in := parallel.Batch{N: batch, Images: make([]float32, batch*net.Input.Len()), Labels: make([]float32, batch)}
	for i := range in.Images {
		in.Images[i] = float32(rng.NormFloat64())
	}
	for i := range in.Labels {
		in.Labels[i] = float32(rng.IntN(net.Classes))
	}
	w := model.Init(net, 1)
	for _, p := range placements {
		b.Run(p.name, func(b *testing.B) {
			r, err := parallel.New(net, p.devs(), w, parallel.Options{Batch: batch, Seed: 1, Momentum: 0.9, WeightDecay: 5e-4})
			if err != nil {
				b.Fatal(err)
			}
			defer r.Close()
			if _, err := r.Train(in, 0.01); err != nil { // warm-up: scratch buffers, page faults
				b.Fatal(err)
			}
			r.MovedBytes()
			b.ResetTimer()
			for range b.N {
				if _, err := r.Train(in, 0.01); err != nil {
					b.Fatal(err)
				}
			}
			s := b.Elapsed().Seconds()
			b.ReportMetric(float64(batch*b.N)/s, "images/s")
			b.ReportMetric(float64(parallel.TrainFLOPs(net, batch))*float64(b.N)/s/1e9, "GFLOP/s")
			b.ReportMetric(float64(r.MovedBytes())/float64(b.N)/(1<<20), "MiB-moved/step")
		})
	}
}

// BenchmarkStepSmall is one training step of alexnet-small (32×32×1 input)
// at batch 128.
func BenchmarkStepSmall(b *testing.B) { benchStep(b, "alexnet-small", 128) }

// BenchmarkStepAlexNet is one training step of the paper's alexnet
// (227×227×3) at batch 128: about 280 GFLOP, seconds per step on a CPU.
func BenchmarkStepAlexNet(b *testing.B) { benchStep(b, "alexnet", 128) }

// BenchmarkGEMM is the raw SGEMM rate of the CPU device on the shapes of
// alexnet's heaviest layers at batch 128, one thread and every core: the
// ceiling for the step's GFLOP/s.
func BenchmarkGEMM(b *testing.B) {
	shapes := []struct {
		name    string
		m, n, k int
	}{
		{"fc6-fwd-128x2048x9216", 128, 2048, 9216},
		{"conv2-im2col-128x729x1200", 128, 729, 1200},
		{"square-1024", 1024, 1024, 1024},
	}
	b.Logf("BLAS: %s", cpu.BLAS())
	for _, threads := range []int{1, runtime.NumCPU()} {
		d := cpu.New(cpu.Options{Threads: threads})
		for _, s := range shapes {
			b.Run(fmt.Sprintf("%s/threads=%d", s.name, threads), func(b *testing.B) {
				rng := rand.New(rand.NewPCG(1, 2))
				a, x, c := make([]float32, s.m*s.k), make([]float32, s.k*s.n), make([]float32, s.m*s.n)
				for i := range a {
					a[i] = rng.Float32()
				}
				for i := range x {
					x[i] = rng.Float32()
				}
				d.Sgemm(false, false, s.m, s.n, s.k, 1, a, s.k, x, s.n, 0, c, s.n)
				b.ResetTimer()
				for range b.N {
					d.Sgemm(false, false, s.m, s.n, s.k, 1, a, s.k, x, s.n, 0, c, s.n)
				}
				b.ReportMetric(2*float64(s.m)*float64(s.n)*float64(s.k)*float64(b.N)/b.Elapsed().Seconds()/1e9, "GFLOP/s")
			})
		}
	}
}
