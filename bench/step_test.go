package bench

import (
	"bytes"
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"os"
	"os/exec"
	"runtime"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/alexnet-go/trainer/gpu"
	"github.com/alexnet-go/trainer/gpu/cpu"
	"github.com/alexnet-go/trainer/model"
	"github.com/alexnet-go/trainer/parallel"
)

// placements are the CPU placements compared: both towers on one device
// with one thread, each tower on its own one-thread device, and one device
// with every core. threads is how many cores each uses in all, and twin
// the PyTorch placement it is compared with (torch threads).
var placements = []struct {
	name    string
	threads int
	devs    func() []gpu.Device
}{
	{"cpu-1thread", 1, func() []gpu.Device { return []gpu.Device{cpu.New(cpu.Options{Threads: 1})} }},
	{"cpu,cpu-1thread-each", 2, func() []gpu.Device {
		return []gpu.Device{cpu.New(cpu.Options{Index: 0, Threads: 1}), cpu.New(cpu.Options{Index: 1, Threads: 1})}
	}},
	{fmt.Sprintf("cpu-%dthreads", runtime.NumCPU()), runtime.NumCPU(), func() []gpu.Device { return []gpu.Device{cpu.New(cpu.Options{})} }},
}

// processCPU returns the CPU time the process has used, all threads.
func processCPU() time.Duration {
	var u syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &u); err != nil {
		return 0
	}
	return time.Duration(u.Utime.Nano() + u.Stime.Nano())
}

// sgemmRate is the machine's SGEMM rate in GFLOP/s on threads threads: a
// 1024³ product on a one-thread CPU device per thread, all at once, each
// timed for at least 0.3 s, their rates summed. It is the ceiling a
// training step's rate is compared with, measured beside it in the same
// run. (One device with threads threads would not do: Device.gemm cuts a
// product into blocks about 1024 wide, so a 1024³ product runs on one
// thread whatever the count, and the two-thread placements were compared
// with one core's rate.)
func sgemmRate(threads int) float64 {
	rates := make([]float64, threads)
	var wg sync.WaitGroup
	for i := range threads {
		wg.Go(func() {
			runtime.LockOSThread()
			defer runtime.UnlockOSThread()
			rates[i] = sgemmOne()
		})
	}
	wg.Wait()
	sum := 0.0
	for _, r := range rates {
		sum += r
	}
	return sum
}

// sgemmOne is one thread's SGEMM rate in GFLOP/s, a 1024³ product timed
// for at least 0.3 s.
func sgemmOne() float64 {
	const n = 1024
	d := cpu.New(cpu.Options{Threads: 1})
	rng := rand.New(rand.NewPCG(1, 2))
	a, x, c := make([]float32, n*n), make([]float32, n*n), make([]float32, n*n)
	for i := range a {
		a[i], x[i] = rng.Float32(), rng.Float32()
	}
	d.Sgemm(false, false, n, n, n, 1, a, n, x, n, 0, c, n)
	reps, start := 0, time.Now()
	for reps == 0 || time.Since(start) < 300*time.Millisecond {
		d.Sgemm(false, false, n, n, n, 1, a, n, x, n, 0, c, n)
		reps++
	}
	return 2 * n * n * n * float64(reps) / time.Since(start).Seconds() / 1e9
}

// ours holds the images/s each (net, placement) reached in this run, for
// the PyTorch twin's ratio; torchRuns what speed.py printed for each
// (net, threads), so that the benchmark's calibration run and its timed
// run share one run of the script.
var (
	ours      = map[string]float64{}
	torchRuns = map[string][]byte{}
)

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
	flops := float64(parallel.TrainFLOPs(net, batch))
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
			r.ResetProfile()
			gemm := sgemmRate(p.threads)
			b.ResetTimer()
			c0 := processCPU()
			for range b.N {
				if _, err := r.Train(in, 0.01); err != nil {
					b.Fatal(err)
				}
			}
			s := b.Elapsed().Seconds()
			c := (processCPU() - c0).Seconds()
			b.StopTimer()
			gemmAfter := sgemmRate(p.threads)
			rate := flops * float64(b.N) / s / 1e9
			ours[name+"/"+p.name] = float64(batch*b.N) / s
			b.ReportMetric(float64(batch*b.N)/s, "images/s")
			b.ReportMetric(rate, "GFLOP/s")
			// The SGEMM rate of as many threads, before and after the
			// steps: their mean is the ceiling, and their spread says how
			// much the machine's load moved meanwhile.
			b.ReportMetric((gemm+gemmAfter)/2, "sgemm-GFLOP/s")
			b.ReportMetric(rate/((gemm+gemmAfter)/2), "of-sgemm")
			b.ReportMetric(flops*float64(b.N)/c/1e9, "GFLOP/cpu-s")
			b.ReportMetric(float64(r.MovedBytes())/float64(b.N)/(1<<20), "MiB-moved/step")
			b.Logf("%s on %s: %.1f GFLOP/s = %.2f of SGEMM (%.1f before, %.1f after, %d threads); per layer, ms per step:\n%s",
				name, p.name, rate, rate/((gemm+gemmAfter)/2), gemm, gemmAfter, p.threads, layerTable(r.Profile(), b.N))
			b.Logf("%s on %s: each worker's share of the steps' wall time, ms per step:\n%s", name, p.name, workerTable(r.WorkerTimes(), b.N))
		})
	}
	for _, t := range []struct {
		threads int
		twin    string
	}{{1, "cpu-1thread"}, {2, "cpu,cpu-1thread-each"}} {
		b.Run(fmt.Sprintf("pytorch-%dthread", t.threads), func(b *testing.B) { benchPyTorch(b, name, batch, t.threads, flops, t.twin) })
	}
}

// layerTable formats a runner's profile over steps steps: forward and
// backward milliseconds per step of each layer, and the totals.
func layerTable(prof []parallel.LayerTime, steps int) string {
	var sb strings.Builder
	var fwd, bwd time.Duration
	ms := func(d time.Duration) float64 { return d.Seconds() * 1e3 / float64(steps) }
	for _, t := range prof {
		fmt.Fprintf(&sb, "  %-8s %-6s fwd %7.2f  bwd %7.2f\n", t.Layer, t.Device, ms(t.Forward), ms(t.Backward))
		fwd += t.Forward
		bwd += t.Backward
	}
	fmt.Fprintf(&sb, "  %-15s fwd %7.2f  bwd %7.2f", "all layers", ms(fwd), ms(bwd))
	return sb.String()
}

// workerTable formats each worker's WorkerTime over steps steps, in
// milliseconds per step: its work (and its thread's CPU time: less than
// the work when other threads took its core), its waits for the other
// device and the time it had finished while another had not.
func workerTable(ws []parallel.WorkerTime, steps int) string {
	var sb strings.Builder
	ms := func(d time.Duration) float64 { return d.Seconds() * 1e3 / float64(steps) }
	for _, w := range ws {
		fmt.Fprintf(&sb, "  %-6s wall %8.2f  work %8.2f (thread cpu %8.2f)  wait-fwd %7.2f  wait-bwd %7.2f  done %7.2f\n",
			w.Device, ms(w.Wall), ms(w.Work), ms(w.CPU), ms(w.WaitForward), ms(w.WaitBackward), ms(w.Done))
	}
	return strings.TrimRight(sb.String(), "\n")
}

// torchPython returns a Python that imports torch: $ALEXNET_PYTHON, else
// python3, else /usr/bin/python3 (Debian's python3-torch lives there when
// another python3 comes first on PATH); "" when none does.
func torchPython() string {
	cands := []string{"python3", "/usr/bin/python3"}
	if p := os.Getenv("ALEXNET_PYTHON"); p != "" {
		cands = []string{p}
	}
	for _, p := range cands {
		if exec.Command(p, "-c", "import torch").Run() == nil {
			return p
		}
	}
	return ""
}

// benchPyTorch runs the PyTorch twin (pytorch/speed.py --device cpu) of
// one training step of the named net with threads torch threads, and
// reports its rate beside ours for the twin placement measured just
// before. It is a benchmark only: without PyTorch it skips.
func benchPyTorch(b *testing.B, name string, batch, threads int, flops float64, twin string) {
	py := torchPython()
	if py == "" {
		b.Skip("PyTorch not installed (apt install python3-torch, or point ALEXNET_PYTHON at a python with torch)")
	}
	repeats := "10"
	if strings.HasPrefix(name, "alexnet") && !strings.Contains(name, "small") {
		repeats = "3"
	}
	key := fmt.Sprintf("%s/%d", name, threads)
	out, ok := torchRuns[key]
	if !ok {
		cmd := exec.Command(py, "pytorch/speed.py", "--device", "cpu", "--net", name, "--batch", fmt.Sprint(batch), "--warmup", "2", "--repeats", repeats)
		cmd.Env = append(os.Environ(), fmt.Sprintf("OMP_NUM_THREADS=%d", threads), fmt.Sprintf("MKL_NUM_THREADS=%d", threads))
		var errb bytes.Buffer
		cmd.Stderr = &errb
		var err error
		if out, err = cmd.Output(); err != nil {
			b.Fatalf("speed.py: %v\n%s", err, errb.String())
		}
		torchRuns[key] = out
	}
	var res struct {
		ImagesPerS float64 `json:"images_per_s"`
		Device     string  `json:"device"`
		Torch      string  `json:"torch"`
	}
	line, _, _ := strings.Cut(strings.TrimSpace(string(out)), "\n")
	if err := json.Unmarshal([]byte(line), &res); err != nil || res.ImagesPerS <= 0 {
		b.Fatalf("speed.py printed %q: %v", out, err)
	}
	b.ReportMetric(res.ImagesPerS, "images/s")
	b.ReportMetric(res.ImagesPerS/float64(batch)*flops/1e9, "GFLOP/s")
	if o, ok := ours[name+"/"+twin]; ok {
		b.ReportMetric(o/res.ImagesPerS, "ours/pytorch")
		b.Logf("%s: ours on %s %.1f images/s, PyTorch %s on %s %.1f images/s: ours/pytorch %.2f",
			name, twin, o, res.Torch, res.Device, res.ImagesPerS, o/res.ImagesPerS)
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
	b.Logf("BLAS: %s; convolutions: %s", cpu.BLAS(), cpu.Convolutions())
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
