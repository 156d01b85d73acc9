package main

import (
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/urfave/cli/v2"
)

// runAblate runs bench ablate in-process, as runEval does eval, with stdout
// captured.
func runAblate(t *testing.T, args ...string) (string, error) {
	t.Helper()
	app := &cli.App{Name: "trainer", Commands: []*cli.Command{{Name: "bench", Subcommands: []*cli.Command{benchAblateCommand()}}}}
	old := os.Stdout
	r, w, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	os.Stdout = w
	done := make(chan string)
	go func() { b, _ := io.ReadAll(r); done <- string(b) }()
	err = app.Run(append([]string{"trainer", "bench", "ablate"}, args...))
	w.Close()
	os.Stdout = old
	return <-done, err
}

// The quick preset writes each ablation's report in its own directory and
// ablate.md with the paper's numbers, and trains the paper's net once for
// all three.
func TestBenchAblateQuick(t *testing.T) {
	if _, err := os.Stat("/usr/share/datasets/fashion-mnist"); err != nil {
		t.Skip("no Fashion-MNIST at /usr/share/datasets/fashion-mnist (Debian package dataset-fashion-mnist)")
	}
	out := t.TempDir()
	stdout, err := runAblate(t, "--quick", "--out", out)
	if err != nil {
		t.Fatalf("bench ablate: %v\n%s", err, stdout)
	}
	for _, f := range []string{"ablate.md", "relu/report.md", "relu/errors.png", "lrn/report.md", "lrn/errors.png", "pool/report.md", "pool/report.json", "pool/errors.png"} {
		if _, err := os.Stat(filepath.Join(out, f)); err != nil {
			t.Errorf("no %s: %v", f, err)
		}
	}
	// The "LRN" and "pool 3/2" arms are the "relu" arm: trained once, linked.
	for _, seed := range []string{"1", "2"} {
		for _, link := range []string{"lrn/runs/LRN-seed" + seed, "pool/runs/pool_3_2-seed" + seed} {
			if fi, err := os.Lstat(filepath.Join(out, link)); err != nil || fi.Mode()&os.ModeSymlink == 0 {
				t.Errorf("%s is not a link to relu's baseline run: %v", link, err)
			}
		}
	}
	b, err := os.ReadFile(filepath.Join(out, "ablate.md"))
	if err != nil {
		t.Fatal(err)
	}
	md := string(b)
	for _, want := range []string{
		"| relu − tanh |", "| pool 3/2 − pool 2/2 |", "| LRN − no LRN |",
		"| tanh | alexnet-small |", "| pool 2/2 | alexnet-small |", "| pool 3/2 | alexnet-small |", "| no LRN | alexnet-small |",
		"epochs to 25% train err", "Figure 1: ReLU reaches 25% training error 6× sooner",
		"pool 3/2 − pool 2/2: top-1", "−0.4 / −0.3", "-0.4 / -0.3", "−1.4 / −1.2", "-1.4 / -1.2",
		"(relu/errors.png)", "(pool/errors.png)", "(lrn/errors.png)",
	} {
		if !strings.Contains(md, want) {
			t.Errorf("ablate.md lacks %q:\n%s", want, md)
		}
	}
	if i, j, k := strings.Index(md, "## ReLU"), strings.Index(md, "## Local response"), strings.Index(md, "## Overlapping"); i < 0 || i > j || j > k {
		t.Errorf("ablate.md must hold relu's report, then lrn's, then pool's:\n%s", md)
	}
	if !strings.Contains(stdout, "pool 3/2 − pool 2/2: top-1") || !strings.Contains(stdout, "ablate.md") {
		t.Errorf("stdout lacks the reports:\n%s", stdout)
	}
}

func TestBenchAblateBadOnly(t *testing.T) {
	_, err := runAblate(t, "--only", "dropout", "--out", t.TempDir())
	if err == nil || !strings.Contains(err.Error(), `--only "dropout"`) || strings.Contains(err.Error(), "\n") {
		t.Errorf("--only dropout: %v, want one line naming --only", err)
	}
}
