package cpu

import (
	"fmt"
	"math"
	"math/rand/v2"
	"slices"
	"strings"
	"testing"

	"github.com/alexnet-go/trainer/gpu"
)

// TestFMA32 checks fma32 on ordinary values and on one whose float64
// sum, rounded again to float32, would differ from the single rounding:
// −2⁻²⁴·(1+2⁻²³)·(1−2⁻²³) + (1+2⁻²³) = 1 + 2⁻²⁴ + 2⁻⁷⁰, just past the
// float32 tie between 1 and 1+2⁻²³, so it rounds up; its float64 sum is
// the tie itself, which rounds to even, 1.
func TestFMA32(t *testing.T) {
	inf := float32(math.Inf(1))
	cases := []struct{ a, b, c, want float32 }{
		{2, 3, 1, 7},
		{1, 1, 0, 1},
		{-0.5, 2, 1, 0},
		{inf, 1, 1, inf},
		{-0x1p-24 * (1 + 0x1p-23), 1 - 0x1p-23, 1 + 0x1p-23, 1 + 0x1p-23},
	}
	for _, c := range cases {
		if got := fma32(c.a, c.b, c.c); got != c.want {
			t.Errorf("fma32(%g, %g, %g) = %.10g, want %.10g", c.a, c.b, c.c, got, c.want)
		}
	}
	if c := cases[len(cases)-1]; float32(float64(c.a)*float64(c.b)+float64(c.c)) == c.want {
		t.Error("the last case does not tell single rounding from double")
	}
}

// TestLaneConv8x3 checks laneConv8x3's assembly against laneConv8x3Go,
// bit for bit, positions in any order and a row stride past the taps.
func TestLaneConv8x3(t *testing.T) {
	if !fastLane {
		t.Skip("no AVX-512 and FMA here: laneConv8x3 is laneConv8x3Go")
	}
	r := rand.New(rand.NewPCG(3, 4))
	for _, sh := range []struct{ c, r, s, k int }{{1, 1, 1, 8}, {2, 3, 3, 8}, {3, 5, 5, 24}, {16, 5, 5, 32}} {
		ldrow := (sh.s + 7) * lanes
		ldplane := (sh.r + 5) * ldrow
		x := randSlice(r, sh.c*ldplane+64)
		w := randSlice(r, sh.c*sh.r*sh.s*sh.k+8)
		ldy := 5 * lanes
		xo := [3]int{0, 2 * lanes, ldrow + lanes}
		yo := [3]int{3 * lanes, 0, 4 * lanes}
		start := randSlice(r, 8*ldy)
		for _, at := range []int{0, 8} {
			for _, add := range []bool{false, true} {
				got, want := slices.Clone(start), slices.Clone(start)
				laneConv8x3(got, yo, x, xo, w[at:], ldy, sh.k, sh.c, sh.r, sh.s, ldrow, ldplane, add)
				laneConv8x3Go(want, yo, x, xo, w[at:], ldy, sh.k, sh.c, sh.r, sh.s, ldrow, ldplane, add)
				if !slices.Equal(got, want) {
					t.Errorf("%+v at %d, add %v: assembly differs from laneConv8x3Go", sh, at, add)
				}
			}
		}
	}
}

// TestLaneFilter8x3 checks laneFilter8x3's assembly against
// laneFilter8x3Go, bit for bit, adding to sums already there.
func TestLaneFilter8x3(t *testing.T) {
	if !fastLane {
		t.Skip("no AVX-512 and FMA here: laneFilter8x3 is laneFilter8x3Go")
	}
	r := rand.New(rand.NewPCG(7, 8))
	for _, sh := range []struct{ rows, q, step int }{{1, 1, lanes}, {2, 7, lanes}, {3, 15, lanes}, {2, 5, 4 * lanes}} {
		ldrow := (sh.q*sh.step/lanes + 4) * lanes
		x := randSlice(r, (sh.rows+3)*ldrow)
		lddy := sh.rows*sh.q*lanes + 32
		dy := randSlice(r, 8*lddy)
		xo := [3]int{ldrow + 2*lanes, 0, lanes}
		start := randSlice(r, 24*lanes)
		for _, add := range []bool{false, true} {
			got, want := slices.Clone(start), slices.Clone(start)
			laneFilter8x3(got, x, xo, dy, lddy, sh.rows, sh.q, ldrow, sh.step, add)
			laneFilter8x3Go(want, x, xo, dy, lddy, sh.rows, sh.q, ldrow, sh.step, add)
			if !slices.Equal(got, want) {
				t.Errorf("%+v, add %v: assembly differs from laneFilter8x3Go", sh, add)
			}
		}
	}
}

// TestLaneLayout checks toLanes and fromLanes with their assembly
// (sixteen images) against their Go loops, for rows of 1 to 33 values, a
// padding, a batch's last images and tails of positions.
func TestLaneLayout(t *testing.T) {
	if !fastLane {
		t.Skip("no AVX-512 here: the layouts are their Go loops")
	}
	r := rand.New(rand.NewPCG(9, 10))
	const guard = 64 // values past the end, which must stay as they are
	for _, sh := range []struct{ c, h, w, pad, n int }{{1, 1, 1, 0, 16}, {3, 2, 15, 2, 16}, {2, 3, 16, 1, 32}, {2, 2, 17, 0, 16}, {1, 4, 33, 1, 21}, {2, 5, 7, 1, 16}, {1, 2, 15, 0, 16}} {
		x := randSlice(r, sh.n*sh.c*sh.h*sh.w)
		hp, wp := sh.h+2*sh.pad, sh.w+2*sh.pad
		for n0 := 0; n0 < sh.n; n0 += lanes {
			size := sh.c * hp * wp * lanes
			got, want := randSlice(r, size+guard), make([]float32, size+guard)
			copy(want[size:], got[size:])
			toLanes(got[:size], x, sh.c, sh.h, sh.w, sh.pad, n0, sh.n)
			func() {
				defer func(v bool) { fastLane = v }(fastLane)
				fastLane = false
				toLanes(want[:size], x, sh.c, sh.h, sh.w, sh.pad, n0, sh.n)
			}()
			if !slices.Equal(got, want) {
				t.Errorf("%+v n0=%d: toLanes differs from its Go loops", sh, n0)
			}
			// Back: (K, PQ) = (c, h·w) positions of the laid-out values.
			yl := randSlice(r, sh.c*sh.h*sh.w*lanes)
			gotY, wantY := make([]float32, len(x)+guard), make([]float32, len(x)+guard)
			fromLanes(gotY[:len(x)], yl, sh.c, sh.h*sh.w, n0, sh.n)
			func() {
				defer func(v bool) { fastLane = v }(fastLane)
				fastLane = false
				fromLanes(wantY[:len(x)], yl, sh.c, sh.h*sh.w, n0, sh.n)
			}()
			if !slices.Equal(gotY, wantY) {
				t.Errorf("%+v n0=%d: fromLanes differs from its Go loops", sh, n0)
			}
		}
	}
}

// laneShapes are shapes the lane convolution takes: alexnet-small's
// conv2 and conv3, batches that are not multiples of lanes (a last block
// of 1 to 15 images), a padding of 0, strides of 2 and 4 (alexnet's conv1, smaller), and rows so long
// that a block's channels come in chunks.
var laneShapes = []gpu.ConvShape{
	{N: 17, C: 3, H: 31, W: 31, K: 8, R: 11, S: 11, Stride: 4, Pad: 0},
	{N: 15, C: 8, H: 4, W: 1022, K: 8, R: 3, S: 3, Stride: 1, Pad: 1}, // four rows of 1024 a channel, 262 KB: chunks of 4 channels
	{N: 16, C: 4, H: 9, W: 10, K: 16, R: 5, S: 5, Stride: 2, Pad: 1},
	{N: 30, C: 16, H: 15, W: 15, K: 32, R: 5, S: 5, Stride: 1, Pad: 2},
	{N: 9, C: 64, H: 7, W: 7, K: 48, R: 3, S: 3, Stride: 1, Pad: 1},
	{N: 15, C: 8, H: 6, W: 9, K: 16, R: 3, S: 3, Stride: 1, Pad: 0},
}

// TestLaneFull checks which batches the lane convolution takes: those
// that fill more than half of their blocks of lanes, 9 images and up.
func TestLaneFull(t *testing.T) {
	for n, want := range map[int]bool{1: false, 8: false, 9: true, 10: true, 15: true, 16: true, 17: true, 24: true, 30: true, 32: true, 33: true, 49: true, 64: true, 128: true} {
		if got := laneFull(n); got != want {
			t.Errorf("laneFull(%d) = %v, want %v", n, got, want)
		}
	}
}

// TestLaneConv checks Conv, ConvBackwardData and ConvBackwardFilter
// through the lane convolution against float64, and that every thread
// count gives the same bits.
func TestLaneConv(t *testing.T) {
	if !fastLane {
		t.Skip("no AVX-512 and FMA here: stride-1 convolutions run through im2col")
	}
	r := rand.New(rand.NewPCG(5, 6))
	for _, s := range laneShapes {
		if s.W == 1022 && laneChannels(s) >= s.C {
			t.Fatalf("%+v: one chunk of %d channels, want several", s, laneChannels(s))
		}
		if !laneConvOK(s) || laneDataOK(s) != (s.Stride == 1) {
			t.Fatalf("%+v: laneConvOK %v, laneDataOK %v, want true and %v", s, laneConvOK(s), laneDataOK(s), s.Stride == 1)
		}
		x, w, dy := randSlice(r, s.XLen()), randSlice(r, s.WLen()), randSlice(r, s.YLen())
		wantY, wantDX, wantDW := refConv(x, w, dy, s)
		var first [][]float32
		for _, threads := range []int{1, 2, 3} {
			d := New(Options{Threads: threads})
			xb, wb, dyb := upload(t, d, x), upload(t, d, w), upload(t, d, dy)
			y, dx, dw := alloc(t, d, s.YLen()), alloc(t, d, s.XLen()), alloc(t, d, s.WLen())
			must(t, d.Conv(y, xb, wb, s))
			must(t, d.ConvBackwardData(dx, dyb, wb, s))
			must(t, d.ConvBackwardFilter(dw, dyb, xb, s))
			name := fmt.Sprintf("%+v threads=%d", s, threads)
			closeTo(t, name+" y", data(y), wantY, 1e-4, 1e-4)
			closeTo(t, name+" dx", data(dx), wantDX, 1e-4, 1e-4)
			closeTo(t, name+" dw", data(dw), wantDW, 1e-4, 1e-4)
			got := [][]float32{data(y), data(dx), data(dw)}
			if first == nil {
				first = got
				continue
			}
			for j, what := range []string{"y", "dx", "dw"} {
				if !slices.Equal(got[j], first[j]) {
					t.Errorf("%s: %s differs bitwise from threads=1", name, what)
				}
			}
		}
	}
}

// TestConvolutions checks that what the device says of its convolutions
// (trainer devices prints it) follows the path it takes.
func TestConvolutions(t *testing.T) {
	defer func(v bool) { fastLane = v }(fastLane)
	for _, lane := range []bool{true, false} {
		fastLane = lane
		if got := Convolutions(); strings.HasPrefix(got, "lane") != lane {
			t.Errorf("with the lane path %v: %q", lane, got)
		}
	}
}
