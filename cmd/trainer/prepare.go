package main

import (
	"fmt"
	"os"
	"path/filepath"

	"github.com/urfave/cli/v2"

	"github.com/alexnet-go/trainer/data"
)

// prepareCommand is `trainer prepare`: an image folder to shards, once per
// data set.
func prepareCommand() *cli.Command {
	return &cli.Command{
		Name:  "prepare",
		Usage: "convert an ImageNet-style image folder into shards of 256×256 images with their mean and PCA (resumable)",
		Description: `The source folder holds SRC/train/<class>/*.{jpg,jpeg,png}, one folder per class
(the class names are the sorted folder names), and optionally SRC/val: class folders
as train, or flat image files with a labels file, SRC/val/labels.txt or SRC/val.txt,
one line "FILENAME LABEL" per image (LABEL a class folder name or a 0-based index).

Each image is rescaled so its shorter side is --size and its central --size×--size
crop kept; gray images become RGB. Files that cannot be decoded are skipped and
listed in OUT/report.txt. The training set's mean image (OUT/mean.f32) and the
eigenvectors of its RGB covariance (for PCA colour augmentation) are computed on the
way. OUT/meta.json, written last, marks the output complete.

Interrupted (Ctrl-C), the shards written so far are kept: rerun the same command to
resume. The source is only read.`,
		Flags: []cli.Flag{
			&cli.StringFlag{Name: "src", Required: true, Usage: "the source image folder, `DIR`/train/<class>/*.jpg"},
			&cli.StringFlag{Name: "out", Required: true, Usage: "the output `DIR`: new or empty, or an earlier prepare's to resume it; not inside --src"},
			&cli.IntFlag{Name: "workers", Usage: "images decoded in parallel (0: one per core)"},
			&cli.IntFlag{Name: "size", Value: 256, Usage: "side of the stored images, in pixels"},
		},
		Action: prepareCmd,
	}
}

func prepareCmd(c *cli.Context) error {
	if c.NArg() > 0 {
		return fmt.Errorf("unexpected argument %q (flags start with --; see trainer prepare --help)", c.Args().First())
	}
	if c.Int("size") < 1 || c.Int("workers") < 0 {
		return fmt.Errorf("--size %d, --workers %d: want a positive size and workers ≥ 0", c.Int("size"), c.Int("workers"))
	}
	// The first SIGINT or SIGTERM stops after the images being decoded and
	// keeps the complete shards; a second exits at once (the unfinished
	// shards are only temporary files, removed by the next run).
	ctx, stop, _ := interruptible("stopping; the complete shards are kept",
		func() string { return "exiting; the unfinished shards are temporary files the next run removes" })
	defer stop()

	sum, err := data.Prepare(ctx, data.PrepareOptions{
		Src: c.String("src"), Out: c.String("out"), Size: c.Int("size"), Workers: c.Int("workers"), Progress: os.Stdout,
	})
	if err != nil {
		// Interrupted, the error says how many shards are kept and to rerun.
		return err
	}
	fmt.Printf("prepared %s: %d training and %d validation images in %d shards (%d kept from an earlier run)\n",
		sum.Out, sum.Train, sum.Val, sum.Shards, sum.Reused)
	if n := len(sum.Skipped); n > 0 {
		fmt.Printf("skipped %d files that could not be decoded: see %s\n", n, filepath.Join(sum.Out, "report.txt"))
	} else {
		fmt.Println("skipped 0 files")
	}
	return nil
}
