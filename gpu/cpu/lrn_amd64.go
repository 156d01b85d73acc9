package cpu

// useAVX says whether the LRN loops run their AVX assembly (lrn_amd64.s);
// tests switch it off to compare with the Go references.
var useAVX = hasAVX()

//go:noescape
func lrnScaleAsm(f []float32, sum []float64, k, alpha float64)

//go:noescape
func lrnRatioAsm(p []float32, r, sum []float64, dy, y []float32, k, alpha float64)

//go:noescape
func slideSquaresAsm(sum []float64, a, b []float32)

//go:noescape
func slide64Asm(sum, a, b []float64)

//go:noescape
func lrnDxAsm(dx, dy, p, x []float32, sum []float64, coef float64)

//go:noescape
func mul32Asm(y, x, f []float32)

//go:noescape
func pow34AVX(v []float32)

// Each dispatcher below reslices every operand to the first one's length
// (panicking, as the Go loop would, if one is short), hands the longest
// prefix of whole vectors to the assembly and the rest to the Go
// reference.

// lrnScale is lrnScaleGo.
func lrnScale(f []float32, sum []float64, k, alpha float64) {
	sum = sum[:len(f)]
	if useAVX {
		n := len(f) &^ 3
		lrnScaleAsm(f[:n], sum[:n], k, alpha)
		f, sum = f[n:], sum[n:]
	}
	lrnScaleGo(f, sum, k, alpha)
}

// lrnRatio is lrnRatioGo.
func lrnRatio(p []float32, r, sum []float64, dy, y []float32, k, alpha float64) {
	r, sum, dy, y = r[:len(p)], sum[:len(p)], dy[:len(p)], y[:len(p)]
	if useAVX {
		n := len(p) &^ 3
		lrnRatioAsm(p[:n], r[:n], sum[:n], dy[:n], y[:n], k, alpha)
		p, r, sum, dy, y = p[n:], r[n:], sum[n:], dy[n:], y[n:]
	}
	lrnRatioGo(p, r, sum, dy, y, k, alpha)
}

// slideSquaresBoth is slideSquaresGo.
func slideSquaresBoth(sum []float64, a, b []float32) {
	a, b = a[:len(sum)], b[:len(sum)]
	if useAVX {
		n := len(sum) &^ 3
		slideSquaresAsm(sum[:n], a[:n], b[:n])
		sum, a, b = sum[n:], a[n:], b[n:]
	}
	slideSquaresGo(sum, a, b)
}

// slide64 is slide64Go.
func slide64(sum, a, b []float64) {
	a, b = a[:len(sum)], b[:len(sum)]
	if useAVX {
		n := len(sum) &^ 3
		slide64Asm(sum[:n], a[:n], b[:n])
		sum, a, b = sum[n:], a[n:], b[n:]
	}
	slide64Go(sum, a, b)
}

// lrnDx is lrnDxGo.
func lrnDx(dx, dy, p, x []float32, sum []float64, coef float64) {
	dy, p, x, sum = dy[:len(dx)], p[:len(dx)], x[:len(dx)], sum[:len(dx)]
	if useAVX {
		n := len(dx) &^ 3
		lrnDxAsm(dx[:n], dy[:n], p[:n], x[:n], sum[:n], coef)
		dx, dy, p, x, sum = dx[n:], dy[n:], p[n:], x[n:], sum[n:]
	}
	lrnDxGo(dx, dy, p, x, sum, coef)
}

// mul32 is mul32Go.
func mul32(y, x, f []float32) {
	y, x = y[:len(f)], x[:len(f)]
	if useAVX {
		n := len(f) &^ 7
		mul32Asm(y[:n], x[:n], f[:n])
		y, x, f = y[n:], x[n:], f[n:]
	}
	mul32Go(y, x, f)
}

//go:noescape
func addSquaresAsm(sum []float64, v []float32, sign float64)

// addSquares is addSquaresGo.
func addSquares(sum []float64, v []float32, sign float64) {
	v = v[:len(sum)]
	if useAVX {
		n := len(sum) &^ 3
		addSquaresAsm(sum[:n], v[:n], sign)
		sum, v = sum[n:], v[n:]
	}
	addSquaresGo(sum, v, sign)
}
