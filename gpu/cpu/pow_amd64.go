package cpu

// pow34Asm is pow34Go in SSE assembly (pow_amd64.s).
//
//go:noescape
func pow34Asm(v []float32)

// pow34 replaces each v[i] by v[i]^−¾: eight at a time in AVX where the
// processor has it (pow34AVX, lrn_amd64.s), the rest in SSE.
func pow34(v []float32) {
	if useAVX {
		n := len(v) &^ 7
		pow34AVX(v[:n])
		v = v[n:]
	}
	pow34Asm(v)
}
