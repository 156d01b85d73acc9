package main

import (
	"cmp"
	"encoding/json"
	"fmt"
	"os"
	"slices"
	"strings"

	"github.com/urfave/cli/v2"

	"github.com/alexnet-go/trainer/data"
	"github.com/alexnet-go/trainer/open"
	"github.com/alexnet-go/trainer/parallel"
	"github.com/alexnet-go/trainer/train"
)

// evalCommand is `trainer eval`: trained weights scored on a data
// set's test images, preprocessed as training's validation was.
func evalCommand() *cli.Command {
	return &cli.Command{
		Name:      "eval",
		Usage:     "score trained weights on a data set's test images: loss, top-1 and top-5 error",
		ArgsUsage: " ",
		Description: "The images are preprocessed as training preprocessed its validation images, as the\n" +
			"weights file's metadata records: centred on the net's input canvas, minus the\n" +
			"training set's mean image. The data must have the image size and the number of\n" +
			"classes the weights were trained on. Weights trained on prepared data are scored on\n" +
			"its val split: the centre 227×227 crop, or with --ten-crop the paper's ten patches\n" +
			"(four corners and the centre, each also reflected) with their softmax averaged.",
		Flags: []cli.Flag{
			&cli.StringFlag{Name: "weights", Required: true, Usage: "the `FILE` trainer train wrote (RUN/weights.safetensors)"},
			&cli.StringFlag{Name: "data", Value: train.Defaults().Data, Usage: "a Fashion-MNIST/MNIST IDX or CIFAR-10 `DIR` (its test set is scored) or a folder trainer prepare wrote (its val split)"},
			&cli.BoolFlag{Name: "ten-crop", Usage: "prepared data: average the softmax over the ten patches (§2) instead of the centre crop"},
			&cli.StringFlag{Name: "gpus", Value: "cpu", Usage: "`DEVICES` as for train: cpu for one, cpu,cpu for one per tower"},
			&cli.IntFlag{Name: "batch", Value: 128, Usage: "`N` images per forward pass"},
			&cli.BoolFlag{Name: "json", Usage: "print a JSON object: net, data, weights, images, loss, top1_err, top5_err (errors as fractions)"},
		},
		Action: evalCmd,
	}
}

// predictCommand is `trainer predict`: the most probable classes of image
// files.
func predictCommand() *cli.Command {
	return &cli.Command{
		Name:      "predict",
		Usage:     "print the most probable classes of PNG, JPEG or GIF images",
		ArgsUsage: "IMAGE...",
		Description: "Each image is converted to the channels and size of the images the weights were\n" +
			"trained on (gray by BT.601 luma, transparency over black; area-averaged when\n" +
			"shrinking, bilinear when enlarging, the aspect ratio not kept), then centred on\n" +
			"the net's input and the training set's mean image subtracted, as in training.\n" +
			"Fashion-MNIST's images are light objects on a black background: invert a photo\n" +
			"of a dark object on white before asking. Flags go before the images.",
		Flags: []cli.Flag{
			&cli.StringFlag{Name: "weights", Required: true, Usage: "the `FILE` trainer train wrote (RUN/weights.safetensors)"},
			&cli.IntFlag{Name: "top", Value: 5, Usage: "print the `K` most probable classes of each image"},
			&cli.StringFlag{Name: "gpus", Value: "cpu", Usage: "`DEVICES` as for train: cpu for one, cpu,cpu for one per tower"},
			&cli.BoolFlag{Name: "json", Usage: `print a JSON array: [{"image": FILE, "top": [{"class": NAME, "index": I, "prob": P}, ...]}, ...]`},
		},
		Action: predictCmd,
	}
}

// evalResult is eval's --json output.
type evalResult struct {
	Net     string  `json:"net"`
	Data    string  `json:"data"`
	Split   string  `json:"split"` // "test" or "val": which of the data's splits was scored
	Weights string  `json:"weights"`
	Images  int     `json:"images"`
	Loss    float64 `json:"loss"`
	Top1Err float64 `json:"top1_err"`
	Top5Err float64 `json:"top5_err"`
}

func evalCmd(c *cli.Context) error {
	if c.NArg() > 0 {
		return fmt.Errorf("unexpected argument %q (flags start with --; see trainer eval --help)", c.Args().First())
	}
	batch := c.Int("batch")
	if batch < 1 {
		return fmt.Errorf("--batch %d: a batch needs at least 1 image", batch)
	}
	t, err := open.TrainedWeights(c.String("weights"))
	if err != nil {
		return err
	}
	dir := c.String("data")
	sc, err := open.ScoringData(t, dir, batch, c.Bool("ten-crop"))
	if err != nil {
		return err
	}
	defer sc.Close()
	if sc.Note != "" {
		fmt.Fprintln(os.Stderr, "trainer:", sc.Note)
	}
	p, err := open.Place(t.Net, t.W, c.String("gpus"), open.DeviceOptions{}, sc.Batch)
	if err != nil {
		return err
	}
	defer p.Close()
	s, err := train.EvaluatePatches(c.Context, p.Runner, sc.Images, sc.Patches)
	if err != nil {
		return err
	}
	if c.Bool("json") {
		return printJSON(evalResult{Net: t.Net.Name, Data: dir, Split: sc.Split, Weights: t.Path, Images: s.Images, Loss: s.Loss, Top1Err: s.Top1Err, Top5Err: s.Top5Err})
	}
	fmt.Printf("%s on %s, %s split: %d images, loss %.4f, top-1 error %.2f%%, top-5 error %.2f%%\n",
		t.Net.Name, dir, sc.Split, s.Images, s.Loss, 100*s.Top1Err, 100*s.Top5Err)
	return nil
}

// predictBatch is the most images predict runs through the net at once.
const predictBatch = 64

// prediction is one image's entry in predict's --json output.
type prediction struct {
	Image string       `json:"image"`
	Top   []classScore `json:"top"`
}

type classScore struct {
	Class string  `json:"class"`
	Index int     `json:"index"`
	Prob  float32 `json:"prob"`
}

func predictCmd(c *cli.Context) error {
	paths := c.Args().Slice()
	if len(paths) == 0 {
		return fmt.Errorf("no images: trainer predict --weights FILE [--top K] [--json] IMAGE...")
	}
	top := c.Int("top")
	if top < 1 {
		return fmt.Errorf("--top %d: print at least 1 class", top)
	}
	t, err := open.TrainedWeights(c.String("weights"))
	if err != nil {
		return err
	}
	pre := t.Pre
	top = min(top, len(pre.Classes))
	// Every image is read before the net is built, so a bad file fails fast.
	// Prepared data's images were rescaled and cropped to ImageH×ImageW as
	// trainer prepare does; the others resized to the data set's size.
	set := &data.Set{Name: "predict", N: len(paths), C: pre.C, H: pre.ImageH, W: pre.ImageW,
		Pixels: make([]uint8, len(paths)*pre.C*pre.ImageH*pre.ImageW), Labels: make([]int, len(paths)), Classes: pre.Classes}
	for i, p := range paths {
		img, err := data.DecodeImage(p)
		if err != nil {
			if _, serr := os.Stat(p); strings.HasPrefix(p, "-") && serr != nil {
				return fmt.Errorf("%s: flags go before the images: trainer predict --weights FILE [--top K] [--json] IMAGE...", p)
			}
			return err
		}
		if pre.Prepared {
			pix, err := data.PrepareImage(img, pre.ImageH)
			if err != nil {
				return fmt.Errorf("%s: %w", p, err)
			}
			copy(set.Image(i), pix)
			continue
		}
		copy(set.Image(i), data.FromImage(img, pre.C, pre.ImageH, pre.ImageW))
	}
	n := min(len(paths), predictBatch)
	p, err := open.Place(t.Net, t.W, c.String("gpus"), open.DeviceOptions{}, n)
	if err != nil {
		return err
	}
	defer p.Close()
	per := t.Net.Input.Len()
	images := make([]float32, n*per) // (n, C, Canvas, Canvas)
	var out []prediction
	for lo := 0; lo < set.N; lo += n {
		k := min(n, set.N-lo)
		for j := range k {
			t.Render(images[j*per:(j+1)*per], set, lo+j)
		}
		res, err := p.Eval(parallel.Batch{N: k, Images: images[:k*per]})
		if err != nil {
			return err
		}
		nc := len(pre.Classes)
		for j := range k {
			out = append(out, prediction{Image: paths[lo+j], Top: topClasses(res.Prob[j*nc:(j+1)*nc], pre.Classes, top)})
		}
	}
	if c.Bool("json") {
		return printJSON(out)
	}
	for _, p := range out {
		parts := make([]string, len(p.Top))
		for i, s := range p.Top {
			parts[i] = fmt.Sprintf("%s %.1f%%", s.Class, 100*s.Prob)
		}
		fmt.Printf("%s: %s\n", p.Image, strings.Join(parts, ", "))
	}
	return nil
}

// topClasses returns the k most probable classes, most probable first; ties
// go to the lower index.
func topClasses(prob []float32, names []string, k int) []classScore {
	idx := make([]int, len(prob))
	for i := range idx {
		idx[i] = i
	}
	slices.SortStableFunc(idx, func(a, b int) int { return cmp.Compare(prob[b], prob[a]) })
	out := make([]classScore, k)
	for i, c := range idx[:k] {
		out[i] = classScore{Class: names[c], Index: c, Prob: prob[c]}
	}
	return out
}

func printJSON(v any) error {
	b, err := json.MarshalIndent(v, "", "  ")
	if err != nil {
		return fmt.Errorf("--json: %v (are the weights finite?)", err)
	}
	_, err = fmt.Printf("%s\n", b)
	return err
}
