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

//go:noescape
func copyRowsAsm(dst, src []float32, width, ldd, lds, rows int)

// copyRows copies rows rows of width values, row i from src[i·lds:] to
// dst[i·ldd:]: copyRowsGo, in AVX assembly where the processor has it and
// the rows are at least eight values wide.
func copyRows(dst []float32, ldd int, src []float32, lds, rows, width int) {
	if rows <= 0 || width <= 0 {
		return
	}
	if !useAVX || width < 8 {
		copyRowsGo(dst, ldd, src, lds, rows, width)
		return
	}
	_, _ = dst[(rows-1)*ldd+width-1], src[(rows-1)*lds+width-1]
	copyRowsAsm(dst, src, width, ldd, lds, rows)
}

//go:noescape
func splitPhases4Asm(de, plane []float32, w, l, rows int)

// splitPhases writes plane (H, W) to de (H, stride, l) as splitPhasesGo
// does: with stride 4 (alexnet's conv1) the first 8·⌊W/32⌋ values of each
// phase in assembly, 32 columns of a row at a time, the rest in Go. The
// assembly's VPERMPS is AVX2, not AVX: it runs where the processor has
// AVX2 (a Sandy Bridge would stop on it).
func splitPhases(de, plane []float32, w, stride, l int) {
	rows := len(plane) / w
	k0 := 0
	if useAVX2 && stride == 4 && w >= 32 && rows > 0 {
		k0 = w / 32 * 8
		_, _ = de[(rows-1)*4*l+3*l+k0-1], plane[rows*w-1]
		splitPhases4Asm(de, plane, w, l, rows)
	}
	splitPhasesGo(de, plane, w, stride, l, k0)
}

// fastMaskRows says whether maskRows runs in assembly, which pays for
// im2colRows' building a mask per tap.
var fastMaskRows = useAVX

//go:noescape
func maskRowsAsm(dst, src, mask []float32, lds, n int)

// maskRows sets row i of dst (n rows of len(mask) values, one after the
// other) to the bits of src[i·lds:] and those of mask, as maskRowsGo: in
// AVX assembly for rows of at least eight values.
func maskRows(dst, src, mask []float32, lds, n int) {
	w := len(mask)
	if n <= 0 || w == 0 {
		return
	}
	if !useAVX || w < 8 {
		maskRowsGo(dst, src, mask, lds, n)
		return
	}
	_, _ = dst[n*w-1], src[(n-1)*lds+w-1]
	maskRowsAsm(dst, src, mask, lds, n)
}

//go:noescape
func maskAddRowsAsm(dst, src, mask []float32, ldd, lds, n int)

// maskAddRows adds to row i of dst, at dst[i·ldd:], the bits of
// src[i·lds:] and those of mask, as maskAddRowsGo: in AVX assembly, one
// correctly rounded sum per value, so the same bits.
func maskAddRows(dst, src, mask []float32, ldd, lds, n int) {
	w := len(mask)
	if n <= 0 || w == 0 {
		return
	}
	if !useAVX {
		maskAddRowsGo(dst, src, mask, ldd, lds, n)
		return
	}
	_, _ = dst[(n-1)*ldd+w-1], src[(n-1)*lds+w-1]
	maskAddRowsAsm(dst, src, mask, ldd, lds, n)
}

// useAVX2 says whether the loops that need AVX2 (VPERMPS) run their
// assembly: AVX2 is CPUID.7:EBX bit 5, on top of AVX.
var useAVX2 = hasAVX2()

// hasAVX2 reports whether the processor has AVX2 and the operating system
// saves the YMM registers.
func hasAVX2() bool {
	if !useAVX {
		return false
	}
	if eax, _, _, _ := cpuid(0, 0); eax < 7 {
		return false
	}
	_, ebx, _, _ := cpuid(7, 0)
	return ebx&(1<<5) != 0
}

// hasFMA reports whether the processor has FMA3 (CPUID.1:ECX bit 12).
func hasFMA() bool {
	_, _, ecx, _ := cpuid(1, 0)
	return useAVX && ecx&(1<<12) != 0
}

// fastDirect says whether directConv runs in assembly: AVX-512 with FMA.
var fastDirect = hasFMA() && hasAVX512()

//go:noescape
func convRows8Asm(y, x, w *float32, ldy, c, r, s, wp, hwp int)

// hasAVX512 reports whether the processor has AVX-512F (CPUID.7:EBX bit
// 16) and the operating system saves its registers (XCR0 bits 5–7).
func hasAVX512() bool {
	if !useAVX {
		return false
	}
	if eax, _, _, _ := cpuid(0, 0); eax < 7 {
		return false
	}
	_, ebx, _, _ := cpuid(7, 0)
	xcr0, _ := xgetbv()
	const zmm = 7 << 5
	return ebx&(1<<16) != 0 && xcr0&zmm == zmm
}

// convRows8 sets 32 outputs of one output row of eight filters, filter
// i's at y[i·ldy:][:32], from the padded input x (rows of wp values,
// planes of hwp) and the eight filters' weights interleaved, w (C·R·S, 8),
// as convRows8Go, in AVX-512 assembly with fused multiply-adds: the same
// bits.
func convRows8(y, x, w []float32, ldy, c, r, s, wp, hwp int) {
	_, _ = y[7*ldy+31], w[c*r*s*8-1]
	_ = x[(c-1)*hwp+(r-1)*wp+s-1+31]
	convRows8Asm(&y[0], &x[0], &w[0], ldy, c, r, s, wp, hwp)
}
