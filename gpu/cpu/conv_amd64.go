package cpu

//go:noescape
func addToAsm(dst, src []float32)

// addTo sets dst[i] += src[i] for every i of dst: addToGo, the whole
// vectors in AVX assembly where the processor has it.
func addTo(dst, src []float32) {
	src = src[:len(dst)]
	if useAVX && len(dst) >= 8 {
		n := len(dst) &^ 7
		addToAsm(dst[:n], src[:n])
		dst, src = dst[n:], src[n:]
	}
	addToGo(dst, src)
}
