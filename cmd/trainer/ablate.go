package main

import (
	"fmt"
	"os"
	"strings"

	"github.com/urfave/cli/v2"

	"github.com/alexnet-go/trainer/bench"
	"github.com/alexnet-go/trainer/open"
	"github.com/alexnet-go/trainer/train"
)

// benchAblateCommand is `trainer bench ablate`: the paper's ablations,
// each a bench.Compare of the variant against the paper's choice.
func benchAblateCommand() *cli.Command {
	d := train.Defaults()
	keys := bench.AblationKeys()
	return &cli.Command{
		Name: "ablate",
		Usage: "the paper's ablations on the same data, schedule and seeds: ReLU vs tanh (Figure 1: 25% training error 6× sooner), " +
			"LRN vs none (−1.4% top-1, −1.2% top-5), overlapping 3/2 vs 2/2 pooling (−0.4%, −0.3%)",
		Flags: []cli.Flag{
			&cli.StringFlag{Name: "only", Value: strings.Join(keys, ","), Usage: "the ablations to run, separated by commas: " + strings.Join(keys, ", ")},
			&cli.StringFlag{Name: "net", Value: "alexnet-small", Usage: "the net every arm trains"},
			&cli.StringFlag{Name: "gpus", Usage: "its placement, as for train (default: 0,1 with two GPUs, 0,0 with one, else cpu,cpu)"},
			&cli.StringFlag{Name: "data", Value: d.Data, Usage: "the data set, as for train"},
			&cli.IntFlag{Name: "epochs", Value: 10, Usage: "epochs per run"},
			&cli.IntFlag{Name: "batch", Value: 64, Usage: "images per step"},
			&cli.Float64Flag{Name: "lr", Value: d.LR, Usage: "the initial learning rate, the same for every arm (tanh's included)"},
			&cli.IntFlag{Name: "limit", Value: 8192, Usage: "use only the first N training images (0: all)"},
			&cli.IntFlag{Name: "val-limit", Usage: "validate on only the first N test images (0: all)"},
			&cli.StringFlag{Name: "seeds", Value: "1,2,3", Usage: "the seeds every arm is trained with"},
			&cli.StringFlag{Name: "out", Usage: "the reports' `DIR` (default bench/out/ablate): one sub-directory per ablation, ablate.md beside them; runs are reused or resumed"},
			&cli.BoolFlag{Name: "quick", Usage: "a smoke test: 256 training and 500 test images, 1 epoch, seeds 1,2"},
		},
		Action: benchAblateCmd,
	}
}

func benchAblateCmd(c *cli.Context) error {
	if c.NArg() > 0 {
		return fmt.Errorf("unexpected argument %q (flags start with --)", c.Args().First())
	}
	base, seeds, out, err := benchBase(c, "ablate")
	if err != nil {
		return err
	}
	base.Net, base.GPUs = c.String("net"), c.String("gpus")
	if !c.IsSet("gpus") {
		var why string
		base.GPUs, why = open.AutoGPUsFor(base.Net)
		fmt.Fprintln(os.Stderr, "trainer:", why)
	}
	if err := base.Validate(); err != nil {
		return err
	}
	_, err = bench.Ablate(c.Context, bench.AblateOptions{Only: strings.Split(c.String("only"), ","), Base: base, Seeds: seeds, Out: out}, os.Stdout)
	return err
}
