package cuda

import (
	"fmt"
	"strings"
	"testing"

	"github.com/alexnet-go/trainer/gpu"
	"github.com/alexnet-go/trainer/kernels"
)

// poolBand's sizes are pool.cu's shared arrays: a band it picks must fit
// them, counting the windows of the band above that reach into it, as
// the kernel's loop computes them.
func TestPoolBandFitsSharedMemory(t *testing.T) {
	var code string
	for _, s := range kernels.Sources() {
		if s.Name == "pool.cu" {
			code = s.Code
		}
	}
	for _, def := range []string{fmt.Sprintf("#define POOL_TILE %d\n", poolTile), fmt.Sprintf("#define POOL_WINDOWS %d\n", poolWindows)} {
		if !strings.Contains(code, def) {
			t.Errorf("kernels/pool.cu lacks %q: ops.go's sizes differ from the kernel's", strings.TrimSpace(def))
		}
	}
	for _, tc := range []struct {
		s    gpu.PoolShape
		want int
	}{
		{gpu.PoolShape{N: 128, C: 48, H: 55, W: 55, Size: 3, Stride: 2}, 27}, // conv1: the whole plane
		{gpu.PoolShape{N: 128, C: 128, H: 27, W: 27, Size: 3, Stride: 2}, 13},
		{gpu.PoolShape{N: 1, C: 2, H: 40, W: 200, Size: 3, Stride: 2}, 8}, // 19 rows of x: 3,800 floats
		{gpu.PoolShape{N: 1, C: 1, H: 40, W: 40, Size: 3, Stride: 1}, 24},
		{gpu.PoolShape{N: 1, C: 2, H: 5, W: 1400, Size: 3, Stride: 2}, 0},
	} {
		if got := poolBand(tc.s); got != tc.want {
			t.Errorf("poolBand(%+v) = %d, want %d", tc.s, got, tc.want)
		}
	}
	for h := 3; h <= 300; h += 7 {
		for w := 3; w <= 1500; w += 13 {
			for _, k := range [][2]int{{3, 2}, {2, 2}, {3, 1}, {5, 3}, {1, 2}, {2, 3}} {
				s := gpu.PoolShape{N: 1, C: 1, H: h, W: w, Size: k[0], Stride: k[1]}
				if s.Validate() != nil {
					continue
				}
				band := poolBand(s)
				if band == 0 {
					continue
				}
				p, q := s.P(), s.Q()
				bands := (p + band - 1) / band
				for b := range bands {
					// pool.cu's maxpool_backward, band b.
					h0, h1 := b*band*s.Stride, (b+1)*band*s.Stride
					if b == bands-1 {
						h1 = s.H
					}
					ia := 0
					if h0-s.Size+1 > 0 {
						ia = (h0 - s.Size + s.Stride) / s.Stride
					}
					ib := min((h1-1)/s.Stride, p-1)
					rows := ib*s.Stride + s.Size - ia*s.Stride
					if rows*s.W > poolTile || (ib-ia+1)*q > poolWindows || ia*s.Stride > h0 {
						t.Fatalf("%+v: band %d of %d rows holds %d×%d of x and %d windows", s, b, band, rows, s.W, (ib-ia+1)*q)
					}
				}
			}
		}
	}
}

// lrnSpan on an H200 (132 multiprocessors): conv1's 387,200 pixels at
// batch 128 fill it, one run of all 48 channels; conv2's 93,312 do not,
// so three runs of 43, 43 and 42; never runs under lrnMinSpan.
func TestLRNSpan(t *testing.T) {
	d := &Device{gc: &gpuContext{info: Info{SMs: 132}}}
	for _, tc := range []struct {
		s    gpu.LRNShape
		want int
	}{
		{gpu.LRNShape{N: 128, C: 48, H: 55, W: 55, Size: 5}, 48},
		{gpu.LRNShape{N: 128, C: 128, H: 27, W: 27, Size: 5}, 43},
		{gpu.LRNShape{N: 1, C: 40, H: 2, W: 2, Size: 5}, 20},
		{gpu.LRNShape{N: 1, C: 15, H: 1, W: 1, Size: 5}, 15},
	} {
		if got := d.lrnSpan(tc.s); got != tc.want {
			t.Errorf("lrnSpan(%+v) = %d, want %d", tc.s, got, tc.want)
		}
	}
}
