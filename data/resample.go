package data

import (
	"fmt"
	"image"
	"image/color"
)

// The one resampler of the package: every image that becomes pixels passes
// through it, Prepare's shards, PrepareImage and FromImage alike.
//
// An image is scaled to dw×dh and a window of that cut out; each axis is
// resampled on its own. An axis that shrinks from s to d pixels is
// area-averaged (a box filter): scaled pixel u is the mean of the source
// over [u·s/d, (u+1)·s/d), partial pixels weighted by their overlap. An
// axis that grows is interpolated linearly between the two nearest source
// pixel centres: scaled pixel u samples source position (u+½)·s/d − ½,
// clamped to [0, s−1]. An axis of equal size is copied. Values are on the
// 0..255 scale, computed in float32, and rounded to nearest once.
//
// What Prepare writes is this resampler's output: a change to its
// arithmetic changes every prepared data set, so it must not change. That
// is why every product is converted (float32(w*v)) before it is added: Go
// may otherwise fuse w*v + a into one multiply-add that rounds once (on
// arm64, or amd64 built with GOAMD64=v3), and the same source would prepare
// to other bytes on another build. The conversions keep the separately
// rounded products that amd64's default build has always computed.

// resampleAxis is the resampling of one axis: output pixel j is
// Σ_k w[j·n+k]·src[first[j]+k], n taps for every pixel (zero-padded).
type resampleAxis struct {
	first []int
	w     []float32
	n     int
}

// newResampleAxis returns the taps of scaled pixels off … off+m−1 of an
// axis of s source pixels scaled to d.
func newResampleAxis(s, d, off, m int) resampleAxis {
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
	a := resampleAxis{first: first}
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
func (a resampleAxis) span() (lo, hi int) {
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

// resampleScratch is one goroutine's reusable buffers.
type resampleScratch struct {
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
func prepImage(img image.Image, size int, dst []uint8, sc *resampleScratch) error {
	b := img.Bounds()
	sw, sh := b.Dx(), b.Dy()
	if sw < 1 || sh < 1 {
		return fmt.Errorf("empty image (%d×%d pixels)", sw, sh)
	}
	dw, dh := scaledSize(sw, sh, size)
	resample(img, 3, dw, dh, (dw-size)/2, (dh-size)/2, size, size, dst, sc)
	return nil
}

// PrepareImage is what Prepare does to one image, for images that arrive
// one at a time (trainer predict): the shorter side rescaled to size, the
// central size×size kept, as (3, size, size) RGB.
func PrepareImage(img image.Image, size int) ([]uint8, error) {
	dst := make([]uint8, 3*size*size)
	if err := prepImage(img, size, dst, &resampleScratch{}); err != nil {
		return nil, err
	}
	return dst, nil
}

// FromImage returns img as c channels of h×w 8-bit pixels, (C, H, W), the
// layout of a Set's images, so that an image file can be fed to a net
// trained on a data set.
//
// Colour: for c == 1 an image's own gray is used where it has one
// (image.Gray; a JPEG's luma Y), and otherwise the ITU-R BT.601 luma
//
//	Y = 0.299 R + 0.587 G + 0.114 B
//
// (the weights of color.GrayModel); for c == 3, R, G and B, a gray image's
// value repeated. Transparency is composited over black: image.Image's
// colours are alpha-premultiplied, which is exactly that, and black is the
// background of MNIST and Fashion-MNIST, whose objects are light. A photo of
// a dark object on white must be inverted by the caller to look like them.
//
// Size: the image is scaled to w×h, the aspect ratio not kept, by the
// resampler Prepare uses (see resample.go): an axis that shrinks from s to
// d pixels is area-averaged (a box filter), output pixel j the mean of the
// source over [j·s/d, (j+1)·s/d), partial pixels weighted by their overlap;
// an axis that grows is interpolated linearly between the two nearest
// source pixel centres, output j sampling source position
// x = (j+½)·s/d − ½, clamped to [0, s−1]; an axis of equal size is copied.
// Values are computed in float32 on the 0..255 scale and rounded once, to
// nearest. An empty image gives black.
//
// FromImage panics if c is not 1 or 3 or h or w is not positive.
func FromImage(img image.Image, c, h, w int) []uint8 {
	if (c != 1 && c != 3) || h < 1 || w < 1 {
		panic(fmt.Sprintf("data: FromImage(c=%d, h=%d, w=%d): want 1 or 3 channels of at least 1×1", c, h, w))
	}
	out := make([]uint8, c*h*w)
	if b := img.Bounds(); b.Dx() > 0 && b.Dy() > 0 {
		resample(img, c, w, h, 0, 0, w, h, out, &resampleScratch{})
	}
	return out
}

// resample writes c channels of img scaled to dw×dh, the window of w×h
// scaled pixels from (ox, oy), to dst, (c, h, w). With c == 3 they are R, G
// and B (readRGBRow); with c == 1, gray (readGrayRow). The image must not
// be empty.
func resample(img image.Image, c, dw, dh, ox, oy, w, h int, dst []uint8, sc *resampleScratch) {
	b := img.Bounds()
	sw, sh := b.Dx(), b.Dy()
	xs := newResampleAxis(sw, dw, ox, w)
	ys := newResampleAxis(sh, dh, oy, h)
	x0, x1 := xs.span()
	y0, y1 := ys.span()
	nx, ny := x1-x0, y1-y0
	sc.row = grow(sc.row, 3*nx)   // (nx, 3): RGB interleaved
	sc.mid = grow(sc.mid, ny*3*w) // (ny, 3, w)
	sc.acc = grow(sc.acc, 3*w)    // (3, w)
	// Horizontally, one source row at a time, the three channels at once.
	// Gray is carried as three equal channels, of which the first is kept:
	// one code path, at a cost only FromImage's single images pay.
	for y := y0; y < y1; y++ {
		if c == 1 {
			readGrayRow(sc.row, img, b.Min.X+x0, b.Min.Y+y, nx)
		} else {
			readRGBRow(sc.row, img, b.Min.X+x0, b.Min.Y+y, nx)
		}
		mid := sc.mid[(y-y0)*3*w : (y-y0+1)*3*w]
		resampleRow(mid[:w], mid[w:2*w], mid[2*w:], sc.row, xs, x0)
	}
	// Vertically, a whole output row (three channels) at a time.
	m := ys.n
	for i := range h {
		ws := ys.w[i*m : i*m+m]
		row := func(k int) []float32 {
			y := ys.first[i] + k - y0
			return sc.mid[y*3*w : (y+1)*3*w]
		}
		acc := sc.acc[:3*w]
		switch m {
		case 1:
			copy(acc, row(0))
		case 2:
			w0, w1 := ws[0], ws[1]
			s0, s1 := row(0), row(1)
			s0, s1 = s0[:len(acc)], s1[:len(acc)]
			for q := range acc {
				acc[q] = float32(w0*s0[q]) + float32(w1*s1[q])
			}
		case 3:
			w0, w1, w2 := ws[0], ws[1], ws[2]
			s0, s1, s2 := row(0), row(1), row(2)
			s0, s1, s2 = s0[:len(acc)], s1[:len(acc)], s2[:len(acc)]
			for q := range acc {
				acc[q] = float32(w0*s0[q]) + float32(w1*s1[q]) + float32(w2*s2[q])
			}
		default:
			clear(acc)
			for k, w := range ws {
				src := row(k)[:len(acc)]
				for q, v := range src {
					acc[q] += float32(w * v)
				}
			}
		}
		for ch := range c {
			out := dst[(ch*h+i)*w : (ch*h+i+1)*w]
			for j, v := range acc[ch*w : (ch+1)*w] {
				out[j] = uint8(min(max(v, 0), 255) + 0.5)
			}
		}
	}
}

// resampleRow resamples one source row, RGB interleaved (row), along the axis
// xs whose span starts at x0, into the channels r, g, b.
func resampleRow(r, g, b, row []float32, xs resampleAxis, x0 int) {
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
			r[j] = float32(w0*src[0]) + float32(w1*src[3])
			g[j] = float32(w0*src[1]) + float32(w1*src[4])
			b[j] = float32(w0*src[2]) + float32(w1*src[5])
		}
	case 3:
		ws := xs.w[:3*n]
		for j, f := range xs.first {
			w0, w1, w2 := ws[3*j], ws[3*j+1], ws[3*j+2]
			src := row[3*(f-x0) : 3*(f-x0)+9]
			r[j] = float32(w0*src[0]) + float32(w1*src[3]) + float32(w2*src[6])
			g[j] = float32(w0*src[1]) + float32(w1*src[4]) + float32(w2*src[7])
			b[j] = float32(w0*src[2]) + float32(w1*src[5]) + float32(w2*src[8])
		}
	default:
		m := xs.n
		for j, f := range xs.first {
			ws := xs.w[j*m : j*m+m]
			src := row[3*(f-x0) : 3*(f-x0+m)]
			var vr, vg, vb float32
			for k, w := range ws {
				px := src[3*k : 3*k+3]
				vr += float32(w * px[0])
				vg += float32(w * px[1])
				vb += float32(w * px[2])
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

// readGrayRow writes n pixels of row y of img from column x as gray on the
// 0..255 scale, each repeated three times, into dst (n, 3): an image's own
// gray where it has one (image.Gray, a JPEG's luma Y, a color.Gray from
// At), else the ITU-R BT.601 luma of its RGBA()/257,
// Y = 0.299 R + 0.587 G + 0.114 B.
func readGrayRow(dst []float32, img image.Image, x, y, n int) {
	dst = dst[:3*n]
	put := func(i int, v float32) { dst[3*i], dst[3*i+1], dst[3*i+2] = v, v, v }
	switch m := img.(type) {
	case *image.Gray:
		for i, v := range m.Pix[m.PixOffset(x, y):][:n] {
			put(i, float32(v))
		}
		return
	case *image.YCbCr:
		for i := range n {
			put(i, float32(m.Y[m.YOffset(x+i, y)]))
		}
		return
	}
	for i := range n {
		col := img.At(x+i, y)
		if g, ok := col.(color.Gray); ok {
			put(i, float32(g.Y))
			continue
		}
		r, g, b, _ := col.RGBA() // premultiplied: composited over black
		fr, fg, fb := float64(r)/257, float64(g)/257, float64(b)/257
		put(i, float32(float64(0.299*fr)+float64(0.587*fg)+float64(0.114*fb)))
	}
}
