package data

import (
	"fmt"
	"image"
)

// prepAxis is the resampling of one axis: output pixel j is
// Σ_k w[j·n+k]·src[first[j]+k], n taps for every pixel (zero-padded).
type prepAxis struct {
	first []int
	w     []float32
	n     int
}

// newPrepAxis returns the taps of scaled pixels off … off+m−1 of an axis
// of s source pixels scaled to d (see Prepare for the filter).
func newPrepAxis(s, d, off, m int) prepAxis {
	first := make([]int, m)
	ws := make([][]float32, m)
	for j := range m {
		u := off + j
		switch {
		case s == d:
			first[j], ws[j] = u, []float32{1}
		case s > d:
			// In units of 1/d source pixels: scaled pixel u covers
			// [u·s, (u+1)·s), source pixel i covers [i·d, (i+1)·d).
			lo, hi := u*s, (u+1)*s
			first[j] = lo / d
			for i := first[j]; i*d < hi; i++ {
				ws[j] = append(ws[j], float32(min(hi, (i+1)*d)-max(lo, i*d))/float32(s))
			}
		default:
			x := (float64(u)+0.5)*float64(s)/float64(d) - 0.5
			x = min(max(x, 0), float64(s-1))
			i := int(x)
			if f := x - float64(i); f == 0 || i == s-1 {
				first[j], ws[j] = i, []float32{1}
			} else {
				first[j], ws[j] = i, []float32{float32(1 - f), float32(f)}
			}
		}
	}
	a := prepAxis{first: first}
	for _, w := range ws {
		a.n = max(a.n, len(w))
	}
	a.w = make([]float32, m*a.n)
	for j, w := range ws {
		// Pad with zero weights, keeping the taps inside the axis.
		start := min(first[j], s-a.n)
		copy(a.w[j*a.n+first[j]-start:], w)
		a.first[j] = start
	}
	return a
}

// span returns the source pixels [lo, hi) the axis reads.
func (a prepAxis) span() (lo, hi int) {
	return a.first[0], a.first[len(a.first)-1] + a.n
}

// scaledSize returns the size of a w×h image scaled so that its shorter
// side is size, the longer in proportion, rounded to nearest.
func scaledSize(w, h, size int) (dw, dh int) {
	if w <= h {
		return size, max(size, (2*h*size+w)/(2*w))
	}
	return max(size, (2*w*size+h)/(2*h)), size
}

// prepScratch is one worker's reusable buffers.
type prepScratch struct {
	row, mid, acc []float32
}

func grow(b []float32, n int) []float32 {
	if cap(b) < n {
		return make([]float32, n)
	}
	return b[:n]
}

// prepImage writes img rescaled and centre-cropped (see Prepare) to dst,
// (3, size, size).
func prepImage(img image.Image, size int, dst []uint8, sc *prepScratch) error {
	b := img.Bounds()
	sw, sh := b.Dx(), b.Dy()
	if sw < 1 || sh < 1 {
		return fmt.Errorf("empty image (%d×%d pixels)", sw, sh)
	}
	dw, dh := scaledSize(sw, sh, size)
	xs := newPrepAxis(sw, dw, (dw-size)/2, size)
	ys := newPrepAxis(sh, dh, (dh-size)/2, size)
	x0, x1 := xs.span()
	y0, y1 := ys.span()
	nx, ny := x1-x0, y1-y0
	sc.row = grow(sc.row, 3*nx)      // (nx, 3): RGB interleaved
	sc.mid = grow(sc.mid, ny*3*size) // (ny, 3, size)
	sc.acc = grow(sc.acc, 3*size)    // (3, size)
	// Horizontally, one source row at a time, the three channels at once.
	for y := y0; y < y1; y++ {
		readRGBRow(sc.row, img, b.Min.X+x0, b.Min.Y+y, nx)
		mid := sc.mid[(y-y0)*3*size : (y-y0+1)*3*size]
		prepRow(mid[:size], mid[size:2*size], mid[2*size:], sc.row, xs, x0)
	}
	// Vertically, a whole output row (three channels) at a time.
	m := ys.n
	for i := range size {
		ws := ys.w[i*m : i*m+m]
		row := func(k int) []float32 {
			y := ys.first[i] + k - y0
			return sc.mid[y*3*size : (y+1)*3*size]
		}
		acc := sc.acc[:3*size]
		switch m {
		case 1:
			copy(acc, row(0))
		case 2:
			w0, w1 := ws[0], ws[1]
			s0, s1 := row(0), row(1)
			s0, s1 = s0[:len(acc)], s1[:len(acc)]
			for q := range acc {
				acc[q] = w0*s0[q] + w1*s1[q]
			}
		case 3:
			w0, w1, w2 := ws[0], ws[1], ws[2]
			s0, s1, s2 := row(0), row(1), row(2)
			s0, s1, s2 = s0[:len(acc)], s1[:len(acc)], s2[:len(acc)]
			for q := range acc {
				acc[q] = w0*s0[q] + w1*s1[q] + w2*s2[q]
			}
		default:
			clear(acc)
			for k, w := range ws {
				src := row(k)[:len(acc)]
				for q, v := range src {
					acc[q] += w * v
				}
			}
		}
		for c := range 3 {
			out := dst[(c*size+i)*size : (c*size+i+1)*size]
			for j, v := range acc[c*size : (c+1)*size] {
				out[j] = uint8(min(max(v, 0), 255) + 0.5)
			}
		}
	}
	return nil
}

// prepRow resamples one source row, RGB interleaved (row), along the axis
// xs whose span starts at x0, into the channels r, g, b.
func prepRow(r, g, b, row []float32, xs prepAxis, x0 int) {
	n := len(xs.first)
	r, g, b = r[:n], g[:n], b[:n]
	switch xs.n {
	case 1:
		for j, f := range xs.first {
			w := xs.w[j]
			src := row[3*(f-x0) : 3*(f-x0)+3]
			r[j], g[j], b[j] = w*src[0], w*src[1], w*src[2]
		}
	case 2:
		ws := xs.w[:2*n]
		for j, f := range xs.first {
			w0, w1 := ws[2*j], ws[2*j+1]
			src := row[3*(f-x0) : 3*(f-x0)+6]
			r[j] = w0*src[0] + w1*src[3]
			g[j] = w0*src[1] + w1*src[4]
			b[j] = w0*src[2] + w1*src[5]
		}
	case 3:
		ws := xs.w[:3*n]
		for j, f := range xs.first {
			w0, w1, w2 := ws[3*j], ws[3*j+1], ws[3*j+2]
			src := row[3*(f-x0) : 3*(f-x0)+9]
			r[j] = w0*src[0] + w1*src[3] + w2*src[6]
			g[j] = w0*src[1] + w1*src[4] + w2*src[7]
			b[j] = w0*src[2] + w1*src[5] + w2*src[8]
		}
	default:
		m := xs.n
		for j, f := range xs.first {
			ws := xs.w[j*m : j*m+m]
			src := row[3*(f-x0) : 3*(f-x0+m)]
			var vr, vg, vb float32
			for k, w := range ws {
				px := src[3*k : 3*k+3]
				vr += w * px[0]
				vg += w * px[1]
				vb += w * px[2]
			}
			r[j], g[j], b[j] = vr, vg, vb
		}
	}
}

// readRGBRow writes n pixels of row y of img from column x as R, G, B on
// the 0..255 scale, interleaved, into dst (n, 3): image.Image's RGBA()/257.
func readRGBRow(dst []float32, img image.Image, x, y, n int) {
	dst = dst[:3*n]
	const k = 1.0 / 257
	switch m := img.(type) {
	case *image.YCbCr:
		// color.YCbCr's RGBA, inlined: the 16-bit conversion, unrounded.
		yrow := m.Y[m.YOffset(x, y):]
		yrow = yrow[:n]
		var shift uint // chroma columns are x >> shift
		switch m.SubsampleRatio {
		case image.YCbCrSubsampleRatio422, image.YCbCrSubsampleRatio420:
			shift = 1
		case image.YCbCrSubsampleRatio411, image.YCbCrSubsampleRatio410:
			shift = 2
		}
		if x < 0 || m.Rect.Min.X < 0 {
			// image.YCbCr divides, rounding towards zero; a shift would not.
			for i := range n {
				r, g, b, _ := m.YCbCrAt(x+i, y).RGBA()
				dst[3*i], dst[3*i+1], dst[3*i+2] = float32(r)*k, float32(g)*k, float32(b)*k
			}
			return
		}
		cb := m.Cb[m.COffset(m.Rect.Min.X, y):]
		cr := m.Cr[m.COffset(m.Rect.Min.X, y):]
		cmin := m.Rect.Min.X >> shift
		for i, yv := range yrow {
			ci := (x+i)>>shift - cmin
			yy := int32(yv) * 0x10101
			cbv, crv := int32(cb[ci])-128, int32(cr[ci])-128
			dst[3*i] = float32(clamp16(yy+91881*crv)) * k
			dst[3*i+1] = float32(clamp16(yy-22554*cbv-46802*crv)) * k
			dst[3*i+2] = float32(clamp16(yy+116130*cbv)) * k
		}
	case *image.Gray:
		row := m.Pix[m.PixOffset(x, y):]
		row = row[:n]
		for i, v := range row {
			f := float32(v)
			dst[3*i], dst[3*i+1], dst[3*i+2] = f, f, f
		}
	case *image.RGBA: // premultiplied: over black
		row := m.Pix[m.PixOffset(x, y):]
		row = row[:4*n]
		for i := range n {
			dst[3*i], dst[3*i+1], dst[3*i+2] = float32(row[4*i]), float32(row[4*i+1]), float32(row[4*i+2])
		}
	case *image.NRGBA:
		for i := range n {
			r, g, b, _ := m.NRGBAAt(x+i, y).RGBA()
			dst[3*i], dst[3*i+1], dst[3*i+2] = float32(r)*k, float32(g)*k, float32(b)*k
		}
	case *image.CMYK:
		for i := range n {
			r, g, b, _ := m.CMYKAt(x+i, y).RGBA() // as color.RGBAModel converts it
			dst[3*i], dst[3*i+1], dst[3*i+2] = float32(r)*k, float32(g)*k, float32(b)*k
		}
	default:
		for i := range n {
			r, g, b, _ := img.At(x+i, y).RGBA()
			dst[3*i], dst[3*i+1], dst[3*i+2] = float32(r)*k, float32(g)*k, float32(b)*k
		}
	}
}

// clamp16 is v >> 8 clamped to [0, 0xffff], as color.YCbCr's RGBA does.
func clamp16(v int32) int32 {
	if uint32(v)&0xff000000 == 0 {
		return v >> 8
	}
	return ^(v >> 31) & 0xffff
}

// PrepareImage is what Prepare does to one image, for images that arrive
// one at a time (trainer predict): the shorter side rescaled to size, the
// central size×size kept, as (3, size, size) RGB.
func PrepareImage(img image.Image, size int) ([]uint8, error) {
	dst := make([]uint8, 3*size*size)
	if err := prepImage(img, size, dst, &prepScratch{}); err != nil {
		return nil, err
	}
	return dst, nil
}
