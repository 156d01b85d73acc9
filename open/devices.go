package open

import (
	"errors"
	"fmt"
	"runtime"
	"slices"
	"strconv"
	"strings"

	"github.com/alexnet-go/trainer/gpu"
	"github.com/alexnet-go/trainer/gpu/bf16"
	"github.com/alexnet-go/trainer/gpu/cpu"
	"github.com/alexnet-go/trainer/gpu/cuda"
	"github.com/alexnet-go/trainer/model"
)

// ErrNoCUDA is returned for a CUDA ordinal on a machine where no CUDA
// driver is found.
var ErrNoCUDA = errors.New("no CUDA driver found")

// ErrNoSuchGPU is returned for a CUDA ordinal the driver does not see
// (--gpus 0,1 on a machine with one GPU).
var ErrNoSuchGPU = errors.New("no such GPU")

// DefaultGPUs is the placement used when --gpus is not given and no GPU is
// found: both towers on two CPU devices.
const DefaultGPUs = "cpu,cpu"

// DeviceOptions configure the devices Devices opens.
type DeviceOptions struct {
	// Threads bounds each CPU device's threads; 0 shares the machine's
	// cores among the CPU devices.
	Threads int
	// TF32 lets the CUDA devices use TF32 tensor cores; Deterministic
	// restricts cuDNN to algorithms that give the same bits on every run.
	TF32, Deterministic bool
	// Precision is "fp32" (or ""), "tf32" (TF32 as if TF32 were set) or
	// "bf16": every device, CPU or CUDA, wrapped by bf16.Wrap, so that
	// both round to bfloat16 at the same points (package gpu/bf16).
	Precision string
}

// DeviceList is what Devices opened, in the order of the --gpus entries.
type DeviceList []gpu.Device

// Close closes every device, the last first, and returns the first error.
func (ds DeviceList) Close() error {
	var first error
	for i := len(ds) - 1; i >= 0; i-- {
		if err := ds[i].Close(); err != nil && first == nil {
			first = err
		}
	}
	return first
}

// Names returns the devices' names, "cpu:0", "cuda:1", ….
func (ds DeviceList) Names() []string {
	out := make([]string, len(ds))
	for i, d := range ds {
		out[i] = d.Name()
	}
	return out
}

// ParseGPUs checks a --gpus value without opening anything and returns each
// entry's CUDA ordinal, or −1 for a CPU device.
func ParseGPUs(spec string) ([]int, error) {
	entries := strings.Split(spec, ",")
	if strings.TrimSpace(spec) == "" {
		return nil, fmt.Errorf("--gpus %q: give one device per tower, e.g. cpu,cpu or 0,1 (a pair per replica: 0,1,2,3 is two replicas)", spec)
	}
	out := make([]int, len(entries))
	for i, e := range entries {
		e = strings.TrimSpace(e)
		if strings.EqualFold(e, "cpu") {
			out[i] = -1
			continue
		}
		o, err := strconv.Atoi(e)
		if err != nil || o < 0 {
			return nil, fmt.Errorf("--gpus %s: %q is neither cpu nor a CUDA ordinal", spec, e)
		}
		out[i] = o
	}
	return out, nil
}

// ReplicaCount is how many data-parallel replicas of net a --gpus value
// runs: a two-tower net one per pair of entries, in order (0,1,2,3 is two:
// 0,1 and 2,3), or one on a single entry (both towers on it); a one-tower
// net one per entry.
func ReplicaCount(net *model.Net, spec string) (int, error) {
	ords, err := ParseGPUs(spec)
	if err != nil {
		return 0, err
	}
	n := len(ords)
	if net.Towers == 1 || n == 1 {
		return n, nil
	}
	if n%net.Towers != 0 {
		return 0, fmt.Errorf("--gpus %s: %d devices for %s's %d towers: give one device per tower of each replica (%d, %d, …), or one device for both towers", spec, n, net.Name, net.Towers, net.Towers, 2*net.Towers)
	}
	return n / net.Towers, nil
}

// Split cuts the devices opened for a --gpus value into r lists, one per
// replica, in the order of the entries.
func (ds DeviceList) Split(r int) [][]gpu.Device {
	per := len(ds) / r
	out := make([][]gpu.Device, r)
	for k := range out {
		out[k] = ds[k*per : (k+1)*per]
	}
	return out
}

// ForNet is the part of a --gpus value that one replica of net runs on,
// what scoring needs: a one-tower net takes the first device, a two-tower
// net the first pair (or the single device given). note says so when it
// drops devices, else it is empty.
func ForNet(net *model.Net, spec string) (placed, note string) {
	entries := strings.Split(spec, ",")
	per := min(net.Towers, len(entries))
	if len(entries) <= per {
		return spec, ""
	}
	placed = strings.Join(entries[:per], ",")
	if net.Towers == 1 {
		return placed, fmt.Sprintf("%s has one tower: it runs on the first device of --gpus %s", net.Name, spec)
	}
	return placed, fmt.Sprintf("one replica of %s runs on the first %d devices of --gpus %s", net.Name, per, spec)
}

// AutoGPUsFor is AutoGPUs for the net named name: a one-tower net takes
// the first device of the pair AutoGPUs picks, as one replica.
func AutoGPUsFor(name string) (spec, why string) {
	spec, why = AutoGPUs()
	net, err := model.Build(name, model.Options{Channels: 1, Classes: 2})
	if err != nil { // an unknown net: the run's checks name it
		return spec, why
	}
	if placed, note := ForNet(net, spec); note != "" {
		return placed, why + "; " + note
	}
	return spec, why
}

// Devices turns a --gpus value into one device per entry: "cpu" is a CPU
// device (each entry its own), an integer a CUDA ordinal; the same ordinal
// twice is two logical devices (two streams) on one GPU. On an error it
// closes what it had opened.
func Devices(spec string, o DeviceOptions) (DeviceList, error) {
	ordinals, err := ParseGPUs(spec)
	if err != nil {
		return nil, err
	}
	switch o.Precision {
	case "", "fp32", "tf32", "bf16":
	default:
		return nil, fmt.Errorf("--precision %q: use fp32, tf32 or bf16", o.Precision)
	}
	threads := o.Threads
	if threads < 0 {
		return nil, fmt.Errorf("--threads %d: must be 0 (share the cores) or more", threads)
	}
	ncpu := 0
	for _, o := range ordinals {
		if o < 0 {
			ncpu++
		}
	}
	if threads == 0 && ncpu > 0 {
		threads = max(1, runtime.NumCPU()/ncpu)
	}
	if slices.Max(ordinals) >= 0 {
		info, err := cuda.Devices()
		if errors.Is(err, cuda.ErrNoDriver) {
			return nil, fmt.Errorf("--gpus %s: %w (%v); use --gpus cpu,cpu", spec, ErrNoCUDA, err)
		}
		if err != nil {
			return nil, fmt.Errorf("--gpus %s: %w", spec, err)
		}
		if m := slices.Max(ordinals); m >= len(info.GPUs) {
			return nil, fmt.Errorf("--gpus %s: GPU %d: %w: the driver sees %d GPU(s); see trainer devices, or use --gpus 0,0 for both towers on GPU 0", spec, m, ErrNoSuchGPU, len(info.GPUs))
		}
	}
	devs := make(DeviceList, 0, len(ordinals))
	for i, ord := range ordinals {
		if ord < 0 {
			devs = append(devs, o.wrap(cpu.New(cpu.Options{Index: i, Threads: threads})))
			continue
		}
		d, err := cuda.Open(ord, cuda.Options{TF32: o.TF32 || o.Precision == "tf32", Deterministic: o.Deterministic})
		if err != nil {
			devs.Close()
			if errors.Is(err, cuda.ErrNoDriver) {
				return nil, fmt.Errorf("--gpus %s: CUDA ordinal %d: %w (%v); use --gpus cpu,cpu", spec, ord, ErrNoCUDA, err)
			}
			return nil, fmt.Errorf("--gpus %s: %w", spec, err)
		}
		devs = append(devs, o.wrap(d))
	}
	return devs, nil
}

// wrap returns d in o's precision.
func (o DeviceOptions) wrap(d gpu.Device) gpu.Device {
	if o.Precision == "bf16" {
		return bf16.Wrap(d)
	}
	return d
}

// AutoGPUs is the placement when --gpus is not given: one tower per GPU on
// a machine with two or more, both towers on one GPU's two streams with
// one, two CPU devices without a CUDA driver; and a line saying which.
func AutoGPUs() (spec, why string) {
	info, err := cuda.Devices()
	switch {
	case err != nil || len(info.GPUs) == 0:
		return DefaultGPUs, "no CUDA driver or GPU found: the two towers run on two CPU devices (--gpus cpu,cpu)"
	case len(info.GPUs) == 1:
		return "0,0", fmt.Sprintf("one GPU (%s): both towers on it, one stream each (--gpus 0,0)", info.GPUs[0].Name)
	}
	return "0,1", fmt.Sprintf("%d GPUs: tower a on GPU 0, tower b on GPU 1 (--gpus 0,1)", len(info.GPUs))
}

// BLAS names the CPU devices' matrix library, for a run's log.
func BLAS() string { return cpu.BLAS() }
