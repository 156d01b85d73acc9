// Fused layers: an activation folded into the pass next to it, so that the
// activations are read and written once instead of twice (gpu.Ops.BiasReLU,
// ReLUBiasBackward, LinearReLU, LinearReLUBackward, ReLULRN,
// ReLULRNBackward). Each computes what its unfused kernels compute, with
// the same float operations in the same order, so the bits are the same:
//
//   bias_relu:          y[n,c,i] = max(0, y[n,c,i] + b[c])        (bias.cu, relu.cu)
//   relu_bias_backward: g = dy where y > 0, else 0; dx = g;
//                       db[c] = Σ_{n,i} g[n,c,i]                  (relu.cu, bias.cu)
//   relu_lrn_forward:   y = LRN(max(0, x))                         (relu.cu, lrn.cu)
//   relu_lrn_backward:  dx = LRNBackward(dy, max(0, x), y) where x > 0, else 0
//
// The ReLU follows every conv and FC layer but fc8 (the paper, §3.1); LRN
// follows the ReLU of conv1 and conv2 (§3.3), which then stores its output
// before the ReLU: max(0, x) > 0 exactly where x > 0, so that output is
// all the backward pass needs.
//
// Layout: y, dy, dx (N, C, inner), NCHW, inner = H·W for a convolution and
// 1 for a fully-connected layer (then C is Out); b, db (C); the LRN's as in
// lrn.cu (hw = H·W). bias_relu: one thread per value, grid-stride; the
// LRN kernels: lrn.cu's walk down the channels, one thread per pixel and
// run of span channels. relu_bias_backward: one block per channel, each thread
// summing a strided share in double, then a shared-memory tree (bias.cu's
// order); launch with 256 threads per block. dx may alias dy.

extern "C" __global__ void bias_relu(int N, int C, int inner, float* y, const float* b) {
	long long total = (long long)N * C * inner;
	for (long long t = blockIdx.x * (long long)blockDim.x + threadIdx.x; t < total; t += (long long)gridDim.x * blockDim.x) {
		float v = y[t] + b[(int)(t / inner % C)];
		y[t] = v > 0.0f ? v : 0.0f;
	}
}

extern "C" __global__ void relu_bias_backward(int N, int C, int inner, float* dx, float* db, const float* dy, const float* y) {
	__shared__ double part[256];
	int c = blockIdx.x;
	long long per = (long long)N * inner;
	double acc = 0.0;
	for (long long t = threadIdx.x; t < per; t += blockDim.x) {
		long long n = t / inner, i = t % inner;
		long long at = (n * C + c) * inner + i;
		float g = y[at] > 0.0f ? dy[at] : 0.0f;
		dx[at] = g;
		acc += (double)g;
	}
	part[threadIdx.x] = acc;
	__syncthreads();
	for (int s = blockDim.x / 2; s > 0; s >>= 1) {
		if ((int)threadIdx.x < s) part[threadIdx.x] += part[threadIdx.x + s];
		__syncthreads();
	}
	if (threadIdx.x == 0) db[c] = (float)part[0];
}

// fused_negpow is lrn.cu's lrn_negpow: s^−beta.
__device__ static float fused_negpow(float s, float beta) {
	if (beta == 0.75f) {
		float r = sqrtf(s);
		return 1.0f / (r * sqrtf(r));
	}
	if (beta == 0.5f) return 1.0f / sqrtf(s);
	if (beta == 1.0f) return 1.0f / s;
	return powf(s, -beta);
}

// fused_relu is relu.cu's max(0, v).
__device__ static float fused_relu(float v) { return v > 0.0f ? v : 0.0f; }

// fused_square, fused_init, fused_slide and fused_ratio are lrn.cu's
// lrn_square, lrn_init, lrn_slide and lrn_ratio, reading max(0, x).
__device__ static double fused_square(const float* x, int j, int hw) {
	double v = (double)fused_relu(x[(long long)j * hw]);
	return v * v;
}

__device__ static double fused_init(const float* x, int c, int C, int hw, int half) {
	double sum = 0.0;
	for (int j = max(c - half, 0); j <= min(c + half, C - 1); j++) sum += fused_square(x, j, hw);
	return sum;
}

__device__ static double fused_slide(double sum, const float* x, int c, int C, int hw, int half) {
	int in = c + half + 1, out = c - half;
	if (in < C && out >= 0) return sum + fused_square(x, in, hw) - fused_square(x, out, hw);
	if (in < C) return sum + fused_square(x, in, hw);
	if (out >= 0) return sum - fused_square(x, out, hw);
	return sum;
}

__device__ static double fused_ratio(const float* dy, const float* y, int j, int hw, double sum, double alpha, double k) {
	long long o = (long long)j * hw;
	return (double)dy[o] * (double)y[o] / (k + alpha * sum);
}

extern "C" __global__ void relu_lrn_forward(int N, int C, int hw, int span, int size, float alpha, float beta, float k,
                                            float* y, const float* x) {
	int half = size / 2, parts = (C + span - 1) / span;
	long long total = (long long)N * parts * hw;
	for (long long t = blockIdx.x * (long long)blockDim.x + threadIdx.x; t < total; t += (long long)gridDim.x * blockDim.x) {
		int pix = (int)(t % hw);
		int c0 = (int)(t / hw % parts) * span, c1 = min(c0 + span, C);
		long long base = t / ((long long)hw * parts) * C * hw + pix;
		const float* xp = x + base;
		float* yp = y + base;
		double sum = fused_init(xp, c0, C, hw, half);
		for (int c = c0; c < c1; c++) {
			long long o = (long long)c * hw;
			float s = (float)((double)k + (double)alpha * sum);
			yp[o] = fused_relu(xp[o]) * fused_negpow(s, beta);
			sum = fused_slide(sum, xp, c, C, hw, half);
		}
	}
}

extern "C" __global__ void relu_lrn_backward(int N, int C, int hw, int span, int size, float alpha, float beta, float k,
                                             float* dx, const float* dy, const float* x, const float* y) {
	int half = size / 2, parts = (C + span - 1) / span;
	double a64 = alpha, k64 = k, coef = 2.0 * a64 * (double)beta;
	long long total = (long long)N * parts * hw;
	for (long long t = blockIdx.x * (long long)blockDim.x + threadIdx.x; t < total; t += (long long)gridDim.x * blockDim.x) {
		int pix = (int)(t % hw);
		int c0 = (int)(t / hw % parts) * span, c1 = min(c0 + span, C);
		long long base = t / ((long long)hw * parts) * C * hw + pix;
		const float *xp = x + base, *dyp = dy + base, *yp = y + base;
		float* dxp = dx + base;
		int lo = max(c0 - half, 0), in = lo;
		double sin = fused_init(xp, lo, C, hw, half), sc = sin, sout = sin;
		for (int j = lo; j < c0; j++) sc = fused_slide(sc, xp, j, C, hw, half);
		double r = 0.0;
		for (; in <= min(c0 + half, C - 1); in++) {
			r += fused_ratio(dyp, yp, in, hw, sin, a64, k64);
			sin = fused_slide(sin, xp, in, C, hw, half);
		}
		for (int c = c0; c < c1; c++) {
			long long o = (long long)c * hw;
			float p = fused_negpow((float)(k64 + a64 * sc), beta);
			float xr = fused_relu(xp[o]);
			float g = (float)((double)dyp[o] * (double)p - coef * (double)xr * r);
			dxp[o] = xr > 0.0f ? g : 0.0f;
			sc = fused_slide(sc, xp, c, C, hw, half);
			int out = c - half;
			double ri = 0.0, ro = 0.0;
			if (in < C) {
				ri = fused_ratio(dyp, yp, in, hw, sin, a64, k64);
				sin = fused_slide(sin, xp, in, C, hw, half);
				in++;
			}
			if (out >= 0) {
				ro = fused_ratio(dyp, yp, out, hw, sout, a64, k64);
				sout = fused_slide(sout, xp, out, C, hw, half);
			}
			r = r + ri - ro;
		}
	}
}
