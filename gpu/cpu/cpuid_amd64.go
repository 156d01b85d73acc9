package cpu

// cpuid executes CPUID with EAX = eaxArg and ECX = ecxArg.
func cpuid(eaxArg, ecxArg uint32) (eax, ebx, ecx, edx uint32)

// xgetbv reads XCR0, the register state the operating system saves.
func xgetbv() (eax, edx uint32)

// hasAVX reports whether the processor has AVX and the operating system
// saves the YMM registers, the test internal/cpu makes (the standard
// library does not export it, and golang.org/x/sys is not a dependency).
func hasAVX() bool {
	_, _, ecx, _ := cpuid(1, 0)
	const osxsave, avx = 1 << 27, 1 << 28
	if ecx&osxsave == 0 || ecx&avx == 0 {
		return false
	}
	xcr0, _ := xgetbv()
	const sse, ymm = 1 << 1, 1 << 2
	return xcr0&(sse|ymm) == sse|ymm
}
