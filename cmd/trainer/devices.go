package main

import (
	"github.com/alexnet-go/trainer/open"
	"github.com/urfave/cli/v2"
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
			return open.List(c.App.Writer, c.Bool("open"))
		},
	}
}
