package cpu

//go:noescape
func addConstAsm(v []float32, c float32)

//go:noescape
func sum64Asm(v []float32) (s0, s1, s2, s3 float64)

// addConst sets v[i] += c: addConstGo, the whole vectors in AVX where the
// processor has it.
func addConst(v []float32, c float32) {
	if useAVX && len(v) >= 8 {
		n := len(v) &^ 7
		addConstAsm(v[:n], c)
		v = v[n:]
	}
	addConstGo(v, c)
}

// sum64 returns Σ v in float64, in four interleaved partial sums (see
// sum64Go), the whole groups of four in AVX where the processor has it.
func sum64(v []float32) float64 {
	if !useAVX {
		return sum64Go(v)
	}
	n := len(v) &^ 3
	s0, s1, s2, s3 := sum64Asm(v[:n])
	for _, x := range v[n:] {
		s0 += float64(x)
	}
	return (s0 + s1) + (s2 + s3)
}
