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

//go:noescape
func reluAsm(y, x []float32)

//go:noescape
func reluBackwardAsm(dx, dy, y []float32)

//go:noescape
func sgdAsm(w, v, g []float32, mom, decay, lr float32)

// relu is reluGo, the whole vectors in AVX where the processor has it.
func relu(y, x []float32) {
	x = x[:len(y)]
	if useAVX && len(y) >= 8 {
		n := len(y) &^ 7
		reluAsm(y[:n], x[:n])
		y, x = y[n:], x[n:]
	}
	reluGo(y, x)
}

// reluBackward is reluBackwardGo, the whole vectors in AVX where the
// processor has it.
func reluBackward(dx, dy, y []float32) {
	dy, y = dy[:len(dx)], y[:len(dx)]
	if useAVX && len(dx) >= 8 {
		n := len(dx) &^ 7
		reluBackwardAsm(dx[:n], dy[:n], y[:n])
		dx, dy, y = dx[n:], dy[n:], y[n:]
	}
	reluBackwardGo(dx, dy, y)
}

// sgd is sgdGo, the whole vectors in AVX where the processor has it.
func sgd(w, v, g []float32, mom, decay, lr float32) {
	v, g = v[:len(w)], g[:len(w)]
	if useAVX && len(w) >= 8 {
		n := len(w) &^ 7
		sgdAsm(w[:n], v[:n], g[:n], mom, decay, lr)
		w, v, g = w[n:], v[n:], g[n:]
	}
	sgdGo(w, v, g, mom, decay, lr)
}

//go:noescape
func maxIntoAsm(dst, src []float32)

// maxInto is maxIntoGo, the whole vectors in AVX where the processor has
// it.
func maxInto(dst, src []float32) {
	src = src[:len(dst)]
	if useAVX && len(dst) >= 8 {
		n := len(dst) &^ 7
		maxIntoAsm(dst[:n], src[:n])
		dst, src = dst[n:], src[n:]
	}
	maxIntoGo(dst, src)
}
