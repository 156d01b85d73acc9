package cpu

// pow34Asm is pow34Go in SSE assembly (pow_amd64.s).
//
//go:noescape
func pow34Asm(v []float32)

// pow34 replaces each v[i] by v[i]^−¾.
func pow34(v []float32) { pow34Asm(v) }
