package train

import (
	"bufio"
	"context"
	"encoding/json"
	"io"
	"math"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/alexnet-go/trainer/model"
)

const fashion = "/usr/share/datasets/fashion-mnist"

func needFashion(t *testing.T) {
	if _, err := os.Stat(fashion); err != nil {
		t.Skipf("Fashion-MNIST not installed at %s (apt install dataset-fashion-mnist): %v", fashion, err)
	}
}

// One short epoch of alexnet-small on real Fashion-MNIST, split over two
// CPU devices, lowers the loss and reaches a sane validation error, and
// leaves a complete run directory.
func TestTrainFashionMNIST(t *testing.T) {
	needFashion(t)
	c := Defaults()
	c.Out = filepath.Join(t.TempDir(), "run")
	c.Epochs = 1
	c.Limit = 16384
	c.Batch = 64
	var log strings.Builder
	ms, err := Run(context.Background(), c, &log)
	if err != nil {
		t.Fatalf("%v\n%s", err, log.String())
	}
	t.Log(log.String())
	m := ms[0]
	if m.TrainLoss >= 2.2 {
		t.Errorf("train loss %.3f after an epoch: not below ln 10 = 2.30", m.TrainLoss)
	}
	if m.ValTop1Err > 0.45 {
		t.Errorf("validation top-1 error %.1f%% after %d images: a sane net is below 45%% (chance: 90%%)", 100*m.ValTop1Err, c.Limit)
	}
	if m.ValTop5Err > m.ValTop1Err || m.TransferBytes == 0 || m.ImagesPerS <= 0 {
		t.Errorf("metrics %+v", m)
	}
	// The run directory: config to rerun it, metrics, weights.
	var got Config
	b, err := os.ReadFile(filepath.Join(c.Out, "config.json"))
	if err != nil || json.Unmarshal(b, &got) != nil || !strings.HasPrefix(got.DataFingerprint, "crc32c:") {
		t.Errorf("config.json %s does not hold the data's fingerprint (%v)", b, err)
	}
	if got.Replicas != 1 {
		t.Errorf("config.json records %d replicas for --gpus %s, want 1", got.Replicas, c.GPUs)
	}
	if got.DataFingerprint, got.Replicas = "", 0; got != c {
		t.Errorf("config.json %s does not hold the run's config (%v)", b, err)
	}
	f, err := os.Open(filepath.Join(c.Out, "metrics.jsonl"))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	lines := 0
	for sc.Scan() {
		var row map[string]any
		if err := json.Unmarshal(sc.Bytes(), &row); err != nil {
			t.Fatal(err)
		}
		for _, k := range []string{"epoch", "lr", "train_loss", "train_top1_err", "val_loss", "val_top1_err", "val_top5_err", "images_per_s", "seconds", "transfer_bytes"} {
			if _, ok := row[k]; !ok {
				t.Errorf("metrics.jsonl lacks %s: %s", k, sc.Text())
			}
		}
		lines++
	}
	if lines != 1 {
		t.Errorf("metrics.jsonl has %d lines for 1 epoch", lines)
	}
	w, meta, err := model.ReadSafetensors(filepath.Join(c.Out, "weights.safetensors"))
	if err != nil {
		t.Fatal(err)
	}
	net, _ := model.Build(c.Net, model.Options{Channels: 1, Classes: 10})
	if err := model.Weights(w).Check(net); err != nil || meta["net"] != c.Net {
		t.Errorf("weights: %v, metadata %v", err, meta)
	}

	// A second run into the same directory is refused, and nothing changes.
	before, _ := os.ReadFile(filepath.Join(c.Out, "weights.safetensors"))
	if _, err := Run(context.Background(), c, io.Discard); err == nil || !strings.Contains(err.Error(), "--out") {
		t.Errorf("second run into %s: %v, want a refusal naming --out", c.Out, err)
	}
	after, _ := os.ReadFile(filepath.Join(c.Out, "weights.safetensors"))
	if string(before) != string(after) {
		t.Error("the refused run changed weights.safetensors")
	}
}

func TestConfigErrors(t *testing.T) {
	base := Defaults()
	base.Out = t.TempDir()
	for _, tc := range []struct {
		edit func(*Config)
		want string
	}{
		{func(c *Config) { c.Batch = 0 }, "--batch 0"},
		{func(c *Config) { c.Net = "lenet" }, `--net "lenet"`},
		{func(c *Config) { c.LRN = "torch" }, "--lrn"},
		{func(c *Config) { c.Activation = "sigmoid" }, `--activation "sigmoid"`},
		{func(c *Config) { c.Pool = "3/3" }, `--pool "3/3"`},
		{func(c *Config) { c.LR = -1 }, "--lr"},
		{func(c *Config) { c.Epochs = 0 }, "--epochs"},
		{func(c *Config) { c.Momentum = 1 }, "--momentum"},
		{func(c *Config) { c.Momentum = math.NaN() }, "--momentum NaN"},
		{func(c *Config) { c.WeightDecay = math.NaN() }, "--weight-decay NaN"},
		{func(c *Config) { c.WeightDecay = math.Inf(1) }, "--weight-decay +Inf"},
		{func(c *Config) { c.CheckpointMinutes = math.NaN() }, "--checkpoint-minutes NaN"},
		{func(c *Config) { c.GPUs = "0,1" }, "CUDA"},
		{func(c *Config) { c.GPUs = "tpu" }, "--gpus"},
		{func(c *Config) { c.GPUs = "cpu,cpu,cpu" }, "--gpus"},
		{func(c *Config) { c.Data = "/nonexistent/fashion" }, "/nonexistent/fashion"},
		{func(c *Config) { c.Out = "/proc/alexnet-run" }, "--out /proc/alexnet-run"},
	} {
		c := base
		c.Out = filepath.Join(base.Out, "run")
		tc.edit(&c)
		_, err := Run(context.Background(), c, io.Discard)
		if err == nil || !strings.Contains(err.Error(), tc.want) || strings.Contains(err.Error(), "\n") {
			t.Errorf("%+v: error %v, want one line naming %s", c, err, tc.want)
		}
		// A refused run leaves no run directory behind.
		if _, err := os.Stat(c.Out); err == nil {
			t.Errorf("%+v: the refused run left %s behind", c, c.Out)
			os.RemoveAll(c.Out)
		}
	}
}

func TestAlexNetNeedsLargeImages(t *testing.T) {
	needFashion(t)
	c := Defaults()
	c.Net, c.Out = "alexnet", t.TempDir()
	_, err := Run(context.Background(), c, io.Discard)
	if err == nil || !strings.Contains(err.Error(), "227×227") {
		t.Errorf("alexnet on 28×28 images: %v", err)
	}
}

// CIFAR-10's binary batches train alexnet-small with three input channels.
func TestTrainCIFAR(t *testing.T) {
	dir := t.TempDir()
	rng := rand.New(rand.NewPCG(1, 2))
	for _, name := range []string{"data_batch_1.bin", "data_batch_2.bin", "data_batch_3.bin", "data_batch_4.bin", "data_batch_5.bin", "test_batch.bin"} {
		rec := make([]byte, 20*3073)
		for i := range rec {
			rec[i] = byte(rng.IntN(256))
		}
		for i := 0; i < 20; i++ {
			rec[i*3073] = byte(i % 10)
		}
		if err := os.WriteFile(filepath.Join(dir, name), rec, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	c := Defaults()
	c.Data, c.Out, c.Epochs, c.Batch = dir, filepath.Join(t.TempDir(), "run"), 1, 20
	var log strings.Builder
	ms, err := Run(context.Background(), c, &log)
	if err != nil {
		t.Fatalf("%v\n%s", err, log.String())
	}
	if !strings.Contains(log.String(), "90 training, 10 validation (held out: the last training images), 20 test images of 3×32×32, 10 classes") || len(ms) != 1 {
		t.Errorf("CIFAR run:\n%s", log.String())
	}
	w, _, err := model.ReadSafetensors(filepath.Join(c.Out, "weights.safetensors"))
	if err != nil {
		t.Fatal(err)
	}
	if s := w["conv1a.weight"].Shape; len(s) != 4 || s[1] != 3 {
		t.Errorf("conv1a.weight %v: CIFAR has 3 channels", s)
	}
}
