package plot

import (
	"encoding/json"
	"fmt"
	"image"
	"image/color"
	"image/png"
	"math"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/alexnet-go/trainer/model"
)

// writeRun writes a run directory with epochs lines of metrics.jsonl and a
// config.json naming net (none when net is empty).
func writeRun(t *testing.T, name, net string, epochs int) string {
	t.Helper()
	dir := filepath.Join(t.TempDir(), name)
	if err := os.Mkdir(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	var b strings.Builder
	for e := 1; e <= epochs; e++ {
		f := float64(e)
		m := map[string]any{
			"epoch": e, "lr": 0.01, "train_loss": 2 / f, "train_top1_err": 0.6 / f, "val_loss": 2.2 / f,
			"val_top1_err": 0.5/f + 0.05, "val_top5_err": 0.2 / f, "images_per_s": 900, "seconds": 12.5,
			"transfer_bytes": 1 << 20, "loader_images_per_s": 5000,
		}
		line, _ := json.Marshal(m)
		b.Write(line)
		b.WriteByte('\n')
	}
	if err := os.WriteFile(filepath.Join(dir, "metrics.jsonl"), []byte(b.String()), 0o644); err != nil {
		t.Fatal(err)
	}
	if net != "" {
		cfg := fmt.Sprintf(`{"net": %q, "epochs": %d, "lr": 0.01}`, net, epochs)
		if err := os.WriteFile(filepath.Join(dir, "config.json"), []byte(cfg), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	return dir
}

func TestReadRun(t *testing.T) {
	dir := writeRun(t, "fm-1", "alexnet-small", 5)
	r, err := ReadRun(dir)
	if err != nil {
		t.Fatal(err)
	}
	if r.Name != "fm-1 (alexnet-small)" || r.Net != "alexnet-small" {
		t.Errorf("name %q, net %q; want %q, %q", r.Name, r.Net, "fm-1 (alexnet-small)", "alexnet-small")
	}
	if len(r.Epochs) != 5 {
		t.Fatalf("%d epochs, want 5", len(r.Epochs))
	}
	e := r.Epochs[1]
	if e.Epoch != 2 || e.ValTop1Err != 0.3 || e.TrainTop1Err != 0.3 || e.ValTop5Err != 0.1 || e.TransferBytes != 1<<20 || e.ImagesPerS != 900 {
		t.Errorf("epoch 2 read as %+v", e)
	}

	bare := writeRun(t, "bare", "", 2)
	if r, err := ReadRun(bare); err != nil || r.Name != "bare" {
		t.Errorf("run without config.json: name %q, err %v; want %q, nil", r.Name, err, "bare")
	}
}

func TestReadRunErrors(t *testing.T) {
	metrics := func(dir string) string { return filepath.Join(dir, "metrics.jsonl") }
	for _, tc := range []struct {
		name  string
		setup func(dir string) // dir holds a good 5-epoch run
		file  string           // the file the error must name
		want  string           // and a word of the reason
	}{
		{"missing", func(dir string) { os.Remove(metrics(dir)) }, "metrics.jsonl", "no such file"},
		{"empty", func(dir string) { os.WriteFile(metrics(dir), []byte("\n"), 0o644) }, "metrics.jsonl", "empty"},
		{"bad line", func(dir string) {
			b, _ := os.ReadFile(metrics(dir))
			lines := strings.SplitAfter(string(b), "\n")
			lines[2] = `{"epoch": 3, "val_top1_err": 0.4,` + "\n"
			os.WriteFile(metrics(dir), []byte(strings.Join(lines, "")), 0o644)
		}, "metrics.jsonl", "line 3"},
		{"missing field", func(dir string) {
			os.WriteFile(metrics(dir), []byte(`{"epoch": 1, "train_top1_err": 0.5}`+"\n"), 0o644)
		}, "metrics.jsonl", "no val_top1_err"},
		{"percent", func(dir string) {
			os.WriteFile(metrics(dir), []byte(`{"epoch": 1, "train_top1_err": 0.5, "val_top1_err": 37}`+"\n"), 0o644)
		}, "metrics.jsonl", "outside [0, 1]"},
		{"bad config", func(dir string) { os.WriteFile(filepath.Join(dir, "config.json"), []byte("{net"), 0o644) }, "config.json", "malformed"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := writeRun(t, "run", "alexnet-small", 5)
			tc.setup(dir)
			_, err := ReadRun(dir)
			if err == nil {
				t.Fatal("no error")
			}
			msg := err.Error()
			if !strings.Contains(msg, filepath.Join(dir, tc.file)) || !strings.Contains(msg, tc.want) || strings.Contains(msg, "\n") {
				t.Errorf("error %q: want one line naming %s and saying %q", msg, filepath.Join(dir, tc.file), tc.want)
			}
		})
	}
}

func TestCurves(t *testing.T) {
	var runs []Run
	for i, net := range []string{"alexnet-small", "alexnet-small"} {
		r, err := ReadRun(writeRun(t, fmt.Sprintf("run-%d", i), net, 5))
		if err != nil {
			t.Fatal(err)
		}
		for j := range r.Epochs {
			r.Epochs[j].ValTop1Err *= float64(i + 1)
		}
		runs = append(runs, r)
	}
	out := filepath.Join(t.TempDir(), "curves.png")
	if err := Curves(out, runs); err != nil {
		t.Fatal(err)
	}
	img := decodePNG(t, out)
	if b := img.Bounds(); b.Dx() != 800 || b.Dy() != 500 {
		t.Errorf("chart is %d×%d, want 800×500", b.Dx(), b.Dy())
	}
	colours := map[color.RGBA]bool{}
	for y := 0; y < img.Bounds().Dy(); y += 2 {
		for x := 0; x < img.Bounds().Dx(); x += 2 {
			r, g, b, a := img.At(x, y).RGBA()
			colours[color.RGBA{uint8(r >> 8), uint8(g >> 8), uint8(b >> 8), uint8(a >> 8)}] = true
		}
	}
	if len(colours) < 3 {
		t.Errorf("chart has %d colours: nothing drawn", len(colours))
	}
	if m, _ := filepath.Glob(filepath.Join(filepath.Dir(out), ".curves.png.tmp*")); len(m) > 0 {
		t.Errorf("temporary files left behind: %v", m)
	}

	// Errors: a run's inputs are never overwritten, and nothing to draw is an error.
	dir := t.TempDir()
	for _, name := range []string{"metrics.jsonl", "config.json", "w.safetensors", "curves.txt"} {
		p := filepath.Join(dir, name)
		os.WriteFile(p, []byte("keep"), 0o644)
		if err := Curves(p, runs); err == nil || !strings.Contains(err.Error(), p) {
			t.Errorf("Curves(%s): err %v, want an error naming it", name, err)
		}
		if b, _ := os.ReadFile(p); string(b) != "keep" {
			t.Errorf("Curves(%s) overwrote it", name)
		}
	}
	if err := Curves(filepath.Join(dir, "c.png"), nil); err == nil {
		t.Error("Curves with no runs: no error")
	}
	if err := Curves(filepath.Join(dir, "c.png"), []Run{{Name: "x"}}); err == nil || !strings.Contains(err.Error(), `"x"`) {
		t.Errorf("Curves with an empty run: err %v, want one naming it", err)
	}
	if err := Curves(filepath.Join(dir, "no", "such", "c.png"), runs); err == nil || !strings.Contains(err.Error(), "c.png") {
		t.Errorf("Curves into a missing directory: err %v, want one naming the file", err)
	}
}

func TestEpochTicks(t *testing.T) {
	for _, tc := range []struct {
		lo, hi float64
		want   string
	}{
		{1, 5, "1 2 3 4 5"},
		{0, 6, "0 1 2 3 4 5 6"},
		{1, 30, "5 10 15 20 25 30"},
		{1, 90, "10 20 30 40 50 60 70 80 90"},
		{0.5, 1.5, "1"},
	} {
		var got []string
		for _, tk := range epochTicks(tc.lo, tc.hi) {
			got = append(got, tk.Label)
		}
		if s := strings.Join(got, " "); s != tc.want {
			t.Errorf("epochTicks(%g, %g) = %s, want %s", tc.lo, tc.hi, s, tc.want)
		}
	}
}

func TestPercentTicks(t *testing.T) {
	for _, tc := range []struct {
		lo, hi float64
		want   string
	}{
		{0, 50, "0 10 20 30 40 50"},
		{0, 100, "0 20 40 60 80 100"},
		{0, 12, "0 2 4 6 8 10 12"},
		{0, 1, "0.0 0.2 0.4 0.6 0.8 1.0"},
		{0, 0.3, "0.00 0.05 0.10 0.15 0.20 0.25 0.30"},
	} {
		var got []string
		for _, tk := range percentTicks(tc.lo, tc.hi) {
			got = append(got, tk.Label)
		}
		if s := strings.Join(got, " "); s != tc.want {
			t.Errorf("percentTicks(%g, %g) = %s, want %s", tc.lo, tc.hi, s, tc.want)
		}
	}
}

func decodePNG(t *testing.T, path string) image.Image {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	img, err := png.Decode(f)
	if err != nil {
		t.Fatalf("%s: %v", path, err)
	}
	return img
}

// randomKernel is a (k, c, r, s) tensor of seeded N(0, 0.01²) values, as at init.
func randomKernel(seed uint64, k, c, r, s int) model.Tensor {
	rng := rand.New(rand.NewPCG(seed, 2))
	x := model.Tensor{Shape: []int{k, c, r, s}, Data: make([]float32, k*c*r*s)}
	for i := range x.Data {
		x.Data[i] = float32(rng.NormFloat64() * 0.01)
	}
	return x
}

// refPixel is the colour of pixel (r, s) of filter f of x, straight from
// KernelImage's doc comment: min-max normalized over the whole filter,
// channel 0 red.
func refPixel(x model.Tensor, f, r, s int) color.RGBA {
	c, rr, ss := x.Shape[1], x.Shape[2], x.Shape[3]
	v := x.Data[f*c*rr*ss : (f+1)*c*rr*ss]
	lo, hi := math.Inf(1), math.Inf(-1)
	for _, a := range v {
		lo, hi = math.Min(lo, float64(a)), math.Max(hi, float64(a))
	}
	ch := func(i int) uint8 {
		if hi == lo {
			return 128
		}
		return uint8(math.Round(255 * (float64(v[(i*rr+r)*ss+s]) - lo) / (hi - lo)))
	}
	if c == 1 {
		return color.RGBA{ch(0), ch(0), ch(0), 255}
	}
	return color.RGBA{ch(0), ch(1), ch(2), 255}
}

// checkBlock compares the scale×scale block of filter pixel (r, s) at
// (x0, y0) with want.
func checkBlock(t *testing.T, img *image.RGBA, x0, y0, scale, r, s int, want color.RGBA, what string) {
	t.Helper()
	for dy := range scale {
		for dx := range scale {
			if got := img.RGBAAt(x0+s*scale+dx, y0+r*scale+dy); got != want {
				t.Fatalf("%s: pixel (%d,%d) of the filter at (%d+%d, %d+%d) is %v, want %v", what, r, s, x0, s*scale+dx, y0, r*scale+dy, got, want)
			}
		}
	}
}

func TestKernelsAlexNet(t *testing.T) {
	a, b := randomKernel(1, 48, 3, 11, 11), randomKernel(2, 48, 3, 11, 11) // (48, 3, 11, 11)
	// Filter 17 of tower a: all three channels at its lowest at (2, 5) and
	// highest at (7, 1), so those pixels are black and white.
	const f, per = 17, 3 * 11 * 11
	for c := range 3 {
		a.Data[f*per+(c*11+2)*11+5] = -1
		a.Data[f*per+(c*11+7)*11+1] = 1
	}
	// Filter 0 of tower b: only channel 0 is non-zero, and constant: red.
	for i := range per {
		b.Data[i] = 0
		if i < 11*11 {
			b.Data[i] = 0.5
		}
	}
	// Filter 47 of tower b: constant: mid-grey.
	for i := 47 * per; i < 48*per; i++ {
		b.Data[i] = 0.25
	}
	out := filepath.Join(t.TempDir(), "kernels.png")
	if err := Kernels(out, map[string]model.Tensor{"conv1a.weight": a, "conv1b.weight": b, "fc8.weight": {Shape: []int{10, 4}, Data: make([]float32, 40)}}); err != nil {
		t.Fatal(err)
	}
	dec := decodePNG(t, out)
	img, ok := dec.(*image.RGBA)
	if !ok {
		img = image.NewRGBA(dec.Bounds())
		for y := range dec.Bounds().Dy() {
			for x := range dec.Bounds().Dx() {
				img.Set(x, y, dec.At(x, y))
			}
		}
	}

	// s = ⌈40/11⌉ = 4, a filter 44 px, 16 a row, 3 rows a tower, 2-px gaps:
	// 2 + 16·46 = 738 wide, h = 2 + 3·46 = 140 a tower, 140 + 6 + 140 tall.
	const scale, cell, h = 4, 44, 140
	if bd := img.Bounds(); bd.Dx() != 738 || bd.Dy() != 2*h+6 {
		t.Fatalf("image is %d×%d, want 738×286", bd.Dx(), bd.Dy())
	}
	at := func(tower, k int) (x, y int) { return 2 + (k%16)*(cell+2), 2 + (k/16)*(cell+2) + tower*(h+6) }

	x0, y0 := at(0, 17) // column 1, row 1: (48, 48)
	checkBlock(t, img, x0, y0, scale, 2, 5, color.RGBA{0, 0, 0, 255}, "conv1a filter 17's min")
	checkBlock(t, img, x0, y0, scale, 7, 1, color.RGBA{255, 255, 255, 255}, "conv1a filter 17's max")
	x0, y0 = at(1, 0)
	if x0 != 2 || y0 != 148 {
		t.Fatalf("tower b's filter 0 at (%d, %d), want (2, 148)", x0, y0)
	}
	checkBlock(t, img, x0, y0, scale, 0, 0, color.RGBA{255, 0, 0, 255}, "conv1b filter 0 (channel 0 only)")
	checkBlock(t, img, x0, y0, scale, 10, 10, color.RGBA{255, 0, 0, 255}, "conv1b filter 0 (channel 0 only)")
	x0, y0 = at(1, 47)
	checkBlock(t, img, x0, y0, scale, 5, 5, color.RGBA{128, 128, 128, 255}, "conv1b filter 47 (constant)")

	// The separator: white gap rows 138–139 under tower a, the dark band
	// 140–145, white again 146–147 above tower b, across the whole width.
	for _, x := range []int{0, 1, 300, 737} {
		for y := 138; y < 148; y++ {
			want := gapColor
			if y >= 140 && y < 146 {
				want = sepColor
			}
			if got := img.RGBAAt(x, y); got != want {
				t.Fatalf("separator pixel (%d, %d) is %v, want %v", x, y, got, want)
			}
		}
	}

	// Every filter pixel against the reference.
	for tower, x := range []model.Tensor{a, b} {
		for k := range 48 {
			x0, y0 := at(tower, k)
			for r := range 11 {
				for s := range 11 {
					checkBlock(t, img, x0, y0, scale, r, s, refPixel(x, k, r, s), fmt.Sprintf("tower %d filter %d", tower, k))
				}
			}
		}
	}
}

func TestKernelsGrey(t *testing.T) {
	// alexnet-small on Fashion-MNIST: (16, 1, 5, 5) a tower; s = 8, one row
	// of 16 filters of 40 px: 2 + 16·42 = 674 wide, h = 44, 44 + 6 + 44 tall.
	a, b := randomKernel(3, 16, 1, 5, 5), randomKernel(4, 16, 1, 5, 5)
	img, err := KernelImage(map[string]model.Tensor{"conv1a.weight": a, "conv1b.weight": b})
	if err != nil {
		t.Fatal(err)
	}
	if bd := img.Bounds(); bd.Dx() != 674 || bd.Dy() != 94 {
		t.Fatalf("image is %d×%d, want 674×94", bd.Dx(), bd.Dy())
	}
	for tower, x := range []model.Tensor{a, b} {
		for k := range 16 {
			x0, y0 := 2+k*42, 2+tower*50
			for r := range 5 {
				for s := range 5 {
					want := refPixel(x, k, r, s)
					if want.R != want.G || want.G != want.B {
						t.Fatalf("reference pixel %v is not grey", want)
					}
					checkBlock(t, img, x0, y0, 8, r, s, want, fmt.Sprintf("tower %d filter %d", tower, k))
				}
			}
		}
	}
}

func TestKernelsOneTower(t *testing.T) {
	// conv1.weight (20, 3, 3, 3): s = 14, 42-px filters; 16 in the first
	// row and 4 in the second: 2 + 16·44 = 706 wide, 2 + 2·44 = 90 tall.
	x := randomKernel(5, 20, 3, 3, 3)
	img, err := KernelImage(map[string]model.Tensor{"conv1.weight": x})
	if err != nil {
		t.Fatal(err)
	}
	if bd := img.Bounds(); bd.Dx() != 706 || bd.Dy() != 90 {
		t.Fatalf("image is %d×%d, want 706×90", bd.Dx(), bd.Dy())
	}
	for k := range 20 {
		x0, y0 := 2+(k%16)*44, 2+(k/16)*44
		for r := range 3 {
			for s := range 3 {
				checkBlock(t, img, x0, y0, 14, r, s, refPixel(x, k, r, s), fmt.Sprintf("filter %d", k))
			}
		}
	}
	// The unused cells of the last row stay background.
	if got := img.RGBAAt(2+5*44+10, 2+44+10); got != gapColor {
		t.Errorf("empty cell pixel is %v, want the background %v", got, gapColor)
	}
}

func TestKernelsErrors(t *testing.T) {
	good := randomKernel(6, 4, 3, 5, 5)
	nan := randomKernel(7, 4, 3, 5, 5)
	nan.Data[3*75+7] = float32(math.NaN())
	for _, tc := range []struct {
		name string
		w    map[string]model.Tensor
		want string
	}{
		{"none", map[string]model.Tensor{"fc8.weight": good}, "no conv1"},
		{"only a", map[string]model.Tensor{"conv1a.weight": good}, "conv1b.weight"},
		{"only b", map[string]model.Tensor{"conv1b.weight": good}, "conv1a.weight"},
		{"3-D", map[string]model.Tensor{"conv1.weight": {Shape: []int{4, 3, 25}, Data: good.Data}}, "4-D"},
		{"C=2", map[string]model.Tensor{"conv1.weight": {Shape: []int{6, 2, 5, 5}, Data: good.Data[:300]}}, "C = 1"},
		{"short data", map[string]model.Tensor{"conv1.weight": {Shape: []int{4, 3, 5, 5}, Data: good.Data[:10]}}, "holds 10 values"},
		{"towers differ", map[string]model.Tensor{"conv1a.weight": good, "conv1b.weight": randomKernel(8, 4, 1, 5, 5)}, "towers differ"},
		{"NaN", map[string]model.Tensor{"conv1.weight": nan}, "filter 3 holds NaN"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			out := filepath.Join(t.TempDir(), "k.png")
			err := Kernels(out, tc.w)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("err %v, want one saying %q", err, tc.want)
			}
			if _, err := os.Stat(out); err == nil {
				t.Error("wrote an image anyway")
			}
		})
	}
	p := filepath.Join(t.TempDir(), "w.safetensors")
	os.WriteFile(p, []byte("keep"), 0o644)
	if err := Kernels(p, map[string]model.Tensor{"conv1.weight": good}); err == nil {
		t.Error("Kernels over a .safetensors file: no error")
	}
	if b, _ := os.ReadFile(p); string(b) != "keep" {
		t.Error("Kernels overwrote the .safetensors file")
	}
}
