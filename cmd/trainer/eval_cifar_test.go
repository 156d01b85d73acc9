package main

import (
	"context"
	"encoding/json"
	"io"
	"math"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/alexnet-go/trainer/train"
)

// writeCIFAR writes a CIFAR-10 binary folder of n random records per batch
// file, labels cycling over the ten classes.
func writeCIFAR(t *testing.T, dir string, n int) {
	t.Helper()
	rng := rand.New(rand.NewPCG(3, 4))
	for _, name := range []string{"data_batch_1.bin", "data_batch_2.bin", "data_batch_3.bin", "data_batch_4.bin", "data_batch_5.bin", "test_batch.bin"} {
		rec := make([]byte, n*3073)
		for i := range rec {
			rec[i] = byte(rng.IntN(256))
		}
		for i := range n {
			rec[i*3073] = byte(i % 10)
		}
		if err := os.WriteFile(filepath.Join(dir, name), rec, 0o644); err != nil {
			t.Fatal(err)
		}
	}
}

// eval scores a run trained on CIFAR-10 on its test batch, preprocessed as
// training's validation was: the same loss and errors training's last
// validation pass recorded.
func TestEvalCIFAR(t *testing.T) {
	dir := t.TempDir()
	writeCIFAR(t, dir, 20)
	c := train.Defaults()
	c.Data, c.Out, c.Epochs, c.Batch, c.GPUs = dir, filepath.Join(t.TempDir(), "run"), 1, 20, "cpu"
	var log strings.Builder
	ms, err := train.Run(context.Background(), c, &log)
	if err != nil {
		t.Fatalf("%v\n%s", err, log.String())
	}
	out, err := runEval(t, "eval", "--weights", filepath.Join(c.Out, "weights.safetensors"), "--data", dir, "--json", "--batch", "7")
	if err != nil {
		t.Fatalf("eval of a CIFAR-10 run: %v\n%s", err, out)
	}
	var got evalResult
	if err := json.Unmarshal([]byte(out), &got); err != nil {
		t.Fatalf("eval --json: %v\n%s", err, out)
	}
	want := ms[len(ms)-1]
	if got.Images != 20 || got.Split != "test" {
		t.Errorf("eval scored %d images of the %q split; want the 20 of test_batch.bin", got.Images, got.Split)
	}
	if math.Abs(got.Loss-want.ValLoss) > 1e-6*math.Abs(want.ValLoss) || got.Top1Err != want.ValTop1Err || got.Top5Err != want.ValTop5Err {
		t.Errorf("eval: loss %g, top-1 %g, top-5 %g; training's validation of the same weights: %g, %g, %g",
			got.Loss, got.Top1Err, got.Top5Err, want.ValLoss, want.ValTop1Err, want.ValTop5Err)
	}
	// Fashion-MNIST-shaped weights are refused on CIFAR's 32×32×3 images.
	f := newEvalFixture(t)
	if out, err := runEval(t, "eval", "--weights", f.weights, "--data", dir); err == nil || !strings.Contains(err.Error(), "--data "+dir) {
		t.Errorf("1-channel weights on CIFAR-10: %v, %s; want an error naming --data", err, out)
	}
}

// Scoring needs only the test files: eval works on a folder that holds
// nothing else, IDX and CIFAR-10 alike.
func TestEvalNeedsOnlyTestFiles(t *testing.T) {
	f := newEvalFixture(t)
	for _, name := range []string{"train-images-idx3-ubyte.gz", "train-labels-idx1-ubyte.gz"} {
		if err := os.Remove(filepath.Join(f.data, name)); err != nil {
			t.Fatal(err)
		}
	}
	if out, err := runEval(t, "eval", "--weights", f.weights, "--data", f.data, "--json"); err != nil || !strings.Contains(out, `"images": 40`) {
		t.Errorf("eval on an IDX folder without its training files: %v\n%s", err, out)
	}
	// CIFAR-10: test_batch.bin alone (data_batch_1.bin marks the folder
	// as CIFAR's, so it stays, empty).
	dir := t.TempDir()
	writeCIFAR(t, dir, 20)
	c := train.Defaults()
	c.Data, c.Out, c.Epochs, c.Batch, c.GPUs = dir, filepath.Join(t.TempDir(), "run"), 1, 20, "cpu"
	if _, err := train.Run(context.Background(), c, io.Discard); err != nil {
		t.Fatal(err)
	}
	for _, name := range []string{"data_batch_2.bin", "data_batch_3.bin", "data_batch_4.bin", "data_batch_5.bin"} {
		os.Remove(filepath.Join(dir, name))
	}
	os.WriteFile(filepath.Join(dir, "data_batch_1.bin"), nil, 0o644)
	if out, err := runEval(t, "eval", "--weights", filepath.Join(c.Out, "weights.safetensors"), "--data", dir, "--json"); err != nil || !strings.Contains(out, `"images": 20`) {
		t.Errorf("eval on a CIFAR-10 folder without its training batches: %v\n%s", err, out)
	}
}
