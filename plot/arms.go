package plot

import (
	"errors"
	"fmt"
	"image"
	"image/color"
	"math"

	"gonum.org/v1/plot/plotter"
	"gonum.org/v1/plot/vg"
	"gonum.org/v1/plot/vg/draw"
	"gonum.org/v1/plot/vg/vgimg"

	"github.com/alexnet-go/trainer/metrics"
)

// Arm is one side of a comparison: the runs of its seeds.
type Arm struct {
	Name string
	Runs []Run
}

// armHues are the arms' colour families (Tableau's): a dark line, its
// light band. Arm i takes hue i modulo their number.
var armHues = []color.RGBA{
	{0x1f, 0x77, 0xb4, 0xff}, // blue
	{0xd6, 0x27, 0x28, 0xff}, // red
	{0x2c, 0xa0, 0x2c, 0xff}, // green
	{0xff, 0x7f, 0x0e, 0xff}, // orange
	{0x94, 0x67, 0xbd, 0xff}, // purple
	{0x8c, 0x56, 0x4b, 0xff}, // brown
}

// ArmHue is arm i's line colour; ArmBand its band's (the hue at a quarter
// of its strength on white).
func ArmHue(i int) color.RGBA { return armHues[i%len(armHues)] }

// ArmBand is arm i's band colour.
func ArmBand(i int) color.RGBA {
	h := ArmHue(i)
	mix := func(v uint8) uint8 { return uint8(255 - (255-int(v))/4) }
	return color.RGBA{mix(h.R), mix(h.G), mix(h.B), 0xff}
}

// Curve is one measure of an arm over its seeds, epoch by epoch: the mean
// and the seeds' range, over the epochs every seed finished.
type Curve struct {
	Epoch         []int
	Mean, Lo, Hi  []float64 // percent
	Name, Measure string
}

// ArmCurve returns arm's curve of the error f (a fraction) picks from an
// epoch, in percent.
func ArmCurve(a Arm, f func(metrics.Epoch) float64) (Curve, error) {
	c := Curve{Name: a.Name}
	if len(a.Runs) == 0 {
		return c, fmt.Errorf("plot: arm %q has no runs", a.Name)
	}
	n := math.MaxInt
	for _, r := range a.Runs {
		n = min(n, len(r.Epochs))
	}
	if n == 0 {
		return c, fmt.Errorf("plot: arm %q has a run with no epochs", a.Name)
	}
	for j := range n {
		lo, hi, sum := math.Inf(1), math.Inf(-1), 0.0
		for _, r := range a.Runs {
			v := 100 * f(r.Epochs[j])
			lo, hi, sum = math.Min(lo, v), math.Max(hi, v), sum+v
		}
		c.Epoch = append(c.Epoch, a.Runs[0].Epochs[j].Epoch)
		c.Mean, c.Lo, c.Hi = append(c.Mean, sum/float64(len(a.Runs))), append(c.Lo, lo), append(c.Hi, hi)
	}
	return c, nil
}

// reported is the error a run reports, the test set's (see
// metrics.Epoch.Reported).
func reported(e metrics.Epoch) float64 { t, _, _, _ := e.Reported(); return t }

// YRange is the error axis of ArmCurves, in percent: the span of the
// reported curves' bands and the training curves over the later half of
// the epochs, where the arms settle and differ, with a tenth of it as
// room either side. The first epochs' errors, far above, leave the chart.
func YRange(reported, training []Curve) (lo, hi float64) {
	lo, hi = math.Inf(1), math.Inf(-1)
	for i, c := range reported {
		from := len(c.Epoch) / 2
		for j := from; j < len(c.Epoch); j++ {
			lo, hi = math.Min(lo, c.Lo[j]), math.Max(hi, c.Hi[j])
			if i < len(training) && j < len(training[i].Mean) {
				lo = math.Min(lo, training[i].Mean[j])
			}
		}
	}
	room := math.Max((hi-lo)/10, 0.1)
	return math.Max(0, lo-room), math.Min(100, hi+room)
}

// ArmCurves draws a comparison on one 800×500 PNG chart at out: for each
// arm, in its own colour family, the mean over its seeds of the reported
// (test) top-1 error as a solid line with the seeds' range as a band, and
// the mean training error dashed; the error axis spans where the arms
// settle (YRange). out must end in .png; it is written atomically.
func ArmCurves(out string, arms []Arm) error {
	if err := CheckOut(out); err != nil {
		return err
	}
	img, err := ArmCurvesImage(arms)
	if err != nil {
		return err
	}
	return WritePNG(out, img)
}

// ArmCurvesImage draws ArmCurves' chart without writing it.
func ArmCurvesImage(arms []Arm) (image.Image, error) {
	if len(arms) == 0 {
		return nil, errors.New("plot: no arms to draw")
	}
	var rep, tr []Curve
	for _, a := range arms {
		c, err := ArmCurve(a, reported)
		if err != nil {
			return nil, err
		}
		t, _ := ArmCurve(a, func(e metrics.Epoch) float64 { return e.TrainTop1Err })
		rep, tr = append(rep, c), append(tr, t)
	}
	set := "test"
	if _, _, _, s := arms[0].Runs[0].Epochs[0].Reported(); s != "test" {
		set = s
	}

	p := errorPlot("top-1 error: mean over seeds, band: the seeds' range")

	// Bands first, under every line.
	for i, c := range rep {
		var poly plotter.XYs
		for j := range c.Epoch {
			poly = append(poly, plotter.XY{X: float64(c.Epoch[j]), Y: c.Hi[j]})
		}
		for j := len(c.Epoch) - 1; j >= 0; j-- {
			poly = append(poly, plotter.XY{X: float64(c.Epoch[j]), Y: c.Lo[j]})
		}
		band, err := plotter.NewPolygon(poly)
		if err != nil {
			return nil, fmt.Errorf("plot: arm %q: %v", c.Name, err)
		}
		band.Color, band.LineStyle.Width = ArmBand(i), 0
		p.Add(band)
	}
	for i, c := range rep {
		hue := ArmHue(i)
		mean, train := make(plotter.XYs, len(c.Epoch)), make(plotter.XYs, len(c.Epoch))
		for j, e := range c.Epoch {
			mean[j] = plotter.XY{X: float64(e), Y: c.Mean[j]}
			train[j] = plotter.XY{X: float64(e), Y: tr[i].Mean[j]}
		}
		lm, pts, err := plotter.NewLinePoints(mean)
		if err != nil {
			return nil, fmt.Errorf("plot: arm %q: %v", c.Name, err)
		}
		lm.LineStyle.Color, lm.LineStyle.Width = hue, vg.Points(2)
		pts.GlyphStyle.Color, pts.GlyphStyle.Radius, pts.GlyphStyle.Shape = hue, vg.Points(2), draw.CircleGlyph{}
		lt, err := plotter.NewLine(train)
		if err != nil {
			return nil, fmt.Errorf("plot: arm %q: %v", c.Name, err)
		}
		lt.LineStyle.Color, lt.LineStyle.Width, lt.LineStyle.Dashes = hue, vg.Points(1.2), dashed
		p.Add(lt, lm, pts)
		p.Legend.Add(fmt.Sprintf("%s (%d seeds)", c.Name, len(arms[i].Runs)), &plotter.Polygon{Color: ArmBand(i)}, &plotter.Line{LineStyle: draw.LineStyle{Color: hue, Width: vg.Points(2)}})
	}
	p.Legend.Add(set+" (mean, range)", &plotter.Line{LineStyle: draw.LineStyle{Color: keyColor, Width: vg.Points(2)}})
	p.Legend.Add("training (mean)", &plotter.Line{LineStyle: draw.LineStyle{Color: keyColor, Width: vg.Points(1.2), Dashes: dashed}})

	if p.X.Min == p.X.Max {
		p.X.Min, p.X.Max = p.X.Min-1, p.X.Max+1
	}
	lo, hi := YRange(rep, tr)
	// Room above for the legend in the top right corner: an entry is
	// about 12 pt of the roughly 310 pt the data get.
	free := math.Max(0.5, 1-(12*float64(len(arms)+2)+8)/310)
	p.Y.Min, p.Y.Max = lo, lo+(hi-lo)/free

	cv := vgimg.NewWith(vgimg.UseWH(curvesW*vg.Inch/dpi, curvesH*vg.Inch/dpi), vgimg.UseDPI(dpi))
	p.Draw(draw.New(cv))
	return cv.Image(), nil
}
