package plot

import (
	"errors"
	"fmt"
	"image"
	"image/color"
	"math"
	"strconv"

	gplot "gonum.org/v1/plot"
	"gonum.org/v1/plot/font"
	"gonum.org/v1/plot/plotter"
	"gonum.org/v1/plot/plotutil"
	"gonum.org/v1/plot/vg"
	"gonum.org/v1/plot/vg/draw"
	"gonum.org/v1/plot/vg/vgimg"
)

// The chart's size in pixels; the canvas is drawn at dpi, so text sizes in
// points come out at the usual screen size.
const (
	curvesW = 800
	curvesH = 500
	dpi     = 96
)

var (
	sans     = font.Font{Typeface: "Liberation", Variant: "Sans"}
	dashed   = []vg.Length{vg.Points(6), vg.Points(3)}
	dotted   = []vg.Length{vg.Points(1), vg.Points(2.5)}
	dashDot  = []vg.Length{vg.Points(8), vg.Points(2.5), vg.Points(1.5), vg.Points(2.5)}
	keyColor = color.Gray{0x40}
)

// Curves draws the top-1 error in percent against the epoch for every run on
// one 800×500 PNG chart at out: validation solid, training dashed, validation
// top-5 dotted (when any run reports one above zero), test dash-dotted (when
// any run scored a test set apart from validation), one colour per run, and
// a legend naming the runs and the three line styles, in the top right
// corner above the highest point (the error axis starts at 0 and leaves it
// room). Epoch ticks are whole epochs. out must end in .png
// (see CheckOut); it is written atomically.
func Curves(out string, runs []Run) error {
	if err := CheckOut(out); err != nil {
		return err
	}
	img, err := CurvesImage(runs)
	if err != nil {
		return err
	}
	return WritePNG(out, img)
}

// CurvesImage draws Curves' chart without writing it.
func CurvesImage(runs []Run) (image.Image, error) {
	if len(runs) == 0 {
		return nil, errors.New("plot: no runs to draw")
	}
	top5, test, split := false, false, false
	for i, r := range runs {
		if len(r.Epochs) == 0 {
			return nil, fmt.Errorf("plot: run %q has no epochs", runName(r, i))
		}
		for _, e := range r.Epochs {
			top5 = top5 || e.ValTop5Err > 0
			test = test || e.TestTop1Err != nil
			split = split || e.ValSet != ""
		}
	}

	p := errorPlot("top-1 error")

	for i, r := range runs {
		c := plotutil.DarkColors[i%len(plotutil.DarkColors)]
		val := make(plotter.XYs, len(r.Epochs))
		train := make(plotter.XYs, len(r.Epochs))
		val5 := make(plotter.XYs, len(r.Epochs))
		for j, e := range r.Epochs {
			x := float64(e.Epoch)
			val[j] = plotter.XY{X: x, Y: 100 * e.ValTop1Err}
			train[j] = plotter.XY{X: x, Y: 100 * e.TrainTop1Err}
			val5[j] = plotter.XY{X: x, Y: 100 * e.ValTop5Err}
		}
		lv, pts, err := plotter.NewLinePoints(val)
		if err != nil {
			return nil, fmt.Errorf("plot: run %q: %v", runName(r, i), err)
		}
		lv.LineStyle.Color, lv.LineStyle.Width = c, vg.Points(1.5)
		pts.GlyphStyle.Color, pts.GlyphStyle.Radius, pts.GlyphStyle.Shape = c, vg.Points(2), draw.CircleGlyph{}
		lt, err := plotter.NewLine(train)
		if err != nil {
			return nil, fmt.Errorf("plot: run %q: %v", runName(r, i), err)
		}
		lt.LineStyle.Color, lt.LineStyle.Width, lt.LineStyle.Dashes = c, vg.Points(1.5), dashed
		p.Add(lt, lv, pts)
		if len(train) == 1 { // a dashed line through one point draws nothing
			tp, err := plotter.NewScatter(train)
			if err != nil {
				return nil, fmt.Errorf("plot: run %q: %v", runName(r, i), err)
			}
			tp.GlyphStyle.Color, tp.GlyphStyle.Radius, tp.GlyphStyle.Shape = c, vg.Points(2.5), draw.RingGlyph{}
			p.Add(tp)
		}
		if test {
			var ts plotter.XYs
			for _, e := range r.Epochs {
				if e.TestTop1Err != nil {
					ts = append(ts, plotter.XY{X: float64(e.Epoch), Y: 100 * *e.TestTop1Err})
				}
			}
			if len(ts) > 0 {
				lts, err := plotter.NewLine(ts)
				if err != nil {
					return nil, fmt.Errorf("plot: run %q: %v", runName(r, i), err)
				}
				lts.LineStyle.Color, lts.LineStyle.Width, lts.LineStyle.Dashes = c, vg.Points(1.5), dashDot
				p.Add(lts)
			}
		}
		if top5 {
			l5, err := plotter.NewLine(val5)
			if err != nil {
				return nil, fmt.Errorf("plot: run %q: %v", runName(r, i), err)
			}
			l5.LineStyle.Color, l5.LineStyle.Width, l5.LineStyle.Dashes = c, vg.Points(1.2), dotted
			p.Add(l5)
		}
		key := &plotter.Line{LineStyle: draw.LineStyle{Color: c, Width: vg.Points(4)}}
		p.Legend.Add(runName(r, i), key)
	}
	// A key to the line styles, in grey so it is not read as a run.
	styles := []struct {
		name   string
		dashes []vg.Length
	}{{"validation", nil}, {"training", dashed}}
	if !split {
		// Runs from before the held-out split validated on the test set.
		styles[0].name = "validation (the test set)"
	}
	if test {
		styles = append(styles, struct {
			name   string
			dashes []vg.Length
		}{"test", dashDot})
	}
	if top5 {
		styles = append(styles, struct {
			name   string
			dashes []vg.Length
		}{"validation top-5", dotted})
	}
	for _, s := range styles {
		p.Legend.Add(s.name, &plotter.Line{LineStyle: draw.LineStyle{Color: keyColor, Width: vg.Points(1.5), Dashes: s.dashes}})
	}

	if p.X.Min == p.X.Max { // one epoch: give it some room
		p.X.Min, p.X.Max = p.X.Min-1, p.X.Max+1
	}
	// Room above the highest point for the legend in the top right corner:
	// an entry is about 12 pt of the roughly 310 pt the data get.
	entries := len(runs) + len(styles)
	free := math.Max(0.5, 1-(12*float64(entries)+8)/310)
	p.Y.Min = 0
	p.Y.Max = math.Max(p.Y.Max/free, 1)

	c := vgimg.NewWith(vgimg.UseWH(curvesW*vg.Inch/dpi, curvesH*vg.Inch/dpi), vgimg.UseDPI(dpi))
	p.Draw(draw.New(c))
	return c.Image(), nil
}

func runName(r Run, i int) string {
	if r.Name == "" {
		return "run " + strconv.Itoa(i+1)
	}
	return r.Name
}

// epochTicks labels whole epochs only, every 1, 2, 5, 10, 20, … epochs so
// that at most about ten labels fit.
func epochTicks(lo, hi float64) []gplot.Tick {
	first, last := int(math.Ceil(lo)), int(math.Floor(hi))
	step := 1
steps:
	for base := 1; ; base *= 10 {
		for _, m := range []int{1, 2, 5} {
			if step = base * m; (last-first)/step <= 10 {
				break steps
			}
		}
	}
	var ticks []gplot.Tick
	start := (first + step - 1) / step * step
	if first < 0 {
		start = first / step * step
	}
	for e := start; e <= last; e += step {
		ticks = append(ticks, gplot.Tick{Value: float64(e), Label: strconv.Itoa(e)})
	}
	return ticks
}

// percentTicks labels multiples of 1, 2 or 5 × 10ⁿ percent, at most eight,
// with as many decimals as the step needs ("10", "0.5").
func percentTicks(lo, hi float64) []gplot.Tick {
	span := hi - lo
	if !(span > 0) {
		return nil
	}
	step := 0.0
steps:
	for e := math.Floor(math.Log10(span / 8)); ; e++ {
		for _, m := range []float64{1, 2, 5} {
			if step = m * math.Pow(10, e); span/step <= 8 {
				break steps
			}
		}
	}
	decimals := max(0, -int(math.Floor(math.Log10(step))))
	var ticks []gplot.Tick
	for i := math.Ceil(lo / step); i*step <= hi+step*1e-9; i++ {
		ticks = append(ticks, gplot.Tick{Value: i * step, Label: strconv.FormatFloat(i*step, 'f', decimals, 64)})
	}
	return ticks
}

// errorPlot is an empty chart of top-1 error (%) against the epoch, with
// the house's fonts, ticks, legend and grid, titled title.
func errorPlot(title string) *gplot.Plot {
	p := gplot.New()
	p.Title.Text = title
	p.Title.TextStyle.Font = font.From(sans, 14)
	p.Title.Padding = vg.Points(6)
	p.X.Label.Text = "epoch"
	p.Y.Label.Text = "top-1 error (%)"
	for _, ax := range []*gplot.Axis{&p.X, &p.Y} {
		ax.Label.TextStyle.Font = font.From(sans, 12)
		ax.Tick.Label.Font = font.From(sans, 10)
	}
	p.X.Tick.Marker = gplot.TickerFunc(epochTicks)
	p.Y.Tick.Marker = gplot.TickerFunc(percentTicks)
	p.Legend.Top = true
	p.Legend.XOffs = -vg.Points(8)
	p.Legend.TextStyle.Font = font.From(sans, 10)
	p.Legend.ThumbnailWidth = vg.Points(28)
	grid := plotter.NewGrid()
	grid.Vertical.Color = color.Gray{0xe0}
	grid.Horizontal.Color = color.Gray{0xe0}
	p.Add(grid)
	return p
}
