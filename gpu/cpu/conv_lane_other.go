//go:build !amd64

package cpu

// fastLane says whether stride-1 convolutions run as lane convolutions:
// not here.
var fastLane = false

// laneConv8x3 is laneConv8x3Go.
func laneConv8x3(y []float32, yo [3]int, x []float32, xo [3]int, w []float32, ldy, k, c, r, s, ldrow, ldplane int, add bool) {
	laneConv8x3Go(y, yo, x, xo, w, ldy, k, c, r, s, ldrow, ldplane, add)
}

// laneFilter8x3 is laneFilter8x3Go.
func laneFilter8x3(acc, x []float32, xo [3]int, dy []float32, lddy, rows, q, ldrow int, add bool) {
	laneFilter8x3Go(acc, x, xo, dy, lddy, rows, q, ldrow, add)
}
