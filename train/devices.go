package train

import (
	"errors"
	"fmt"
	"runtime"
	"slices"
	"strconv"
	"strings"

	"github.com/alexnet-go/trainer/gpu"
	"github.com/alexnet-go/trainer/gpu/cpu"
	"github.com/alexnet-go/trainer/gpu/cuda"
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

// ParseGPUs checks a --gpus value without opening anything and returns each
// entry's CUDA ordinal, or −1 for a CPU device.
func ParseGPUs(spec string) ([]int, error) {
	entries := strings.Split(spec, ",")
	if spec == "" || len(entries) > 2 {
		return nil, fmt.Errorf("--gpus %q: give one or two devices, e.g. cpu,cpu or 0,1", spec)
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

// OpenDevices turns a --gpus value into one device per entry: "cpu" is a CPU
// device (each entry its own), an integer a CUDA ordinal; the same ordinal
// twice is two logical devices (two streams) on one GPU. threads bounds each
// CPU device's threads; 0 shares the machine's cores among the CPU devices.
func OpenDevices(spec string, threads int) ([]gpu.Device, error) {
	return OpenDevicesWith(spec, threads, cuda.Options{})
}

// OpenDevicesWith is OpenDevices with options for the CUDA devices (TF32,
// deterministic algorithms).
func OpenDevicesWith(spec string, threads int, o cuda.Options) ([]gpu.Device, error) {
	ordinals, err := ParseGPUs(spec)
	if err != nil {
		return nil, err
	}
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
	devs := make([]gpu.Device, len(ordinals))
	for i, ord := range ordinals {
		if ord < 0 {
			devs[i] = cpu.New(cpu.Options{Index: i, Threads: threads})
			continue
		}
		d, err := cuda.Open(ord, o)
		if errors.Is(err, cuda.ErrNoDriver) {
			return nil, fmt.Errorf("--gpus %s: CUDA ordinal %d: %w (%v); use --gpus cpu,cpu", spec, ord, ErrNoCUDA, err)
		}
		if err != nil {
			return nil, fmt.Errorf("--gpus %s: %w", spec, err)
		}
		devs[i] = d
	}
	return devs, nil
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
