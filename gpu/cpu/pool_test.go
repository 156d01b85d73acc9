package cpu

import (
	"fmt"
	"math"
	"math/rand/v2"
	"testing"

	"github.com/alexnet-go/trainer/gpu"
)

// poolCase is the x, dy and (unless nil) the y of a MaxPoolBackward that
// is not MaxPool(x) for a pooling test.
type poolCase struct {
	name      string
	x, dy, y0 []float32
}

// poolCases returns inputs for s that reach every branch of the pooling
// code: random values; values full of ties (the first maximum must win,
// and dy sums where windows share it); peaks that four windows share;
// NaNs of two payloads in dy on those peaks (where two NaNs meet, the
// sum keeps the one Go's dx[k] += dy keeps); signed zeros and infinities;
// a NaN in x (no value equals its window's maximum); NaNs in x where dy
// is ±0 (which adds nothing wherever it goes); and a y that is not x's.
func poolCases(r *rand.Rand, s gpu.PoolShape) []poolCase {
	nx, ny := s.XLen(), s.YLen()
	nan1, nan2 := math.Float32frombits(0x7fc00001), math.Float32frombits(0xffc00002)
	edges := []float32{0, float32(math.Copysign(0, -1)), float32(math.Inf(1)), float32(math.Inf(-1)), nan1, nan2, 1, -1}
	pick := func(n int, from func() float32) []float32 {
		v := make([]float32, n)
		for i := range v {
			v[i] = from()
		}
		return v
	}
	ties := func() float32 { return float32(r.IntN(3)) }
	zeros := func() float32 { return edges[r.IntN(2)] * float32(r.IntN(2)) }
	signed := func() float32 { return edges[r.IntN(4)] }
	dyEdge := func() float32 {
		if r.IntN(2) == 0 {
			return edges[r.IntN(len(edges))]
		}
		return float32(r.NormFloat64())
	}
	// Peaks every four pixels are the first maximum of all four windows
	// that hold them: their dx sums four dy, whose order shows in the
	// rounding.
	peaks := randSlice(r, nx)
	for i := range peaks {
		if c, row := i%s.W, i/s.W%s.H; c%4 == 0 && row%4 == 0 {
			peaks[i] = 2
		}
	}
	nanX := randSlice(r, nx)
	nanX[r.IntN(nx)] = float32(math.NaN())
	nansX := randSlice(r, nx)
	for i := range nansX {
		if r.IntN(8) == 0 {
			nansX[i] = float32(math.NaN())
		}
	}
	return []poolCase{
		{name: "random", x: randSlice(r, nx), dy: randSlice(r, ny)},
		{name: "ties", x: pick(nx, ties), dy: randSlice(r, ny)},
		{name: "peaks", x: peaks, dy: randSlice(r, ny)},
		{name: "nan-dy", x: peaks, dy: pick(ny, func() float32 { return edges[4+r.IntN(2)] })},
		{name: "zeros", x: pick(nx, zeros), dy: pick(ny, dyEdge)},
		{name: "infinities", x: pick(nx, signed), dy: pick(ny, dyEdge)},
		{name: "nan-x", x: nanX, dy: randSlice(r, ny)},
		{name: "nans-x-zero-dy", x: nansX, dy: pick(ny, zeros)},
		{name: "foreign-y", x: pick(nx, ties), dy: randSlice(r, ny), y0: pick(ny, ties)},
	}
}

// TestMaxPool3Assembly requires the 3×3, stride 2 assembly (maxPool3Asm,
// poolRouteAsm, poolScatterAsm) to give the bits of the Go code, forward
// and backward, on every width from 3 to 42 (rows of whole blocks of
// eight windows and last blocks of every length, from planes narrower
// than one block) and heights of both parities, on the inputs of
// poolCases, the backward over whole planes and chunks of 1, 2 and 3
// output rows.
func TestMaxPool3Assembly(t *testing.T) {
	needAVX(t)
	defer func(v bool) { useAVX = v }(useAVX)
	defer func(v int) { poolRows = v }(poolRows)
	r := rand.New(rand.NewPCG(21, 22))
	for w := 3; w <= 42; w++ {
		for _, h := range []int{3, 4, 7, 10, 19} {
			s := gpu.PoolShape{N: 2, C: 2, H: h, W: w, Size: 3, Stride: 2}
			for ci, c := range poolCases(r, s) {
				poolRows = []int{0, 1, 2, 3}[ci%4] // whole planes, chunks of 1…3 output rows
				var ys, dxs [2][]float32
				for i, avx := range []bool{false, true} {
					useAVX = avx
					d := testDevice(2, nil)
					xb, y := upload(t, d, c.x), alloc(t, d, s.YLen())
					must(t, d.MaxPool(y, xb, s))
					ys[i] = append([]float32(nil), data(y)...)
					if c.y0 != nil {
						y = upload(t, d, c.y0)
					}
					dx := upload(t, d, randSlice(r, s.XLen())) // every value must be written
					must(t, d.MaxPoolBackward(dx, upload(t, d, c.dy), xb, y, s))
					dxs[i] = data(dx)
				}
				what := fmt.Sprintf("H=%d W=%d %s chunk=%d", h, w, c.name, poolRows)
				sameBits32(t, what+" y", ys[1], ys[0])
				sameBits32(t, what+" dx", dxs[1], dxs[0])
			}
		}
	}
}

// TestMaxPool3Shapes requires the assembly to match the Go code on the
// pooling shapes of both nets (one image), where the assembly runs the
// whole blocks of eight windows it is fast on.
func TestMaxPool3Shapes(t *testing.T) {
	needAVX(t)
	defer func(v bool) { useAVX = v }(useAVX)
	r := rand.New(rand.NewPCG(23, 24))
	for _, s := range []gpu.PoolShape{
		{N: 1, C: 3, H: 55, W: 55, Size: 3, Stride: 2},
		{N: 1, C: 3, H: 27, W: 27, Size: 3, Stride: 2},
		{N: 1, C: 3, H: 13, W: 13, Size: 3, Stride: 2},
		{N: 1, C: 3, H: 32, W: 32, Size: 3, Stride: 2},
		{N: 1, C: 3, H: 15, W: 15, Size: 3, Stride: 2},
	} {
		for _, c := range poolCases(r, s)[:4] {
			var ys, dxs [2][]float32
			for i, avx := range []bool{false, true} {
				useAVX = avx
				d := testDevice(1, nil)
				xb, y, dx := upload(t, d, c.x), alloc(t, d, s.YLen()), alloc(t, d, s.XLen())
				must(t, d.MaxPool(y, xb, s))
				must(t, d.MaxPoolBackward(dx, upload(t, d, c.dy), xb, y, s))
				ys[i], dxs[i] = data(y), data(dx)
			}
			what := fmt.Sprintf("%dx%d %s", s.H, s.W, c.name)
			sameBits32(t, what+" y", ys[1], ys[0])
			sameBits32(t, what+" dx", dxs[1], dxs[0])
		}
	}
}

// TestMaxPool3Bounds requires the assembly to write nothing past a
// plane's y or dx, whose last row ends in a last block of every length.
func TestMaxPool3Bounds(t *testing.T) {
	needAVX(t)
	r := rand.New(rand.NewPCG(25, 26))
	const guard = 16
	for w := 3; w <= 42; w++ {
		for _, h := range []int{3, 4, 7} {
			s := gpu.PoolShape{N: 1, C: 1, H: h, W: w, Size: 3, Stride: 2}
			p, q := s.P(), s.Q()
			l := 8*((w+15)/16) + 8
			x, dy := randSlice(r, h*w), randSlice(r, p*q)
			y, dx := make([]float32, p*q+guard), make([]float32, h*w+guard)
			for i := range guard {
				y[p*q+i], dx[h*w+i] = 7, 7
			}
			maxPool3Asm(y[:p*q], x, w, p, q)
			m := make([]float32, (p+2)*9*l)
			if poolRouteAsm(m[9*l:], x, y[:p*q], dy, w, p, q, l) != 0 {
				t.Fatalf("H=%d W=%d: poolRouteAsm missed a maximum of MaxPool's own y", h, w)
			}
			poolScatterAsm(dx[:h*w], m, w, h, p, l)
			for i := range guard {
				if y[p*q+i] != 7 || dx[h*w+i] != 7 {
					t.Fatalf("H=%d W=%d: y or dx written %d past its end", h, w, i)
				}
			}
			for i, v := range m[:9*l] {
				if v != 0 {
					t.Fatalf("H=%d W=%d: m[%d], before output row 0, written", h, w, i)
				}
			}
			for i, v := range m[(p+1)*9*l:] {
				if v != 0 {
					t.Fatalf("H=%d W=%d: m written %d past output row p−1", h, w, i)
				}
			}
		}
	}
}
