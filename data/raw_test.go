package data

import (
	"context"
	"math"
	"math/rand/v2"
	"testing"

	"github.com/alexnet-go/trainer/gpu"
	"github.com/alexnet-go/trainer/gpu/cpu"
)

// deviceRender renders a raw batch as a device does: Ops.Augment on a CPU
// device, then the output-position mean subtracted.
func deviceRender(t *testing.T, spec RawSpec, b *Batch) []float32 {
	t.Helper()
	d := cpu.New(cpu.Options{Threads: 2})
	s := gpu.AugmentShape{N: b.N, C: spec.C, Size: spec.Size, Crop: spec.Crop}
	if err := s.Validate(); err != nil {
		t.Fatal(err)
	}
	mean := spec.Mean
	if mean == nil {
		mean = make([]float32, spec.C*spec.Size*spec.Size)
	}
	if len(b.Raw) != spec.RawWords(b.N) || len(b.Params) != b.N*spec.ParamLen() || len(b.Images) != 0 {
		t.Fatalf("raw batch of %d images: %d words, %d params, %d image values; want %d, %d, 0",
			b.N, len(b.Raw), len(b.Params), len(b.Images), spec.RawWords(b.N), b.N*spec.ParamLen())
	}
	up := func(v []float32) gpu.Buffer {
		buf, err := d.Alloc(len(v))
		if err != nil {
			t.Fatal(err)
		}
		if err := d.Upload(buf, v); err != nil {
			t.Fatal(err)
		}
		return buf
	}
	dst, err := d.Alloc(s.DstLen())
	if err != nil {
		t.Fatal(err)
	}
	if err := d.Augment(dst, up(b.Raw), up(mean), up(b.Params), s); err != nil {
		t.Fatal(err)
	}
	out := make([]float32, s.DstLen())
	if err := d.Download(out, dst); err != nil {
		t.Fatal(err)
	}
	if m := spec.OutputMean; m != nil {
		for i := range out {
			out[i] -= m[i%len(m)]
		}
	}
	return out
}

// sameBits fails unless got and want are the same float32 bits.
func sameBits(t *testing.T, what string, got, want []float32) {
	t.Helper()
	if len(got) != len(want) {
		t.Fatalf("%s: %d values, want %d", what, len(got), len(want))
	}
	bad := 0
	for i := range got {
		if math.Float32bits(got[i]) != math.Float32bits(want[i]) {
			if bad++; bad <= 5 {
				t.Errorf("%s: value %d = %v, want %v", what, i, got[i], want[i])
			}
		}
	}
	if bad > 0 {
		t.Fatalf("%s: %d of %d values differ", what, bad, len(got))
	}
}

// checkRaw renders epochs 0 and 1 of l both ways and compares them bit for
// bit, with the labels and indices.
func checkRaw(t *testing.T, l RawBatcher, start int) {
	t.Helper()
	spec, ok := l.Raw()
	if !ok {
		t.Fatal("loader has no raw batches")
	}
	ctx := context.Background()
	for epoch := range 2 {
		var want []*Batch
		for b, err := range l.EpochFrom(ctx, epoch, start) {
			if err != nil {
				t.Fatal(err)
			}
			want = append(want, b)
		}
		k := 0
		for b, err := range l.RawEpochFrom(ctx, epoch, start) {
			if err != nil {
				t.Fatal(err)
			}
			if k >= len(want) {
				t.Fatalf("epoch %d: more raw batches than the %d rendered", epoch, len(want))
			}
			w := want[k]
			if b.N != w.N {
				t.Fatalf("epoch %d batch %d: %d raw images, want %d", epoch, k, b.N, w.N)
			}
			sameBits(t, "labels", b.Labels, w.Labels)
			for j := range b.N {
				if b.Index[j] != w.Index[j] {
					t.Fatalf("epoch %d batch %d: image %d is %d, want %d", epoch, k, j, b.Index[j], w.Index[j])
				}
			}
			sameBits(t, "device render", deviceRender(t, spec, b), w.Images)
			l.Recycle(b)
			k++
		}
		if k != len(want) {
			t.Fatalf("epoch %d: %d raw batches, want %d", epoch, k, len(want))
		}
	}
}

// The raw batches of an in-memory set, rendered on a device, are the
// loader's rendered batches bit for bit: padding, random windows,
// reflections and the mean at the output position.
func TestLoaderRawMatchesRender(t *testing.T) {
	for _, tc := range []struct {
		name       string
		c, h, w    int
		a          Augment
		mean, drop bool
	}{
		{"fashion 28 in 32 pad 2", 1, 28, 28, Augment{Size: 32, Pad: 2, Crop: true, Flip: true}, true, true},
		{"cifar 32 pad 4", 3, 32, 32, Augment{Pad: 4, Crop: true, Flip: true}, true, false},
		{"wide 20x26 in 24 pad 1", 2, 20, 26, Augment{Size: 24, Pad: 1, Crop: true, Flip: true}, true, false},
		{"eval centre", 1, 28, 28, Augment{Size: 32, Pad: 2}, true, false},
		{"no mean", 1, 28, 28, Augment{Size: 32, Pad: 2, Crop: true, Flip: true}, false, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s := synthSet(45, tc.c, tc.h, tc.w, 10, 7)
			var mean []float32
			if tc.mean {
				mean = MeanImage(s, tc.a.Size)
			}
			l, err := NewLoader(s, LoaderOptions{Batch: 8, Seed: 3, Shuffle: true, Augment: tc.a, Mean: mean, Workers: 3, DropLast: tc.drop})
			if err != nil {
				t.Fatal(err)
			}
			checkRaw(t, l, 0)
			checkRaw(t, l, 2) // a resumed epoch
		})
	}
}

// The raw batches of a prepared source, rendered on a device, are the
// crop loader's batches bit for bit, with PCA colour noise and the mean.
func TestCropLoaderRawMatchesRender(t *testing.T) {
	src := newMemSource(37, 3, 20, 5)
	mean := make([]float32, 3*20*20)
	r := rand.New(rand.NewPCG(1, 2))
	for i := range mean {
		mean[i] = 255 * r.Float32()
	}
	a := CropAugment{Crop: 17, Flip: true, Random: true, PCAStd: 0.1,
		EigVal: [3]float64{55, 5, 1}, EigVec: [3][3]float64{{0.58, 0.58, 0.58}, {-0.71, 0, 0.71}, {0.41, -0.82, 0.41}}}
	for _, o := range []CropLoaderOptions{
		{Batch: 6, Seed: 9, Shuffle: true, DropLast: true, Augment: a, Mean: mean, Workers: 3},
		{Batch: 6, Augment: CropAugment{Crop: 17}, Mean: mean, Workers: 2}, // evaluation: centre patches, partial last batch
		{Batch: 5, Seed: 9, Shuffle: true, Augment: a, Workers: 2},         // no mean
	} {
		l, err := NewCropLoader(src, o)
		if err != nil {
			t.Fatal(err)
		}
		checkRaw(t, l, 0)
		checkRaw(t, l, 1)
	}
	ten, err := NewCropLoader(src, CropLoaderOptions{Batch: 2, Augment: CropAugment{Crop: 17}, TenCrop: true})
	if err != nil {
		t.Fatal(err)
	}
	if _, ok := ten.Raw(); ok {
		t.Error("a ten-patch loader claims raw batches")
	}
	for _, err := range ten.RawEpochFrom(context.Background(), 0, 0) {
		if err == nil {
			t.Error("a ten-patch loader delivered a raw batch")
		}
	}
}

// A raw batch of an odd number of bytes packs them as gpu.PackBytes does,
// the last word's spare bytes zero, also when the batch is recycled.
func TestRawPacking(t *testing.T) {
	s := synthSet(5, 1, 3, 3, 10, 1) // 9 bytes an image, 5·9 = 45: a partial last word
	l, err := NewLoader(s, LoaderOptions{Batch: 5, Augment: Augment{Size: 3}, Workers: 1})
	if err != nil {
		t.Fatal(err)
	}
	for range 2 {
		for b, err := range l.RawEpochFrom(context.Background(), 0, 0) {
			if err != nil {
				t.Fatal(err)
			}
			sameBits(t, "packed", b.Raw, gpu.PackBytes(s.Pixels))
			for j := range b.Raw {
				b.Raw[j] = math.Float32frombits(0xffffffff) // dirty it for reuse
			}
			l.Recycle(b)
		}
	}
}
