package open

import (
	"errors"
	"fmt"
	"io"
	"runtime"
	"strings"
	"text/tabwriter"

	"github.com/alexnet-go/trainer/gpu/cpu"
	"github.com/alexnet-go/trainer/gpu/cuda"
)

// List writes the devices this machine offers to w: the GPUs the CUDA
// driver sees (name, memory, compute capability, peer access) and the CPU
// device; with tryOpen it also opens and closes each GPU, which loads
// cuBLAS, cuDNN and NVRTC and compiles the kernels. A missing driver is reported,
// not returned: it is the expected answer on a machine without a GPU.
func List(w io.Writer, tryOpen bool) error {
	info, err := cuda.Devices()
	switch {
	case errors.Is(err, cuda.ErrNoDriver):
		fmt.Fprintf(w, "CUDA: no CUDA driver found; only CPU devices (--gpus cpu,cpu).\n  %v\n", err)
	case err != nil:
		fmt.Fprintf(w, "CUDA: driver loaded, but listing GPUs failed: %v\n", err)
	default:
		fmt.Fprintf(w, "CUDA: driver %s (%s), %d GPU(s)\n", cuda.VersionString(info.Version), info.Path, len(info.GPUs))
		if len(info.GPUs) > 0 {
			tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
			fmt.Fprintln(tw, "  ordinal\tname\tmemory\tcompute\tSMs\tpeer access")
			for _, g := range info.GPUs {
				var peers []string
				for j, ok := range g.Peer {
					if j != g.Ordinal && ok {
						peers = append(peers, fmt.Sprint(j))
					}
				}
				p := "none"
				if len(peers) > 0 {
					p = strings.Join(peers, ",")
				}
				fmt.Fprintf(tw, "  %d\t%s\t%.1f GiB\t%d.%d\t%d\t%s\n", g.Ordinal, g.Name, float64(g.Memory)/(1<<30), g.Major, g.Minor, g.SMs, p)
			}
			tw.Flush()
		}
		if tryOpen {
			for _, g := range info.GPUs {
				d, err := cuda.Open(g.Ordinal, cuda.Options{})
				if err != nil {
					fmt.Fprintf(w, "  open %d: %v\n", g.Ordinal, err)
					continue
				}
				fmt.Fprintf(w, "  open %d: %s ready (cuBLAS, cuDNN, kernels compiled)\n", g.Ordinal, d.Name())
				if err := d.Close(); err != nil {
					fmt.Fprintf(w, "  close %d: %v\n", g.Ordinal, err)
				}
			}
			fmt.Fprintf(w, "  libraries: %s\n", cuda.Libraries())
		}
	}
	d := cpu.New(cpu.Options{})
	fmt.Fprintf(w, "CPU: %d cores (%s/%s), %d threads per device by default\n  BLAS: %s\n  convolutions: %s\n",
		runtime.NumCPU(), runtime.GOOS, runtime.GOARCH, d.Threads(), cpu.BLAS(), cpu.Convolutions())
	return nil
}
