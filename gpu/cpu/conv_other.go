//go:build !amd64

package cpu

// addTo sets dst[i] += src[i] for every i of dst.
func addTo(dst, src []float32) { addToGo(dst, src) }
