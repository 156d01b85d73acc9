package open

import (
	"bytes"
	"compress/gzip"
	"context"
	"encoding/binary"
	"math"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/alexnet-go/trainer/data"
)

// writeIDXValues writes an IDX data set of 28×28 images to dir, image i of
// training a constant value first+i, of test testFirst+i: a rendered
// image's centre pixel plus the mean's names the image whatever its crop
// or reflection.
func writeIDXValues(t *testing.T, dir string, n, nTest int) {
	t.Helper()
	write := func(name string, magic uint32, dims []uint32, body []byte) {
		var b bytes.Buffer
		binary.Write(&b, binary.BigEndian, magic)
		binary.Write(&b, binary.BigEndian, dims)
		b.Write(body)
		var z bytes.Buffer
		w := gzip.NewWriter(&z)
		w.Write(b.Bytes())
		w.Close()
		if err := os.WriteFile(filepath.Join(dir, name), z.Bytes(), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	for _, s := range []struct {
		split    string
		n, first int
	}{{"train", n, 0}, {"t10k", nTest, n}} {
		pix := make([]byte, s.n*28*28)
		labels := make([]byte, s.n)
		for i := range s.n {
			for k := range 28 * 28 {
				pix[i*28*28+k] = byte(s.first + i)
			}
			labels[i] = byte(i % 10)
		}
		write(s.split+"-images-idx3-ubyte.gz", 0x803, []uint32{uint32(s.n), 28, 28}, pix)
		write(s.split+"-labels-idx1-ubyte.gz", 0x801, []uint32{uint32(s.n)}, labels)
	}
}

// seen returns the image values a loader yields over its epochs (one
// value per image, decoded from its centre pixel).
func seen(t *testing.T, l data.Batcher, mean []float32, epochs int) []int {
	t.Helper()
	var out []int
	for e := range epochs {
		for b, err := range l.EpochFrom(context.Background(), e+1, 0) {
			if err != nil {
				t.Fatal(err)
			}
			size := int(math.Sqrt(float64(len(b.Images) / len(b.Labels))))
			c := size/2*size + size/2
			for i := range b.N {
				out = append(out, int(math.Round(float64(b.Images[i*size*size+c]+mean[c]))))
			}
			l.Recycle(b)
		}
	}
	slices.Sort(out)
	return slices.Compact(out)
}

func span(lo, hi int) []int {
	var s []int
	for v := lo; v < hi; v++ {
		s = append(s, v)
	}
	return s
}

// The held-out split is the last N training images, never among those
// trained on, with or without --limit; the test set is scored apart, and
// the mean image is the trained images' alone.
func TestValSplitHeldOut(t *testing.T) {
	dir := t.TempDir()
	writeIDXValues(t, dir, 200, 30)
	for _, tc := range []struct {
		name         string
		split, limit int
		train, val   []int
		valSet, desc string
		test         bool
		wantMean     float64
	}{
		{"split 40", 40, 0, span(0, 160), span(160, 200), HeldOut, "160 training, 40 validation (held out", true, 79.5},
		{"split 40, limit 100", 40, 100, span(0, 100), span(160, 200), HeldOut, "100 training, 40 validation (held out", true, 49.5},
		{"split 40, limit over", 40, 190, span(0, 160), span(160, 200), HeldOut, "160 training", true, 79.5},
		{"auto: a tenth", 0, 0, span(0, 180), span(180, 200), HeldOut, "180 training, 20 validation (held out", true, 89.5},
		{"none: an old run", NoValSplit, 0, span(0, 200), span(200, 230), TestSet, "200 training, 30 validation (the test set)", false, 99.5},
	} {
		t.Run(tc.name, func(t *testing.T) {
			d, err := Data(DataOptions{Dir: dir, Net: "alexnet-small", Batch: 8, Seed: 3, ValSplit: tc.split, Limit: tc.limit, Workers: 1})
			if err != nil {
				t.Fatal(err)
			}
			defer d.Close()
			mean := d.Pre.Mean
			size := int(math.Sqrt(float64(len(mean))))
			c := size/2*size + size/2 // the centre pixel: every crop of the image covers it
			if math.Abs(float64(mean[c])-tc.wantMean) > 1e-3 {
				t.Errorf("mean image's centre %g, want %g: the mean of the images trained on only", mean[c], tc.wantMean)
			}
			// Two epochs: the shuffles differ, the images do not. With
			// DropLast an epoch may leave a few out, so the union of
			// epochs is checked to lie within, and nearly cover, the set.
			tr := seen(t, d.Train, mean, 3)
			for _, v := range tr {
				if !slices.Contains(tc.train, v) {
					t.Fatalf("trained on image %d, outside the training images %d..%d", v, tc.train[0], tc.train[len(tc.train)-1])
				}
			}
			if len(tr) < len(tc.train)-8 {
				t.Errorf("trained on %d distinct images, want about %d", len(tr), len(tc.train))
			}
			if v := seen(t, d.Val, mean, 1); !slices.Equal(v, tc.val) {
				t.Errorf("validated on %v, want %v", v, tc.val)
			}
			if d.ValSet != tc.valSet || d.ValN != len(tc.val) {
				t.Errorf("ValSet %q, ValN %d; want %q, %d", d.ValSet, d.ValN, tc.valSet, len(tc.val))
			}
			if (d.Test != nil) != tc.test {
				t.Fatalf("Test loader %v, want one: %v", d.Test != nil, tc.test)
			}
			if d.Test != nil {
				if v := seen(t, d.Test, mean, 1); !slices.Equal(v, span(200, 230)) {
					t.Errorf("tested on %v, want the test set 200..229", v)
				}
			}
			if !strings.Contains(d.Desc, tc.desc) {
				t.Errorf("Desc %q lacks %q", d.Desc, tc.desc)
			}
		})
	}
	// The split's size is checked against the data.
	for _, bad := range []int{200, 500, -2} {
		if _, err := Data(DataOptions{Dir: dir, Net: "alexnet-small", Batch: 8, ValSplit: bad}); err == nil || !strings.Contains(err.Error(), "--val-split") {
			t.Errorf("--val-split %d of 200 images: error %v, want one naming --val-split", bad, err)
		}
	}
}
