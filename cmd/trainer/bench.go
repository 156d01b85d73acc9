package main

import (
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"

	"github.com/urfave/cli/v2"

	"github.com/alexnet-go/trainer/bench"
	"github.com/alexnet-go/trainer/open"
	"github.com/alexnet-go/trainer/parallel"
	"github.com/alexnet-go/trainer/train"
)

// benchCommand is `trainer bench`: reproducible comparisons.
func benchCommand() *cli.Command {
	d := train.Defaults()
	common := []cli.Flag{
		&cli.StringFlag{Name: "data", Value: d.Data, Usage: "the data set, as for train"},
		&cli.IntFlag{Name: "epochs", Value: 10, Usage: "epochs per run"},
		&cli.IntFlag{Name: "batch", Value: 64, Usage: "images per step"},
		&cli.Float64Flag{Name: "lr", Value: d.LR, Usage: "the initial learning rate"},
		&cli.IntFlag{Name: "limit", Value: 8192, Usage: "use only the first N training images (0: all)"},
		&cli.IntFlag{Name: "val-limit", Usage: "validate on only the first N test images (0: all)"},
		&cli.StringFlag{Name: "seeds", Value: "1,2,3", Usage: "the seeds every arm is trained with"},
		&cli.StringFlag{Name: "out", Usage: "the report's `DIR` (default bench/out/NAME); runs go in DIR/runs and are reused or resumed"},
		&cli.BoolFlag{Name: "quick", Usage: "a smoke test: 256 training and 500 test images, 1 epoch, seeds 1,2"},
	}
	return &cli.Command{
		Name:  "bench",
		Usage: "reproducible comparisons: one tower against two, the paper's ablations, speed",
		Action: func(c *cli.Context) error {
			if c.NArg() > 0 {
				return fmt.Errorf("bench %s: no such benchmark (use error, ablate, speed, scale or kernels; see trainer bench --help)", c.Args().First())
			}
			return cli.ShowSubcommandHelp(c)
		},
		Subcommands: []*cli.Command{
			{
				Name:  "error",
				Usage: "train the one-tower and the two-tower net on the same data, schedule and seeds; report test error (the paper, §3.2: −1.7% top-1, −1.2% top-5)",
				Flags: append([]cli.Flag{
					&cli.StringFlag{Name: "nets", Value: "alexnet-small-1gpu,alexnet-small", Usage: "the one-tower and the two-tower net"},
					&cli.StringFlag{Name: "gpus", Usage: "their placements, separated by ; (default: 0;0,1 with two GPUs, 0;0,0 with one, else cpu;cpu,cpu)"},
				}, common...),
				Action: benchErrorCmd,
			},
			benchAblateCommand(),
			{
				Name:  "speed",
				Usage: "images/s of a training step at batch 128 for each net and placement, per layer, with the bytes moved and the memory held",
				Flags: []cli.Flag{
					&cli.StringFlag{Name: "nets", Value: "alexnet-small,alexnet-small-1gpu,alexnet,alexnet-1gpu", Usage: "nets, separated by commas"},
					&cli.StringFlag{Name: "placements", Value: "cpu;cpu,cpu;0;0,0;0,1", Usage: "--gpus values, separated by ;"},
					&cli.IntFlag{Name: "batch", Value: 128, Usage: "images per step"},
					&cli.IntFlag{Name: "repeats", Value: 5, Usage: "timed steps after the warm-up (1 step, 10 on a GPU); the median is reported"},
					&cli.IntFlag{Name: "threads", Usage: "threads per CPU device (0: share the cores)"},
					&cli.StringFlag{Name: "out", Value: filepath.Join("bench", "out", "speed"), Usage: "the report's `DIR`"},
					&cli.BoolFlag{Name: "quick", Usage: "a smoke test: alexnet-small at batch 16, 2 steps"},
					&cli.StringFlag{Name: "data", Usage: "also time each net end to end from this data `DIR` (as train --data takes it) through the loader, with the time waited for data"},
					&cli.IntFlag{Name: "workers", Usage: "loader goroutines for --data (0: one per core)"},
					&cli.StringFlag{Name: "precision", Value: "fp32", Usage: "the arithmetic, as train's --precision: fp32, tf32 or bf16"},
				},
				Action: benchSpeedCmd,
			},
			{
				Name:  "scale",
				Usage: "images/s of 1, 2 and 4 data-parallel replicas at the same global batch, the bytes reduced per step, the time in the collective and how much the backward pass hid, the scaling efficiency",
				Flags: []cli.Flag{
					&cli.StringFlag{Name: "net", Value: "alexnet-small", Usage: "the net"},
					&cli.StringFlag{Name: "replicas", Value: "1,2,4", Usage: "replica counts, separated by commas"},
					&cli.StringFlag{Name: "gpus", Usage: "devices for the most replicas, as for train (R replicas take the first R pairs); default: CPU devices, --threads each"},
					&cli.IntFlag{Name: "batch", Value: 128, Usage: "the global batch, split over the replicas"},
					&cli.IntFlag{Name: "repeats", Value: 5, Usage: "timed steps after the warm-up (1 step, 10 on a GPU); the median is reported"},
					&cli.IntFlag{Name: "threads", Value: 1, Usage: "threads per CPU device"},
					&cli.IntFlag{Name: "bucket-kb", Value: parallel.DefaultBucketBytes >> 10, Usage: "gradients handed to the reduction in buckets of about this many KiB"},
					&cli.StringFlag{Name: "out", Value: filepath.Join("bench", "out", "scale"), Usage: "the report's `DIR`"},
					&cli.BoolFlag{Name: "quick", Usage: "a smoke test: batch 8, 1 step, buckets of 64 KiB"},
				},
				Action: benchScaleCmd,
			},
			{
				Name:  "kernels",
				Usage: "LRN, max pooling and the fused ReLU+LRN, forward and backward, on conv1's and conv2's shapes: our time, cuDNN's, the bytes moved and the fraction of a device copy's bandwidth",
				Flags: []cli.Flag{
					&cli.StringFlag{Name: "gpus", Usage: "the devices, as for train, each timed on its own (default: GPU 0 if there is one, else cpu)"},
					&cli.IntFlag{Name: "batch", Value: 128, Usage: "images"},
					&cli.IntFlag{Name: "repeats", Value: 20, Usage: "timed runs of each op after the warm-up; the median is reported"},
					&cli.IntFlag{Name: "threads", Usage: "threads per CPU device (0: share the cores)"},
					&cli.StringFlag{Name: "out", Value: filepath.Join("bench", "out", "kernels"), Usage: "the report's `DIR`"},
					&cli.BoolFlag{Name: "quick", Usage: "a smoke test: batch 4, 2 runs"},
				},
				Action: benchKernelsCmd,
			},
		},
	}
}

func benchSpeedCmd(c *cli.Context) error {
	o := bench.SpeedOptions{Nets: strings.Split(c.String("nets"), ","), Placements: strings.Split(c.String("placements"), ";"),
		Batch: c.Int("batch"), Repeats: c.Int("repeats"), Threads: c.Int("threads"), Out: c.String("out"),
		Data: c.String("data"), Workers: c.Int("workers"), Precision: c.String("precision")}
	if c.Bool("quick") {
		o.Nets, o.Batch, o.Repeats = []string{"alexnet-small", "alexnet-small-1gpu"}, 16, 2
	}
	rows, err := bench.Speed(o)
	if err != nil {
		return err
	}
	fmt.Print(bench.SpeedMarkdown(rows))
	fmt.Printf("\nwrote %s/speed.md, speed.json\n", o.Out)
	return nil
}

func benchScaleCmd(c *cli.Context) error {
	if c.NArg() > 0 {
		return fmt.Errorf("unexpected argument %q (flags start with --)", c.Args().First())
	}
	o := bench.ScaleOptions{Net: c.String("net"), GPUs: c.String("gpus"), Batch: c.Int("batch"), Repeats: c.Int("repeats"),
		Threads: c.Int("threads"), BucketBytes: c.Int("bucket-kb") << 10, Out: c.String("out")}
	for _, f := range strings.Split(c.String("replicas"), ",") {
		r, err := strconv.Atoi(strings.TrimSpace(f))
		if err != nil || r < 1 {
			return fmt.Errorf("--replicas %q: give replica counts of at least 1, separated by commas (1,2,4)", c.String("replicas"))
		}
		o.Replicas = append(o.Replicas, r)
	}
	if c.Int("threads") < 1 {
		return fmt.Errorf("--threads %d: give each CPU device at least 1 thread", c.Int("threads"))
	}
	if c.Int("bucket-kb") < 1 {
		return fmt.Errorf("--bucket-kb %d: buckets hold at least 1 KiB", c.Int("bucket-kb"))
	}
	if c.Bool("quick") {
		o.Batch, o.Repeats, o.BucketBytes = 8, 1, 64<<10
	}
	rows, err := bench.Scale(o)
	if err != nil {
		return err
	}
	fmt.Print(bench.ScaleMarkdown(o.Net, rows))
	fmt.Printf("\nwrote %s/scale.md, scale.json\n", o.Out)
	return nil
}

func benchKernelsCmd(c *cli.Context) error {
	o := bench.KernelsOptions{GPUs: c.String("gpus"), Batch: c.Int("batch"), Repeats: c.Int("repeats"), Threads: c.Int("threads"), Out: c.String("out")}
	if c.Bool("quick") {
		o.Batch, o.Repeats = 4, 2
	}
	rep, err := bench.Kernels(o)
	if err != nil {
		return err
	}
	fmt.Print(rep.Markdown())
	fmt.Printf("\nwrote %s/kernels.md, kernels.json\n", o.Out)
	return nil
}

func benchBase(c *cli.Context, name string) (train.Config, []uint64, string, error) {
	base := train.Defaults()
	base.Data, base.Epochs, base.Batch, base.LR, base.Limit = c.String("data"), c.Int("epochs"), c.Int("batch"), c.Float64("lr"), c.Int("limit")
	base.ValLimit = c.Int("val-limit")
	base.CheckpointMinutes = 10
	seeds, err := parseSeeds(c.String("seeds"))
	if err != nil {
		return base, nil, "", err
	}
	if c.Bool("quick") {
		base.Limit, base.ValLimit, base.Epochs, base.Batch = 256, 500, 1, 32
		seeds = []uint64{1, 2}
	}
	out := c.String("out")
	if out == "" {
		out = filepath.Join("bench", "out", name)
	}
	base.Out = "-" // set per run; Validate wants one
	if err := base.Validate(); err != nil {
		return base, nil, "", err
	}
	return base, seeds, out, nil
}

func parseSeeds(s string) ([]uint64, error) {
	var out []uint64
	for _, f := range strings.Split(s, ",") {
		v, err := strconv.ParseUint(strings.TrimSpace(f), 10, 64)
		if err != nil {
			return nil, fmt.Errorf("--seeds %q: %q is not a seed (give numbers separated by commas)", s, f)
		}
		if slices.Contains(out, v) {
			return nil, fmt.Errorf("--seeds %q: seed %d twice (each seed is one run of each arm)", s, v)
		}
		out = append(out, v)
	}
	return out, nil
}

func benchErrorCmd(c *cli.Context) error {
	base, seeds, out, err := benchBase(c, "error")
	if err != nil {
		return err
	}
	nets := strings.Split(c.String("nets"), ",")
	spec := c.String("gpus")
	if !c.IsSet("gpus") {
		two, why := open.AutoGPUs()
		one, _, _ := strings.Cut(two, ",")
		spec = one + ";" + two
		fmt.Fprintln(os.Stderr, "trainer:", why)
	}
	gpus := strings.Split(spec, ";")
	if len(nets) != 2 || len(gpus) != 2 {
		return fmt.Errorf("--nets %q --gpus %q: give two nets (one-tower first) and two placements separated by ;", c.String("nets"), spec)
	}
	rep, err := bench.Compare(c.Context, bench.CompareOptions{
		Title: fmt.Sprintf("One tower against two: %s vs %s", nets[0], nets[1]),
		Arms: []bench.Arm{
			{Name: nets[0], Net: nets[0], GPUs: gpus[0]},
			{Name: nets[1], Net: nets[1], GPUs: gpus[1]},
		},
		Seeds: seeds, Base: base, Out: out,
		Paper: [2]float64{-1.7, -1.2}, PaperSource: "two GPUs vs one, ILSVRC-2012 val, §3.2",
	}, os.Stdout)
	if err != nil {
		return err
	}
	fmt.Print(rep.Markdown())
	fmt.Printf("\nwrote %s/report.md, report.json, errors.png\n", out)
	return nil
}
