package cpu

import (
	"math"

	"github.com/alexnet-go/trainer/gpu"
)

// RoundBF16 sets y[i] to x[i] rounded to bfloat16 (8 exponent bits, 7
// mantissa bits: the top half of a float32), to nearest with ties to even,
// over n values; y may be x. The result is stored in float32, whose low 16
// bits are then zero. Infinities pass, finite values beyond bf16's largest
// become infinities as IEEE rounding says, a NaN stays a (quiet) NaN with
// its sign, and float32 subnormals round to bf16 subnormals: nothing is
// flushed. This is the bf16 precision's one rounding step (package
// gpu/bf16); kernels/bf16.cu computes the same bits.
func (d *Device) RoundBF16(y, x gpu.Buffer, n int) error {
	dst, src := d.data("y", y, n), d.data("x", x, n)
	d.elementwise(n, func(lo, hi int) {
		for i := lo; i < hi; i++ {
			dst[i] = roundBF16(src[i])
		}
	})
	return nil
}

// roundBF16 rounds v to the nearest bfloat16, ties to even. Adding
// 0x7FFF plus the lowest kept bit to the float32's bits carries into the
// kept half exactly when the dropped half is above one half, or is one
// half and the kept half is odd; a carry out of the mantissa steps the
// exponent, which is the right rounding there too (up to infinity past the
// largest finite value).
func roundBF16(v float32) float32 {
	u := math.Float32bits(v)
	if u&0x7fffffff > 0x7f800000 { // NaN: keep it one, quiet
		return math.Float32frombits((u | 0x00400000) &^ 0xffff)
	}
	u += 0x7fff + (u>>16)&1
	return math.Float32frombits(u &^ 0xffff)
}
