package data

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"image"
	"image/color"
	"image/gif"
	"image/jpeg"
	"image/png"
	"io"
	"math"
	"os"
)

// maxImagePixels bounds the images DecodeImageFile accepts, so that a small
// file claiming a huge image (a decompression bomb) fails before it is
// decoded.
const maxImagePixels = 1 << 27

// imageFormats maps each format's magic prefix to its name.
var imageFormats = []struct{ magic, name string }{
	{"\x89PNG\r\n\x1a\n", "PNG"},
	{"\xff\xd8", "JPEG"},
	{"GIF87a", "GIF"},
	{"GIF89a", "GIF"},
}

// decoders are the formats DecodeImageFile reads. Importing their packages
// also registers them with image.Decode.
var decoders = map[string]struct {
	decode func(io.Reader) (image.Image, error)
	config func(io.Reader) (image.Config, error)
}{
	"PNG":  {png.Decode, png.DecodeConfig},
	"JPEG": {jpeg.Decode, jpeg.DecodeConfig},
	"GIF":  {gif.Decode, gif.DecodeConfig},
}

// eofReader notes whether a read reached the end of r. It is an
// io.ByteReader so that the decoders read it directly, not through a
// buffer of their own that would read ahead to the end of a small file.
type eofReader struct {
	r   *bufio.Reader
	eof bool
}

func (e *eofReader) Read(p []byte) (int, error) {
	n, err := e.r.Read(p)
	if err == io.EOF {
		e.eof = true
	}
	return n, err
}

func (e *eofReader) ReadByte() (byte, error) {
	b, err := e.r.ReadByte()
	if err == io.EOF {
		e.eof = true
	}
	return b, err
}

// DecodeImageFile reads a PNG, JPEG or GIF image (the first frame of an
// animated GIF). Errors are *FileError, one line naming the file, wrapping
// ErrNotFound when it cannot be opened and ErrFormat when it is not a whole
// image of those formats: "not a PNG, JPEG or GIF image", "truncated PNG
// image", "corrupt JPEG image: …".
func DecodeImageFile(path string) (image.Image, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, &FileError{Path: path, Problem: openProblem(err), Kind: ErrNotFound, Err: err}
	}
	defer f.Close()
	if st, err := f.Stat(); err == nil && st.IsDir() {
		return nil, &FileError{Path: path, Problem: "is a directory, want a PNG, JPEG or GIF image", Kind: ErrNotFound}
	}
	br := bufio.NewReader(f)
	head, err := br.Peek(8)
	if err != nil && !errors.Is(err, io.EOF) {
		return nil, &FileError{Path: path, Problem: fmt.Sprintf("read error: %v", err), Kind: ErrFormat, Err: err}
	}
	format := ""
	for _, ft := range imageFormats {
		if bytes.HasPrefix(head, []byte(ft.magic)) {
			format = ft.name
		}
	}
	switch {
	case len(head) == 0:
		return nil, &FileError{Path: path, Problem: "empty file, want a PNG, JPEG or GIF image", Kind: ErrFormat}
	case format == "":
		return nil, &FileError{Path: path, Problem: "not a PNG, JPEG or GIF image" + describeImageMagic(head), Kind: ErrFormat, Err: image.ErrFormat}
	}
	dec := decoders[format]
	// The decoders read through eofReader, which notes whether they asked
	// for bytes past the end: a file they could not finish for want of data
	// is truncated, whatever the decoder's own error says.
	er := &eofReader{r: br}
	bad := func(err error) error {
		if er.eof || errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) {
			return &FileError{Path: path, Problem: "truncated " + format + " image", Kind: ErrFormat, Err: err}
		}
		return &FileError{Path: path, Problem: fmt.Sprintf("corrupt %s image: %v", format, err), Kind: ErrFormat, Err: err}
	}
	cfg, err := dec.config(er)
	if err != nil {
		return nil, bad(err)
	}
	if cfg.Width <= 0 || cfg.Height <= 0 || cfg.Width > maxImagePixels/cfg.Height {
		return nil, &FileError{Path: path, Problem: fmt.Sprintf("%s image of %d×%d pixels: want 1 to %d pixels", format, cfg.Width, cfg.Height, maxImagePixels), Kind: ErrFormat}
	}
	if _, err := f.Seek(0, io.SeekStart); err != nil {
		return nil, &FileError{Path: path, Problem: fmt.Sprintf("read error: %v", err), Kind: ErrFormat, Err: err}
	}
	br.Reset(f)
	er.eof = false
	img, err := dec.decode(er)
	if err != nil {
		return nil, bad(err)
	}
	return img, nil
}

// openProblem is an os.Open error without the path, which FileError adds.
func openProblem(err error) string {
	var pe *os.PathError
	if errors.As(err, &pe) {
		return pe.Err.Error()
	}
	return err.Error()
}

// describeImageMagic names a few formats people try instead.
func describeImageMagic(head []byte) string {
	switch {
	case bytes.HasPrefix(head, []byte("BM")):
		return " (it looks like a BMP image: convert it to PNG)"
	case bytes.HasPrefix(head, []byte("RIFF")):
		return " (it looks like a WebP image: convert it to PNG)"
	case bytes.HasPrefix(head, []byte("II*\x00")), bytes.HasPrefix(head, []byte("MM\x00*")):
		return " (it looks like a TIFF image: convert it to PNG)"
	case len(head) >= 8 && bytes.Equal(head[4:8], []byte("ftyp")):
		return " (it looks like a HEIF/AVIF image: convert it to PNG)"
	}
	return ""
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
// Size: each axis is resized on its own, the aspect ratio is not kept. An
// axis that shrinks from s to d pixels is area-averaged (a box filter):
// output pixel j is the mean of the source over [j·s/d, (j+1)·s/d), partial
// pixels weighted by their overlap. An axis that grows is interpolated
// linearly between the two nearest source pixel centres: output j samples
// source position x = (j+½)·s/d − ½, clamped to [0, s−1]. An axis of equal
// size is copied. Values are computed in float64 on the 0..255 scale and
// rounded once, to nearest. An empty image gives black.
//
// FromImage panics if c is not 1 or 3 or h or w is not positive.
func FromImage(img image.Image, c, h, w int) []uint8 {
	if (c != 1 && c != 3) || h < 1 || w < 1 {
		panic(fmt.Sprintf("data: FromImage(c=%d, h=%d, w=%d): want 1 or 3 channels of at least 1×1", c, h, w))
	}
	out := make([]uint8, c*h*w)
	b := img.Bounds()
	sh, sw := b.Dy(), b.Dx()
	if sh <= 0 || sw <= 0 {
		return out
	}
	xs, ys := resampleWeights(sw, w), resampleWeights(sh, h)
	// Rows are read one at a time and resized horizontally at once, so the
	// only full-height buffer is (c, sh, w): a large photo costs one source
	// row, not a float64 copy of itself.
	src := make([]float64, c*sw) // (C, sw): one source row
	mid := make([]float64, c*sh*w)
	for y := range sh {
		readRow(src, img, c, b.Min.X, b.Min.Y+y, sw)
		for k := range c {
			row := src[k*sw : (k+1)*sw]
			for j, t := range xs {
				mid[(k*sh+y)*w+j] = t.apply(row, 1)
			}
		}
	}
	for k := range c {
		plane := mid[k*sh*w : (k+1)*sh*w]
		for i, t := range ys {
			for j := range w {
				v := t.apply(plane[j:], w)
				out[(k*h+i)*w+j] = uint8(math.Round(min(max(v, 0), 255)))
			}
		}
	}
	return out
}

// taps are one output pixel's weights over source pixels first, first+1, …
type taps struct {
	first int
	w     []float64
}

// apply returns Σ_k w[k]·v[(first+k)·stride].
func (t taps) apply(v []float64, stride int) float64 {
	var s float64
	for k, wt := range t.w {
		s += wt * v[(t.first+k)*stride]
	}
	return s
}

// resampleWeights returns, for each of d output pixels along an axis of s
// source pixels, its source pixels and weights (see FromImage).
func resampleWeights(s, d int) []taps {
	out := make([]taps, d)
	switch {
	case s == d:
		for j := range out {
			out[j] = taps{first: j, w: []float64{1}}
		}
	case s > d:
		// In units of 1/(s·d) of the source: output j covers [j·s, (j+1)·s)
		// after scaling by d, source pixel i covers [i·d, (i+1)·d); the
		// overlaps are integers and sum to s.
		for j := range out {
			lo, hi := j*s, (j+1)*s
			first := lo / d
			var w []float64
			for i := first; i*d < hi; i++ {
				ov := min(hi, (i+1)*d) - max(lo, i*d)
				w = append(w, float64(ov)/float64(s))
			}
			out[j] = taps{first: first, w: w}
		}
	default:
		for j := range out {
			x := (float64(j)+0.5)*float64(s)/float64(d) - 0.5
			x = min(max(x, 0), float64(s-1))
			i := int(x)
			f := x - float64(i)
			if i == s-1 || f == 0 {
				out[j] = taps{first: i, w: []float64{1}}
			} else {
				out[j] = taps{first: i, w: []float64{1 - f, f}}
			}
		}
	}
	return out
}

// readRow writes row y of img, sw pixels from x0, as c channels on the 0..255
// scale into dst, (C, sw).
func readRow(dst []float64, img image.Image, c, x0, y, sw int) {
	switch m := img.(type) {
	case *image.Gray:
		row := m.Pix[m.PixOffset(x0, y):]
		for x := range sw {
			for k := range c {
				dst[k*sw+x] = float64(row[x])
			}
		}
		return
	case *image.YCbCr:
		if c == 1 {
			for x := range sw {
				dst[x] = float64(m.Y[m.YOffset(x0+x, y)])
			}
			return
		}
	}
	for x := range sw {
		col := img.At(x0+x, y)
		if g, ok := col.(color.Gray); ok {
			for k := range c {
				dst[k*sw+x] = float64(g.Y)
			}
			continue
		}
		r, g, b, _ := col.RGBA() // premultiplied: composited over black
		fr, fg, fb := float64(r)/257, float64(g)/257, float64(b)/257
		if c == 1 {
			dst[x] = 0.299*fr + 0.587*fg + 0.114*fb
		} else {
			dst[x], dst[sw+x], dst[2*sw+x] = fr, fg, fb
		}
	}
}
