// Package train is the training loop: it loads the data, builds the net,
// places it on the devices, runs the epochs with the paper's schedule and
// writes the run directory (config.json, metrics.jsonl, weights.safetensors).
package train

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/alexnet-go/trainer/data"
	"github.com/alexnet-go/trainer/gpu/cpu"
	"github.com/alexnet-go/trainer/model"
	"github.com/alexnet-go/trainer/parallel"
)

// Config is everything a run needs; config.json holds it so the run can be
// repeated.
type Config struct {
	Net         string  `json:"net"`
	LRN         string  `json:"lrn"`
	GPUs        string  `json:"gpus"`
	Threads     int     `json:"threads"`
	Data        string  `json:"data"`
	Epochs      int     `json:"epochs"`
	Batch       int     `json:"batch"`
	LR          float64 `json:"lr"`
	Momentum    float64 `json:"momentum"`
	WeightDecay float64 `json:"weight_decay"`
	Seed        uint64  `json:"seed"`
	Limit       int     `json:"limit"`
	Patience    int     `json:"patience"` // epochs without a better validation error before the rate is divided by 10
	Out         string  `json:"out"`
	Workers     int     `json:"workers"` // loader goroutines; 0: one per core
}

// Defaults returns the paper's recipe (§5) on the embedded default data.
func Defaults() Config {
	return Config{Net: "alexnet-small", LRN: "paper", GPUs: DefaultGPUs, Data: "/usr/share/datasets/fashion-mnist",
		Epochs: 10, Batch: 128, LR: 0.01, Momentum: 0.9, WeightDecay: 0.0005, Seed: 1, Patience: 1}
}

// Validate reports the first setting no run can use, naming its flag.
func (c Config) Validate() error {
	switch {
	case model.InputSize(c.Net) == 0:
		return fmt.Errorf("--net %q: unknown net (known: %s)", c.Net, strings.Join(model.Names(), ", "))
	case c.LRN != "paper" && c.LRN != "caffe":
		return fmt.Errorf("--lrn %q: use paper (α on the sum) or caffe (α/n)", c.LRN)
	case c.Batch < 1:
		return fmt.Errorf("--batch %d: a batch needs at least 1 image", c.Batch)
	case c.Epochs < 1:
		return fmt.Errorf("--epochs %d: train for at least 1 epoch", c.Epochs)
	case !(c.LR > 0) || math.IsInf(c.LR, 0):
		return fmt.Errorf("--lr %g: the learning rate must be positive", c.LR)
	case c.Momentum < 0 || c.Momentum >= 1:
		return fmt.Errorf("--momentum %g: must be in [0, 1)", c.Momentum)
	case c.WeightDecay < 0:
		return fmt.Errorf("--weight-decay %g: must be 0 or more", c.WeightDecay)
	case c.Limit < 0:
		return fmt.Errorf("--limit %d: must be 0 (all images) or more", c.Limit)
	case c.Patience < 1:
		return fmt.Errorf("--patience %d: must be at least 1 epoch", c.Patience)
	case c.Out == "":
		return errors.New("--out: give a directory for the run")
	}
	return nil
}

// Metrics is one line of metrics.jsonl: one epoch.
type Metrics struct {
	Epoch         int     `json:"epoch"`
	LR            float64 `json:"lr"`
	TrainLoss     float64 `json:"train_loss"`
	TrainTop1Err  float64 `json:"train_top1_err"`
	ValLoss       float64 `json:"val_loss"`
	ValTop1Err    float64 `json:"val_top1_err"`
	ValTop5Err    float64 `json:"val_top5_err"`
	ImagesPerS    float64 `json:"images_per_s"`
	Seconds       float64 `json:"seconds"`
	TransferBytes int64   `json:"transfer_bytes"`
	LoaderPerS    float64 `json:"loader_images_per_s"`
}

// Run trains as c says, logging progress to log, and returns each epoch's
// metrics. It stops early, keeping what it wrote, when ctx is cancelled.
func Run(ctx context.Context, c Config, log io.Writer) ([]Metrics, error) {
	if err := c.Validate(); err != nil {
		return nil, err
	}
	if err := makeRunDir(c.Out); err != nil {
		return nil, err
	}
	devs, err := OpenDevices(c.GPUs, c.Threads)
	if err != nil {
		return nil, err
	}
	trainSet, valSet, err := data.LoadIDX(c.Data)
	if err != nil {
		return nil, err
	}
	if c.Limit > 0 {
		trainSet = data.Limit(trainSet, c.Limit)
	}
	net, err := model.Build(c.Net, model.Options{Channels: trainSet.C, Classes: len(trainSet.Classes), LRN: c.LRN})
	if err != nil {
		return nil, err
	}
	size := net.Input.H
	if trainSet.H > size || trainSet.W > size {
		return nil, fmt.Errorf("--net %s takes %d×%d images; %s holds %d×%d", c.Net, size, size, c.Data, trainSet.H, trainSet.W)
	}
	if size > 2*max(trainSet.H, trainSet.W) {
		return nil, fmt.Errorf("--net %s takes %d×%d images; %s holds %d×%d images, too small to upscale that far: use alexnet-small or a prepared ImageNet folder", c.Net, size, size, c.Data, trainSet.H, trainSet.W)
	}
	// Random crops with padding and flips, the paper's augmentation that
	// fits 28×28 images: translations by up to ±2 pixels on a 32×32 canvas.
	aug := data.Augment{Size: size, Pad: 2, Crop: true, Flip: true}
	mean := data.MeanImage(trainSet, size)
	trainLoader, err := data.NewLoader(trainSet, data.LoaderOptions{Batch: c.Batch, Seed: c.Seed, Shuffle: true, Augment: aug, Mean: mean, Workers: c.Workers, DropLast: true})
	if err != nil {
		return nil, err
	}
	if trainLoader.Batches() == 0 {
		return nil, fmt.Errorf("--batch %d: larger than the %d training images", c.Batch, trainSet.N)
	}
	valLoader, err := data.NewLoader(valSet, data.LoaderOptions{Batch: c.Batch, Seed: c.Seed, Augment: data.Augment{Size: size, Pad: 2}, Mean: mean, Workers: c.Workers})
	if err != nil {
		return nil, err
	}

	w := model.Init(net, c.Seed)
	r, err := parallel.New(net, devs, w, parallel.Options{Batch: c.Batch, Seed: c.Seed, Momentum: float32(c.Momentum), WeightDecay: float32(c.WeightDecay)})
	if err != nil {
		return nil, err
	}
	defer r.Close()

	if err := writeJSON(filepath.Join(c.Out, "config.json"), c); err != nil {
		return nil, err
	}
	mf, err := os.OpenFile(filepath.Join(c.Out, "metrics.jsonl"), os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return nil, fmt.Errorf("--out %s: %v", c.Out, err)
	}
	defer mf.Close()

	names := make([]string, len(devs))
	for i, d := range devs {
		names[i] = d.Name()
	}
	fmt.Fprintf(log, "%s (%s params) on %s, BLAS: %s\n", net.Name, commas(net.Params()), strings.Join(names, ","), cpu.BLAS())
	fmt.Fprintf(log, "data %s: %d training, %d validation images of %d×%d×%d, %d classes; run in %s\n",
		c.Data, trainSet.N, valSet.N, trainSet.C, trainSet.H, trainSet.W, len(trainSet.Classes), c.Out)

	var all []Metrics
	lr, best, stale := c.LR, math.Inf(1), 0
	for epoch := 1; epoch <= c.Epochs; epoch++ {
		m, err := runEpoch(ctx, r, trainLoader, valLoader, epoch, lr, c, log)
		if err != nil {
			return all, err
		}
		all = append(all, m)
		if err := json.NewEncoder(mf).Encode(m); err != nil {
			return all, fmt.Errorf("--out %s: %v", c.Out, err)
		}
		fmt.Fprintf(log, "epoch %d/%d lr %g: train loss %.4f err %.2f%%, val loss %.4f top-1 %.2f%% top-5 %.2f%%, %.0f img/s, %.1f s, %s moved\n",
			epoch, c.Epochs, lr, m.TrainLoss, 100*m.TrainTop1Err, m.ValLoss, 100*m.ValTop1Err, 100*m.ValTop5Err, m.ImagesPerS, m.Seconds, bytesString(m.TransferBytes))
		wts, err := r.Weights()
		if err != nil {
			return all, err
		}
		if err := model.WriteSafetensors(filepath.Join(c.Out, "weights.safetensors"), wts, map[string]string{
			"net": net.Name, "lrn": net.LRN, "classes": strings.Join(trainSet.Classes, "\n"), "epoch": fmt.Sprint(epoch)}); err != nil {
			return all, err
		}
		// Divide the rate by 10 when the validation error stops improving (§5).
		if m.ValTop1Err < best {
			best, stale = m.ValTop1Err, 0
		} else if stale++; stale >= c.Patience {
			lr /= 10
			stale = 0
			fmt.Fprintf(log, "validation error did not improve for %d epoch(s): learning rate now %g\n", c.Patience, lr)
		}
	}
	return all, nil
}

func runEpoch(ctx context.Context, r *parallel.Runner, tl, vl *data.Loader, epoch int, lr float64, c Config, log io.Writer) (Metrics, error) {
	m := Metrics{Epoch: epoch, LR: lr}
	start := time.Now()
	r.MovedBytes()
	var seen, wrong int
	var loss float64
	steps, every := tl.Batches(), max(1, tl.Batches()/10)
	step := 0
	for b, err := range tl.Epoch(ctx, epoch) {
		if err != nil {
			return m, err
		}
		res, err := r.Train(parallel.Batch{N: b.N, Images: b.Images, Labels: b.Labels}, float32(lr))
		tl.Recycle(b)
		if err != nil {
			return m, err
		}
		if math.IsNaN(res.Loss) || math.IsInf(res.Loss, 0) {
			return m, fmt.Errorf("epoch %d step %d: the loss is %v: training diverged; lower --lr", epoch, step+1, res.Loss)
		}
		loss += res.Loss * float64(res.N)
		wrong += res.Top1
		seen += res.N
		step++
		if step%every == 0 || step == steps {
			el := time.Since(start).Seconds()
			fmt.Fprintf(log, "epoch %d step %d/%d: loss %.4f err %.2f%% %.0f img/s\n", epoch, step, steps, loss/float64(seen), 100*float64(wrong)/float64(seen), float64(seen)/el)
		}
	}
	if err := ctx.Err(); err != nil {
		return m, err
	}
	m.Seconds = time.Since(start).Seconds()
	m.TrainLoss = loss / float64(seen)
	m.TrainTop1Err = float64(wrong) / float64(seen)
	m.ImagesPerS = float64(seen) / m.Seconds
	m.TransferBytes = r.MovedBytes()
	m.LoaderPerS = tl.Stats().Rate()
	v, err := Evaluate(ctx, r, vl)
	if err != nil {
		return m, err
	}
	m.ValLoss, m.ValTop1Err, m.ValTop5Err = v.Loss, v.Top1Err, v.Top5Err
	return m, nil
}

// Score is a net's performance on a data set.
type Score struct {
	Images           int
	Loss             float64
	Top1Err, Top5Err float64
}

// Evaluate runs the net over every image of l, without dropout.
func Evaluate(ctx context.Context, r *parallel.Runner, l *data.Loader) (Score, error) {
	var s Score
	var t1, t5 int
	for b, err := range l.Epoch(ctx, 0) {
		if err != nil {
			return s, err
		}
		res, err := r.Eval(parallel.Batch{N: b.N, Images: b.Images, Labels: b.Labels})
		l.Recycle(b)
		if err != nil {
			return s, err
		}
		s.Loss += res.Loss * float64(res.N)
		t1 += res.Top1
		t5 += res.Top5
		s.Images += res.N
	}
	if s.Images == 0 {
		return s, ctx.Err()
	}
	n := float64(s.Images)
	s.Loss, s.Top1Err, s.Top5Err = s.Loss/n, float64(t1)/n, float64(t5)/n
	return s, ctx.Err()
}

// makeRunDir creates dir for a new run, refusing one that already holds a
// run: nothing a user has is overwritten.
func makeRunDir(dir string) error {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return fmt.Errorf("--out %s: cannot create the run directory: %v", dir, errors.Unwrap(err))
	}
	for _, f := range []string{"config.json", "metrics.jsonl", "weights.safetensors"} {
		if _, err := os.Stat(filepath.Join(dir, f)); err == nil {
			return fmt.Errorf("--out %s: holds a run already (%s); choose another directory", dir, f)
		}
	}
	probe, err := os.CreateTemp(dir, ".write-test*")
	if err != nil {
		return fmt.Errorf("--out %s: not writable: %v", dir, errors.Unwrap(err))
	}
	probe.Close()
	return os.Remove(probe.Name())
}

func writeJSON(path string, v any) error {
	b, err := json.MarshalIndent(v, "", "  ")
	if err != nil {
		return err
	}
	if err := os.WriteFile(path, append(b, '\n'), 0o644); err != nil {
		return fmt.Errorf("--out: %v", err)
	}
	return nil
}

func commas(v int) string {
	s := fmt.Sprint(v)
	for i := len(s) - 3; i > 0; i -= 3 {
		s = s[:i] + "," + s[i:]
	}
	return s
}

func bytesString(b int64) string {
	switch {
	case b >= 1<<30:
		return fmt.Sprintf("%.2f GiB", float64(b)/(1<<30))
	case b >= 1<<20:
		return fmt.Sprintf("%.1f MiB", float64(b)/(1<<20))
	}
	return fmt.Sprintf("%d B", b)
}
