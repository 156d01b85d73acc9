package data

import (
	"bytes"
	"encoding/binary"
	"errors"
	"hash/crc32"
	"image"
	"image/color"
	"image/color/palette"
	"image/gif"
	"image/jpeg"
	"image/png"
	"math"
	"math/rand/v2"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

func grayImage(w, h int, pix ...uint8) *image.Gray {
	m := image.NewGray(image.Rect(0, 0, w, h))
	copy(m.Pix, pix)
	return m
}

func randomGray(rng *rand.Rand, w, h int) *image.Gray {
	m := image.NewGray(image.Rect(0, 0, w, h))
	for i := range m.Pix {
		m.Pix[i] = uint8(rng.IntN(256))
	}
	return m
}

// opaque hides an image's concrete type, so FromImage takes its generic
// path (At and RGBA) instead of a fast one.
type opaque struct{ image.Image }

func TestFromImageAverages2x2(t *testing.T) {
	g := grayImage(2, 2, 0, 100, 200, 255) // mean 138.75
	if got := FromImage(g, 1, 1, 1); !slices.Equal(got, []uint8{139}) {
		t.Errorf("gray 2×2 → 1×1: %v, want [139]", got)
	}
	if got := FromImage(opaque{g}, 3, 1, 1); !slices.Equal(got, []uint8{139, 139, 139}) {
		t.Errorf("gray 2×2 → 3×1×1: %v, want [139 139 139]", got)
	}
	m := image.NewRGBA(image.Rect(0, 0, 2, 2))
	for i, c := range []color.RGBA{{10, 0, 0, 255}, {20, 4, 0, 255}, {30, 0, 8, 255}, {41, 0, 0, 255}} {
		m.SetRGBA(i%2, i/2, c)
	}
	// R: 25.25, G: 1, B: 2.
	if got := FromImage(m, 3, 1, 1); !slices.Equal(got, []uint8{25, 1, 2}) {
		t.Errorf("RGBA 2×2 → 3×1×1: %v, want [25 1 2]", got)
	}
	// A 4×2 image to 2×1: each output averages a 2×2 block.
	g = grayImage(4, 2, 0, 2, 10, 10, 4, 6, 20, 21)
	if got := FromImage(g, 1, 1, 2); !slices.Equal(got, []uint8{3, 15}) {
		t.Errorf("gray 4×2 → 2×1: %v, want [3 15]", got)
	}
	// 3 → 2: output 0 covers pixel 0 and half of pixel 1.
	g = grayImage(3, 1, 0, 90, 180)
	if got := FromImage(g, 1, 1, 2); !slices.Equal(got, []uint8{30, 150}) {
		t.Errorf("gray 3×1 → 2×1: %v, want [30 150]", got)
	}
}

func TestFromImageEnlargesBilinear(t *testing.T) {
	// 2 → 4: samples at x = −¼ (clamped to 0), ¼, ¾, 1¼ (clamped to 1).
	g := grayImage(2, 1, 0, 100)
	if got := FromImage(g, 1, 1, 4); !slices.Equal(got, []uint8{0, 25, 75, 100}) {
		t.Errorf("gray 2×1 → 4×1: %v, want [0 25 75 100]", got)
	}
	if got := FromImage(grayImage(1, 1, 77), 1, 3, 3); !slices.Equal(got, slices.Repeat([]uint8{77}, 9)) {
		t.Errorf("1×1 → 3×3: %v, want 77 everywhere", got)
	}
}

func TestFromImageIdentity(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	g := randomGray(rng, 28, 28)
	if got := FromImage(g, 1, 28, 28); !slices.Equal(got, g.Pix) {
		t.Error("28×28 gray → 28×28 changed the pixels")
	}
	if got := FromImage(opaque{g}, 1, 28, 28); !slices.Equal(got, g.Pix) {
		t.Error("28×28 gray through At → 28×28 changed the pixels")
	}
	// A sub-image: Bounds do not start at 0.
	sub := g.SubImage(image.Rect(3, 5, 10, 9)).(*image.Gray)
	want := make([]uint8, 0, 7*4)
	for y := 5; y < 9; y++ {
		want = append(want, g.Pix[y*28+3:y*28+10]...)
	}
	if got := FromImage(sub, 1, 4, 7); !slices.Equal(got, want) {
		t.Errorf("sub-image: %v, want %v", got, want)
	}
	m := image.NewRGBA(image.Rect(0, 0, 7, 5))
	for i := range m.Pix {
		m.Pix[i] = uint8(rng.IntN(256))
		if i%4 == 3 {
			m.Pix[i] = 255
		}
	}
	got := FromImage(m, 3, 5, 7)
	for y := range 5 {
		for x := range 7 {
			for c := range 3 {
				if g, w := got[(c*5+y)*7+x], m.Pix[y*m.Stride+4*x+c]; g != w {
					t.Fatalf("RGBA 7×5 → 3×5×7: [%d,%d,%d] = %d, want %d", c, y, x, g, w)
				}
			}
		}
	}
}

func TestFromImageChannels(t *testing.T) {
	m := image.NewNRGBA(image.Rect(0, 0, 6, 1))
	for x, c := range []color.NRGBA{
		{255, 0, 0, 255}, {0, 255, 0, 255}, {0, 0, 255, 255}, {255, 255, 255, 255},
		{200, 200, 200, 128}, // half transparent over black
		{255, 255, 255, 0},   // transparent: black
	} {
		m.SetNRGBA(x, 0, c)
	}
	// BT.601: 0.299·255, 0.587·255, 0.114·255, 255, 200·128/255, 0.
	if got, want := FromImage(m, 1, 1, 6), []uint8{76, 150, 29, 255, 100, 0}; !slices.Equal(got, want) {
		t.Errorf("NRGBA → gray: %v, want %v", got, want)
	}
	if got, want := FromImage(m, 3, 1, 6), []uint8{255, 0, 0, 255, 100, 0, 0, 255, 0, 255, 100, 0, 0, 0, 255, 255, 100, 0}; !slices.Equal(got, want) {
		t.Errorf("NRGBA → RGB: %v, want %v", got, want)
	}
	g := grayImage(2, 1, 7, 250)
	if got, want := FromImage(g, 3, 1, 2), []uint8{7, 250, 7, 250, 7, 250}; !slices.Equal(got, want) {
		t.Errorf("gray → RGB: %v, want %v", got, want)
	}
	// A JPEG's own luma is used for gray.
	y := image.NewYCbCr(image.Rect(0, 0, 4, 2), image.YCbCrSubsampleRatio420)
	for i := range y.Y {
		y.Y[i] = uint8(30 * i)
	}
	for i := range y.Cb {
		y.Cb[i], y.Cr[i] = 90, 200
	}
	if got := FromImage(y, 1, 2, 4); !slices.Equal(got, y.Y) {
		t.Errorf("YCbCr → gray: %v, want the Y plane %v", got, y.Y)
	}
	// Colour YCbCr goes through RGBA, like any other image.
	if got, want := FromImage(y, 3, 2, 4), FromImage(opaque{y}, 3, 2, 4); !slices.Equal(got, want) {
		t.Errorf("YCbCr → RGB: %v, through At %v", got, want)
	}
	if got := FromImage(image.NewGray(image.Rect(0, 0, 0, 0)), 1, 2, 2); !slices.Equal(got, make([]uint8, 4)) {
		t.Errorf("empty image: %v, want black", got)
	}
	defer func() {
		if recover() == nil {
			t.Error("FromImage with 2 channels did not panic")
		}
	}()
	FromImage(g, 2, 1, 1)
}

// Images blown up by pixel replication come back exactly.
func TestFromImageShrinkBlocks(t *testing.T) {
	rng := rand.New(rand.NewPCG(3, 4))
	g := randomGray(rng, 28, 28)
	for _, k := range []int{2, 3} {
		big := image.NewGray(image.Rect(0, 0, 28*k, 28*k))
		for y := range 28 * k {
			for x := range 28 * k {
				big.Pix[y*big.Stride+x] = g.Pix[(y/k)*28+x/k]
			}
		}
		if got := FromImage(big, 1, 28, 28); !slices.Equal(got, g.Pix) {
			t.Errorf("%d×%d blocks → 28×28 differ from the original", k, k)
		}
	}
}

// refWeight is the weight of source pixel i in output pixel j along an axis
// of s source and d output pixels, from FromImage's doc comment.
func refWeight(s, d, j, i int) float64 {
	switch {
	case s == d:
		if i == j {
			return 1
		}
		return 0
	case s > d:
		scale := float64(s) / float64(d)
		lo, hi := float64(j)*scale, float64(j+1)*scale
		return max(0, min(hi, float64(i+1))-max(lo, float64(i))) / scale
	}
	x := (float64(j)+0.5)*float64(s)/float64(d) - 0.5
	x = min(max(x, 0), float64(s-1))
	return max(0, 1-math.Abs(x-float64(i)))
}

// FromImage equals the formula, summed over every source pixel, for sizes
// that shrink, enlarge, or both.
func TestFromImageMatchesReference(t *testing.T) {
	rng := rand.New(rand.NewPCG(5, 6))
	for _, sz := range [][4]int{{28, 28, 32, 32}, {28, 28, 10, 13}, {17, 5, 6, 11}, {5, 9, 7, 4}, {1, 3, 4, 1}, {100, 60, 28, 28}} {
		sw, sh, w, h := sz[0], sz[1], sz[2], sz[3]
		m := image.NewRGBA(image.Rect(0, 0, sw, sh))
		for i := range m.Pix {
			m.Pix[i] = uint8(rng.IntN(256))
			if i%4 == 3 {
				m.Pix[i] = 255
			}
		}
		got := FromImage(m, 3, h, w)
		for c := range 3 {
			for y := range h {
				for x := range w {
					var v float64
					for sy := range sh {
						for sx := range sw {
							v += refWeight(sh, h, y, sy) * refWeight(sw, w, x, sx) * float64(m.Pix[sy*m.Stride+4*sx+c])
						}
					}
					g := got[(c*h+y)*w+x]
					// Summation order may decide a tie at .5 either way.
					if float64(g) != math.Round(v) && math.Abs(math.Abs(v-math.Trunc(v))-0.5) > 1e-9 {
						t.Fatalf("%d×%d → %d×%d: [%d,%d,%d] = %d, the formula gives %.6f", sw, sh, w, h, c, y, x, g, v)
					}
				}
			}
		}
	}
}

func writeImage(t *testing.T, path string, encode func(*bytes.Buffer) error) []byte {
	t.Helper()
	var b bytes.Buffer
	if err := encode(&b); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, b.Bytes(), 0o644); err != nil {
		t.Fatal(err)
	}
	return b.Bytes()
}

func TestDecodeImageFile(t *testing.T) {
	dir := t.TempDir()
	rng := rand.New(rand.NewPCG(7, 8))
	g := randomGray(rng, 28, 28)
	p := filepath.Join(dir, "a.png")
	writeImage(t, p, func(b *bytes.Buffer) error { return png.Encode(b, g) })
	img, err := DecodeImageFile(p)
	if err != nil {
		t.Fatal(err)
	}
	if got := FromImage(img, 1, 28, 28); !slices.Equal(got, g.Pix) {
		t.Error("PNG round trip changed the pixels")
	}

	pal := image.NewPaletted(image.Rect(0, 0, 3, 2), palette.Plan9)
	for i := range pal.Pix {
		pal.Pix[i] = uint8(rng.IntN(len(palette.Plan9)))
	}
	p = filepath.Join(dir, "a.gif")
	writeImage(t, p, func(b *bytes.Buffer) error { return gif.Encode(b, pal, nil) })
	if img, err = DecodeImageFile(p); err != nil {
		t.Fatal(err)
	}
	if got, want := FromImage(img, 3, 2, 3), FromImage(pal, 3, 2, 3); !slices.Equal(got, want) {
		t.Errorf("GIF round trip: %v, want %v", got, want)
	}

	p = filepath.Join(dir, "a.jpg")
	writeImage(t, p, func(b *bytes.Buffer) error { return jpeg.Encode(b, g, &jpeg.Options{Quality: 100}) })
	if img, err = DecodeImageFile(p); err != nil {
		t.Fatal(err)
	}
	if b := img.Bounds(); b.Dx() != 28 || b.Dy() != 28 {
		t.Errorf("JPEG decoded as %v, want 28×28", b)
	}
}

// Every file that is not a whole image gives one line naming it.
func TestDecodeImageFileErrors(t *testing.T) {
	dir := t.TempDir()
	g := randomGray(rand.New(rand.NewPCG(9, 10)), 28, 28)
	pngBytes := writeImage(t, filepath.Join(dir, "ok.png"), func(b *bytes.Buffer) error { return png.Encode(b, g) })
	jpgBytes := writeImage(t, filepath.Join(dir, "ok.jpg"), func(b *bytes.Buffer) error { return jpeg.Encode(b, g, nil) })
	put := func(name string, b []byte) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, b, 0o644); err != nil {
			t.Fatal(err)
		}
		return p
	}
	// A PNG whose IDAT checksum is wrong.
	crc := slices.Clone(pngBytes)
	crc[len(crc)-12-5] ^= 0xff // the last byte of IDAT's CRC: IEND is the last 12 bytes
	// A PNG whose header claims 100000×100000 pixels, its CRC fixed.
	huge := slices.Clone(pngBytes)
	binary.BigEndian.PutUint32(huge[16:], 100000)
	binary.BigEndian.PutUint32(huge[20:], 100000)
	binary.BigEndian.PutUint32(huge[29:], crc32.ChecksumIEEE(huge[12:29]))
	sub := filepath.Join(dir, "sub.png")
	os.Mkdir(sub, 0o755)

	for _, tc := range []struct {
		path string
		kind error
		want string
	}{
		{filepath.Join(dir, "missing.png"), ErrNotFound, "no such file"},
		{sub, ErrNotFound, "is a directory"},
		{put("empty.png", nil), ErrFormat, "empty file"},
		{put("notes.png", []byte("hello, world\n")), ErrFormat, "not a PNG, JPEG or GIF image"},
		{put("x.bmp", []byte("BM\x00\x00\x00\x00\x00\x00\x00\x00")), ErrFormat, "BMP"},
		{put("half.png", pngBytes[:len(pngBytes)/2]), ErrFormat, "truncated PNG image"},
		{put("head.png", pngBytes[:20]), ErrFormat, "truncated PNG image"},
		{put("half.jpg", jpgBytes[:len(jpgBytes)/2]), ErrFormat, "truncated JPEG image"},
		{put("crc.png", crc), ErrFormat, "corrupt PNG image"},
		{put("huge.png", huge), ErrFormat, "100000×100000"},
		{put("short.gif", []byte("GIF89a")), ErrFormat, "truncated GIF image"},
	} {
		_, err := DecodeImageFile(tc.path)
		if err == nil || !strings.Contains(err.Error(), tc.path+": ") || !strings.Contains(err.Error(), tc.want) ||
			strings.Contains(err.Error(), "\n") || !errors.Is(err, tc.kind) {
			t.Errorf("%s: %v\n want one line naming the file, containing %q, wrapping %v", filepath.Base(tc.path), err, tc.want, tc.kind)
		}
	}
}
