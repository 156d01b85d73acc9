package main

import (
	"bytes"
	"encoding/json"
	"fmt"
	"image"
	"image/png"
	"io"
	"math"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/urfave/cli/v2"

	"github.com/alexnet-go/trainer/data"
	"github.com/alexnet-go/trainer/gpu"
	"github.com/alexnet-go/trainer/gpu/cpu"
	"github.com/alexnet-go/trainer/model"
	"github.com/alexnet-go/trainer/parallel"
)

// runEval runs eval and predict in-process, as run does the whole app, with
// stdout captured.
func runEval(t *testing.T, args ...string) (string, error) {
	t.Helper()
	app := &cli.App{Name: "trainer", Commands: []*cli.Command{evalCommand(), predictCommand()}}
	old := os.Stdout
	r, w, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	os.Stdout = w
	done := make(chan string)
	go func() { b, _ := io.ReadAll(r); done <- string(b) }()
	err = app.Run(append([]string{"trainer"}, args...))
	w.Close()
	os.Stdout = old
	return <-done, err
}

// evalFixture is a synthetic IDX data set and the weights of an untrained
// alexnet-small stored as trainer train stores them.
type evalFixture struct {
	dir, data, weights string
	test               *data.Set
	pre                model.Preprocess
	net                *model.Net
	w                  model.Weights
}

func newEvalFixture(t *testing.T) *evalFixture {
	t.Helper()
	f := &evalFixture{dir: t.TempDir()}
	f.data = filepath.Join(f.dir, "idx")
	os.Mkdir(f.data, 0o755)
	writeIDX(t, f.data, 40)
	trainSet, test, err := data.LoadIDX(f.data)
	if err != nil {
		t.Fatal(err)
	}
	f.test = test
	f.net, err = model.Build("alexnet-small", model.Options{Channels: 1, Classes: 10})
	if err != nil {
		t.Fatal(err)
	}
	f.w = model.Init(f.net, 3)
	f.pre = model.Preprocess{Net: f.net.Name, LRN: f.net.LRN, Classes: test.Classes, C: 1, ImageH: 28, ImageW: 28,
		Canvas: 32, Mean: data.MeanImage(trainSet, 32)}
	f.weights = filepath.Join(f.dir, "weights.safetensors")
	if err := model.WriteSafetensors(f.weights, f.w, f.pre.Metadata()); err != nil {
		t.Fatal(err)
	}
	return f
}

// direct runs images idx of the test set, rendered as training's validation
// renders them, through a runner built here: the reference eval and predict
// must match.
func (f *evalFixture) direct(t *testing.T, idx []int, labels bool) parallel.Result {
	t.Helper()
	devs := []gpu.Device{cpu.New(cpu.Options{})}
	r, err := parallel.New(f.net, devs, f.w, parallel.Options{Batch: len(idx)})
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	// Written out here rather than with data.Augment, which eval and
	// predict use: the 28×28 image sits at rows and columns 2..29 of the
	// 32×32 canvas, zeros around it, and the mean image is subtracted.
	per := 32 * 32
	b := parallel.Batch{N: len(idx), Images: make([]float32, len(idx)*per)}
	for j, i := range idx {
		img, dst := f.test.Image(i), b.Images[j*per:(j+1)*per]
		for y := range 32 {
			for x := range 32 {
				var v float32
				if y >= 2 && y < 30 && x >= 2 && x < 30 {
					v = float32(img[(y-2)*28+x-2])
				}
				dst[y*32+x] = v - f.pre.Mean[y*32+x]
			}
		}
		if labels {
			b.Labels = append(b.Labels, float32(f.test.Labels[i]))
		}
	}
	res, err := r.Eval(b)
	if err != nil {
		t.Fatal(err)
	}
	return res
}

func TestEvalMatchesRunner(t *testing.T) {
	f := newEvalFixture(t)
	all := make([]int, f.test.N)
	for i := range all {
		all[i] = i
	}
	want := f.direct(t, all, true)
	n := float64(f.test.N)

	out, err := runEval(t, "eval", "--weights", f.weights, "--data", f.data, "--json")
	if err != nil {
		t.Fatal(err)
	}
	var got evalResult
	if err := json.Unmarshal([]byte(out), &got); err != nil {
		t.Fatalf("eval --json: %v\n%s", err, out)
	}
	if got.Net != "alexnet-small" || got.Data != f.data || got.Images != f.test.N || got.Split != "test" {
		t.Errorf("eval --json: net %q, data %q, %d images of the %q split; want alexnet-small, %s, %d of test", got.Net, got.Data, got.Images, got.Split, f.data, f.test.N)
	}
	if got.Top1Err != float64(want.Top1)/n || got.Top5Err != float64(want.Top5)/n {
		t.Errorf("eval: top-1 error %g, top-5 error %g; the runner on the rendered images: %g, %g",
			got.Top1Err, got.Top5Err, float64(want.Top1)/n, float64(want.Top5)/n)
	}
	if math.Abs(got.Loss-want.Loss) > 1e-9*want.Loss {
		t.Errorf("eval: loss %.9g, the runner: %.9g", got.Loss, want.Loss)
	}
	if want.Top5 == 0 || want.Top1 == f.test.N {
		t.Logf("top-1 %d, top-5 %d wrong of %d", want.Top1, want.Top5, f.test.N)
	}

	out, err = runEval(t, "eval", "--weights", f.weights, "--data", f.data)
	if err != nil {
		t.Fatal(err)
	}
	line := fmt.Sprintf("alexnet-small on %s, test split: %d images, loss %.4f, top-1 error %.2f%%, top-5 error %.2f%%\n",
		f.data, f.test.N, want.Loss, 100*float64(want.Top1)/n, 100*float64(want.Top5)/n)
	if out != line {
		t.Errorf("eval printed\n%q\nwant\n%q", out, line)
	}

	// Partial batches score the same images.
	out, err = runEval(t, "eval", "--weights", f.weights, "--data", f.data, "--batch", "16", "--gpus", "cpu,cpu", "--json")
	if err != nil {
		t.Fatal(err)
	}
	var b16 evalResult
	if err := json.Unmarshal([]byte(out), &b16); err != nil {
		t.Fatal(err)
	}
	if b16.Images != got.Images || b16.Top1Err != got.Top1Err || b16.Top5Err != got.Top5Err || math.Abs(b16.Loss-got.Loss) > 1e-5*got.Loss {
		t.Errorf("eval --batch 16 on two devices: %+v; --batch 128: %+v", b16, got)
	}
}

// writePNG writes an image to dir/name and returns the path.
func writePNG(t *testing.T, dir, name string, m image.Image) string {
	t.Helper()
	var b bytes.Buffer
	if err := png.Encode(&b, m); err != nil {
		t.Fatal(err)
	}
	p := filepath.Join(dir, name)
	if err := os.WriteFile(p, b.Bytes(), 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}

func TestPredictMatchesRunner(t *testing.T) {
	f := newEvalFixture(t)
	idx := []int{0, 1, 2, 3, 4}
	var paths []string
	for _, i := range idx {
		g := image.NewGray(image.Rect(0, 0, 28, 28))
		copy(g.Pix, f.test.Image(i))
		paths = append(paths, writePNG(t, f.dir, fmt.Sprintf("test%d.png", i), g))
	}
	// The same as image 0, twice the size: shrinking averages 2×2 blocks of
	// equal pixels back to image 0.
	big := image.NewGray(image.Rect(0, 0, 56, 56))
	for y := range 56 {
		for x := range 56 {
			big.Pix[y*56+x] = f.test.Image(0)[(y/2)*28+x/2]
		}
	}
	// The same as image 1 in colour, R = G = B: its luma is image 1.
	rgb := image.NewRGBA(image.Rect(0, 0, 28, 28))
	for i, v := range f.test.Image(1) {
		copy(rgb.Pix[4*i:], []uint8{v, v, v, 255})
	}
	paths = append(paths, writePNG(t, f.dir, "big0.png", big), writePNG(t, f.dir, "rgb1.png", rgb))
	idx = append(idx, 0, 1)

	want := f.direct(t, idx, false)
	out, err := runEval(t, append([]string{"predict", "--weights", f.weights, "--json"}, paths...)...)
	if err != nil {
		t.Fatal(err)
	}
	var got []prediction
	if err := json.Unmarshal([]byte(out), &got); err != nil {
		t.Fatalf("predict --json: %v\n%s", err, out)
	}
	if len(got) != len(paths) {
		t.Fatalf("predict --json: %d entries for %d images", len(got), len(paths))
	}
	for j, p := range got {
		prob := want.Prob[j*10 : (j+1)*10]
		if p.Image != paths[j] || len(p.Top) != 5 {
			t.Errorf("entry %d: image %q with %d classes, want %q with 5", j, p.Image, len(p.Top), paths[j])
			continue
		}
		for k, s := range p.Top {
			if s.Index < 0 || s.Index >= 10 || s.Class != data.DigitClasses[s.Index] {
				t.Errorf("%s: class %q index %d", p.Image, s.Class, s.Index)
				continue
			}
			if math.Abs(float64(s.Prob)-float64(prob[s.Index])) > 1e-6 {
				t.Errorf("%s: P(%s) = %g, the runner on the rendered image: %g", p.Image, s.Class, s.Prob, prob[s.Index])
			}
			if k > 0 && s.Prob > p.Top[k-1].Prob {
				t.Errorf("%s: not sorted: %v", p.Image, p.Top)
			}
		}
		// Nothing left out is more probable than the fifth.
		for c, q := range prob {
			if !slices.ContainsFunc(p.Top, func(s classScore) bool { return s.Index == c }) && q > prob[p.Top[4].Index] {
				t.Errorf("%s: class %d (P = %g) is missing from the top 5 %v", p.Image, c, q, p.Top)
			}
		}
	}

	out, err = runEval(t, append([]string{"predict", "--weights", f.weights, "--top", "3"}, paths[:2]...)...)
	if err != nil {
		t.Fatal(err)
	}
	lines := strings.Split(strings.TrimSuffix(out, "\n"), "\n")
	if len(lines) != 2 {
		t.Fatalf("predict printed %d lines for 2 images:\n%s", len(lines), out)
	}
	for j, line := range lines {
		var parts []string
		for _, s := range got[j].Top[:3] {
			parts = append(parts, fmt.Sprintf("%s %.1f%%", s.Class, 100*s.Prob))
		}
		if want := paths[j] + ": " + strings.Join(parts, ", "); line != want {
			t.Errorf("predict printed\n%q\nwant\n%q", line, want)
		}
	}
	// --top beyond the classes prints them all.
	out, err = runEval(t, "predict", "--weights", f.weights, "--top", "50", "--json", paths[0])
	if err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal([]byte(out), &got); err != nil || len(got) != 1 || len(got[0].Top) != 10 {
		t.Errorf("predict --top 50: %v, %d classes, want 10:\n%s", err, len(got[0].Top), out)
	}
}

// Every bad input ends with one line naming the flag or file at fault.
func TestEvalPredictErrors(t *testing.T) {
	f := newEvalFixture(t)
	png0 := func() string {
		g := image.NewGray(image.Rect(0, 0, 28, 28))
		return writePNG(t, f.dir, "ok.png", g)
	}()
	put := func(name string, w model.Weights, meta map[string]string) string {
		p := filepath.Join(f.dir, name)
		if err := model.WriteSafetensors(p, w, meta); err != nil {
			t.Fatal(err)
		}
		return p
	}
	bare := put("bare.safetensors", f.w, map[string]string{"lrn": "paper"})
	small := f.pre
	small.ImageH, small.ImageW = 20, 20
	wrongSize := put("20x20.safetensors", f.w, small.Metadata())
	net12, _ := model.Build("alexnet-small", model.Options{Channels: 1, Classes: 12})
	pre12 := f.pre
	pre12.Classes = slices.Repeat([]string{"x"}, 12)
	twelve := put("12.safetensors", model.Init(net12, 1), pre12.Metadata())
	mismatch := put("mismatch.safetensors", model.Init(net12, 1), f.pre.Metadata())
	text := filepath.Join(f.dir, "notes.png")
	os.WriteFile(text, []byte("not an image\n"), 0o644)
	missing := filepath.Join(f.dir, "missing.png")

	for _, tc := range []struct {
		args []string
		want []string
	}{
		{[]string{"eval", "--weights", bare, "--data", f.data}, []string{"--weights " + bare, "trainer train"}},
		{[]string{"predict", "--weights", bare, png0}, []string{"--weights " + bare, "trainer train"}},
		{[]string{"eval", "--weights", filepath.Join(f.dir, "none.safetensors"), "--data", f.data}, []string{"--weights", "none.safetensors"}},
		{[]string{"eval", "--weights", mismatch, "--data", f.data}, []string{"--weights " + mismatch, "fc8"}},
		{[]string{"eval", "--weights", wrongSize, "--data", f.data}, []string{"--data " + f.data, "1×28×28", "1×20×20", wrongSize}},
		{[]string{"eval", "--weights", twelve, "--data", f.data}, []string{"--data " + f.data, "10 classes", "on 12", twelve}},
		{[]string{"eval", "--weights", f.weights, "--data", filepath.Join(f.dir, "nowhere")}, []string{"nowhere"}},
		{[]string{"eval", "--weights", f.weights, "--data", f.data, "--batch", "0"}, []string{"--batch 0"}},
		{[]string{"eval", "--weights", f.weights, "--data", f.data, "--gpus", "0"}, []string{"--gpus 0"}},
		{[]string{"eval", "--data", f.data}, []string{"weights"}},
		{[]string{"eval", "--weights", f.weights, "--data", f.data, "extra"}, []string{`"extra"`}},
		{[]string{"predict", "--weights", f.weights, png0, missing}, []string{missing, "no such file"}},
		{[]string{"predict", "--weights", f.weights, text}, []string{text, "not a PNG, JPEG or GIF image"}},
		{[]string{"predict", "--weights", f.weights, f.dir}, []string{f.dir, "directory"}},
		{[]string{"predict", "--weights", f.weights, png0, "--json"}, []string{"--json", "flags go before the images"}},
		{[]string{"predict", "--weights", f.weights}, []string{"no images"}},
		{[]string{"predict", "--weights", f.weights, "--top", "0", png0}, []string{"--top 0"}},
	} {
		_, err := runEval(t, tc.args...)
		t.Logf("%s: %v", tc.args[0], err)
		ok := err != nil && !strings.Contains(err.Error(), "\n")
		for _, w := range tc.want {
			ok = ok && strings.Contains(err.Error(), w)
		}
		if !ok {
			t.Errorf("trainer %s:\n error %v\n want one line containing %q", strings.Join(tc.args, " "), err, tc.want)
		}
	}
}
