package data

import (
	"context"
	"slices"
	"testing"
)

// classSorted returns a memSource whose images are stored in class order,
// as a prepared set's are: class k holds sizes[k] images.
func classSorted(sizes []int) *memSource {
	n := 0
	for _, k := range sizes {
		n += k
	}
	s := newMemSource(n, 3, 4, 7)
	i := 0
	for k, m := range sizes {
		for range m {
			s.labels[i] = k
			i++
		}
	}
	return s
}

// counts returns how many images of each of k classes src holds.
func counts(src CropSource, k int) []int {
	c := make([]int, k)
	for i := range src.N() {
		c[src.Label(i)]++
	}
	return c
}

// --limit 64 of a class-sorted set takes images of every class, each in
// proportion to its size; the first 64 (what --limit took before) are of
// one class or two.
func TestSpreadCoversClasses(t *testing.T) {
	for _, sizes := range [][]int{
		slices.Repeat([]int{100}, 10),
		{60, 140, 75, 125, 100, 90, 110, 130, 70, 100},
	} {
		src := classSorted(sizes)
		if c := counts(firstN{src, 64}, len(sizes)); slices.Index(c, 0) > 2 {
			t.Fatalf("the test's premise: the first 64 images cover more than two classes: %v", c)
		}
		got := Spread(src, 64)
		if got.N() != 64 || got.C() != 3 || got.Size() != 4 {
			t.Fatalf("Spread(%d images, 64): N %d, C %d, Size %d", src.N(), got.N(), got.C(), got.Size())
		}
		c := counts(got, len(sizes))
		for k, m := range c {
			// Each class's share of 64, to within one image.
			share := float64(64*sizes[k]) / float64(src.N())
			if m == 0 || float64(m) < share-1 || float64(m) > share+1 {
				t.Errorf("sizes %v: class %d has %d of the 64 images, want %.1f±1 (all: %v)", sizes, k, m, share, c)
			}
		}
		// Image i is source image ⌊(2i+1)·N/128⌋, pixels and label.
		dst := make([]uint8, 3*4*4)
		for i := range 64 {
			j := (2*i + 1) * src.N() / 128
			if err := got.Read(i, dst); err != nil || !slices.Equal(dst, src.image(j)) || got.Label(i) != src.labels[j] {
				t.Fatalf("image %d: not source image %d (%v)", i, j, err)
			}
		}
	}
}

// firstN is the old --limit: the first n images.
type firstN struct {
	CropSource
	n int
}

func (f firstN) N() int { return f.n }

// The same n gives the same images; n of 0, N or more is the source itself.
func TestSpreadDeterministic(t *testing.T) {
	src := classSorted([]int{30, 40, 50})
	a, b := Spread(src, 17), Spread(src, 17)
	sp := spread{src, 17}
	dst := make([]uint8, 3*4*4)
	for i := range 17 {
		if a.Label(i) != b.Label(i) {
			t.Fatalf("image %d: label %d, then %d", i, a.Label(i), b.Label(i))
		}
		// Strictly increasing: no image twice.
		if i > 0 && sp.index(i) <= sp.index(i-1) {
			t.Fatalf("indices not increasing at %d", i)
		}
	}
	if err := a.Read(16, dst); err != nil {
		t.Fatal(err)
	}
	for _, n := range []int{0, -1, 120, 121} {
		if got := Spread(src, n); got != CropSource(src) {
			t.Errorf("Spread(120 images, %d) = %T, want the source itself", n, got)
		}
	}
	if got := Spread(src, 119); got.N() != 119 {
		t.Errorf("Spread(120 images, 119).N() = %d", got.N())
	}
}

// Over a prepared set's shards, whose images are in class order.
func TestSpreadPrepared(t *testing.T) {
	src := makePrepSource(t)
	out := t.TempDir()
	if _, err := Prepare(context.Background(), prepTestOptions(src.dir, out)); err != nil {
		t.Fatal(err)
	}
	p, err := OpenPrepared(out)
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close()
	if c := counts(firstN{p.Train, 3}, len(p.Classes)); c[0] != 3 {
		t.Fatalf("the test's premise: the first 3 training images are not all of class 0: %v", c)
	}
	if c := counts(Spread(p.Train, 3), len(p.Classes)); !slices.Equal(c, []int{1, 1, 1}) {
		t.Errorf("Spread(%d training images, 3) per class: %v, want one of each", p.Train.N(), c)
	}
}
