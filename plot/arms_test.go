package plot

import (
	"image/color"
	"math"
	"os"
	"path/filepath"
	"testing"

	"gonum.org/v1/plot/plotutil"

	"github.com/alexnet-go/trainer/metrics"
)

// armRuns makes an arm of seeds whose test error is base·(1 + 2/epoch) +
// the seed's offset (points), training error 0.8 of it, over 20 epochs.
func armRuns(name string, base float64, offsets []float64) Arm {
	a := Arm{Name: name}
	for _, off := range offsets {
		var r Run
		for e := 1; e <= 20; e++ {
			test := base*(1+2/float64(e)) + off/100
			tr := 0.8 * test
			r.Epochs = append(r.Epochs, metrics.Epoch{Epoch: e, TrainTop1Err: tr, ValTop1Err: test + 0.01, ValSet: "held-out", TestTop1Err: &test})
		}
		a.Runs = append(a.Runs, r)
	}
	return a
}

// Each arm's curve is the mean over its seeds with their range; the axis
// spans where the arms settle, not the first epochs' errors; each arm is
// drawn in its own colour family.
func TestArmCurves(t *testing.T) {
	arms := []Arm{armRuns("one tower", 0.10, []float64{-0.5, 0, 0.8}), armRuns("two towers", 0.09, []float64{-0.3, 0.3})}
	c, err := ArmCurve(arms[0], reported)
	if err != nil {
		t.Fatal(err)
	}
	// Epoch 10: 10·1.2 = 12 points, offsets −0.5, 0, +0.8.
	if j := 9; c.Epoch[j] != 10 || math.Abs(c.Mean[j]-(12+0.1)) > 1e-9 || math.Abs(c.Lo[j]-11.5) > 1e-9 || math.Abs(c.Hi[j]-12.8) > 1e-9 {
		t.Errorf("epoch %d: mean %g [%g, %g], want 12.1 [11.5, 12.8]", c.Epoch[j], c.Mean[j], c.Lo[j], c.Hi[j])
	}
	var rep, tr []Curve
	for _, a := range arms {
		r, _ := ArmCurve(a, reported)
		x, _ := ArmCurve(a, func(e metrics.Epoch) float64 { return e.TrainTop1Err })
		rep, tr = append(rep, r), append(tr, x)
	}
	lo, hi := YRange(rep, tr)
	// Epochs 10–20: test 9.6…11.9 (two towers from 9.6, one tower to
	// 12.8), training from 0.8 × 9.6 = 7.68 (two towers' mean at 20: 0.8·9.9).
	wantHi := 12.8
	wantLo := 0.8 * 9.9
	if !(lo < wantLo && lo > wantLo-1 && hi > wantHi && hi < wantHi+1) {
		t.Errorf("axis %g–%g%%, want just around %g–%g%% (the settled epochs), not 0–%g", lo, hi, wantLo, wantHi, 100*0.1*3)
	}

	out := filepath.Join(t.TempDir(), "arms.png")
	if err := ArmCurves(out, arms); err != nil {
		t.Fatal(err)
	}
	img := decodePNG(t, out)
	count := map[color.RGBA]int{}
	for y := 0; y < img.Bounds().Dy(); y++ {
		for x := 0; x < img.Bounds().Dx(); x++ {
			r, g, b, a := img.At(x, y).RGBA()
			count[color.RGBA{uint8(r >> 8), uint8(g >> 8), uint8(b >> 8), uint8(a >> 8)}]++
		}
	}
	if ArmHue(0) == ArmHue(1) || ArmBand(0) == ArmBand(1) {
		t.Fatal("two arms share a colour")
	}
	for i := range arms {
		// A band covers many pixels; a line, some.
		if count[ArmBand(i)] < 500 || count[ArmHue(i)] < 50 {
			t.Errorf("arm %d: %d band pixels, %d line pixels: its colour family is not drawn", i, count[ArmBand(i)], count[ArmHue(i)])
		}
	}
	if os.Getenv("PLOT_KEEP") != "" {
		b, _ := os.ReadFile(out)
		os.WriteFile(os.Getenv("PLOT_KEEP"), b, 0o644)
	}
	if err := ArmCurves(filepath.Join(t.TempDir(), "x.png"), []Arm{{Name: "empty"}}); err == nil {
		t.Error("an arm without runs: no error")
	}
}

// A run that scored a test set apart from validation shows it: its test
// curve adds its colour's pixels.
func TestCurvesTest(t *testing.T) {
	arm := armRuns("x", 0.1, []float64{0})
	with := arm.Runs[0]
	without := Run{Epochs: append([]metrics.Epoch(nil), with.Epochs...)}
	for i := range without.Epochs {
		without.Epochs[i].TestTop1Err = nil
	}
	count := func(r Run) int {
		img, err := CurvesImage([]Run{r})
		if err != nil {
			t.Fatal(err)
		}
		want := plotutilDark0()
		n := 0
		for y := 0; y < img.Bounds().Dy(); y++ {
			for x := 0; x < img.Bounds().Dx(); x++ {
				r, g, b, _ := img.At(x, y).RGBA()
				if uint8(r>>8) == want.R && uint8(g>>8) == want.G && uint8(b>>8) == want.B {
					n++
				}
			}
		}
		return n
	}
	if a, b := count(with), count(without); a < b+100 {
		t.Errorf("%d pixels of the run's colour with a test curve, %d without: no test curve drawn", a, b)
	}
}

func plotutilDark0() color.RGBA {
	r, g, b, _ := plotutil.DarkColors[0].RGBA()
	return color.RGBA{uint8(r >> 8), uint8(g >> 8), uint8(b >> 8), 0xff}
}
