package cpu

import "math"

// pow34Go replaces each v[i] by v[i]^−¾ = 1/(√v[i]·√√v[i]) in float32:
// the reference for pow34, whose assembly gives the same bits (square
// roots, products and quotients are correctly rounded in both).
func pow34Go(v []float32) {
	for i, x := range v {
		r := sqrt32(x)
		v[i] = 1 / (r * sqrt32(r))
	}
}

// sqrt32 is the float32 square root (one SQRTSS on amd64).
func sqrt32(x float32) float32 { return float32(math.Sqrt(float64(x))) }

// negPow32 replaces each v[i] > 0 by v[i]^−beta in float32, with the
// common exponents done in square roots rather than math.Pow.
func negPow32(v []float32, beta float32) {
	switch beta {
	case 0:
		for i := range v {
			v[i] = 1
		}
	case 0.5:
		for i, x := range v {
			v[i] = 1 / sqrt32(x)
		}
	case 0.75: // the paper's β
		pow34(v)
	case 1:
		for i, x := range v {
			v[i] = 1 / x
		}
	default:
		b := float64(beta)
		for i, x := range v {
			v[i] = float32(math.Pow(float64(x), -b))
		}
	}
}
