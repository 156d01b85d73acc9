package data

import (
	"bytes"
	"encoding/base64"
	"errors"
	"fmt"
	"image"
	"image/color"
	"image/draw"
	"image/jpeg"
	"image/png"
	"io"
	"math"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"sync"
	"testing"
)

// The photographs of the tests and benchmark: scikit-learn's two sample
// images, 640×427 JPEGs, which Debian ships in python3-sklearn.
const jpegPhotoDir = "/usr/lib/python3/dist-packages/sklearn/datasets/images"

var jpegPhotoNames = []string{"china.jpg", "flower.jpg"}

// jpegPhotosEnv names a folder to take the photographs from instead.
const jpegPhotosEnv = "ALEXNET_TEST_PHOTOS"

// jpegPhoto is a test input: a JPEG file's bytes.
type jpegPhoto struct {
	name string
	data []byte
}

// jpegPhotos reads the photographs and adds each re-encoded by image/jpeg
// at quality 90 at 500 pixels wide, the size of a typical ImageNet image. It
// skips tb when they are not installed.
func jpegPhotos(tb testing.TB) []jpegPhoto {
	tb.Helper()
	dir := jpegPhotoDir
	if d := os.Getenv(jpegPhotosEnv); d != "" {
		dir = d
	}
	var out, small []jpegPhoto
	for _, name := range jpegPhotoNames {
		b, err := os.ReadFile(filepath.Join(dir, name))
		if err != nil {
			msg := fmt.Sprintf("real photographs not available (%v): apt-get install python3-sklearn, or set %s to a folder holding %s",
				err, jpegPhotosEnv, strings.Join(jpegPhotoNames, ", "))
			if os.Getenv("CI") != "" { // .ci/run installs them
				tb.Fatal("CI: " + msg)
			}
			tb.Skip(msg)
		}
		img, err := jpeg.Decode(bytes.NewReader(b))
		if err != nil {
			tb.Fatalf("%s: %v", name, err)
		}
		base := strings.TrimSuffix(name, ".jpg")
		sz := img.Bounds().Size()
		out = append(out, jpegPhoto{fmt.Sprintf("%s-%dx%d", base, sz.X, sz.Y), b})
		w := 500
		h := (sz.Y*w + sz.X/2) / sz.X
		small = append(small, jpegPhoto{fmt.Sprintf("%s-%dx%d-q90", base, w, h), jpegEncode(tb, jpegResize(img, w, h), 90)})
	}
	return append(out, small...)
}

// jpegResize returns img area-averaged to w×h (FromImage), as RGBA.
func jpegResize(img image.Image, w, h int) *image.RGBA {
	chw := FromImage(img, 3, h, w) // (3, h, w)
	out := image.NewRGBA(image.Rect(0, 0, w, h))
	for y := range h {
		for x := range w {
			i := out.PixOffset(x, y)
			for k := range 3 {
				out.Pix[i+k] = chw[(k*h+y)*w+x]
			}
			out.Pix[i+3] = 255
		}
	}
	return out
}

// jpegEncode encodes img with image/jpeg.
func jpegEncode(tb testing.TB, img image.Image, quality int) []byte {
	tb.Helper()
	var buf bytes.Buffer
	if err := jpeg.Encode(&buf, img, &jpeg.Options{Quality: quality}); err != nil {
		tb.Fatal(err)
	}
	return buf.Bytes()
}

// jpegSynth is a w×h test picture: smooth gradients, edges and seeded noise,
// colour or gray. Noise alone would be a poor JPEG test, all quantisation.
func jpegSynth(w, h int, gray bool) image.Image {
	rng := rand.New(rand.NewPCG(1, 2))
	g := image.NewGray(image.Rect(0, 0, w, h))
	c := image.NewRGBA(image.Rect(0, 0, w, h))
	for y := range h {
		for x := range w {
			n := rng.IntN(8)
			edge := 0
			if (x/16+y/16)%2 == 0 {
				edge = 60
			}
			// Slopes of at most 4 levels a pixel, whatever the size.
			r := int(128 + 80*math.Sin(float64(x)/23))
			gg := int(128 + 80*math.Cos(float64(y)/19))
			b := int(128 + 80*math.Sin(float64(x+y)/29))
			cl := func(v int) uint8 { return uint8(min(255, max(0, v))) }
			if gray {
				g.SetGray(x, y, color.Gray{cl((r+gg)/2 + edge - 30 + n)})
			} else {
				c.SetRGBA(x, y, color.RGBA{cl(r + edge/2 + n), cl(gg - edge/2 + n), cl(b + n), 255})
			}
		}
	}
	if gray {
		return g
	}
	return c
}

// Fixtures made with libjpeg-turbo's tjCompress2, which image/jpeg cannot
// make: a 24×16 CMYK image (stored as YCCK, with an Adobe marker) and a
// 24×16 progressive 4:2:0 colour image.
var (
	jpegCMYKFixture = jpegFixture(
		"/9j/7gAOQWRvYmUAZAAAAAAC/9sAQwADAgIDAgIDAwMDBAMDBAUIBQUEBAUKBwcGCAwKDAwLCgsLDQ4SEA0OEQ4LCxAWEBET",
		"FBUVFQwPFxgWFBgSFBUU/9sAQwEDBAQFBAUJBQUJFA0LDRQUFBQUFBQUFBQUFBQUFBQUFBQUFBQUFBQUFBQUFBQUFBQUFBQU",
		"FBQUFBQUFBQUFBQU/8AAFAgAEAAYBAERAAIRAQMRAQQRAP/EAB8AAAEFAQEBAQEBAAAAAAAAAAABAgMEBQYHCAkKC//EALUQ",
		"AAIBAwMCBAMFBQQEAAABfQECAwAEEQUSITFBBhNRYQcicRQygZGhCCNCscEVUtHwJDNicoIJChYXGBkaJSYnKCkqNDU2Nzg5",
		"OkNERUZHSElKU1RVVldYWVpjZGVmZ2hpanN0dXZ3eHl6g4SFhoeIiYqSk5SVlpeYmZqio6Slpqeoqaqys7S1tre4ubrCw8TF",
		"xsfIycrS09TV1tfY2drh4uPk5ebn6Onq8fLz9PX29/j5+v/EAB8BAAMBAQEBAQEBAQEAAAAAAAABAgMEBQYHCAkKC//EALUR",
		"AAIBAgQEAwQHBQQEAAECdwABAgMRBAUhMQYSQVEHYXETIjKBCBRCkaGxwQkjM1LwFWJy0QoWJDThJfEXGBkaJicoKSo1Njc4",
		"OTpDREVGR0hJSlNUVVZXWFlaY2RlZmdoaWpzdHV2d3h5eoKDhIWGh4iJipKTlJWWl5iZmqKjpKWmp6ipqrKztLW2t7i5usLD",
		"xMXGx8jJytLT1NXW19jZ2uLj5OXm5+jp6vLz9PX29/j5+v/aAA4EAQACEQMRBAAAPwD6UutY6/NX5/JFVsOfUmt/x1j3Wsdf",
		"mrllE8Othzz/AFv+Ose61jr81ckonhVsMef63/HUF1rHX5q9yUT9grYY+gNb/jrHutY6/NXLKJ4dbDnn+t/x1j3WsdfmrklE",
		"8Kthzz/W/wCOv//Z")
	jpegProgressiveFixture = jpegFixture(
		"/9j/4AAQSkZJRgABAQAAAQABAAD/2wBDAAMCAgMCAgMDAwMEAwMEBQgFBQQEBQoHBwYIDAoMDAsKCwsNDhIQDQ4RDgsLEBYQ",
		"ERMUFRUVDA8XGBYUGBIUFRT/2wBDAQMEBAUEBQkFBQkUDQsNFBQUFBQUFBQUFBQUFBQUFBQUFBQUFBQUFBQUFBQUFBQUFBQU",
		"FBQUFBQUFBQUFBQUFBT/wgARCAAQABgDASIAAhEBAxEB/8QAFwABAQEBAAAAAAAAAAAAAAAABAAFB//EABcBAAMBAAAAAAAA",
		"AAAAAAAAAAMEBQb/2gAMAwEAAhADEAAAAeaMezQjBbczZ//EABYQAAMAAAAAAAAAAAAAAAAAAAACA//aAAgBAQABBQJYixFi",
		"LEWIsT//xAAYEQACAwAAAAAAAAAAAAAAAAAABAIDIf/aAAgBAwEBPwGlggxh/8QAFhEBAQEAAAAAAAAAAAAAAAAAAQAC/9oA",
		"CAECAQE/AcsN/8QAFBABAAAAAAAAAAAAAAAAAAAAIP/aAAgBAQAGPwJf/8QAFRABAQAAAAAAAAAAAAAAAAAAAGH/2gAIAQEA",
		"AT8hkkkkkk//2gAMAwEAAgADAAAAEDDP/8QAFxEBAAMAAAAAAAAAAAAAAAAAACExUf/aAAgBAwEBPxCuWt//xAAVEQEBAAAA",
		"AAAAAAAAAAAAAAAAIf/aAAgBAgEBPxBxf//EABQQAQAAAAAAAAAAAAAAAAAAACD/2gAIAQEAAT8QUkkn/9k=")
)

func jpegFixture(parts ...string) []byte {
	b, err := base64.StdEncoding.DecodeString(strings.Join(parts, ""))
	if err != nil {
		panic(err)
	}
	return b
}

// jpegTurbo returns the loaded libjpeg-turbo decoder or skips tb.
func jpegTurbo(tb testing.TB) *jpegDecoder {
	tb.Helper()
	d := loadedJPEG()
	if d.tj == nil {
		tb.Skipf("libjpeg-turbo not loaded (apt-get install libturbojpeg0): %s", d.desc)
	}
	return d
}

// jpegDecoders are the decoders to test: image/jpeg always, libjpeg-turbo
// when it loads.
func jpegDecoders() map[string]*jpegDecoder {
	ds := map[string]*jpegDecoder{"go": goJPEG("test")}
	if d := loadedJPEG(); d.tj != nil {
		ds["turbo"] = d
	}
	return ds
}

// jpegRGBA converts img to RGBA.
func jpegRGBA(img image.Image) *image.RGBA {
	if m, ok := img.(*image.RGBA); ok {
		return m
	}
	out := image.NewRGBA(img.Bounds())
	draw.Draw(out, out.Bounds(), img, img.Bounds().Min, draw.Src)
	return out
}

// jpegDiff returns the mean and largest absolute difference of the R, G, B
// (and A) values of two images of the same size.
func jpegDiff(t *testing.T, a, b image.Image) (mean float64, largest int) {
	t.Helper()
	ra, rb := jpegRGBA(a), jpegRGBA(b)
	if ra.Bounds().Size() != rb.Bounds().Size() {
		t.Fatalf("sizes differ: %v, %v", ra.Bounds(), rb.Bounds())
	}
	var sum float64
	n := 0
	for y := range ra.Bounds().Dy() {
		pa := ra.Pix[y*ra.Stride : y*ra.Stride+4*ra.Bounds().Dx()]
		pb := rb.Pix[y*rb.Stride : y*rb.Stride+4*rb.Bounds().Dx()]
		for i := range pa {
			d := int(pa[i]) - int(pb[i])
			if d < 0 {
				d = -d
			}
			sum += float64(d)
			largest = max(largest, d)
			n++
		}
	}
	return sum / float64(n), largest
}

// The two decoders agree within these bounds: they differ in their IDCT
// rounding and, mostly, in chroma upsampling, libjpeg's smooth ("fancy")
// against image/jpeg's nearest neighbour, which differ most at sharp colour
// edges. With libjpeg's nearest-neighbour upsampling they agree closely.
const (
	jpegMeanTol     = 2
	jpegMaxTol      = 40
	jpegFastMeanTol = 0.5
	jpegFastMaxTol  = 4
)

// jpegCompare decodes b with libjpeg-turbo and image/jpeg and checks that
// the pixels agree and that turbo returns want's type.
func jpegCompare(t *testing.T, name string, b []byte, want image.Image) {
	t.Helper()
	turbo := jpegTurbo(t)
	got, err := turbo.decode(b)
	if err != nil {
		t.Fatalf("%s: turbo: %v", name, err)
	}
	ref, err := goJPEG("test").decode(b)
	if err != nil {
		t.Fatalf("%s: image/jpeg: %v", name, err)
	}
	if reflect.TypeOf(got) != reflect.TypeOf(want) {
		t.Errorf("%s: turbo returned %T, want %T", name, got, want)
	}
	if got.Bounds() != ref.Bounds() {
		t.Fatalf("%s: turbo bounds %v, image/jpeg %v", name, got.Bounds(), ref.Bounds())
	}
	if m, ok := got.(*image.RGBA); ok {
		for i := 3; i < len(m.Pix); i += 4 {
			if m.Pix[i] != 255 {
				t.Fatalf("%s: alpha %d at byte %d, want opaque", name, m.Pix[i], i)
			}
		}
	}
	mean, largest := jpegDiff(t, got, ref)
	t.Logf("%s %v: turbo %T vs image/jpeg %T: mean |diff| %.3f, max %d", name, got.Bounds().Size(), got, ref, mean, largest)
	if mean >= jpegMeanTol || largest >= jpegMaxTol {
		t.Errorf("%s: turbo and image/jpeg differ: mean |diff| %.3f (want < %d), max %d (want < %d)", name, mean, jpegMeanTol, largest, jpegMaxTol)
	}

	// With image/jpeg's nearest-neighbour chroma upsampling, only the
	// IDCTs' rounding is left.
	fast, err := turbo.tj.decode(b, tjflagFastUpsample)
	if err != nil {
		t.Fatalf("%s: turbo with TJFLAG_FASTUPSAMPLE: %v", name, err)
	}
	mean, largest = jpegDiff(t, fast, ref)
	t.Logf("%s: turbo with TJFLAG_FASTUPSAMPLE vs image/jpeg: mean |diff| %.3f, max %d", name, mean, largest)
	if mean >= jpegFastMeanTol || largest > jpegFastMaxTol {
		t.Errorf("%s: turbo with TJFLAG_FASTUPSAMPLE and image/jpeg differ: mean |diff| %.3f (want < %g), max %d (want ≤ %d)", name, mean, jpegFastMeanTol, largest, jpegFastMaxTol)
	}
}

func TestJPEGDecoder(t *testing.T) {
	desc := JPEGDecoder()
	t.Logf("JPEGDecoder() = %q", desc)
	if !strings.HasPrefix(desc, "libjpeg-turbo TurboJPEG") && !strings.HasPrefix(desc, "image/jpeg (") {
		t.Errorf("JPEGDecoder() = %q: names no decoder", desc)
	}
	if path := os.Getenv(TurboJPEGEnv); path != "" {
		// The child of the test below: the override must be obeyed.
		if _, err := os.Stat(path); err != nil && !strings.HasPrefix(desc, "image/jpeg ("+TurboJPEGEnv+"="+path) {
			t.Errorf("%s=%s: JPEGDecoder() = %q, want image/jpeg naming the path", TurboJPEGEnv, path, desc)
		}
		// DecodeImage is left as it was, and JPEG still decodes.
		if reflect.ValueOf(DecodeImage).Pointer() != reflect.ValueOf(DecodeImageFile).Pointer() {
			t.Errorf("%s=%s: DecodeImage replaced without libjpeg-turbo", TurboJPEGEnv, path)
		}
		if img, err := DecodeJPEG(jpegEncode(t, jpegSynth(8, 8, false), 90)); err != nil {
			t.Errorf("DecodeJPEG with image/jpeg: %v", err)
		} else if _, ok := img.(*image.YCbCr); !ok {
			t.Errorf("DecodeJPEG with image/jpeg returned %T, want *image.YCbCr", img)
		}
		return
	}
	// The environment variable, in a fresh process since loading is once.
	cmd := exec.Command(os.Args[0], "-test.run=^TestJPEGDecoder$", "-test.v", "-test.count=1")
	cmd.Env = append(os.Environ(), TurboJPEGEnv+"=/nonexistent")
	out, err := cmd.CombinedOutput()
	if err != nil || !strings.Contains(string(out), `JPEGDecoder() = "image/jpeg (`+TurboJPEGEnv+`=/nonexistent not usable: dlopen: `) {
		t.Errorf("child with %s=/nonexistent: %v\n%s", TurboJPEGEnv, err, out)
	}

	d := loadJPEG("/nonexistent/libturbojpeg.so")
	if d.tj != nil || !strings.HasPrefix(d.desc, "image/jpeg (") || !strings.Contains(d.desc, "/nonexistent/libturbojpeg.so") {
		t.Errorf("override with a missing path: %q, want image/jpeg naming the path", d.desc)
	}
	// A library without the TurboJPEG functions is refused, not a panic.
	if d := loadJPEG("libm.so.6"); d.tj != nil || !strings.Contains(d.desc, "dlsym(tjInitDecompress)") {
		t.Errorf("override with libm: %q, want a missing tjInitDecompress", d.desc)
	}
	if loadedJPEG().tj != nil {
		if reflect.ValueOf(DecodeImage).Pointer() != reflect.ValueOf(decodeImageFast).Pointer() {
			t.Errorf("libjpeg-turbo loaded but DecodeImage is not decodeImageFast")
		}
	}
}

func TestDecodeJPEGMatchesGo(t *testing.T) {
	for _, sz := range []image.Point{{1, 1}, {37, 23}, {500, 375}} {
		name := fmt.Sprintf("%dx%d", sz.X, sz.Y)
		for _, q := range []int{75, 95} {
			b := jpegEncode(t, jpegSynth(sz.X, sz.Y, false), q)
			jpegCompare(t, fmt.Sprintf("%s-q%d", name, q), b, &image.RGBA{})
		}
	}
}

func TestDecodeJPEGGray(t *testing.T) {
	b := jpegEncode(t, jpegSynth(45, 31, true), 90)
	for name, d := range jpegDecoders() {
		img, err := d.decode(b)
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		if _, ok := img.(*image.Gray); !ok {
			t.Errorf("%s: grayscale JPEG decoded as %T, want *image.Gray", name, img)
		}
	}
	jpegCompare(t, "gray-45x31", b, &image.Gray{})
}

func TestDecodeJPEGProgressive(t *testing.T) {
	jpegCompare(t, "progressive-24x16", jpegProgressiveFixture, &image.RGBA{})
}

// CMYK images go to image/jpeg, which knows Adobe's inverted CMYK, even with
// libjpeg-turbo loaded.
func TestDecodeJPEGCMYK(t *testing.T) {
	want, err := jpeg.Decode(bytes.NewReader(jpegCMYKFixture))
	if err != nil {
		t.Fatal(err)
	}
	for name, d := range jpegDecoders() {
		got, err := d.decode(jpegCMYKFixture)
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		if _, ok := got.(*image.CMYK); !ok {
			t.Errorf("%s: CMYK JPEG decoded as %T, want *image.CMYK", name, got)
		}
		if !reflect.DeepEqual(got, want) {
			t.Errorf("%s: CMYK JPEG differs from image/jpeg's", name)
		}
	}
}

// jpegScanStart returns the offset just past b's first SOS segment.
func jpegScanStart(t *testing.T, b []byte) int {
	t.Helper()
	i := bytes.Index(b, []byte{0xff, 0xda})
	if i < 0 || i+4 > len(b) {
		t.Fatal("no SOS marker")
	}
	return i + 2 + int(b[i+2])<<8 + int(b[i+3])
}

func TestDecodeJPEGErrors(t *testing.T) {
	good := jpegEncode(t, jpegSynth(64, 48, false), 90)
	scan := jpegScanStart(t, good)
	var pngBuf bytes.Buffer
	if err := png.Encode(&pngBuf, jpegSynth(4, 4, true)); err != nil {
		t.Fatal(err)
	}
	// A bad SOF0 marker length: the frame header cannot be parsed.
	badSOF := bytes.Clone(good)
	sof := bytes.Index(badSOF, []byte{0xff, 0xc0})
	badSOF[sof+2], badSOF[sof+3] = 0, 3
	// An 8×8 image that claims to be 20000×20000: refused before decoding.
	huge := jpegEncode(t, jpegSynth(8, 8, false), 90)
	sof = bytes.Index(huge, []byte{0xff, 0xc0})
	huge[sof+5], huge[sof+6], huge[sof+7], huge[sof+8] = 0x4e, 0x20, 0x4e, 0x20 // 20000×20000

	cases := []struct {
		name  string
		b     []byte
		want  string // in the message
		trunc bool   // wraps io.ErrUnexpectedEOF
	}{
		{"empty", nil, "empty input", false},
		{"png", pngBuf.Bytes(), "not a JPEG image", false},
		{"text", []byte("hello, world"), "not a JPEG image", false},
		{"soi-only", []byte{0xff, 0xd8}, "not a JPEG image", false},
		{"truncated-header", good[:scan/2], "truncated JPEG image", true},
		{"truncated-at-scan", good[:scan], "truncated JPEG image", true},
		{"truncated-scan", good[:scan+(len(good)-scan)/2], "truncated JPEG image", true},
		{"no-eoi", good[:len(good)-2], "truncated JPEG image", true},
		{"bad-sof", badSOF, "corrupt JPEG image", false},
		{"huge", huge, "want 1 to 134217728 pixels", false},
	}
	for name, d := range jpegDecoders() {
		for _, c := range cases {
			img, err := d.decode(c.b)
			if c.want == "" {
				if err != nil {
					t.Errorf("%s %s: %v, want an image", name, c.name, err)
				}
				continue
			}
			if err == nil {
				t.Errorf("%s %s: decoded a %v image, want an error with %q", name, c.name, img.Bounds(), c.want)
				continue
			}
			t.Logf("%s %s: %v", name, c.name, err)
			if img != nil {
				t.Errorf("%s %s: an image with the error", name, c.name)
			}
			if !strings.Contains(err.Error(), c.want) || !strings.HasPrefix(err.Error(), "data: ") {
				t.Errorf("%s %s: %q, want %q in it", name, c.name, err, c.want)
			}
			if !errors.Is(err, ErrFormat) {
				t.Errorf("%s %s: %v does not wrap ErrFormat", name, c.name, err)
			}
			if errors.Is(err, io.ErrUnexpectedEOF) != c.trunc {
				t.Errorf("%s %s: errors.Is(%v, io.ErrUnexpectedEOF) = %v, want %v", name, c.name, err, !c.trunc, c.trunc)
			}
		}
	}
}

// Damage that libjpeg recovers from with a warning, as image/jpeg does, is
// accepted: here junk bytes between two markers ("Corrupt JPEG data: 3
// extraneous bytes before marker 0xda").
func TestDecodeJPEGRecoverable(t *testing.T) {
	good := jpegEncode(t, jpegSynth(40, 24, false), 90)
	sos := bytes.Index(good, []byte{0xff, 0xda})
	junk := slices.Concat(good[:sos], []byte{0x12, 0x34, 0x56}, good[sos:])
	for name, d := range jpegDecoders() {
		want, err := d.decode(good)
		if err != nil {
			t.Fatal(err)
		}
		got, err := d.decode(junk)
		if err != nil {
			t.Errorf("%s: junk before SOS: %v, want the image", name, err)
			continue
		}
		if !reflect.DeepEqual(got, want) {
			t.Errorf("%s: junk before SOS changed the image", name)
		}
		// Truncation is still an error after such a warning.
		_, err = d.decode(junk[:len(junk)-len(junk)/4])
		if !errors.Is(err, io.ErrUnexpectedEOF) || !strings.Contains(err.Error(), "truncated JPEG image") {
			t.Errorf("%s: junk before SOS, truncated: %v, want a truncated JPEG image", name, err)
		}
		t.Logf("%s: junk before SOS, truncated: %v", name, err)
	}
}

// Random damage to the entropy-coded data gives an image or an error, and
// never crashes.
func TestDecodeJPEGDamaged(t *testing.T) {
	good := jpegEncode(t, jpegSynth(64, 48, false), 90)
	scan := jpegScanStart(t, good)
	rng := rand.New(rand.NewPCG(1, 2))
	for name, d := range jpegDecoders() {
		errs := 0
		for range 200 {
			b := bytes.Clone(good)
			for range 1 + rng.IntN(4) {
				b[scan+rng.IntN(len(b)-scan)] = byte(rng.Uint32())
			}
			if rng.IntN(2) == 0 {
				b = b[:scan+rng.IntN(len(b)-scan)]
			}
			if _, err := d.decode(b); err != nil {
				errs++
				if !errors.Is(err, ErrFormat) {
					t.Fatalf("%s: %v does not wrap ErrFormat", name, err)
				}
			}
		}
		t.Logf("%s: %d of 200 damaged images refused", name, errs)
	}
}

func TestDecodeImageFast(t *testing.T) {
	dir := t.TempDir()
	jpg := jpegEncode(t, jpegSynth(20, 10, false), 90)
	var pngBuf bytes.Buffer
	if err := png.Encode(&pngBuf, jpegSynth(7, 5, true)); err != nil {
		t.Fatal(err)
	}
	write := func(name string, b []byte) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, b, 0o644); err != nil {
			t.Fatal(err)
		}
		return p
	}
	// A JPEG named .png is a JPEG: the magic bytes decide.
	img, err := decodeImageFast(write("photo.png", jpg))
	if err != nil {
		t.Fatal(err)
	}
	want, _ := DecodeJPEG(jpg)
	if !reflect.DeepEqual(img, want) {
		t.Errorf("JPEG file: got %T %v, want DecodeJPEG's %T %v", img, img.Bounds(), want, want.Bounds())
	}
	img, err = decodeImageFast(write("gray.png", pngBuf.Bytes()))
	if err != nil || img.Bounds().Size() != image.Pt(7, 5) {
		t.Errorf("PNG file: %v, %v", img, err)
	}

	var fe *FileError
	trunc := write("cut.jpg", jpg[:len(jpg)/2])
	_, err = decodeImageFast(trunc)
	if !errors.As(err, &fe) || fe.Path != trunc || !errors.Is(err, ErrFormat) || !strings.Contains(err.Error(), "truncated JPEG image") {
		t.Errorf("truncated JPEG file: %v, want a FileError naming the file", err)
	}
	missing := filepath.Join(dir, "missing.jpg")
	_, err = decodeImageFast(missing)
	if !errors.As(err, &fe) || fe.Path != missing || !errors.Is(err, ErrNotFound) {
		t.Errorf("missing file: %v, want a FileError wrapping ErrNotFound", err)
	}
	_, err = decodeImageFast(write("empty.jpg", nil))
	if !errors.Is(err, ErrFormat) {
		t.Errorf("empty file: %v, want ErrFormat", err)
	}
}

// Decoding is safe from many goroutines: each gets the image (or error) a
// lone decode gives. Run with -race where cgo is available.
func TestDecodeJPEGConcurrent(t *testing.T) {
	inputs := [][]byte{
		jpegEncode(t, jpegSynth(64, 48, false), 90),
		jpegEncode(t, jpegSynth(33, 17, true), 80),
		jpegProgressiveFixture,
		jpegCMYKFixture,
	}
	inputs = append(inputs, inputs[0][:len(inputs[0])/2], []byte("not a jpeg"))
	for name, d := range jpegDecoders() {
		type result struct {
			img image.Image
			err string
		}
		want := make([]result, len(inputs))
		for i, b := range inputs {
			img, err := d.decode(b)
			want[i].img = img
			if err != nil {
				want[i].err = err.Error()
			}
		}
		var wg sync.WaitGroup
		errc := make(chan string, 8)
		for g := range 8 {
			wg.Go(func() {
				for k := range 40 {
					i := (g + k) % len(inputs)
					img, err := d.decode(inputs[i])
					msg := ""
					if err != nil {
						msg = err.Error()
					}
					if msg != want[i].err || !reflect.DeepEqual(img, want[i].img) {
						select {
						case errc <- fmt.Sprintf("%s: goroutine %d input %d: got (%v, %q), want (%v, %q)", name, g, i, img != nil, msg, want[i].img != nil, want[i].err):
						default:
						}
						return
					}
				}
			})
		}
		wg.Wait()
		close(errc)
		for msg := range errc {
			t.Error(msg)
		}
	}
}

func TestDecodeJPEGPhotos(t *testing.T) {
	for _, p := range jpegPhotos(t) {
		jpegCompare(t, p.name, p.data, &image.RGBA{})
	}
}

// BenchmarkDecodeJPEG times one core decoding photographs: image/jpeg as it
// returns them (*image.YCbCr), image/jpeg followed by conversion to RGBA
// (what libjpeg-turbo returns), and libjpeg-turbo.
func BenchmarkDecodeJPEG(b *testing.B) {
	photos := jpegPhotos(b)
	b.Logf("JPEGDecoder() = %q", JPEGDecoder())
	decoders := []struct {
		name   string
		decode func([]byte) (image.Image, error)
	}{
		{"go", goJPEG("bench").decode},
		{"go-rgba", func(p []byte) (image.Image, error) {
			img, err := goJPEG("bench").decode(p)
			if err != nil {
				return nil, err
			}
			return jpegRGBA(img), nil
		}},
	}
	if d := loadedJPEG(); d.tj != nil {
		decoders = append(decoders, struct {
			name   string
			decode func([]byte) (image.Image, error)
		}{"turbo", d.decode})
	}
	for _, dec := range decoders {
		for _, p := range photos {
			b.Run(dec.name+"/"+p.name, func(b *testing.B) {
				b.SetBytes(int64(len(p.data)))
				b.ReportAllocs()
				for b.Loop() {
					if _, err := dec.decode(p.data); err != nil {
						b.Fatal(err)
					}
				}
				b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "images/s")
			})
		}
	}
}
