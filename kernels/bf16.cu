// Rounding to bfloat16, the bf16 precision's one rounding step (package
// gpu/bf16; not the paper, §5, which trained in float32 throughout):
//
//   y = the bf16 value nearest x, ties to even, stored in float32
//
// bf16 is float32's top 16 bits (sign, 8 exponent bits, 7 mantissa bits),
// so rounding is integer arithmetic on the bits: adding 0x7FFF plus the
// lowest kept bit carries into the kept half exactly when the dropped half
// is over one half, or one half with the kept half odd; a carry out of the
// mantissa steps the exponent (to infinity past the largest finite
// value). A NaN stays a quiet NaN with its sign; subnormals round, as
// __float2bfloat16_rn does, and are not flushed. The CPU device's
// RoundBF16 (gpu/cpu/bf16.go) computes the same bits.
//
// Layout: flat, n values; y may alias x. One thread per value, grid-stride.

extern "C" __global__ void round_bf16(int n, float* y, const float* x) {
	for (int i = blockIdx.x * blockDim.x + threadIdx.x; i < n; i += gridDim.x * blockDim.x) {
		unsigned u = __float_as_uint(x[i]);
		if ((u & 0x7fffffffu) > 0x7f800000u) {
			u = (u | 0x00400000u) & 0xffff0000u;
		} else {
			u = (u + 0x7fffu + ((u >> 16) & 1u)) & 0xffff0000u;
		}
		y[i] = __uint_as_float(u);
	}
}
