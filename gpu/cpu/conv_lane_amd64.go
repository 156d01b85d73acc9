package cpu

// fastLane says whether stride-1 convolutions run as lane convolutions
// (see laneConv): AVX-512 with FMA.
var fastLane = hasFMA() && hasAVX512()

//go:noescape
func laneConv8x3Asm(y0, y1, y2, x0, x1, x2, w *float32, ldy, k, c, r, s, ldrow, ldplane int)

// laneConv8x3 is laneConv8x3Go in AVX-512 assembly: the bounds are
// checked here, once a call.
func laneConv8x3(y []float32, yo [3]int, x []float32, xo [3]int, w []float32, ldy, k, c, r, s, ldrow, ldplane int) {
	last := (c-1)*ldplane + (r-1)*ldrow + (s-1)*lanes + lanes
	for i := range 3 {
		_ = y[yo[i]+7*ldy+lanes-1]
		_ = x[xo[i]+last-1]
	}
	_ = w[(c*r*s-1)*k+7]
	laneConv8x3Asm(&y[yo[0]], &y[yo[1]], &y[yo[2]], &x[xo[0]], &x[xo[1]], &x[xo[2]], &w[0], ldy, k, c, r, s, ldrow, ldplane)
}
