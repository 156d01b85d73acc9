package kernels

import (
	"math"
	"math/rand/v2"
	"testing"

	"github.com/alexnet-go/trainer/gpu"
)

// near fails unless got and want agree to within tol·max(1, |want|) everywhere.
func near(t *testing.T, name string, got, want []float64, tol float64) {
	t.Helper()
	if len(got) != len(want) {
		t.Fatalf("%s: %d values, want %d", name, len(got), len(want))
	}
	bad := 0
	for i := range got {
		if !(math.Abs(got[i]-want[i]) <= tol*max(1, math.Abs(want[i]))) {
			if bad++; bad <= 10 {
				t.Errorf("%s[%d]: got %.17g, want %.17g", name, i, got[i], want[i])
			}
		}
	}
	if bad > 10 {
		t.Errorf("%s: %d mismatches in all", name, bad)
	}
}

func TestLRNByHand(t *testing.T) {
	for _, tc := range []struct {
		name string
		x    []float64
		s    gpu.LRNShape
		want []float64
	}{
		{
			// D = 2 + [1+4, 1+4+9, 4+9] = [7, 16, 15].
			name: "size3",
			x:    []float64{1, 2, 3},
			s:    gpu.LRNShape{N: 1, C: 3, H: 1, W: 1, Size: 3, Alpha: 1, Beta: 1, K: 2},
			want: []float64{1.0 / 7, 2.0 / 16, 3.0 / 15},
		},
		{
			// Size 5 > C: every window is all three channels, D = 2 + 14.
			name: "size5_C3",
			x:    []float64{1, 2, 3},
			s:    gpu.LRNShape{N: 1, C: 3, H: 1, W: 1, Size: 5, Alpha: 1, Beta: 1, K: 2},
			want: []float64{1.0 / 16, 2.0 / 16, 3.0 / 16},
		},
		{
			// D = 27 + 9 + 16 + 144 = 196 = 14², Beta ½.
			name: "beta_half",
			x:    []float64{3, 4, 12},
			s:    gpu.LRNShape{N: 1, C: 3, H: 1, W: 1, Size: 5, Alpha: 1, Beta: 0.5, K: 27},
			want: []float64{3.0 / 14, 4.0 / 14, 12.0 / 14},
		},
		{
			// C=2, W=2, flat order c0w0 c0w1 c1w0 c1w1: the sums run over
			// channels at one pixel, 1+9 at w=0 and 4+16 at w=1.
			name: "channel_stride",
			x:    []float64{1, 2, 3, 4},
			s:    gpu.LRNShape{N: 1, C: 2, H: 1, W: 2, Size: 3, Alpha: 1, Beta: 1, K: 1},
			want: []float64{1.0 / 11, 2.0 / 21, 3.0 / 11, 4.0 / 21},
		},
		{
			// Alpha halved: D = 1 + ½·(1+4) = 3.5 for both channels.
			name: "alpha",
			x:    []float64{1, 2},
			s:    gpu.LRNShape{N: 1, C: 2, H: 1, W: 1, Size: 3, Alpha: 0.5, Beta: 1, K: 1},
			want: []float64{1 / 3.5, 2 / 3.5},
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			near(t, "y", LRN(tc.x, tc.s), tc.want, 1e-15)
		})
	}
}

func TestLRNBackwardByHand(t *testing.T) {
	// One channel, Size 1: y = x/(1+x²), dy/dx = (1−x²)/(1+x²)² = −3/25 at x = 2.
	s := gpu.LRNShape{N: 1, C: 1, H: 1, W: 1, Size: 1, Alpha: 1, Beta: 1, K: 1}
	near(t, "dx", LRNBackward([]float64{1}, []float64{2}, s), []float64{-3.0 / 25}, 1e-15)

	// Two channels in one window, K=1, Alpha=1, Beta=1, x = (1, 2):
	// D = 6, y0 = x0/D, y1 = x1/D,
	// ∂y0/∂x0 = 1/6 − 2·1·1/36 = 4/36, ∂y1/∂x0 = −2·2·1/36 = −4/36,
	// ∂y0/∂x1 = −2·1·2/36 = −4/36,    ∂y1/∂x1 = 1/6 − 2·2·2/36 = −2/36.
	// With dy = (1, 10): dx0 = 4/36 − 40/36, dx1 = −4/36 − 20/36.
	s = gpu.LRNShape{N: 1, C: 2, H: 1, W: 1, Size: 3, Alpha: 1, Beta: 1, K: 1}
	near(t, "dx", LRNBackward([]float64{1, 10}, []float64{1, 2}, s), []float64{-36.0 / 36, -24.0 / 36}, 1e-15)
}

func TestLRNBackwardFiniteDifferences(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	for _, s := range []gpu.LRNShape{
		{N: 2, C: 7, H: 2, W: 3, Size: 5, Alpha: 1e-4, Beta: 0.75, K: 2},
		{N: 1, C: 3, H: 2, W: 2, Size: 5, Alpha: 0.3, Beta: 0.75, K: 1},
		{N: 1, C: 6, H: 1, W: 3, Size: 3, Alpha: 0.5, Beta: 0.5, K: 1.5},
		{N: 1, C: 4, H: 1, W: 1, Size: 4, Alpha: 0.5, Beta: 1, K: 1},
	} {
		x := make([]float64, s.Len())
		dy := make([]float64, s.Len())
		for i := range x {
			x[i] = 4*rng.Float64() - 2
			dy[i] = 2*rng.Float64() - 1
		}
		got := LRNBackward(dy, x, s)
		// L = Σ dy·LRN(x); central differences in float64.
		const h = 1e-6
		want := make([]float64, len(x))
		for i := range x {
			xi := x[i]
			x[i] = xi + h
			lp := dot(dy, LRN(x, s))
			x[i] = xi - h
			lm := dot(dy, LRN(x, s))
			x[i] = xi
			want[i] = (lp - lm) / (2 * h)
		}
		near(t, "dx", got, want, 1e-7)
	}
}

func dot(a, b []float64) float64 {
	s := 0.0
	for i := range a {
		s += a[i] * b[i]
	}
	return s
}

// pool5 is a 5×5 image with distinct maxima, drawn as rows.
var pool5 = []float64{
	1, 9, 2, 4, 3,
	5, 0, 8, 7, 6,
	3, 2, 4, 1, 10,
	6, 11, 0, 2, 5,
	1, 3, 12, 4, 2,
}

func TestMaxPoolByHand(t *testing.T) {
	// 3/2: windows at rows/cols {0,2}. 12 at (4,2) is the maximum of both
	// bottom windows, so its gradient is the sum of theirs.
	s := gpu.PoolShape{N: 1, C: 1, H: 5, W: 5, Size: 3, Stride: 2}
	near(t, "y", MaxPool(pool5, s), []float64{9, 10, 12, 12}, 0)
	dx := make([]float64, 25)
	dx[0*5+1], dx[2*5+4], dx[4*5+2] = 1, 2, 3+4
	near(t, "dx", MaxPoolBackward([]float64{1, 2, 3, 4}, pool5, s), dx, 0)

	// 2/2 on 5×5: two windows a side, row 4 and column 4 are left out.
	s = gpu.PoolShape{N: 1, C: 1, H: 5, W: 5, Size: 2, Stride: 2}
	near(t, "y", MaxPool(pool5, s), []float64{9, 8, 11, 4}, 0)
	dx = make([]float64, 25)
	dx[0*5+1], dx[1*5+2], dx[3*5+1], dx[2*5+2] = 1, 2, 3, 4
	near(t, "dx", MaxPoolBackward([]float64{1, 2, 3, 4}, pool5, s), dx, 0)
}

func TestMaxPoolTies(t *testing.T) {
	// All equal: the first pixel of each 3/2 window, its top-left, wins.
	x := make([]float64, 25)
	for i := range x {
		x[i] = 1
	}
	s := gpu.PoolShape{N: 1, C: 1, H: 5, W: 5, Size: 3, Stride: 2}
	dx := make([]float64, 25)
	dx[0], dx[2], dx[2*5], dx[2*5+2] = 1, 2, 3, 4
	near(t, "dx", MaxPoolBackward([]float64{1, 2, 3, 4}, x, s), dx, 0)

	// A tie between (1,2) and (2,1) in one 3×3 window: row-major, (1,2) wins.
	x = make([]float64, 9)
	x[1*3+2], x[2*3+1] = 5, 5
	s = gpu.PoolShape{N: 1, C: 1, H: 3, W: 3, Size: 3, Stride: 1}
	dx = make([]float64, 9)
	dx[1*3+2] = 1
	near(t, "dx", MaxPoolBackward([]float64{1}, x, s), dx, 0)
}

func TestMaxPoolChannels(t *testing.T) {
	// Two images of two channels of 2×2, pooled whole: the maximum of each
	// channel of each image, in NCHW order.
	x := []float64{
		1, 4, 2, 3, // n0 c0
		8, 5, 6, 7, // n0 c1
		-1, -2, -3, -4, // n1 c0
		0.5, 0.25, 0.75, 0.125, // n1 c1
	}
	s := gpu.PoolShape{N: 2, C: 2, H: 2, W: 2, Size: 2, Stride: 2}
	near(t, "y", MaxPool(x, s), []float64{4, 8, -1, 0.75}, 0)
	want := make([]float64, 16)
	want[1], want[4], want[8], want[14] = 1, 2, 3, 4
	near(t, "dx", MaxPoolBackward([]float64{1, 2, 3, 4}, x, s), want, 0)
}

func TestMaxPoolBackwardFiniteDifferences(t *testing.T) {
	// Distinct values one apart, perturbed by much less: no window's argmax
	// moves, so the difference quotient is exact.
	rng := rand.New(rand.NewPCG(1, 2))
	s := gpu.PoolShape{N: 2, C: 2, H: 7, W: 6, Size: 3, Stride: 2}
	x := make([]float64, s.XLen())
	for i, v := range rng.Perm(len(x)) {
		x[i] = float64(v)
	}
	dy := make([]float64, s.YLen())
	for i := range dy {
		dy[i] = 2*rng.Float64() - 1
	}
	got := MaxPoolBackward(dy, x, s)
	const h = 0.25
	want := make([]float64, len(x))
	for i := range x {
		xi := x[i]
		x[i] = xi + h
		lp := dot(dy, MaxPool(x, s))
		x[i] = xi - h
		lm := dot(dy, MaxPool(x, s))
		x[i] = xi
		want[i] = (lp - lm) / (2 * h)
	}
	near(t, "dx", got, want, 1e-12)
}

func TestShapeMismatchPanics(t *testing.T) {
	defer func() {
		if recover() == nil {
			t.Error("LRN with a short x did not panic")
		}
	}()
	LRN(make([]float64, 3), gpu.LRNShape{N: 1, C: 4, H: 1, W: 1, Size: 5, Beta: 0.75, K: 2})
}
