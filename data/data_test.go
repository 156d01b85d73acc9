package data

import (
	"bytes"
	"compress/gzip"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"
)

const fashionDir = "/usr/share/datasets/fashion-mnist"

var real struct {
	once        sync.Once
	train, test *Set
	err         error
}

// fashion loads the installed Fashion-MNIST once, or skips the test.
func fashion(tb testing.TB) (train, test *Set) {
	tb.Helper()
	if _, err := os.Stat(fashionDir); err != nil {
		tb.Skipf("Fashion-MNIST is not installed at %s (apt install dataset-fashion-mnist): %v", fashionDir, err)
	}
	real.once.Do(func() { real.train, real.test, real.err = LoadIDX(fashionDir) })
	if real.err != nil {
		tb.Fatal(real.err)
	}
	return real.train, real.test
}

func TestLoadFashionMNIST(t *testing.T) {
	train, test := fashion(t)
	for _, c := range []struct {
		s *Set
		n int
	}{{train, 60000}, {test, 10000}} {
		s := c.s
		if s.N != c.n || s.C != 1 || s.H != 28 || s.W != 28 {
			t.Errorf("%s: N, C, H, W = %d, %d, %d, %d, want %d, 1, 28, 28", s.Name, s.N, s.C, s.H, s.W, c.n)
		}
		if err := s.Validate(); err != nil {
			t.Error(err)
		}
		if !slices.Equal(s.Classes, FashionClasses) {
			t.Errorf("%s: classes %q, want %q", s.Name, s.Classes, FashionClasses)
		}
		var count [10]int
		for _, l := range s.Labels {
			count[l]++ // Validate checked the range
		}
		for l, k := range count {
			if k != c.n/10 { // Fashion-MNIST is balanced
				t.Errorf("%s: %d images of class %d, want %d", s.Name, k, l, c.n/10)
			}
		}
	}
	if train.Labels[0] != 9 || train.Classes[train.Labels[0]] != "Ankle boot" {
		t.Errorf("train label[0] = %d, want 9 (Ankle boot)", train.Labels[0])
	}
	if train.Name != "fashion-mnist/train" {
		t.Errorf("name %q", train.Name)
	}
}

// synthSet returns a random set of n c×h×w images with labels in [0, classes).
func synthSet(n, c, h, w, classes int, seed uint64) *Set {
	r := rand.New(rand.NewPCG(seed, 2))
	s := &Set{Name: "synth", N: n, C: c, H: h, W: w, Pixels: make([]uint8, n*c*h*w), Labels: make([]int, n)}
	for i := range s.Pixels {
		s.Pixels[i] = uint8(r.IntN(256))
	}
	for i := range s.Labels {
		s.Labels[i] = r.IntN(classes)
	}
	s.Classes = DigitClasses[:classes]
	return s
}

func idxImages(s *Set) []byte {
	b := binary.BigEndian.AppendUint32(nil, imagesMagic)
	b = binary.BigEndian.AppendUint32(b, uint32(s.N))
	b = binary.BigEndian.AppendUint32(b, uint32(s.H))
	b = binary.BigEndian.AppendUint32(b, uint32(s.W))
	return append(b, s.Pixels...)
}

func idxLabels(s *Set) []byte {
	b := binary.BigEndian.AppendUint32(nil, labelsMagic)
	b = binary.BigEndian.AppendUint32(b, uint32(s.N))
	for _, l := range s.Labels {
		b = append(b, uint8(l))
	}
	return b
}

func gz(b []byte) []byte {
	var buf bytes.Buffer
	w := gzip.NewWriter(&buf)
	w.Write(b)
	w.Close()
	return buf.Bytes()
}

func writeFile(t *testing.T, path string, b []byte) {
	t.Helper()
	if err := os.WriteFile(path, b, 0o644); err != nil {
		t.Fatal(err)
	}
}

// writeIDX writes train and test as an IDX data set in dir, with the given
// file names (in idxFiles order), gzipping those ending in .gz.
func writeIDX(t *testing.T, dir string, train, test *Set, names [4]string) {
	t.Helper()
	content := [4][]byte{idxImages(train), idxLabels(train), idxImages(test), idxLabels(test)}
	for k, name := range names {
		b := content[k]
		if strings.HasSuffix(name, ".gz") {
			b = gz(b)
		}
		writeFile(t, filepath.Join(dir, name), b)
	}
}

var (
	plainNames = [4]string{"train-images-idx3-ubyte", "train-labels-idx1-ubyte", "t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"}
	gzNames    = [4]string{"train-images-idx3-ubyte.gz", "train-labels-idx1-ubyte.gz", "t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz"}
	dotNames   = [4]string{"train-images.idx3-ubyte", "train-labels.idx1-ubyte.gz", "t10k-images.idx3-ubyte.gz", "t10k-labels.idx1-ubyte"}
)

func sameSet(t *testing.T, got, want *Set) {
	t.Helper()
	if got.N != want.N || got.C != want.C || got.H != want.H || got.W != want.W ||
		!bytes.Equal(got.Pixels, want.Pixels) || !slices.Equal(got.Labels, want.Labels) {
		t.Errorf("%s: loaded set differs from the one written (N, C, H, W = %d, %d, %d, %d, want %d, %d, %d, %d)",
			got.Name, got.N, got.C, got.H, got.W, want.N, want.C, want.H, want.W)
	}
}

func TestLoadIDXSynthetic(t *testing.T) {
	train, test := synthSet(50, 1, 7, 5, 10, 1), synthSet(20, 1, 7, 5, 10, 2)
	for _, names := range [][4]string{plainNames, gzNames, dotNames} {
		t.Run(names[1], func(t *testing.T) {
			dir := t.TempDir()
			writeIDX(t, dir, train, test, names)
			tr, te, err := LoadIDX(dir)
			if err != nil {
				t.Fatal(err)
			}
			sameSet(t, tr, train)
			sameSet(t, te, test)
			if !slices.Equal(tr.Classes, DigitClasses) {
				t.Errorf("classes %q, want digits", tr.Classes)
			}
		})
	}
	t.Run("plain-preferred", func(t *testing.T) {
		dir := t.TempDir()
		writeIDX(t, dir, train, test, plainNames)
		other := synthSet(50, 1, 7, 5, 10, 9)
		writeFile(t, filepath.Join(dir, gzNames[0]), gz(idxImages(other)))
		tr, _, err := LoadIDX(dir)
		if err != nil {
			t.Fatal(err)
		}
		sameSet(t, tr, train)
	})
	t.Run("gzip-content-plain-name", func(t *testing.T) {
		dir := t.TempDir()
		writeIDX(t, dir, train, test, plainNames)
		writeFile(t, filepath.Join(dir, plainNames[0]), gz(idxImages(train)))
		tr, _, err := LoadIDX(dir)
		if err != nil {
			t.Fatal(err)
		}
		sameSet(t, tr, train)
	})
	t.Run("classes", func(t *testing.T) {
		dir := filepath.Join(t.TempDir(), "Fashion-MNIST")
		os.Mkdir(dir, 0o755)
		writeIDX(t, dir, train, test, plainNames)
		tr, _, err := LoadIDX(dir)
		if err != nil {
			t.Fatal(err)
		}
		if !slices.Equal(tr.Classes, FashionClasses) {
			t.Errorf("classes %q in %s, want Fashion-MNIST's", tr.Classes, dir)
		}
		names := []string{"a", "b", "c", "d", "e", "f", "g", "h", "i", "j", "k"}
		writeFile(t, filepath.Join(dir, "classes.txt"), []byte(strings.Join(names, "\n")+"\n\n"))
		tr, _, err = LoadIDX(dir)
		if err != nil {
			t.Fatal(err)
		}
		if !slices.Equal(tr.Classes, names) {
			t.Errorf("classes %q, want %q from classes.txt", tr.Classes, names)
		}
	})
}

func TestLoadIDXErrors(t *testing.T) {
	train, test := synthSet(50, 1, 7, 5, 10, 1), synthSet(20, 1, 7, 5, 10, 2)
	badLabel := synthSet(20, 1, 7, 5, 10, 2)
	badLabel.Labels[3] = 10
	trainImages := idxImages(train)
	cases := []struct {
		name  string
		setup func(t *testing.T, dir string) // after a good data set is written
		file  string                         // the file the message must name
		want  []string                       // more substrings of the message
		kind  error
	}{
		{"truncated-images", func(t *testing.T, dir string) {
			writeFile(t, filepath.Join(dir, plainNames[0]), trainImages[:1000])
		}, plainNames[0], []string{"truncated", "50 images of 7×5 (1766 bytes)", "file has 1000 bytes"}, ErrFormat},
		{"truncated-gz-images", func(t *testing.T, dir string) {
			os.Remove(filepath.Join(dir, plainNames[0]))
			writeFile(t, filepath.Join(dir, gzNames[0]), gz(trainImages[:1000]))
		}, gzNames[0], []string{"truncated", "decompressed file has 1000 bytes"}, ErrFormat},
		{"truncated-gzip-stream", func(t *testing.T, dir string) {
			os.Remove(filepath.Join(dir, plainNames[0]))
			z := gz(trainImages)
			writeFile(t, filepath.Join(dir, gzNames[0]), z[:len(z)/2])
		}, gzNames[0], []string{"truncated"}, ErrFormat},
		{"corrupt-gzip", func(t *testing.T, dir string) {
			os.Remove(filepath.Join(dir, plainNames[0]))
			z := gz(trainImages)
			z[len(z)-6] ^= 0xff // the CRC
			writeFile(t, filepath.Join(dir, gzNames[0]), z)
		}, gzNames[0], []string{"gzip"}, ErrFormat},
		{"gz-name-not-gzip", func(t *testing.T, dir string) {
			os.Remove(filepath.Join(dir, plainNames[0]))
			writeFile(t, filepath.Join(dir, gzNames[0]), trainImages)
		}, gzNames[0], []string{"not gzip"}, ErrFormat},
		{"trailing-bytes", func(t *testing.T, dir string) {
			writeFile(t, filepath.Join(dir, plainNames[0]), append(slices.Clone(trainImages), 0, 0))
		}, plainNames[0], []string{"1766 bytes", "file has 1768 bytes"}, ErrFormat},
		{"truncated-labels", func(t *testing.T, dir string) {
			writeFile(t, filepath.Join(dir, plainNames[1]), idxLabels(train)[:30])
		}, plainNames[1], []string{"truncated", "50 labels (58 bytes)", "file has 30 bytes"}, ErrFormat},
		{"short-header", func(t *testing.T, dir string) {
			writeFile(t, filepath.Join(dir, plainNames[3]), idxLabels(test)[:5])
		}, plainNames[3], []string{"truncated", "header"}, ErrFormat},
		{"empty-file", func(t *testing.T, dir string) {
			writeFile(t, filepath.Join(dir, plainNames[2]), nil)
		}, plainNames[2], []string{"empty"}, ErrFormat},
		{"wrong-magic", func(t *testing.T, dir string) {
			writeFile(t, filepath.Join(dir, plainNames[2]), idxLabels(test))
		}, plainNames[2], []string{"magic number 0x00000801", "label file"}, ErrFormat},
		{"wrong-magic-labels", func(t *testing.T, dir string) {
			b := idxLabels(test)
			b[2] = 0x0d
			writeFile(t, filepath.Join(dir, plainNames[3]), b)
		}, plainNames[3], []string{"magic number 0x00000d01"}, ErrFormat},
		{"count-mismatch", func(t *testing.T, dir string) {
			writeFile(t, filepath.Join(dir, plainNames[1]), idxLabels(Limit(train, 49)))
		}, plainNames[1], []string{"49 labels", "50 images", plainNames[0]}, ErrFormat},
		{"label-range", func(t *testing.T, dir string) {
			writeFile(t, filepath.Join(dir, plainNames[3]), idxLabels(badLabel))
		}, plainNames[3], []string{"label 10 of image 3", "classes.txt"}, ErrFormat},
		{"size-mismatch", func(t *testing.T, dir string) {
			writeFile(t, filepath.Join(dir, plainNames[2]), idxImages(synthSet(20, 1, 5, 7, 10, 3)))
		}, plainNames[2], []string{"5×7", "7×5"}, ErrFormat},
		{"missing-file", func(t *testing.T, dir string) {
			os.Remove(filepath.Join(dir, plainNames[3]))
		}, plainNames[3], []string{"t10k-labels.idx1-ubyte.gz", "apt install dataset-fashion-mnist", "--data DIR"}, ErrNotFound},
		{"empty-dir", func(t *testing.T, dir string) {
			for _, n := range plainNames {
				os.Remove(filepath.Join(dir, n))
			}
		}, plainNames[0], []string{"apt install dataset-fashion-mnist", "--data DIR"}, ErrNotFound},
		{"missing-dir", func(t *testing.T, dir string) {
			os.RemoveAll(dir)
		}, "", []string{"directory not found", "apt install dataset-fashion-mnist", "--data DIR"}, ErrNotFound},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			dir := t.TempDir()
			writeIDX(t, dir, train, test, plainNames)
			c.setup(t, dir)
			_, _, err := LoadIDX(dir)
			if err == nil {
				t.Fatal("no error")
			}
			msg := err.Error()
			t.Log(msg)
			if !strings.HasPrefix(msg, "data: "+filepath.Join(dir, c.file)) {
				t.Errorf("message does not start with data: %s", filepath.Join(dir, c.file))
			}
			for _, w := range c.want {
				if !strings.Contains(msg, w) {
					t.Errorf("message does not contain %q", w)
				}
			}
			if strings.Contains(msg, "\n") {
				t.Error("message is more than one line")
			}
			if !errors.Is(err, c.kind) {
				t.Errorf("errors.Is(err, %v) is false", c.kind)
			}
			var fe *FileError
			if !errors.As(err, &fe) {
				t.Errorf("error is %T, want *FileError", err)
			}
		})
	}
}

// TestHostileHeader checks that a header claiming 2^31 images costs memory in
// proportion to the data present, not to the claim.
func TestHostileHeader(t *testing.T) {
	b := binary.BigEndian.AppendUint32(nil, imagesMagic)
	b = binary.BigEndian.AppendUint32(b, 1<<31)
	b = binary.BigEndian.AppendUint32(b, 28)
	b = binary.BigEndian.AppendUint32(b, 28)
	b = append(b, make([]byte, 1000)...)
	var before, after runtime.MemStats
	runtime.ReadMemStats(&before)
	_, _, _, _, err := ReadIDXImages(bytes.NewReader(b), "hostile")
	runtime.ReadMemStats(&after)
	if err == nil || !strings.Contains(err.Error(), "truncated") {
		t.Errorf("err = %v, want truncated", err)
	}
	if got := after.TotalAlloc - before.TotalAlloc; got > 1<<20 {
		t.Errorf("allocated %d bytes reading 1016", got)
	}
	// The largest possible header: refused before reading.
	for k := 4; k < 16; k++ {
		b[k] = 0xff
	}
	if _, _, _, _, err := ReadIDXImages(bytes.NewReader(b), "hostile"); err == nil || !strings.Contains(err.Error(), "too large") {
		t.Errorf("err = %v, want too large", err)
	}
}

func TestLimit(t *testing.T) {
	s := synthSet(10, 2, 3, 4, 10, 1)
	l := Limit(s, 4)
	if l.N != 4 || len(l.Pixels) != 4*24 || len(l.Labels) != 4 || !bytes.Equal(l.Pixels, s.Pixels[:96]) {
		t.Errorf("Limit(s, 4): N %d, %d pixels, %d labels", l.N, len(l.Pixels), len(l.Labels))
	}
	if err := l.Validate(); err != nil {
		t.Error(err)
	}
	if Limit(s, 0) != s || Limit(s, 10) != s || Limit(s, 11) != s {
		t.Error("Limit with n ≤ 0 or n ≥ N should return s")
	}
}

// renderRef is the slow reference for Render, straight from the definition:
// pad the image, centred, to E×E with zeros, cut the Size×Size window at
// (X, Y), mirror it if Flip and subtract the mean. Raw pixel values (0..255),
// unscaled; float64 throughout.
func renderRef(a Augment, s *Set, i int, p Placement, mean []float32) []float64 {
	size := a.Size
	eh, ew := max(s.H, size)+2*a.Pad, max(s.W, size)+2*a.Pad
	th, tw := (eh-s.H)/2, (ew-s.W)/2
	padded := make([]float64, s.C*eh*ew)
	img := s.Image(i)
	for c := range s.C {
		for y := range s.H {
			for x := range s.W {
				padded[(c*eh+y+th)*ew+x+tw] = float64(img[(c*s.H+y)*s.W+x])
			}
		}
	}
	out := make([]float64, s.C*size*size)
	for c := range s.C {
		for y := range size {
			for x := range size {
				sx := p.X + x
				if p.Flip {
					sx = p.X + size - 1 - x
				}
				v := padded[(c*eh+p.Y+y)*ew+sx]
				if mean != nil {
					v -= float64(mean[(c*size+y)*size+x])
				}
				out[(c*size+y)*size+x] = v
			}
		}
	}
	return out
}

// closeTol is checkClose's absolute tolerance: 1e-6 on the former [0, 1]
// scale, times 255 for raw pixel units (0..255). It is over 30 times the
// worst float32 rounding error of one subtraction of values up to 255.
const closeTol = 255 * 1e-6

func checkClose(t *testing.T, what string, got []float32, want []float64) {
	t.Helper()
	bad := 0
	for k := range want {
		if d := float64(got[k]) - want[k]; d > closeTol || d < -closeTol {
			t.Errorf("%s: [%d] = %v, want %v", what, k, got[k], want[k])
			if bad++; bad == 10 {
				return
			}
		}
	}
}

func TestRenderCentreExact(t *testing.T) {
	s := synthSet(3, 1, 28, 28, 10, 5)
	a := Augment{Size: 32, Pad: 2}
	p := a.Centre(28, 28)
	if p != (Placement{X: 2, Y: 2}) {
		t.Fatalf("Centre = %+v, want {2 2 false}", p)
	}
	got := make([]float32, 32*32)
	a.Render(got, s, 1, p, nil)
	img := s.Image(1)
	for y := range 32 {
		for x := range 32 {
			var want float32
			if y >= 2 && y < 30 && x >= 2 && x < 30 {
				want = float32(img[(y-2)*28+x-2]) // raw, unscaled
			}
			if got[y*32+x] != want {
				t.Fatalf("centre (%d, %d) = %v, want %v", y, x, got[y*32+x], want)
			}
		}
	}
	// With the mean: exactly pixel − mean, in float32.
	mean := MeanImage(s, 32)
	withMean := make([]float32, 32*32)
	a.Render(withMean, s, 1, p, mean)
	for k := range got {
		if withMean[k] != got[k]-mean[k] {
			t.Fatalf("[%d] = %v, want %v − %v", k, withMean[k], got[k], mean[k])
		}
	}
}

func TestRenderMatchesReference(t *testing.T) {
	r := rand.New(rand.NewPCG(1, 2))
	for _, c := range []struct {
		a          Augment
		c, h, w, n int
	}{
		{Augment{Size: 32, Pad: 2}, 1, 28, 28, 5},
		{Augment{Size: 32, Pad: 0}, 3, 28, 28, 1},
		{Augment{Size: 32, Pad: 3}, 2, 25, 30, 7}, // odd margins, non-square
		{Augment{Size: 32, Pad: 0}, 3, 40, 37, 9}, // larger than the canvas: crops
		{Augment{Size: 8, Pad: 1}, 1, 12, 5, 9},   // larger one way, smaller the other
		{Augment{Size: 28, Pad: 4}, 1, 28, 28, 9}, // canvas = image
	} {
		s := synthSet(4, c.c, c.h, c.w, 10, 7)
		size := c.a.Size
		mean := make([]float32, c.c*size*size)
		for k := range mean {
			mean[k] = 255 * r.Float32() // raw pixel units, like MeanImage's
		}
		ry, _ := c.a.axis(c.h, size)
		rx, _ := c.a.axis(c.w, size)
		got := make([]float32, len(mean))
		for y := 0; y <= ry; y++ {
			for x := 0; x <= rx; x++ {
				for _, flip := range []bool{false, true} {
					p := Placement{X: x, Y: y, Flip: flip}
					for _, m := range [][]float32{nil, mean} {
						c.a.Render(got, s, 2, p, m)
						checkClose(t, "render", got, renderRef(c.a, s, 2, p, m))
					}
				}
			}
		}
	}
}

func TestFlipMirrors(t *testing.T) {
	s := synthSet(2, 3, 28, 28, 10, 3)
	a := Augment{Size: 32, Pad: 2}
	plain, flipped := make([]float32, 3*32*32), make([]float32, 3*32*32)
	p := Placement{X: 1, Y: 3}
	a.Render(plain, s, 0, p, nil)
	p.Flip = true
	a.Render(flipped, s, 0, p, nil)
	for c := range 3 {
		for y := range 32 {
			for x := range 32 {
				if flipped[(c*32+y)*32+x] != plain[(c*32+y)*32+31-x] {
					t.Fatalf("flipped[%d][%d][%d] is not plain[..][..][%d]", c, y, x, 31-x)
				}
			}
		}
	}
}

func TestDrawCoversOffsets(t *testing.T) {
	a := Augment{Size: 32, Pad: 2, Crop: true, Flip: true}
	var seen [5][5]int
	flips := 0
	const n = 10000
	for i := range n {
		p := a.Draw(28, 28, 42, 3, i)
		if p.X < 0 || p.X > 4 || p.Y < 0 || p.Y > 4 {
			t.Fatalf("Draw(i=%d) = %+v, out of [0, 4]²", i, p)
		}
		seen[p.Y][p.X]++
		if p.Flip {
			flips++
		}
		if a.Draw(28, 28, 42, 3, i) != p {
			t.Fatalf("Draw(i=%d) is not a function of its arguments", i)
		}
	}
	for y := range seen {
		for x, k := range seen[y] {
			if k < n/25/2 || k > n/25*2 { // 400 expected
				t.Errorf("offset (%d, %d) drawn %d times in %d", x, y, k, n)
			}
		}
	}
	if flips < n/2-300 || flips > n/2+300 {
		t.Errorf("%d flips in %d draws", flips, n)
	}
	// Epochs and seeds give different draws.
	same := 0
	for i := range 100 {
		if a.Draw(28, 28, 42, 3, i) == a.Draw(28, 28, 42, 4, i) {
			same++
		}
	}
	if same > 20 { // 1/50 expected
		t.Errorf("%d of 100 draws equal across epochs", same)
	}
	// Without Crop and Flip: the centre.
	if p := (Augment{Size: 32, Pad: 2}).Draw(28, 28, 42, 3, 7); p != (Placement{X: 2, Y: 2}) {
		t.Errorf("evaluation Draw = %+v, want centre", p)
	}
}

// TestMeanImage checks MeanImage against the mean, computed directly in
// float64, of the raw (0..255) centre placements.
func TestMeanImage(t *testing.T) {
	for _, c := range []struct{ c, h, w, size int }{{1, 28, 28, 32}, {3, 9, 6, 8}} {
		s := synthSet(37, c.c, c.h, c.w, 10, 11)
		got := MeanImage(s, c.size)
		a := Augment{Size: c.size, Pad: 3}
		want := make([]float64, c.c*c.size*c.size)
		for i := range s.N {
			for k, v := range renderRef(a, s, i, a.Centre(s.H, s.W), nil) {
				want[k] += v / float64(s.N)
			}
		}
		checkClose(t, "mean", got, want)
	}
}

func TestMeanImageFashion(t *testing.T) {
	train, _ := fashion(t)
	m := MeanImage(train, 32)
	// Raw pixel units: 0.2..0.8 of the full scale, 255.
	if m[0] != 0 || m[16*32+16] < 0.2*255 || m[16*32+16] > 0.8*255 {
		t.Errorf("mean corner %v, centre %v", m[0], m[16*32+16])
	}
}

func epochBatches(t *testing.T, l *Loader, epoch int) []*Batch {
	t.Helper()
	var bs []*Batch
	for b, err := range l.Epoch(context.Background(), epoch) {
		if err != nil {
			t.Fatal(err)
		}
		bs = append(bs, b)
	}
	return bs
}

func TestLoaderDeterministicAcrossWorkers(t *testing.T) {
	s := synthSet(1000, 1, 28, 28, 10, 4)
	o := LoaderOptions{Batch: 64, Seed: 9, Shuffle: true, DropLast: true,
		Augment: Augment{Size: 32, Pad: 2, Crop: true, Flip: true}, Mean: MeanImage(s, 32)}
	o.Workers = 1
	l1, err := NewLoader(s, o)
	if err != nil {
		t.Fatal(err)
	}
	o.Workers, o.Prefetch = 3, 2
	l3, err := NewLoader(s, o)
	if err != nil {
		t.Fatal(err)
	}
	if l1.Batches() != 15 {
		t.Fatalf("Batches() = %d, want 15", l1.Batches())
	}
	for epoch := range 2 {
		b1, b3 := epochBatches(t, l1, epoch), epochBatches(t, l3, epoch)
		if len(b1) != 15 || len(b3) != 15 {
			t.Fatalf("epoch %d: %d and %d batches, want 15", epoch, len(b1), len(b3))
		}
		order := l1.Order(epoch)
		for k := range b1 {
			if b1[k].N != 64 || !slices.Equal(b1[k].Index, order[k*64:k*64+64]) {
				t.Fatalf("epoch %d batch %d: N %d, indices not the epoch order", epoch, k, b1[k].N)
			}
			if !slices.Equal(b1[k].Images, b3[k].Images) || !slices.Equal(b1[k].Labels, b3[k].Labels) || !slices.Equal(b1[k].Index, b3[k].Index) {
				t.Fatalf("epoch %d batch %d differs between 1 and 3 workers", epoch, k)
			}
			for j, i := range b1[k].Index {
				if b1[k].Labels[j] != float32(s.Labels[i]) {
					t.Fatalf("label of image %d", i)
				}
			}
		}
		// A batch is the images as Render draws them.
		a := o.Augment
		img := make([]float32, 32*32)
		i := b1[3].Index[5]
		a.Render(img, s, i, a.Draw(28, 28, 9, epoch, i), o.Mean)
		if !slices.Equal(img, b1[3].Images[5*1024:6*1024]) {
			t.Errorf("epoch %d: batch 3 image 5 is not Render(Draw(…))", epoch)
		}
	}
	if st := l3.Stats(); st.Images != 2*15*64 || st.Batches != 30 || st.Rate() <= 0 {
		t.Errorf("stats %+v", st)
	}
	t.Log(l3.Stats())

	// A resumed epoch delivers exactly the batches it had not reached.
	full := epochBatches(t, l3, 1)
	k := 0
	for b, err := range l3.EpochFrom(context.Background(), 1, 11) {
		if err != nil {
			t.Fatal(err)
		}
		if !slices.Equal(b.Images, full[11+k].Images) || !slices.Equal(b.Index, full[11+k].Index) {
			t.Fatalf("EpochFrom(1, 11): batch %d differs from Epoch's batch %d", k, 11+k)
		}
		k++
	}
	if k != 4 {
		t.Errorf("EpochFrom(1, 11) gave %d batches of 15, want 4", k)
	}
	for range l3.EpochFrom(context.Background(), 1, 15) {
		t.Error("EpochFrom past the end gave a batch")
	}
}

func TestLoaderOrder(t *testing.T) {
	s := synthSet(500, 1, 4, 4, 10, 4)
	l, _ := NewLoader(s, LoaderOptions{Batch: 10, Seed: 1, Shuffle: true})
	o0, o1 := l.Order(0), l.Order(1)
	for _, o := range [][]int{o0, o1} {
		if !isIota(slices.Sorted(slices.Values(o))) {
			t.Fatalf("order is not a permutation of [0, %d)", s.N)
		}
	}
	if slices.Equal(o0, o1) {
		t.Error("epochs 0 and 1 have the same order")
	}
	if isIota(o0) {
		t.Error("shuffled order is the identity")
	}
	if !slices.Equal(o0, l.Order(0)) {
		t.Error("Order(0) differs between calls")
	}
	l2, _ := NewLoader(s, LoaderOptions{Batch: 10, Seed: 2, Shuffle: true})
	if slices.Equal(o0, l2.Order(0)) {
		t.Error("seeds 1 and 2 give the same order")
	}
	ln, _ := NewLoader(s, LoaderOptions{Batch: 10})
	if !isIota(ln.Order(3)) {
		t.Error("unshuffled order is not 0, 1, …")
	}
}

func isIota(o []int) bool {
	for k, v := range o {
		if v != k {
			return false
		}
	}
	return true
}

func TestLoaderEvaluation(t *testing.T) {
	s := synthSet(70, 1, 28, 28, 10, 4)
	mean := MeanImage(s, 32)
	a := Augment{Size: 32, Pad: 2}
	l, err := NewLoader(s, LoaderOptions{Batch: 32, Augment: a, Mean: mean, Workers: 2})
	if err != nil {
		t.Fatal(err)
	}
	if l.Batches() != 3 {
		t.Fatalf("Batches() = %d, want 3", l.Batches())
	}
	bs := epochBatches(t, l, 5)
	if len(bs) != 3 || bs[2].N != 6 || len(bs[2].Images) != 6*1024 || len(bs[2].Labels) != 6 || len(bs[2].Index) != 6 {
		t.Fatalf("got %d batches, last N %d", len(bs), bs[len(bs)-1].N)
	}
	img := make([]float32, 1024)
	for k, b := range bs {
		for j, i := range b.Index {
			if i != k*32+j {
				t.Fatalf("batch %d image %d is set image %d, want in order", k, j, i)
			}
			a.Render(img, s, i, a.Centre(28, 28), mean)
			if !slices.Equal(img, b.Images[j*1024:(j+1)*1024]) {
				t.Fatalf("image %d is not the centre crop", i)
			}
		}
	}
	// Recycled batches come back clean.
	for _, b := range bs {
		l.Recycle(b)
	}
	again := epochBatches(t, l, 5)
	for k := range again {
		if !slices.Equal(again[k].Images, epochBatches(t, l, 5)[k].Images) {
			t.Fatalf("batch %d differs after recycling", k)
		}
	}
}

func TestNewLoaderErrors(t *testing.T) {
	s := synthSet(10, 1, 28, 28, 10, 4)
	for _, o := range []LoaderOptions{
		{Batch: 0},
		{Batch: 4, Augment: Augment{Size: 32}, Mean: make([]float32, 28*28)},
		{Batch: 4, Augment: Augment{Pad: -1}},
	} {
		if _, err := NewLoader(s, o); err == nil {
			t.Errorf("NewLoader(%+v) accepted", o)
		}
	}
}

func TestLoaderCancel(t *testing.T) {
	s := synthSet(2000, 1, 28, 28, 10, 4)
	l, err := NewLoader(s, LoaderOptions{Batch: 16, Workers: 3, Prefetch: 4, Augment: Augment{Size: 32, Pad: 2}})
	if err != nil {
		t.Fatal(err)
	}
	base := runtime.NumGoroutine()
	done := make(chan struct{})
	go func() {
		defer close(done)
		// Break out of the loop.
		n := 0
		for range l.Epoch(context.Background(), 0) {
			if n++; n == 3 {
				break
			}
		}
		// Cancel the context.
		ctx, cancel := context.WithCancel(context.Background())
		defer cancel()
		var gotErr error
		n = 0
		for b, err := range l.Epoch(ctx, 0) {
			if err != nil {
				gotErr = err
				break
			}
			_ = b
			if n++; n == 2 {
				cancel()
			}
		}
		if !errors.Is(gotErr, context.Canceled) {
			t.Errorf("after cancel: err = %v, want context.Canceled", gotErr)
		}
		// Already cancelled.
		for _, err := range l.Epoch(ctx, 1) {
			if !errors.Is(err, context.Canceled) {
				t.Errorf("cancelled epoch: err = %v", err)
			}
		}
	}()
	select {
	case <-done:
	case <-time.After(10 * time.Second):
		t.Fatal("loader did not stop")
	}
	for range 100 {
		if runtime.NumGoroutine() <= base {
			return
		}
		time.Sleep(10 * time.Millisecond)
	}
	t.Errorf("%d goroutines after the epochs stopped, %d before", runtime.NumGoroutine(), base)
}

func BenchmarkLoader(b *testing.B) {
	var s *Set
	if _, err := os.Stat(fashionDir); err == nil {
		s, _ = fashion(b)
	} else {
		s = synthSet(60000, 1, 28, 28, 10, 1)
	}
	for _, workers := range []int{1, runtime.GOMAXPROCS(0)} {
		b.Run(fmt.Sprintf("workers=%d", workers), func(b *testing.B) {
			l, err := NewLoader(s, LoaderOptions{Batch: 128, Seed: 1, Shuffle: true, DropLast: true, Workers: workers,
				Augment: Augment{Size: 32, Pad: 2, Crop: true, Flip: true}, Mean: MeanImage(s, 32)})
			if err != nil {
				b.Fatal(err)
			}
			b.ResetTimer()
			n, epoch := 0, 0
			for n < b.N {
				for bt, err := range l.Epoch(context.Background(), epoch) {
					if err != nil {
						b.Fatal(err)
					}
					l.Recycle(bt)
					if n++; n == b.N {
						break
					}
				}
				epoch++
			}
			b.ReportMetric(float64(b.N*128)/b.Elapsed().Seconds(), "images/s")
		})
	}
}
