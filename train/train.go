// Package train is the training loop: given a Config, it opens the data and
// the devices through package open, places the net on them, runs the
// epochs with the paper's schedule and writes the run directory
// (config.json, metrics.jsonl, weights.safetensors, checkpoints).
package train

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"iter"
	"math"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/alexnet-go/trainer/data"
	"github.com/alexnet-go/trainer/internal/mpi"
	"github.com/alexnet-go/trainer/internal/safefile"
	"github.com/alexnet-go/trainer/metrics"
	"github.com/alexnet-go/trainer/model"
	"github.com/alexnet-go/trainer/open"
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
	// Replicas is how many data-parallel replicas GPUs runs (a pair of
	// devices each for a two-tower net, one for a one-tower net), each on
	// Batch/Replicas images of every batch: recorded, not chosen (0 in
	// runs from before replicas, which ran one).
	Replicas int `json:"replicas,omitempty"`
	Threads  int `json:"threads"`
	// Precision is the arithmetic: "fp32" (float32, matching the CPU
	// device to float32 tolerances), "tf32" (the GPU's convolutions and
	// matrix products on TF32 tensor cores: faster, 10-bit mantissas in
	// the products) or "bf16" (activations, their gradients and the
	// weights' working copies rounded to bfloat16, float32 sums, master
	// weights and momentum: package gpu/bf16, on CPU and CUDA devices
	// alike). TF32 is its
	// older spelling (--tf32), as config.json files from before it hold
	// it. Deterministic restricts cuDNN to algorithms that give the same
	// bits on every run.
	Precision     string  `json:"precision,omitempty"`
	TF32          bool    `json:"tf32,omitempty"`
	Deterministic bool    `json:"deterministic,omitempty"`
	Data          string  `json:"data"`
	Epochs        int     `json:"epochs"`
	Batch         int     `json:"batch"`
	LR            float64 `json:"lr"`
	Momentum      float64 `json:"momentum"`
	WeightDecay   float64 `json:"weight_decay"`
	Seed          uint64  `json:"seed"`
	// ValSplit holds the last N training images out to validate on (0: a
	// tenth, at most 5,000; IDX and CIFAR-10): every decision of the run is
	// made on them, and the test set is scored for the record only. Runs
	// from before the split read as -1: their test set validated.
	ValSplit int `json:"val_split"`
	Limit    int `json:"limit"`
	ValLimit int `json:"val_limit"` // validate and test on the first N images of each only (0: all)
	Patience int `json:"patience"`  // epochs without a validation error LRMargin below the best before the rate is divided by 10
	// LRMargin is how much the validation top-1 error must fall below the
	// best so far to count as better (a fraction: 0.001 is 0.1 points).
	LRMargin float64 `json:"lr_margin"`
	// LRDrops is the most times the rate is divided by 10 (0: no limit).
	LRDrops int `json:"lr_drops"`
	// LRSteps, when not empty, replaces the validation schedule: the rate
	// is divided by 10 after each of these epochs ("30,60,80").
	LRSteps string `json:"lr_steps,omitempty"`
	// EarlyStop ends the run when the validation error stops improving
	// with the rate already divided LRDrops times (not the paper's).
	EarlyStop bool   `json:"early_stop,omitempty"`
	Out       string `json:"out"`
	// A checkpoint is saved every CheckpointSteps steps (0: never), every
	// CheckpointMinutes minutes (0: never), at each epoch's end and when the
	// run is interrupted.
	CheckpointSteps   int     `json:"checkpoint_steps"`
	CheckpointMinutes float64 `json:"checkpoint_minutes"`
	Workers           int     `json:"workers"` // loader goroutines; 0: one per core
	// DataFingerprint identifies the data's content, so that a resume
	// refuses data that changed and accepts data that only moved.
	DataFingerprint string `json:"data_fingerprint,omitempty"`
	// RankTimeout bounds every collective of a run over several processes
	// (mpirun, srun): a rank that stops answering ends the run within it
	// (0: a minute). Not recorded: it is where the run runs, not what.
	RankTimeout time.Duration `json:"-"`
}

// Defaults returns the paper's recipe (§5) on the default data, Fashion-MNIST
// as Debian's dataset-fashion-mnist installs it.
func Defaults() Config {
	return Config{Net: "alexnet-small", LRN: "paper", Activation: "relu", Pool: "3/2", GPUs: open.DefaultGPUs, Data: "/usr/share/datasets/fashion-mnist",
		Epochs: 90, Batch: 128, LR: 0.01, Momentum: 0.9, WeightDecay: 0.0005, Seed: 1,
		Patience: DefaultPatience, LRMargin: DefaultLRMargin, LRDrops: 3, CheckpointMinutes: 10, Precision: "fp32"}
}

// UsesTF32 reports whether the run lets the GPU use TF32 tensor cores:
// --precision tf32, or its alias --tf32.
func (c Config) UsesTF32() bool { return c.Precision == "tf32" || c.TF32 }

// precision is c's Precision with the alias resolved: "fp32", "tf32" or
// "bf16".
func (c Config) precision() string {
	switch {
	case c.UsesTF32():
		return "tf32"
	case c.Precision == "bf16":
		return "bf16"
	}
	return "fp32"
}

// The schedule's defaults: the rate is divided by 10 when the validation
// error has not fallen 0.1 points below its best for 3 epochs, at most 3
// times, over 90 epochs (the paper: "roughly 90 cycles", the rate divided
// 3 times "when the validation error rate stopped improving", §5).
//
// Measured on the 27 Fashion-MNIST runs of bench/results/*h200*: at the
// rate 0.01 the validation error scatters 0.64 points (sd) about its
// falling trend, so patience 1 divided the rate at epoch 3 to 8 while the
// trend still fell 0.3 points an epoch; on a plateau (rate 1e-4 or less)
// it moves 0.04 points an epoch, so a 0.1-point margin tells a plateau
// from an improvement. In a simulation of that trend and scatter, patience
// 3 first divides the rate at epoch 11 (8 to 15), when the trend falls
// less than 0.1 points an epoch. See the README.
const (
	DefaultPatience = 3
	DefaultLRMargin = 0.001
)

// dataOptions is what open.Data needs of c.
func (c Config) dataOptions() open.DataOptions {
	return open.DataOptions{Dir: c.Data, Net: c.Net, LRN: c.LRN, Activation: c.Activation, Pool: c.Pool,
		Batch: c.Batch, Seed: c.Seed, ValSplit: c.ValSplit, Limit: c.Limit, ValLimit: c.ValLimit, Workers: c.Workers}
}

// NetOf builds the net that c trains, on c.Data's channels and classes
// (which it reads), without training or loading weights: what a report
// needs of a run whose weights were not kept.
func NetOf(c Config) (*model.Net, error) {
	d, err := open.Data(c.dataOptions())
	if err != nil {
		return nil, err
	}
	defer d.Close()
	return d.Net, nil
}

// Validate reports the first setting no run can use, naming its flag.
func (c Config) Validate() error {
	if model.InputSize(c.Net) == 0 {
		return fmt.Errorf("--net %q: unknown net (known: %s)", c.Net, strings.Join(model.Names(), ", "))
	}
	if err := model.CheckOptions(c.LRN, c.Activation, c.Pool); err != nil {
		return err
	}
	switch {
	case c.Batch < 1:
		return fmt.Errorf("--batch %d: a batch needs at least 1 image", c.Batch)
	case c.Epochs < 1:
		return fmt.Errorf("--epochs %d: train for at least 1 epoch", c.Epochs)
	case !(c.LR > 0) || math.IsInf(c.LR, 0):
		return fmt.Errorf("--lr %g: the learning rate must be positive", c.LR)
	case !(c.Momentum >= 0 && c.Momentum < 1):
		return fmt.Errorf("--momentum %g: must be in [0, 1)", c.Momentum)
	case !(c.WeightDecay >= 0) || math.IsInf(c.WeightDecay, 0):
		return fmt.Errorf("--weight-decay %g: must be a finite number, 0 or more", c.WeightDecay)
	case c.Limit < 0:
		return fmt.Errorf("--limit %d: must be 0 (all images) or more", c.Limit)
	case c.ValLimit < 0:
		return fmt.Errorf("--val-limit %d: must be 0 (all images) or more", c.ValLimit)
	case c.ValSplit < open.NoValSplit:
		return fmt.Errorf("--val-split %d: must be 0 (a tenth of the training images, at most %s) or more", c.ValSplit, model.Commas(open.DefaultValSplit))
	case c.Patience < 1:
		return fmt.Errorf("--patience %d: must be at least 1 epoch", c.Patience)
	case !(c.LRMargin >= 0 && c.LRMargin < 1):
		return fmt.Errorf("--lr-margin %g: must be in [0, 1) (a fraction of the images: 0.001 is 0.1 points)", c.LRMargin)
	case c.LRDrops < 0:
		return fmt.Errorf("--lr-drops %d: must be 0 (no limit) or more", c.LRDrops)
	case c.CheckpointSteps < 0 || !(c.CheckpointMinutes >= 0) || math.IsInf(c.CheckpointMinutes, 0):
		return fmt.Errorf("--checkpoint-steps %d, --checkpoint-minutes %g: must be 0 (never) or more", c.CheckpointSteps, c.CheckpointMinutes)
	case c.Precision != "" && c.Precision != "fp32" && c.Precision != "tf32" && c.Precision != "bf16":
		return fmt.Errorf("--precision %q: use fp32, tf32 or bf16", c.Precision)
	case c.TF32 && (c.Precision == "fp32" || c.Precision == "bf16"):
		return fmt.Errorf("--tf32 with --precision %s: --tf32 is --precision tf32; give one of them", c.Precision)
	case c.Out == "":
		return errors.New("--out: give a directory for the run")
	}
	if _, err := c.lrSteps(); err != nil {
		return err
	}
	return nil
}

// lrSteps parses LRSteps: increasing epochs, from 1.
func (c Config) lrSteps() ([]int, error) {
	if strings.TrimSpace(c.LRSteps) == "" {
		return nil, nil
	}
	var out []int
	for _, f := range strings.Split(c.LRSteps, ",") {
		e, err := strconv.Atoi(strings.TrimSpace(f))
		if err != nil || e < 1 || (len(out) > 0 && e <= out[len(out)-1]) {
			return nil, fmt.Errorf("--lr-steps %q: give increasing epochs from 1, separated by commas (30,60,80)", c.LRSteps)
		}
		out = append(out, e)
	}
	return out, nil
}

// Schedule returns the schedule's state after an epoch: st as it stood,
// the epoch's validation top-1 error val. It never sees a test error. The
// rate is divided by 10 after each of LRSteps' epochs when given, else
// when val has not fallen LRMargin below the best so far for Patience
// epochs, at most LRDrops times; with EarlyStop, a stall after the last
// division ends the run (Stopped). note, when not empty, says what
// changed.
func (c Config) Schedule(st State, epoch int, val float64) (next State, note string) {
	next = st
	steps, _ := c.lrSteps()
	better := val < st.Best-c.LRMargin
	if better {
		next.Best, next.Stale = val, 0
	}
	if steps != nil {
		for _, e := range steps {
			if e == epoch {
				next.LR /= 10
				next.Drops++
				note = fmt.Sprintf("epoch %d is in --lr-steps: learning rate now %g", epoch, next.LR)
			}
		}
		return next, note
	}
	if better {
		return next, ""
	}
	if next.Stale++; next.Stale < c.Patience {
		return next, ""
	}
	next.Stale = 0
	if c.LRDrops > 0 && next.Drops >= c.LRDrops {
		if c.EarlyStop {
			next.Stopped = true
			return next, fmt.Sprintf("validation error did not improve by %g points for %d epoch(s) with the rate divided %d times: stopping early (--early-stop)", 100*c.LRMargin, c.Patience, next.Drops)
		}
		return next, ""
	}
	next.LR /= 10
	next.Drops++
	return next, fmt.Sprintf("validation error did not improve by %g points for %d epoch(s): learning rate now %g", 100*c.LRMargin, c.Patience, next.LR)
}

// BestWeightsFile, in a run directory, holds the weights of the epoch with
// the lowest validation error (metrics.Best), chosen on validation alone.
const BestWeightsFile = "weights.best.safetensors"

// Metrics is one line of metrics.jsonl: one epoch.
type Metrics = metrics.Epoch

// ErrInterrupted is returned when the context is cancelled (SIGINT or
// SIGTERM): the run saved a checkpoint and can be resumed.
var ErrInterrupted = errors.New("interrupted")

// Run starts a new run as c says in the directory c.Out, which must not
// hold a run, logging progress to log, and returns each epoch's metrics.
// When ctx is cancelled it finishes the step in progress, saves a
// checkpoint and returns an error wrapping ErrInterrupted.
//
// Started by mpirun or srun, it is one rank of a run over several
// processes (see initWorld): rank 0's c.Out is every rank's.
func Run(ctx context.Context, c Config, log io.Writer) (ms []Metrics, err error) {
	if err := c.Validate(); err != nil {
		return nil, err
	}
	world, err := initWorld(c.RankTimeout, log)
	if err != nil {
		return nil, err
	}
	defer func() { err = closeWorld(world, c.Out, err) }()
	if c.Out, err = bcastString(world, c.Out); err != nil {
		return nil, err
	}
	if world.Rank() != 0 {
		if err := agreeAll(world, nil); err != nil {
			return nil, err
		}
		return run(ctx, c, nil, io.Discard, world)
	}
	_, statErr := os.Stat(c.Out)
	lk, err := lockRunDir(c.Out, "--out", log)
	if err != nil {
		return nil, agreeAll(world, err)
	}
	ms, err = func() ([]Metrics, error) {
		if err := agreeAll(world, makeRunDir(c.Out)); err != nil {
			return nil, err
		}
		return run(ctx, c, nil, log, world)
	}()
	lk.Close()
	if err != nil && errors.Is(statErr, fs.ErrNotExist) {
		// A run refused before it wrote anything (its data, its devices)
		// leaves no directory behind; Remove keeps one that holds anything
		// but the lock file (a lock file is made again by the next lock).
		os.Remove(filepath.Join(c.Out, safefile.LockName))
		os.Remove(c.Out)
	}
	return ms, err
}

// OnDisk says what a stop at this moment leaves in the run directory dir
// for a resume.
func OnDisk(dir string) string {
	if _, err := os.Stat(filepath.Join(dir, checkpointFile)); err == nil {
		return "the last checkpoint on disk is whole; continue with trainer train --resume " + dir
	}
	return "no checkpoint was saved yet: the run cannot be resumed"
}

// ResumeOptions are what may change when a run is resumed.
type ResumeOptions struct {
	// Epochs, when above 0, is how many epochs the run trains in all.
	Epochs int
	// Data, when not empty, is where the run's data lies now (it moved):
	// it must hold the same data, which its fingerprint checks.
	Data string
	// GPUs, when not empty, is where the run continues (--gpus): other
	// devices, or another number of replicas if OtherReplicas (see Resume).
	GPUs string
	// OtherReplicas accepts a resume on another number of replicas than
	// the run last trained on (--other-replicas), which continues the run
	// to float32 rounding rather than bit for bit. Over several processes
	// the replicas are counted over them all.
	OtherReplicas bool
	// RankTimeout is Config.RankTimeout.
	RankTimeout time.Duration
}

// Resume continues the run in dir from its last checkpoint, with the
// config it was started with, changed as o says. On the CPU devices the
// continued run computes exactly what the uninterrupted run would have.
// The data must be the run's own (config.json's data_fingerprint).
//
// A resume on another number of replicas (o.GPUs) is refused unless
// o.OtherReplicas: the global batch, its images, their augmentations and
// dropout masks are the same whatever the replicas, and so is the mean the
// update follows, but the order of the gradients' sums changes, so the run
// would continue to float32 rounding, not bit for bit. With
// o.OtherReplicas it goes on and says so.
//
// Over several processes (mpirun, srun), every rank reads the run's
// config.json and checkpoint from dir, which every rank must see.
func Resume(ctx context.Context, dir string, o ResumeOptions, log io.Writer) (ms []Metrics, err error) {
	world, err := initWorld(o.RankTimeout, log)
	if err != nil {
		return nil, err
	}
	defer func() { err = closeWorld(world, dir, err) }()
	c, err := ReadConfig(dir)
	if err != nil { // over several processes: dir is not on every rank's filesystem
		return nil, agreeAll(world, fmt.Errorf("--resume %w", err))
	}
	c.Out = dir
	if o.Epochs > 0 {
		c.Epochs = o.Epochs
	}
	if o.Data != "" {
		c.Data = o.Data
	}
	if o.GPUs != "" {
		c.GPUs = o.GPUs
	}
	if err := c.Validate(); err != nil {
		return nil, agreeAll(world, fmt.Errorf("--resume %s: %s: %v", dir, configFile, err))
	}
	if world.Rank() != 0 {
		if err := agreeAll(world, nil); err != nil {
			return nil, err
		}
		return run(ctx, c, &o, io.Discard, world)
	}
	lk, err := lockRunDir(dir, "--resume", log)
	if err := agreeAll(world, err); err != nil {
		return nil, err
	}
	defer lk.Close()
	return run(ctx, c, &o, log, world)
}

// trainer is one run in progress.
type trainer struct {
	c          Config
	net        *model.Net
	r          *parallel.Replicas
	world      *mpi.World      // the processes of the run; nil: this one alone
	tl, vl, ts data.Batcher    // training, validation, test (nil: none)
	valSet     string          // what vl scores: open.HeldOut, …
	raw        data.RawBatcher // tl, when the devices render its batches
	pre        model.Preprocess
	log        io.Writer
	prog       *progress
	st         State
	saved      time.Time // when the last checkpoint was written
	kept       string    // what the last checkpoint on disk holds, for messages
}

// run trains c's run: a new one when o is nil, else resumed as o allows.
// Over several processes (world), rank 0 alone writes, and log is
// io.Discard on the others.
func run(ctx context.Context, c Config, o *ResumeOptions, log io.Writer, world *mpi.World) ([]Metrics, error) {
	resume := o != nil
	if _, err := open.ParseGPUs(c.GPUs); err != nil { // a bad --gpus fails before the data loads
		return nil, err
	}
	ds, err := open.Data(c.dataOptions())
	if err != nil {
		return nil, err
	}
	defer ds.Close()
	switch {
	case !resume:
		c.DataFingerprint = ds.Fingerprint
		if c.ValSplit == open.NoValSplit && ds.ValSet == open.TestSet {
			return nil, fmt.Errorf("--val-split %d: a new run holds images out to validate on; the test set decides nothing", c.ValSplit)
		}
	case c.DataFingerprint != "" && c.DataFingerprint != ds.Fingerprint:
		return nil, fmt.Errorf("--resume %s: the data at %s is not the data the run was trained on (fingerprint %s, the run's %s): give the run's data with --data DIR", c.Out, c.Data, ds.Fingerprint, c.DataFingerprint)
	case c.DataFingerprint == "":
		// A run from before fingerprints: record the data it resumes on.
		c.DataFingerprint = ds.Fingerprint
	}
	net := ds.Net
	ran := c.Replicas // what the run last ran on: 0 for a new run, or one from before replicas
	if resume && ran == 0 {
		// A run from before replicas ran one: a one-tower net on the
		// first device of a pair.
		var note string
		if c.GPUs, note = open.ForNet(net, c.GPUs); note != "" {
			fmt.Fprintln(log, note)
		}
		ran = 1
	}
	local, err := open.ReplicaCount(net, c.GPUs)
	if err != nil {
		return nil, err
	}
	if world.Size() > 1 && local != 1 {
		return nil, fmt.Errorf("--gpus %s: %d replicas in each of %d processes: a process of an MPI run holds one replica for now (%s); start one process per replica", c.GPUs, local, world.Size(), perReplica(net))
	}
	R := local * world.Size()
	if c.Batch%R != 0 {
		if world.Size() > 1 {
			return nil, fmt.Errorf("--batch %d does not split evenly over the %d replicas of %d processes (--gpus %s each): give a multiple of %d", c.Batch, R, world.Size(), c.GPUs, R)
		}
		return nil, fmt.Errorf("--batch %d does not split evenly over the %d replicas of --gpus %s: give a multiple of %d, or other devices", c.Batch, R, c.GPUs, R)
	}
	c.Replicas = R
	devs, err := open.Devices(c.GPUs, open.DeviceOptions{Threads: c.Threads, TF32: c.UsesTF32(), Deterministic: c.Deterministic, Precision: c.precision()})
	if err != nil {
		return nil, err
	}
	defer devs.Close()
	t := &trainer{c: c, net: net, log: log, world: world, prog: newProgress(log), pre: ds.Pre, tl: ds.Train, vl: ds.Val, ts: ds.Test, valSet: ds.ValSet}
	if wrapTrainLoader != nil {
		t.tl = wrapTrainLoader(t.tl)
	}
	if t.tl.Batches() == 0 {
		return nil, fmt.Errorf("--batch %d: larger than the %d training images", c.Batch, ds.TrainN)
	}

	w := model.Init(net, c.Seed)
	t.st = State{Epoch: 1, LR: c.LR, Best: math.MaxFloat64} // any error beats it; JSON has no Inf
	var mom model.Weights
	if resume {
		// Refused checkpoints are warnings: stderr, not the progress log.
		st, cw, cv, ok, err := loadCheckpoint(c.Out, net, func(s string) { fmt.Fprintln(os.Stderr, "trainer:", s) })
		if err != nil {
			return nil, err
		}
		if ok {
			if st.Config != nil {
				was, now := *st.Config, c
				was.Data, now.Data = "", "" // where the data lies may change; what it is, the fingerprint checks
				if err := now.Mismatch(was); err != nil {
					return nil, fmt.Errorf("--resume %s: %s's %v in the checkpoint: %s was edited since; restore it (a resume changes only --epochs, and --data for data that moved)", c.Out, configFile, err, configFile)
				}
			}
			if st.Config != nil && st.Config.Replicas > 0 {
				ran = st.Config.Replicas
			}
			t.st, w, mom = st, cw, cv
			t.st.Config = nil
			t.kept = fmt.Sprintf("the last good checkpoint (step %d) is kept in %s", st.Step, c.Out)
		}
		if err := t.sameStep(); err != nil {
			return nil, err
		}
		if t.st.Stopped {
			return nil, fmt.Errorf("--resume %s: the run stopped early at epoch %d (--early-stop): the validation error had stopped improving", c.Out, t.st.Epoch-1)
		}
		if done := t.st.Epoch - 1; done >= c.Epochs {
			return nil, fmt.Errorf("--resume %s: the run has finished its %d epochs; to train it further give --epochs N with N > %d", c.Out, done, done)
		}
		if err := t.write(func() error { return writeMetrics(c.Out, t.st.History) }); err != nil {
			return nil, err
		}
	}
	if resume && ran != R && !o.OtherReplicas {
		where, has := "--gpus "+c.GPUs, "has"
		if world.Size() > 1 {
			where, has = fmt.Sprintf("%d processes of --gpus %s", world.Size(), c.GPUs), "have"
		}
		return nil, fmt.Errorf("--resume %s: the run trained on %d replica(s), %s %s %d: the same images and masks, but the gradients would be summed in another order, so the run would continue to float32 rounding, not bit for bit; give %d replica(s), or add --other-replicas to accept that", c.Out, ran, where, has, R, ran)
	}
	if resume && ran != R {
		fmt.Fprintf(log, "resuming a run of %d replica(s) on %d (--gpus %s): the same global batch of %d images, the same images, augmentations and dropout masks; the gradients are summed in another order, so the run continues to float32 rounding, not bit for bit\n", ran, R, c.GPUs, c.Batch)
	}
	t.r, err = parallel.NewReplicas(net, devs.Split(local), w, parallel.Options{Batch: c.Batch, Seed: c.Seed, Momentum: float32(c.Momentum), WeightDecay: float32(c.WeightDecay),
		TotalReplicas: R, FirstReplica: world.Rank() * local, Reducers: open.Reducers(world, log)})
	if err != nil {
		return nil, err
	}
	defer t.r.Close()
	if err := t.useRaw(); err != nil {
		return nil, err
	}
	if mom != nil {
		if err := t.r.SetMomentum(mom); err != nil {
			return nil, err
		}
	}
	t.r.SetStep(t.st.Step)
	// A resume records what it changed: the epochs, where the data lies
	// now, the data's fingerprint (runs from before fingerprints).
	if err := t.write(func() error { return writeJSON(filepath.Join(c.Out, configFile), c) }); err != nil {
		return nil, err
	}
	if !resume {
		if err := t.write(func() error { return writeMetrics(c.Out, nil) }); err != nil {
			return nil, err
		}
	}

	placed := strings.Join(devs.Names(), ",")
	if local > 1 {
		var each []string
		for _, r := range devs.Split(local) {
			each = append(each, strings.Join(open.DeviceList(r).Names(), ","))
		}
		placed = fmt.Sprintf("%d replicas (%s), %d images each", R, strings.Join(each, " | "), c.Batch/R)
	}
	if world.Size() > 1 {
		placed = fmt.Sprintf("%d replicas, one per process (rank 0's on %s), %d images each", R, placed, c.Batch/R)
	}
	fmt.Fprintf(log, "%s (%s params) on %s, BLAS: %s\n", net.Name, model.Commas(net.Params()), placed, open.BLAS())
	fmt.Fprintf(log, "data %s: %s; run in %s\n", c.Data, ds.Desc, c.Out)
	if resume {
		fmt.Fprintf(log, "resuming at epoch %d, batch %d of %d (step %d)\n", t.st.Epoch, t.st.Batch, t.tl.Batches(), t.st.Step)
	}
	t.saved = time.Now()
	for t.st.Epoch <= c.Epochs && !t.st.Stopped {
		if err := t.epoch(ctx); err != nil {
			// Over several processes, only a stop the ranks agreed on is
			// a clean step to save: any other failure (a rank gone) may
			// have left the replicas mid-update.
			if (ctx.Err() != nil && world.Size() == 1) || errors.Is(err, errStopped) {
				if err := t.write(func() error { return saveCheckpoint(c.Out, net, t.r, t.saving()) }); err != nil {
					return t.st.History, err
				}
				return t.st.History, fmt.Errorf("%w at epoch %d, batch %d: checkpoint saved; continue with: trainer train --resume %s", ErrInterrupted, t.st.Epoch, t.st.Batch, c.Out)
			}
			return t.st.History, err
		}
	}
	return t.st.History, nil
}

// errStopped is what an epoch returns when the ranks of a run over
// several processes agreed to stop, a signal having reached one of them.
var errStopped = errors.New("stopped by a signal to a rank")

// write runs f, which writes into the run directory, on rank 0 alone.
func (t *trainer) write(f func() error) error {
	if t.world.Rank() != 0 {
		return nil
	}
	return f()
}

// perReplica says what one replica of net takes.
func perReplica(net *model.Net) string {
	if net.Towers == 1 {
		return "--gpus with one device"
	}
	return fmt.Sprintf("--gpus with %d devices, one per tower, or one for both", net.Towers)
}

// deviceAugment renders the training batches on the devices when the
// loader can hand them over raw (data.RawBatcher); tests turn it off to
// compare with the host's rendering.
var deviceAugment = true

// wrapTrainLoader, when set, wraps the training loader: tests slow it
// down to see the wait counted.
var wrapTrainLoader func(data.Batcher) data.Batcher

// useRaw sets the runner up to render the training loader's raw batches
// on the devices, if the loader has them and they fit the net.
func (t *trainer) useRaw() error {
	rb, ok := t.tl.(data.RawBatcher)
	if !ok || !deviceAugment {
		return nil
	}
	spec, ok := rb.Raw()
	if !ok || spec.Crop != t.net.Input.H {
		return nil
	}
	if err := t.r.SetAugment(parallel.Augment{C: spec.C, Size: spec.Size, Mean: spec.Mean, OutputMean: spec.OutputMean}); err != nil {
		return err
	}
	t.raw = rb
	fmt.Fprintf(t.log, "augmenting on the devices: %d×%d×%d bytes per image uploaded, cropped to %d×%d there\n", spec.C, spec.Size, spec.Size, spec.Crop, spec.Crop)
	return nil
}

// epoch trains the rest of the epoch in progress, evaluates it, records its
// metrics and steps the schedule.
//
// With raw batches (useRaw) the loop keeps one batch staged ahead: step n
// is started, batch n+1 is taken from the loader and staged on the
// devices while step n computes, and only then are step n's scores read
// back. The time spent waiting for the loader is the epoch's DataWaitS.
func (t *trainer) epoch(ctx context.Context) error {
	st, c := &t.st, t.c
	steps := t.tl.Batches()
	t.prog.start(st.Epoch, c.Epochs, steps, st.Batch)
	t.r.MovedBytes()
	// Over several processes the loaders do not stop on ctx, which a
	// signal cancels on one rank only: the ranks stop together (combine).
	lctx := ctx
	if t.world.Size() > 1 {
		lctx = context.WithoutCancel(ctx)
	}
	seq := t.tl.EpochFrom(lctx, st.Epoch, st.Batch)
	if t.raw != nil {
		seq = t.raw.RawEpochFrom(lctx, st.Epoch, st.Batch)
	}
	nextBatch, stop := iter.Pull2(seq)
	defer stop()
	defer t.r.Unstage() // an epoch cut short leaves nothing for the next
	// pull takes the next batch, counting the wait, and stages it.
	pull := func() (*data.Batch, parallel.Batch, bool, error) {
		t0 := time.Now()
		b, err, ok := nextBatch()
		st.DataWait += time.Since(t0).Seconds()
		if !ok || err != nil {
			return nil, parallel.Batch{}, ok, err
		}
		pb := parallel.Batch{N: b.N, Images: b.Images, Labels: b.Labels, Raw: b.Raw, Params: b.Params}
		if t.raw == nil {
			return b, pb, true, nil
		}
		err = t.r.Stage(pb)
		// Staged: the devices hold their own copy; the step needs the
		// batch's shape and, to score it, its labels.
		pb.Labels = append([]float32(nil), pb.Labels...)
		t.tl.Recycle(b)
		return nil, pb, true, err
	}
	began := time.Now() // each step's time includes waiting for its batch
	b, pb, ok, err := pull()
	for ok {
		if err != nil {
			return err
		}
		p, err := t.r.Start(pb, float32(st.LR))
		if b != nil {
			t.tl.Recycle(b)
		}
		if err != nil {
			return err
		}
		n := pb.N
		b, pb, ok, err = pull() // batch n+1 travels while step n computes
		res, rerr := p.Result()
		if rerr != nil {
			return rerr
		}
		st.Step = t.r.Step() // due() counts it
		// Over several processes, the global batch's numbers and the
		// decisions every rank takes.
		res, due, stop, cerr := t.combine(res, t.due(), ctx.Err() != nil)
		if cerr != nil {
			return cerr
		}
		if math.IsNaN(res.Loss) || math.IsInf(res.Loss, 0) {
			return t.diverged(res.Loss, n)
		}
		st.Batch++
		st.Loss += res.Loss * float64(res.N)
		st.Wrong += res.Top1
		st.Seen += res.N
		dt := time.Since(began).Seconds()
		began = time.Now()
		st.Seconds += dt
		st.Moved += t.r.MovedBytes()
		t.prog.step(st.Batch, st.Loss/float64(st.Seen), float64(st.Wrong)/float64(st.Seen), float64(res.N)/dt)
		if due {
			if err := t.checkpoint(); err != nil {
				return err
			}
		}
		if stop {
			if t.world.Size() > 1 {
				return errStopped
			}
			return ctx.Err()
		}
	}
	if err != nil {
		return err
	}
	if err := ctx.Err(); err != nil && t.world.Size() == 1 {
		return err
	}
	t.prog.done()
	v, err := t.evaluate(ctx, t.vl)
	if err != nil {
		return err
	}
	m := Metrics{Epoch: st.Epoch, LR: st.LR, TrainLoss: st.Loss / float64(st.Seen), TrainTop1Err: float64(st.Wrong) / float64(st.Seen),
		ValLoss: v.Loss, ValTop1Err: v.Top1Err, ValTop5Err: v.Top5Err, Seconds: st.Seconds, TransferBytes: st.Moved,
		ImagesPerS: float64(st.Seen) / st.Seconds, LoaderPerS: t.tl.Stats().Rate(), DataWaitS: st.DataWait}
	test := ""
	if t.valSet != open.TestSet { // runs from before the split validated on the test set and record no val_set
		m.ValSet = t.valSet
	}
	if t.ts != nil {
		s, err := t.evaluate(ctx, t.ts)
		if err != nil {
			return err
		}
		m.TestLoss, m.TestTop1Err, m.TestTop5Err = &s.Loss, &s.Top1Err, &s.Top5Err
		test = fmt.Sprintf("; test loss %.4f top-1 %.2f%% top-5 %.2f%%", s.Loss, 100*s.Top1Err, 100*s.Top5Err)
	}
	fmt.Fprintf(t.log, "epoch %d/%d lr %g: train loss %.4f err %.2f%%, val loss %.4f top-1 %.2f%% top-5 %.2f%%%s, %.0f img/s, %.1f s (%.1f s waiting for data), %s moved\n",
		m.Epoch, c.Epochs, m.LR, m.TrainLoss, 100*m.TrainTop1Err, m.ValLoss, 100*m.ValTop1Err, 100*m.ValTop5Err, test, m.ImagesPerS, m.Seconds, m.DataWaitS, model.Bytes(m.TransferBytes))

	// The next epoch's state, the schedule stepped on the validation
	// error alone (§5).
	next, note := c.Schedule(State{Epoch: st.Epoch + 1, Step: st.Step, LR: st.LR, Best: st.Best, Stale: st.Stale, Drops: st.Drops,
		History: append(st.History, m)}, m.Epoch, m.ValTop1Err)
	if note != "" {
		fmt.Fprintln(t.log, note)
	}
	if t.world.Rank() != 0 {
		*st = next
		return nil
	}
	wts, err := t.r.Weights()
	if err != nil {
		return err
	}
	meta := t.pre.Metadata()
	meta["epoch"] = fmt.Sprint(m.Epoch)
	// The best epoch by validation (the lowest error, the first of
	// equals) keeps its weights, before the checkpoint: a crash between
	// the two repeats the epoch, and the write.
	if metrics.Best(next.History) == len(next.History)-1 {
		if err := model.WriteSafetensors(filepath.Join(c.Out, BestWeightsFile), wts, meta); err != nil {
			return err
		}
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
	return model.WriteSafetensors(filepath.Join(c.Out, weightsFile), wts, meta)
}

// saving is the state a checkpoint saves: where the run stands and its
// config.
func (t *trainer) saving() State {
	st := t.st
	st.Config = &t.c
	return st
}

// due reports whether a checkpoint is due by the step or minute interval.
func (t *trainer) due() bool {
	c := t.c
	return (c.CheckpointSteps > 0 && t.st.Step%uint64(c.CheckpointSteps) == 0) ||
		(c.CheckpointMinutes > 0 && time.Since(t.saved).Minutes() >= c.CheckpointMinutes)
}

func (t *trainer) checkpoint() error {
	if err := t.write(func() error { return saveCheckpoint(t.c.Out, t.net, t.r, t.saving()) }); err != nil {
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

// Evaluator is a placed net that scores batches: a *parallel.Runner, or
// *parallel.Replicas, each replica scoring its part.
type Evaluator interface {
	Eval(parallel.Batch) (parallel.Result, error)
	Net() *model.Net
}

// Evaluate runs the net over every image of l, without dropout.
func Evaluate(ctx context.Context, r Evaluator, l data.Batcher) (Score, error) {
	return EvaluatePatches(ctx, r, l, 1)
}

// EvaluatePatches scores images given as k consecutive patches each (k = 10
// for the paper's ten-patch evaluation, §2): an image's prediction is the
// average of its patches' softmax outputs.
func EvaluatePatches(ctx context.Context, r Evaluator, l data.Batcher, k int) (Score, error) {
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
	return safefile.WriteFile(path, append(b, '\n'))
}

// Mismatch names the first setting that makes a run of c compute something
// other than a run of want, or returns nil: the net and its variant, the
// data and how it is used, the recipe and the seed. Where the run is,
// its placement, its epochs and how often it checkpoints do not count.
func (c Config) Mismatch(want Config) error {
	for _, f := range []struct {
		flag      string
		got, want any
	}{
		{"net", c.Net, want.Net}, {"lrn", c.LRN, want.LRN}, {"activation", c.Activation, want.Activation}, {"pool", c.Pool, want.Pool},
		{"data", c.Data, want.Data}, {"limit", c.Limit, want.Limit}, {"val-limit", c.ValLimit, want.ValLimit},
		{"batch", c.Batch, want.Batch}, {"lr", c.LR, want.LR}, {"momentum", c.Momentum, want.Momentum},
		{"weight-decay", c.WeightDecay, want.WeightDecay}, {"seed", c.Seed, want.Seed}, {"patience", c.Patience, want.Patience},
		{"val-split", c.ValSplit, want.ValSplit}, {"lr-margin", c.LRMargin, want.LRMargin}, {"lr-drops", c.LRDrops, want.LRDrops},
		{"lr-steps", c.LRSteps, want.LRSteps}, {"early-stop", c.EarlyStop, want.EarlyStop},
		{"precision", c.precision(), want.precision()},
	} {
		if f.got != f.want {
			return fmt.Errorf("--%s %v, not %v", f.flag, f.got, f.want)
		}
	}
	return nil
}

// ReadConfig reads the config.json of the run in dir, with the defaults
// of settings that runs from before them lack.
func ReadConfig(dir string) (Config, error) {
	var c Config
	b, err := os.ReadFile(filepath.Join(dir, configFile))
	if err != nil {
		return c, fmt.Errorf("%s: not a run directory: %v", dir, errors.Unwrap(err))
	}
	if err := json.Unmarshal(b, &c); err != nil {
		return c, fmt.Errorf("%s: %s is corrupt: %v", dir, configFile, err)
	}
	// Runs from before the held-out split validated on the test set, and
	// resume as they ran.
	var keys map[string]json.RawMessage
	if json.Unmarshal(b, &keys) == nil {
		if _, ok := keys["val_split"]; !ok {
			c.ValSplit = open.NoValSplit
		}
	}
	// Runs from before --activation and --pool had the paper's.
	if c.Activation == "" {
		c.Activation = "relu"
	}
	if c.Pool == "" {
		c.Pool = "3/2"
	}
	return c, nil
}
