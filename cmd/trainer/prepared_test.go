package main

import (
	"encoding/json"
	"fmt"
	"image"
	"image/color"
	"image/jpeg"
	"image/png"
	"math"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/alexnet-go/trainer/data"
	"github.com/alexnet-go/trainer/model"
)

// writeFolder writes an ImageNet-style source: train/<class>/ and
// val/<class>/ with photos-like images of mixed sizes and formats, each
// class a different dominant colour so the net has something to learn.
func writeFolder(t *testing.T, dir string, perClass, valPerClass int) {
	rng := rand.New(rand.NewPCG(3, 4))
	classes := []string{"n01", "n02"}
	for split, n := range map[string]int{"train": perClass, "val": valPerClass} {
		for ci, class := range classes {
			d := filepath.Join(dir, split, class)
			if err := os.MkdirAll(d, 0o755); err != nil {
				t.Fatal(err)
			}
			for i := 0; i < n; i++ {
				w, h := 260+rng.IntN(80), 260+rng.IntN(80)
				img := image.NewRGBA(image.Rect(0, 0, w, h))
				for y := 0; y < h; y++ {
					for x := 0; x < w; x++ {
						v := uint8(rng.IntN(90))
						c := color.RGBA{v, v, v, 255}
						if ci == 0 {
							c.R += 150
						} else {
							c.B += 150
						}
						img.Set(x, y, c)
					}
				}
				f, err := os.Create(filepath.Join(d, fmt.Sprintf("%d.%s", i, []string{"png", "jpg"}[i%2])))
				if err != nil {
					t.Fatal(err)
				}
				if i%2 == 0 {
					png.Encode(f, img)
				} else {
					jpeg.Encode(f, img, &jpeg.Options{Quality: 90})
				}
				f.Close()
			}
		}
	}
}

// The paper's net trains from a prepared folder on two CPU devices, and
// eval scores it on the centre crop and on the ten patches.
func TestPreparedAlexNet(t *testing.T) {
	if testing.Short() {
		t.Skip("alexnet steps on the CPU")
	}
	dir := t.TempDir()
	src, prep, run := filepath.Join(dir, "src"), filepath.Join(dir, "prepared"), filepath.Join(dir, "run")
	writeFolder(t, src, 6, 2)
	if out, err := trainerCmd("prepare", "--src", src, "--out", prep).CombinedOutput(); err != nil {
		t.Fatalf("prepare: %v\n%s", err, out)
	}
	out, err := trainerCmd("train", "--net", "alexnet", "--data", prep, "--gpus", "cpu,cpu", "--batch", "4", "--epochs", "1", "--out", run).CombinedOutput()
	if err != nil {
		t.Fatalf("train: %v\n%s", err, out)
	}
	if !strings.Contains(string(out), "prepared: 12 training, 4 validation images (the val split; no test set) of 3×256×256, 2 classes, 227×227 crops") {
		t.Errorf("train output does not describe the prepared data:\n%s", out)
	}
	m := readMetrics(t, run)
	if len(m) != 1 || m[0]["transfer_bytes"].(float64) == 0 {
		t.Fatalf("metrics %v", m)
	}
	var scores [2]map[string]any
	for i, args := range [][]string{{}, {"--ten-crop"}} {
		args = append([]string{"eval", "--weights", filepath.Join(run, "weights.safetensors"), "--data", prep, "--json"}, args...)
		out, err := trainerCmd(args...).Output()
		if err != nil {
			t.Fatalf("eval %v: %v\n%s", args, err, out)
		}
		if err := json.Unmarshal(out, &scores[i]); err != nil {
			t.Fatalf("eval --json: %v: %s", err, out)
		}
		if scores[i]["images"].(float64) != 4 {
			t.Errorf("eval %v scored %v images, want 4", args, scores[i]["images"])
		}
	}
	// The centre-crop score is the one training logged for its epoch.
	if got, want := scores[0]["loss"].(float64), m[0]["val_loss"].(float64); got != want {
		t.Errorf("eval's centre-crop loss %v, training's validation loss %v", got, want)
	}
	if scores[0]["loss"] == scores[1]["loss"] {
		t.Error("ten-crop and centre-crop losses are equal: the ten patches were not averaged")
	}
	// predict prepares a photo as trainer prepare did and takes its centre
	// crop, as validation did: a val image gets the probabilities eval saw.
	photo := filepath.Join(src, "val", "n02", "1.jpg")
	out, err = trainerCmd("predict", "--weights", filepath.Join(run, "weights.safetensors"), "--json", photo).Output()
	if err != nil {
		t.Fatalf("predict: %v\n%s", err, out)
	}
	var preds []struct {
		Image string
		Top   []struct {
			Class string
			Prob  float64
		}
	}
	if err := json.Unmarshal(out, &preds); err != nil || len(preds) != 1 || len(preds[0].Top) != 2 {
		t.Fatalf("predict --json: %v: %s", err, out)
	}
	if p := preds[0].Top; p[0].Prob+p[1].Prob < 0.999 || p[0].Prob < p[1].Prob || (p[0].Class != "n01" && p[0].Class != "n02") {
		t.Errorf("predict: %+v", p)
	}
	// The probabilities are the net's on the stored val image (the last of
	// the four: n01/0, n01/1, n02/0, n02/1), its centre 227×227 crop minus
	// the mean image at the source position, written out here and run
	// through trainer forward.
	pd, err := data.OpenPrepared(prep)
	if err != nil {
		t.Fatal(err)
	}
	defer pd.Close()
	img := make([]uint8, 3*256*256)
	if err := pd.Val.Read(3, img); err != nil || pd.Val.Label(3) != 1 {
		t.Fatalf("val image 3: %v, label %d", err, pd.Val.Label(3))
	}
	const crop, off = 227, (256 - 227) / 2
	in := make([]float32, 3*crop*crop)
	for c := range 3 {
		for y := range crop {
			for x := range crop {
				src := (c*256+y+off)*256 + x + off
				in[(c*crop+y)*crop+x] = float32(img[src]) - pd.Mean[src]
			}
		}
	}
	inPath, outPath := filepath.Join(dir, "in.safetensors"), filepath.Join(dir, "out.safetensors")
	if err := model.WriteSafetensors(inPath, map[string]model.Tensor{"input": {Shape: []int{1, 3, crop, crop}, Data: in}}, nil); err != nil {
		t.Fatal(err)
	}
	if out, err := trainerCmd("forward", "--net", "alexnet", "--weights", filepath.Join(run, "weights.safetensors"),
		"--input", inPath, "--output", outPath).CombinedOutput(); err != nil {
		t.Fatalf("forward: %v\n%s", err, out)
	}
	logits, _, err := model.ReadSafetensors(outPath)
	if err != nil {
		t.Fatal(err)
	}
	l := logits["logits"].Data
	m0 := max(l[0], l[1])
	e0, e1 := math.Exp(float64(l[0]-m0)), math.Exp(float64(l[1]-m0))
	want := map[string]float64{"n01": e0 / (e0 + e1), "n02": e1 / (e0 + e1)}
	for _, p := range preds[0].Top {
		if math.Abs(p.Prob-want[p.Class]) > 1e-4*want[p.Class]+1e-9 { // relative: a trained net is nearly sure
			t.Errorf("predict: P(%s) = %.7f; the net on the stored val image: %.7f", p.Class, p.Prob, want[p.Class])
		}
	}
	out, _ = trainerCmd("eval", "--weights", filepath.Join(run, "weights.safetensors"), "--data", "/usr/share/datasets/fashion-mnist").CombinedOutput()
	if !strings.Contains(string(out), "trained on prepared data") {
		t.Errorf("prepared weights on IDX data: %s", out)
	}
}
