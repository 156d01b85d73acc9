package main

import (
	"errors"
	"fmt"
	"io"
	"runtime"
	"strings"
	"text/tabwriter"

	"github.com/urfave/cli/v2"

	"github.com/alexnet-go/trainer/gpu/cpu"
	"github.com/alexnet-go/trainer/gpu/cuda"
)

// devicesCommand is `trainer devices`: the GPUs the CUDA driver sees (name,
// memory, compute capability, peer access) and the CPU device, or a plain
// statement that no CUDA driver was found. With --open it also opens each
// GPU, which loads cuBLAS, cuDNN and NVRTC and compiles the kernels, and
// says which libraries it loaded.
func devicesCommand() *cli.Command {
	return &cli.Command{
		Name:  "devices",
		Usage: "list the GPUs (name, memory, compute capability, peer access) and the CPU device",
		Flags: []cli.Flag{
			&cli.BoolFlag{Name: "open", Usage: "open each GPU: load cuBLAS, cuDNN and NVRTC and compile the kernels"},
		},
		Action: func(c *cli.Context) error {
			return printDevices(c.App.Writer, c.Bool("open"))
		},
	}
}

// printDevices writes the device list to w. A missing driver is reported,
// not returned: it is the expected answer on a machine without a GPU.
func printDevices(w io.Writer, open bool) error {
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
		if open {
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
	fmt.Fprintf(w, "CPU: %d cores (%s/%s), %d threads per device by default\n  BLAS: %s\n",
		runtime.NumCPU(), runtime.GOOS, runtime.GOARCH, d.Threads(), cpu.BLAS())
	return nil
}
