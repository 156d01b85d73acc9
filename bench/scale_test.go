package bench

import (
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/alexnet-go/trainer/model"
)

// bench scale --quick's rows: 1, 2 and 4 replicas of alexnet-small on CPU
// devices at a global batch of 8, each with its images/s; the replicas
// reduce every gradient each step, in buckets, and report the time in the
// collective and the part of it the backward hid; one replica reduces
// nothing. A placement with too few devices is skipped, and a batch that
// does not split is refused.
func TestScaleQuick(t *testing.T) {
	out := t.TempDir()
	rows, err := Scale(ScaleOptions{Net: "alexnet-small", Replicas: []int{1, 2, 4}, Batch: 8, Repeats: 1, BucketBytes: 64 << 10, Out: out})
	if err != nil {
		t.Fatal(err)
	}
	net, _ := model.Build("alexnet-small", model.Options{Channels: 1, Classes: 10})
	if len(rows) != 3 {
		t.Fatalf("%d rows, want 3", len(rows))
	}
	for _, r := range rows {
		if r.Skipped != "" || r.ImagesPerS <= 0 || len(r.StepsMs) != 1 || r.PerReplica != 8/r.Replicas || r.Efficiency <= 0 {
			t.Errorf("%d replicas: %+v", r.Replicas, r)
		}
		if want := strings.Count(r.Placement, "cpu"); want != 2*r.Replicas {
			t.Errorf("%d replicas on %s", r.Replicas, r.Placement)
		}
		if r.Replicas == 1 {
			if r.ReducedBytes != 0 || r.Buckets != 0 || r.Efficiency != 1 {
				t.Errorf("one replica reduced %d bytes in %v buckets, efficiency %v", r.ReducedBytes, r.Buckets, r.Efficiency)
			}
			continue
		}
		// Two groups (towers), each said to reduce as the trainer's would.
		if len(r.Reduction) != 2 || !strings.Contains(r.Reduction[1], "worker 1 (cpu:1, cpu:3") || !strings.Contains(r.Reduction[0], "in-process reference") {
			t.Errorf("%d replicas: reduction %q", r.Replicas, r.Reduction)
		}
		if r.ReducedBytes != 4*int64(net.Params()) || r.Buckets < 2 || r.CollectiveMs <= 0 || r.BlockedMs <= 0 || r.Hidden < 0 || r.Hidden > 1 {
			t.Errorf("%d replicas: reduced %d bytes (want %d) in %v buckets, %v ms in the collective, %v blocked, %v hidden",
				r.Replicas, r.ReducedBytes, 4*net.Params(), r.Buckets, r.CollectiveMs, r.BlockedMs, r.Hidden)
		}
	}
	var back []ScaleRow
	b, err := os.ReadFile(filepath.Join(out, "scale.json"))
	if err != nil || json.Unmarshal(b, &back) != nil || len(back) != 3 {
		t.Errorf("scale.json: %v, %d rows", err, len(back))
	}
	md, _ := os.ReadFile(filepath.Join(out, "scale.md"))
	if !strings.Contains(string(md), "| 4 | `cpu,cpu,cpu,cpu,cpu,cpu,cpu,cpu` | 2 |") || !strings.Contains(string(md), "hidden by backward") {
		t.Errorf("scale.md:\n%s", md)
	}

	rows, err = Scale(ScaleOptions{Net: "alexnet-small", Replicas: []int{1, 2}, GPUs: "cpu,cpu", Batch: 4, Repeats: 1})
	if err != nil || len(rows) != 2 || rows[1].Skipped == "" || !strings.Contains(rows[1].Skipped, "need 4") {
		t.Errorf("2 replicas on --gpus cpu,cpu: %+v, %v", rows, err)
	}
	if _, err := Scale(ScaleOptions{Net: "alexnet-small", Replicas: []int{1, 3}, Batch: 8, Repeats: 1}); err == nil || !strings.Contains(err.Error(), "--batch 8 does not split evenly over 3 replicas") {
		t.Errorf("batch 8 on 3 replicas: %v", err)
	}
}
