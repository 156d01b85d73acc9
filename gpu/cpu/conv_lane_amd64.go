package cpu

// fastLane says whether convolutions run as lane convolutions (see
// laneConvOK): AVX-512 with FMA.
var fastLane = hasFMA() && hasAVX512()

// flag is 1 for true and 0 for false, as the assembly takes add.
func flag(b bool) int {
	if b {
		return 1
	}
	return 0
}

//go:noescape
func laneConv8x3Asm(y0, y1, y2, x0, x1, x2, w *float32, ldy, k, c, r, s, ldrow, ldplane, add int)

// laneConv8x3 is laneConv8x3Go in AVX-512 assembly: the bounds are
// checked here, once a call.
func laneConv8x3(y []float32, yo [3]int, x []float32, xo [3]int, w []float32, ldy, k, c, r, s, ldrow, ldplane int, add bool) {
	last := (c-1)*ldplane + (r-1)*ldrow + (s-1)*lanes + lanes
	for i := range 3 {
		_ = y[yo[i]+7*ldy+lanes-1]
		_ = x[xo[i]+last-1]
	}
	_ = w[(c*r*s-1)*k+7]
	laneConv8x3Asm(&y[yo[0]], &y[yo[1]], &y[yo[2]], &x[xo[0]], &x[xo[1]], &x[xo[2]], &w[0], ldy, k, c, r, s, ldrow, ldplane, flag(add))
}

//go:noescape
func laneFilter8x3Asm(acc, x0, x1, x2, dy *float32, lddy, rows, q, ldrow, step, add int)

// laneFilter8x3 is laneFilter8x3Go in AVX-512 assembly: the bounds are
// checked here, once a call.
func laneFilter8x3(acc, x []float32, xo [3]int, dy []float32, lddy, rows, q, ldrow, step int, add bool) {
	_ = acc[24*lanes-1]
	for i := range 3 {
		_ = x[xo[i]+(rows-1)*ldrow+(q-1)*step+lanes-1]
	}
	_ = dy[7*lddy+rows*q*lanes-1]
	laneFilter8x3Asm(&acc[0], &x[xo[0]], &x[xo[1]], &x[xo[2]], &dy[0], lddy, rows, q, ldrow, step, flag(add))
}

//go:noescape
func laneInAsm(dst, src *float32, w, rows, lds, srcRow, dstRow int)

//go:noescape
func laneOutAsm(dst, src *float32, blocks, ldd int)

// laneIn sets lane l of dst[r·dstRow + lanes·x:] to src[r·srcRow + l·lds + x]
// for the lanes images l, rows r < rows and columns x < w: toLanes'
// transposition, in AVX-512 assembly.
func laneIn(dst, src []float32, w, rows, lds, srcRow, dstRow int) {
	if w <= 0 || rows <= 0 {
		return
	}
	_, _ = dst[(rows-1)*dstRow+lanes*w-1], src[(rows-1)*srcRow+(lanes-1)*lds+w-1]
	laneInAsm(&dst[0], &src[0], w, rows, lds, srcRow, dstRow)
}

// laneOut sets dst[l·ldd + i] to lane l of src[lanes·i:] for the lanes
// images l and i < lanes·blocks: fromLanes' transposition, in AVX-512
// assembly.
func laneOut(dst, src []float32, blocks, ldd int) {
	if blocks <= 0 {
		return
	}
	_, _ = dst[(lanes-1)*ldd+lanes*blocks-1], src[lanes*lanes*blocks-1]
	laneOutAsm(&dst[0], &src[0], blocks, ldd)
}
