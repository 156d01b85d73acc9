package train

import (
	"errors"
	"fmt"
	"runtime"
	"strconv"
	"strings"

	"github.com/alexnet-go/trainer/gpu"
	"github.com/alexnet-go/trainer/gpu/cpu"
)

// ErrNoCUDA is returned for a CUDA ordinal while this build has no CUDA
// backend.
var ErrNoCUDA = errors.New("no CUDA backend in this build yet")

// DefaultGPUs is the placement used when --gpus is not given: with no GPU,
// both towers on two CPU devices.
const DefaultGPUs = "cpu,cpu"

// OpenDevices turns a --gpus value into one device per entry: "cpu" is a CPU
// device (each entry its own), an integer a CUDA ordinal; the same ordinal
// twice is two logical devices on one GPU. threads bounds each CPU device's
// threads; 0 shares the machine's cores among the CPU devices.
func OpenDevices(spec string, threads int) ([]gpu.Device, error) {
	entries := strings.Split(spec, ",")
	if spec == "" || len(entries) > 2 {
		return nil, fmt.Errorf("--gpus %q: give one or two devices, e.g. cpu,cpu or 0,1", spec)
	}
	ncpu := 0
	for _, e := range entries {
		e = strings.TrimSpace(e)
		switch _, err := strconv.Atoi(e); {
		case strings.EqualFold(e, "cpu"):
			ncpu++
		case err == nil:
			return nil, fmt.Errorf("--gpus %s: CUDA ordinal %s: %w; use --gpus cpu,cpu", spec, e, ErrNoCUDA)
		default:
			return nil, fmt.Errorf("--gpus %s: %q is neither cpu nor a CUDA ordinal", spec, e)
		}
	}
	if threads < 0 {
		return nil, fmt.Errorf("--threads %d: must be 0 (share the cores) or more", threads)
	}
	if threads == 0 {
		threads = max(1, runtime.NumCPU()/ncpu)
	}
	devs := make([]gpu.Device, len(entries))
	for i := range entries {
		devs[i] = cpu.New(cpu.Options{Index: i, Threads: threads})
	}
	return devs, nil
}
