package plot

import (
	"fmt"
	"image"
	"image/color"
	"math"
	"slices"

	"github.com/alexnet-go/trainer/model"
)

// The kernel grid's geometry, in pixels (see KernelImage).
const (
	kernelCols   = 16 // filters per row
	kernelMinPx  = 40 // a filter is drawn at least this tall and wide
	kernelGap    = 2  // between filters and around the border
	kernelSepPx  = 6  // the band between the towers, on top of a gap each side
	kernelMidVal = 128
)

var (
	gapColor = color.RGBA{0xff, 0xff, 0xff, 0xff}
	sepColor = color.RGBA{0x30, 0x30, 0x30, 0xff}
)

// Kernels draws the first layer's kernels, the paper's Figure 3, as a PNG at
// out (see KernelImage for the layout). out must end in .png (see CheckOut);
// it is written atomically.
func Kernels(out string, w map[string]model.Tensor) error {
	if err := CheckOut(out); err != nil {
		return err
	}
	img, err := KernelImage(w)
	if err != nil {
		return err
	}
	return WritePNG(out, img)
}

// KernelImage draws the first layer's kernels: tower a's conv1a.weight above
// tower b's conv1b.weight, or the one block of a one-tower net's conv1.weight,
// each (K, C, R, S) with C = 3 (drawn as RGB, channel 0 red) or C = 1 (grey).
//
// Each filter is normalized on its own, over all its C·R·S values:
//
//	v' = (v − min) / (max − min)    a constant filter is mid-grey (128)
//
// and each of its R×S pixels drawn as an s×s square, s = ⌈40 / max(R, S)⌉
// (4 for AlexNet's 11×11, 8 for 5×5). With g = 2 px gaps between filters and
// around the border, c = min(K, 16) filters per row and n = ⌈K / 16⌉ rows per
// tower, filter k of tower t (0 for a, 1 for b) has its top-left corner at
//
//	x = g + (k mod c)·(S·s + g)
//	y = g + ⌊k / c⌋·(R·s + g) + t·(h + 6),   h = g + n·(R·s + g)
//
// so a tower is h tall, the image g + c·(S·s + g) wide and h, or 2h + 6 for
// two towers, tall: a 6-px dark band separates the towers, 2 + 6 + 2 px
// between them against 2 px between rows. Gaps are white.
func KernelImage(w map[string]model.Tensor) (*image.RGBA, error) {
	names := []string{"conv1a.weight", "conv1b.weight"}
	if _, ok := w[names[0]]; !ok {
		if _, ok := w[names[1]]; ok {
			return nil, fmt.Errorf("plot: conv1b.weight without conv1a.weight: want both towers")
		}
		names = []string{"conv1.weight"}
		if _, ok := w[names[0]]; !ok {
			return nil, fmt.Errorf("plot: no conv1a.weight/conv1b.weight or conv1.weight: not an AlexNet's weights")
		}
	} else if _, ok := w[names[1]]; !ok {
		return nil, fmt.Errorf("plot: conv1a.weight without conv1b.weight: want both towers")
	}
	towers := make([]model.Tensor, len(names))
	for t, name := range names {
		x := w[name]
		if err := checkKernel(name, x); err != nil {
			return nil, err
		}
		if t > 0 && !slices.Equal(x.Shape, towers[0].Shape) {
			return nil, fmt.Errorf("plot: %s is %s but %s is %s: the towers differ", name, shapeString(x.Shape), names[0], shapeString(towers[0].Shape))
		}
		towers[t] = x
	}

	k, ch, rr, ss := towers[0].Shape[0], towers[0].Shape[1], towers[0].Shape[2], towers[0].Shape[3]
	scale := (kernelMinPx + max(rr, ss) - 1) / max(rr, ss)
	cellW, cellH := ss*scale, rr*scale
	cols := min(k, kernelCols)
	rows := (k + cols - 1) / cols
	towerH := kernelGap + rows*(cellH+kernelGap)
	width := kernelGap + cols*(cellW+kernelGap)
	height := len(towers)*towerH + (len(towers)-1)*kernelSepPx

	img := image.NewRGBA(image.Rect(0, 0, width, height))
	fill(img, img.Bounds(), gapColor)
	for t, x := range towers {
		if t > 0 {
			// The band sits between the gap below tower a's last row and
			// the gap above tower b's first.
			y := t*towerH + (t-1)*kernelSepPx
			fill(img, image.Rect(0, y, width, y+kernelSepPx), sepColor)
		}
		per := ch * rr * ss
		for f := 0; f < k; f++ {
			v := x.Data[f*per : (f+1)*per] // (C, R, S)
			lo, hi := float64(v[0]), float64(v[0])
			for _, a := range v {
				if math.IsNaN(float64(a)) || math.IsInf(float64(a), 0) {
					return nil, fmt.Errorf("plot: %s: filter %d holds NaN or Inf (a diverged run?)", names[t], f)
				}
				lo, hi = min(lo, float64(a)), max(hi, float64(a))
			}
			norm := func(a float32) uint8 {
				if hi == lo {
					return kernelMidVal
				}
				return uint8(math.Round(255 * (float64(a) - lo) / (hi - lo)))
			}
			x0 := kernelGap + (f%cols)*(cellW+kernelGap)
			y0 := kernelGap + (f/cols)*(cellH+kernelGap) + t*(towerH+kernelSepPx)
			for r := 0; r < rr; r++ {
				for s := 0; s < ss; s++ {
					var px color.RGBA
					if ch == 3 {
						px = color.RGBA{norm(v[r*ss+s]), norm(v[(rr+r)*ss+s]), norm(v[(2*rr+r)*ss+s]), 0xff}
					} else {
						g := norm(v[r*ss+s])
						px = color.RGBA{g, g, g, 0xff}
					}
					fill(img, image.Rect(x0+s*scale, y0+r*scale, x0+(s+1)*scale, y0+(r+1)*scale), px)
				}
			}
		}
	}
	return img, nil
}

func checkKernel(name string, x model.Tensor) error {
	if len(x.Shape) != 4 {
		return fmt.Errorf("plot: %s is %s: want 4-D (K, C, R, S)", name, shapeString(x.Shape))
	}
	for _, d := range x.Shape {
		if d < 1 {
			return fmt.Errorf("plot: %s is %s: want every dimension ≥ 1", name, shapeString(x.Shape))
		}
	}
	if c := x.Shape[1]; c != 1 && c != 3 {
		return fmt.Errorf("plot: %s is %s: want C = 1 (grey) or 3 (RGB) input channels, not %d", name, shapeString(x.Shape), c)
	}
	if n := x.Shape[0] * x.Shape[1] * x.Shape[2] * x.Shape[3]; len(x.Data) != n {
		return fmt.Errorf("plot: %s is %s but holds %d values, not %d", name, shapeString(x.Shape), len(x.Data), n)
	}
	return nil
}

func fill(img *image.RGBA, r image.Rectangle, c color.RGBA) {
	r = r.Intersect(img.Bounds())
	for y := r.Min.Y; y < r.Max.Y; y++ {
		for x := r.Min.X; x < r.Max.X; x++ {
			img.SetRGBA(x, y, c)
		}
	}
}

func shapeString(s []int) string {
	b := []byte{'('}
	for i, d := range s {
		if i > 0 {
			b = append(b, ',')
		}
		b = fmt.Appendf(b, "%d", d)
	}
	return string(append(b, ')'))
}
