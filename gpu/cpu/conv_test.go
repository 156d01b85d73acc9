package cpu

import (
	"fmt"
	"github.com/alexnet-go/trainer/gpu"
	"math"
	"math/rand/v2"
	"slices"
	"testing"
)

// TestSplitPhases checks splitPhases (assembly for stride 4) against
// splitPhasesGo on every width around the assembly's 32-column chunks.
func TestSplitPhases(t *testing.T) {
	r := rand.New(rand.NewPCG(5, 6))
	for _, st := range []int{2, 3, 4} {
		for _, w := range []int{1, 5, 31, 32, 33, 63, 64, 65, 100, 227} {
			const h = 5
			l := (w + st - 1) / st
			plane := randSlice(r, h*w)
			got, want := make([]float32, h*st*l), make([]float32, h*st*l)
			splitPhases(got, plane, w, st, l)
			splitPhasesGo(want, plane, w, st, l, 0)
			if !slices.Equal(got, want) {
				t.Errorf("stride %d width %d: splitPhases differs from splitPhasesGo", st, w)
			}
		}
	}
}

// TestCopyRows checks copyRows (assembly for rows of 8 values and more)
// against copyRowsGo, and that it writes nothing outside the rows.
func TestCopyRows(t *testing.T) {
	r := rand.New(rand.NewPCG(7, 8))
	for _, width := range []int{1, 7, 8, 9, 15, 16, 17, 55, 64} {
		for _, rows := range []int{1, 3} {
			ldd, lds := width+3, 2*width+1
			src := randSlice(r, (rows-1)*lds+width)
			got, want := make([]float32, rows*ldd), make([]float32, rows*ldd)
			copyRows(got, ldd, src, lds, rows, width)
			copyRowsGo(want, ldd, src, lds, rows, width)
			if !slices.Equal(got, want) {
				t.Errorf("width %d rows %d: copyRows differs from copyRowsGo", width, rows)
			}
		}
	}
}

// bandShapes are convolutions whose column matrix, one image's, is over
// the test devices' budget and wide enough to be cut into bands of output
// rows (see convBlock): strided with and without padding (the phase path,
// stride 4 through the assembly), stride 1 with Q = W and with Q < W, few
// and many filters (ConvBackwardFilter's two orientations).
var bandShapes = []gpu.ConvShape{
	{N: 2, C: 3, H: 67, W: 67, K: 5, R: 5, S: 5, Stride: 2, Pad: 1},
	{N: 2, C: 3, H: 139, W: 139, K: 4, R: 11, S: 11, Stride: 4, Pad: 0},
	{N: 2, C: 3, H: 135, W: 135, K: 4, R: 11, S: 11, Stride: 4, Pad: 2},
	{N: 2, C: 8, H: 40, W: 40, K: 6, R: 3, S: 3, Stride: 1, Pad: 1},
	{N: 3, C: 8, H: 42, W: 42, K: 5, R: 3, S: 3, Stride: 1, Pad: 0},
	{N: 2, C: 8, H: 40, W: 40, K: 70, R: 3, S: 3, Stride: 1, Pad: 1},
}

// TestConvBands checks the convolutions computed band by band against
// float64, and that every thread count gives the same bits.
func TestConvBands(t *testing.T) {
	// The bands are im2col's: the lane convolution, where there is one,
	// would take these shapes instead.
	defer func(l bool) { fastLane = l }(fastLane)
	fastLane = false
	r := rand.New(rand.NewPCG(9, 10))
	for _, s := range bandShapes {
		x, w, dy := randSlice(r, s.XLen()), randSlice(r, s.WLen()), randSlice(r, s.YLen())
		wantY, wantDX, wantDW := refConv(x, w, dy, s)
		name := fmt.Sprintf("%+v", s)
		var first [][]float32
		for i, d := range testDevices() {
			if nb, rows := d.convBlock(s); nb != 1 || rows >= s.P() {
				t.Fatalf("%s: blocks of %d images and %d rows of %d, want bands of one image", name, nb, rows, s.P())
			}
			xb, wb, dyb := upload(t, d, x), upload(t, d, w), upload(t, d, dy)
			y, dx, dw := alloc(t, d, s.YLen()), alloc(t, d, s.XLen()), alloc(t, d, s.WLen())
			must(t, d.Conv(y, xb, wb, s))
			must(t, d.ConvBackwardData(dx, dyb, wb, s))
			must(t, d.ConvBackwardFilter(dw, dyb, xb, s))
			dev := fmt.Sprintf("%s/threads=%d", d.blas.desc[:6], d.threads)
			closeTo(t, dev+" "+name+" y", data(y), wantY, 1e-4, 1e-4)
			closeTo(t, dev+" "+name+" dx", data(dx), wantDX, 1e-4, 1e-4)
			closeTo(t, dev+" "+name+" dw", data(dw), wantDW, 1e-4, 1e-4)
			got := [][]float32{data(y), data(dx), data(dw)}
			if i%3 == 0 { // threads=1 of each BLAS
				first = got
				continue
			}
			for j, what := range []string{"y", "dx", "dw"} {
				if !slices.Equal(got[j], first[j]) {
					t.Errorf("%s %s: %s differs bitwise from threads=1", dev, name, what)
				}
			}
		}
	}
}

// TestMaskRows checks maskRows (assembly for rows of 8 values and more)
// against maskRowsGo on masks of padding, NaNs and infinities included:
// a masked value is +0 whatever it was.
func TestMaskRows(t *testing.T) {
	r := rand.New(rand.NewPCG(11, 12))
	for _, w := range []int{1, 7, 8, 9, 49, 225} {
		const n = 3
		lds := w + 5
		src := randSlice(r, (n-1)*lds+w)
		src[0], src[len(src)-1] = float32(math.NaN()), float32(math.Inf(-1))
		mask := make([]float32, w)
		tapMask(mask, min(w, 7), 1, w-1, 1, min(w, 7)-1)
		got, want := make([]float32, n*w), make([]float32, n*w)
		maskRows(got, src, mask, lds, n)
		maskRowsGo(want, src, mask, lds, n)
		for i := range got {
			if math.Float32bits(got[i]) != math.Float32bits(want[i]) {
				t.Fatalf("width %d: value %d is %v, want %v", w, i, got[i], want[i])
			}
		}
	}
}

// TestMaskAddRows checks maskAddRows (assembly) against maskAddRowsGo on
// every tail length, and that it writes nothing between the rows.
func TestMaskAddRows(t *testing.T) {
	r := rand.New(rand.NewPCG(13, 14))
	for _, w := range []int{1, 7, 8, 9, 15, 16, 17, 43} {
		const n = 3
		ldd, lds := w+3, w+5
		src := randSlice(r, (n-1)*lds+w)
		src[0] = float32(math.NaN())
		// All ones past the mask's end: a write past a row's end adds
		// a value there.
		buf := make([]float32, w+8)
		tapMask(buf, 1, 0, len(buf), 0, 1)
		mask := buf[:w]
		tapMask(mask, min(w, 7), 1, w, 1, min(w, 7)-1)
		got := randSlice(r, n*ldd)
		want := slices.Clone(got)
		maskAddRows(got, src, mask, ldd, lds, n)
		maskAddRowsGo(want, src, mask, ldd, lds, n)
		for i := range got {
			if math.Float32bits(got[i]) != math.Float32bits(want[i]) {
				t.Fatalf("width %d: value %d is %v, want %v", w, i, got[i], want[i])
			}
		}
	}
}

// TestConvRows8 checks the direct convolution's AVX-512 block against
// convRows8Go, bit for bit.
func TestConvRows8(t *testing.T) {
	if !fastDirect {
		t.Skip("no AVX-512 with FMA on this processor (or not amd64): directConv is not used")
	}
	r := rand.New(rand.NewPCG(15, 16))
	for _, c := range []struct{ c, r, s, wp, hp int }{{1, 5, 5, 36, 7}, {3, 3, 2, 40, 4}, {2, 1, 1, 33, 1}} {
		const ldy = 45
		x, w := randSlice(r, c.c*c.hp*c.wp), randSlice(r, c.c*c.r*c.s*8)
		got, want := randSlice(r, 8*ldy), make([]float32, 8*ldy)
		copy(want, got)
		convRows8(got, x[1:], w, ldy, c.c, c.r, c.s, c.wp, c.hp*c.wp)
		convRows8Go(want, x[1:], w, ldy, c.c, c.r, c.s, c.wp, c.hp*c.wp)
		if !slices.Equal(got, want) {
			t.Errorf("%+v: convRows8 differs from convRows8Go", c)
		}
	}
}

// directShapes are convolutions Conv computes directly (see
// directConvOK): alexnet-small's conv1 on three images, and shallow
// ones with two and three channels, one and two runs of 32 a row.
var directShapes = []gpu.ConvShape{
	{N: 3, C: 1, H: 32, W: 32, K: 16, R: 5, S: 5, Stride: 1, Pad: 2},
	{N: 2, C: 2, H: 6, W: 34, K: 8, R: 3, S: 3, Stride: 1, Pad: 0},
	{N: 2, C: 3, H: 5, W: 64, K: 16, R: 3, S: 3, Stride: 1, Pad: 1},
}

// TestDirectConv checks the directly computed convolutions against
// float64, and that every thread count gives the same bits.
func TestDirectConv(t *testing.T) {
	if !fastDirect {
		t.Skip("no AVX-512 with FMA on this processor (or not amd64): directConv is not used")
	}
	r := rand.New(rand.NewPCG(17, 18))
	for _, s := range directShapes {
		if !directConvOK(s) {
			t.Fatalf("%+v: not computed directly", s)
		}
		x, w := randSlice(r, s.XLen()), randSlice(r, s.WLen())
		want, _, _ := refConv(x, w, make([]float32, s.YLen()), s)
		name := fmt.Sprintf("%+v", s)
		var first []float32
		for i, d := range testDevices() {
			y := alloc(t, d, s.YLen())
			must(t, d.Conv(y, upload(t, d, x), upload(t, d, w), s))
			dev := fmt.Sprintf("%s/threads=%d", d.blas.desc[:6], d.threads)
			closeTo(t, dev+" "+name+" y", data(y), want, 1e-5, 1e-4)
			if i == 0 {
				first = slices.Clone(data(y))
			} else if !slices.Equal(data(y), first) {
				t.Errorf("%s %s: y differs bitwise from the first device's", dev, name)
			}
		}
	}
}
