package data

import (
	"bufio"
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/json"
	"errors"
	"fmt"
	"image"
	"image/color"
	"image/jpeg"
	"image/png"
	"io/fs"
	"math"
	"math/rand/v2"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/alexnet-go/trainer/internal/safefile"
)

// prepPhoto returns a w×h image of smooth colour gradients plus noise,
// something like a photo for a JPEG encoder.
func prepPhoto(rng *rand.Rand, w, h int) *image.RGBA {
	m := image.NewRGBA(image.Rect(0, 0, w, h))
	a, b, c := rng.Float64()*6, rng.Float64()*6, rng.Float64()*6
	for y := range h {
		for x := range w {
			fx, fy := float64(x)/float64(w), float64(y)/float64(h)
			n := rng.Float64() * 40
			m.SetRGBA(x, y, color.RGBA{
				uint8(110 + 100*math.Sin(a*fx+fy) + n/2),
				uint8(120 + 90*math.Cos(b*fy-fx) + n/3),
				uint8(100 + 80*math.Sin(c*(fx+fy)) + n/4),
				255})
		}
	}
	return m
}

func prepJPEG(t testing.TB, m image.Image) []byte {
	var b bytes.Buffer
	if err := jpeg.Encode(&b, m, &jpeg.Options{Quality: 90}); err != nil {
		t.Fatal(err)
	}
	return b.Bytes()
}

func prepPNG(t testing.TB, m image.Image) []byte {
	var b bytes.Buffer
	if err := png.Encode(&b, m); err != nil {
		t.Fatal(err)
	}
	return b.Bytes()
}

// prepSource is a generated source folder.
type prepSource struct {
	dir     string
	broken  []string // the files that cannot be decoded, in source order
	classes []string
	gray    map[string]bool // gray images
}

// makePrepSource writes a source of 3 classes in mixed formats and sizes,
// with broken files, and a flat val folder with a labels file.
func makePrepSource(t testing.TB) *prepSource {
	rng := rand.New(rand.NewPCG(11, 12))
	s := &prepSource{dir: t.TempDir(), classes: []string{"Mole", "ant", "zebra"}, gray: map[string]bool{}}
	photo := func(w, h int) *image.RGBA { return prepPhoto(rng, w, h) }
	grayOf := func(m image.Image) *image.Gray {
		g := image.NewGray(m.Bounds())
		for y := range m.Bounds().Dy() {
			for x := range m.Bounds().Dx() {
				g.Set(x, y, m.At(x, y))
			}
		}
		return g
	}
	nrgba := func(w, h int) *image.NRGBA { // with some transparency
		m := image.NewNRGBA(image.Rect(0, 0, w, h))
		p := photo(w, h)
		for y := range h {
			for x := range w {
				c := p.RGBAAt(x, y)
				m.SetNRGBA(x, y, color.NRGBA{c.R, c.G, c.B, uint8(155 + (x+y)%101)})
			}
		}
		return m
	}
	whole := prepJPEG(t, photo(300, 200))
	files := map[string][]byte{
		"train/Mole/a.jpg":     prepJPEG(t, photo(100, 80)), // upscaled
		"train/Mole/b.png":     prepPNG(t, grayOf(photo(320, 240))),
		"train/Mole/d.jpg":     whole[:len(whole)/2], // truncated
		"train/ant/1.jpg":      prepJPEG(t, photo(300, 200)),
		"train/ant/2.png":      prepPNG(t, photo(200, 300)),
		"train/ant/3.png":      prepPNG(t, nrgba(256, 256)),
		"train/ant/4.jpg":      nil, // empty
		"train/zebra/x.jpg":    prepJPEG(t, photo(500, 375)),
		"train/zebra/y.JPEG":   prepJPEG(t, grayOf(photo(257, 255))),
		"train/zebra/z.jpg":    []byte("hello, I am not a JPEG\n"),
		"train/zebra/notes.md": []byte("ignored"),
		"val/v1.jpg":           prepJPEG(t, photo(320, 256)),
		"val/v2.png":           prepPNG(t, photo(240, 300)),
		"val/v3.jpg":           whole[:len(whole)-300],
		"val/v4.png":           prepPNG(t, photo(256, 257)),
		"val/labels.txt":       []byte("v1.jpg zebra\nv2.png 1\nv3.jpg Mole\nv4.png 0\n"),
	}
	s.broken = []string{"train/Mole/d.jpg", "train/ant/4.jpg", "train/zebra/z.jpg", "val/v3.jpg"}
	s.gray["train/Mole/b.png"], s.gray["train/zebra/y.JPEG"] = true, true
	// image/jpeg cannot encode CMYK, but Go's own source has a CMYK JPEG.
	if b, err := os.ReadFile(filepath.Join(runtime.GOROOT(), "src/image/testdata/video-001.cmyk.jpeg")); err == nil {
		files["train/Mole/c.jpg"] = b
	} else {
		t.Logf("no CMYK JPEG to test with: %v", err)
	}
	for p, b := range files {
		full := filepath.Join(s.dir, filepath.FromSlash(p))
		os.MkdirAll(filepath.Dir(full), 0o755)
		if err := os.WriteFile(full, b, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	return s
}

// treeHash hashes every file's path, mode, size, modification time and
// content under dir.
func treeHash(t testing.TB, dir string) [32]byte {
	h := sha256.New()
	err := filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		fi, err := d.Info()
		if err != nil {
			return err
		}
		fmt.Fprintf(h, "%s %v %d %d\n", p, fi.Mode(), fi.Size(), fi.ModTime().UnixNano())
		if fi.Mode().IsRegular() {
			b, err := os.ReadFile(p)
			if err != nil {
				return err
			}
			h.Write(b)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return [32]byte(h.Sum(nil))
}

// outFiles returns every file under dir by name, with its content's hash.
func outFiles(t testing.TB, dir string) map[string][32]byte {
	des, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	out := map[string][32]byte{}
	for _, de := range des {
		b, err := os.ReadFile(filepath.Join(dir, de.Name()))
		if err != nil {
			t.Fatal(err)
		}
		out[de.Name()] = sha256.Sum256(b)
	}
	return out
}

func sameFiles(t *testing.T, got, want map[string][32]byte) {
	t.Helper()
	for name, h := range want {
		if g, ok := got[name]; !ok {
			t.Errorf("%s is missing", name)
		} else if g != h {
			t.Errorf("%s differs", name)
		}
	}
	for name := range got {
		if _, ok := want[name]; !ok {
			t.Errorf("unexpected file %s", name)
		}
	}
}

// prepareRef is the reference for prepImage, straight from the formula in
// Prepare's doc comment, in float64: the value at (c, i, j) of the output
// is Σ_y Σ_x wy(oy+i, y)·wx(ox+j, x)·src(c, y, x), with src(c, y, x) the
// source's RGBA()/257.
func prepareRef(img image.Image, size int) []float64 {
	b := img.Bounds()
	sw, sh := b.Dx(), b.Dy()
	var dw, dh int
	if sw <= sh {
		dw, dh = size, max(size, int(math.Round(float64(sh)*float64(size)/float64(sw))))
	} else {
		dw, dh = max(size, int(math.Round(float64(sw)*float64(size)/float64(sh)))), size
	}
	// weights returns the source pixels and weights of scaled pixel u of an
	// axis of s source pixels scaled to d.
	weights := func(u, s, d int) map[int]float64 {
		w := map[int]float64{}
		r := float64(s) / float64(d)
		switch {
		case s == d:
			w[u] = 1
		case s > d: // area: the overlap of [u·r, (u+1)·r) with [x, x+1), over r
			lo, hi := float64(u)*r, float64(u+1)*r
			for x := int(math.Floor(lo)); float64(x) < hi; x++ {
				if ov := math.Min(hi, float64(x+1)) - math.Max(lo, float64(x)); ov > 0 {
					w[x] = ov / r
				}
			}
		default: // linear: a tent around (u+½)·r − ½, clamped
			p := math.Min(math.Max((float64(u)+0.5)*r-0.5, 0), float64(s-1))
			for x := int(math.Floor(p)); x <= int(math.Floor(p))+1 && x < s; x++ {
				if wt := 1 - math.Abs(p-float64(x)); wt > 0 {
					w[x] = wt
				}
			}
		}
		return w
	}
	ox, oy := (dw-size)/2, (dh-size)/2
	out := make([]float64, 3*size*size)
	wxs := make([]map[int]float64, size)
	for j := range wxs {
		wxs[j] = weights(ox+j, sw, dw)
	}
	for i := range size {
		wy := weights(oy+i, sh, dh)
		for j, wx := range wxs {
			for y, a := range wy {
				for x, bw := range wx {
					r, g, bb, _ := img.At(b.Min.X+x, b.Min.Y+y).RGBA()
					for c, v := range []uint32{r, g, bb} {
						out[(c*size+i)*size+j] += a * bw * float64(v) / 257
					}
				}
			}
		}
	}
	return out
}

// checkPrepImage compares prepImage's output with the reference: within
// one step of the rounded value (float32 arithmetic may round the other
// way at a half).
func checkPrepImage(t *testing.T, name string, img image.Image, size int, got []uint8) {
	t.Helper()
	want := prepareRef(img, size)
	bad := 0
	for k, w := range want {
		if d := math.Abs(float64(got[k]) - math.Round(math.Min(math.Max(w, 0), 255))); d > 1 {
			if bad++; bad <= 5 {
				c, i, j := k/(size*size), k/size%size, k%size
				t.Errorf("%s: (%d, %d, %d) = %d, want %.3f", name, c, i, j, got[k], w)
			}
		}
	}
}

// randImage returns an image of the kind named (its type: "gray",
// "gray16", "rgba" (opaque), "nrgba", "cmyk", "ycbcr" (4:2:0) or
// "paletted" (16 colours)) with bounds r and random pixels.
func randImage(rng *rand.Rand, kind string, r image.Rectangle) image.Image {
	fill := func(p []uint8) {
		for i := range p {
			p[i] = uint8(rng.IntN(256))
		}
	}
	switch kind {
	case "gray":
		m := image.NewGray(r)
		fill(m.Pix)
		return m
	case "gray16":
		m := image.NewGray16(r)
		fill(m.Pix)
		return m
	case "rgba":
		m := image.NewRGBA(r)
		fill(m.Pix)
		for i := 3; i < len(m.Pix); i += 4 {
			m.Pix[i] = 255
		}
		return m
	case "nrgba":
		m := image.NewNRGBA(r)
		fill(m.Pix)
		return m
	case "cmyk":
		m := image.NewCMYK(r)
		fill(m.Pix)
		return m
	case "ycbcr":
		m := image.NewYCbCr(r, image.YCbCrSubsampleRatio420)
		fill(m.Y)
		fill(m.Cb)
		fill(m.Cr)
		return m
	case "paletted":
		pal := color.Palette{}
		for range 16 {
			pal = append(pal, color.RGBA{uint8(rng.IntN(256)), uint8(rng.IntN(256)), uint8(rng.IntN(256)), 255})
		}
		m := image.NewPaletted(r, pal)
		for i := range m.Pix {
			m.Pix[i] = uint8(rng.IntN(16))
		}
		return m
	}
	panic(kind)
}

func TestPrepareResizeMatchesReference(t *testing.T) {
	rng := rand.New(rand.NewPCG(21, 22))
	var sc resampleScratch
	for _, kind := range []string{"gray", "gray16", "rgba", "nrgba", "cmyk", "ycbcr", "paletted"} {
		for _, d := range [][3]int{{40, 30, 16}, {30, 40, 16}, {16, 16, 16}, {17, 16, 16}, {10, 7, 16}, {7, 10, 16}, {61, 20, 9}, {5, 5, 9}, {1, 1, 4}, {3, 100, 8}} {
			w, h, size := d[0], d[1], d[2]
			img := randImage(rng, kind, image.Rect(3, -2, 3+w, -2+h)) // bounds not at the origin
			got := make([]uint8, 3*size*size)
			if err := prepImage(img, size, got, &sc); err != nil {
				t.Fatal(err)
			}
			checkPrepImage(t, fmt.Sprintf("%s %d×%d to %d", kind, w, h, size), img, size, got)
		}
	}
	if err := prepImage(image.NewRGBA(image.Rect(0, 0, 0, 5)), 4, make([]uint8, 48), &sc); err == nil {
		t.Error("an empty image gave no error")
	}
}

// prepTestOptions are small shards and two workers.
func prepTestOptions(src, out string) PrepareOptions {
	return PrepareOptions{Src: src, Out: out, Workers: 2, shardImages: 2}
}

func TestPrepare(t *testing.T) {
	src := makePrepSource(t)
	before := treeHash(t, src.dir)
	out := filepath.Join(t.TempDir(), "out")
	var progress bytes.Buffer
	o := prepTestOptions(src.dir, out)
	o.Progress = &progress
	sum, err := Prepare(context.Background(), o)
	if err != nil {
		t.Fatal(err)
	}
	if after := treeHash(t, src.dir); after != before {
		t.Error("the source folder changed")
	}
	list, err := OpenSource(src.dir)
	if err != nil {
		t.Fatal(err)
	}

	// What should be there: the source files that are not broken.
	var want [2][]SourceImage
	for k, imgs := range [][]SourceImage{list.Train, list.Val} {
		for _, im := range imgs {
			if !slices.Contains(src.broken, im.Path) {
				want[k] = append(want[k], im)
			}
		}
	}
	var skipped []string
	for _, s := range sum.Skipped {
		skipped = append(skipped, s.Path)
		if s.Reason == "" || strings.Contains(s.Reason, "\n") {
			t.Errorf("%s: reason %q", s.Path, s.Reason)
		}
	}
	if !slices.Equal(skipped, src.broken) {
		t.Errorf("skipped %q, want %q", skipped, src.broken)
	}
	if sum.Train != len(want[0]) || sum.Val != len(want[1]) || sum.Shards != (len(list.Train)+1)/2+(len(list.Val)+1)/2 || sum.Reused != 0 {
		t.Errorf("summary %+v, want %d train, %d val", sum, len(want[0]), len(want[1]))
	}
	if !strings.Contains(progress.String(), fmt.Sprintf("prepare: %d/%d images", len(list.Train)+len(list.Val), len(list.Train)+len(list.Val))) {
		t.Errorf("progress %q", progress.String())
	}

	// The report lists exactly the broken files.
	rb, err := os.ReadFile(filepath.Join(out, "report.txt"))
	if err != nil {
		t.Fatal(err)
	}
	var reported []string
	sc := bufio.NewScanner(bytes.NewReader(rb))
	for sc.Scan() {
		if line := sc.Text(); !strings.HasPrefix(line, "#") {
			path, reason, ok := strings.Cut(line, "\t")
			if !ok || reason == "" {
				t.Errorf("report line %q", line)
			}
			reported = append(reported, path)
		}
	}
	if !slices.Equal(reported, src.broken) {
		t.Errorf("report lists %q, want %q", reported, src.broken)
	}
	t.Logf("report:\n%s", rb)

	p, err := OpenPrepared(out)
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close()
	if p.Size != 256 || p.C != 3 || !slices.Equal(p.Classes, src.classes) || p.Skipped != len(src.broken) || p.Val == nil {
		t.Fatalf("prepared: size %d, C %d, classes %q, skipped %d", p.Size, p.C, p.Classes, p.Skipped)
	}
	if abs, _ := filepath.Abs(src.dir); p.Source != abs {
		t.Errorf("source %q, want %q", p.Source, abs)
	}

	// Every image: its label, and its pixels against the reference resize.
	const n = 3 * 256 * 256
	img := make([]uint8, n)
	var trainImgs [][]uint8
	for k, s := range []*Shards{p.Train, p.Val} {
		if s.N() != len(want[k]) || s.C() != 3 || s.Size() != 256 {
			t.Fatalf("split %d: N, C, Size = %d, %d, %d, want %d, 3, 256", k, s.N(), s.C(), s.Size(), len(want[k]))
		}
		for i, im := range want[k] {
			if s.Label(i) != im.Label {
				t.Errorf("%s: label %d, want %d", im.Path, s.Label(i), im.Label)
			}
			if err := s.Read(i, img); err != nil {
				t.Fatal(err)
			}
			if k == 0 {
				trainImgs = append(trainImgs, slices.Clone(img))
			}
			dec, err := DecodeImage(filepath.Join(src.dir, im.Path))
			if err != nil {
				t.Fatal(err)
			}
			checkPrepImage(t, im.Path, dec, 256, img)
			if src.gray[im.Path] && (!bytes.Equal(img[:n/3], img[n/3:2*n/3]) || !bytes.Equal(img[:n/3], img[2*n/3:])) {
				t.Errorf("%s: a gray image's R, G and B differ", im.Path)
			}
		}
	}
	if !slices.ContainsFunc(want[0], func(im SourceImage) bool { return im.Path == "train/Mole/c.jpg" }) {
		t.Log("CMYK JPEG case not run (Go's testdata is missing)")
	}

	// The mean image, directly.
	for k := range n {
		var s float64
		for _, im := range trainImgs {
			s += float64(im[k])
		}
		if w := float32(s / float64(len(trainImgs))); p.Mean[k] != w {
			t.Fatalf("mean[%d] = %v, want %v", k, p.Mean[k], w)
		}
	}
	// The RGB covariance over all training pixels, directly, in two passes.
	var mu [3]float64
	np := float64(len(trainImgs) * 256 * 256)
	for _, im := range trainImgs {
		for c := range 3 {
			for _, v := range im[c*n/3 : (c+1)*n/3] {
				mu[c] += float64(v)
			}
		}
	}
	for c := range mu {
		mu[c] /= np
	}
	var cov [3][3]float64
	for _, im := range trainImgs {
		for q := range n / 3 {
			for a := range 3 {
				for b := range 3 {
					cov[a][b] += (float64(im[a*n/3+q]) - mu[a]) * (float64(im[b*n/3+q]) - mu[b])
				}
			}
		}
	}
	for a := range 3 {
		for b := range 3 {
			cov[a][b] /= np
			if math.Abs(p.Cov[a][b]-cov[a][b]) > 1e-9*math.Abs(cov[a][a]) {
				t.Errorf("cov[%d][%d] = %v, want %v", a, b, p.Cov[a][b], cov[a][b])
			}
		}
	}
	// Σv = λv, orthonormal, decreasing.
	for i := range 3 {
		if i > 0 && p.EigVal[i] > p.EigVal[i-1] {
			t.Errorf("eigenvalues %v not decreasing", p.EigVal)
		}
		for r := range 3 {
			var sv float64
			for c := range 3 {
				sv += cov[r][c] * p.EigVec[i][c]
			}
			if math.Abs(sv-p.EigVal[i]*p.EigVec[i][r]) > 1e-9*p.EigVal[0] {
				t.Errorf("(Σv%d)[%d] = %v, λv = %v", i, r, sv, p.EigVal[i]*p.EigVec[i][r])
			}
		}
		for j := range 3 {
			var dot float64
			for c := range 3 {
				dot += p.EigVec[i][c] * p.EigVec[j][c]
			}
			if want := float64(b2i(i == j)); math.Abs(dot-want) > 1e-12 {
				t.Errorf("v%d·v%d = %v", i, j, dot)
			}
		}
	}
	t.Logf("eigenvalues %.2f, eigenvectors %.4f", p.EigVal, p.EigVec)

	// meta.json says what the doc says.
	var meta map[string]any
	mb, _ := os.ReadFile(filepath.Join(out, "meta.json"))
	if err := json.Unmarshal(mb, &meta); err != nil {
		t.Fatal(err)
	}
	for _, k := range []string{"version", "size", "channels", "classes", "train", "val", "eigenvalues", "eigenvectors", "mean", "source", "skipped"} {
		if _, ok := meta[k]; !ok {
			t.Errorf("meta.json has no %q", k)
		}
	}
	if meta["mean"] != "mean.f32" || meta["skipped"] != float64(len(src.broken)) {
		t.Errorf("meta.json: mean %v, skipped %v", meta["mean"], meta["skipped"])
	}
}

func b2i(b bool) int {
	if b {
		return 1
	}
	return 0
}

func TestPrepareResume(t *testing.T) {
	src := makePrepSource(t)
	out := t.TempDir()
	first, err := Prepare(context.Background(), prepTestOptions(src.dir, out))
	if err != nil {
		t.Fatal(err)
	}
	want := outFiles(t, out)
	if _, ok := want["train-00001.stats"]; !ok {
		t.Fatalf("no stats beside the shards: %v", want)
	}

	// Complete: nothing is decoded again, nothing changes.
	sum, err := Prepare(context.Background(), prepTestOptions(src.dir, out))
	if err != nil || sum.Reused != sum.Shards || sum.Decoded != 0 || !slices.Equal(sum.Skipped, first.Skipped) {
		t.Fatalf("rerun: %+v, %v", sum, err)
	}
	sameFiles(t, outFiles(t, out), want)

	// One shard and its statistics deleted: only its images are decoded.
	os.Remove(filepath.Join(out, "train-00001.shard"))
	os.Remove(filepath.Join(out, "train-00001.stats"))
	// A shard whose statistics are gone is written again too.
	os.Remove(filepath.Join(out, "val-00000.stats"))
	sum, err = Prepare(context.Background(), prepTestOptions(src.dir, out))
	if err != nil || sum.Reused != sum.Shards-2 || sum.Decoded != 4 {
		t.Fatalf("resume: %+v, %v", sum, err)
	}
	sameFiles(t, outFiles(t, out), want)

	// A different number of workers gives the same bytes.
	out2 := t.TempDir()
	o := prepTestOptions(src.dir, out2)
	o.Workers = 3
	if _, err := Prepare(context.Background(), o); err != nil {
		t.Fatal(err)
	}
	sameFiles(t, outFiles(t, out2), want)
}

func TestPrepareInterrupted(t *testing.T) {
	src := makePrepSource(t)
	ref := t.TempDir()
	o := prepTestOptions(src.dir, ref)
	o.Workers = 1
	if _, err := Prepare(context.Background(), o); err != nil {
		t.Fatal(err)
	}
	want := outFiles(t, ref)

	out := t.TempDir()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	dec := DecodeImage
	defer func() { DecodeImage = dec }()
	// Interrupt while a validation image is being decoded, once the second
	// training shard is complete: some shards are done, others not yet.
	// (Images are handed out in order, so the training images are all
	// decoded or being decoded by the other worker by then.)
	var calls atomic.Int32
	DecodeImage = func(path string) (image.Image, error) {
		calls.Add(1)
		if strings.Contains(filepath.ToSlash(path), "/val/") {
			for start := time.Now(); ; time.Sleep(time.Millisecond) {
				if _, err := os.Stat(filepath.Join(out, "train-00001.shard")); err == nil {
					break
				}
				if time.Since(start) > 10*time.Second {
					t.Error("train-00001.shard was not written")
					break
				}
			}
			cancel()
		}
		return dec(path)
	}
	_, err := Prepare(ctx, prepTestOptions(src.dir, out))
	if !errors.Is(err, context.Canceled) || !strings.Contains(err.Error(), "rerun to resume") {
		t.Fatalf("interrupted: %v", err)
	}
	t.Logf("after %d decodes: %v", calls.Load(), err)
	got := outFiles(t, out)
	if _, ok := got["meta.json"]; ok {
		t.Error("meta.json written by an interrupted run")
	}
	shards := 0
	for name := range got {
		if strings.HasSuffix(name, ".tmp") {
			t.Errorf("%s left behind", name)
		}
		if strings.HasSuffix(name, ".shard") {
			shards++
			if got[name] != want[name] {
				t.Errorf("%s differs from the uninterrupted run's", name)
			}
		}
	}
	all := 0
	for name := range want {
		if strings.HasSuffix(name, ".shard") {
			all++
		}
	}
	if shards == 0 || shards == all {
		t.Errorf("%d shards complete after the interruption, want some but not all", shards)
	}
	DecodeImage = dec
	sum, err := Prepare(context.Background(), prepTestOptions(src.dir, out))
	if err != nil || sum.Reused != shards {
		t.Fatalf("resume: %+v, %v", sum, err)
	}
	sameFiles(t, outFiles(t, out), want)
}

func TestPrepareRefuses(t *testing.T) {
	src := makePrepSource(t)
	ctx := context.Background()
	before := treeHash(t, src.dir)
	for _, c := range []struct{ out, want string }{
		{src.dir, "output folder is the source folder"},
		{filepath.Join(src.dir, "prepared"), "output folder is inside the source"},
		{filepath.Join(src.dir, "train", "x", "y"), "output folder is inside the source"},
	} {
		if _, err := Prepare(ctx, prepTestOptions(src.dir, c.out)); err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("--out %s: %v, want %q", c.out, err, c.want)
		}
	}
	// Through a symbolic link to the source.
	link := filepath.Join(t.TempDir(), "link")
	if err := os.Symlink(src.dir, link); err == nil {
		if _, err := Prepare(ctx, prepTestOptions(src.dir, filepath.Join(link, "out"))); err == nil || !strings.Contains(err.Error(), "inside the source") {
			t.Errorf("--out through a link into the source: %v", err)
		}
	}
	if after := treeHash(t, src.dir); after != before {
		t.Error("the source changed")
	}

	// An output holding another data set.
	other := t.TempDir()
	srcTree(t, other, map[string]string{"train/a/1.png": string(prepPNG(t, prepPhoto(rand.New(rand.NewPCG(1, 1)), 30, 20)))})
	out := t.TempDir()
	if _, err := Prepare(ctx, prepTestOptions(other, out)); err != nil {
		t.Fatal(err)
	}
	if _, err := Prepare(ctx, prepTestOptions(src.dir, out)); err == nil || !strings.Contains(err.Error(), "holds another data set, prepared from "+other) {
		t.Errorf("another data set's output: %v", err)
	}
	o := prepTestOptions(other, out)
	o.Size = 64
	if _, err := Prepare(ctx, o); err == nil || !strings.Contains(err.Error(), "at size 256") {
		t.Errorf("another size: %v", err)
	}
	// A source whose training images are all broken.
	broken := t.TempDir()
	srcTree(t, broken, map[string]string{"train/a/1.jpg": "not a JPEG"})
	if _, err := Prepare(ctx, prepTestOptions(broken, t.TempDir())); err == nil || !strings.Contains(err.Error(), "none of the 1 training images could be read") {
		t.Errorf("all broken: %v", err)
	}

	// OpenPrepared on something else.
	empty := t.TempDir()
	_, err := OpenPrepared(empty)
	if err == nil || !strings.Contains(err.Error(), "not a prepared data set (run trainer prepare)") || !errors.Is(err, ErrNotFound) {
		t.Errorf("OpenPrepared(empty folder): %v", err)
	}
	if _, err := OpenPrepared(filepath.Join(empty, "nope")); err == nil || !strings.Contains(err.Error(), "not a prepared data set") {
		t.Errorf("OpenPrepared(missing folder): %v", err)
	}
	// A prepared set with a damaged piece.
	os.Remove(filepath.Join(out, "train-00000.shard"))
	if _, err := OpenPrepared(out); err == nil || !strings.Contains(err.Error(), "train-00000.shard") {
		t.Errorf("OpenPrepared without its shard: %v", err)
	}
}

// Prepare writes only into a folder of its own: new, empty, or its own
// output, complete or interrupted. A folder holding anything else (a
// user's files, the current folder) is refused and left untouched.
func TestPrepareRefusesForeignOut(t *testing.T) {
	src := makePrepSource(t)
	ctx := context.Background()
	refused := func(name, out, want string) {
		t.Helper()
		before := treeHash(t, out)
		_, err := Prepare(ctx, prepTestOptions(src.dir, out))
		if err == nil || !strings.Contains(err.Error(), "did not write") || !strings.Contains(err.Error(), want) ||
			!strings.Contains(err.Error(), "give --out a new or empty folder") || strings.Contains(err.Error(), "\n") {
			t.Errorf("%s: %v, want one line naming %q and saying what to do with --out", name, err, want)
		}
		if treeHash(t, out) != before {
			t.Errorf("%s: the folder changed", name)
		}
	}

	user := t.TempDir()
	srcTree(t, user, map[string]string{"thesis.tex": "my work"})
	refused("a user's file", user, "thesis.tex")
	if b, err := os.ReadFile(filepath.Join(user, "thesis.tex")); err != nil || string(b) != "my work" {
		t.Errorf("the user's file: %q, %v", b, err)
	}
	// A folder holding a user's file among names Prepare writes.
	mixed := t.TempDir()
	srcTree(t, mixed, map[string]string{"train-00000.shard": "x", "notes.txt": "mine"})
	refused("a user's file beside a shard", mixed, "notes.txt")
	// Names a user's files may have, without Prepare's own beside them.
	generic := t.TempDir()
	srcTree(t, generic, map[string]string{"report.txt": "quarterly figures"})
	refused("a user's report.txt", generic, "report.txt")
	sub := t.TempDir()
	if err := os.Mkdir(filepath.Join(sub, "photos"), 0o755); err != nil {
		t.Fatal(err)
	}
	refused("a folder", sub, "photos/")
	// The current folder, where a project lives; the source beside it.
	proj := t.TempDir()
	srcTree(t, proj, map[string]string{"go.mod": "module x\n", "a.go": "package x\n", "b.go": "", "c.go": ""})
	t.Chdir(proj)
	refused(`"."`, ".", "a.go, b.go, c.go and 1 more")

	// Its own output, interrupted (by a kill: meta.json gone, an
	// unfinished shard left), is resumed and completed.
	ref := t.TempDir()
	if _, err := Prepare(ctx, prepTestOptions(src.dir, ref)); err != nil {
		t.Fatal(err)
	}
	want := outFiles(t, ref)
	out := t.TempDir()
	if _, err := Prepare(ctx, prepTestOptions(src.dir, out)); err != nil {
		t.Fatal(err)
	}
	for _, name := range []string{"meta.json", "mean.f32", "train-00002.shard", "train-00002.stats"} {
		if err := os.Remove(filepath.Join(out, name)); err != nil {
			t.Fatal(err)
		}
	}
	srcTree(t, out, map[string]string{"train-00002.shard.tmp": "half a shard", "meta.json.tmp": "{"})
	sum, err := Prepare(ctx, prepTestOptions(src.dir, out))
	if err != nil || sum.Decoded == 0 || sum.Reused != sum.Shards-1 {
		t.Fatalf("resume into its own interrupted output: %+v, %v", sum, err)
	}
	sameFiles(t, outFiles(t, out), want)
	// And a folder that does not exist yet is created.
	if _, err := Prepare(ctx, prepTestOptions(src.dir, filepath.Join(t.TempDir(), "new", "out"))); err != nil {
		t.Errorf("a new folder: %v", err)
	}
}

// BenchmarkPrepare prepares 500×375 JPEG photos at 256, reporting images/s
// and images/s per worker (GOMAXPROCS workers).
func BenchmarkPrepare(b *testing.B) {
	rng := rand.New(rand.NewPCG(5, 5))
	src := b.TempDir()
	const n = 32
	for i := range n {
		p := filepath.Join(src, "train", fmt.Sprintf("c%d", i%4), fmt.Sprintf("%03d.jpg", i))
		os.MkdirAll(filepath.Dir(p), 0o755)
		if err := os.WriteFile(p, prepJPEG(b, prepPhoto(rng, 500, 375)), 0o644); err != nil {
			b.Fatal(err)
		}
	}
	workers := runtime.GOMAXPROCS(0)
	b.ResetTimer()
	for i := range b.N {
		out := filepath.Join(b.TempDir(), fmt.Sprint(i))
		if _, err := Prepare(context.Background(), PrepareOptions{Src: src, Out: out, Workers: workers}); err != nil {
			b.Fatal(err)
		}
	}
	rate := float64(n*b.N) / b.Elapsed().Seconds()
	b.ReportMetric(rate, "images/s")
	b.ReportMetric(rate/float64(workers), "images/s/core")
	b.ReportMetric(0, "ns/op")
}

// BenchmarkPrepImage rescales and crops one decoded 500×375 photo to
// 256×256, the work Prepare adds to decoding.
func BenchmarkPrepImage(b *testing.B) {
	rgba := prepPhoto(rand.New(rand.NewPCG(6, 6)), 500, 375)
	ycc, err := jpeg.Decode(bytes.NewReader(prepJPEG(b, rgba)))
	if err != nil {
		b.Fatal(err)
	}
	for _, c := range []struct {
		name string
		img  image.Image
	}{{"RGBA", rgba}, {"YCbCr", ycc}} {
		b.Run(c.name, func(b *testing.B) {
			var sc resampleScratch
			dst := make([]uint8, 3*256*256)
			for b.Loop() {
				prepImage(c.img, 256, dst, &sc)
			}
			b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "images/s")
		})
	}
}

// One prepare at a time writes a folder: a second, while the first holds
// the folder's lock, is refused naming the holder's pid, and writes
// nothing; once the lock is released the folder can be prepared.
func TestPrepareLocked(t *testing.T) {
	src := makePrepSource(t)
	out := t.TempDir()
	lk, err := safefile.LockDir(out)
	if err != nil {
		t.Fatal(err)
	}
	_, err = Prepare(context.Background(), prepTestOptions(src.dir, out))
	if err == nil || !strings.Contains(err.Error(), fmt.Sprintf("pid %d", os.Getpid())) || !strings.Contains(err.Error(), "--out") {
		t.Errorf("prepare into a locked folder: %v, want an error naming --out and the holder's pid", err)
	}
	if des, _ := os.ReadDir(out); len(des) != 1 || des[0].Name() != safefile.LockName {
		t.Errorf("the refused prepare wrote into the folder: %v", des)
	}
	lk.Close()
	if _, err := Prepare(context.Background(), prepTestOptions(src.dir, out)); err != nil {
		t.Errorf("after the lock is released: %v", err)
	}
}
