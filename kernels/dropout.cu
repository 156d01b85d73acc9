// Dropout (the paper, §4.2), inverted: the kept values are scaled at training
// time so that nothing changes at test time.
//
//   keep(i) = u(i) ≥ p,  u(i) = (z(i) >> 40) · 2^−24
//   z(i)    = SplitMix64(seed + (i+1)·0x9E3779B97F4A7C15)
//   mask[i] = keep(i) ? scale : 0,  scale = 1/(1−p) (1 when p = 0)
//   y[i]    = x[i]·mask[i]
//   dx[i]   = dy[i]·mask[i]
//
// This is gpu.DropoutKeep bit for bit: a counter-based generator, so every
// element's decision depends only on (seed, i) and any device draws the
// same mask for a layer. scale is computed by the host as float32.
//
// Layout: flat, n values. One thread per value, grid-stride.

extern "C" __global__ void dropout_forward(int n, float p, float scale, unsigned long long seed,
                                           float* y, float* mask, const float* x) {
	for (int i = blockIdx.x * blockDim.x + threadIdx.x; i < n; i += gridDim.x * blockDim.x) {
		float m = 1.0f;
		if (p > 0.0f) {
			unsigned long long z = seed + (unsigned long long)(i + 1) * 0x9E3779B97F4A7C15ull;
			z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
			z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
			z ^= z >> 31;
			float u = (float)(unsigned int)(z >> 40) * (1.0f / 16777216.0f);
			m = u >= p ? scale : 0.0f;
		}
		mask[i] = m;
		y[i] = x[i] * m;
	}
}

extern "C" __global__ void dropout_backward(int n, float* dx, const float* dy, const float* mask) {
	for (int i = blockIdx.x * blockDim.x + threadIdx.x; i < n; i += gridDim.x * blockDim.x) {
		dx[i] = dy[i] * mask[i];
	}
}
