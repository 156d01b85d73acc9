package bench

import (
	"context"
	"encoding/json"
	"io"
	"math"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/alexnet-go/trainer/metrics"
	"github.com/alexnet-go/trainer/train"
)

const fashion = "/usr/share/datasets/fashion-mnist"

// The quick variant of bench error: two arms, two seeds, tiny runs; the
// report holds what the runs wrote, and a second call reuses the runs.
func TestCompareQuick(t *testing.T) {
	if _, err := os.Stat(fashion); err != nil {
		t.Skipf("Fashion-MNIST not installed (apt install dataset-fashion-mnist): %v", err)
	}
	base := train.Defaults()
	base.Limit, base.ValLimit, base.Epochs, base.Batch, base.Out = 128, 200, 1, 32, "-"
	out := t.TempDir()
	o := CompareOptions{Title: "quick", Seeds: []uint64{1, 2}, Base: base, Out: out, Paper: [2]float64{-1.7, -1.2}, PaperSource: "§3.2",
		Arms: []Arm{{Name: "one tower", Net: "alexnet-small-1gpu", GPUs: "cpu"}, {Name: "two towers", Net: "alexnet-small", GPUs: "cpu,cpu"}}}
	rep, err := Compare(context.Background(), o, io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	if len(rep.Arms) != 2 || len(rep.Arms[1].Top1) != 2 {
		t.Fatalf("report %+v", rep)
	}
	two := rep.Arms[1]
	if two.Params != 714378 || rep.Arms[0].Params != 638826 {
		t.Errorf("params %d and %d", rep.Arms[0].Params, two.Params)
	}
	if two.MovedBytes == 0 || rep.Arms[0].MovedBytes != 0 {
		t.Errorf("moved bytes: one tower %d, two towers %d", rep.Arms[0].MovedBytes, two.MovedBytes)
	}
	m, _ := metrics.Read(filepath.Join(out, "runs", "two_towers-seed2"))
	// The report's error is the test set's, which decided nothing; the
	// best epoch is chosen on validation.
	if len(m) != 1 || m[0].TestTop1Err == nil || *m[0].TestTop1Err != two.Top1[1] || m[0].ValTop1Err == *m[0].TestTop1Err || two.Scored != "test" {
		t.Errorf("report's seed-2 error %v (%s), the run's metrics %+v", two.Top1, two.Scored, m)
	}
	if two.BestEpoch[1] != 1 || two.BestTop1[1] != two.Top1[1] {
		t.Errorf("best epoch %v, its test error %v; one epoch: want 1, %v", two.BestEpoch, two.BestTop1, two.Top1)
	}
	mean := (two.Top1[0] + two.Top1[1]) / 2
	if math.Abs(two.Top1Mean-mean) > 1e-12 || math.Abs(rep.Delta[0]-100*(two.Top1Mean-rep.Arms[0].Top1Mean)) > 1e-9 {
		t.Errorf("mean %v (want %v), delta %v", two.Top1Mean, mean, rep.Delta)
	}
	md, _ := os.ReadFile(filepath.Join(out, "report.md"))
	for _, want := range []string{"| one tower | alexnet-small-1gpu | cpu | 638,826 |", "The paper (§3.2): -1.7 / -1.2", "errors.png",
		"validation: the last tenth of the training images (at most 5,000) held out", "on the first 200 test images", "best epoch"} {
		if !strings.Contains(string(md), want) {
			t.Errorf("report.md lacks %q:\n%s", want, md)
		}
	}
	var js Report
	if b, err := os.ReadFile(filepath.Join(out, "report.json")); err != nil || json.Unmarshal(b, &js) != nil || len(js.Arms) != 2 {
		t.Errorf("report.json: %v", err)
	}
	if _, err := os.Stat(filepath.Join(out, "errors.png")); err != nil {
		t.Error(err)
	}
	// The runs are reused: the same numbers, without training again.
	began := time.Now()
	again, err := Compare(context.Background(), o, io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	if again.Arms[1].Top1Mean != two.Top1Mean || time.Since(began) > 5*time.Second {
		t.Errorf("second call: %v in %v; want the same numbers from the finished runs", again.Arms[1].Top1, time.Since(began))
	}
	// Runs copied without their weights (from a GPU machine) still make a
	// report: the parameters are counted from the net built on the data.
	for _, run := range []string{"one_tower-seed1", "one_tower-seed2", "two_towers-seed1", "two_towers-seed2"} {
		if err := os.Remove(filepath.Join(out, "runs", run, "weights.safetensors")); err != nil {
			t.Fatal(err)
		}
	}
	bare, err := Compare(context.Background(), o, io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	if bare.Arms[0].Params != 638826 || bare.Arms[1].Params != 714378 || bare.Arms[1].Top1Mean != two.Top1Mean {
		t.Errorf("without weights: params %d and %d, top-1 %v; want 638826, 714378, %v", bare.Arms[0].Params, bare.Arms[1].Params, bare.Arms[1].Top1Mean, two.Top1Mean)
	}
	if md, _ := os.ReadFile(filepath.Join(out, "report.md")); !strings.Contains(string(md), "first 128 training images") {
		t.Errorf("report.md does not state the training images used:\n%s", md)
	}
	// The runs are reused only for the settings they were trained with:
	// another rate, limit or batch over the same --out is refused.
	for _, edit := range []struct {
		set  func(c *train.Config)
		want string
	}{
		{func(c *train.Config) { c.LR = 0.02 }, "--lr 0.01, not 0.02"},
		{func(c *train.Config) { c.Limit = 256 }, "--limit 128, not 256"},
		{func(c *train.Config) { c.Batch = 16 }, "--batch 32, not 16"},
	} {
		other := o
		edit.set(&other.Base)
		if _, err := Compare(context.Background(), other, io.Discard); err == nil || !strings.Contains(err.Error(), edit.want) {
			t.Errorf("reusing the runs for other settings: %v, want an error saying %q", err, edit.want)
		}
	}
}

// The quick variant of bench speed: a row per placement, a CUDA one skipped
// in this build, bytes moved only by the split.
func TestSpeedQuick(t *testing.T) {
	rows, err := Speed(SpeedOptions{Nets: []string{"alexnet-small"}, Placements: []string{"cpu", "cpu,cpu", "0,1"}, Batch: 8, Repeats: 2, Threads: 1, Out: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	if len(rows) != 3 {
		t.Fatalf("%d rows", len(rows))
	}
	one, two, cuda := rows[0], rows[1], rows[2]
	if one.MovedBytes != 0 || two.MovedBytes == 0 || one.ImagesPerS <= 0 || two.GFLOPs <= 0 {
		t.Errorf("rows %+v %+v", one, two)
	}
	if cuda.Skipped == "" {
		t.Errorf("--gpus 0,1 without a CUDA backend: %+v", cuda)
	}
	if len(two.Devices) != 2 || two.MemoryBytes["cpu:0"] == 0 || two.MemoryBytes["cpu:1"] == 0 {
		t.Errorf("two-tower memory %v on %v", two.MemoryBytes, two.Devices)
	}
	var conv3, moved int64
	for _, l := range two.Layers {
		if l.Layer == "conv3a" && l.ForwardMs > 0 {
			conv3++
		}
		moved += l.MovedBytes
	}
	if conv3 != 1 || moved != two.MovedBytes {
		t.Errorf("per-layer rows: conv3a timed %d, moved %d of %d bytes", conv3, moved, two.MovedBytes)
	}
	if md := SpeedMarkdown(rows); !strings.Contains(md, "skipped: no CUDA driver") || !strings.Contains(md, "| conv3a | cpu:0 |") {
		t.Errorf("markdown:\n%s", md)
	}
}
