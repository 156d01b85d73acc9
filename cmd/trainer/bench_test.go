package main

import (
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/alexnet-go/trainer/bench"
)

// bench error --quick and bench speed --quick, as the README says to run
// them: each writes its report and prints its table.
func TestBenchQuick(t *testing.T) {
	if _, err := os.Stat("/usr/share/datasets/fashion-mnist"); err != nil {
		t.Skip("no Fashion-MNIST at /usr/share/datasets/fashion-mnist (Debian package dataset-fashion-mnist)")
	}
	out := t.TempDir()
	stdout, err := run(t, "bench", "error", "--quick", "--gpus", "cpu;cpu,cpu", "--out", filepath.Join(out, "error"))
	if err != nil {
		t.Fatalf("bench error --quick: %v\n%s", err, stdout)
	}
	var rep bench.Report
	b, err := os.ReadFile(filepath.Join(out, "error", "report.json"))
	if err != nil || json.Unmarshal(b, &rep) != nil {
		t.Fatalf("bench error --quick: report.json: %v", err)
	}
	if len(rep.Arms) != 2 || rep.Arms[0].Net != "alexnet-small-1gpu" || rep.Arms[1].Net != "alexnet-small" ||
		len(rep.Arms[1].Top1) != 2 || rep.Config.Limit != 256 || rep.Config.Epochs != 1 {
		t.Errorf("bench error --quick: report %+v; want both nets, 2 seeds, 256 images, 1 epoch", rep)
	}
	if !strings.Contains(stdout, "| alexnet-small |") || !strings.Contains(stdout, "report.md") {
		t.Errorf("bench error --quick printed:\n%s", stdout)
	}

	stdout, err = run(t, "bench", "speed", "--quick", "--placements", "cpu;cpu,cpu", "--out", filepath.Join(out, "speed"))
	if err != nil {
		t.Fatalf("bench speed --quick: %v\n%s", err, stdout)
	}
	var rows []bench.SpeedRow
	b, err = os.ReadFile(filepath.Join(out, "speed", "speed.json"))
	if err != nil || json.Unmarshal(b, &rows) != nil {
		t.Fatalf("bench speed --quick: speed.json: %v", err)
	}
	if len(rows) != 4 || rows[0].Batch != 16 {
		t.Fatalf("bench speed --quick: %d rows; want 2 nets × 2 placements at batch 16", len(rows))
	}
	for _, r := range rows {
		if r.ImagesPerS <= 0 || len(r.StepsMs) != 2 {
			t.Errorf("bench speed --quick: %s on %s: %v images/s over %d steps", r.Net, r.Placement, r.ImagesPerS, len(r.StepsMs))
		}
	}
}

// Each seed is one run of each arm: a repeated seed is refused.
func TestBenchSeedsTwice(t *testing.T) {
	_, err := run(t, "bench", "error", "--seeds", "1,1", "--out", t.TempDir())
	if err == nil || !strings.Contains(err.Error(), "seed 1 twice") {
		t.Errorf("--seeds 1,1: %v", err)
	}
}

// bench scale --quick, as the README says to run it: 1, 2 and 4 replicas
// on CPU devices, its table printed and its report written; a bad
// --replicas is refused, naming the flag.
func TestBenchScaleQuick(t *testing.T) {
	out := filepath.Join(t.TempDir(), "scale")
	stdout, err := run(t, "bench", "scale", "--quick", "--out", out)
	if err != nil {
		t.Fatalf("bench scale --quick: %v\n%s", err, stdout)
	}
	var rows []bench.ScaleRow
	b, err := os.ReadFile(filepath.Join(out, "scale.json"))
	if err != nil || json.Unmarshal(b, &rows) != nil {
		t.Fatalf("bench scale --quick: scale.json: %v", err)
	}
	if len(rows) != 3 || rows[2].Replicas != 4 || rows[2].Batch != 8 || len(rows[2].StepsMs) != 1 || rows[2].ReducedBytes == 0 {
		t.Errorf("bench scale --quick: rows %+v; want 1, 2 and 4 replicas at batch 8, one step each", rows)
	}
	if !strings.Contains(stdout, "| 2 | `cpu,cpu,cpu,cpu` | 4 |") || !strings.Contains(stdout, "scale.md") {
		t.Errorf("bench scale --quick printed:\n%s", stdout)
	}
	if _, err := run(t, "bench", "scale", "--replicas", "1,x", "--out", out); err == nil || !strings.Contains(err.Error(), "--replicas") {
		t.Errorf("--replicas 1,x: %v", err)
	}
}
