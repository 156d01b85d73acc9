package main

import (
	"bytes"
	"compress/gzip"
	"encoding/binary"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/alexnet-go/trainer/train"
)

// A resume checks the world it resumes in: the data must be the run's own
// (moved is fine, changed is refused), and a finished run or --epochs below
// 1 is an error, not a silent "resuming".
func TestResumeChecksTheWorld(t *testing.T) {
	dir := t.TempDir()
	data := filepath.Join(dir, "data")
	os.Mkdir(data, 0o755)
	writeIDX(t, data, 40)
	runDir := filepath.Join(dir, "run")
	if out, err := run(t, "train", "--net", "alexnet-small", "--gpus", "cpu", "--threads", "1", "--data", data,
		"--epochs", "1", "--batch", "20", "--out", runDir); err != nil {
		t.Fatalf("train: %v\n%s", err, out)
	}
	c, err := train.ReadConfig(runDir)
	if err != nil || !strings.HasPrefix(c.DataFingerprint, "crc32c:") {
		t.Fatalf("config.json records no data fingerprint: %+v, %v", c, err)
	}
	// A finished run, and --epochs below 1.
	if _, err := run(t, "train", "--resume", runDir); err == nil || !strings.Contains(err.Error(), "finished its 1 epochs") {
		t.Errorf("resuming a finished run: %v", err)
	}
	for _, e := range []string{"0", "-2"} {
		if _, err := run(t, "train", "--resume", runDir, "--epochs", e); err == nil || !strings.Contains(err.Error(), "--epochs "+e) {
			t.Errorf("--resume --epochs %s: %v", e, err)
		}
	}
	// The data moves: the resume names the missing folder; --data points
	// it at the new place, which config.json then records.
	moved := filepath.Join(dir, "moved")
	if err := os.Rename(data, moved); err != nil {
		t.Fatal(err)
	}
	if _, err := run(t, "train", "--resume", runDir, "--epochs", "2"); err == nil || !strings.Contains(err.Error(), data) {
		t.Errorf("resuming with the data moved away: %v", err)
	}
	if out, err := run(t, "train", "--resume", runDir, "--epochs", "2", "--data", moved); err != nil {
		t.Fatalf("resuming with --data at the moved data: %v\n%s", err, out)
	}
	if c, _ := train.ReadConfig(runDir); c.Data != moved || c.Epochs != 2 {
		t.Errorf("config.json after the resume: data %q, epochs %d; want %q, 2", c.Data, c.Epochs, moved)
	}
	// config.json edited in what the run computes: refused, naming it.
	cfgPath := filepath.Join(runDir, "config.json")
	orig, _ := os.ReadFile(cfgPath)
	os.WriteFile(cfgPath, []byte(strings.Replace(string(orig), `"batch": 20`, `"batch": 10`, 1)), 0o644)
	if _, err := run(t, "train", "--resume", runDir, "--epochs", "3", "--data", moved); err == nil || !strings.Contains(err.Error(), "--batch 10, not 20") {
		t.Errorf("resuming after config.json's batch was edited: %v", err)
	}
	os.WriteFile(cfgPath, orig, 0o644)
	// The labels change: the resume is refused, naming the data.
	other := filepath.Join(dir, "other")
	os.Mkdir(other, 0o755)
	writeIDX(t, other, 40)
	os.Remove(filepath.Join(other, "train-labels-idx1-ubyte.gz"))
	writeLabels(t, filepath.Join(other, "train-labels-idx1-ubyte.gz"), 40, 1)
	if _, err := run(t, "train", "--resume", runDir, "--epochs", "3", "--data", other); err == nil ||
		!strings.Contains(err.Error(), "not the data the run was trained on") || !strings.Contains(err.Error(), other) {
		t.Errorf("resuming on data whose labels changed: %v", err)
	}
}

// writeLabels writes an IDX label file of n labels, label i being
// (i + shift) mod 10.
func writeLabels(t *testing.T, path string, n, shift int) {
	t.Helper()
	var b bytes.Buffer
	binary.Write(&b, binary.BigEndian, uint32(0x801))
	binary.Write(&b, binary.BigEndian, uint32(n))
	for i := range n {
		b.WriteByte(byte((i + shift) % 10))
	}
	f, err := os.Create(path)
	if err != nil {
		t.Fatal(err)
	}
	z := gzip.NewWriter(f)
	z.Write(b.Bytes())
	z.Close()
	f.Close()
}

// trainer train --gpus with a pair per replica runs the replicas and says
// so; --resume may take --gpus to move the run to other replicas, only
// with --other-replicas (it is not bit for bit), which it says, and
// config.json records; a batch that does not split over the
// replicas is one line naming --batch and --gpus.
func TestReplicasFromTheCommandLine(t *testing.T) {
	dir := t.TempDir()
	data := filepath.Join(dir, "data")
	os.Mkdir(data, 0o755)
	writeIDX(t, data, 40)
	runDir := filepath.Join(dir, "run")
	out, err := run(t, "train", "--net", "alexnet-small", "--gpus", "cpu,cpu,cpu,cpu", "--threads", "1", "--data", data,
		"--epochs", "1", "--batch", "10", "--out", runDir)
	if err != nil || !strings.Contains(out, "2 replicas (cpu:0,cpu:1 | cpu:2,cpu:3), 5 images each") {
		t.Fatalf("train on two replicas: %v\n%s", err, out)
	}
	_, err = run(t, "train", "--resume", runDir, "--epochs", "2", "--gpus", "cpu,cpu")
	if err == nil || !strings.Contains(err.Error(), "the run trained on 2 replica(s), --gpus cpu,cpu has 1") || strings.Contains(err.Error(), "\n") {
		t.Fatalf("resume on one replica without --other-replicas: %v", err)
	}
	out, err = run(t, "train", "--resume", runDir, "--epochs", "2", "--gpus", "cpu,cpu", "--other-replicas")
	if err != nil || !strings.Contains(out, "resuming a run of 2 replica(s) on 1 (--gpus cpu,cpu)") {
		t.Fatalf("resume on one replica: %v\n%s", err, out)
	}
	if c, _ := train.ReadConfig(runDir); c.GPUs != "cpu,cpu" || c.Replicas != 1 {
		t.Errorf("config.json after the resume: gpus %q, replicas %d; want cpu,cpu and 1", c.GPUs, c.Replicas)
	}
	_, err = run(t, "train", "--net", "alexnet-small", "--gpus", "cpu,cpu,cpu,cpu,cpu,cpu", "--threads", "1", "--data", data,
		"--epochs", "1", "--batch", "10", "--out", filepath.Join(dir, "other"))
	if err == nil || !strings.Contains(err.Error(), "--batch 10 does not split evenly over the 3 replicas of --gpus cpu,cpu,cpu,cpu,cpu,cpu") {
		t.Errorf("batch 10 on 3 replicas: %v", err)
	}
}
