package cpu

//go:noescape
func firstMax3Asm(first, x0, x1, x2, me []float32)

// firstMax3 runs firstMax3Asm on positions 0…n−1, n the largest multiple
// of eight with n+2 ≤ len(x0), and returns n: 0 without AVX.
func firstMax3(first, x0, x1, x2, me []float32) int {
	n := (len(x0) - 2) &^ 7
	if !useAVX || n <= 0 {
		return 0
	}
	firstMax3Asm(first[:n], x0[:n+2], x1[:n+2], x2[:n+2], me[:n])
	return n
}
