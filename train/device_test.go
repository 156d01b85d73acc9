package train

import (
	"context"
	"fmt"
	"image"
	"image/png"
	"iter"
	"math"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/alexnet-go/trainer/data"
	"github.com/alexnet-go/trainer/metrics"
	"github.com/alexnet-go/trainer/model"
)

// preparedData prepares a folder of classes × perClass 40×40 images at
// 36×36, as trainer prepare does.
func preparedData(t *testing.T, classes, perClass int) string {
	t.Helper()
	src, out := filepath.Join(t.TempDir(), "src"), filepath.Join(t.TempDir(), "prep")
	for _, split := range []string{"train", "val"} {
		for c := range classes {
			d := filepath.Join(src, split, fmt.Sprintf("n%02d", c))
			if err := os.MkdirAll(d, 0o755); err != nil {
				t.Fatal(err)
			}
			for i := range perClass {
				img := image.NewRGBA(image.Rect(0, 0, 40, 40))
				for p := range img.Pix {
					img.Pix[p] = uint8(40*c + 3*i + p%7 + p/160)
				}
				f, err := os.Create(filepath.Join(d, fmt.Sprintf("%d.png", i)))
				if err != nil {
					t.Fatal(err)
				}
				if err := png.Encode(f, img); err != nil {
					t.Fatal(err)
				}
				f.Close()
			}
		}
	}
	if _, err := data.Prepare(context.Background(), data.PrepareOptions{Src: src, Out: out, Size: 36}); err != nil {
		t.Fatal(err)
	}
	return out
}

// runWith trains c with the batches rendered on the devices or on the
// host and returns the weights and the log.
func runWith(t *testing.T, c Config, onDevice bool) (model.Weights, string) {
	t.Helper()
	old := deviceAugment
	deviceAugment = onDevice
	defer func() { deviceAugment = old }()
	c.Out = filepath.Join(t.TempDir(), "run")
	var log strings.Builder
	if _, err := Run(context.Background(), c, &log); err != nil {
		t.Fatalf("%v\n%s", err, log.String())
	}
	w, _, err := model.ReadSafetensors(filepath.Join(c.Out, weightsFile))
	if err != nil {
		t.Fatal(err)
	}
	return w, log.String()
}

// Training on uint8 batches augmented on the devices gives the weights
// of training on batches augmented on the host, bit for bit: Fashion-MNIST
// (padded windows, the mean at the output position) and a prepared folder
// (random crops, reflections, PCA colour noise, the mean at the source
// pixel), on one CPU device and on two.
func TestDeviceAugmentSameWeights(t *testing.T) {
	prepared := preparedData(t, 4, 6)
	for _, tc := range []struct {
		name string
		c    func() Config
	}{
		{"fashion-mnist", func() Config {
			needFashion(t)
			c := Defaults()
			c.Limit, c.ValLimit, c.Batch = 96, 32, 16
			return c
		}},
		{"prepared", func() Config {
			c := Defaults()
			c.Data, c.Batch = prepared, 4
			return c
		}},
	} {
		for _, gpus := range []string{"cpu", "cpu,cpu"} {
			t.Run(tc.name+" "+gpus, func(t *testing.T) {
				c := tc.c()
				c.GPUs, c.Epochs, c.Threads, c.Workers, c.CheckpointMinutes = gpus, 2, 1, 2, 0
				dev, log := runWith(t, c, true)
				if !strings.Contains(log, "augmenting on the devices") {
					t.Fatalf("the run did not augment on the devices:\n%s", log)
				}
				host, log := runWith(t, c, false)
				if strings.Contains(log, "augmenting on the devices") {
					t.Fatalf("the host run augmented on the devices:\n%s", log)
				}
				if len(dev) != len(host) {
					t.Fatalf("%d tensors, want %d", len(dev), len(host))
				}
				for name, w := range host {
					d := dev[name].Data
					for i, v := range w.Data {
						if math.Float32bits(d[i]) != math.Float32bits(v) {
							t.Fatalf("%s[%d] = %v, want %v", name, i, d[i], v)
						}
					}
				}
			})
		}
	}
}

// slowLoader delays every batch it delivers by delay.
type slowLoader struct {
	data.RawBatcher
	delay time.Duration
}

func (s slowLoader) slow(seq iter.Seq2[*data.Batch, error]) iter.Seq2[*data.Batch, error] {
	return func(yield func(*data.Batch, error) bool) {
		for b, err := range seq {
			time.Sleep(s.delay)
			if !yield(b, err) {
				return
			}
		}
	}
}

func (s slowLoader) EpochFrom(ctx context.Context, epoch, start int) iter.Seq2[*data.Batch, error] {
	return s.slow(s.RawBatcher.EpochFrom(ctx, epoch, start))
}

func (s slowLoader) RawEpochFrom(ctx context.Context, epoch, start int) iter.Seq2[*data.Batch, error] {
	return s.slow(s.RawBatcher.RawEpochFrom(ctx, epoch, start))
}

// A loader slower than the steps shows in metrics.jsonl's data_wait_s: at
// least the delay it added to every batch, on either path.
func TestDataWaitCounted(t *testing.T) {
	const delay = 40 * time.Millisecond
	wrapTrainLoader = func(l data.Batcher) data.Batcher { return slowLoader{l.(data.RawBatcher), delay} }
	defer func() { wrapTrainLoader = nil }()
	c := Defaults()
	c.Data, c.Batch, c.Epochs, c.Threads, c.Workers, c.GPUs = preparedData(t, 4, 4), 4, 1, 1, 1, "cpu"
	for _, onDevice := range []bool{true, false} {
		c.Out = filepath.Join(t.TempDir(), "run")
		deviceAugment = onDevice
		ms, err := Run(context.Background(), c, &strings.Builder{})
		deviceAugment = true
		if err != nil {
			t.Fatal(err)
		}
		steps := 16 / c.Batch
		if want := (time.Duration(steps) * delay).Seconds(); ms[0].DataWaitS < want {
			t.Errorf("device %v: data_wait_s %.3f, want at least the %d × %v the loader was delayed", onDevice, ms[0].DataWaitS, steps, delay)
		}
		got, err := readMetricsWait(c.Out)
		if err != nil || got != ms[0].DataWaitS {
			t.Errorf("metrics.jsonl data_wait_s %v (%v), want %v", got, err, ms[0].DataWaitS)
		}
	}
}

func readMetricsWait(dir string) (float64, error) {
	ms, err := metrics.Read(dir)
	if err != nil {
		return 0, err
	}
	if len(ms) != 1 {
		return 0, fmt.Errorf("%d epochs in metrics.jsonl", len(ms))
	}
	return ms[0].DataWaitS, nil
}
