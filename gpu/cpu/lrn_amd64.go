package cpu

// useAVX says whether the LRN loops (and the other loops of the package's
// *_amd64.s) run their AVX assembly; tests switch it off to compare with
// the Go references.
var useAVX = hasAVX()

// lrnForwardAsm is lrnForwardGo for β = ¾ on pixels 0…n−1 of a block, n
// a positive multiple of 8 (lrn_amd64.s).
//
//go:noescape
func lrnForwardAsm(y, x []float32, hw, c, half, n int, k, alpha float32, relu bool)

// lrnRatioAsm, lrnDxAsm and lrnBothAsm are lrnBackwardGo for β = ¾ on
// pixels 0…n−1 of a block, n a positive multiple of 8 (lrn_amd64.s):
// lrnRatioAsm its first loop (p and the ratios) for channels c0…c1−1,
// lrnDxAsm its second (dx), lrnBothAsm, for Size 5, the first for c and
// the second for c−2 together. Their scratch rows are ROWBYTES = 4·1024
// bytes apart, a constant of lrn_amd64.s: an array length below is
// negative, which does not compile, unless lrnBlock is 1024.
var _ [lrnBlock - 1024][1024 - lrnBlock]struct{}

//go:noescape
func lrnRatioAsm(dy, x, y, scratch []float32, hw, c, half, n, c0, c1 int, k, alpha float32, relu bool)

//go:noescape
func lrnDxAsm(dx, dy, x, scratch []float32, hw, c, half, n, c0, c1 int, coef float32, relu bool)

//go:noescape
func lrnBothAsm(dx, dy, x, y, scratch []float32, hw, c, n, c0, c1 int, k, alpha, coef float32, relu bool)

// lrnForward sets y = LRN(x) on the m pixels of a block, x and y
// starting at its channel 0: the whole vectors of 8 pixels in assembly
// where it applies, the rest in Go. It reslices every operand to the
// block's extent first, so that a short one panics as the Go loop would.
func lrnForward(y, x []float32, p lrnParams, m int) {
	n := (p.c-1)*p.hw + m
	y, x = y[:n], x[:n]
	v := 0
	if useAVX && p.beta == 0.75 {
		if v = m &^ 7; v > 0 {
			lrnForwardAsm(y, x, p.hw, p.c, p.half, v, p.k, p.alpha, p.relu)
		}
	}
	lrnForwardGo(y, x, p, v, m)
}

// lrnBackward sets dx on the m pixels of a block like lrnForward, with
// scratch of 2·C·lrnBlock values.
func lrnBackward(dx, dy, x, y, scratch []float32, p lrnParams, m int) {
	n := (p.c-1)*p.hw + m
	dx, dy, x, y, scratch = dx[:n], dy[:n], x[:n], y[:n], scratch[:2*p.c*lrnBlock]
	v := 0
	if useAVX && p.beta == 0.75 {
		if v = m &^ 7; v > 0 {
			coef := 2 * p.alpha * p.beta
			if a, b := 4, p.c-2; p.half == 2 && a < b {
				// Ratios of 4…C−3 with dx of 2…C−5 in lrnBothAsm.
				lrnRatioAsm(dy, x, y, scratch, p.hw, p.c, p.half, v, 0, a, p.k, p.alpha, p.relu)
				lrnBothAsm(dx, dy, x, y, scratch, p.hw, p.c, v, a, b, p.k, p.alpha, coef, p.relu)
				lrnRatioAsm(dy, x, y, scratch, p.hw, p.c, p.half, v, b, p.c, p.k, p.alpha, p.relu)
				lrnDxAsm(dx, dy, x, scratch, p.hw, p.c, p.half, v, 0, a-2, coef, p.relu)
				lrnDxAsm(dx, dy, x, scratch, p.hw, p.c, p.half, v, b-2, p.c, coef, p.relu)
			} else {
				lrnRatioAsm(dy, x, y, scratch, p.hw, p.c, p.half, v, 0, p.c, p.k, p.alpha, p.relu)
				lrnDxAsm(dx, dy, x, scratch, p.hw, p.c, p.half, v, 0, p.c, coef, p.relu)
			}
		}
	}
	lrnBackwardGo(dx, dy, x, y, scratch, p, v, m)
}
