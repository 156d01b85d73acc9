//go:build !amd64

package cpu

// useAVX is false: there is no assembly for this architecture.
var useAVX = false

// lrnForward sets y = LRN(x) on the m pixels of a block.
func lrnForward(y, x []float32, p lrnParams, m int) { lrnForwardGo(y, x, p, 0, m) }

// lrnBackward sets dx on the m pixels of a block.
func lrnBackward(dx, dy, x, y, scratch []float32, p lrnParams, m int) {
	lrnBackwardGo(dx, dy, x, y, scratch, p, 0, m)
}
