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
	"github.com/alexnet-go/trainer/model"
	"github.com/alexnet-go/trainer/parallel"
	"github.com/alexnet-go/trainer/train"
)

// evalCommand is `trainer eval`: trained weights scored on an IDX data
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
			&cli.StringFlag{Name: "data", Value: train.Defaults().Data, Usage: "a Fashion-MNIST/MNIST IDX `DIR` (its test set is scored) or a folder trainer prepare wrote (its val split)"},
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

// trained is a net, its weights and the preprocessing its training applied.
type trained struct {
	path string
	net  *model.Net
	w    model.Weights
	pre  model.Preprocess
}

// loadTrained reads weights written by trainer train and builds their net.
// Every error names --weights and the file.
func loadTrained(path string) (*trained, error) {
	w, meta, err := model.ReadSafetensors(path)
	if err != nil {
		return nil, fmt.Errorf("--weights: %w", err)
	}
	pre, err := model.PreprocessFrom(meta)
	if err != nil {
		return nil, fmt.Errorf("--weights %s: %w", path, err)
	}
	if (pre.C != 1 && pre.C != 3) || pre.ImageH < 1 || pre.ImageW < 1 {
		return nil, fmt.Errorf("--weights %s: metadata image=%q: want 1 or 3 channels of at least 1×1", path, meta["image"])
	}
	net, err := model.Build(pre.Net, model.Options{Channels: pre.C, Classes: len(pre.Classes), LRN: pre.LRN, Activation: pre.Activation, Pool: pre.Pool})
	if err != nil {
		return nil, fmt.Errorf("--weights %s: %w", path, err)
	}
	if in := net.Input; in.C != pre.C || in.H != pre.Canvas || in.W != pre.Canvas {
		return nil, fmt.Errorf("--weights %s: net %s takes %v inputs, but the metadata says %d channels on a %d×%d canvas", path, net.Name, in, pre.C, pre.Canvas, pre.Canvas)
	}
	if err := model.Weights(w).Check(net); err != nil {
		return nil, fmt.Errorf("--weights %s: %w", path, err)
	}
	return &trained{path: path, net: net, w: w, pre: pre}, nil
}

// augment is training's validation placement: the image centred on the
// canvas (train.run's data.Augment{Size, Pad: 2}, without Crop or Flip).
func (t *trained) augment() data.Augment { return data.Augment{Size: t.pre.Canvas, Pad: 2} }

// runner places the net on the --gpus devices for batches of up to n images.
func (t *trained) runner(gpus string, n int) (*parallel.Runner, error) {
	devs, err := train.OpenDevices(gpus, 0)
	if err != nil {
		return nil, err
	}
	return parallel.New(t.net, devs, t.w, parallel.Options{Batch: n})
}

// evalResult is eval's --json output.
type evalResult struct {
	Net     string  `json:"net"`
	Data    string  `json:"data"`
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
	t, err := loadTrained(c.String("weights"))
	if err != nil {
		return err
	}
	dir := c.String("data")
	if t.pre.Prepared {
		return evalPrepared(c, t, dir, batch)
	}
	if c.Bool("ten-crop") {
		return fmt.Errorf("--ten-crop: the weights %s were trained on a small in-memory set, whose images have no 256×256 source to cut ten patches from", t.path)
	}
	_, test, err := data.LoadIDX(dir)
	if err != nil {
		return err
	}
	pre := t.pre
	if test.C != pre.C || test.H != pre.ImageH || test.W != pre.ImageW {
		return fmt.Errorf("--data %s: images of %d×%d×%d (C×H×W), but --weights %s were trained on %d×%d×%d",
			dir, test.C, test.H, test.W, t.path, pre.C, pre.ImageH, pre.ImageW)
	}
	if len(test.Classes) != len(pre.Classes) {
		return fmt.Errorf("--data %s: %d classes (%s), but --weights %s were trained on %d (%s)",
			dir, len(test.Classes), classList(test.Classes), t.path, len(pre.Classes), classList(pre.Classes))
	}
	if !slices.Equal(test.Classes, pre.Classes) {
		// Labels are indices, so this scores; but it may be the wrong data.
		fmt.Fprintf(os.Stderr, "trainer: note: --data %s names its classes %s, the weights %s; scoring by label\n",
			dir, classList(test.Classes), classList(pre.Classes))
	}
	batch = min(batch, test.N)
	loader, err := data.NewLoader(test, data.LoaderOptions{Batch: batch, Augment: t.augment(), Mean: pre.Mean})
	if err != nil {
		return err
	}
	r, err := t.runner(c.String("gpus"), batch)
	if err != nil {
		return err
	}
	defer r.Close()
	s, err := train.Evaluate(c.Context, r, loader)
	if err != nil {
		return err
	}
	return printScore(c, t, dir, s)
}

// evalPrepared scores weights trained on prepared data on its val split.
func evalPrepared(c *cli.Context, t *trained, dir string, batch int) error {
	p, err := data.OpenPrepared(dir)
	if err != nil {
		return fmt.Errorf("--data: the weights %s were trained on prepared data; give a folder trainer prepare wrote: %w", t.path, err)
	}
	defer p.Close()
	pre := t.pre
	if p.C != pre.C || p.Size != pre.ImageH || len(p.Classes) != len(pre.Classes) {
		return fmt.Errorf("--data %s: %d×%d×%d images of %d classes, but --weights %s were trained on %d×%d×%d of %d",
			dir, p.C, p.Size, p.Size, len(p.Classes), t.path, pre.C, pre.ImageH, pre.ImageW, len(pre.Classes))
	}
	if p.Val == nil || p.Val.N() == 0 {
		return fmt.Errorf("--data %s: no validation images to score", dir)
	}
	k := 1
	if c.Bool("ten-crop") {
		k = 10
	}
	batch = min(batch, p.Val.N())
	loader, err := data.NewCropLoader(p.Val, data.CropLoaderOptions{Batch: batch, Augment: data.CropAugment{Crop: pre.Canvas}, Mean: pre.Mean, TenCrop: k == 10})
	if err != nil {
		return err
	}
	r, err := t.runner(c.String("gpus"), batch*k)
	if err != nil {
		return err
	}
	defer r.Close()
	s, err := train.EvaluatePatches(c.Context, r, loader, k)
	if err != nil {
		return err
	}
	return printScore(c, t, dir, s)
}

func printScore(c *cli.Context, t *trained, dir string, s train.Score) error {
	if c.Bool("json") {
		return printJSON(evalResult{Net: t.net.Name, Data: dir, Weights: t.path, Images: s.Images, Loss: s.Loss, Top1Err: s.Top1Err, Top5Err: s.Top5Err})
	}
	fmt.Printf("%s on %s: %d images, loss %.4f, top-1 error %.2f%%, top-5 error %.2f%%\n",
		t.net.Name, dir, s.Images, s.Loss, 100*s.Top1Err, 100*s.Top5Err)
	return nil
}

// classList abbreviates a list of class names for a message.
func classList(names []string) string {
	if len(names) <= 3 {
		return strings.Join(names, ", ")
	}
	return strings.Join(names[:2], ", ") + ", …, " + names[len(names)-1]
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
	t, err := loadTrained(c.String("weights"))
	if err != nil {
		return err
	}
	pre := t.pre
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
	r, err := t.runner(c.String("gpus"), n)
	if err != nil {
		return err
	}
	defer r.Close()
	a := t.augment()
	place := a.Centre(set.H, set.W)
	per := t.net.Input.Len()
	images := make([]float32, n*per) // (n, C, Canvas, Canvas)
	var out []prediction
	for lo := 0; lo < set.N; lo += n {
		k := min(n, set.N-lo)
		for j := range k {
			if pre.Prepared { // the centre crop, as validation took it
				crop := data.CropAugment{Crop: pre.Canvas}
				data.RenderCrop(images[j*per:(j+1)*per], set.Image(lo+j), pre.ImageH, pre.Canvas, crop.Centre(pre.ImageH), pre.Mean)
				continue
			}
			a.Render(images[j*per:(j+1)*per], set, lo+j, place, pre.Mean)
		}
		res, err := r.Eval(parallel.Batch{N: k, Images: images[:k*per]})
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
