package main

import (
	"fmt"
	"strings"

	"github.com/urfave/cli/v2"

	"github.com/alexnet-go/trainer/model"
	"github.com/alexnet-go/trainer/plot"
)

// plotCommand is `trainer plot RUN_DIR... [--out curves.png]`: the top-1
// error curves of one or more runs on one chart.
func plotCommand() *cli.Command {
	return &cli.Command{
		Name:      "plot",
		Usage:     "chart the top-1 error against the epoch of one or more runs (validation solid, training dashed)",
		ArgsUsage: "RUN_DIR...",
		Flags: []cli.Flag{
			&cli.StringFlag{Name: "out", Value: "curves.png", Usage: "the PNG file to write"},
		},
		Action: plotCmd,
	}
}

func plotCmd(c *cli.Context) error {
	out := c.String("out")
	// urfave/cli/v2 stops parsing flags at the first argument, so
	// `trainer plot runs/a runs/b --out x.png` leaves --out among the
	// arguments: take it from there.
	var dirs []string
	args := c.Args().Slice()
	for i := 0; i < len(args); i++ {
		a := args[i]
		switch {
		case a == "--out" || a == "-out":
			if i+1 == len(args) {
				return fmt.Errorf("--out needs a file name")
			}
			i++
			out = args[i]
		case strings.HasPrefix(a, "--out=") || strings.HasPrefix(a, "-out="):
			out = a[strings.IndexByte(a, '=')+1:]
		case strings.HasPrefix(a, "-") && a != "-":
			return fmt.Errorf("unknown flag %s (trainer plot RUN_DIR... [--out curves.png])", a)
		default:
			dirs = append(dirs, a)
		}
	}
	if len(dirs) == 0 {
		return fmt.Errorf("no run directory: trainer plot RUN_DIR... [--out curves.png]")
	}
	if err := plot.CheckOut(out); err != nil {
		return fmt.Errorf("--out: %w", err)
	}
	runs := make([]plot.Run, len(dirs))
	for i, d := range dirs {
		r, err := plot.ReadRun(d)
		if err != nil {
			return err
		}
		runs[i] = r
	}
	if err := plot.Curves(out, runs); err != nil {
		return fmt.Errorf("--out: %w", err)
	}
	fmt.Printf("wrote %s: top-1 error of %d run(s)\n", out, len(runs))
	return nil
}

// kernelsCommand is `trainer kernels --weights W.safetensors [--out
// kernels.png]`: the first layer's kernels, as in the paper's Figure 3.
func kernelsCommand() *cli.Command {
	return &cli.Command{
		Name:  "kernels",
		Usage: "draw the first layer's kernels, tower a above tower b (the paper's Figure 3)",
		Flags: []cli.Flag{
			&cli.StringFlag{Name: "weights", Required: true, Usage: "a safetensors file of a net's weights"},
			&cli.StringFlag{Name: "out", Value: "kernels.png", Usage: "the PNG file to write"},
		},
		Action: kernelsCmd,
	}
}

func kernelsCmd(c *cli.Context) error {
	if c.NArg() > 0 {
		return fmt.Errorf("unexpected argument %q (trainer kernels --weights W.safetensors [--out kernels.png])", c.Args().First())
	}
	out, path := c.String("out"), c.String("weights")
	// Before reading a large weights file, make sure the result can be written.
	if err := plot.CheckOut(out); err != nil {
		return fmt.Errorf("--out: %w", err)
	}
	w, _, err := model.ReadSafetensors(path)
	if err != nil {
		return fmt.Errorf("--weights: %w", err)
	}
	img, err := plot.KernelImage(w)
	if err != nil {
		return fmt.Errorf("--weights %s: %w", path, err)
	}
	if err := plot.WritePNG(out, img); err != nil {
		return fmt.Errorf("--out: %w", err)
	}
	fmt.Printf("wrote %s\n", out)
	return nil
}
