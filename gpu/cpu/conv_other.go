//go:build !amd64

package cpu

// addTo sets dst[i] += src[i] for every i of dst.
func addTo(dst, src []float32) { addToGo(dst, src) }

// copyRows copies rows rows of width values, row i from src[i·lds:] to
// dst[i·ldd:].
func copyRows(dst []float32, ldd int, src []float32, lds, rows, width int) {
	copyRowsGo(dst, ldd, src, lds, rows, width)
}

// splitPhases writes plane (H, W) to de (H, stride, l), as splitPhasesGo.
func splitPhases(de, plane []float32, w, stride, l int) { splitPhasesGo(de, plane, w, stride, l, 0) }

// fastMaskRows says whether maskRows runs in assembly: not here.
var fastMaskRows = false

// maskRows sets row i of dst (n rows of len(mask) values, one after the
// other) to the bits of src[i·lds:] and those of mask.
func maskRows(dst, src, mask []float32, lds, n int) { maskRowsGo(dst, src, mask, lds, n) }

// maskAddRows adds to row i of dst, at dst[i·ldd:], the bits of
// src[i·lds:] and those of mask.
func maskAddRows(dst, src, mask []float32, ldd, lds, n int) {
	maskAddRowsGo(dst, src, mask, ldd, lds, n)
}

// fastDirect says whether directConv runs in assembly: not here.
var fastDirect = false

// useAVX2 says whether the loops that need AVX2 run their assembly: there
// is none here.
var useAVX2 = false

// convRows8 is convRows8Go.
func convRows8(y, x, w []float32, ldy, c, r, s, wp, hwp int) {
	convRows8Go(y, x, w, ldy, c, r, s, wp, hwp)
}
