package cpu

import (
	"math"
	"math/rand/v2"
	"testing"
)

// TestLRNPower requires lrnPower(s, 1/s, β) to be within 2 ulp of the
// float64 power s^−β for the exponents it takes in square roots (β = ¾
// is inv·√√s), and exact for β = 0 and 1, on scales from 1 to e^12 and on
// the smallest and largest ones.
func TestLRNPower(t *testing.T) {
	r := rand.New(rand.NewPCG(1, 2))
	scales := []float32{1, 2, 0.5, 1e-30, 1e30, math.MaxFloat32}
	for range 20000 {
		scales = append(scales, float32(math.Exp(12*r.Float64())))
	}
	for _, beta := range []float32{0, 0.5, 0.75, 1, 0.6} {
		for _, s := range scales {
			got := float64(lrnPower(s, 1/s, beta))
			want := math.Pow(float64(s), -float64(beta))
			tol := 2.4e-7 * want // 2 ulp
			if beta == 0 || beta == 1 {
				tol = 0.5 * math.Pow(2, -23) * want
			}
			if math.Abs(got-want) > tol {
				t.Errorf("lrnPower(%g, β=%g) = %g, want %g", s, beta, got, want)
			}
		}
	}
}
