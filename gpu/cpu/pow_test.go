package cpu

import (
	"math"
	"math/rand/v2"
	"testing"
)

// TestPow34 requires pow34 (the SSE assembly on amd64) to give the bits of
// pow34Go, its scalar reference, on every length up to 11 (the four-wide
// loop and every tail) and on the edge values, and pow34Go to be within
// 2 ulp-ish of the float64 power.
func TestPow34(t *testing.T) {
	r := rand.New(rand.NewPCG(1, 2))
	edge := []float32{1, 2, 0.5, 1e-30, 1e30, math.SmallestNonzeroFloat32, math.MaxFloat32, 0, float32(math.Inf(1)), float32(math.NaN()), -1}
	for n := range 12 {
		v := make([]float32, n+len(edge))
		for i := range n {
			v[i] = float32(math.Exp(8 * (2*r.Float64() - 1)))
		}
		copy(v[n:], edge)
		got, want := append([]float32(nil), v...), append([]float32(nil), v...)
		pow34(got)
		pow34Go(want)
		for i := range v {
			if math.Float32bits(got[i]) != math.Float32bits(want[i]) {
				t.Errorf("n=%d: pow34(%g) = %g (%#x), pow34Go gives %g (%#x)", n, v[i], got[i], math.Float32bits(got[i]), want[i], math.Float32bits(want[i]))
			}
		}
		for i, x := range v[:n] {
			ref := math.Pow(float64(x), -0.75)
			if math.Abs(float64(want[i])-ref) > 4e-7*ref {
				t.Errorf("pow34Go(%g) = %g, want %g", x, want[i], ref)
			}
		}
	}
}
