//go:build !amd64

package cpu

// fastLane says whether stride-1 convolutions run as lane convolutions:
// not here.
var fastLane = false

// laneConv8x3 is laneConv8x3Go.
func laneConv8x3(y []float32, yo [3]int, x []float32, xo [3]int, w []float32, ldy, k, c, r, s, ldrow, ldplane int) {
	laneConv8x3Go(y, yo, x, xo, w, ldy, k, c, r, s, ldrow, ldplane)
}
