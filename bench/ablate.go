package bench

import (
	"context"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strings"

	"github.com/alexnet-go/trainer/train"
)

// Ablation is one of the paper's ablations: a comparison of the variant
// (first arm) against the paper's choice (second arm), so that the report's
// delta, last − first, is what the paper's choice gains.
type Ablation struct {
	Key         string // --only's name and the report's sub-directory
	Title       string
	Variant     string // the first arm's name
	PaperArm    string // the second arm's name: the paper's choice
	Set         func(c *train.Config, paper bool)
	Paper       [2]float64
	PaperSource string
	Claim       string // the paper's claim, for ablate.md's summary
}

// Ablations are the paper's ablations bench ablate knows.
var Ablations = []Ablation{
	{Key: "relu", Title: "ReLU against tanh (§3.1, Figure 1)", Variant: "tanh", PaperArm: "relu",
		Set: func(c *train.Config, paper bool) { c.Activation = pick(paper, "relu", "tanh") },
		// Figure 1 is about training speed, not test error: its claim is
		// the table's "epochs to 25% train err" column.
		PaperSource: "Figure 1: ReLU reaches 25% training error 6× sooner (CIFAR-10, 4-layer net)",
		Claim:       "25% training error 6× sooner (Figure 1)"},
	{Key: "lrn", Title: "Local response normalization against none (§3.3)", Variant: "no LRN", PaperArm: "LRN",
		Set:   func(c *train.Config, paper bool) { c.LRN = pick(paper, "paper", "none") },
		Paper: [2]float64{-1.4, -1.2}, PaperSource: "LRN vs none, ILSVRC, §3.3",
		Claim: "−1.4 / −1.2 (CIFAR-10: 13% → 11% test error)"},
	{Key: "pool", Title: "Overlapping pooling 3/2 against 2/2 (§3.4)", Variant: "pool 2/2", PaperArm: "pool 3/2",
		Set:   func(c *train.Config, paper bool) { c.Pool = pick(paper, "3/2", "2/2") },
		Paper: [2]float64{-0.4, -0.3}, PaperSource: "overlapping z=3, s=2 vs z=s=2 pooling, ILSVRC, §3.4",
		Claim: "−0.4 / −0.3"},
}

func pick(paper bool, yes, no string) string {
	if paper {
		return yes
	}
	return no
}

// AblationKeys are the names --only takes.
func AblationKeys() []string {
	var keys []string
	for _, a := range Ablations {
		keys = append(keys, a.Key)
	}
	return keys
}

// AblateOptions configure Ablate.
type AblateOptions struct {
	Only  []string     // the ablations' keys, in the order to run
	Base  train.Config // Net and GPUs are every arm's; Seed and Out are set per run
	Seeds []uint64
	Out   string // one sub-directory per ablation, ablate.md beside them
}

// Ablate runs each ablation as a Compare of the variant against the
// paper's choice, logging each report as it is done, and writes ablate.md
// to o.Out. Every ablation's paper's arm is the same net with the same
// config, so the first ablation's runs serve the others.
func Ablate(ctx context.Context, o AblateOptions, log io.Writer) ([]*Report, error) {
	var todo []Ablation
	for _, k := range o.Only {
		k = strings.TrimSpace(k)
		i := slices.IndexFunc(Ablations, func(a Ablation) bool { return a.Key == k })
		if i < 0 {
			return nil, fmt.Errorf("--only %q: %q is no ablation (use %s, separated by commas)", strings.Join(o.Only, ","), k, strings.Join(AblationKeys(), ", "))
		}
		if !slices.ContainsFunc(todo, func(a Ablation) bool { return a.Key == k }) {
			todo = append(todo, Ablations[i])
		}
	}
	var reps []*Report
	for i, a := range todo {
		dir := filepath.Join(o.Out, a.Key)
		if i > 0 {
			first := todo[0]
			if err := shareBaseline(filepath.Join(o.Out, first.Key, "runs"), first.PaperArm, filepath.Join(dir, "runs"), a.PaperArm, o.Seeds); err != nil {
				return nil, err
			}
		}
		rep, err := Compare(ctx, CompareOptions{
			Title: fmt.Sprintf("%s: %s vs %s on %s", a.Title, a.Variant, a.PaperArm, o.Base.Net),
			Arms: []Arm{
				{Name: a.Variant, Net: o.Base.Net, GPUs: o.Base.GPUs, Edit: func(c *train.Config) { a.Set(c, false) }},
				{Name: a.PaperArm, Net: o.Base.Net, GPUs: o.Base.GPUs, Edit: func(c *train.Config) { a.Set(c, true) }},
			},
			Seeds: o.Seeds, Base: o.Base, Out: dir,
			Paper: a.Paper, PaperSource: a.PaperSource,
		}, log)
		if err != nil {
			return nil, err
		}
		fmt.Fprint(log, rep.Markdown())
		fmt.Fprintf(log, "\nwrote %s/report.md, report.json, errors.png\n\n", dir)
		reps = append(reps, rep)
	}
	path := filepath.Join(o.Out, "ablate.md")
	if err := os.WriteFile(path, []byte(ablateMarkdown(todo, reps)), 0o644); err != nil {
		return nil, fmt.Errorf("--out %s: %v", o.Out, err)
	}
	fmt.Fprintf(log, "wrote %s\n", path)
	return reps, nil
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
		src := filepath.Join(fromRuns, runName(fromArm, s))
		dst := filepath.Join(toRuns, runName(toArm, s))
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
func ablateMarkdown(todo []Ablation, reps []*Report) string {
	var b strings.Builder
	b.WriteString("# The paper's ablations\n\n")
	b.WriteString("Each row trains the variant and the paper's choice on the same data, schedule (the paper's learning rate for both) and seeds; Δ is the paper's choice − the variant, in points of test error (the last epoch's, mean over seeds; the schedule decided on held-out training images, never on the test set).\n\n")
	b.WriteString("| ablation | Δ top-1 | Δ top-5 | epochs to 25% train err (variant; paper's) | the paper |\n|---|---|---|---|---|\n")
	for i, r := range reps {
		v, p := r.Arms[0], r.Arms[len(r.Arms)-1]
		fmt.Fprintf(&b, "| %s − %s | %+.2f | %+.2f | %s; %s | %s |\n", p.Name, v.Name, r.Delta[0], r.Delta[1],
			epochsList(v.EpochsTo25), epochsList(p.EpochsTo25), todo[i].Claim)
	}
	for i, r := range reps {
		sub := *r
		sub.Figures = nil
		for _, f := range r.Figures {
			sub.Figures = append(sub.Figures, filepath.ToSlash(filepath.Join(todo[i].Key, f)))
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
