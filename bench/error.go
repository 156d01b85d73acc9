package bench

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"math"
	"os"
	"path/filepath"
	"sort"
	"strings"

	"github.com/alexnet-go/trainer/metrics"

	"github.com/alexnet-go/trainer/model"
	"github.com/alexnet-go/trainer/plot"
	"github.com/alexnet-go/trainer/train"
)

// Arm is one side of a comparison: a net, where it runs, and what changes
// in its training config.
type Arm struct {
	Name string                // the row's label
	Net  string                // model.Build's name
	GPUs string                // its placement
	Edit func(c *train.Config) // further changes to the base config; may be nil
}

// CompareOptions configure a comparison of arms over several seeds each,
// every run on the same data, schedule and seeds.
type CompareOptions struct {
	Title string
	Arms  []Arm
	Seeds []uint64
	Base  train.Config // Net, GPUs, Seed and Out are set per run
	Out   string       // the report's directory; runs go in Out/runs/
	// Paper is the paper's claim, printed beside the measured difference
	// of the last arm against the first: top-1 and top-5, in points.
	Paper       [2]float64
	PaperSource string
}

// ArmResult is one arm's numbers over its seeds. Errors are fractions.
type ArmResult struct {
	Name   string    `json:"name"`
	Net    string    `json:"net"`
	GPUs   string    `json:"gpus"`
	Params int       `json:"params"`
	Seeds  []uint64  `json:"seeds"`
	Top1   []float64 `json:"top1_err"` // the last epoch's test error, per seed
	Top5   []float64 `json:"top5_err"`
	// Scored names the images Top1 and Top5 are errors on: "test" (never
	// used for a decision), "test (as val)" for runs from before the
	// held-out split, whose test set drove the schedule, or "val"
	// (prepared data).
	Scored string `json:"scored"`
	// BestEpoch is the epoch with the lowest validation error, per seed,
	// chosen on validation alone; BestTop1 is its test error.
	BestEpoch   []int     `json:"best_epoch"`
	BestTop1    []float64 `json:"best_top1_err"`
	BestMean    float64   `json:"best_top1_mean"`
	BestStd     float64   `json:"best_top1_std"`
	TrainTop1   []float64 `json:"train_top1_err"` // the last epoch's training error, per seed: underfitting shows as train ≈ test
	Seconds     []float64 `json:"train_seconds"`  // training time, per seed
	MovedBytes  int64     `json:"moved_bytes_per_epoch"`
	Top1Mean    float64   `json:"top1_mean"`
	Top1Std     float64   `json:"top1_std"`
	Top5Mean    float64   `json:"top5_mean"`
	Top5Std     float64   `json:"top5_std"`
	SecondsMean float64   `json:"train_seconds_mean"`
	// EpochsTo25 is the first epoch whose training error is below 25%, per
	// seed (0: never): the paper's Figure 1 measure.
	EpochsTo25 []int `json:"epochs_to_25pct_train_err"`
}

// Report is a comparison's outcome: what `trainer bench` prints and saves.
type Report struct {
	Title   string       `json:"title"`
	Config  train.Config `json:"config"`
	Arms    []ArmResult  `json:"arms"`
	Delta   [2]float64   `json:"delta_points"` // last arm − first arm, top-1 and top-5, in points
	Paper   [2]float64   `json:"paper_delta_points"`
	Source  string       `json:"paper_source"`
	Dir     string       `json:"-"`
	Figures []string     `json:"figures"`
}

// Compare trains every arm with every seed (reusing a finished run and
// resuming an interrupted one, so a long benchmark survives a stop), then
// writes report.md, report.json and the error curves, errors.png, to Out.
func Compare(ctx context.Context, o CompareOptions, log io.Writer) (*Report, error) {
	if len(o.Arms) < 2 || len(o.Seeds) < 1 {
		return nil, errors.New("bench: compare at least 2 arms over at least 1 seed")
	}
	if err := os.MkdirAll(filepath.Join(o.Out, "runs"), 0o755); err != nil {
		return nil, fmt.Errorf("bench: --out %s: %v", o.Out, err)
	}
	rep := &Report{Title: o.Title, Config: o.Base, Paper: o.Paper, Source: o.PaperSource, Dir: o.Out}
	var arms []plot.Arm
	for _, arm := range o.Arms {
		res := ArmResult{Name: arm.Name, Net: arm.Net, GPUs: arm.GPUs, Seeds: o.Seeds}
		group := plot.Arm{Name: arm.Name}
		for _, seed := range o.Seeds {
			c := o.Base
			c.Net, c.GPUs, c.Seed = arm.Net, arm.GPUs, seed
			if arm.Edit != nil {
				arm.Edit(&c)
			}
			c.Out = filepath.Join(o.Out, "runs", runName(arm.Name, seed))
			fmt.Fprintf(log, "bench: %s, seed %d → %s\n", arm.Name, seed, c.Out)
			ms, err := runOrResume(ctx, c, log)
			if err != nil {
				return nil, fmt.Errorf("bench: %s seed %d: %w", arm.Name, seed, err)
			}
			last := ms[len(ms)-1]
			top1, top5, _, scored := last.Reported()
			res.Top1 = append(res.Top1, top1)
			res.Top5 = append(res.Top5, top5)
			res.TrainTop1 = append(res.TrainTop1, last.TrainTop1Err)
			if res.Scored == "" || res.Scored == scored {
				res.Scored = scored
			} else {
				res.Scored = "mixed: " + res.Scored + ", " + scored
			}
			best := ms[metrics.Best(ms)]
			bt1, _, _, _ := best.Reported()
			res.BestEpoch = append(res.BestEpoch, best.Epoch)
			res.BestTop1 = append(res.BestTop1, bt1)
			secs, to25 := 0.0, 0
			for _, m := range ms {
				secs += m.Seconds
				if to25 == 0 && m.TrainTop1Err < 0.25 {
					to25 = m.Epoch
				}
			}
			res.Seconds = append(res.Seconds, secs)
			res.EpochsTo25 = append(res.EpochsTo25, to25)
			res.MovedBytes = last.TransferBytes
			if res.Params == 0 {
				if res.Params, err = params(c); err != nil {
					return nil, err
				}
			}
			r, err := plot.ReadRun(c.Out)
			if err != nil {
				return nil, err
			}
			r.Name = fmt.Sprintf("%s seed %d", arm.Name, seed)
			group.Runs = append(group.Runs, r)
		}
		arms = append(arms, group)
		res.Top1Mean, res.Top1Std = meanStd(res.Top1)
		res.Top5Mean, res.Top5Std = meanStd(res.Top5)
		res.BestMean, res.BestStd = meanStd(res.BestTop1)
		res.SecondsMean, _ = meanStd(res.Seconds)
		rep.Arms = append(rep.Arms, res)
	}
	first, last := rep.Arms[0], rep.Arms[len(rep.Arms)-1]
	rep.Delta = [2]float64{100 * (last.Top1Mean - first.Top1Mean), 100 * (last.Top5Mean - first.Top5Mean)}
	if err := plot.ArmCurves(filepath.Join(o.Out, "errors.png"), arms); err != nil {
		return nil, err
	}
	rep.Figures = []string{"errors.png"}
	js, err := json.MarshalIndent(rep, "", "  ")
	if err != nil {
		return nil, err
	}
	if err := os.WriteFile(filepath.Join(o.Out, "report.json"), append(js, '\n'), 0o644); err != nil {
		return nil, fmt.Errorf("bench: %v", err)
	}
	if err := os.WriteFile(filepath.Join(o.Out, "report.md"), []byte(rep.Markdown()), 0o644); err != nil {
		return nil, fmt.Errorf("bench: %v", err)
	}
	return rep, nil
}

// runOrResume returns a finished run's metrics, resumes an interrupted one,
// or starts it.
func runOrResume(ctx context.Context, c train.Config, log io.Writer) ([]train.Metrics, error) {
	if _, err := os.Stat(filepath.Join(c.Out, "config.json")); err == nil {
		old, err := train.ReadConfig(c.Out)
		if err != nil {
			return nil, err
		}
		if err := old.Mismatch(c); err != nil {
			return nil, fmt.Errorf("%s was trained with %v: it is not a run of this benchmark's settings; give another --out, or remove it", c.Out, err)
		}
		ms, err := metrics.Read(c.Out)
		if err == nil && len(ms) >= c.Epochs {
			return ms[:c.Epochs], nil
		}
		return train.Resume(ctx, c.Out, train.ResumeOptions{Epochs: c.Epochs}, log)
	}
	return train.Run(ctx, c, log)
}

// params counts the parameters of run c: from its weights, or where they
// were not kept (runs copied from a GPU machine without them), from its
// net built on its data.
func params(c train.Config) (int, error) {
	w, _, err := model.ReadSafetensors(filepath.Join(c.Out, "weights.safetensors"))
	if errors.Is(err, fs.ErrNotExist) {
		net, err := train.NetOf(c)
		if err != nil {
			return 0, err
		}
		return net.Params(), nil
	}
	if err != nil {
		return 0, err
	}
	n := 0
	for _, t := range w {
		n += t.Len()
	}
	return n, nil
}

func meanStd(v []float64) (mean, std float64) {
	if len(v) == 0 {
		return 0, 0
	}
	for _, x := range v {
		mean += x
	}
	mean /= float64(len(v))
	if len(v) < 2 {
		return mean, 0
	}
	for _, x := range v {
		std += (x - mean) * (x - mean)
	}
	return mean, math.Sqrt(std / float64(len(v)-1))
}

// runName is the run directory of an arm's seed: the arm's name with
// spaces, slashes and commas made underscores.
func runName(arm string, seed uint64) string {
	return fmt.Sprintf("%s-seed%d", strings.NewReplacer(" ", "_", "/", "_", ",", "_").Replace(arm), seed)
}

// Markdown renders the report as a table with the paper's claim beside.
func (r *Report) Markdown() string {
	var b strings.Builder
	c := r.Config
	fmt.Fprintf(&b, "## %s\n\n", r.Title)
	scored := r.Arms[0].Scored
	for _, a := range r.Arms[1:] {
		if a.Scored != scored {
			scored = "mixed"
		}
	}
	test := "the full test set"
	switch {
	case scored == "val":
		test = "the val split (prepared data has no test set: the val split also drove the schedule)"
	case scored == "test (as val)":
		test = "the test set, which in these runs (from before the held-out split) also drove the schedule"
	case scored != "test":
		test = "mixed sets (" + scored + "): runs from before and after the held-out split"
	}
	if c.ValLimit > 0 {
		if scored == "test" {
			test = "the first " + model.Commas(c.ValLimit) + " test images"
		} else {
			test += "; its first " + model.Commas(c.ValLimit) + " images"
		}
	}
	train := "all training images"
	if c.Limit > 0 {
		train = "first " + limitString(c.Limit) + " training images"
	}
	val := "the last " + heldOutString(c.ValSplit) + " held out"
	if c.ValSplit < 0 {
		val = "the test set (runs from before the held-out split)"
	}
	fmt.Fprintf(&b, "Data %s (%s; validation: %s), %d epochs, batch %d, lr %g (%s), momentum %g, weight decay %g; seeds %s. "+
		"Test error is the last epoch's, on %s; \"best epoch\" is the epoch with the lowest validation error, chosen on validation alone, and its test error. Mean ± sample std over seeds, [min, max].\n\n",
		c.Data, train, val, c.Epochs, c.Batch, c.LR, scheduleString(c), c.Momentum, c.WeightDecay, seedList(r.Arms[0].Seeds), test)
	b.WriteString("| arm | net | placement | params | top-1 err % | top-5 err % | best epoch: top-1 err % | train top-1 err % | epochs to 25% train err | train s | moved / epoch |\n|---|---|---|---|---|---|---|---|---|---|---|\n")
	for _, a := range r.Arms {
		tm, _ := meanStd(a.TrainTop1)
		fmt.Fprintf(&b, "| %s | %s | %s | %s | %.2f ± %.2f [%.2f, %.2f] | %.2f ± %.2f | %s: %.2f ± %.2f | %.2f | %s | %.0f | %s |\n",
			a.Name, a.Net, a.GPUs, model.Commas(a.Params), 100*a.Top1Mean, 100*a.Top1Std, 100*minOf(a.Top1), 100*maxOf(a.Top1),
			100*a.Top5Mean, 100*a.Top5Std, intList(a.BestEpoch), 100*a.BestMean, 100*a.BestStd, 100*tm, intList(a.EpochsTo25), a.SecondsMean, model.Bytes(a.MovedBytes))
	}
	fmt.Fprintf(&b, "\n%s − %s: top-1 %+.2f points, top-5 %+.2f points.", r.Arms[len(r.Arms)-1].Name, r.Arms[0].Name, r.Delta[0], r.Delta[1])
	if r.Paper != [2]float64{} {
		fmt.Fprintf(&b, " The paper (%s): %+.1f / %+.1f.\n", r.Source, r.Paper[0], r.Paper[1])
	} else {
		fmt.Fprintf(&b, " The paper: %s.\n", r.Source)
	}
	for _, f := range r.Figures {
		fmt.Fprintf(&b, "\n![%s](%s)\n", r.Title, f)
	}
	return b.String()
}

// scheduleString says how c's rate falls.
func scheduleString(c train.Config) string {
	if c.LRSteps != "" {
		return "÷10 after epochs " + c.LRSteps
	}
	s := fmt.Sprintf("÷10 when the validation error has not fallen %g points below its best for %d epoch(s)", 100*c.LRMargin, c.Patience)
	if c.LRDrops > 0 {
		s += fmt.Sprintf(", at most %d times", c.LRDrops)
	}
	if c.EarlyStop {
		s += ", then stop"
	}
	return s
}

// heldOutString is --val-split's size in words.
func heldOutString(n int) string {
	if n == 0 {
		return "tenth of the training images (at most 5,000)"
	}
	return model.Commas(n) + " training images"
}

func limitString(n int) string {
	if n == 0 {
		return "all"
	}
	return model.Commas(n)
}

func seedList(s []uint64) string {
	parts := make([]string, len(s))
	for i, v := range s {
		parts[i] = fmt.Sprint(v)
	}
	return strings.Join(parts, ", ")
}

func intList(v []int) string {
	parts := make([]string, len(v))
	for i, x := range v {
		if x == 0 {
			parts[i] = "–"
		} else {
			parts[i] = fmt.Sprint(x)
		}
	}
	return strings.Join(parts, ", ")
}

func minOf(v []float64) float64 { s := append([]float64(nil), v...); sort.Float64s(s); return s[0] }
func maxOf(v []float64) float64 {
	s := append([]float64(nil), v...)
	sort.Float64s(s)
	return s[len(s)-1]
}
