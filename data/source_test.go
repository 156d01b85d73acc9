package data

import (
	"bytes"
	"errors"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

// srcTree writes files (slash-separated path → content) under dir.
func srcTree(t *testing.T, dir string, files map[string]string) {
	t.Helper()
	for p, b := range files {
		full := filepath.Join(dir, filepath.FromSlash(p))
		if err := os.MkdirAll(filepath.Dir(full), 0o755); err != nil {
			t.Fatal(err)
		}
		if strings.HasSuffix(p, "/") {
			continue
		}
		if err := os.WriteFile(full, []byte(b), 0o644); err != nil {
			t.Fatal(err)
		}
	}
}

func srcPaths(imgs []SourceImage) []string {
	var out []string
	for _, im := range imgs {
		out = append(out, fmt.Sprintf("%s:%d", im.Path, im.Label))
	}
	return out
}

func TestSourceFlatVal(t *testing.T) {
	dir := t.TempDir()
	srcTree(t, dir, map[string]string{
		"train/zebra/b.JPG":  "x",
		"train/zebra/a.png":  "x",
		"train/zebra/notes":  "ignored",
		"train/ant/1.jpeg":   "x",
		"train/ant/.hidden":  "ignored",
		"train/Mole/x.jpg":   "x",
		"train/Mole/sub/":    "",
		"train/README.txt":   "ignored: not a folder",
		"val/v2.jpg":         "x",
		"val/v1.PNG":         "x",
		"val/v 3.jpg":        "x",
		"val/labels.txt":     "# file label\nv1.PNG zebra\n\nv2.jpg 1\nv 3.jpg\tMole\n",
		"val.txt":            "ignored: val/labels.txt comes first",
		"train/.git/x.jpg":   "hidden folder",
		"train/ant/data.bin": "ignored",
	})
	s, err := OpenSource(dir)
	if err != nil {
		t.Fatal(err)
	}
	if want := []string{"Mole", "ant", "zebra"}; !slices.Equal(s.Classes, want) {
		t.Errorf("classes %q, want %q (sorted bytewise)", s.Classes, want)
	}
	if got, want := srcPaths(s.Train), []string{"train/Mole/x.jpg:0", "train/ant/1.jpeg:1", "train/zebra/a.png:2", "train/zebra/b.JPG:2"}; !slices.Equal(got, want) {
		t.Errorf("train %q, want %q", got, want)
	}
	if got, want := srcPaths(s.Val), []string{"val/v 3.jpg:0", "val/v1.PNG:2", "val/v2.jpg:1"}; !slices.Equal(got, want) {
		t.Errorf("val %q, want %q", got, want)
	}
	if s.Labels != "val/labels.txt" {
		t.Errorf("labels file %q", s.Labels)
	}
	if s.Train[0].Bytes != 1 || s.Train[0].ModTime == 0 {
		t.Errorf("train[0] size %d, mtime %d", s.Train[0].Bytes, s.Train[0].ModTime)
	}

	// val.txt beside val/, and no val at all.
	os.Remove(filepath.Join(dir, "val/labels.txt"))
	srcTree(t, dir, map[string]string{"val.txt": "v1.PNG 0\nv2.jpg 0\nv 3.jpg 0\n"})
	if s, err = OpenSource(dir); err != nil || s.Labels != "val.txt" || len(s.Val) != 3 || s.Val[0].Label != 0 {
		t.Errorf("with val.txt: %v, %+v", err, s)
	}
	os.RemoveAll(filepath.Join(dir, "val"))
	if s, err = OpenSource(dir); err != nil || len(s.Val) != 0 || len(s.Train) != 4 {
		t.Errorf("without val: %v, %+v", err, s)
	}
}

func TestSourceValFolders(t *testing.T) {
	dir := t.TempDir()
	srcTree(t, dir, map[string]string{
		"train/b/1.jpg": "x", "train/a/1.jpg": "x",
		"val/b/2.jpg": "x", "val/b/1.jpg": "x", "val/a/9.png": "x",
	})
	s, err := OpenSource(dir)
	if err != nil {
		t.Fatal(err)
	}
	if got, want := srcPaths(s.Val), []string{"val/a/9.png:0", "val/b/1.jpg:1", "val/b/2.jpg:1"}; !slices.Equal(got, want) {
		t.Errorf("val %q, want %q", got, want)
	}
}

func TestSourceErrors(t *testing.T) {
	base := map[string]string{"train/a/1.jpg": "x", "train/b/1.jpg": "x"}
	for _, c := range []struct {
		name  string
		files map[string]string
		path  string // the error names it
		want  string
		kind  error
	}{
		{"no train", map[string]string{"val/1.jpg": "x"}, "train", "no such file", ErrNotFound},
		{"no classes", map[string]string{"train/1.jpg": "x"}, "train", "no class folders, so no images", ErrFormat},
		{"empty class", map[string]string{"train/a/1.jpg": "x", "train/b/notes.txt": "x"}, "train/b", "class folder has no images (1 other files", ErrFormat},
		{"val without labels", map[string]string{"val/1.jpg": "x"}, "val", "1 images but no labels file", ErrFormat},
		{"unknown val class", map[string]string{"val/c/1.jpg": "x"}, "val/c", "names no training class", ErrFormat},
		{"empty val class", map[string]string{"val/a/x.txt": "x"}, "val/a", "class folder has no images", ErrFormat},
		{"bad label", map[string]string{"val/1.jpg": "x", "val/labels.txt": "1.jpg a\n1.jpg c\n"}, "val/labels.txt", "line 2: label \"c\"", ErrFormat},
		{"index out of range", map[string]string{"val/1.jpg": "x", "val/labels.txt": "1.jpg 2\n"}, "val/labels.txt", "line 1: label \"2\"", ErrFormat},
		{"label missing", map[string]string{"val/1.jpg": "x", "val/labels.txt": "\n1.jpg\n"}, "val/labels.txt", "line 2: \"1.jpg\" has no label", ErrFormat},
		{"twice", map[string]string{"val/1.jpg": "x", "val/labels.txt": "1.jpg a\n./1.jpg b\n"}, "val/labels.txt", "line 2: 1.jpg is listed twice", ErrFormat},
		{"missing file", map[string]string{"val/1.jpg": "x", "val/labels.txt": "1.jpg a\n2.jpg b\n"}, "val/labels.txt", "2.jpg: not found", ErrFormat},
		{"unlisted", map[string]string{"val/1.jpg": "x", "val/2.jpg": "x", "val/labels.txt": "1.jpg a\n"}, "val/labels.txt", "1 images in", ErrFormat},
		{"outside", map[string]string{"val/1.jpg": "x", "val/labels.txt": "../train/a/1.jpg a\n"}, "val/labels.txt", "outside SRC/val", ErrFormat},
	} {
		t.Run(c.name, func(t *testing.T) {
			dir := t.TempDir()
			files := c.files
			if !strings.HasPrefix(c.name, "no ") && c.name != "empty class" {
				files = map[string]string{}
				for k, v := range base {
					files[k] = v
				}
				for k, v := range c.files {
					files[k] = v
				}
			}
			srcTree(t, dir, files)
			_, err := OpenSource(dir)
			var fe *FileError
			if !errors.As(err, &fe) {
				t.Fatalf("error %v, want a *FileError", err)
			}
			msg := err.Error()
			if fe.Path != filepath.Join(dir, filepath.FromSlash(c.path)) || !strings.Contains(msg, c.want) || !errors.Is(err, c.kind) || strings.Contains(msg, "\n") {
				t.Errorf("error %q (path %s), want one line naming %s containing %q, wrapping %v", msg, fe.Path, c.path, c.want, c.kind)
			}
		})
	}
	if _, err := OpenSource(filepath.Join(t.TempDir(), "nope")); !errors.Is(err, ErrNotFound) {
		t.Errorf("missing source: %v", err)
	}
}

// cifarBatch returns n random CIFAR-10 records and their labels and pixels.
func cifarBatch(rng *rand.Rand, n, classes int) (b []byte, labels []int, pix []uint8) {
	for range n {
		l := rng.IntN(classes)
		labels = append(labels, l)
		b = append(b, uint8(l))
		for range cifarPixels {
			v := uint8(rng.IntN(256))
			b = append(b, v)
			pix = append(pix, v)
		}
	}
	return b, labels, pix
}

func TestCIFARLoad(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	root := t.TempDir()
	dir := filepath.Join(root, "cifar-10-batches-bin")
	os.Mkdir(dir, 0o755)
	var wantTrain, wantTest []int
	var wantTrainPix, wantTestPix []uint8
	for k := 1; k <= 5; k++ {
		b, l, p := cifarBatch(rng, k, 10) // batches of different sizes
		writeFile(t, filepath.Join(dir, fmt.Sprintf("data_batch_%d.bin", k)), b)
		wantTrain, wantTrainPix = append(wantTrain, l...), append(wantTrainPix, p...)
	}
	b, wantTest, wantTestPix := cifarBatch(rng, 4, 10)
	writeFile(t, filepath.Join(dir, "test_batch.bin"), b)

	for _, d := range []string{dir, root} { // the parent works too
		train, test, err := LoadCIFAR(d)
		if err != nil {
			t.Fatal(err)
		}
		for _, c := range []struct {
			s      *Set
			labels []int
			pix    []uint8
			name   string
		}{{train, wantTrain, wantTrainPix, "cifar-10/train"}, {test, wantTest, wantTestPix, "cifar-10/test"}} {
			if err := c.s.Validate(); err != nil {
				t.Error(err)
			}
			if c.s.N != len(c.labels) || c.s.C != 3 || c.s.H != 32 || c.s.W != 32 || c.s.Name != c.name {
				t.Errorf("%s: N, C, H, W = %d, %d, %d, %d, want %d, 3, 32, 32", c.s.Name, c.s.N, c.s.C, c.s.H, c.s.W, len(c.labels))
			}
			if !slices.Equal(c.s.Labels, c.labels) || !bytes.Equal(c.s.Pixels, c.pix) || !slices.Equal(c.s.Classes, CIFARClasses) {
				t.Errorf("%s: labels, pixels or classes differ", c.s.Name)
			}
		}
	}
	// Image 0's R plane is bytes 1..1024 of data_batch_1's first record.
	train, _, _ := LoadCIFAR(dir)
	if raw, _ := os.ReadFile(filepath.Join(dir, "data_batch_1.bin")); !bytes.Equal(train.Image(0)[:1024], raw[1:1025]) {
		t.Error("image 0's R plane is not the record's first plane")
	}

	writeFile(t, filepath.Join(dir, "batches.meta.txt"), []byte("a\nb\nc\n\n"))
	if _, _, err := LoadCIFAR(dir); err == nil || !strings.Contains(err.Error(), "out of range for 3 classes") {
		t.Errorf("labels beyond batches.meta.txt: %v", err)
	}
	names := strings.Join(CIFARClasses, "\n") + "\n"
	writeFile(t, filepath.Join(dir, "batches.meta.txt"), []byte(names))
	if train, _, err := LoadCIFAR(dir); err != nil || !slices.Equal(train.Classes, CIFARClasses) {
		t.Errorf("with batches.meta.txt: %v", err)
	}
}

func TestCIFARErrors(t *testing.T) {
	rng := rand.New(rand.NewPCG(3, 4))
	setup := func(t *testing.T) string {
		dir := t.TempDir()
		for _, f := range []string{"data_batch_1.bin", "data_batch_2.bin", "data_batch_3.bin", "data_batch_4.bin", "data_batch_5.bin", "test_batch.bin"} {
			b, _, _ := cifarBatch(rng, 2, 10)
			writeFile(t, filepath.Join(dir, f), b)
		}
		return dir
	}
	for _, c := range []struct {
		name, file string
		edit       func(b []byte) []byte // nil: remove the file
		want       string
		kind       error
	}{
		{"truncated", "data_batch_3.bin", func(b []byte) []byte { return b[:len(b)-1] }, "truncated: 6145 bytes is 1 whole records of 3073 bytes and 3072 bytes more", ErrFormat},
		{"extra", "test_batch.bin", func(b []byte) []byte { return append(b, 0) }, "truncated: 6147 bytes is 2 whole records", ErrFormat},
		{"empty", "data_batch_1.bin", func([]byte) []byte { return nil }, "empty file", ErrFormat},
		{"missing", "data_batch_5.bin", nil, "no such file", ErrNotFound},
		{"bad label", "data_batch_2.bin", func(b []byte) []byte { b[cifarRecord] = 10; return b }, "label 10 of record 1 is out of range for 10 classes", ErrFormat},
	} {
		t.Run(c.name, func(t *testing.T) {
			dir := setup(t)
			p := filepath.Join(dir, c.file)
			if c.edit == nil {
				os.Remove(p)
			} else {
				b, _ := os.ReadFile(p)
				writeFile(t, p, c.edit(b))
			}
			_, _, err := LoadCIFAR(dir)
			var fe *FileError
			if !errors.As(err, &fe) || fe.Path != p || !strings.Contains(err.Error(), c.want) || !errors.Is(err, c.kind) {
				t.Errorf("error %v, want a *FileError naming %s containing %q", err, p, c.want)
			}
		})
	}
	if _, _, err := LoadCIFAR(filepath.Join(t.TempDir(), "nope")); !errors.Is(err, ErrNotFound) {
		t.Errorf("missing folder: %v", err)
	}
}

func FuzzReadCIFAR(f *testing.F) {
	valid, _, _ := cifarBatch(rand.New(rand.NewPCG(5, 6)), 2, 10)
	f.Add(valid)
	for _, k := range []int{0, 1, cifarRecord - 1, cifarRecord, cifarRecord + 1, len(valid) - 1} {
		f.Add(valid[:k])
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		labels, pix, err := ReadCIFAR(bytes.NewReader(b), "fuzz")
		if err != nil {
			if labels != nil || pix != nil || !errors.Is(err, ErrFormat) {
				t.Errorf("error %v with %d labels, %d pixels", err, len(labels), len(pix))
			}
			return
		}
		if len(labels)*cifarRecord != len(b) || len(pix) != len(labels)*cifarPixels || len(labels) == 0 {
			t.Errorf("%d labels, %d pixels from %d bytes", len(labels), len(pix), len(b))
		}
		for i, l := range labels {
			if l != int(b[i*cifarRecord]) || !bytes.Equal(pix[i*cifarPixels:(i+1)*cifarPixels], b[i*cifarRecord+1:(i+1)*cifarRecord]) {
				t.Fatalf("record %d differs", i)
			}
		}
	})
}
