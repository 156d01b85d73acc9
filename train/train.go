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
	"iter"
	"math"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/alexnet-go/trainer/data"
	"github.com/alexnet-go/trainer/gpu/cpu"
	"github.com/alexnet-go/trainer/gpu/cuda"
	"github.com/alexnet-go/trainer/model"
	"github.com/alexnet-go/trainer/parallel"
)

// Config is everything a run needs; config.json holds it so the run can be
// repeated.
type Config struct {
	Net        string `json:"net"`
	LRN        string `json:"lrn"`
	Activation string `json:"activation"` // "relu" or "tanh" (Figure 1's comparison)
	Pool       string `json:"pool"`       // max pooling window/stride: "3/2" (overlapping, §3.4) or "2/2"
	GPUs       string `json:"gpus"`
	Threads    int    `json:"threads"`
	// TF32 lets the GPU use TF32 tensor cores; Deterministic restricts
	// cuDNN to algorithms that give the same bits on every run.
	TF32          bool    `json:"tf32,omitempty"`
	Deterministic bool    `json:"deterministic,omitempty"`
	Data          string  `json:"data"`
	Epochs        int     `json:"epochs"`
	Batch         int     `json:"batch"`
	LR            float64 `json:"lr"`
	Momentum      float64 `json:"momentum"`
	WeightDecay   float64 `json:"weight_decay"`
	Seed          uint64  `json:"seed"`
	Limit         int     `json:"limit"`
	ValLimit      int     `json:"val_limit"` // validate on the first N test images only (0: all)
	Patience      int     `json:"patience"`  // epochs without a better validation error before the rate is divided by 10
	Out           string  `json:"out"`
	// A checkpoint is saved every CheckpointSteps steps (0: never), every
	// CheckpointMinutes minutes (0: never), at each epoch's end and when the
	// run is interrupted.
	CheckpointSteps   int     `json:"checkpoint_steps"`
	CheckpointMinutes float64 `json:"checkpoint_minutes"`
	Workers           int     `json:"workers"` // loader goroutines; 0: one per core
}

// Defaults returns the paper's recipe (§5) on the embedded default data.
func Defaults() Config {
	return Config{Net: "alexnet-small", LRN: "paper", Activation: "relu", Pool: "3/2", GPUs: DefaultGPUs, Data: "/usr/share/datasets/fashion-mnist",
		Epochs: 10, Batch: 128, LR: 0.01, Momentum: 0.9, WeightDecay: 0.0005, Seed: 1, Patience: 1, CheckpointMinutes: 10}
}

// Validate reports the first setting no run can use, naming its flag.
func (c Config) Validate() error {
	switch {
	case model.InputSize(c.Net) == 0:
		return fmt.Errorf("--net %q: unknown net (known: %s)", c.Net, strings.Join(model.Names(), ", "))
	case c.LRN != "paper" && c.LRN != "caffe" && c.LRN != "none":
		return fmt.Errorf("--lrn %q: use paper (α on the sum), caffe (α/n) or none (no LRN layers)", c.LRN)
	case c.Activation != "relu" && c.Activation != "tanh":
		return fmt.Errorf("--activation %q: use relu or tanh", c.Activation)
	case c.Pool != "3/2" && c.Pool != "2/2":
		return fmt.Errorf("--pool %q: use 3/2 (overlapping, the paper's) or 2/2 (window/stride)", c.Pool)
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
	case c.ValLimit < 0:
		return fmt.Errorf("--val-limit %d: must be 0 (all images) or more", c.ValLimit)
	case c.Patience < 1:
		return fmt.Errorf("--patience %d: must be at least 1 epoch", c.Patience)
	case c.CheckpointSteps < 0 || c.CheckpointMinutes < 0:
		return fmt.Errorf("--checkpoint-steps %d, --checkpoint-minutes %g: must be 0 (never) or more", c.CheckpointSteps, c.CheckpointMinutes)
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

// ErrInterrupted is returned when the context is cancelled (SIGINT or
// SIGTERM): the run saved a checkpoint and can be resumed.
var ErrInterrupted = errors.New("interrupted")

// Run starts a new run as c says in the directory c.Out, which must not
// hold a run, logging progress to log, and returns each epoch's metrics.
// When ctx is cancelled it finishes the step in progress, saves a
// checkpoint and returns an error wrapping ErrInterrupted.
func Run(ctx context.Context, c Config, log io.Writer) ([]Metrics, error) {
	if err := c.Validate(); err != nil {
		return nil, err
	}
	lk, err := lockRunDir(c.Out, "--out", log)
	if err != nil {
		return nil, err
	}
	defer lk.Close()
	if err := makeRunDir(c.Out); err != nil {
		return nil, err
	}
	return run(ctx, c, false, log)
}

// Resume continues the run in dir from its last checkpoint, with the
// config it was started with; epochs > 0 changes how many epochs it runs
// in all. On the CPU devices the continued run computes exactly what the
// uninterrupted run would have.
func Resume(ctx context.Context, dir string, epochs int, log io.Writer) ([]Metrics, error) {
	b, err := os.ReadFile(filepath.Join(dir, configFile))
	if err != nil {
		return nil, fmt.Errorf("--resume %s: not a run directory: %v", dir, errors.Unwrap(err))
	}
	var c Config
	if err := json.Unmarshal(b, &c); err != nil {
		return nil, fmt.Errorf("--resume %s: %s is corrupt: %v", dir, configFile, err)
	}
	// Runs from before --activation and --pool had the paper's.
	if c.Activation == "" {
		c.Activation = "relu"
	}
	if c.Pool == "" {
		c.Pool = "3/2"
	}
	c.Out = dir
	if epochs > 0 {
		c.Epochs = epochs
	}
	if err := c.Validate(); err != nil {
		return nil, fmt.Errorf("--resume %s: %s: %v", dir, configFile, err)
	}
	lk, err := lockRunDir(dir, "--resume", log)
	if err != nil {
		return nil, err
	}
	defer lk.Close()
	return run(ctx, c, true, log)
}

// trainer is one run in progress.
type trainer struct {
	c      Config
	net    *model.Net
	r      *parallel.Runner
	tl, vl Batcher
	pre    model.Preprocess
	log    io.Writer
	prog   *progress
	st     State
	saved  time.Time // when the last checkpoint was written
	kept   string    // what the last checkpoint on disk holds, for messages
}

func run(ctx context.Context, c Config, resume bool, log io.Writer) ([]Metrics, error) {
	if _, err := ParseGPUs(c.GPUs); err != nil { // a bad --gpus fails before the data loads
		return nil, err
	}
	ds, err := openData(c)
	if err != nil {
		return nil, err
	}
	net := ds.net
	spec := c.GPUs
	if first, _, two := strings.Cut(spec, ","); two && net.Towers == 1 {
		spec = first
		fmt.Fprintf(log, "%s has one tower: it runs on the first device of --gpus %s\n", net.Name, c.GPUs)
	}
	devs, err := OpenDevicesWith(spec, c.Threads, cuda.Options{TF32: c.TF32, Deterministic: c.Deterministic})
	if err != nil {
		return nil, err
	}
	t := &trainer{c: c, net: net, log: log, prog: newProgress(log), pre: ds.pre, tl: ds.train, vl: ds.val}
	if t.tl.Batches() == 0 {
		return nil, fmt.Errorf("--batch %d: larger than the %d training images", c.Batch, ds.trainN)
	}

	w := model.Init(net, c.Seed)
	t.st = State{Epoch: 1, LR: c.LR, Best: math.MaxFloat64} // any error beats it; JSON has no Inf
	var mom model.Weights
	if resume {
		st, cw, cv, ok, err := loadCheckpoint(c.Out, net, func(s string) { fmt.Fprintln(log, s) })
		if err != nil {
			return nil, err
		}
		if ok {
			t.st, w, mom = st, cw, cv
			t.kept = fmt.Sprintf("the last good checkpoint (step %d) is kept in %s", st.Step, c.Out)
		}
		if err := writeMetrics(c.Out, t.st.History); err != nil {
			return nil, err
		}
	}
	t.r, err = parallel.New(net, devs, w, parallel.Options{Batch: c.Batch, Seed: c.Seed, Momentum: float32(c.Momentum), WeightDecay: float32(c.WeightDecay)})
	if err != nil {
		return nil, err
	}
	defer t.r.Close()
	if mom != nil {
		if err := t.r.SetMomentum(mom); err != nil {
			return nil, err
		}
	}
	t.r.SetStep(t.st.Step)
	if !resume {
		if err := writeJSON(filepath.Join(c.Out, configFile), c); err != nil {
			return nil, err
		}
		if err := writeMetrics(c.Out, nil); err != nil {
			return nil, err
		}
	}

	names := make([]string, len(devs))
	for i, d := range devs {
		names[i] = d.Name()
	}
	fmt.Fprintf(log, "%s (%s params) on %s, BLAS: %s\n", net.Name, model.Commas(net.Params()), strings.Join(names, ","), cpu.BLAS())
	fmt.Fprintf(log, "data %s: %s; run in %s\n", c.Data, ds.desc, c.Out)
	if resume {
		fmt.Fprintf(log, "resuming at epoch %d, batch %d of %d (step %d)\n", t.st.Epoch, t.st.Batch, t.tl.Batches(), t.st.Step)
	}
	t.saved = time.Now()
	for t.st.Epoch <= c.Epochs {
		if err := t.epoch(ctx); err != nil {
			if ctx.Err() != nil {
				if err := saveCheckpoint(c.Out, net, t.r, t.st); err != nil {
					return t.st.History, err
				}
				return t.st.History, fmt.Errorf("%w at epoch %d, batch %d: checkpoint saved; continue with: trainer train --resume %s", ErrInterrupted, t.st.Epoch, t.st.Batch, c.Out)
			}
			return t.st.History, err
		}
	}
	return t.st.History, nil
}

// epoch trains the rest of the epoch in progress, evaluates it, records its
// metrics and steps the schedule.
func (t *trainer) epoch(ctx context.Context) error {
	st, c := &t.st, t.c
	steps := t.tl.Batches()
	t.prog.start(st.Epoch, c.Epochs, steps, st.Batch)
	t.r.MovedBytes()
	began := time.Now() // each step's time includes waiting for its batch
	for b, err := range t.tl.EpochFrom(ctx, st.Epoch, st.Batch) {
		if err != nil {
			return err
		}
		res, err := t.r.Train(parallel.Batch{N: b.N, Images: b.Images, Labels: b.Labels}, float32(st.LR))
		t.tl.Recycle(b)
		if err != nil {
			return err
		}
		if math.IsNaN(res.Loss) || math.IsInf(res.Loss, 0) {
			return t.diverged(res.Loss, b.N)
		}
		st.Step = t.r.Step()
		st.Batch++
		st.Loss += res.Loss * float64(res.N)
		st.Wrong += res.Top1
		st.Seen += res.N
		dt := time.Since(began).Seconds()
		began = time.Now()
		st.Seconds += dt
		st.Moved += t.r.MovedBytes()
		t.prog.step(st.Batch, st.Loss/float64(st.Seen), float64(st.Wrong)/float64(st.Seen), float64(res.N)/dt)
		if t.due() {
			if err := t.checkpoint(); err != nil {
				return err
			}
		}
		if ctx.Err() != nil {
			return ctx.Err()
		}
	}
	if err := ctx.Err(); err != nil {
		return err
	}
	t.prog.done()
	v, err := Evaluate(ctx, t.r, t.vl)
	if err != nil {
		return err
	}
	m := Metrics{Epoch: st.Epoch, LR: st.LR, TrainLoss: st.Loss / float64(st.Seen), TrainTop1Err: float64(st.Wrong) / float64(st.Seen),
		ValLoss: v.Loss, ValTop1Err: v.Top1Err, ValTop5Err: v.Top5Err, Seconds: st.Seconds, TransferBytes: st.Moved,
		ImagesPerS: float64(st.Seen) / st.Seconds, LoaderPerS: t.tl.Stats().Rate()}
	fmt.Fprintf(t.log, "epoch %d/%d lr %g: train loss %.4f err %.2f%%, val loss %.4f top-1 %.2f%% top-5 %.2f%%, %.0f img/s, %.1f s, %s moved\n",
		m.Epoch, c.Epochs, m.LR, m.TrainLoss, 100*m.TrainTop1Err, m.ValLoss, 100*m.ValTop1Err, 100*m.ValTop5Err, m.ImagesPerS, m.Seconds, model.Bytes(m.TransferBytes))

	// The next epoch's state, with the rate divided by 10 when the
	// validation error stopped improving (§5).
	next := State{Epoch: st.Epoch + 1, Step: st.Step, LR: st.LR, Best: st.Best, Stale: st.Stale, History: append(st.History, m)}
	if m.ValTop1Err < next.Best {
		next.Best, next.Stale = m.ValTop1Err, 0
	} else if next.Stale++; next.Stale >= c.Patience {
		next.LR /= 10
		next.Stale = 0
		fmt.Fprintf(t.log, "validation error did not improve for %d epoch(s): learning rate now %g\n", c.Patience, next.LR)
	}
	*st = next
	// The checkpoint first: metrics.jsonl and the weights are rewritten
	// from it, so a crash between the writes loses nothing.
	if err := t.checkpoint(); err != nil {
		return err
	}
	if err := writeMetrics(c.Out, st.History); err != nil {
		return err
	}
	wts, err := t.r.Weights()
	if err != nil {
		return err
	}
	meta := t.pre.Metadata()
	meta["epoch"] = fmt.Sprint(m.Epoch)
	return model.WriteSafetensors(filepath.Join(c.Out, weightsFile), wts, meta)
}

// due reports whether a checkpoint is due by the step or minute interval.
func (t *trainer) due() bool {
	c := t.c
	return (c.CheckpointSteps > 0 && t.st.Step%uint64(c.CheckpointSteps) == 0) ||
		(c.CheckpointMinutes > 0 && time.Since(t.saved).Minutes() >= c.CheckpointMinutes)
}

func (t *trainer) checkpoint() error {
	if err := saveCheckpoint(t.c.Out, t.net, t.r, t.st); err != nil {
		return err
	}
	t.saved = time.Now()
	t.kept = fmt.Sprintf("the last good checkpoint (step %d) is kept in %s", t.st.Step, t.c.Out)
	return nil
}

// diverged names the step and the first layer whose output went non-finite.
func (t *trainer) diverged(loss float64, n int) error {
	where := ""
	if outs, err := t.r.Outputs(n, layerNames(t.net)); err == nil {
		for _, name := range layerNames(t.net) {
			if firstNonFinite(model.Weights{name: {Data: outs[name]}}) != "" {
				where = fmt.Sprintf("; the first layer with a NaN or Inf output is %s", name)
				break
			}
		}
	}
	kept := t.kept
	if kept == "" {
		kept = "no checkpoint was saved yet"
	}
	return fmt.Errorf("step %d (epoch %d, batch %d): the loss is %v%s: training diverged; lower --lr (it is %g now); %s",
		t.r.Step(), t.st.Epoch, t.st.Batch+1, loss, where, t.st.LR, kept)
}

func layerNames(n *model.Net) []string {
	var out []string
	for _, l := range n.Layers[1:] {
		out = append(out, l.Name)
	}
	return out
}

// Score is a net's performance on a data set.
type Score struct {
	Images           int
	Loss             float64
	Top1Err, Top5Err float64
}

// Batcher is what the training loop needs of a loader: data.Loader for
// in-memory sets, data.CropLoader for prepared ones.
type Batcher interface {
	Batches() int
	EpochFrom(ctx context.Context, epoch, start int) iter.Seq2[*data.Batch, error]
	Recycle(b *data.Batch)
	Stats() data.Stats
}

// Evaluate runs the net over every image of l, without dropout.
func Evaluate(ctx context.Context, r *parallel.Runner, l Batcher) (Score, error) {
	return EvaluatePatches(ctx, r, l, 1)
}

// EvaluatePatches scores images given as k consecutive patches each (k = 10
// for the paper's ten-patch evaluation, §2): an image's prediction is the
// average of its patches' softmax outputs.
func EvaluatePatches(ctx context.Context, r *parallel.Runner, l Batcher, k int) (Score, error) {
	var s Score
	var t1, t5 int
	classes := r.Net().Classes
	avg := make([]float32, classes)
	for b, err := range l.EpochFrom(ctx, 0, 0) {
		if err != nil {
			return s, err
		}
		res, err := r.Eval(parallel.Batch{N: b.N, Images: b.Images, Labels: b.Labels})
		labels := append([]float32(nil), b.Labels[:b.N]...)
		l.Recycle(b)
		if err != nil {
			return s, err
		}
		if k == 1 { // the device's own loss, exact
			s.Loss += res.Loss * float64(res.N)
			t1 += res.Top1
			t5 += res.Top5
			s.Images += res.N
			continue
		}
		for i := 0; i+k <= res.N; i += k {
			clear(avg)
			for j := i; j < i+k; j++ {
				for c, p := range res.Prob[j*classes : (j+1)*classes] {
					avg[c] += p / float32(k)
				}
			}
			label := int(labels[i])
			s.Loss -= math.Log(max(float64(avg[label]), 1e-45))
			top1, top5 := parallel.Rank(avg, label)
			if !top1 {
				t1++
			}
			if !top5 {
				t5++
			}
			s.Images++
		}
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
	for _, f := range []string{configFile, metricsFile, weightsFile, checkpointFile} {
		if _, err := os.Stat(filepath.Join(dir, f)); err == nil {
			return fmt.Errorf("--out %s: holds a run already (%s); continue it with --resume %s or choose another directory", dir, f, dir)
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
	return writeAtomic(path, append(b, '\n'))
}
