// Command trainer trains the two-tower AlexNet of Krizhevsky, Sutskever and
// Hinton (2012), one tower per device, and inspects and runs its weights.
//
//	trainer                       train alexnet-small on Fashion-MNIST on two CPU devices
//	trainer train --gpus cpu,cpu  the same, explicitly
//	trainer inspect --net alexnet the layer table: devices, shapes, parameters
//	trainer forward --net N --weights W --input X --output Y
package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/signal"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"github.com/urfave/cli/v2"

	"github.com/alexnet-go/trainer/model"
	"github.com/alexnet-go/trainer/open"
	"github.com/alexnet-go/trainer/parallel"
	"github.com/alexnet-go/trainer/train"
)

func main() {
	if err := app().Run(os.Args); err != nil {
		fmt.Fprintln(os.Stderr, "trainer:", err)
		os.Exit(1)
	}
}

func app() *cli.App {
	a := newApp()
	a.OnUsageError = usageError("")
	var walk func(prefix string, cs []*cli.Command)
	walk = func(prefix string, cs []*cli.Command) {
		for _, c := range cs {
			c.OnUsageError = usageError(prefix + c.Name)
			walk(prefix+c.Name+" ", c.Subcommands)
		}
	}
	walk("", a.Commands)
	return a
}

// usageError makes a bad flag one line that says where to look, instead of
// urfave/cli's "Incorrect Usage" and the whole help on stdout.
func usageError(cmd string) cli.OnUsageErrorFunc {
	return func(_ *cli.Context, err error, _ bool) error {
		help := "trainer --help"
		if cmd != "" {
			help = "trainer " + cmd + " --help"
		}
		return fmt.Errorf("%v (see %s)", err, help)
	}
}

func newApp() *cli.App {
	d := train.Defaults()
	trainFlags := []cli.Flag{
		&cli.StringFlag{Name: "net", Value: d.Net, Usage: "the net: " + strings.Join(model.Names(), ", ")},
		&cli.StringFlag{Name: "gpus", Usage: "devices, one per tower: `0,1` CUDA ordinals, 0,0 both towers on one GPU, cpu,cpu two CPU devices, one entry for both towers; a pair per data-parallel replica (0,1,2,3: two replicas, --batch split between them; a one-tower net: one device per replica) (default: 0,1 with two GPUs, 0,0 with one, else cpu,cpu; a one-tower net the first)"},
		&cli.IntFlag{Name: "threads", Usage: "threads per CPU device (0: share the cores)"},
		&cli.StringFlag{Name: "precision", Value: "fp32", Usage: "the arithmetic: fp32; tf32 (the GPU's convolutions and matrix products on TF32 tensor cores: faster; 10-bit mantissas in the products, so no longer float32-exact); or bf16 (activations, their gradients and the weights' working copies rounded to bfloat16, with float32 sums, master weights and momentum; the CPU devices round at the same points as the GPU)"},
		&cli.BoolFlag{Name: "other-replicas", Usage: "with --resume: accept --gpus with another number of replicas than the run trained on (the same images and masks; the gradients summed in another order, so the run continues to float32 rounding, not bit for bit)"},
		&cli.BoolFlag{Name: "tf32", Usage: "the same as --precision tf32 (kept as an alias)"},
		&cli.BoolFlag{Name: "deterministic", Usage: "on the GPU, only cuDNN algorithms that give the same bits on every run (a little slower); the CPU device always does"},
		&cli.StringFlag{Name: "data", Value: d.Data, Usage: "the data: a Fashion-MNIST/MNIST IDX or CIFAR-10 binary directory, or a folder trainer prepare wrote"},
		&cli.IntFlag{Name: "epochs", Value: d.Epochs, Usage: "epochs to train"},
		&cli.IntFlag{Name: "batch", Value: d.Batch, Usage: "images per step"},
		&cli.Float64Flag{Name: "lr", Value: d.LR, Usage: "the initial learning rate"},
		&cli.Float64Flag{Name: "momentum", Value: d.Momentum, Usage: "SGD momentum"},
		&cli.Float64Flag{Name: "weight-decay", Value: d.WeightDecay, Usage: "weight decay on the weights"},
		&cli.Uint64Flag{Name: "seed", Value: d.Seed, Usage: "seed of the init, the data order, the augmentation and dropout"},
		&cli.IntFlag{Name: "val-split", Value: d.ValSplit, Usage: "hold the last N training images out to validate on, for every decision (0: a tenth, at most 5,000); the test set is scored for the record only (prepared data validates on its val split)"},
		&cli.IntFlag{Name: "limit", Usage: "use only N of the training images left after --val-split (0: all): the first N of an in-memory set, N spread evenly over prepared data (stored in class order), the same N always the same images"},
		&cli.IntFlag{Name: "val-limit", Usage: "validate and test on only the first N images of each (0: all)"},
		&cli.IntFlag{Name: "patience", Value: d.Patience, Usage: "epochs without a validation error --lr-margin below the best before the rate is divided by 10"},
		&cli.Float64Flag{Name: "lr-margin", Value: d.LRMargin, Usage: "how far below the best the validation top-1 error must fall to count as better, a fraction (0.001: 0.1 points)"},
		&cli.IntFlag{Name: "lr-drops", Value: d.LRDrops, Usage: "divide the rate by 10 at most N times (0: no limit)"},
		&cli.StringFlag{Name: "lr-steps", Usage: "divide the rate by 10 after these epochs instead (`E1,E2,...`, e.g. 30,60,80), whatever the validation error"},
		&cli.BoolFlag{Name: "early-stop", Usage: "end the run when the validation error stops improving with the rate divided --lr-drops times (not the paper's)"},
		&cli.StringFlag{Name: "lrn", Value: d.LRN, Usage: "LRN α convention: paper (α on the sum) or caffe (α/n, as cuda-convnet2, Caffe, PyTorch); none: no LRN layers (§3.3's ablation)"},
		&cli.StringFlag{Name: "activation", Value: d.Activation, Usage: "after every conv and FC layer but fc8: relu (§3.1) or tanh (Figure 1's comparison)"},
		&cli.StringFlag{Name: "pool", Value: d.Pool, Usage: "max pooling window/stride: 3/2 (overlapping, §3.4) or 2/2"},
		&cli.StringFlag{Name: "out", Usage: "the run directory (default runs/NET-TIME); must not hold a run"},
		&cli.StringFlag{Name: "resume", Usage: "continue the run in `DIR` from its last checkpoint, with its own config (only --epochs may change, --data if the data moved, and --gpus)"},
		&cli.IntFlag{Name: "checkpoint-steps", Usage: "save a checkpoint every N steps (0: only by time, at each epoch's end and on SIGINT/SIGTERM)"},
		&cli.Float64Flag{Name: "checkpoint-minutes", Value: d.CheckpointMinutes, Usage: "save a checkpoint every N minutes (0: never by time)"},
		&cli.DurationFlag{Name: "rank-timeout", Value: time.Minute, Usage: "started by mpirun or srun (one process per replica): how long a rank waits for the others in a collective before the run ends, naming the rank that did not answer"},
	}
	return &cli.App{
		Name:   "trainer",
		Usage:  "train the two-tower AlexNet with its towers on two devices",
		Flags:  trainFlags,
		Action: trainCmd,
		Commands: []*cli.Command{
			{Name: "train", Usage: "train a net (the default command)", Flags: trainFlags, Action: trainCmd},
			{Name: "inspect", Usage: "print a net's layer table: device, output shape, parameters",
				Flags: []cli.Flag{
					&cli.StringFlag{Name: "net", Value: "alexnet", Usage: "the net: " + strings.Join(model.Names(), ", ")},
					&cli.IntFlag{Name: "classes", Value: 1000, Usage: "classes of the last layer"},
					&cli.IntFlag{Name: "channels", Value: 3, Usage: "input channels (the small nets)"},
					&cli.StringFlag{Name: "lrn", Value: "paper", Usage: "LRN α convention: paper or caffe, or none"},
					&cli.StringFlag{Name: "activation", Value: "relu", Usage: "relu or tanh"},
					&cli.StringFlag{Name: "pool", Value: "3/2", Usage: "max pooling: 3/2 (overlapping) or 2/2"},
				},
				Action: inspectCmd},
			devicesCommand(),
			prepareCommand(),
			evalCommand(),
			predictCommand(),
			benchCommand(),
			plotCommand(),
			kernelsCommand(),
			{Name: "nets", Usage: "list the nets", Action: func(*cli.Context) error { fmt.Print(model.Describe()); return nil }},
			{Name: "forward", Usage: "run inference on a preprocessed float32 tensor named input (N,C,H,W)",
				Flags: []cli.Flag{
					&cli.StringFlag{Name: "net", Required: true, Usage: "the net the weights belong to"},
					&cli.StringFlag{Name: "weights", Required: true, Usage: "a safetensors file of the net's weights"},
					&cli.StringFlag{Name: "input", Required: true, Usage: "a safetensors file holding `input` (N,C,H,W) float32"},
					&cli.StringFlag{Name: "output", Required: true, Usage: "the safetensors file to write `logits` (N,classes) to"},
					&cli.BoolFlag{Name: "layers", Usage: "also write every layer's output under the layer's name"},
					&cli.StringFlag{Name: "lrn", Value: "", Usage: "LRN α convention (default: the one stored with the weights, else paper)"},
					&cli.StringFlag{Name: "gpus", Value: "cpu", Usage: "devices, as for train"},
				},
				Action: forwardCmd},
		},
	}
}

func trainCmd(c *cli.Context) error {
	if c.NArg() > 0 {
		return fmt.Errorf("unexpected argument %q (flags start with --; see trainer --help)", c.Args().First())
	}
	dir := c.String("resume")
	var cfg train.Config
	if dir != "" {
		for _, f := range c.FlagNames() {
			if c.IsSet(f) && f != "resume" && f != "epochs" && f != "data" && f != "gpus" && f != "other-replicas" && f != "rank-timeout" {
				return fmt.Errorf("--%s with --resume: a resumed run keeps its config.json; only --epochs, --data (the same data, moved) and --gpus may change", f)
			}
		}
	} else {
		cfg = train.Config{
			Net: c.String("net"), LRN: c.String("lrn"), Activation: c.String("activation"), Pool: c.String("pool"),
			GPUs: c.String("gpus"), Threads: c.Int("threads"), Precision: c.String("precision"), Deterministic: c.Bool("deterministic"),
			Data: c.String("data"), Epochs: c.Int("epochs"), Batch: c.Int("batch"), LR: c.Float64("lr"),
			Momentum: c.Float64("momentum"), WeightDecay: c.Float64("weight-decay"), Seed: c.Uint64("seed"),
			ValSplit: c.Int("val-split"), Limit: c.Int("limit"), ValLimit: c.Int("val-limit"),
			Patience: c.Int("patience"), LRMargin: c.Float64("lr-margin"), LRDrops: c.Int("lr-drops"), LRSteps: c.String("lr-steps"),
			EarlyStop: c.Bool("early-stop"), Out: c.String("out"),
			CheckpointSteps: c.Int("checkpoint-steps"), CheckpointMinutes: c.Float64("checkpoint-minutes"),
			RankTimeout: c.Duration("rank-timeout"),
		}
		if c.Bool("tf32") {
			if c.IsSet("precision") && cfg.Precision != "tf32" {
				return fmt.Errorf("--tf32 with --precision %s: --tf32 is --precision tf32; give one of them", cfg.Precision)
			}
			cfg.Precision = "tf32"
		}
		if cfg.GPUs == "" {
			var why string
			cfg.GPUs, why = open.AutoGPUsFor(cfg.Net)
			fmt.Fprintln(os.Stderr, "trainer:", why)
		}
		if cfg.Out == "" {
			cfg.Out = filepath.Join("runs", cfg.Net+"-"+time.Now().Format("20060102-150405"))
		}
		dir = cfg.Out
	}
	// The first SIGINT or SIGTERM (a preempted instance) finishes the step,
	// saves a checkpoint and exits 0; a second exits at once. A closed
	// stdout (trainer train | head) stops the run as the first signal does.
	ctx, stop, interrupt := interruptible("stopping after this step to save a checkpoint",
		func() string { return "exiting without saving; " + train.OnDisk(dir) })
	defer stop()
	log := &pipeWriter{w: os.Stdout, broken: func() {
		fmt.Fprintln(os.Stderr, "trainer: standard output was closed: stopping after this step to save a checkpoint")
		interrupt()
	}}

	var err error
	if c.String("resume") != "" {
		var o train.ResumeOptions // the run's own epochs and data
		if c.IsSet("epochs") {
			if o.Epochs = c.Int("epochs"); o.Epochs < 1 {
				return fmt.Errorf("--epochs %d: train for at least 1 epoch in all", o.Epochs)
			}
		}
		if c.IsSet("data") {
			o.Data = c.String("data")
		}
		o.GPUs = c.String("gpus")
		o.OtherReplicas = c.Bool("other-replicas")
		o.RankTimeout = c.Duration("rank-timeout")
		_, err = train.Resume(ctx, dir, o, log)
	} else {
		_, err = train.Run(ctx, cfg, log)
	}
	if errors.Is(err, train.ErrInterrupted) {
		fmt.Fprintln(os.Stderr, "trainer:", err)
		return nil
	}
	return err
}

// pipeWriter writes to w until a write fails (a closed pipe), then calls
// broken once and drops what follows, so that the run can stop cleanly.
type pipeWriter struct {
	w      io.Writer
	broken func()
	failed bool
}

func (p *pipeWriter) Write(b []byte) (int, error) {
	if !p.failed {
		if _, err := p.w.Write(b); err != nil {
			p.failed = true
			p.broken()
		}
	}
	return len(b), nil
}

func inspectCmd(c *cli.Context) error {
	n, err := model.Build(c.String("net"), model.Options{Channels: c.Int("channels"), Classes: c.Int("classes"), LRN: c.String("lrn"),
		Activation: c.String("activation"), Pool: c.String("pool")})
	if err != nil {
		return err
	}
	fmt.Print(n.Describe())
	return nil
}

func forwardCmd(c *cli.Context) error {
	for _, f := range []string{"weights", "input"} {
		if sameFile(c.String("output"), c.String(f)) {
			return fmt.Errorf("--output %s is the --%s file; choose another name so it is not overwritten", c.String("output"), f)
		}
	}
	net, w, err := open.NetWeights(c.String("weights"), c.String("net"), c.String("lrn"))
	if err != nil {
		return err
	}
	in, _, err := model.ReadSafetensors(c.String("input"))
	if err != nil {
		return fmt.Errorf("--input: %w", err)
	}
	x, ok := in["input"]
	if !ok || len(x.Shape) != 4 {
		return fmt.Errorf("--input %s: needs a float32 tensor named input of shape (N,C,H,W)", c.String("input"))
	}
	if s := net.Input; x.Shape[1] != s.C || x.Shape[2] != s.H || x.Shape[3] != s.W || x.Shape[0] < 1 {
		return fmt.Errorf("--input %s: input is %v; net %s takes (N,%d,%d,%d)", c.String("input"), x.Shape, net.Name, s.C, s.H, s.W)
	}
	n := x.Shape[0]
	r, err := open.Place(net, w, c.String("gpus"), open.DeviceOptions{}, n)
	if err != nil {
		return err
	}
	defer r.Close()
	res, err := r.Eval(parallel.Batch{N: n, Images: x.Data})
	if err != nil {
		return err
	}
	names := []string{net.Logits().Name}
	if c.Bool("layers") {
		names = nil
		for _, l := range net.Layers[1:] {
			names = append(names, l.Name)
		}
	}
	outs, err := r.Outputs(n, names)
	if err != nil {
		return err
	}
	tensors := map[string]model.Tensor{"logits": {Shape: []int{n, net.Classes}, Data: outs[net.Logits().Name]}}
	if c.Bool("layers") {
		for _, l := range net.Layers[1:] {
			shape := []int{n, l.Out.C, l.Out.H, l.Out.W}
			if l.Out.H == 1 && l.Out.W == 1 {
				shape = []int{n, l.Out.C}
			}
			tensors[l.Name] = model.Tensor{Shape: shape, Data: outs[l.Name]}
		}
		tensors["prob"] = model.Tensor{Shape: []int{n, net.Classes}, Data: res.Prob}
	}
	if err := model.WriteSafetensors(c.String("output"), tensors, map[string]string{"net": net.Name, "blas": open.BLAS()}); err != nil {
		return fmt.Errorf("--output: %w", err)
	}
	fmt.Printf("wrote %s: logits (%d, %d)\n", c.String("output"), n, net.Classes)
	return nil
}

func sameFile(a, b string) bool {
	sa, err1 := os.Stat(a)
	sb, err2 := os.Stat(b)
	return err1 == nil && err2 == nil && os.SameFile(sa, sb)
}

// interruptible returns a context cancelled by the first SIGINT or SIGTERM,
// saying first on stderr; a second signal says last() and exits at once.
// interrupt cancels the context as the first signal does, silently. stop
// releases the signals. A write to a closed stdout then returns an error
// (EPIPE) instead of killing the process by SIGPIPE.
func interruptible(first string, last func() string) (ctx context.Context, stop, interrupt func()) {
	ctx, cancel := context.WithCancel(context.Background())
	sig := make(chan os.Signal, 2)
	signal.Notify(sig, os.Interrupt, syscall.SIGTERM)
	pipe := make(chan os.Signal, 1)
	signal.Notify(pipe, syscall.SIGPIPE)
	go func() {
		if _, ok := <-sig; !ok {
			return
		}
		fmt.Fprintf(os.Stderr, "\ntrainer: %s (signal again to exit at once)\n", first)
		cancel()
		if _, ok := <-sig; ok {
			fmt.Fprintf(os.Stderr, "trainer: %s\n", last())
			os.Exit(130)
		}
	}()
	return ctx, func() {
		signal.Stop(sig)
		signal.Stop(pipe)
		close(sig)
		cancel()
	}, cancel
}
