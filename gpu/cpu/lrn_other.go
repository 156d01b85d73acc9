//go:build !amd64

package cpu

// useAVX is false: there is no assembly for this architecture.
var useAVX = false

func lrnScale(f []float32, sum []float64, k, alpha float64) { lrnScaleGo(f, sum, k, alpha) }

func lrnRatio(p []float32, r, sum []float64, dy, y []float32, k, alpha float64) {
	lrnRatioGo(p, r, sum, dy, y, k, alpha)
}

func slideSquaresBoth(sum []float64, a, b []float32) { slideSquaresGo(sum, a, b) }

func slide64(sum, a, b []float64) { slide64Go(sum, a, b) }

func lrnDx(dx, dy, p, x []float32, sum []float64, coef float64) { lrnDxGo(dx, dy, p, x, sum, coef) }

func mul32(y, x, f []float32) { mul32Go(y, x, f) }

func addSquares(sum []float64, v []float32, sign float64) { addSquaresGo(sum, v, sign) }
