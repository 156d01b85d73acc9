package cuda

import "github.com/alexnet-go/trainer/gpu"

// RoundBF16 sets y to x rounded to bfloat16, to nearest with ties to even,
// over n values (kernels/bf16.cu); y may be x. It is the bf16 precision's
// rounding step (package gpu/bf16), the same bits as the CPU device's.
func (d *Device) RoundBF16(y, x gpu.Buffer, n int) error {
	return d.launch("round_bf16", d.grid(n), threads, n, d.buf("y", y, n), d.buf("x", x, n))
}
