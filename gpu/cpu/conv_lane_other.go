//go:build !amd64

package cpu

// fastLane says whether convolutions run as lane convolutions: not here.
var fastLane = false

// laneConv8x3 is laneConv8x3Go.
func laneConv8x3(y []float32, yo [3]int, x []float32, xo [3]int, w []float32, ldy, k, c, r, s, ldrow, ldplane int, add bool) {
	laneConv8x3Go(y, yo, x, xo, w, ldy, k, c, r, s, ldrow, ldplane, add)
}

// laneFilter8x3 is laneFilter8x3Go.
func laneFilter8x3(acc, x []float32, xo [3]int, dy []float32, lddy, rows, q, ldrow, step int, add bool) {
	laneFilter8x3Go(acc, x, xo, dy, lddy, rows, q, ldrow, step, add)
}

// laneIn is never called here: toLanes and fromLanes take their Go
// loops where fastLane is false.
func laneIn(dst, src []float32, w, rows, lds, srcRow, dstRow int) {
	panic("cpu: laneIn without assembly")
}

// laneOut is never called here, as laneIn.
func laneOut(dst, src []float32, blocks, ldd int) { panic("cpu: laneOut without assembly") }
