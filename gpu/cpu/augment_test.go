package cpu

import (
	"slices"
	"strings"
	"testing"

	"github.com/alexnet-go/trainer/gpu"
)

// TestAugmentThreadsAndParams checks that Augment gives the same bits on
// any number of threads, and panics on patch parameters outside the image
// (the conformance suite checks the values against the formula).
func TestAugmentThreadsAndParams(t *testing.T) {
	s := gpu.AugmentShape{N: 5, C: 3, Size: 11, Crop: 8}
	src := make([]uint8, s.N*s.C*s.Size*s.Size)
	for i := range src {
		src[i] = uint8(i * 29)
	}
	mean := make([]float32, s.MeanLen())
	for i := range mean {
		mean[i] = float32(i%97) * 1.25
	}
	params := []float32{
		0, 0, 0, 1, 2, 3,
		3, 3, 1, -1, -2, -3,
		1, 2, 1, 0.5, 0, 0,
		2, 1, 0, 0, 0, 0.25,
		3, 0, 1, 7, 8, 9,
	}
	var first []float32
	for _, d := range []*Device{testDevice(1, loadedBLAS()), testDevice(3, loadedBLAS())} {
		dst := alloc(t, d, s.DstLen())
		if err := d.Augment(dst, upload(t, d, gpu.PackBytes(src)), upload(t, d, mean), upload(t, d, params), s); err != nil {
			t.Fatal(err)
		}
		if first == nil {
			first = slices.Clone(data(dst))
		} else if !slices.Equal(first, data(dst)) {
			t.Errorf("%d threads give other values than 1", d.threads)
		}
	}

	d := testDevice(1, loadedBLAS())
	for _, bad := range [][3]float32{{4, 0, 0}, {0, -1, 0}, {1.5, 0, 0}, {0, 0, 0.5}} {
		p := slices.Clone(params)
		copy(p[12:15], bad[:])
		func() {
			defer func() {
				if r := recover(); r == nil || !strings.Contains(r.(string), "image 2") {
					t.Errorf("X, Y, Flip = %v: recovered %v, want a panic naming image 2", bad, r)
				}
			}()
			d.Augment(alloc(t, d, s.DstLen()), upload(t, d, gpu.PackBytes(src)), upload(t, d, mean), upload(t, d, p), s)
		}()
	}
}
