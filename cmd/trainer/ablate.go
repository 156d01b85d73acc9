package main

import (
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"

	"github.com/urfave/cli/v2"

	"github.com/alexnet-go/trainer/bench"
	"github.com/alexnet-go/trainer/train"
)

// ablation is one of the paper's ablations: a comparison of the variant
// (first arm) against the paper's choice (second arm), so that the report's
// delta, last − first, is what the paper's choice gains.
type ablation struct {
	key         string // --only's name and the report's sub-directory
	title       string
	variant     string // the first arm's name
	paperArm    string // the second arm's name: the paper's choice
	set         func(c *train.Config, paper bool)
	paper       [2]float64
	paperSource string
	claim       string // the paper's claim, for ablate.md's summary
}

var ablations = []ablation{
	{key: "relu", title: "ReLU against tanh (§3.1, Figure 1)", variant: "tanh", paperArm: "relu",
		set: func(c *train.Config, paper bool) { c.Activation = pick(paper, "relu", "tanh") },
		// Figure 1 is about training speed, not test error: its claim is
		// the table's "epochs to 25% train err" column.
		paperSource: "Figure 1: ReLU reaches 25% training error 6× sooner (CIFAR-10, 4-layer net)",
		claim:       "25% training error 6× sooner (Figure 1)"},
	{key: "lrn", title: "Local response normalization against none (§3.3)", variant: "no LRN", paperArm: "LRN",
		set:   func(c *train.Config, paper bool) { c.LRN = pick(paper, "paper", "none") },
		paper: [2]float64{-1.4, -1.2}, paperSource: "LRN vs none, ILSVRC, §3.3",
		claim: "−1.4 / −1.2 (CIFAR-10: 13% → 11% test error)"},
	{key: "pool", title: "Overlapping pooling 3/2 against 2/2 (§3.4)", variant: "pool 2/2", paperArm: "pool 3/2",
		set:   func(c *train.Config, paper bool) { c.Pool = pick(paper, "3/2", "2/2") },
		paper: [2]float64{-0.4, -0.3}, paperSource: "overlapping z=3, s=2 vs z=s=2 pooling, ILSVRC, §3.4",
		claim: "−0.4 / −0.3"},
}

func pick(paper bool, yes, no string) string {
	if paper {
		return yes
	}
	return no
}

// benchAblateCommand is `trainer bench ablate`: the paper's ablations,
// each a bench.Compare of the variant against the paper's choice.
func benchAblateCommand() *cli.Command {
	d := train.Defaults()
	var keys []string
	for _, a := range ablations {
		keys = append(keys, a.key)
	}
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
	var todo []ablation
	for _, k := range strings.Split(c.String("only"), ",") {
		k = strings.TrimSpace(k)
		i := slices.IndexFunc(ablations, func(a ablation) bool { return a.key == k })
		if i < 0 {
			return fmt.Errorf("--only %q: %q is no ablation (use relu, lrn, pool, separated by commas)", c.String("only"), k)
		}
		if !slices.ContainsFunc(todo, func(a ablation) bool { return a.key == k }) {
			todo = append(todo, ablations[i])
		}
	}
	base, seeds, out, err := benchBase(c, "ablate")
	if err != nil {
		return err
	}
	base.Net, base.GPUs = c.String("net"), c.String("gpus")
	if !c.IsSet("gpus") {
		var why string
		base.GPUs, why = train.AutoGPUs()
		fmt.Fprintln(os.Stderr, "trainer:", why)
	}
	if err := base.Validate(); err != nil {
		return err
	}

	var reps []*bench.Report
	var first *ablation // the first ablation run: its paper's arm is every other's
	for _, a := range todo {
		dir := filepath.Join(out, a.key)
		if first != nil {
			from := filepath.Join(out, first.key, "runs")
			if err := shareBaseline(from, first.paperArm, filepath.Join(dir, "runs"), a.paperArm, seeds); err != nil {
				return err
			}
		}
		rep, err := bench.Compare(c.Context, bench.CompareOptions{
			Title: fmt.Sprintf("%s: %s vs %s on %s", a.title, a.variant, a.paperArm, base.Net),
			Arms: []bench.Arm{
				{Name: a.variant, Net: base.Net, GPUs: base.GPUs, Edit: func(c *train.Config) { a.set(c, false) }},
				{Name: a.paperArm, Net: base.Net, GPUs: base.GPUs, Edit: func(c *train.Config) { a.set(c, true) }},
			},
			Seeds: seeds, Base: base, Out: dir,
			Paper: a.paper, PaperSource: a.paperSource,
		}, os.Stdout)
		if err != nil {
			return err
		}
		fmt.Print(rep.Markdown())
		fmt.Printf("\nwrote %s/report.md, report.json, errors.png\n\n", dir)
		if first == nil {
			first = &a
		}
		reps = append(reps, rep)
	}
	path := filepath.Join(out, "ablate.md")
	if err := os.WriteFile(path, []byte(ablateMarkdown(todo, reps)), 0o644); err != nil {
		return fmt.Errorf("--out %s: %v", out, err)
	}
	fmt.Printf("wrote %s\n", path)
	return nil
}

// armDir is the run directory bench.Compare gives an arm's seed: the arm's
// name with spaces, slashes and commas made underscores.
func armDir(arm string, seed uint64) string {
	return fmt.Sprintf("%s-seed%d", strings.NewReplacer(" ", "_", "/", "_", ",", "_").Replace(arm), seed)
}

// shareBaseline links toRuns/toArm-seedK to fromRuns/fromArm-seedK where
// that run exists and this one does not: every ablation's second arm is
// the paper's net with the same config, so one training serves them all
// (bench.Compare reuses a finished run and resumes an unfinished one). A
// link that does not match bench.Compare's naming is simply not used.
func shareBaseline(fromRuns, fromArm, toRuns, toArm string, seeds []uint64) error {
	if err := os.MkdirAll(toRuns, 0o755); err != nil {
		return fmt.Errorf("--out: %v", err)
	}
	for _, s := range seeds {
		src := filepath.Join(fromRuns, armDir(fromArm, s))
		dst := filepath.Join(toRuns, armDir(toArm, s))
		if _, err := os.Stat(filepath.Join(src, "config.json")); err != nil {
			continue
		}
		if _, err := os.Lstat(dst); err == nil {
			continue // already trained here, or linked
		}
		rel, err := filepath.Rel(toRuns, src)
		if err != nil {
			rel, _ = filepath.Abs(src)
		}
		if err := os.Symlink(rel, dst); err != nil {
			return fmt.Errorf("--out: sharing the baseline run: %v", err)
		}
	}
	return nil
}

// ablateMarkdown is ablate.md: a summary of every ablation against the
// paper's claim, then each report with its figure's path made relative to
// ablate.md.
func ablateMarkdown(todo []ablation, reps []*bench.Report) string {
	var b strings.Builder
	b.WriteString("# The paper's ablations\n\n")
	b.WriteString("Each row trains the variant and the paper's choice on the same data, schedule (the paper's learning rate for both) and seeds; Δ is the paper's choice − the variant, in points of test error (mean over seeds).\n\n")
	b.WriteString("| ablation | Δ top-1 | Δ top-5 | epochs to 25% train err (variant; paper's) | the paper |\n|---|---|---|---|---|\n")
	for i, r := range reps {
		v, p := r.Arms[0], r.Arms[len(r.Arms)-1]
		fmt.Fprintf(&b, "| %s − %s | %+.2f | %+.2f | %s; %s | %s |\n", p.Name, v.Name, r.Delta[0], r.Delta[1],
			epochsList(v.EpochsTo25), epochsList(p.EpochsTo25), todo[i].claim)
	}
	for i, r := range reps {
		sub := *r
		sub.Figures = nil
		for _, f := range r.Figures {
			sub.Figures = append(sub.Figures, filepath.ToSlash(filepath.Join(todo[i].key, f)))
		}
		b.WriteString("\n" + sub.Markdown())
	}
	return b.String()
}

// epochsList shows epochs-to-25% per seed, "–" for never.
func epochsList(v []int) string {
	parts := make([]string, len(v))
	for i, x := range v {
		parts[i] = "–"
		if x > 0 {
			parts[i] = fmt.Sprint(x)
		}
	}
	return strings.Join(parts, ", ")
}
